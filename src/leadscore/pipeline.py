"""The pipeline stages as functions: read params, call the library, write files. The CLI (and so DVC)
calls these; they know nothing of the command line."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from leadscore import contract, features, synth
from leadscore.config import Params


def run_synth(params: Params, out_dir: str | Path, truth_dir: str | Path, progress=None) -> synth.SynthPaths:
    return synth.generate(params.synth, params.seed, out_dir, truth_dir,
                          competitor_domains=params.features.competitor_domains, progress=progress)


def run_validate(params: Params, out_dir: str | Path) -> list[contract.FileReport]:
    """Validate the configured inputs into ``out_dir``: valid leads/events, rejects.csv, report.json.

    Raises :class:`contract.ContractError` when a file breaks the contract or loses too many rows;
    rejects.csv and report.json are written first so the user can see every rejected row.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rejects_path, report_path = out / "rejects.csv", out / "report.json"
    leads, lead_rejects, lead_report = contract.validate_leads(params.data.leads)
    leads.to_parquet(out / "leads.parquet", index=False, compression="zstd")
    reports, rejects = [lead_report], [lead_rejects]
    if params.data.events:
        ev_rejects, ev_report = contract.validate_events(params.data.events, leads, lead_rejects, out / "events.parquet")
        reports.append(ev_report)
        rejects.append(ev_rejects)
    else:
        (out / "events.parquet").unlink(missing_ok=True)
    priority = contract.read_priority_accounts(params.data.priority_accounts)
    priority.to_parquet(out / "priority_accounts.parquet", index=False)

    all_rejects = pd.concat([r for r in rejects if len(r)] or [rejects[0]], ignore_index=True)
    all_rejects.to_csv(rejects_path, index=False)
    report_path.write_text(json.dumps({"files": [asdict(r) for r in reports],
                                       "priority_accounts": len(priority)}, indent=2, default=str))
    for r in reports:
        contract.enforce_reject_share(all_rejects, r, params.validate_.max_reject_share, rejects_path)
    return reports


def run_features(params: Params, validated_dir: str | Path, out_dir: str | Path,
                 as_of: str | None = None) -> features.FeatureBuild:
    v = Path(validated_dir)
    events = v / "events.parquet"
    return features.build_features(v / "leads.parquet", events if events.exists() else None, out_dir,
                                   params.features, priority_path=v / "priority_accounts.parquet", as_of=as_of)


def run_train(params: Params, features_dir: str | Path, models_dir: str | Path, reports_dir: str | Path,
              log_to_mlflow: bool = True) -> dict:
    """Split by time, train and calibrate LightGBM, fit the rule baseline's probability map, evaluate
    both (and the truth, on synthetic data) on the test quarter, write metrics/plots/model, log to MLflow."""
    import joblib
    import numpy as np

    from leadscore import evaluate
    from leadscore.baseline import RuleBaseline
    from leadscore.model import time_split, train_model

    features_path = Path(features_dir) / "features.parquet"
    models_dir, reports_dir = Path(models_dir), Path(reports_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    reports_dir.mkdir(parents=True, exist_ok=True)
    table, meta = features.load_feature_table(features_path)
    split = time_split(table, params.split)
    model = train_model(split, meta, params.train, params.seed)
    baseline = RuleBaseline(params.baseline).fit(split.calibration, split.calibration["label"])

    test = split.test
    y = test["label"].to_numpy()
    scores = {"model": model.predict_proba(test), "baseline": baseline.predict_proba(test)[:, 1],
              "model_uncalibrated": 1 / (1 + np.exp(-model.raw_margin(test)))}
    truth_path = Path(params.train.truth) if params.train.truth else None
    if truth_path is not None and truth_path.exists():
        truth = test[["lead_id"]].merge(pd.read_parquet(truth_path), on="lead_id", how="left")["true_probability"]
        if truth.notna().all():
            scores["truth"] = truth.to_numpy()
    metrics = {name: evaluate.score_metrics(y, p) for name, p in scores.items()}
    deciles = pd.concat([evaluate.decile_table(y, p).assign(scorer=name) for name, p in scores.items()])
    for m in metrics.values():
        m.pop("win_rate_by_decile")
    mql = baseline.predict(test).astype(bool)
    metrics["baseline"].update(mql_share=float(mql.mean()), mql_win_rate=float(y[mql].mean()) if mql.any() else 0.0)
    if "truth" in metrics:
        metrics["model"]["auc_share_of_truth"] = metrics["model"]["roc_auc"] / metrics["truth"]["roc_auc"]
    metrics["split"] = {k: v for k, v in split.boundaries.items() if not k.endswith(("_from", "_to"))}
    metrics["calibration"] = {k: v for k, v in model.info["calibration"].items() if k != "method"}
    metrics["model"]["best_iteration"] = model.info["best_iteration"]

    (reports_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    summary = {"calibration_method": model.info["calibration"]["method"], "split": split.boundaries}
    (reports_dir / "training.json").write_text(json.dumps(summary, indent=2))
    deciles.to_csv(reports_dir / "deciles.csv", index=False)
    all_curves = {name: evaluate.curves(y, p) for name, p in scores.items() if name != "model_uncalibrated"}
    evaluate.write_plot_data(all_curves, reports_dir / "plots")
    figs = evaluate.figures(all_curves)
    (reports_dir / "figures").mkdir(exist_ok=True)
    for name, fig in figs.items():
        fig.savefig(reports_dir / "figures" / f"{name}.png")
    joblib.dump(model, models_dir / "model.joblib")
    joblib.dump(baseline, models_dir / "baseline.joblib")

    result = {"metrics": metrics, "summary": summary, "model_path": models_dir / "model.joblib"}
    if log_to_mlflow:
        from leadscore import tracking

        logged = tracking.log_training_run(
            params=params.model_dump(by_alias=True), metrics={**metrics, "training": summary},
            model_path=models_dir / "model.joblib",
            input_example=tracking.model_input_example(test, model.feature_names), figures=figs,
            artifacts={"reports": reports_dir / "deciles.csv", "baseline": models_dir / "baseline.joblib"},
            tags={**tracking.lineage_tags(features_path), "calibration_method": summary["calibration_method"]},
            experiment=params.mlflow.experiment, registered_model=params.mlflow.registered_model)
        (reports_dir / "mlflow_run.json").write_text(json.dumps(logged, indent=2))
        result["mlflow"] = logged
    import matplotlib.pyplot as plt

    plt.close("all")
    return result
