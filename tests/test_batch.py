"""Batch scoring: same results as the registered model, nothing lost, atomic output, history."""

import copy
import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from leadscore.batch import BatchError, load_scorer, score_leads
from leadscore.features import build_features

AS_OF = "2026-06-01T00:00:00"


@pytest.fixture(scope="module")
def job(trained):
    tmp = trained["tmp"]
    scorer = joblib.load(tmp / "models" / "scorer.joblib")
    return {"tmp": tmp, "scorer": scorer, "leads": tmp / "raw" / "leads.parquet", "events": tmp / "raw" / "events.parquet",
            "priority": tmp / "raw" / "priority_accounts.csv"}


def _run(job, out, **kw):
    return score_leads(job["scorer"], job["leads"], job["events"], out, as_of=kw.pop("as_of", AS_OF),
                       priority_path=job["priority"], **kw)


def test_every_lead_is_scored_or_rejected_with_a_reason(job, tmp_path):
    run = _run(job, tmp_path / "scores.parquet", chunk_size=300)
    out = pd.read_parquet(run.output)
    rejects = pd.read_csv(run.rejects)
    leads = pd.read_parquet(job["leads"])
    assert run.scored == len(out) and len(out) + run.rejected == len(leads) == run.leads_in
    assert set(out["lead_id"]) | set(rejects["lead_id"]) == set(leads["lead_id"])
    assert not set(out["lead_id"]) & set(rejects["lead_id"])
    assert rejects["reason"].notna().all()
    decided_before = leads[leads["outcome"].isin(["won", "lost"]) & (leads["outcome_at"] <= pd.Timestamp(AS_OF))]
    assert set(decided_before["lead_id"]) <= set(rejects["lead_id"])
    for col in ("lead_id", "probability", "points", "band", "fit_grade", "engagement_grade", "matrix_cell", "is_mql",
                "reasons", "reasons_text", "pushed_over_mql", "model_name", "model_version", "as_of", "scored_at"):
        assert col in out.columns, col
    assert (out["as_of"] == pd.Timestamp(AS_OF)).all()


def test_results_equal_the_registered_pyfunc_on_the_same_feature_rows(job, trained, tmp_path):
    import mlflow

    run = _run(job, tmp_path / "scores.parquet")
    out = pd.read_parquet(run.output).set_index("lead_id")
    build = build_features(job["tmp"] / "validated" / "leads.parquet", job["tmp"] / "validated" / "events.parquet",
                           tmp_path / "f", job["scorer"].feature_params,
                           priority_path=job["tmp"] / "validated" / "priority_accounts.parquet", as_of=AS_OF)
    table = pd.read_parquet(build.features).set_index("lead_id").loc[out.index].reset_index()
    served = mlflow.pyfunc.load_model(trained["result"]["mlflow"]["model_uri"]).predict(table)
    served.index = table["lead_id"]
    np.testing.assert_allclose(out["probability"], served["probability"], rtol=0, atol=1e-12)
    for col in ("points", "band", "matrix_cell", "is_mql", "reasons", "pushed_over_mql"):
        assert (out[col] == served[col]).all(), col


def test_registry_uri_and_joblib_load_the_same_scorer(trained):
    mine = trained["result"]["mlflow"]["version"]  # (other tests register later versions in the same store)
    scorer, name, version = load_scorer(f"models:/leadscore/{mine}")
    assert name == "leadscore" and version == mine
    assert scorer.mql_threshold == joblib.load(trained["tmp"] / "models" / "scorer.joblib").mql_threshold


def test_an_interrupted_run_leaves_the_previous_output_intact(job, tmp_path):
    out = tmp_path / "scores.parquet"
    _run(job, out)
    before = out.read_bytes()

    def boom(n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(job, out, chunk_size=50, progress=boom)
    assert out.read_bytes() == before
    assert not list(tmp_path.glob("*.partial"))
    assert gc.get_freeze_count() == 0  # the caller's heap is unfrozen again (memory.job_heap)


def test_a_killed_process_leaves_the_previous_output_intact(job, tmp_path):
    out = tmp_path / "scores.csv"
    _run(job, out)
    before = out.read_bytes()
    cmd = [str(Path(sys.executable).parent / "leadscore"), "score", "--model", str(job["tmp"] / "models" / "scorer.joblib"),
           "--leads", str(job["leads"]), "--events", str(job["events"]), "--as-of", AS_OF, "--out", str(out),
           "--chunk-size", "10", "--trust-model"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".scores.csv.*.partial")):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert out.read_bytes() == before


def test_a_model_whose_features_the_input_lacks_is_refused(job, tmp_path):
    other = job["scorer"].feature_params.model_copy(update={"windows_days": (14,)})
    with pytest.raises(BatchError, match=r"trained on \d+ feature\(s\) this input does not produce: .*_7d"):
        _run(job, tmp_path / "s.parquet", feature_params=other)
    assert not (tmp_path / "s.parquet").exists()


def test_too_many_broken_leads_fail_the_job_and_keep_the_previous_output(job, tmp_path):
    out = tmp_path / "scores.parquet"
    _run(job, out)
    before = out.read_bytes()
    leads = pd.read_parquet(job["leads"])
    leads["created_at"] = leads["created_at"].astype(str)
    leads.loc[: len(leads) // 5, "created_at"] = "garbage"
    leads.to_csv(tmp_path / "leads.csv", index=False)
    with pytest.raises(BatchError, match="broke the data contract"):
        score_leads(job["scorer"], tmp_path / "leads.csv", job["events"], out, as_of=AS_OF, max_reject_share=0.05)
    assert out.read_bytes() == before
    reasons = pd.read_csv(out.with_name("scores.rejects.csv"))["reason"]
    assert reasons.str.contains("created_at").sum() > 0 and reasons.str.contains("not a readable timestamp").sum() > 0


def test_explain_mql_gives_reasons_only_at_or_near_the_threshold(job, tmp_path):
    scorer = copy.copy(job["scorer"])
    scorer.mql_threshold = 60.0
    run = score_leads(scorer, job["leads"], job["events"], tmp_path / "s.parquet", as_of=AS_OF, explain="mql",
                      near_mql_points=5)
    out = pd.read_parquet(run.output)
    near = out["points"] >= 60 - 5
    assert (out.loc[near, "matrix_cell"] != "").all()
    assert (out.loc[~near, "reasons"] == '{"positive": [], "negative": []}').all()
    assert run.explained == near.sum() < len(out)


def test_history_reports_changes_and_reuses_unchanged_reasons(job, tmp_path):
    hist = tmp_path / "history"
    _run(job, tmp_path / "a.parquet", history_dir=hist, as_of="2026-05-31T00:00:00")
    second = _run(job, tmp_path / "b.parquet", history_dir=hist)  # compares with the previous as_of (31 May)
    b = pd.read_parquet(second.output)
    both = b[b["previous_points"].notna()]
    assert len(both) > 0
    np.testing.assert_allclose(both["points_change"], (both["points"] - both["previous_points"]).round(1), atol=0.051)
    moved = both[both["points_change"].abs() >= 3]
    assert len(moved) > 0
    reasons = json.loads(moved["change_reasons"].iloc[0])
    assert reasons and all({"feature", "sentence", "points"} <= set(r) for r in reasons)
    newly = b[b["newly_mql"]]
    assert (newly["is_mql"] & ~(newly["previous_points"] >= job["scorer"].mql_threshold)).all()
    # One microsecond later nothing a feature can see has changed (ages are kept to the thousandth of a
    # day): every lead reuses the 1 June run's scores and reasons.
    third = _run(job, tmp_path / "c.parquet", history_dir=hist, explain="changed", as_of="2026-06-01T00:00:00.000001")
    assert third.previous_as_of == "2026-06-01T00:00:00"
    assert third.reused == third.scored and third.explained == 0
    c = pd.read_parquet(third.output).set_index("lead_id")
    b = b.set_index("lead_id")
    assert (c.loc[b.index, "reasons"] == b["reasons"]).all()
    # The same features under a changed MQL threshold (or model, or scale): nothing is reused, every flag is
    # recomputed for the new threshold.
    moved_threshold = copy.copy(job["scorer"])
    moved_threshold.mql_threshold = job["scorer"].mql_threshold - 7
    fourth = score_leads(moved_threshold, job["leads"], job["events"], tmp_path / "d.parquet", as_of="2026-06-01T00:00:00.000002",
                         priority_path=job["priority"], history_dir=hist, explain="changed")
    assert fourth.reused == 0 and fourth.explained == fourth.scored
    d = pd.read_parquet(fourth.output)
    assert (d["is_mql"] == (d["points"] >= moved_threshold.mql_threshold)).all()
    # and the output reconciles: base + listed reasons + the rest = points
    for row in d.head(200).itertuples():
        r = json.loads(row.reasons)
        listed = sum(x["points"] for x in r["positive"] + r["negative"])
        assert row.base_points + listed + row.other_points + row.capped_points == pytest.approx(row.points, abs=0.051)


def test_rows_without_an_id_and_duplicates_of_decided_leads_are_each_one_reject(job, tmp_path):
    leads = pd.read_parquet(job["leads"]).head(300)
    decided = leads[leads["outcome"].isin(["won", "lost"]) & (leads["outcome_at"] <= pd.Timestamp(AS_OF))].iloc[0]
    messy = pd.concat([leads, leads.iloc[[1, 2]].assign(lead_id=None), decided.to_frame().T], ignore_index=True)
    messy.to_csv(tmp_path / "leads.csv", index=False)
    events = pd.read_parquet(job["events"])
    events[events["lead_id"].isin(leads["lead_id"])].to_parquet(tmp_path / "events.parquet", index=False)
    run = score_leads(job["scorer"], tmp_path / "leads.csv", tmp_path / "events.parquet", tmp_path / "s.parquet",
                      as_of=AS_OF, max_reject_share=0.5)
    rejects = pd.read_csv(run.rejects)
    assert run.leads_in == 303 and run.scored + run.rejected == 303
    assert (rejects["reason"] == "lead_id is missing").sum() == 2  # two input rows, two rejects
    dup = rejects[rejects["lead_id"] == decided["lead_id"]]["reason"].tolist()
    assert sorted(dup) == sorted(["duplicate lead_id (the first occurrence is kept)",
                                  f"already decided: {decided['outcome']}"])


def test_a_run_with_no_open_lead_writes_the_full_schema(job, tmp_path):
    leads = pd.read_parquet(job["leads"])
    later = leads[leads["created_at"] > pd.Timestamp(AS_OF)].head(20)
    later.to_parquet(tmp_path / "later.parquet", index=False)
    events = pd.read_parquet(job["events"])
    events[events["lead_id"].isin(later["lead_id"])].to_parquet(tmp_path / "events.parquet", index=False)
    some = score_leads(job["scorer"], job["leads"], job["events"], tmp_path / "some.parquet", as_of=AS_OF)
    none = score_leads(job["scorer"], tmp_path / "later.parquet", tmp_path / "events.parquet", tmp_path / "none.parquet",
                       as_of=AS_OF)
    assert none.scored == 0 and none.rejected == 20
    full, empty = pd.read_parquet(some.output), pd.read_parquet(none.output)
    assert len(empty) == 0 and empty.dtypes.astype(str).to_dict() == full.dtypes.astype(str).to_dict()


def test_custom_columns_the_model_does_not_use_are_not_carried(job, tmp_path):
    plain = score_leads(job["scorer"], job["leads"], job["events"], tmp_path / "a.parquet", as_of=AS_OF)
    leads = pd.read_parquet(job["leads"]).assign(x_synced_at=pd.Timestamp("2026-01-01").as_unit("ns"),
                                                 x_tags=[["a", "b"]] * len(pd.read_parquet(job["leads"])))
    leads.to_parquet(tmp_path / "leads.parquet", index=False)
    extra = score_leads(job["scorer"], tmp_path / "leads.parquet", job["events"], tmp_path / "b.parquet", as_of=AS_OF)
    a, b = pd.read_parquet(plain.output), pd.read_parquet(extra.output)
    pd.testing.assert_frame_equal(a.drop(columns="scored_at"), b.drop(columns="scored_at"))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_kept_export_columns_match_ids_as_the_contract_does_and_names_loosely(tmp_path, suffix):
    from leadscore.batch import export_columns

    export = pd.DataFrame({"lead_id": ["1", "2.0", "2", " 3 "], "Lead Owner": ["ana", "=x", "dup", ""],
                           "Company": ["A", "B", "C", "D"]})
    path = tmp_path / f"leads{suffix}"
    export.to_parquet(path, index=False) if suffix == ".parquet" else export.to_csv(path, index=False)
    kept = export_columns(path, ["lead_owner", "Company"])
    assert kept.to_dict() == {"lead_owner": {"1": "ana", "2": "=x", "3": None}, "Company": {"1": "A", "2": "B", "3": "D"}}
    with pytest.raises(BatchError, match="no column 'title'.*Lead Owner"):
        export_columns(path, ["title"])


@pytest.mark.parametrize("broken", ["created_at", "lead_id"])
def test_an_export_whose_every_lead_breaks_the_contract_is_refused_with_its_rejects_or_scores_nothing(
        job, tmp_path, broken):
    """Every lead rejected (US-style dates the contract refuses; or no ids): by default the job stops on the
    contract (BatchError, exit 4 from the CLI, no traceback), before the fit check would call the export
    "without events" and before the feature build would find no timestamp; every row is in the rejects
    with its reason and the previous output is untouched. Allowed (--max-reject-share 1), it writes the
    empty output with the full schema and every row rejected."""
    from typer.testing import CliRunner

    from leadscore.cli import EXIT_BATCH, app

    leads = pd.read_parquet(job["leads"]).head(12)
    leads["created_at"] = leads["created_at"].dt.strftime("%m/%d/%Y %I:%M %p") if broken == "created_at" \
        else leads["created_at"].astype(str)
    if broken == "lead_id":
        leads["lead_id"] = ""
    leads.to_csv(tmp_path / "leads.csv", index=False)
    out = tmp_path / "scores.parquet"
    previous = _run(job, out)
    before = out.read_bytes()
    with pytest.raises(BatchError, match=r"12 of 12 leads \(100.0%\) broke the data contract.*--max-reject-share"):
        score_leads(job["scorer"], tmp_path / "leads.csv", job["events"], out, as_of=AS_OF)
    assert out.read_bytes() == before
    rejects = pd.read_csv(out.with_name("scores.rejects.csv"))
    lead_rows = rejects[rejects["file"] == str(tmp_path / "leads.csv")]
    assert sorted(lead_rows["row"].astype(int)) == list(range(1, 13)) and lead_rows["reason"].notna().all()
    assert lead_rows["column"].eq(broken).all()
    r = CliRunner().invoke(app, ["score", "--model", str(job["tmp"] / "models" / "scorer.joblib"), "--trust-model", "--leads",
                                 str(tmp_path / "leads.csv"), "--events", str(job["events"]), "--as-of", AS_OF,
                                 "--out", str(out)])
    assert r.exit_code == EXIT_BATCH and "broke the data contract" in r.output and "Traceback" not in r.output
    allowed = score_leads(job["scorer"], tmp_path / "leads.csv", job["events"], tmp_path / "none.parquet",
                          as_of=AS_OF, max_reject_share=1.0, allow_unfit=True)
    assert (allowed.leads_in, allowed.scored, allowed.rejected) == (12, 0, 12)
    empty, full = pd.read_parquet(allowed.output), pd.read_parquet(previous.output)
    assert len(empty) == 0 and empty.dtypes.astype(str).to_dict() == full.dtypes.astype(str).to_dict()
