"""The pipeline stages as functions: read params, call the library, write files. The CLI (and so DVC)
calls these; they know nothing of the command line."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore import contract, features, safecsv, synth
from leadscore.config import Params
from leadscore.reader import empty_records_note, remove_parquet


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
        export = export_mapping.read_export_table(leads_path, spec.read or params.data.read)
        mapped, mapping_report = export_mapping.apply_mapping(export, spec, str(leads_path))
        if note := empty_records_note(export.empty_rows):
            mapping_report.warnings.append(note)
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
    read = params.data.read
    leads, lead_rejects, lead_report = contract.validate_leads(leads_path, options=None if mapping_report else read)
    if mapping_report is not None:
        lead_report.read = export.dialect.to_dict()
    leads.to_parquet(out / "leads.parquet", index=False, compression="zstd")
    reports, rejects = [lead_report], [lead_rejects]
    if params.data.events:
        ev_rejects, ev_report = contract.validate_events(params.data.events, leads, lead_rejects, out / "events.parquet",
                                                         options=read)
        reports.append(ev_report)
        rejects.append(ev_rejects)
    else:
        remove_parquet(out / "events.parquet")
    priority = contract.read_priority_accounts(params.data.priority_accounts, read)
    if priority.attrs.get("refused"):  # rows the reader refused: in the rejects, with their reason
        rejects.append(contract.priority_rejects(priority, params.data.priority_accounts))
    priority.attrs = {}  # (what the reader noted is reported above, not stored with the list)
    priority.to_parquet(out / "priority_accounts.parquet", index=False)
    unmatched = contract.unmatched_priority(priority, leads)

    all_rejects = pd.concat([r for r in rejects if len(r)] or [rejects[0]], ignore_index=True)
    safecsv.to_csv(all_rejects, rejects_path, index=False)  # input values: safe to open in a spreadsheet
    report_path.write_text(json.dumps({"files": [asdict(r) for r in reports], "priority_accounts": len(priority),
                                       "priority_accounts_matching_no_lead": len(unmatched),
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
    """Examine the snapshot attributes (fit group and mapped export columns ``x_…``) for outcome leakage,
    one row per lead over all labelled history (training, calibration and test periods: a leak that
    starts late is invisible in the training window alone); returns the report (empty when the guard is off)."""
    from leadscore.leakage import leakage_report, per_lead

    examined = [m["name"] for m in meta if m["group"] == "fit" or m["name"].startswith("x_")]
    if not train_params.leakage_guard or not examined:
        return pd.DataFrame(columns=["column", "single_column_auc", "flagged", "excluded", "reason"])
    leads = per_lead(pd.concat([split.train, split.valid, split.calibration, split.test], ignore_index=True))
    declared = [c for c in (*train_params.after_sales_contact, *declared_by_mapping) if c in leads.columns]
    # Flag on AUC, values decisive both ways, fill rates separating the outcomes (at once or over time)
    # and declarations; one-sided purity is reported only: it also fires on genuine disqualifiers
    # (students never buy), which a model should keep.
    return leakage_report(leads, "label", examined, auc_threshold=train_params.leakage_auc_threshold,
                          declared_after_contact=declared, override_keep=train_params.leakage_keep,
                          pure_values_rule=False, time="as_of")


# ----------------------------------------------------------------------------- training, step by step
@dataclass
class TrainingData:
    table: pd.DataFrame  # snapshot rows: lead_id, as_of, label (NULL when censored), features
    meta: list[dict]  # feature metadata
    declared_after_contact: list[str]
    build: dict  # the feature build's metadata (export moment, snapshot dates, row counts)
    features_path: Path


def load_training_data(features_dir: str | Path) -> TrainingData:
    """The feature table of the ``features`` stage with its metadata."""
    path = Path(features_dir) / "features.parquet"
    table, meta = features.load_feature_table(path)
    info = json.loads(path.with_name("feature_metadata.json").read_text())
    return TrainingData(table, meta, info.get("declared_after_contact", []), info, path)


def truth_at(params: Params, rows: pd.DataFrame) -> np.ndarray | None:
    """The synthetic truth at each (lead, as_of) row: probability of a win within the label horizon,
    given what was observable then (None for real data, or when the truth files are absent)."""
    if not params.train.truth or not Path(params.train.truth).exists() or not hasattr(synth, "true_probability"):
        return None
    p = synth.true_probability(Path(params.train.truth).parent, rows[["lead_id", "as_of"]],
                               params.features.label_horizon_days)
    return None if np.isnan(p).any() else p


def choose_mql_threshold(model, scale, split, params: Params) -> tuple[float, str, pd.DataFrame]:
    """Replay the nightly job over the calibration period with this model and pick the MQL threshold by
    the policy in params from the replayed volume of *new* MQLs a week (see :mod:`leadscore.backtest`)."""
    from leadscore.backtest import new_mqls
    from leadscore.scoring import choose_threshold

    cal = split.calibration
    margin = model.raw_margin(cal)
    points = np.round(np.clip(scale.points(model.calibrator.calibrated_margin(margin)), 0, 100), 1)
    table = new_mqls(cal["lead_id"].to_numpy(), cal["as_of"].to_numpy(), points, cal["label"].to_numpy(),
                     np.arange(0, 101), model.calibrator.predict(margin), split.population_scale,
                     params.features.snapshot_every_days)
    table["expected_value_per_week"] = table["mqls_per_week"] * (
        table["expected_win_rate"].fillna(0) * params.scoring.deal_value - params.scoring.touch_cost)
    threshold, reason = choose_threshold(table, params.scoring, scale)
    return threshold, reason, table


def replay_test_period(scorer, baseline, split, params: Params, truth) -> "backtest.Replay":
    """The nightly job replayed on the test period (every open lead, any age, at each snapshot date)."""
    from leadscore import backtest

    test = split.test
    probability, points = scorer.points_only(test)
    return backtest.replay_period(
        test, probability, points, scorer.mql_threshold, baseline.predict_proba(test)[:, 1], baseline.points(test),
        params.baseline.mql_threshold, split.population_scale, params.features.snapshot_every_days, truth,
        seed=params.seed)


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
    """Train, evaluate and register a model, as a sequence of named steps:

    data → split (time and lead, never outcome) → leakage guard → fit and calibrate → rule baseline →
    MQL threshold (replay of the calibration period) → replay of the test period (the nightly job on every
    open lead of every age) → explanations → files → MLflow, promotion gate and model card.
    """
    from leadscore.baseline import RuleBaseline
    from leadscore.model import time_cv, time_split, train_model
    from leadscore.scoring import LeadScorer, PointsScale

    data = load_training_data(features_dir)
    split = time_split(data.table, params.split, params.seed)
    leakage = guard_leakage(split, data.meta, params.train, data.declared_after_contact)
    excluded = set(leakage.loc[leakage["excluded"], "column"]) if len(leakage) else set()
    baseline = RuleBaseline(params.baseline).fit(split.calibration, split.calibration["label"])
    used = [m for m in data.meta if m["name"] not in excluded]
    model = train_model(split, used, params.train, params.seed, baseline)  # small-data mode below the size
    model.info["time_cv"] = time_cv(split, model, params.train, params.seed, baseline)  # AUC mean ± spread
    sp = params.scoring
    scale = PointsScale(sp.base_points, sp.base_probability, sp.points_to_double_odds)
    threshold, reason, cal_table = choose_mql_threshold(model, scale, split, params)
    scorer = LeadScorer(model, sp, threshold, reason, explain_engine=sp.explain_engine, feature_params=params.features)
    if params.data.mapping:  # batch scoring applies the same mapping to raw exports
        from leadscore.mapping import load_mapping

        scorer.mapping = load_mapping(params.data.mapping)
    replay = replay_test_period(scorer, baseline, split, params, truth_at(params, split.test))
    return write_and_log(params, data, split, leakage, model, baseline, scorer, replay, cal_table,
                         Path(models_dir), Path(reports_dir), Path(outputs_dir), log_to_mlflow)


def training_metrics(split, model, replay, leakage, excluded: int, data: TrainingData) -> dict:
    """metrics.json: the replay's metrics, the split, calibration, MQLs, leakage and label completeness."""
    metrics = {k: v for k, v in replay.metrics.items()}
    metrics["split"] = {k: v for k, v in split.boundaries.items() if not k.endswith(("_from", "_to", "_until"))}
    metrics["calibration"] = {k: v for k, v in model.info["calibration"].items() if k != "method"}
    metrics["model"]["best_iteration"] = model.info["best_iteration"]
    by_age = replay.calibration_by_age
    metrics["calibration_by_age"] = {r.age_bucket: {"rows": int(r.rows), "observed": float(r.observed),
                                                    "model_predicted": float(r.model_predicted),
                                                    "model_gap": float(r.model_gap)} for r in by_age.itertuples()}
    c = replay.mql_compare
    metrics["mql"] = {
        "threshold": float(c.loc[0, "threshold"]), "model_new_mqls_per_week": float(c.loc[0, "mqls_per_week"]),
        "model_win_rate": float(c.loc[0, "win_rate"]), "baseline_new_mqls_per_week": float(c.loc[1, "mqls_per_week"]),
        "baseline_win_rate": float(c.loc[1, "win_rate"]),
        "baseline_same_volume_win_rate": float(c.loc[2, "win_rate"]),
    }
    rows = data.build.get("rows", {})
    metrics["labels"] = {"snapshot_rows": rows.get("total"), "labelled": rows.get("labelled"),
                         "censored": rows.get("censored"), "labels_complete_until": split.boundaries["labels_complete_until"]}
    metrics["leakage"] = {"examined": int(len(leakage)), "excluded": excluded}
    return metrics


def write_and_log(params: Params, data: TrainingData, split, leakage, model, baseline, scorer, replay, cal_table,
                  models_dir: Path, reports_dir: Path, outputs_dir: Path, log_to_mlflow: bool) -> dict:
    """Explain the test period, write metrics, plots, tables, the report and the models; log to MLflow,
    run the promotion gate and write the model card."""
    import joblib
    import matplotlib.pyplot as plt

    from leadscore import backtest, drift, evaluate, explain, report, tracking
    from leadscore.model import training_notes

    for d in (models_dir, reports_dir, outputs_dir, reports_dir / "figures"):
        d.mkdir(parents=True, exist_ok=True)
    sp = params.scoring
    test, y = split.test, split.test["label"].to_numpy()
    exp = scorer.explain(test)
    scored = scorer.score(test, explanation=exp)
    additivity = np.abs(exp.base_points + exp.contributions.sum(axis=1) + exp.cap - exp.points)
    excluded = int(leakage["excluded"].sum()) if len(leakage) else 0
    metrics = training_metrics(split, model, replay, leakage, excluded, data)
    scores = {"model": replay.rows["model_probability"].to_numpy(), "baseline": replay.rows["baseline_probability"].to_numpy()}
    if "truth_probability" in replay.rows:
        scores["truth"] = replay.rows["truth_probability"].to_numpy()
    deciles = pd.concat([evaluate.decile_table(y, p).assign(scorer=name) for name, p in scores.items()])
    frame = scored.assign(label=y)
    band_table = (frame.groupby("band").agg(leads=("label", "size"), wins=("label", "sum"), win_rate=("label", "mean"),
                                            mean_probability=("probability", "mean")).reset_index())
    matrix = (frame.groupby(["fit_grade", "engagement_grade"]).agg(leads=("label", "size"), wins=("label", "sum"),
                                                                     win_rate=("label", "mean")).reset_index())
    fd = drift.feature_drift(split.train, test, model.feature_names, warn=params.train.drift_warn_psi,
                             alert=params.train.drift_alert_psi)
    score_psi = drift.psi(model.predict_proba(split.train), scores["model"])
    cal = split.calibration
    calibration_periods = drift.calibration_by_period(
        pd.concat([cal["as_of"], test["as_of"]]), np.concatenate([cal["label"].to_numpy(), y]),
        np.concatenate([model.predict_proba(cal), scores["model"]]))
    metrics["drift"] = {"score_psi": float(score_psi), "max_feature_psi": float(fd["psi"].max()),
                        "features_warn": int((fd["status"] == "warn").sum()),
                        "features_alert": int((fd["status"] == "alert").sum()),
                        "newest_quarter_calibration_gap": float(calibration_periods["gap"].iloc[-1])}
    importance = explain.global_importance(exp, scorer.features)
    shares = explain.group_shares(importance)
    metrics["explain"] = {"max_additivity_error_points": float(additivity.max()),
                          **{f"{g}_share": v for g, v in shares.items()}}
    threshold, reason = scorer.mql_threshold, scorer.threshold_reason
    metrics["training_notes"] = training_notes(model)
    # The gate, for every model (the first included), before anything is registered: its numbers go in
    # the metrics, the report, the run and the model card; the alias moves later only if allowed.
    decision = tracking.decide(params.mlflow.registered_model if log_to_mlflow else None, scorer, test, y,
                               params.split.test_days / 7, params.promotion, baseline, split.population_scale,
                               params.features.snapshot_every_days)
    gate = decision.to_dict()
    # metrics.json is a function of data and params (it is committed, and `dvc exp show` compares it): it
    # holds the challenger's gate numbers, which do not depend on the registry; the decision, champion comparison
    # included, goes to training.json, the run, the report and the model card.
    metrics["gate"] = {"challenger": {r["metric"]: r["challenger"] for r in gate["table"]
                                      if r.get("challenger") is not None}}

    (reports_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    summary = {"calibration_method": model.info["calibration"]["method"], "split": split.boundaries,
               "mql_threshold": threshold, "mql_threshold_reason": reason,
               "export_at": data.build.get("export_at"), "export_at_how": data.build.get("export_at_how"),
               "records_after_export": data.build.get("records_after_export"), "gate": gate}
    (reports_dir / "training.json").write_text(json.dumps(summary, indent=2))
    deciles.to_csv(reports_dir / "deciles.csv", index=False)
    replay.mql_table.to_csv(reports_dir / "threshold_table.csv", index=False)
    cal_table.to_csv(reports_dir / "threshold_table_calibration.csv", index=False)
    replay.calibration_by_age.to_csv(reports_dir / "calibration_by_age.csv", index=False)
    band_table.to_csv(reports_dir / "bands.csv", index=False)
    matrix.to_csv(reports_dir / "matrix.csv", index=False)
    replay.mql_compare.to_csv(reports_dir / "mql_comparison.csv", index=False)
    importance.to_csv(reports_dir / "global_drivers.csv", index=False)
    leakage.to_csv(reports_dir / "leakage.csv", index=False)
    fd.to_csv(reports_dir / "drift.csv", index=False)
    calibration_periods.to_csv(reports_dir / "calibration_by_period.csv", index=False)
    explanations = pd.concat([test[["lead_id", "as_of", "label"]].reset_index(drop=True),
                              scored.reset_index(drop=True)], axis=1)
    explanations.to_parquet(reports_dir / "explanations.parquet", index=False)
    all_curves = {name: evaluate.curves(y, p) for name, p in scores.items()}
    evaluate.write_plot_data(all_curves, reports_dir / "plots")
    replay.calibration_by_age.to_csv(reports_dir / "plots" / "calibration_by_age.csv", index=False)
    with seeded_global_numpy(params.seed):  # the beeswarm's jitter: same seed, same figure and report
        figs = {**evaluate.figures(all_curves), **explain.figures(exp, test, importance),
                "calibration_by_age": backtest.figure_calibration_by_age(replay.calibration_by_age)}
    pngs = {name: report.png_bytes(fig) for name, fig in figs.items()}  # drawn once: file, MLflow and report
    figure_files = {name: reports_dir / "figures" / f"{name}.png" for name in pngs}
    for name, png in pngs.items():
        figure_files[name].write_bytes(png)
    newest = (test["as_of"] == test["as_of"].max()).to_numpy()  # the leads open at the newest replay date
    m = metrics["model"]
    html_page = report.render_report(
        subtitle=(f"Replay of the nightly job, {split.boundaries['test_from'][:10]} to {split.boundaries['test_to'][:10]}: "
                  f"{len(test):,} snapshots of {test['lead_id'].nunique():,} open leads of every age; model ROC AUC "
                  f"{m['roc_auc']:.3f} (baseline {metrics['baseline']['roc_auc']:.3f}), calibration "
                  f"{summary['calibration_method']}"),
        points=exp.points, threshold=threshold, threshold_reason=reason, bands_cfg=sp.bands, band_table=band_table,
        matrix=matrix, threshold_tbl=replay.mql_table, mql_compare=replay.mql_compare, shares=shares,
        figure_png=pngs,
        leads_json=report.lead_payload(test["lead_id"].to_numpy()[newest], scored[newest].reset_index(drop=True),
                                       _rows_of(exp, newest)),
        drift_table=fd, score_psi=score_psi, calibration_periods=calibration_periods, leakage=leakage,
        quality=report.quality_section(metrics["training_notes"], decision))
    report_path = outputs_dir / "report.html"
    report_path.write_text(html_page, encoding="utf-8")
    for obj, name in ((model, "model.joblib"), (scorer, "scorer.joblib"), (baseline, "baseline.joblib")):
        dump_deterministic(obj, models_dir / name)  # same seed, same bytes

    result = {"metrics": metrics, "summary": summary, "model_path": models_dir / "model.joblib",
              "scorer_path": models_dir / "scorer.joblib", "report": report_path, "replay": replay}
    if log_to_mlflow:
        artifacts = {reports_dir / f: "tables" for f in (
            "deciles.csv", "threshold_table.csv", "threshold_table_calibration.csv", "calibration_by_age.csv",
            "bands.csv", "matrix.csv", "mql_comparison.csv", "global_drivers.csv", "leakage.csv", "drift.csv",
            "calibration_by_period.csv")}
        artifacts.update({reports_dir / "explanations.parquet": "explanations", report_path: "report",
                          models_dir / "baseline.joblib": "baseline"})
        logged = tracking.log_training_run(
            params=params.model_dump(by_alias=True), metrics={**metrics, "training": summary},
            scorer_path=models_dir / "scorer.joblib",
            input_example=tracking.model_input_example(test, model.feature_names), figures=figure_files,
            artifacts=artifacts,
            tags={**tracking.lineage_tags(data.features_path), "calibration_method": summary["calibration_method"],
                  "mql_threshold_reason": reason},
            experiment=params.mlflow.experiment, registered_model=params.mlflow.registered_model)
        decision = tracking.apply_decision(params.mlflow.registered_model, logged["version"], decision,
                                           params.promotion, logged["run_id"])
        logged["passed_gate"] = decision.promote
        logged["promoted"] = decision.action.startswith(f"version {logged['version']} promoted")
        logged["promotion_reasons"] = decision.reasons
        logged["promotion_action"] = decision.action
        (reports_dir / "mlflow_run.json").write_text(json.dumps(logged, indent=2))
        result["mlflow"] = logged
    from leadscore import modelcard

    card = modelcard.render_model_card({
        "model": {"name": params.mlflow.registered_model, "version": result.get("mlflow", {}).get("version", "not registered"),
                  "run_id": result.get("mlflow", {}).get("run_id", "")},
        "data_window": split.boundaries, "features": scorer.model.metadata,
        "metrics": {k: {kk: vv for kk, vv in v.items() if not isinstance(vv, dict)}
                    for k, v in metrics.items() if k in ("model", "baseline", "truth")},
        "calibration": {"method": summary["calibration_method"], "ece": metrics["model"]["ece"],
                        "log_loss": metrics["model"]["log_loss"]},
        "leakage": leakage, "drift": {"features": fd, "score_psi": score_psi},
        "threshold": {"policy": sp.mql_policy, "points": threshold, "reason": reason,
                      "mql_per_week": metrics["mql"]["model_new_mqls_per_week"], "win_rate": metrics["mql"]["model_win_rate"]},
        "decision": decision, "training": metrics["training_notes"],
    })
    (outputs_dir / "model_card.md").write_text(card, encoding="utf-8")
    (outputs_dir / "model_card.html").write_text(modelcard.to_html(card, title="leadscore model card"), encoding="utf-8")
    result["model_card"] = outputs_dir / "model_card.md"
    if log_to_mlflow:
        tracking.log_files(result["mlflow"]["run_id"], {outputs_dir / "model_card.md": "model_card",
                                                        outputs_dir / "model_card.html": "model_card"})
    plt.close("all")
    return result


def _rows_of(exp, mask: np.ndarray):
    """The explanation of a subset of rows."""
    from leadscore.scoring import Explanation

    return Explanation(exp.base_points, exp.contributions[mask], exp.cap[mask], exp.points[mask],
                       exp.probability[mask], exp.feature_names)
