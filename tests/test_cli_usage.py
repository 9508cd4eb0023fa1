"""Every user mistake on the command line is a message with exit 2, never a traceback; checked before the
model loads and before anything is written, so the previous output stays."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import EXIT_USAGE, app
from tests.helpers import ROOT

runner = CliRunner()
CASES = ROOT.parent.parent / "shared" / "cases"  # /work/shared/cases beside the checkouts
PREVIOUS = b"the previous output, which a refused run must leave alone"


@pytest.fixture
def case(tmp_path):
    """The shared as_of_formats case (or an equivalent copy when the shared folder is not here)."""
    src = CASES / "as_of_formats"
    if src.exists():
        shutil.copytree(src, tmp_path / "case")
    else:
        (tmp_path / "case").mkdir()
        pd.DataFrame({"lead_id": ["L1", "L2"], "created_at": ["2026-09-01 10:00:00", "2026-09-05 12:00:00"],
                      "title": ["VP Marketing", "Marketing Student"]}).to_csv(tmp_path / "case" / "leads.csv", index=False)
        pd.DataFrame({"lead_id": ["L1"], "timestamp": ["2026-09-20 11:00:00"], "event_type": ["pricing_page"]}).to_csv(
            tmp_path / "case" / "events.csv", index=False)
    out = tmp_path / "scores.csv"
    out.write_bytes(PREVIOUS)
    return {"leads": tmp_path / "case" / "leads.csv", "events": tmp_path / "case" / "events.csv", "out": out}


def _score(case, *extra, model="models/none.joblib", out=None):
    return runner.invoke(app, ["score", "--model", str(model), "--leads", str(case["leads"]), "--events",
                               str(case["events"]), "--out", str(out or case["out"]), *extra])


def _refused(r, *words):
    assert r.exit_code == EXIT_USAGE, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    text = " ".join(r.output.split())
    for w in words:
        assert w in text, (w, r.output)


@pytest.mark.parametrize("as_of", ["01.10.2026", "09/10/2026", "garbage", "2026-13-01", "", "2026-10-01T25:00"])
def test_an_unreadable_or_ambiguous_as_of_is_refused_before_the_model_loads(case, as_of):
    r = _score(case, "--as-of", as_of, model="models:/no-such-model@nope")
    _refused(r, "--as-of", "ISO 8601")
    assert "no-such-model" not in r.output  # the model was never looked up
    assert case["out"].read_bytes() == PREVIOUS
    assert not case["out"].with_name("scores.rejects.csv").exists()
    if as_of in ("01.10.2026", "09/10/2026"):
        assert "ambiguous" in r.output


def test_features_refuses_an_unreadable_as_of_too(tmp_path):
    r = runner.invoke(app, ["features", "-p", str(ROOT / "params.yaml"), "--in", str(tmp_path), "--out",
                            str(tmp_path / "f"), "--as-of", "09/10/2026"])
    _refused(r, "--as-of", "ambiguous")
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize("args,words", [
    (["--explain", "some"], ["--explain", "all, mql, changed, none", "'some'"]),
    (["--explain", "changed"], ["--history"]),
    (["--shap-engine", "exact"], ["--shap-engine", "fast, lightgbm"]),
    (["--memory-limit", "lots"], ["--memory-limit", "768MB"]),
    (["--engine", "dask"], ["--engine"]),
    (["--max-reject-share", "5"], ["--max-reject-share"]),
    (["--chunk-size", "0"], ["--chunk-size"]),
])
def test_bad_option_values_are_refused_before_the_model_loads(case, args, words):
    r = _score(case, "--as-of", "2026-10-01", *args, model="models:/no-such-model@nope")
    _refused(r, *words)
    assert case["out"].read_bytes() == PREVIOUS


@pytest.mark.parametrize("name", ["scores.xlsx", "scores.json", "scores", "scores.csv.gz"])
def test_an_output_the_job_cannot_write_is_refused_before_the_model_loads(case, tmp_path, name):
    r = _score(case, "--as-of", "2026-10-01", model="models:/no-such-model@nope", out=tmp_path / name)
    _refused(r, "--out", ".csv or .parquet")
    assert not (tmp_path / name).exists()


def test_an_output_folder_is_refused(case, tmp_path):
    (tmp_path / "x.parquet").mkdir()
    _refused(_score(case, "--as-of", "2026-10-01", out=tmp_path / "x.parquet"), "is a folder")


def test_a_missing_model_file_is_a_message(case, tmp_path):
    _refused(_score(case, "--as-of", "2026-10-01", model=tmp_path / "scorer.joblib"), "--model", "no such file")
    _refused(_score(case, "--as-of", "2026-10-01", model=tmp_path / "nowhere"), "--model", "no such model folder")
    assert case["out"].read_bytes() == PREVIOUS


def test_an_unknown_alias_or_name_is_a_message_naming_what_exists(case, trained):
    r = _score(case, "--as-of", "2026-10-01", model="models:/leadscore@nope")
    _refused(r, "models:/leadscore@nope", "@challenger")
    r = _score(case, "--as-of", "2026-10-01", model="models:/no-such-model@champion")
    _refused(r, "models:/no-such-model@champion", "leadscore")
    assert case["out"].read_bytes() == PREVIOUS


def test_an_iso_as_of_with_an_offset_after_a_space_scores_the_case(case, trained):
    model = trained["tmp"] / "models" / "scorer.joblib"
    r = _score(case, "--as-of", "2026-10-01 02:00:00 +02:00", model=model)
    assert r.exit_code == 0, r.output
    out = pd.read_csv(case["out"])
    assert set(out["lead_id"]) == set(pd.read_csv(case["leads"])["lead_id"])  # all open, all created before
    assert (pd.to_datetime(out["as_of"]) == pd.Timestamp("2026-10-01 00:00:00")).all()


def test_keeping_an_output_column_or_an_empty_name_is_a_message(case):
    _refused(_score(case, "--as-of", "2026-10-01", "--keep", "name,points"), "--keep points", "already has")
    _refused(_score(case, "--as-of", "2026-10-01", "--keep", "name,,owner"), "--keep", "empty")
    # matched as headers are: 'Lead ID' is lead_id, 'Points' is points
    _refused(_score(case, "--as-of", "2026-10-01", "--keep", "Lead ID"), "--keep Lead ID", "'lead_id'")
    _refused(_score(case, "--as-of", "2026-10-01", "--keep", "Points"), "--keep Points", "'points'")
    assert case["out"].read_bytes() == PREVIOUS
