"""Global explanations: which features drive scores overall, and how much is fit versus behaviour.
Computed from the per-lead contributions in points (see :mod:`leadscore.scoring`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.scoring import Explanation


def global_importance(exp: Explanation, features) -> pd.DataFrame:
    """Mean absolute points per feature, with its group and share of all movement."""
    mean_abs = np.abs(exp.contributions).mean(axis=0)
    df = pd.DataFrame({"feature": exp.feature_names, "group": [f.group for f in features],
                       "mean_abs_points": mean_abs, "mean_points": exp.contributions.mean(axis=0)})
    df["share"] = df["mean_abs_points"] / max(df["mean_abs_points"].sum(), 1e-12)
    return df.sort_values("mean_abs_points", ascending=False, kind="stable").reset_index(drop=True)


def group_shares(importance: pd.DataFrame) -> dict[str, float]:
    """Share of score movement from fit, behavior and account features."""
    return {g: float(v) for g, v in importance.groupby("group")["share"].sum().items()}


def _numeric_view(X: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Feature values as numbers for colouring a beeswarm (categories by their code)."""
    cols = []
    for c in names:
        s = X[c]
        if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object or pd.api.types.is_string_dtype(s):
            cols.append(pd.Categorical(s.astype("string")).codes.astype(float))
        else:
            cols.append(pd.to_numeric(s, errors="coerce").to_numpy(dtype=float))
    return np.column_stack(cols)


def figures(exp: Explanation, X: pd.DataFrame, importance: pd.DataFrame, top: int = 15) -> dict:
    """SHAP beeswarm and mean-|points| bar plots, in points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    names = importance["feature"].head(top).tolist()
    idx = [exp.feature_names.index(n) for n in names]
    figs = {}
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    colors = importance.head(top)["group"].map({"fit": "#4C72B0", "behavior": "#DD8452", "account": "#55A868"})
    ax.barh(names[::-1], importance["mean_abs_points"].head(top)[::-1], color=colors[::-1])
    ax.set(xlabel="mean |points| per lead", title="Global drivers (blue fit, orange behavior, green account)")
    fig.tight_layout()
    figs["drivers_bar"] = fig

    explanation = shap.Explanation(values=exp.contributions[:, idx], base_values=np.full(len(X), exp.base_points),
                                   data=_numeric_view(X, names), feature_names=names)
    plt.figure(figsize=(7, 5), dpi=110)
    shap.plots.beeswarm(explanation, max_display=top, show=False, plot_size=None)
    plt.gca().set_xlabel("points added to the lead's score")
    plt.gcf().tight_layout()
    figs["beeswarm"] = plt.gcf()
    return figs
