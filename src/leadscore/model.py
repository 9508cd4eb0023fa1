"""Time-based splits, the LightGBM model and its calibration.

Calibration is fitted in log-odds space on the model's raw margin (the sum of its trees): a sigmoid
(Platt) calibration is then a straight line in log-odds, so tree SHAP contributions, which add up to
the margin, map onto the calibrated score by one factor; an isotonic calibration is a monotone step
function of the margin. The calibration data come from a later period than the training data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

from leadscore.config import SplitParams, TrainParams

EPS = 1e-6


# ----------------------------------------------------------------------------- splits
@dataclass
class TimeSplit:
    train: pd.DataFrame  # snapshot rows the trees are fitted on (with a ``weight`` column)
    valid: pd.DataFrame  # early stopping only: training-period rows of a held-out group of leads
    calibration: pd.DataFrame  # the period before the test period, holdout leads: calibration, threshold
    test: pd.DataFrame  # the newest period whose labels are complete, holdout leads: the replay
    boundaries: dict = field(default_factory=dict)
    population_scale: float = 1.0  # holdout rows are this share of all open leads: volumes × 1/share


def lead_hash(lead_id: pd.Series, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per lead, fixed by the lead id and the seed (no outcome involved)."""
    h = pd.util.hash_pandas_object(lead_id.astype(str), index=False, hash_key=f"{seed:016d}"[:16])
    return (h.to_numpy() >> np.uint64(11)).astype(float) / float(2 ** 53)


def time_split(table: pd.DataFrame, params: SplitParams, seed: int = 0) -> TimeSplit:
    """Split snapshot rows by time on ``as_of`` and by lead, never by outcome.

    1. Only rows with a known label count (the label window ended before the export); the selection
       depends on ``as_of`` alone. Censored rows (label NULL) are not used here.
    2. By time: the newest ``test_days`` of labelled snapshot dates are the test period, the
       ``calibration_days`` before it the calibration period, everything earlier the training period.
    3. By lead: a seeded hash puts ``holdout_share`` of the leads in the holdout group, whose rows in the
       calibration and test periods are kept; the other leads' rows in the training period are the
       training rows (a ``validation_share`` of those leads is kept apart for early stopping). No lead is
       on both sides, and each side is a random sample of the open leads at every date, so the test
       rows replay the nightly job on a random ``holdout_share`` of its leads (``population_scale``).
    4. Training rows are weighted 1 / (the lead's number of training rows), so each lead counts once
       whatever its age; calibration and test rows are unweighted (the job's population as it is).

    Raises ValueError when a part is empty or lacks one of the outcomes.
    """
    df = table[table["label"].notna()].sort_values(["as_of", "lead_id"], kind="stable").reset_index(drop=True)
    if df.empty:
        raise ValueError("no snapshot has a complete label window yet: the export spans less than "
                         "features.label_horizon_days after the first lead; shorten it or bring more history")
    df["label"] = df["label"].astype(int)
    end = df["as_of"].max() + pd.Timedelta(seconds=1)
    test_start = end - pd.Timedelta(days=params.test_days)
    cal_start = test_start - pd.Timedelta(days=params.calibration_days)
    u = lead_hash(df["lead_id"], seed)
    holdout = u < params.holdout_share
    valid_lead = ~holdout & (u < params.holdout_share + (1 - params.holdout_share) * params.validation_share)
    before = (df["as_of"] < cal_start).to_numpy()
    train = df[before & ~holdout & ~valid_lead].copy()
    valid = df[before & valid_lead]
    calibration = df[~before & holdout & (df["as_of"] < test_start).to_numpy()]
    test = df[holdout & (df["as_of"] >= test_start).to_numpy()]
    if len(train) < 50 or len(valid) < 10 or any(part["label"].nunique() < 2 for part in (train, valid, calibration, test)):
        raise ValueError(
            f"the split leaves {len(train)} training, {len(valid)} validation, {len(calibration)} calibration and "
            f"{len(test)} test rows (both outcomes needed in each): labelled snapshots span {df['as_of'].min()} to "
            f"{end}; shorten split.test_days / split.calibration_days, raise split.holdout_share or bring more history")
    train["weight"] = 1.0 / train.groupby("lead_id", observed=True)["lead_id"].transform("size").to_numpy()
    b = {
        "train_from": str(df["as_of"].min()), "calibration_from": str(cal_start), "test_from": str(test_start),
        "test_to": str(end), "labels_complete_until": str(end),
        "n_train": len(train), "n_valid": len(valid), "n_calibration": len(calibration), "n_test": len(test),
        "leads_train": int(train["lead_id"].nunique()), "leads_test": int(test["lead_id"].nunique()),
        "holdout_share": params.holdout_share,
        "win_rate_train": float(np.average(train["label"], weights=train["weight"])),
        "win_rate_test": float(test["label"].mean()),
    }
    return TimeSplit(train, valid, calibration, test, b, population_scale=1.0 / params.holdout_share)


# ----------------------------------------------------------------------------- calibration
def _logit(p):
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


ISOTONIC_FLOOR = 1e-3  # isotonic steps are read as at least 0.1% and at most 99.9% (a few thousand rows cannot say less)


class MarginCalibrator:
    """Maps the model's raw margin (log-odds) to a calibrated probability.

    Isotonic calibration is fitted as usual, then used through a strictly increasing map: linear in
    log-odds between the midpoints of the isotonic steps (clipped to 0.1%-99.9%), with a gentle slope
    beyond the outer steps. A flat step would give every lead on it the same probability, whatever its
    behaviour, and leave it with no reasons at all (its points could not move); the interpolation keeps the
    isotonic fit's shape, and every difference in margin becomes a difference in points."""

    def __init__(self, method: str = "sigmoid"):
        self.method = method

    def fit(self, margin, y) -> MarginCalibrator:
        margin, y = np.asarray(margin, float), np.asarray(y)
        self.__dict__.pop("_knots", None)
        if self.method == "isotonic":
            self.map_ = IsotonicRegression(out_of_bounds="clip", y_min=EPS, y_max=1 - EPS).fit(margin, y)
        elif self.method == "sigmoid":
            self.map_ = LogisticRegression(C=1e6).fit(margin.reshape(-1, 1), y)
        elif self.method != "none":
            raise ValueError(f"unknown calibration method {self.method!r}")
        return self

    def _isotonic_knots(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(knot margins, knot log-odds, tail slope) of the strictly increasing isotonic map."""
        knots = self.__dict__.get("_knots")
        if knots is None:
            x = np.asarray(self.map_.X_thresholds_, float)
            y = np.asarray(self.map_.y_thresholds_, float)
            change = np.flatnonzero(np.diff(y) != 0)
            starts, ends = np.r_[0, change + 1], np.r_[change, len(y) - 1]
            kx = (x[starts] + x[ends]) / 2
            kl = _logit(np.clip(y[starts], ISOTONIC_FLOOR, 1 - ISOTONIC_FLOOR))
            low, high = kl == kl.min(), kl == kl.max()  # steps merged by the clip: one knot each end
            keep = (~low & ~high) | (low & (kx == kx[low].max())) | (high & (kx == kx[high].min()))
            kx, kl = kx[keep], kl[keep]
            span = kx[-1] - kx[0]
            tail = 0.05 * (kl[-1] - kl[0]) / span if len(kx) > 1 and span > 0 else 0.01
            knots = (kx, kl, max(float(tail), 1e-3))
            self.__dict__["_knots"] = knots
        return knots

    def _isotonic_log_odds(self, margin: np.ndarray) -> np.ndarray:
        kx, kl, tail = self._isotonic_knots()
        inner = np.interp(margin, kx, kl)
        return inner + tail * (np.minimum(margin - kx[0], 0) + np.maximum(margin - kx[-1], 0))

    def predict(self, margin) -> np.ndarray:
        margin = np.asarray(margin, float)
        if self.method == "isotonic":
            return 1 / (1 + np.exp(-self._isotonic_log_odds(margin)))
        if self.method == "sigmoid":
            return self.map_.predict_proba(margin.reshape(-1, 1))[:, 1]
        return 1 / (1 + np.exp(-margin))

    def calibrated_margin(self, margin) -> np.ndarray:
        """The calibrated score in log-odds (what points are made from)."""
        if self.method == "isotonic":
            return self._isotonic_log_odds(np.asarray(margin, float))
        return _logit(self.predict(margin))


def choose_calibration(margin, y, method: str = "auto", folds: int = 5, seed: int = 0) -> tuple[MarginCalibrator, dict]:
    """Fit the calibration; with ``auto`` pick isotonic or sigmoid by out-of-fold log loss on the
    calibration data (in-sample log loss would always favour isotonic, which can memorise it)."""
    margin, y = np.asarray(margin, float), np.asarray(y)
    candidates = ("isotonic", "sigmoid") if method == "auto" else (method,)
    report = {"log_loss_uncalibrated": float(log_loss(y, 1 / (1 + np.exp(-margin)), labels=[0, 1]))}
    cv = StratifiedKFold(n_splits=min(folds, int(np.bincount(y).min())), shuffle=True, random_state=seed)
    for m in candidates:
        if m == "none":
            continue
        oof = np.empty(len(y))
        for fit_idx, held_idx in cv.split(margin.reshape(-1, 1), y):
            oof[held_idx] = MarginCalibrator(m).fit(margin[fit_idx], y[fit_idx]).predict(margin[held_idx])
        report[f"log_loss_cv_{m}"] = float(log_loss(y, oof, labels=[0, 1]))
    chosen = method if method != "auto" else min(candidates, key=lambda m: report[f"log_loss_cv_{m}"])
    report["method"] = chosen
    return MarginCalibrator(chosen).fit(margin, y), report


# ----------------------------------------------------------------------------- the model
class LeadScoreModel:
    """A fitted LightGBM booster with its calibration and input schema: feature table in,
    calibrated probability out. The one place where a feature table becomes model input."""

    def __init__(self, booster: lgb.Booster, calibrator: MarginCalibrator, feature_names: list[str],
                 categories: dict[str, list], metadata: list[dict], info: dict | None = None):
        self.booster = booster
        self.calibrator = calibrator
        self.feature_names = feature_names
        self.categories = categories
        self.metadata = metadata
        self.info = info or {}

    def prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        """Columns in training order; categories as at training (unseen values become missing)."""
        missing = [c for c in self.feature_names if c not in X.columns]
        if missing:
            raise ValueError(f"the input lacks {len(missing)} feature(s) the model was trained on: "
                             f"{', '.join(missing[:10])}{' …' if len(missing) > 10 else ''}")
        out = {}
        for c in self.feature_names:
            if c in self.categories:
                text = X[c].astype("string").astype(object)
                known = text.isin(self.categories[c]) & X[c].notna().to_numpy()
                out[c] = pd.Categorical(text.where(known, None), categories=self.categories[c])
            else:
                out[c] = pd.to_numeric(X[c], errors="coerce").astype(float).to_numpy()
        return pd.DataFrame(out, index=X.index)

    def raw_margin(self, X: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(self.prepare(X), raw_score=True)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of a win, one per row."""
        return self.calibrator.predict(self.raw_margin(X))


def categorical_features(metadata: list[dict]) -> list[str]:
    return [m["name"] for m in metadata if m["kind"] == "categorical"]


def lgbm_params(params: TrainParams, seed: int) -> dict:
    return dict(
        objective="binary", learning_rate=params.learning_rate, n_estimators=params.n_estimators,
        num_leaves=params.num_leaves, max_depth=params.max_depth, min_child_samples=params.min_child_samples,
        subsample=params.subsample, subsample_freq=1 if params.subsample < 1 else 0,
        colsample_bytree=params.colsample_bytree, reg_lambda=params.reg_lambda, random_state=seed,
        deterministic=True, force_row_wise=True, n_jobs=os.cpu_count() or 1, verbose=-1,
    )


def train_model(split: TimeSplit, metadata: list[dict], params: TrainParams, seed: int) -> LeadScoreModel:
    """LightGBM with native categoricals and early stopping on the validation slice, then calibrated
    on the calibration period."""
    names = [m["name"] for m in metadata]
    cats = categorical_features(metadata)
    categories = {c: sorted(pd.concat([split.train[c], split.valid[c]]).dropna().astype(str).unique()) for c in cats}
    skeleton = LeadScoreModel(None, None, names, categories, metadata)
    clf = lgb.LGBMClassifier(**lgbm_params(params, seed))
    clf.fit(skeleton.prepare(split.train), split.train["label"].to_numpy(),
            sample_weight=split.train["weight"].to_numpy() if "weight" in split.train else None,
            eval_X=(skeleton.prepare(split.valid),), eval_y=(split.valid["label"].to_numpy(),), eval_metric="binary_logloss",
            categorical_feature=cats, callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)])
    booster = clf.booster_
    booster.free_dataset()
    skeleton.booster = booster
    margin = skeleton.raw_margin(split.calibration)
    calibrator, report = choose_calibration(margin, split.calibration["label"].to_numpy(), params.calibration, seed=seed)
    skeleton.calibrator = calibrator
    skeleton.info = {"best_iteration": int(clf.best_iteration_ or booster.current_iteration()),
                     "calibration": report, "split": split.boundaries}
    return skeleton
