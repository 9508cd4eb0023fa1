"""Leakage guard: find feature columns that record the outcome instead of predicting it.

CRM exports mix what was known about a lead *before* sales talked to it (source, country, pages
visited) with fields sales filled in *afterwards* (a tag such as "Will revert after reading the
email", a lead-quality rating, a lost reason). The second kind describes the outcome, so a model
trained on it looks excellent offline (the X Education export reaches ~0.98 ROC AUC with them,
~0.90 without) and is useless when a fresh lead has to be scored, because for a fresh lead those
fields are still empty.

:func:`leakage_report` looks at each column on its own, against the label, and flags it when one
of four rules fires. The first three look at the data; the fourth is what you know:

1. **Single-column AUC** ``≥ auc_threshold`` (default 0.85). One honest pre-contact attribute
   rarely ranks leads that well by itself: on X Education no fit or behaviour column exceeds 0.72
   (occupation 0.70, the borderline last activity 0.72), while ``Tags`` reaches 0.92. The AUC is
   direction-free (``max(auc, 1 - auc)``) because a column that predicts losses is as leaky as
   one that predicts wins. Categorical and text columns are scored by *out-of-fold* target
   encoding (each row gets the win rate of its value computed on the other folds, never on
   itself); this is what keeps an ID-like column, whose values each occur once, at exactly 0.5
   instead of the perfect 1.0 an in-sample encoding would give. Numeric columns are scored by
   their value; missing values are one more level, put at the low end or the high end of the
   scale, whichever separates better (a guard should err towards suspicion).
2. **Pure values** cover ``≥ min_support`` of rows (default 5 %). A value — a category, a
   numeric code, or "missing" — is *pure* when it comes with one outcome at least
   ``purity_threshold`` of the time (default 98 %). Sales dispositions look like this ("Closed by
   Horizzon": 99.4 % won, "Already a student": 0.6 % won); pre-contact attributes almost never do
   for a sizeable share of leads. Two details make the share trustworthy:

   * *class-balanced shares*: the share is computed as if wins and losses were equally common
     (each row weighted by the inverse frequency of its outcome). With a 2 % win rate every
     category would otherwise be "98 % lost"; balancing makes the rule mean the same thing at any
     win rate, and at a 50 % win rate it is the plain share.
   * *support*: only values with at least ``min_value_rows`` rows (default 30) and at least 5
     expected rows of the rarer outcome count, so a handful of rows that happen to share an
     outcome cannot trigger the rule.
3. **Decisive values in both directions** cover ``≥ min_support`` of rows. Among supported values,
   some reach a balanced win share ``≥ decisive_threshold`` (default 0.90) and others reach
   ``≤ 1 - decisive_threshold``. This is the shape of a rating or status that sales sets after
   the call (``Lead Quality``: "High in Relevance" 95 % won, "Worst" 2 % won): it is not pure
   enough for rule 2 and, being empty for half the leads, its AUC (0.80) stays below rule 1, yet
   where it is filled in it nearly decides the outcome *both ways*. Legitimate attributes can
   have one near-decisive value (X Education's "Lead Add Form" origin, 92 % won; "Welingak
   Website" source) but not both a near-certain win value and a near-certain loss value: on
   X Education the weaker side of every fit and behaviour column stays below 0.86 balanced,
   while ``Lead Quality``'s weaker side is 0.97 (the decisions do not change for thresholds from
   0.88 to 0.94, on the full export or on the 2,000-row test sample).
4. **Declared after contact** (``declared_after_contact``): columns you know are filled in by
   sales, whatever the data says. Data rules cannot see every leak — X Education's
   ``Lead Profile`` and Asymmetrique scores are filled in after contact but alone reach only
   0.55–0.67 AUC — so the schema's knowledge must be able to flag them.

5. **Filled for one outcome** (``fill_ratio_threshold``, default 5): the column is filled (not
   missing, nor a ``missing_values`` placeholder such as the feature build's ``unknown``) for a much larger share of one outcome than of the other, e.g. filled for 46 % of wins and
   4 % of losses, whatever its values: a field sales fills in once the deal is won (a sales profile, a
   catalogue size) or lost (a lost reason). Flagged when the ratio of the two fill rates is at least
   the threshold, the larger fill rate is at least 10 % and at least ``MIN_FILLED_ROWS`` rows of that
   outcome are filled. A ratio of 5 is a likelihood ratio of "strong evidence", not a value fitted to
   one export: genuine attributes with gaps (CRM enrichment, optional form fields) are filled at
   similar rates for both outcomes (on X Education and the synthetic funnel the largest ratio of a
   fit or behaviour column is below 2), and genuine disqualifiers (student titles) are values of a
   filled column, which this rule does not look at.
6. **Fill rate that follows the outcome over time** (needs ``time``): leads are cut into
   ``TIME_PERIODS`` periods of equal size by ``time``; flagged when the column's fill rate moves by at
   least ``MIN_FILL_RANGE`` (25 points) across periods, in step with the win rate (Spearman rank
   correlation over periods ≥ ``MIN_STEP_CORRELATION``), and within periods it is filled more often
   for one outcome (pooled within-period fill-rate ratio ≥ 1.5). This is a field filled after
   contact: as deals are decided it fills in, so periods with more wins have it filled more often
   (the single-column AUC can stay modest because half the wins are still empty). A column whose
   fill rate is stable, or changes over time independently of the outcome (a form field added
   later), is not flagged.

Rules 5 and 6 look at missingness only, so they also catch a column whose values look innocent.
The pipeline examines **one row per lead** (its first labelled snapshot, labelled won when any of its
snapshots is), over **all labelled history** (training, calibration and test periods): an attribute
without a timestamp has one value per lead, and a leak that starts late would be missed in the
training window alone.

``override_keep`` keeps a flagged column in training (it stays ``flagged``, with the reason, but
``excluded`` is False): the guard reports, a person decides.

Everything is deterministic: the folds of the target encoding use a fixed seed, and ties in the
ordering are broken by column name. Nothing is read or written.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from leadscore.drift import as_float, is_numeric
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

#: Folds and seed of the out-of-fold target encoding used for categorical columns.
N_FOLDS = 5
SEED = 0
#: Pseudo-rows of the overall win rate added to each value's win rate (additive smoothing), so a
#: value seen once on the other folds does not score 0 or 1.
SMOOTHING = 1.0
#: A value counts for the purity rules only if the rarer outcome is expected at least this many
#: times among its rows (the usual "expected count ≥ 5" rule for a meaningful proportion).
MIN_EXPECTED_MINORITY = 5.0
#: How many example values a reason quotes.
MAX_EXAMPLES = 3
#: Rule 5: the larger fill rate must be at least this and cover at least this many rows of its outcome.
MIN_FILL_RATE, MIN_FILLED_ROWS = 0.10, 10
#: Rule 6: periods, the smallest fill-rate range across them, the rank correlation with the win rate and
#: the within-period fill-rate ratio.
TIME_PERIODS, MIN_FILL_RANGE, MIN_STEP_CORRELATION, MIN_WITHIN_RATIO = 6, 0.25, 0.8, 1.5

REPORT_COLUMNS = ["column", "kind", "single_column_auc", "pure_value_share", "decisive_share",
                  "missing_share", "fill_rate_won", "fill_rate_lost", "fill_time_correlation", "flagged", "excluded",
                  "reason"]


def leakage_report(table: pd.DataFrame, label: str | pd.Series, columns: list[str], *,
                   auc_threshold: float = 0.85, purity_threshold: float = 0.98, min_support: float = 0.05,
                   declared_after_contact: Iterable[str] = (), override_keep: Iterable[str] = (),
                   decisive_threshold: float = 0.90, min_value_rows: int = 30,
                   pure_values_rule: bool = True, fill_ratio_threshold: float = 5.0,
                   time: str | pd.Series | None = None,
                   missing_values: Iterable[str] = ("unknown",)) -> pd.DataFrame:
    """One row per column in ``columns``, most suspicious first, saying whether it leaks the label.

    ``label`` is the name of a 0/1 column of ``table`` or a 0/1 Series of the same length (taken by
    position). Columns of numeric dtype (and datetimes) are treated as numeric, everything else
    (pandas Categorical, text, booleans) as categorical. Names in ``declared_after_contact`` and
    ``override_keep`` that are not in ``columns`` are ignored, so one list can serve several
    exports.

    Returned columns:

    * ``column``, ``kind`` ("categorical" | "numeric"), ``missing_share``;
    * ``single_column_auc``: direction-free ROC AUC of the column alone (rule 1 of the module doc);
    * ``pure_value_share``: share of rows whose value is pure, i.e. seen with one outcome at least
      ``purity_threshold`` of the time, class-balanced, among values with enough support (rule 2);
    * ``decisive_share``: share of rows whose value is decisive (balanced win share
      ``≥ decisive_threshold`` or ``≤ 1 - decisive_threshold``) when both directions occur, else 0
      (rule 3);
    * ``flagged``: any rule fired (rule 4 is ``declared_after_contact``);
    * ``excluded``: flagged and not in ``override_keep`` — what :func:`excluded_columns` returns;
    * ``reason``: the rules that fired, in plain English with example values, or
      "no rule triggered".

    Sorted flagged first, then by AUC, pure share and decisive share (all descending), then name.
    """
    y = _binary_label(table, label)
    columns = list(columns)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise KeyError(f"columns not in the table: {missing}")
    if isinstance(label, str) and label in columns:
        raise ValueError(f"the label column {label!r} cannot be examined as a feature")
    if len(set(columns)) != len(columns):
        raise ValueError("columns contains duplicates")
    for name, value in {"auc_threshold": auc_threshold, "purity_threshold": purity_threshold,
                        "decisive_threshold": decisive_threshold}.items():
        if not 0.5 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0.5 and 1, got {value}")
    if not 0.0 < min_support <= 1.0:
        raise ValueError(f"min_support must be in (0, 1], got {min_support}")
    declared, keep = set(declared_after_contact), set(override_keep)
    folds = _folds(y)
    period = _periods(table, time)

    rows = []
    for col in columns:
        x = table[col]
        numeric = is_numeric(x)
        codes = _level_codes(x)
        auc = _numeric_auc(x, y) if numeric else _categorical_auc(codes, y, folds)
        levels = _levels(codes, y, min_value_rows)
        pure = levels["support"] & (np.maximum(levels["balanced_win"], 1 - levels["balanced_win"]) >= purity_threshold)
        win = levels["support"] & (levels["balanced_win"] >= decisive_threshold)
        loss = levels["support"] & (levels["balanced_win"] <= 1 - decisive_threshold)
        pure_share = float(levels.loc[pure, "rows"].sum() / len(y))
        decisive_share = float(levels.loc[win | loss, "rows"].sum() / len(y)) if win.any() and loss.any() else 0.0

        reasons = []
        if auc >= auc_threshold:
            reasons.append(f"single-column AUC {auc:.2f} ≥ {auc_threshold:.2f}")
        # One-sided purity also fires on real disqualifiers ("student" never buys in B2B); the pipeline
        # reports it but flags on the two-sided rule (pure_values_rule=False).
        if pure_values_rule and pure_share >= min_support:
            reasons.append(f"{pure_share:.0%} of rows carry values seen almost only with one outcome "
                           f"(≥ {purity_threshold:.0%} class-balanced), e.g. {_examples(levels[pure], x)}")
        if decisive_share >= min_support:
            reasons.append(f"{decisive_share:.0%} of rows carry values that nearly decide the outcome both ways "
                           f"(won: {_examples(levels[win], x)}; lost: {_examples(levels[loss], x)})")
        filled = _filled(x, numeric, missing_values)
        f_won, f_lost = float(filled[y == 1].mean()), float(filled[y == 0].mean())
        hi, lo = max(f_won, f_lost), min(f_won, f_lost)
        more = "wins" if f_won >= f_lost else "losses"
        if (hi >= MIN_FILL_RATE and filled[y == (1 if more == "wins" else 0)].sum() >= MIN_FILLED_ROWS
                and hi >= fill_ratio_threshold * lo):
            ratio = "only then" if lo == 0 else f"×{hi / lo:.1f}"
            reasons.append(f"filled for {f_won:.0%} of wins but {f_lost:.0%} of losses ({ratio} ≥ ×{fill_ratio_threshold:g}): "
                           f"a field filled once the outcome is known")
        step = _fill_in_step(filled, y, period) if period is not None else None
        if step is not None and step["flag"]:
            reasons.append(f"fill rate follows the outcome over time: {step['fill_first']:.0%} → {step['fill_last']:.0%} "
                           f"filled while the win rate went {step['win_first']:.0%} → {step['win_last']:.0%} across "
                           f"{step['periods']} periods (rank correlation {step['correlation']:+.2f}), and within periods "
                           f"filled ×{step['within_ratio']:.1f} as often for {step['more']}: a field filled after contact")
        if col in declared:
            reasons.append("declared as filled in after sales contact")
        flagged = bool(reasons)
        if flagged and col in keep:
            reasons.append("kept by override_keep")
        rows.append({"column": col, "kind": "numeric" if numeric else "categorical",
                     "single_column_auc": auc, "pure_value_share": pure_share, "decisive_share": decisive_share,
                     "missing_share": float(pd.isna(x).mean()) if len(x) else 0.0,
                     "fill_rate_won": f_won, "fill_rate_lost": f_lost,
                     "fill_time_correlation": np.nan if step is None else step["correlation"], "flagged": flagged,
                     "excluded": flagged and col not in keep,
                     "reason": "; ".join(reasons) if reasons else "no rule triggered"})

    report = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    report = report.sort_values(["flagged", "single_column_auc", "pure_value_share", "decisive_share", "column"],
                                ascending=[False, False, False, False, True], kind="mergesort")
    return report.reset_index(drop=True).astype({"flagged": bool, "excluded": bool})


def per_lead(rows: pd.DataFrame, label: str = "label", time: str = "as_of") -> pd.DataFrame:
    """One row per lead from snapshot rows: its first labelled snapshot, labelled 1 when any of its
    snapshots is (a lead-level attribute is examined once per lead, not once per week it was open)."""
    rows = rows[rows[label].notna()].sort_values([time, "lead_id"], kind="stable")
    won = rows.groupby("lead_id", observed=True, sort=False)[label].transform("max")
    first = ~rows["lead_id"].duplicated()
    return rows[first.to_numpy()].assign(**{label: won[first.to_numpy()].astype(int)}).reset_index(drop=True)


def _filled(x: pd.Series, numeric: bool, missing_values) -> np.ndarray:
    """True where the column holds a value: not missing, and for text not a placeholder the feature
    build writes for a gap (``unknown``)."""
    filled = np.array(pd.notna(x), dtype=bool)
    if not numeric and missing_values:
        text = x.astype("string").str.strip().str.lower()
        filled &= ~np.asarray(text.isin([str(v).lower() for v in missing_values]).fillna(False), dtype=bool)
    return filled


def _periods(table: pd.DataFrame, time) -> np.ndarray | None:
    """Period index 0..TIME_PERIODS-1 per row (equal-size periods by ``time``), or None."""
    if time is None:
        return None
    t = table[time] if isinstance(time, str) else pd.Series(time)
    if len(t) != len(table):
        raise ValueError(f"time has {len(t)} rows, the table {len(table)}")
    ranks = pd.Series(np.asarray(t)).rank(method="first").to_numpy()
    return np.minimum((ranks - 1) * TIME_PERIODS // len(t), TIME_PERIODS - 1).astype(int)


def _fill_in_step(filled: np.ndarray, y: np.ndarray, period: np.ndarray) -> dict | None:
    """Rule 6 on one column: fill rate and win rate per period, their rank correlation, the fill range
    and the pooled within-period fill-rate ratio of the two outcomes."""
    from scipy.stats import spearmanr

    periods = np.unique(period)
    if periods.size < 3:
        return None
    fill = np.array([filled[period == p].mean() for p in periods])
    win = np.array([y[period == p].mean() for p in periods])
    if np.ptp(fill) == 0 or np.ptp(win) == 0:
        corr = 0.0
    else:
        corr = float(spearmanr(fill, win).statistic)
    # within-period comparison: the expected fill of each outcome at its periods' overall fill rates
    w_hat = np.array([filled[(period == p) & (y == 1)].sum() for p in periods]).sum()
    l_hat = np.array([filled[(period == p) & (y == 0)].sum() for p in periods]).sum()
    e_won = sum(fill[i] * ((period == p) & (y == 1)).sum() for i, p in enumerate(periods))
    e_lost = sum(fill[i] * ((period == p) & (y == 0)).sum() for i, p in enumerate(periods))
    r_won, r_lost = (w_hat + 1) / (e_won + 1), (l_hat + 1) / (e_lost + 1)
    within, more = (r_won / r_lost, "wins") if r_won >= r_lost else (r_lost / r_won, "losses")
    in_step = corr if more == "wins" else -corr  # filled for wins: rises with the win rate; for losses: falls
    flag = np.ptp(fill) >= MIN_FILL_RANGE and in_step >= MIN_STEP_CORRELATION and within >= MIN_WITHIN_RATIO
    return {"flag": bool(flag), "correlation": corr, "fill_first": float(fill[0]), "fill_last": float(fill[-1]),
            "win_first": float(win[0]), "win_last": float(win[-1]), "periods": int(periods.size),
            "within_ratio": float(within), "more": more}


def excluded_columns(report: pd.DataFrame) -> list[str]:
    """Columns of a :func:`leakage_report` to drop before training (flagged, not overridden), in report order."""
    return [str(c) for c in report.loc[report["excluded"].astype(bool), "column"]]


# --------------------------------------------------------------------------------------------- helpers

def _binary_label(table: pd.DataFrame, label: str | pd.Series) -> np.ndarray:
    """The label as a 0/1 int array; both outcomes must occur at least twice (for the folds)."""
    if isinstance(label, str):
        if label not in table.columns:
            raise KeyError(f"label column {label!r} not in the table")
        values = table[label]
    else:
        values = pd.Series(label)
        if len(values) != len(table):
            raise ValueError(f"label has {len(values)} rows, the table {len(table)}")
    if values.isna().any():
        raise ValueError("the label has missing values")
    y = values.to_numpy()
    if not np.isin(y, [0, 1]).all():
        raise ValueError("the label must be 0/1 (or boolean)")
    y = y.astype(int)
    if min((y == 1).sum(), (y == 0).sum()) < 2:
        raise ValueError("the label needs at least two rows of each outcome")
    return y


def _level_codes(x: pd.Series) -> np.ndarray:
    """One integer per distinct value, missing values sharing one extra code (their own level)."""
    if isinstance(x.dtype, pd.CategoricalDtype):
        codes, _ = pd.factorize(x.astype(object))
    else:
        codes, _ = pd.factorize(x)
    codes = np.asarray(codes, dtype=np.int64)
    codes[codes < 0] = codes.max(initial=-1) + 1
    return codes


def _folds(y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    k = int(min(N_FOLDS, (y == 1).sum(), (y == 0).sum()))
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=SEED).split(np.zeros(len(y)), y))


def _direction_free_auc(y: np.ndarray, score: np.ndarray) -> float:
    auc = float(roc_auc_score(y, score))
    return max(auc, 1.0 - auc)


def _categorical_auc(codes: np.ndarray, y: np.ndarray, folds) -> float:
    """AUC of the out-of-fold target encoding: each row scored by its value's win rate on the other folds.

    Values absent from the other folds (every value of an ID-like column) get the overall win rate,
    one constant, so they carry no ranking information and pull the AUC towards 0.5.
    """
    prior = float(y.mean())
    n_levels = int(codes.max(initial=-1)) + 1
    score = np.empty(len(y))
    for train, test in folds:
        wins = np.bincount(codes[train], weights=y[train], minlength=n_levels)
        rows = np.bincount(codes[train], minlength=n_levels)
        score[test] = ((wins + SMOOTHING * prior) / (rows + SMOOTHING))[codes[test]]
    return _direction_free_auc(y, score)


def _numeric_auc(x: pd.Series, y: np.ndarray) -> float:
    """AUC of the value itself; missing values form one level placed at whichever end separates better."""
    ranks = pd.Series(as_float(x)).rank(method="average").to_numpy()
    nan = np.isnan(ranks)
    if not nan.any():
        return _direction_free_auc(y, ranks)
    return max(_direction_free_auc(y, np.where(nan, fill, ranks)) for fill in (0.0, len(ranks) + 1.0))


def _levels(codes: np.ndarray, y: np.ndarray, min_value_rows: int) -> pd.DataFrame:
    """Per value (largest first): a row holding it, rows, win rate, class-balanced win share, support."""
    n_levels = int(codes.max(initial=-1)) + 1
    rows = np.bincount(codes, minlength=n_levels).astype(float)
    wins = np.bincount(codes, weights=y, minlength=n_levels)
    _, first = np.unique(codes, return_index=True)  # codes are 0..n_levels-1, all present
    pi = float(y.mean())
    rate = wins / rows
    # Balanced share: P(win | value) if wins and losses were equally common overall.
    w, l = rate / pi, (1 - rate) / (1 - pi)
    balanced = w / (w + l)
    support = (rows >= min_value_rows) & (rows * min(pi, 1 - pi) >= MIN_EXPECTED_MINORITY)
    return pd.DataFrame({"first": first, "rows": rows, "win_rate": rate, "balanced_win": balanced,
                         "support": support}).sort_values(["rows", "first"], ascending=[False, True], kind="mergesort")


def _label(value) -> str:
    return "missing" if pd.isna(value) else repr(value.item() if hasattr(value, "item") else value)


def _examples(levels: pd.DataFrame, x: pd.Series) -> str:
    """The largest few values, e.g. "'Worst' (2% won, 601 rows)"."""
    parts = [f"{_label(x.iloc[r.first])} ({r.win_rate:.0%} won, {int(r.rows)} rows)"
             for r in levels.head(MAX_EXAMPLES).itertuples()]
    more = len(levels) - MAX_EXAMPLES
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")
