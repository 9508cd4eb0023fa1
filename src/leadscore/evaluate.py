"""Metrics and curves, computed the same way for the model, the rule baseline and the truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, precision_recall_curve, roc_auc_score, roc_curve

ECE_BINS = 10


def expected_calibration_error(y, p, bins: int = ECE_BINS) -> float:
    """Share-weighted gap between mean prediction and win rate over equal-mass bins (each bin holds
    the same number of rows, ordered by prediction), as in Nixon et al. 2019, "Measuring Calibration in
    Deep Learning" (adaptive ECE): with win rates near 10%, equal-width bins put nearly every lead in the
    first bin and hide miscalibration there."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    if len(p) == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    idx = np.empty(len(p), dtype=int)
    idx[order] = np.arange(len(p)) * bins // len(p)
    gap = np.abs(np.bincount(idx, weights=p, minlength=bins) - np.bincount(idx, weights=y, minlength=bins))
    return float(gap.sum() / len(y))


def top_share(y, score, share: float) -> tuple[float, float]:
    """(lift, share of wins captured) when sales calls the top ``share`` of leads by score."""
    y = np.asarray(y, float)
    k = max(1, int(round(len(y) * share)))
    top = np.argsort(-np.asarray(score, float), kind="stable")[:k]
    captured = y[top].sum() / max(y.sum(), 1)
    return float(y[top].mean() / max(y.mean(), 1e-12)), float(captured)


def decile_table(y, score) -> pd.DataFrame:
    """Win rate by score decile, decile 1 = highest scores."""
    order = np.argsort(-np.asarray(score, float), kind="stable")
    decile = np.empty(len(order), dtype=int)
    decile[order] = np.arange(len(order)) * 10 // len(order) + 1
    df = pd.DataFrame({"decile": decile, "y": np.asarray(y), "score": np.asarray(score, float)})
    return df.groupby("decile").agg(leads=("y", "size"), wins=("y", "sum"), win_rate=("y", "mean"),
                                    mean_score=("score", "mean")).reset_index()


def score_metrics(y, p) -> dict:
    """Every headline metric for one set of probabilities."""
    y, p = np.asarray(y), np.clip(np.asarray(p, float), 1e-15, 1 - 1e-15)
    lift10, cap10 = top_share(y, p, 0.10)
    lift20, cap20 = top_share(y, p, 0.20)
    return {
        "roc_auc": float(roc_auc_score(y, p)), "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])), "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p), "lift_top10": lift10, "wins_captured_top10": cap10,
        "lift_top20": lift20, "wins_captured_top20": cap20,
        "win_rate_by_decile": [round(float(v), 4) for v in decile_table(y, p)["win_rate"]],
    }


def curves(y, p) -> dict[str, pd.DataFrame]:
    """ROC, precision-recall, reliability and cumulative gains, as small tables."""
    y, p = np.asarray(y), np.asarray(p, float)
    fpr, tpr, _ = roc_curve(y, p)
    prec, rec, _ = precision_recall_curve(y, p)
    idx = np.minimum((p * ECE_BINS).astype(int), ECE_BINS - 1)
    rel = pd.DataFrame({"bin": idx, "p": p, "y": y}).groupby("bin").agg(
        mean_predicted=("p", "mean"), observed_win_rate=("y", "mean"), leads=("y", "size")).reset_index()
    order = np.argsort(-p, kind="stable")
    steps = np.unique(np.linspace(0, len(y), 101).astype(int))[1:]
    wins = np.cumsum(y[order])
    gains = pd.DataFrame({"share_of_leads": steps / len(y), "share_of_wins": wins[steps - 1] / max(wins[-1], 1)})
    thin = lambda a, b: (a, b) if len(a) <= 400 else (a[np.linspace(0, len(a) - 1, 400).astype(int)],  # noqa: E731
                                                        b[np.linspace(0, len(b) - 1, 400).astype(int)])
    fpr, tpr = thin(fpr, tpr)
    rec, prec = thin(rec, prec)
    return {"roc": pd.DataFrame({"fpr": fpr, "tpr": tpr}), "precision_recall": pd.DataFrame({"recall": rec, "precision": prec}),
            "reliability": rel, "gains": gains}


def write_plot_data(all_curves: dict[str, dict[str, pd.DataFrame]], folder: Path) -> list[Path]:
    """One CSV per curve and scorer (``roc_model.csv``…), the files dvc.yaml's plots read."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for scorer, cs in all_curves.items():
        for name, df in cs.items():
            path = folder / f"{name}_{scorer}.csv"
            df.round(6).to_csv(path, index=False)
            paths.append(path)
    return paths


def figures(all_curves: dict[str, dict[str, pd.DataFrame]]) -> dict[str, "object"]:
    """Matplotlib figures of the four curves, every scorer on one axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = {"roc": ("fpr", "tpr", "False positive rate", "True positive rate", "ROC"),
             "precision_recall": ("recall", "precision", "Recall", "Precision", "Precision-recall"),
             "reliability": ("mean_predicted", "observed_win_rate", "Predicted probability", "Observed win rate",
                             "Reliability (test quarter)"),
             "gains": ("share_of_leads", "share_of_wins", "Share of leads called, best first", "Share of wins",
                       "Cumulative gains")}
    figs = {}
    for name, (x, y, xl, yl, title) in specs.items():
        fig, ax = plt.subplots(figsize=(5, 4.2), dpi=110)
        for scorer, cs in all_curves.items():
            style = "o-" if name == "reliability" else "-"
            ax.plot(cs[name][x], cs[name][y], style, label=scorer, ms=3)
        if name in ("roc", "reliability", "gains"):
            ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
        ax.set(xlabel=xl, ylabel=yl, title=title)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        figs[name] = fig
    return figs
