"""The train stage end to end on a small funnel: metrics, plots, MLflow run and registered pyfunc."""

import json

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
    assert "plots/reliability.png" in artifacts


# (Training is deterministic: tests/test_batch_operator.py::test_same_seed_same_bytes_across_hash_seeds runs
# the whole pipeline twice, under two hash seeds, and compares every output byte for byte.)