"""The train stage end to end on a small funnel: metrics, plots, MLflow run and registered pyfunc."""

import base64
import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest



def test_metrics_file_has_the_keys_dvc_and_users_read(trained):
    m = json.loads((trained["tmp"] / "reports" / "metrics.json").read_text())
    for scorer, key in [("model", "roc_auc"), ("model", "pr_auc"), ("model", "log_loss"), ("model", "brier"),
                        ("model", "ece"), ("baseline", "roc_auc"), ("baseline", "pr_auc"), ("truth", "roc_auc"),
                        ("model", "wins_captured_top10"), ("model", "lift_top20")]:
        assert isinstance(m[scorer][key], float), (scorer, key)
    assert m["split"]["n_test"] > 0 and m["split"]["n_train"] > m["split"]["n_test"]


def test_model_learns_and_beats_chance_and_stays_below_the_truth(trained):
    m = trained["result"]["metrics"]
    assert 0.75 < m["model"]["roc_auc"] <= m["truth"]["roc_auc"] + 0.02
    assert m["model"]["ece"] < 0.08


def test_plot_data_and_figures_are_written(trained):
    reports = trained["tmp"] / "reports"
    for curve in ("roc", "precision_recall", "reliability", "gains"):
        for scorer in ("model", "baseline"):
            df = pd.read_csv(reports / "plots" / f"{curve}_{scorer}.csv")
            assert len(df) > 1
        assert (reports / "figures" / f"{curve}.png").stat().st_size > 5000
    gains = pd.read_csv(reports / "plots" / "gains_model.csv")
    assert gains["share_of_wins"].is_monotonic_increasing and gains["share_of_wins"].iloc[-1] == pytest.approx(1)


def test_registered_pyfunc_reloads_and_gives_the_same_probabilities(trained):
    import mlflow

    logged = trained["result"]["mlflow"]
    model = mlflow.pyfunc.load_model(logged["model_uri"])
    # every 8th snapshot row: every period, lead age and calibration step, an eighth of the scoring time
    table = pd.read_parquet(trained["tmp"] / "features" / "features.parquet").iloc[::8].reset_index(drop=True)
    local = joblib.load(trained["tmp"] / "models" / "model.joblib")
    served = model.predict(table)
    # the served probability is shown to 4 decimals (within 0.0001-0.9999)
    np.testing.assert_allclose(served["probability"].to_numpy(), np.clip(local.predict_proba(table), 1e-4, 1 - 1e-4),
                               rtol=0, atol=5e-5 + 1e-12)
    assert model.metadata.get_input_schema() is not None
    scorer = joblib.load(trained["tmp"] / "models" / "scorer.joblib")
    pd.testing.assert_frame_equal(served.drop(columns="lead_id"), scorer.score(table).reset_index(drop=True))
    assert list(served.columns) == ["lead_id", "probability", "points", "band", "fit_grade", "engagement_grade",
                                    "matrix_cell", "is_mql", "reasons", "pushed_over_mql", "base_points",
                                    "other_points", "capped_points"]
    assert served["lead_id"].tolist() == table["lead_id"].tolist()


def test_run_holds_params_metrics_lineage_and_the_challenger_alias(trained):
    import mlflow

    client = mlflow.MlflowClient()
    run = client.get_run(trained["result"]["mlflow"]["run_id"])
    assert run.data.params["train.learning_rate"] == str(trained["params"].train.learning_rate)
    assert "baseline.behavior.pricing_page.points" in run.data.params
    assert run.data.metrics["model.roc_auc"] == pytest.approx(trained["result"]["metrics"]["model"]["roc_auc"])
    assert "baseline.roc_auc" in run.data.metrics
    assert len(run.data.tags["features_md5"]) == 32 and "git_commit" in run.data.tags
    mine = client.get_model_version("leadscore", trained["result"]["mlflow"]["version"])
    assert mine.run_id == run.info.run_id
    latest = client.get_model_version_by_alias("leadscore", "challenger")  # later runs move it forward
    assert int(latest.version) >= int(mine.version)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    figures = sorted((trained["tmp"] / "reports" / "figures").glob("*.png"))
    assert "plots/reliability.png" in artifacts and {f"plots/{f.name}" for f in figures} <= artifacts
    # each figure drawn once: MLflow's copy and the report's embedded image are the file's bytes
    logged = Path(client.download_artifacts(run.info.run_id, "plots/drivers_bar.png"))
    drivers = trained["tmp"] / "reports" / "figures" / "drivers_bar.png"
    assert logged.read_bytes() == drivers.read_bytes()
    page = (trained["tmp"] / "outputs" / "report.html").read_text(encoding="utf-8")
    assert base64.b64encode(drivers.read_bytes()).decode() in page


# (Training is deterministic: tests/test_batch_operator.py::test_same_seed_same_bytes_across_hash_seeds runs
# the whole pipeline twice, under two hash seeds, and compares every output byte for byte.)

LOAD_WITHOUT_TRAINING_LIBRARIES = r"""
import importlib.abc, json, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("lightgbm", "sklearn"):
            raise ImportError(f"scoring imported {name}")
        return None

sys.meta_path.insert(0, Refuse())
import joblib, pandas as pd
scorer = joblib.load(sys.argv[1])
table = pd.read_parquet(sys.argv[2])
out = scorer.score(table, text=True)
out["raw_margin"] = scorer.model.raw_margin(table)
out["base"] = scorer.base_points()
out.to_parquet(sys.argv[3])
print(json.dumps({"leak": [m for m in ("lightgbm", "sklearn") if m in sys.modules]}))
"""


def test_a_loaded_scorer_scores_and_explains_without_lightgbm_or_scikit_learn(trained, tmp_path):
    """A fresh process loads the scorer and scores, explains and writes reasons with LightGBM and
    scikit-learn refused at import (about a second of every cold start; Numba loads a few SciPy modules of
    its own when SciPy is installed); its raw margin is the booster's to the bit, so probability and points
    are those of the trained model, and its reasons LightGBM's own."""
    import subprocess
    import sys

    table = pd.read_parquet(trained["tmp"] / "features" / "features.parquet").iloc[::5].reset_index(drop=True)
    table.to_parquet(tmp_path / "rows.parquet")
    scorer_file = trained["tmp"] / "models" / "scorer.joblib"
    res = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_TRAINING_LIBRARIES, str(scorer_file),
                          str(tmp_path / "rows.parquet"), str(tmp_path / "out.parquet")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"leak": []}
    fresh = pd.read_parquet(tmp_path / "out.parquet")

    scorer = joblib.load(scorer_file)
    booster = scorer.model.booster  # unpickled on demand, here
    trees = booster.predict(scorer.model.prepare(table), raw_score=True)
    prior = scorer.model.prior  # small-data mode (the test's funnel is small): the rule prior's margin too
    np.testing.assert_array_equal(fresh["raw_margin"].to_numpy(), trees if prior is None else trees + prior.margin(table))
    by_lightgbm = scorer.score(table, engine="lightgbm", text=True)
    np.testing.assert_array_equal(fresh["probability"].to_numpy(), by_lightgbm["probability"].to_numpy())
    np.testing.assert_allclose(fresh["points"].to_numpy(), by_lightgbm["points"].to_numpy(), atol=0.1 + 1e-9)
    assert (fresh["points"].to_numpy() == by_lightgbm["points"].to_numpy()).mean() > 0.999
    assert fresh["base"].iloc[0] == pytest.approx(scorer.base_points(), abs=1e-9)
    same = fresh["points"].to_numpy() == by_lightgbm["points"].to_numpy()
    assert (fresh["reasons"][same] == by_lightgbm["reasons"][same]).mean() > 0.99


def test_a_model_pickled_by_the_earlier_version_loads_and_predicts_the_same(trained):
    """Scorers registered before the booster was kept as bytes (booster and scikit-learn calibration
    pickled as themselves) still load, and predict what the current form predicts."""
    from leadscore.model import LeadScoreModel, MarginCalibrator

    model = joblib.load(trained["tmp"] / "models" / "model.joblib")
    table = pd.read_parquet(trained["tmp"] / "features" / "features.parquet").iloc[::7].reset_index(drop=True)
    rows = table.sample(2000, random_state=0) if len(table) > 2000 else table
    cal = model.calibrator
    refit = MarginCalibrator(cal.method).fit(model.raw_margin(rows), rows["label"].fillna(0).astype(int))
    old_cal = MarginCalibrator.__new__(MarginCalibrator)
    old_cal.__setstate__({"method": refit.method, "map_": refit.map_})  # the earlier pickled state
    old = LeadScoreModel.__new__(LeadScoreModel)
    state = {k: v for k, v in model.__dict__.items() if not k.startswith("_")}
    old.__setstate__({**state, "booster": model.booster, "calibrator": old_cal})
    assert old.booster is model.booster
    np.testing.assert_array_equal(old.raw_margin(table), model.raw_margin(table))
    np.testing.assert_array_equal(old.predict_proba(table), refit.predict(model.raw_margin(table)))
    if refit.method == "sigmoid":
        a, b = refit.line_
        np.testing.assert_allclose(refit.predict(model.raw_margin(table)),
                                   refit.map_.predict_proba(model.raw_margin(table).reshape(-1, 1))[:, 1], rtol=1e-12)
