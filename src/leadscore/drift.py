"""Drift monitoring: has the population of leads moved, and does the model still tell the truth?

Two questions, two tools:

* **Are today's leads like the training leads?** :func:`psi` compares one feature's distribution
  in a reference sample (usually the training table) with a current sample (e.g. last month's
  scored leads); :func:`feature_drift` does it for many columns and labels each one.
* **Are the probabilities still calibrated?** :func:`calibration_by_period` compares the mean
  predicted probability with the observed win rate, calendar period by calendar period, once the
  outcomes are known.

The population stability index is ``PSI = Σ (a_i − e_i) · ln(a_i / e_i)`` over bins ``i``, where
``e_i`` and ``a_i`` are the shares of the expected (reference) and actual (current) rows in bin
``i``. Every term is ≥ 0, so PSI is ≥ 0 and is 0 only when the two binned distributions agree.
The usual reading, which the defaults of :func:`feature_drift` follow:

* **< 0.1**: stable, no action;
* **0.1 – 0.25**: moderate shift, look at the feature (a new campaign, a form change);
* **> 0.25**: major shift, the model is scoring a population it was not trained on; check the
  pipeline and consider retraining.

Pure functions: nothing is read or written.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Share given to a bin that is empty on one side, so its term is large but finite. With 1e-4,
#: a category absent from the reference and held by 1 % of current rows adds ≈ 0.046.
EPSILON = 1e-4

STABLE, WARN, ALERT = "stable", "warn", "alert"


def psi(expected, actual, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected`` (≥ 0; 0 = same distribution).

    Binning depends on the data:

    * **numeric** (both sides of a numeric dtype, booleans excluded): at most ``bins`` bins
      between quantiles of ``expected``. Quantile edges that coincide (ties, e.g. a feature that
      is 0 for 60 % of leads) are merged, so a heavy value gets one bin of its own instead of
      several empty ones. Bins are closed on the right, ``(q_{k-1}, q_k]``, so a value equal to an
      edge falls in the bin below it, like :func:`pandas.qcut`. The outer bins are open-ended:
      values of ``actual`` below the reference minimum or above its maximum go to the first or
      last bin.
    * **categorical / text / boolean**: one bin per category of ``expected``, one more per
      category seen only in ``actual`` (a new lead source shows up as drift instead of being
      dropped).

    In both cases missing values (NaN / None / NaT / pd.NA) form one more bin, so a feature that
    suddenly goes missing is drift too. Empty bins get a share of :data:`EPSILON` so the index
    stays finite. The result depends only on the two multisets of values, never on row order.
    """
    e, a = _series(expected), _series(actual)
    if len(e) == 0 or len(a) == 0:
        raise ValueError("psi needs at least one expected and one actual value")
    if bins < 1:
        raise ValueError(f"bins must be ≥ 1, got {bins}")
    e_missing, a_missing = bool(e.isna().all()), bool(a.isna().all())
    if (is_numeric(e) or e_missing) and (is_numeric(a) or a_missing) and not (e_missing and a_missing):
        e_counts, a_counts = _numeric_counts(e, a, bins)
    else:
        e_counts, a_counts = _categorical_counts(e, a)
    e_share = np.maximum(e_counts / len(e), EPSILON)
    a_share = np.maximum(a_counts / len(a), EPSILON)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame, columns, *, warn: float = 0.1,
                  alert: float = 0.25, bins: int = 10) -> pd.DataFrame:
    """PSI of each column between ``reference`` and ``current``, largest first.

    One row per column: ``column``, ``psi`` and ``status`` — "alert" when ``psi ≥ alert``, "warn"
    when ``psi ≥ warn``, otherwise "stable" (see the module doc for why 0.1 and 0.25). Ties are
    ordered by column name.
    """
    if not 0 <= warn <= alert:
        raise ValueError(f"need 0 ≤ warn ≤ alert, got warn={warn}, alert={alert}")
    columns = list(columns)
    absent = [c for c in columns if c not in reference.columns or c not in current.columns]
    if absent:
        raise KeyError(f"columns missing from reference or current: {absent}")
    values = [psi(reference[c], current[c], bins=bins) for c in columns]
    status = [ALERT if v >= alert else WARN if v >= warn else STABLE for v in values]
    out = pd.DataFrame({"column": columns, "psi": np.asarray(values, dtype=float), "status": status})
    out = out.sort_values(["psi", "column"], ascending=[False, True], kind="mergesort")
    return out.reset_index(drop=True)


def calibration_by_period(as_of: pd.Series, y, p, freq: str = "QS") -> pd.DataFrame:
    """Predicted against observed win rate per calendar period of ``as_of``.

    ``as_of`` gives each lead's scoring moment; ``y`` its outcome (0/1) and ``p`` its predicted
    probability, aligned by position. ``freq`` is a pandas offset alias ("QS" quarters, "MS"
    months, "YS" years, "W" weeks…); ``period`` is the label pandas gives the period (its first
    day for the "…S" aliases). Columns: ``period``, ``leads``, ``wins``, ``mean_predicted``,
    ``observed_win_rate`` and ``gap = mean_predicted − observed_win_rate`` (positive: the model
    promised more wins than sales got). Periods without leads are left out, as are leads whose
    ``as_of`` is missing.

    A model can keep its ranking (AUC) while its probabilities drift away from reality, e.g. when
    the overall win rate changes; a growing gap says recalibrate, even if PSI looks stable.
    """
    when = pd.to_datetime(pd.Series(as_of).reset_index(drop=True))
    y = np.asarray(y, dtype=float).ravel()
    p = np.asarray(p, dtype=float).ravel()
    if not len(when) == len(y) == len(p):
        raise ValueError(f"as_of, y and p must have the same length, got {len(when)}, {len(y)}, {len(p)}")
    if not np.isin(y, [0.0, 1.0]).all():
        raise ValueError("y must be 0/1")
    if not (np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()):
        raise ValueError("p must be probabilities in [0, 1]")
    df = pd.DataFrame({"as_of": when, "y": y, "p": p}).dropna(subset=["as_of"])
    out = (df.groupby(pd.Grouper(key="as_of", freq=freq))
             .agg(leads=("y", "size"), wins=("y", "sum"), mean_predicted=("p", "mean"), observed_win_rate=("y", "mean"))
             .rename_axis("period").reset_index())
    out = out[out["leads"] > 0].reset_index(drop=True)
    out["leads"] = out["leads"].astype(int)
    out["wins"] = out["wins"].astype(int)
    out["gap"] = out["mean_predicted"] - out["observed_win_rate"]
    return out[["period", "leads", "wins", "mean_predicted", "observed_win_rate", "gap"]]


# --------------------------------------------------------------------------------------------- helpers

def _series(values) -> pd.Series:
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    return s.infer_objects() if s.dtype == object else s


def is_numeric(s: pd.Series) -> bool:
    """Numbers, datetimes and durations are binned by quantiles; booleans and categoricals by value."""
    if isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(s):
        return False
    return bool(pd.api.types.is_numeric_dtype(s) or pd.api.types.is_datetime64_any_dtype(s)
                or pd.api.types.is_timedelta64_dtype(s))


def as_float(s: pd.Series) -> np.ndarray:
    """Values as floats, NaN for missing (datetimes and durations as nanoseconds)."""
    missing = s.isna().to_numpy()
    if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
        out = s.to_numpy(dtype="int64", na_value=0).astype(float)
    elif missing.all():
        out = np.zeros(len(s))
    else:
        out = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan, copy=True)
    out[missing] = np.nan
    return out


def _numeric_counts(e: pd.Series, a: pd.Series, bins: int) -> tuple[np.ndarray, np.ndarray]:
    ev, av = as_float(e), as_float(a)
    present = ev[~np.isnan(ev)]
    # Inner edges only: the outer bins are open-ended, so out-of-range values land in them.
    # "inverted_cdf" quantiles are observed values (no interpolation), so ties and ±inf stay exact.
    inner = (np.unique(np.quantile(present, np.arange(1, bins) / bins, method="inverted_cdf"))
             if len(present) and bins > 1 else np.array([]))

    def counts(v: np.ndarray) -> np.ndarray:
        nan = np.isnan(v)
        idx = np.searchsorted(inner, v[~nan], side="left")  # right-closed bins: v == edge stays below
        return np.append(np.bincount(idx, minlength=len(inner) + 1), nan.sum()).astype(float)

    return counts(ev), counts(av)


def _categorical_counts(e: pd.Series, a: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    ek, ak = _category_keys(e), _category_keys(a)
    e_vc, a_vc = ek.value_counts(dropna=False), ak.value_counts(dropna=False)
    # Bins in a fixed order (by key), so the sum is the same whatever the row order.
    keys = sorted(set(e_vc.index) | set(a_vc.index))
    return (e_vc.reindex(keys, fill_value=0).to_numpy(dtype=float),
            a_vc.reindex(keys, fill_value=0).to_numpy(dtype=float))


def _category_keys(s: pd.Series) -> pd.Series:
    """A sortable text key per value: its kind and text, every kind of missing value sharing one key.

    Numbers are keyed by value, so 1 and 1.0 are one category (a column of ints read back as
    floats is not drift), while True stays apart from 1 and the text "1" from the number 1.
    """
    values = s.astype(object).to_numpy()
    missing = s.isna().to_numpy()
    return pd.Series(["" if m else _key(v) for v, m in zip(values, missing)], dtype=object)


def _key(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return f"bool:{bool(value)}"
    if isinstance(value, (int, np.integer)):
        return f"number:{int(value)}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return f"number:{int(v)}" if v.is_integer() else f"number:{v!r}"
    if isinstance(value, str):
        return f"str:{value}"
    return f"{type(value).__name__}:{value}"
