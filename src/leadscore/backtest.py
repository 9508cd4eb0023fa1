"""Replay the nightly job on a past period and measure what sales would have seen.

The nightly job scores every lead open at that moment, whatever its age, and flags those over the MQL
threshold; a lead is routed to sales the first time it crosses. The snapshot rows of a period are that
job run on every snapshot date (weekly by default): features at ``as_of`` built by the same SQL as
``leadscore score`` (tested), scored by the same :class:`~leadscore.scoring.LeadScorer`. From them:

* discrimination over all open leads (ROC AUC, PR AUC) and by lead-age bucket;
* calibration by lead-age bucket (mean predicted vs observed win rate within the label horizon);
* leads **newly** crossing the MQL threshold per week, and their win rate — at every threshold, so the
  capacity policy picks its threshold from the replayed weekly volume, not from one row per lead.

The first date of a period is a warm-up: a lead already over the threshold then was routed before the
period began and is not counted as new. (A lead that fell back under and crosses again is counted again;
the count is then a slight over-estimate, the safe side for capacity.) Volumes are multiplied by
``population_scale`` when the rows are a random share of the leads (see :func:`leadscore.model.time_split`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

AGE_BUCKETS = ((0, 7, "0-7 days"), (8, 30, "8-30 days"), (31, 90, "31-90 days"), (91, np.inf, "91 days or more"))


def age_bucket(age_days) -> np.ndarray:
    """The bucket label of each lead age (whole days since creation: 7.9 days is in 0-7)."""
    age = np.floor(np.asarray(age_days, float))
    labels = np.full(age.shape, AGE_BUCKETS[-1][2], dtype=object)
    for lo, hi, name in AGE_BUCKETS[::-1]:
        labels[(age >= lo) & (age <= hi)] = name
    return labels


def calibration_by_age(age_days, y, predictions: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per age bucket: rows, observed win rate within the horizon, and each scorer's mean prediction
    and gap (mean predicted − observed)."""
    frame = pd.DataFrame({"age_bucket": age_bucket(age_days), "y": np.asarray(y, float)})
    for name, p in predictions.items():
        frame[name] = np.asarray(p, float)
    order = {name: i for i, (_, _, name) in enumerate(AGE_BUCKETS)}
    out = frame.groupby("age_bucket").agg(rows=("y", "size"), observed=("y", "mean"),
                                          **{f"{n}_predicted": (n, "mean") for n in predictions}).reset_index()
    for n in predictions:
        out[f"{n}_gap"] = out[f"{n}_predicted"] - out["observed"]
    return out.sort_values("age_bucket", key=lambda s: s.map(order)).reset_index(drop=True)


def auc_by_age(age_days, y, p) -> dict[str, float]:
    """ROC AUC within each age bucket (NaN where a bucket has one outcome only)."""
    from sklearn.metrics import roc_auc_score

    buckets, y, p = age_bucket(age_days), np.asarray(y), np.asarray(p, float)
    out = {}
    for _, _, name in AGE_BUCKETS:
        m = buckets == name
        out[name] = float(roc_auc_score(y[m], p[m])) if m.any() and len(np.unique(y[m])) == 2 else float("nan")
    return out


def new_mqls(lead_id, as_of, points, label, thresholds, probability=None, population_scale: float = 1.0,
             snapshot_every_days: float = 7.0) -> pd.DataFrame:
    """Leads newly crossing each threshold per week in a replay, and how they turned out.

    Parameters
    ----------
    lead_id, as_of, points, label : arrays of the replay's rows (one per lead and date); ``points`` as
        the job shows them (the MQL flag is ``points >= threshold``); ``label`` won within the horizon.
    thresholds : increasing thresholds to evaluate.
    probability : optional calibrated probability per row (expected win rate of the new MQLs).
    population_scale : volumes are multiplied by this (rows are a random share of the leads).

    Returns one row per threshold: ``new_mqls`` (in the rows), ``mqls_per_week`` (scaled), ``wins`` and
    ``observed_win_rate`` of the new MQLs at the snapshot where they crossed (won within the horizon
    after it), ``expected_win_rate`` (their mean probability then) and ``weeks`` replayed.
    """
    frame = pd.DataFrame({"lead_id": np.asarray(lead_id), "as_of": pd.to_datetime(np.asarray(as_of)),
                          "points": np.asarray(points, float), "y": np.asarray(label, float),
                          "p": np.zeros(len(points)) if probability is None else np.asarray(probability, float)})
    frame = frame.sort_values(["lead_id", "as_of"], kind="stable").reset_index(drop=True)
    t = np.asarray(thresholds, float)
    dates = np.sort(frame["as_of"].unique())
    weeks = max(len(dates) - 1, 1) * snapshot_every_days / 7.0
    running = frame.groupby("lead_id", sort=False)["points"].cummax().to_numpy()
    previous = frame.assign(r=running).groupby("lead_id", sort=False)["r"].shift(1).to_numpy()
    previous = np.where(np.isnan(previous), -np.inf, previous)
    counted = (frame["as_of"] != dates[0]).to_numpy() if len(dates) else np.zeros(len(frame), bool)
    # A row is a first crossing for every threshold in (previous running max, running max].
    lo = np.searchsorted(t, previous, side="right")  # first threshold above the previous max
    hi = np.searchsorted(t, running, side="right")  # thresholds up to the running max
    crossing = counted & (hi > lo)
    sums = {}
    for name, w in (("new_mqls", np.ones(len(frame))), ("wins", frame["y"].to_numpy()), ("p", frame["p"].to_numpy())):
        diff = np.zeros(len(t) + 1)
        np.add.at(diff, lo[crossing], w[crossing])
        np.add.at(diff, hi[crossing], -w[crossing])
        sums[name] = np.cumsum(diff)[:-1]
    n = sums["new_mqls"]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = pd.DataFrame({
            "threshold": t, "new_mqls": n.round().astype(int), "mqls_per_week": n * population_scale / weeks,
            "wins": sums["wins"].round().astype(int),
            "observed_win_rate": np.where(n > 0, sums["wins"] / np.maximum(n, 1), np.nan),
            "expected_win_rate": np.where(n > 0, sums["p"] / np.maximum(n, 1), np.nan),
        })
    out["weeks"] = weeks
    return out


def ece_noise(p, bins: int = 10, simulations: int = 200, seed: int = 0) -> dict[str, float]:
    """ECE of a perfectly calibrated model on these rows: labels drawn from ``p`` itself. The ECE a real
    model shows is only meaningful beside this floor (mean and 95th percentile over simulations)."""
    from leadscore.evaluate import expected_calibration_error

    rng = np.random.default_rng(seed)
    p = np.asarray(p, float)
    sims = [expected_calibration_error(rng.random(len(p)) < p, p, bins) for _ in range(simulations)]
    return {"mean": float(np.mean(sims)), "p95": float(np.quantile(sims, 0.95))}


@dataclass
class Replay:
    """The replay of one period: per-row scores and the tables built from them."""

    rows: pd.DataFrame  # lead_id, as_of, age_days, label, model_probability, model_points, baseline_…, truth_…
    metrics: dict = field(default_factory=dict)
    calibration_by_age: pd.DataFrame | None = None
    mql_table: pd.DataFrame | None = None  # the model's new MQLs per week at every threshold
    mql_compare: pd.DataFrame | None = None  # model vs baseline at its own threshold and at the same volume


def replay_period(rows: pd.DataFrame, model_probability, model_points, threshold: float, baseline_probability,
                  baseline_points, baseline_threshold: float, population_scale: float, snapshot_every_days: float,
                  truth=None, seed: int = 0) -> Replay:
    """Evaluate a period's replay (rows with lead_id, as_of, label, lead_age_days): metrics over all open
    leads and by age, calibration by age, and new MQLs per week of the model and the rule baseline."""
    from leadscore.evaluate import score_metrics

    y = rows["label"].to_numpy().astype(int)
    age = rows["lead_age_days"].to_numpy(float)
    preds = {"model": np.asarray(model_probability, float), "baseline": np.asarray(baseline_probability, float)}
    if truth is not None:
        preds["truth"] = np.asarray(truth, float)
    metrics = {name: score_metrics(y, p) for name, p in preds.items()}
    for m in metrics.values():
        m.pop("win_rate_by_decile", None)
    metrics["model"]["ece_noise"] = ece_noise(preds["model"], seed=seed)
    metrics["model"]["auc_by_age"] = auc_by_age(age, y, preds["model"])
    if truth is not None:
        metrics["model"]["auc_share_of_truth"] = metrics["model"]["roc_auc"] / metrics["truth"]["roc_auc"]
        metrics["truth"]["auc_by_age"] = auc_by_age(age, y, preds["truth"])
    by_age = calibration_by_age(age, y, preds)

    lead, as_of = rows["lead_id"].to_numpy(), rows["as_of"].to_numpy()
    grid = np.arange(0, 101)
    model_table = new_mqls(lead, as_of, model_points, y, grid, preds["model"], population_scale, snapshot_every_days)
    base_pts = np.asarray(baseline_points, float)
    base_grid = np.unique(np.concatenate([np.round(base_pts), [baseline_threshold]]))
    base_table = new_mqls(lead, as_of, base_pts, y, base_grid, preds["baseline"], population_scale, snapshot_every_days)
    mine = model_table.set_index("threshold").loc[float(threshold)]
    theirs = base_table.set_index("threshold").loc[float(baseline_threshold)]
    # The baseline at the model's volume: its lowest threshold sending no more new MQLs than the model.
    ok = base_table[base_table["mqls_per_week"] <= mine["mqls_per_week"] + 1e-9]
    same = ok.iloc[0] if len(ok) else base_table.iloc[-1]
    compare = pd.DataFrame([
        {"who": f"model, {threshold:.0f} points", "threshold": float(threshold)},
        {"who": f"baseline, {baseline_threshold:g} points", "threshold": float(baseline_threshold)},
        {"who": "baseline, same volume as the model", "threshold": float(same["threshold"])},
    ])
    for col in ("new_mqls", "mqls_per_week", "wins", "observed_win_rate", "expected_win_rate"):
        compare[col] = [mine[col], theirs[col], same[col]]
    compare = compare.rename(columns={"observed_win_rate": "win_rate"})
    frame = rows[["lead_id", "as_of", "label"]].reset_index(drop=True).assign(
        age_days=age, model_probability=preds["model"], model_points=np.asarray(model_points, float),
        baseline_probability=preds["baseline"], baseline_points=base_pts)
    if truth is not None:
        frame["truth_probability"] = preds["truth"]
    return Replay(frame, metrics, by_age, model_table, compare)


def figure_calibration_by_age(table: pd.DataFrame):
    """Bars of observed vs predicted win rate per lead-age bucket, every scorer beside the observed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c[: -len("_predicted")] for c in table.columns if c.endswith("_predicted")]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    x = np.arange(len(table))
    width = 0.8 / (len(names) + 1)
    ax.bar(x, table["observed"], width, label="observed", color="black")
    for i, n in enumerate(names, start=1):
        ax.bar(x + i * width, table[f"{n}_predicted"], width, label=f"{n} predicted")
    ax.set_xticks(x + width * len(names) / 2, table["age_bucket"])
    ax.set(xlabel="Lead age at the snapshot", ylabel="Win rate within the label horizon",
           title="Calibration by lead age (replay of the nightly job)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
