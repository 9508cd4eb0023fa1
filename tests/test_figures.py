"""README figures come from the run: the generated block equals the committed metrics."""

import json

import pytest

from leadscore.figures import (
    BENCH_END,
    BENCH_START,
    END,
    START,
    current_block,
    render,
    render_benchmarks,
    replace_block,
    update_readme,
)
from tests.helpers import ROOT

METRICS = {
    "model": {"roc_auc": 0.85, "pr_auc": 0.31, "log_loss": 0.12, "ece": 0.0047, "ece_noise": {"mean": 0.0022},
              "auc_share_of_truth": 0.973, "auc_by_age": {"0-7 days": 0.86}},
    "baseline": {"roc_auc": 0.82, "pr_auc": 0.2, "log_loss": 0.13, "ece": 0.01},
    "truth": {"roc_auc": 0.876, "pr_auc": 0.35, "log_loss": 0.11, "ece": 0.003},
    "split": {"n_test": 31683, "leads_test": 3630, "n_train": 64635, "leads_train": 4292},
    "labels": {"labelled": 274674, "censored": 125578},
    "calibration_by_age": {"0-7 days": {"rows": 1453, "observed": 0.1225, "model_predicted": 0.1057,
                                        "model_gap": -0.0168}},
    "mql": {"threshold": 68.0, "model_new_mqls_per_week": 25.3, "model_win_rate": 0.526,
            "baseline_new_mqls_per_week": 24.3, "baseline_win_rate": 0.404, "baseline_same_volume_win_rate": 0.39},
}


def test_the_block_says_what_the_metrics_say():
    block = render(METRICS)
    assert block.startswith(START) and block.endswith(END)
    assert "| model | 0.850 | 0.310 | 0.1200 | 0.0047 (0.0022) |" in block
    assert "97.3% of the truth's" in block and "| 0-7 days | 1,453 | 12.2% | 10.6% | -0.017 |" in block
    assert "25.3 new MQLs a week" in block and "39.0% at the model's volume" in block


def test_a_stale_block_is_found_and_rewritten(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps(METRICS))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold figures\n{END}\nrest\n")
    assert not update_readme(readme, tmp_path / "m.json", write=False)
    assert "old figures" in readme.read_text()
    update_readme(readme, tmp_path / "m.json", write=True)
    assert update_readme(readme, tmp_path / "m.json", write=False)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\nrest\n") and "old figures" not in text
    with pytest.raises(ValueError):
        replace_block("no markers", render(METRICS))


def test_readme_figures_match_the_committed_metrics():
    metrics = ROOT / "reports" / "metrics.json"
    if not metrics.exists():
        pytest.skip("reports/metrics.json is not committed in this checkout")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert current_block(readme) == render(json.loads(metrics.read_text())), "README figures are stale: make figures"


VALIDATE = {"leads": 1000, "events": 98000, "runs": [
    {"seconds": 2.0, "rows": 98000, "rejected": 0, "peak_gib": 0.384, "format": "parquet", "order": "keep",
     "version": "this commit", "cpus": 2, "load_avg_1min": 1.5}]}
SCORE = {"leads": 1000, "engine": "local", "chunk": 500, "modes": {
    "none": {"seconds": 4.0, "scored": 1000, "peak_gib": 0.5, "load_avg_1min": [0.4, 1.2],
             "stages": [{"stage": "validate events", "seconds": 1.5, "peak_gib": 0.3}]},
    "all": {"seconds": 8.0, "scored": 1000, "peak_gib": 0.75, "load_avg_1min": [1.2, 1.9],
            "stages": [{"stage": "validate events", "seconds": 1.25, "peak_gib": 0.3},
                       {"stage": "SHAP", "seconds": 2.0, "peak_gib": 0.7}]}}}


def test_the_benchmark_block_says_what_the_benchmark_json_says(tmp_path):
    (tmp_path / "validate_1000.json").write_text(json.dumps(VALIDATE))
    (tmp_path / "score_1000.json").write_text(json.dumps(SCORE))
    block = render_benchmarks(tmp_path)
    assert block.startswith(BENCH_START) and block.endswith(BENCH_END)
    assert "| 98,000 | parquet | keep | this commit | 2.0 | 49,000 | 0.38 | 1.5 |" in block
    assert "| validate events | 1.50 (0.30) | 1.25 (0.30) |" in block
    assert "| SHAP | – | 2.00 (0.70) |" in block  # a stage one mode did not run
    assert "**4.0** (0.50), 250 leads/s, load 0.4–1.2" in block and "**8.0** (0.75), 125 leads/s" in block
    # a new figure in the JSON makes the README stale until `make figures`
    readme = tmp_path / "README.md"
    (tmp_path / "m.json").write_text(json.dumps(METRICS))
    readme.write_text(f"{START}\n{END}\n\n{BENCH_START}\n{BENCH_END}\n")
    update_readme(readme, tmp_path / "m.json", write=True, bench_dir=tmp_path)
    assert update_readme(readme, tmp_path / "m.json", write=False, bench_dir=tmp_path)
    later = json.loads(json.dumps(SCORE))
    later["modes"]["all"]["seconds"] = 9.0
    (tmp_path / "score_1000.json").write_text(json.dumps(later))
    assert not update_readme(readme, tmp_path / "m.json", write=False, bench_dir=tmp_path)


def test_readme_benchmark_figures_match_the_committed_benchmark_json():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert current_block(readme, BENCH_START, BENCH_END) == render_benchmarks(ROOT / "benchmarks" / "results"), \
        "README benchmark figures are stale: make figures"


def test_mlflow_runs_are_named_by_what_they_are(monkeypatch):
    import pandas as pd

    from leadscore.tracking import run_name

    now = pd.Timestamp("2026-11-30 07:40", tz="UTC")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    a = run_name({"train": {"learning_rate": 0.03}}, {"git_commit": "1a2b3c4d5e"}, now)
    b = run_name({"train": {"learning_rate": 0.05}}, {"git_commit": "1a2b3c4d5e"}, now)
    assert a.startswith("train · params ") and a.endswith("· 1a2b3c4d · 2026-11-30 07:40") and a != b
    monkeypatch.setenv("DVC_EXP_NAME", "exp-3f2a1")
    assert run_name({}, {}, now).startswith("train · exp-3f2a1 · params ")
