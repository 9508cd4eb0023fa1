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
    leads_path, mapping_report = params.data.leads, None
    if params.data.mapping:
        from leadscore import mapping as export_mapping

        spec = export_mapping.load_mapping(params.data.mapping)
        mapped, mapping_report = export_mapping.apply_mapping(export_mapping.read_export(leads_path), spec,
                                                              str(leads_path))
        leads_path = out / "mapped_leads.parquet"
        mapped.to_parquet(leads_path, index=False)
        (out / "mapping.txt").write_text(mapping_report.summary() + "\n")
        (out / "extra_features.json").write_text(json.dumps({
            "features": export_mapping.extra_feature_specs(mapping_report, include_after_contact=True),
            "declared_after_contact": [export_mapping.extra_name(c) if not str(c).startswith("x_") else c
                                       for c in mapping_report.declared_after_contact],
            "mapping": params.data.mapping}, indent=2, default=str))
    else:
        (out / "extra_features.json").unlink(missing_ok=True)
        (out / "mapping.txt").unlink(missing_ok=True)
    leads, lead_rejects, lead_report = contract.validate_leads(leads_path)
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
    report_path.write_text(json.dumps({"files": [asdict(r) for r in reports], "priority_accounts": len(priority),
                                       "mapping": mapping_report.to_dict() if mapping_report else None},
                                      indent=2, default=str))
    for r in reports:
        contract.enforce_reject_share(all_rejects, r, params.validate_.max_reject_share, rejects_path)
    return reports


def run_features(params: Params, validated_dir: str | Path, out_dir: str | Path,
                 as_of: str | None = None) -> features.FeatureBuild:
    v = Path(validated_dir)
    events = v / "events.parquet"
    extra = json.loads((v / "extra_features.json").read_text()) if (v / "extra_features.json").exists() else {}
    return features.build_features(v / "leads.parquet", events if events.exists() else None, out_dir,
                                   params.features, priority_path=v / "priority_accounts.parquet", as_of=as_of,
                                   extra=extra.get("features"), declared_after_contact=extra.get("declared_after_contact"))


def guard_leakage(split, meta: list[dict], train_params, declared_by_mapping=()) -> pd.DataFrame:
    """Examine the snapshot attributes (fit group and mapped export columns ``x_…``) of the training
    period for outcome leakage; returns the report (empty when the guard is off)."""
    from leadscore.leakage import leakage_report

    examined = [m["name"] for m in meta if m["group"] == "fit" or m["name"].startswith("x_")]
    if not train_params.leakage_guard or not examined:
        return pd.DataFrame(columns=["column", "single_column_auc", "flagged", "excluded", "reason"])
    history = pd.concat([split.train, split.valid])
    declared = [c for c in (*train_params.after_sales_contact, *declared_by_mapping) if c in history.columns]
    # Flag on AUC, values decisive both ways, and declarations; one-sided purity is reported only: it
    # also fires on genuine disqualifiers (students never buy), which a model should keep.
    return leakage_report(history, "label", examined, auc_threshold=train_params.leakage_auc_threshold,
                          declared_after_contact=declared, override_keep=train_params.leakage_keep,
                          pure_values_rule=False)


def dump_deterministic(obj, path: str | Path) -> None:
    """``joblib.dump``, but every set and frozenset is pickled sorted: their order follows PYTHONHASHSEED
    (e.g. pydantic's ``__pydantic_fields_set__``), so a plain dump gives other bytes in every process."""
    from joblib.numpy_pickle import NumpyPickler

    class SortedSetPickler(NumpyPickler):
        def reducer_override(self, obj):
            if type(obj) in (set, frozenset) and len(obj) > 1:
                return type(obj), (sorted(obj, key=lambda v: (type(v).__name__, repr(v))),)
            return NotImplemented

    with open(path, "wb") as f:
        SortedSetPickler(f).dump(obj)


def seeded_global_numpy(seed: int):
    """Seed NumPy's global generator for the duration (shap's beeswarm jitters with it), then restore it."""
    import contextlib

    import numpy as np

    @contextlib.contextmanager
    def scope():
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)

    return scope()


def run_train(params: Params, features_dir: str | Path, models_dir: str | Path, reports_dir: str | Path,
              outputs_dir: str | Path = "outputs", log_to_mlflow: bool = True) -> dict:
    """Split by time; train and calibrate LightGBM; fit the rule baseline's probability map; choose the
    MQL threshold on the calibration period; evaluate, score and explain the test quarter (model,
    baseline and, on synthetic data, the truth); write metrics, plots, tables, the report and the
    scorer; log it all to MLflow and register the scorer."""
    import matplotlib.pyplot as plt
    import numpy as np

    from leadscore import evaluate, explain, report
    from leadscore.baseline import RuleBaseline
    from leadscore.model import time_split, train_model
    from leadscore.scoring import LeadScorer, PointsScale, choose_threshold, threshold_table

    features_path = Path(features_dir) / "features.parquet"
    models_dir, reports_dir, outputs_dir = Path(models_dir), Path(reports_dir), Path(outputs_dir)
    for d in (models_dir, reports_dir, outputs_dir, reports_dir / "figures"):
        d.mkdir(parents=True, exist_ok=True)
    table, meta = features.load_feature_table(features_path)
    declared = json.loads(features_path.with_name("feature_metadata.json").read_text()).get("declared_after_contact", [])
    split = time_split(table, params.split)
    leakage = guard_leakage(split, meta, params.train, declared)
    excluded = set(leakage.loc[leakage["excluded"], "column"]) if len(leakage) else set()
    model = train_model(split, [m for m in meta if m["name"] not in excluded], params.train, params.seed)
    baseline = RuleBaseline(params.baseline).fit(split.calibration, split.calibration["label"])

    # --- the model against the baseline (and the truth) on the test quarter
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
    if "truth" in metrics:
        metrics["model"]["auc_share_of_truth"] = metrics["model"]["roc_auc"] / metrics["truth"]["roc_auc"]
    metrics["split"] = {k: v for k, v in split.boundaries.items() if not k.endswith(("_from", "_to"))}
    metrics["calibration"] = {k: v for k, v in model.info["calibration"].items() if k != "method"}
    metrics["model"]["best_iteration"] = model.info["best_iteration"]

    # --- points, the MQL threshold (chosen on the calibration period: the most recent volume before
    # the test quarter), bands, grades and reasons
    sp = params.scoring
    scale = PointsScale(sp.base_points, sp.base_probability, sp.points_to_double_odds)
    cal = split.calibration
    cal_margin = model.raw_margin(cal)
    cal_points = np.clip(scale.points(model.calibrator.calibrated_margin(cal_margin)), 0, 100)
    cal_table = threshold_table(cal_points, model.calibrator.predict(cal_margin), params.split.calibration_days / 7,
                                deal_value=sp.deal_value, touch_cost=sp.touch_cost)
    threshold, reason = choose_threshold(cal_table, sp, scale)
    scorer = LeadScorer(model, sp, threshold, reason, explain_engine=sp.explain_engine, feature_params=params.features)
    if params.data.mapping:  # batch scoring applies the same mapping to raw exports
        from leadscore.mapping import load_mapping

        scorer.mapping = load_mapping(params.data.mapping)
    exp = scorer.explain(test)
    scored = scorer.score(test, explanation=exp)
    additivity = np.abs(exp.base_points + exp.contributions.sum(axis=1) + exp.cap - exp.points)
    weeks = params.split.test_days / 7
    test_table = threshold_table(exp.points, exp.probability, weeks, y, sp.deal_value, sp.touch_cost)
    frame = scored.assign(label=y)
    band_table = (frame.groupby("band").agg(leads=("label", "size"), wins=("label", "sum"), win_rate=("label", "mean"),
                                            mean_probability=("probability", "mean")).reset_index())
    matrix = (frame.groupby(["fit_grade", "engagement_grade"]).agg(leads=("label", "size"), wins=("label", "sum"),
                                                                     win_rate=("label", "mean")).reset_index())
    mql = scored["is_mql"].to_numpy()
    base_pts = baseline.points(test)
    base_mql = base_pts >= params.baseline.mql_threshold
    same_volume = np.zeros(len(y), bool)
    same_volume[np.argsort(-base_pts, kind="stable")[: int(mql.sum())]] = True
    compare = pd.DataFrame([
        {"who": f"model, {threshold:.0f} points", "mqls": int(mql.sum()), "wins": int(y[mql].sum())},
        {"who": f"baseline, {params.baseline.mql_threshold:g} points", "mqls": int(base_mql.sum()),
         "wins": int(y[base_mql].sum())},
        {"who": "baseline, same volume as the model", "mqls": int(same_volume.sum()), "wins": int(y[same_volume].sum())},
    ])
    compare["mqls_per_week"] = compare["mqls"] / weeks
    compare["win_rate"] = compare["wins"] / compare["mqls"].clip(lower=1)
    metrics["mql"] = {
        "threshold": threshold, "capacity_per_week": sp.capacity_per_week,
        "model_mqls_per_week": float(compare.loc[0, "mqls_per_week"]), "model_win_rate": float(compare.loc[0, "win_rate"]),
        "baseline_mqls_per_week": float(compare.loc[1, "mqls_per_week"]),
        "baseline_win_rate": float(compare.loc[1, "win_rate"]),
        "baseline_same_volume_win_rate": float(compare.loc[2, "win_rate"]),
        "model_share_of_wins": float(y[mql].sum() / max(y.sum(), 1)),
    }
    # --- drift: the newest quarter against the training period, features and score
    from leadscore import drift

    fd = drift.feature_drift(split.train, test, model.feature_names, warn=params.train.drift_warn_psi,
                             alert=params.train.drift_alert_psi)
    score_psi = drift.psi(model.predict_proba(split.train), scores["model"])
    calibration_periods = drift.calibration_by_period(
        pd.concat([cal["as_of"], test["as_of"]]), np.concatenate([cal["label"].to_numpy(), y]),
        np.concatenate([model.predict_proba(cal), scores["model"]]))
    metrics["drift"] = {"score_psi": float(score_psi), "max_feature_psi": float(fd["psi"].max()),
                        "features_warn": int((fd["status"] == "warn").sum()),
                        "features_alert": int((fd["status"] == "alert").sum()),
                        "newest_quarter_calibration_gap": float(calibration_periods["gap"].iloc[-1])}
    metrics["leakage"] = {"examined": int(len(leakage)), "excluded": len(excluded)}
    importance = explain.global_importance(exp, scorer.features)
    shares = explain.group_shares(importance)
    metrics["explain"] = {"max_additivity_error_points": float(additivity.max()),
                          **{f"{g}_share": v for g, v in shares.items()}}

    # --- files: metrics, plots, tables, report, models
    (reports_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    summary = {"calibration_method": model.info["calibration"]["method"], "split": split.boundaries,
               "mql_threshold": threshold, "mql_threshold_reason": reason}
    (reports_dir / "training.json").write_text(json.dumps(summary, indent=2))
    deciles.to_csv(reports_dir / "deciles.csv", index=False)
    test_table.to_csv(reports_dir / "threshold_table.csv", index=False)
    band_table.to_csv(reports_dir / "bands.csv", index=False)
    matrix.to_csv(reports_dir / "matrix.csv", index=False)
    compare.to_csv(reports_dir / "mql_comparison.csv", index=False)
    importance.to_csv(reports_dir / "global_drivers.csv", index=False)
    leakage.to_csv(reports_dir / "leakage.csv", index=False)
    fd.to_csv(reports_dir / "drift.csv", index=False)
    calibration_periods.to_csv(reports_dir / "calibration_by_period.csv", index=False)
    explanations = pd.concat([test[["lead_id", "as_of", "label"]].reset_index(drop=True),
                              scored.reset_index(drop=True)], axis=1)
    explanations.to_parquet(reports_dir / "explanations.parquet", index=False)
    all_curves = {name: evaluate.curves(y, p) for name, p in scores.items() if name != "model_uncalibrated"}
    evaluate.write_plot_data(all_curves, reports_dir / "plots")
    with seeded_global_numpy(params.seed):  # the beeswarm's jitter: same seed, same figure and report
        figs = {**evaluate.figures(all_curves), **explain.figures(exp, test, importance)}
    for name, fig in figs.items():
        fig.savefig(reports_dir / "figures" / f"{name}.png", bbox_inches="tight")
    html_page = report.render_report(
        subtitle=(f"Test quarter {split.boundaries['test_from'][:10]} to {split.boundaries['test_to'][:10]}: "
                  f"{len(test):,} leads, model ROC AUC {metrics['model']['roc_auc']:.3f} "
                  f"(baseline {metrics['baseline']['roc_auc']:.3f}), calibration {summary['calibration_method']}"),
        points=exp.points, threshold=threshold, threshold_reason=reason, bands_cfg=sp.bands, band_table=band_table,
        matrix=matrix, threshold_tbl=test_table, mql_compare=compare, shares=shares, figs=figs,
        leads_json=report.lead_payload(test["lead_id"], scored.reset_index(drop=True), exp),
        drift_table=fd, score_psi=score_psi, calibration_periods=calibration_periods, leakage=leakage)
    report_path = outputs_dir / "report.html"
    report_path.write_text(html_page, encoding="utf-8")
    for obj, name in ((model, "model.joblib"), (scorer, "scorer.joblib"), (baseline, "baseline.joblib")):
        dump_deterministic(obj, models_dir / name)  # same seed, same bytes

    result = {"metrics": metrics, "summary": summary, "model_path": models_dir / "model.joblib",
              "scorer_path": models_dir / "scorer.joblib", "report": report_path}
    if log_to_mlflow:
        from leadscore import tracking

        artifacts = {reports_dir / f: "tables" for f in ("deciles.csv", "threshold_table.csv", "bands.csv", "matrix.csv",
                                                         "mql_comparison.csv", "global_drivers.csv", "leakage.csv",
                                                         "drift.csv", "calibration_by_period.csv")}
        artifacts.update({reports_dir / "explanations.parquet": "explanations", report_path: "report",
                          models_dir / "baseline.joblib": "baseline"})
        logged = tracking.log_training_run(
            params=params.model_dump(by_alias=True), metrics={**metrics, "training": summary},
            scorer_path=models_dir / "scorer.joblib",
            input_example=tracking.model_input_example(test, model.feature_names), figures=figs, artifacts=artifacts,
            tags={**tracking.lineage_tags(features_path), "calibration_method": summary["calibration_method"],
                  "mql_threshold_reason": reason},
            experiment=params.mlflow.experiment, registered_model=params.mlflow.registered_model)
        decision = tracking.champion_challenger(
            params.mlflow.registered_model, logged["version"], scorer, test, y, weeks, params.promotion,
            logged["run_id"])
        logged["promoted"] = decision.promote
        logged["promotion_reasons"] = decision.reasons
        (reports_dir / "mlflow_run.json").write_text(json.dumps(logged, indent=2))
        result["mlflow"] = logged
    else:
        decision = None
    from leadscore import modelcard

    card = modelcard.render_model_card({
        "model": {"name": params.mlflow.registered_model, "version": result.get("mlflow", {}).get("version", "not registered"),
                  "run_id": result.get("mlflow", {}).get("run_id", "")},
        "data_window": split.boundaries, "features": scorer.model.metadata,
        "metrics": {k: v for k, v in metrics.items() if k in ("model", "baseline", "truth")},
        "calibration": {"method": summary["calibration_method"], "ece": metrics["model"]["ece"],
                        "log_loss": metrics["model"]["log_loss"]},
        "leakage": leakage, "drift": {"features": fd, "score_psi": score_psi},
        "threshold": {"policy": sp.mql_policy, "points": threshold, "reason": reason,
                      "mql_per_week": metrics["mql"]["model_mqls_per_week"], "win_rate": metrics["mql"]["model_win_rate"]},
        "decision": decision,
    })
    (outputs_dir / "model_card.md").write_text(card, encoding="utf-8")
    (outputs_dir / "model_card.html").write_text(modelcard.to_html(card, title="leadscore model card"), encoding="utf-8")
    result["model_card"] = outputs_dir / "model_card.md"
    if log_to_mlflow:
        tracking.log_files(result["mlflow"]["run_id"], {outputs_dir / "model_card.md": "model_card",
                                                        outputs_dir / "model_card.html": "model_card"})
    plt.close("all")
    return result
