"""The commands users and DVC call: outputs, reconciled counts, exit codes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from leadscore.cli import EXIT_CONTRACT, app
from tests.helpers import ROOT, small_params

runner = CliRunner()


def _params_file(tmp: Path, **changes) -> Path:
    params = small_params(tmp, n_leads=200, events_per_lead=15)
    raw = params.model_dump(by_alias=True)
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        raw[section][key] = value
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_synth_validate_features_end_to_end(tmp_path):
    p = str(_params_file(tmp_path))
    r = runner.invoke(app, ["synth", "-p", p, "--out", str(tmp_path / "raw"), "--truth-out", str(tmp_path / "truth")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["validate", "-p", p, "--out", str(tmp_path / "validated")])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "validated" / "report.json").read_text())
    leads_report = report["files"][0]
    assert leads_report["rows_in"] == 200 == leads_report["rows_valid"] + leads_report["rows_rejected"]
    r = runner.invoke(app, ["features", "-p", p, "--in", str(tmp_path / "validated"),
                            "--out", str(tmp_path / "features")])
    assert r.exit_code == 0, r.output
    feats = pd.read_parquet(tmp_path / "features" / "features.parquet")
    excluded = pd.read_csv(tmp_path / "features" / "exclusions.csv")
    assert feats["lead_id"].nunique() + len(excluded) == 200
    assert "200 leads" in r.output


def test_validate_exits_3_with_the_file_and_column_on_bad_input(tmp_path):
    bad = tmp_path / "leads.csv"
    pd.DataFrame({"lead_id": ["a"], "created": ["2025-01-01"]}).to_csv(bad, index=False)
    p = str(_params_file(tmp_path, **{"data.leads": str(bad), "data.events": None, "data.priority_accounts": None}))
    r = runner.invoke(app, ["validate", "-p", p, "--out", str(tmp_path / "v")])
    assert r.exit_code == EXIT_CONTRACT
    assert "leads.csv" in r.output and "created_at" in r.output


def test_messages_off_a_terminal_keep_paths_whole(tmp_path):
    # A scheduler's log is not a terminal: rich would break lines at 80 columns and cut a long path in two.
    deep = tmp_path / ("exports-of-the-marketing-automation-system-" * 3) / "nightly" / "leads-2026-11-30.csv"
    deep.parent.mkdir(parents=True)
    pd.DataFrame({"lead_id": ["a"], "created": ["2025-01-01"]}).to_csv(deep, index=False)
    p = str(_params_file(tmp_path, **{"data.leads": str(deep), "data.events": None, "data.priority_accounts": None}))
    r = runner.invoke(app, ["validate", "-p", p, "--out", str(tmp_path / "v")])
    assert r.exit_code == EXIT_CONTRACT and len(str(deep)) > 160
    assert str(deep) in r.output, r.output


def test_validate_writes_rejects_before_failing_on_too_many(tmp_path):
    p = _params_file(tmp_path)
    runner.invoke(app, ["synth", "-p", str(p), "--out", str(tmp_path / "raw"), "--truth-out", str(tmp_path / "t")])
    events = pd.read_parquet(tmp_path / "raw" / "events.parquet")
    events.loc[events.index[:100], "event_type"] = "pageview"
    events.to_parquet(tmp_path / "raw" / "events.parquet")
    r = runner.invoke(app, ["validate", "-p", str(p), "--out", str(tmp_path / "v")])
    assert r.exit_code == EXIT_CONTRACT and "unknown event_type" in r.output
    rejects = pd.read_csv(tmp_path / "v" / "rejects.csv")
    assert (rejects["reason"] == "unknown event_type").sum() == 100


def test_a_leads_only_export_builds_fit_features(tmp_path):
    p = _params_file(tmp_path)
    runner.invoke(app, ["synth", "-p", str(p), "--out", str(tmp_path / "raw"), "--truth-out", str(tmp_path / "t")])
    p = _params_file(tmp_path, **{"data.events": None, "data.priority_accounts": None})
    assert runner.invoke(app, ["validate", "-p", str(p), "--out", str(tmp_path / "v")]).exit_code == 0
    r = runner.invoke(app, ["features", "-p", str(p), "--in", str(tmp_path / "v"), "--out", str(tmp_path / "f")])
    assert r.exit_code == 0, r.output
    feats = pd.read_parquet(tmp_path / "f" / "features.parquet")
    assert (feats["pricing_page_30d"] == 0).all() and feats["seniority"].nunique() > 3


def test_every_command_documents_its_options():
    for cmd, option in (("synth", "--truth-out"), ("validate", "--out"), ("features", "--as-of")):
        r = runner.invoke(app, [cmd, "--help"])
        assert r.exit_code == 0 and option in r.output


@pytest.mark.slow
def test_dvc_repro_on_a_fresh_clone_then_nothing_to_do(tmp_path):
    """`dvc repro` builds data/ from scratch; a second run finds everything up to date."""
    work = tmp_path / "repo"
    # Not copied: what the test session itself writes in the checkout while this runs (another pytest-xdist
    # worker's Hypothesis examples, numba's kernel cache, Spark's warehouse folder): a file replaced or
    # removed mid-copy would fail the copy. The `leadscore` command runs the installed package, not the copy.
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(".venv", "data", ".git", "*.pyc", ".pytest_cache",
                                                              "mlruns", "mlflow.db", "reports", "outputs",
                                                              "models", "cache", "tmp", ".hypothesis",
                                                              "__pycache__", "spark-warehouse", "metastore_db"))
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(work / "params.yaml") as params:  # as `dvc exp run -S` would: the committed form stays
        params["synth"].update(n_leads=1500, events_per_lead=8, chunk_leads=1500)
        # This test is about DVC (stages, caching, `exp run -S`, `exp show`), not model quality: a short
        # boosting run with early stopping and no rolling-origin folds keeps `train` (run twice) short.
        # 1,500 leads would otherwise be near train.small_data_leads: small-data mode has its own fixed
        # learning rate (model.SMALL_DATA_TREES), so the experiment's `-S train.learning_rate=0.05` would
        # change nothing it trains; the standard path uses it.
        params["train"].update(small_data_leads=0, small_data_wins=0, n_estimators=300, early_stopping_rounds=20,
                               cv_folds=0)
    dvc = str(Path(shutil.which("dvc") or ROOT / ".venv" / "bin" / "dvc"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # the `leadscore` command
    def run(*args):
        done = subprocess.run(args, cwd=work, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    run("git", "init", "-q")
    first = run(dvc, "repro")
    assert (work / "data" / "features" / "features.parquet").exists()
    assert (work / "data" / "validated" / "rejects.csv").exists()
    mtime = (work / "data" / "features" / "features.parquet").stat().st_mtime_ns
    second = run(dvc, "repro")
    assert "up to date" in second.stdout.lower(), second.stdout
    assert (work / "data" / "features" / "features.parquet").stat().st_mtime_ns == mtime
    assert "Running stage 'features'" in first.stdout and "Running stage 'train'" in first.stdout
    assert (work / "reports" / "metrics.json").exists() and (work / "outputs" / "report.html").exists()

    # The data scientist's loop: commit, run an experiment, compare both side by side.
    assert "reports/metrics.json" in run("git", "status", "--porcelain", "--untracked-files=all").stdout
    run("git", "add", "-A")
    run("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "baseline")
    before = (work / "params.yaml").read_text()
    run(dvc, "exp", "run", "-S", "train.learning_rate=0.05")
    after = (work / "params.yaml").read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(before.splitlines()) == len(after.splitlines()) and len(changed) == 1, changed  # only that line
    shown = json.loads(run(dvc, "exp", "show", "--json").stdout)
    aucs = []

    def walk(node):
        if isinstance(node, dict):
            m = node.get("metrics", {}).get("reports/metrics.json", {}).get("data", {})
            if isinstance(m.get("model", {}).get("roc_auc"), float):
                aucs.append(m["model"]["roc_auc"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(shown)
    assert len(aucs) >= 2, shown  # the committed run and the experiment, both with numbers


def test_report_writes_todays_page_and_refuses_a_file_that_is_not_a_scores_output(tmp_path):
    reasons = json.dumps({"positive": [{"feature": "demo", "sentence": "Demo request: 1 in the last 90 days",
                                        "points": 9.0}], "negative": []})
    pd.DataFrame({"lead_id": ["L1", "L2"], "probability": [0.2, 0.01], "points": [70.0, 20.0], "band": ["A", "D"],
                  "matrix_cell": ["A1", "C3"], "is_mql": [True, False], "reasons": [reasons, reasons],
                  "pushed_over_mql": ["[]", "[]"], "base_points": [50.0, 50.0], "other_points": [11.0, -39.0],
                  "capped_points": [0.0, 0.0], "owner": ["ana", "=cmd|' /C calc'!A0"], "model_name": "leadscore",
                  "model_version": "4", "as_of": pd.Timestamp("2026-06-01"), "scored_at": pd.Timestamp("2026-06-01")}
                 ).to_parquet(tmp_path / "scores.parquet", index=False)
    r = runner.invoke(app, ["report", "--scores", str(tmp_path / "scores.parquet")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "scores.html").read_text()
    assert "leadscore version 4" in page and "For analysts" in page and '"owner"' in page
    (tmp_path / "other.parquet").write_bytes(b"not parquet")
    r = runner.invoke(app, ["report", "--scores", str(tmp_path / "other.parquet"), "--out", str(tmp_path / "o.html")])
    assert r.exit_code == 2 and "not a `leadscore score` output" in r.output and not (tmp_path / "o.html").exists()
    r = runner.invoke(app, ["report", "--scores", str(tmp_path / "scores.parquet"), "--out", str(tmp_path / "o.txt")])
    assert r.exit_code == 2
