"""Time-based splits, the LightGBM model and its calibration.

Calibration is fitted in log-odds space on the model's raw margin (the sum of its trees): a sigmoid
(Platt) calibration is then a straight line in log-odds, so tree SHAP contributions, which add up to
the margin, map onto the calibrated score by one factor; an isotonic calibration is a monotone step
function of the margin. The calibration data come from a later period than the training data.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from leadscore.config import SplitParams, TrainParams, usable_cpus

if TYPE_CHECKING:  # imported where a model is trained or its booster used: scoring a pickled model needs neither
    import lightgbm as lgb

    from leadscore.treeshap import FastTreeExplainer

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

    Sigmoid (Platt) calibration is a straight line in log-odds, ``a * margin + b`` (scikit-learn's
    ``LogisticRegression`` on the margin); the calibrated log-odds are that line exactly.
    Isotonic calibration is fitted as usual (scikit-learn's ``IsotonicRegression``), then used through a
    strictly increasing map: linear in log-odds between the midpoints of the isotonic steps (clipped to
    0.1%-99.9%), with a gentle slope beyond the outer steps. A flat step would give every lead on it the
    same probability, whatever its behaviour, and leave it with no reasons at all (its points could not
    move); the interpolation keeps the isotonic fit's shape, and every difference in margin becomes a
    difference in points.

    A fitted calibrator keeps its map as plain numbers (``line_`` = (a, b), or ``knots_``) and pickles
    only those, so a scorer loads and calibrates without importing scikit-learn or SciPy."""

    def __init__(self, method: str = "sigmoid"):
        self.method = method

    def fit(self, margin, y) -> MarginCalibrator:
        from sklearn.isotonic import IsotonicRegression  # training only: scoring does not import these
        from sklearn.linear_model import LogisticRegression

        margin, y = np.asarray(margin, float), np.asarray(y)
        for stale in ("line_", "knots_", "map_"):
            self.__dict__.pop(stale, None)
        if self.method == "isotonic":
            self.map_ = IsotonicRegression(out_of_bounds="clip", y_min=EPS, y_max=1 - EPS).fit(margin, y)
        elif self.method == "sigmoid":
            self.map_ = LogisticRegression(C=1e6).fit(margin.reshape(-1, 1), y)
        elif self.method != "none":
            raise ValueError(f"unknown calibration method {self.method!r}")
        self._as_numbers()
        return self

    def _as_numbers(self) -> None:
        """``line_`` (slope, intercept) of a sigmoid map, ``knots_`` of an isotonic one, from ``map_``."""
        if self.method == "sigmoid":
            self.line_ = (float(self.map_.coef_[0, 0]), float(self.map_.intercept_[0]))
        elif self.method == "isotonic":
            self.knots_ = _isotonic_knots(self.map_.X_thresholds_, self.map_.y_thresholds_)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("map_", "_knots")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "map_" in state and "line_" not in state and "knots_" not in state:  # pickled by an earlier version
            self.__dict__.pop("_knots", None)
            self._as_numbers()

    def _isotonic_log_odds(self, margin: np.ndarray) -> np.ndarray:
        kx, kl, tail = self.knots_
        inner = np.interp(margin, kx, kl)
        return inner + tail * (np.minimum(margin - kx[0], 0) + np.maximum(margin - kx[-1], 0))

    def calibrated_margin(self, margin) -> np.ndarray:
        """The calibrated score in log-odds (what points are made from)."""
        margin = np.asarray(margin, float)
        if self.method == "isotonic":
            return self._isotonic_log_odds(margin)
        if self.method == "sigmoid":
            a, b = self.line_
            return a * margin + b
        return margin

    def predict(self, margin) -> np.ndarray:
        """The calibrated probability of each margin."""
        return 1 / (1 + np.exp(-self.calibrated_margin(margin)))


def _isotonic_knots(x, y) -> tuple[np.ndarray, np.ndarray, float]:
    """(knot margins, knot log-odds, tail slope) of the strictly increasing map through the midpoints of
    an isotonic fit's steps (``X_thresholds_``, ``y_thresholds_``)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    change = np.flatnonzero(np.diff(y) != 0)
    starts, ends = np.r_[0, change + 1], np.r_[change, len(y) - 1]
    kx = (x[starts] + x[ends]) / 2
    kl = _logit(np.clip(y[starts], ISOTONIC_FLOOR, 1 - ISOTONIC_FLOOR))
    low, high = kl == kl.min(), kl == kl.max()  # steps merged by the clip: one knot each end
    keep = (~low & ~high) | (low & (kx == kx[low].max())) | (high & (kx == kx[high].min()))
    kx, kl = kx[keep], kl[keep]
    span = kx[-1] - kx[0]
    tail = 0.05 * (kl[-1] - kl[0]) / span if len(kx) > 1 and span > 0 else 0.01
    return kx, kl, max(float(tail), 1e-3)


def choose_calibration(margin, y, method: str = "auto", folds: int = 5, seed: int = 0) -> tuple[MarginCalibrator, dict]:
    """Fit the calibration; with ``auto`` pick isotonic or sigmoid by out-of-fold log loss on the
    calibration data (in-sample log loss would always favour isotonic, which can memorise it)."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

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
    calibrated probability out. The one place where a feature table becomes model input.

    Pickled, the model carries its trees twice: the booster (as LightGBM pickles it, kept as bytes) and
    the same trees as numpy arrays (:class:`leadscore.treeshap.FastTreeExplainer`, which predicts the
    same bits as the booster and gives its exact tree SHAP values), with the booster's digest and gain
    importances. A loaded model scores and explains from the arrays, so scoring does not import
    LightGBM (or scikit-learn, which LightGBM imports): about a second of every fresh process. The
    booster is unpickled (importing LightGBM) only when something asks for it, e.g.
    ``explain_engine: lightgbm``."""

    def __init__(self, booster: lgb.Booster | None, calibrator: MarginCalibrator, feature_names: list[str],
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

    #: small-data mode: the rule baseline's points as a starting margin (see :class:`RulePrior`)
    prior = None

    # -- the booster, kept lazily ---------------------------------------------------------------
    @property
    def booster(self) -> lgb.Booster | None:
        """The LightGBM booster (unpickled, importing LightGBM, on first use after the model was loaded)."""
        booster = self.__dict__.get("_booster")
        if booster is None and self.__dict__.get("_booster_pickle") is not None:
            booster = self.__dict__["_booster"] = pickle.loads(self.__dict__["_booster_pickle"])
        return booster

    @booster.setter
    def booster(self, value) -> None:
        self.__dict__["_booster"] = value
        for derived in ("_booster_pickle", "_trees", "_digest", "_gain"):
            self.__dict__.pop(derived, None)

    @property
    def trees(self) -> FastTreeExplainer:
        """The booster's trees as arrays: exact raw margin (``predict_raw``) and tree SHAP values."""
        trees = self.__dict__.get("_trees")
        if trees is None:
            from leadscore.treeshap import FastTreeExplainer

            trees = self.__dict__["_trees"] = FastTreeExplainer(self.booster)
        return trees

    def booster_digest(self) -> str:
        """sha256 of the booster's model text (its trees and parameters)."""
        digest = self.__dict__.get("_digest")
        if digest is None:
            import hashlib

            digest = self.__dict__["_digest"] = hashlib.sha256(self.booster.model_to_string().encode()).hexdigest()
        return digest

    def gain_importance(self) -> dict[str, float]:
        """Total split gain of each feature, by feature name (LightGBM's ``importance_type="gain"``)."""
        gain = self.__dict__.get("_gain")
        if gain is None:
            booster = self.booster
            values = booster.feature_importance(importance_type="gain")
            gain = self.__dict__["_gain"] = {n: float(v) for n, v in zip(booster.feature_name(), values)}
        return dict(gain)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        booster = state.pop("_booster", None)
        if booster is not None:
            state.update(_booster_pickle=pickle.dumps(booster, protocol=4), _trees=self.trees,
                         _digest=self.booster_digest(), _gain=self.gain_importance())
        return state

    def __setstate__(self, state: dict) -> None:
        if "booster" in state:  # pickled by an earlier version: the booster itself
            state["_booster"] = state.pop("booster")
        self.__dict__.update(state)

    # -- prediction ----------------------------------------------------------------------------------
    def raw_margin(self, X: pd.DataFrame) -> np.ndarray:
        """The trees' raw margin (log-odds), plus the rule prior in small-data mode: shape (n,). From the
        live booster after training, from the tree arrays after loading (the same bits)."""
        prepared = self.prepare(X)
        live = self.__dict__.get("_booster")
        margin = live.predict(prepared, raw_score=True) if live is not None else self.trees.predict_raw(prepared)
        return margin if self.prior is None else margin + self.prior.margin(X)

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
        deterministic=True, force_row_wise=True, n_jobs=params.num_threads or usable_cpus(), verbose=-1,
    )


# ----------------------------------------------------------------------------- small-data mode
#: Small-data mode: trees that learn corrections to the rule baseline's prior (half the features per tree,
#: L2); the number of trees is chosen by lead-grouped cross-validation on all training leads.
#: (Chosen with benchmarks/robustness.py on X Education and synthetic subsamples of 200–2,000 leads.)
#: The folds grow together and stop when their mean held-out log loss has not improved for ``patience``
#: rounds (LightGBM's early stopping on the folds' mean, as ``lgb.cv`` does), at most ``max_rounds``.
SMALL_DATA_TREES = dict(num_leaves=15, max_depth=4, learning_rate=0.03, reg_lambda=5.0, subsample=0.8,
                        subsample_freq=1, colsample_bytree=0.5, min_child_samples=20, max_rounds=1000, folds=5,
                        patience=100)


class RulePrior:
    """The rule baseline's points as the model's starting margin, ``a + b * points / 10`` (a logistic
    fit on the training rows), for small-data mode: the trees learn corrections to it.

    Only rules whose feature column is a model feature count (``fit:<attr>`` → ``attr``,
    ``behavior:<event>`` → ``<event>_<window>d``), so the prior's part of every lead's margin can be
    attributed to a feature: explanations stay additive (prior + trees = margin)."""

    def __init__(self, baseline, columns: dict[str, str], a: float, b: float, means: dict[str, float]):
        self.baseline, self.columns, self.a, self.b, self.means = baseline, columns, a, b, means

    @classmethod
    def fit(cls, baseline, X: pd.DataFrame, y, weight, feature_names: list[str]) -> RulePrior:
        """``baseline``: the rule baseline (or its :class:`~leadscore.rules.RulePoints`); the prior keeps
        only its rules, so a pickled small-data model scores without scikit-learn."""
        from leadscore.rules import RulePoints

        baseline = RulePoints(baseline._rules())
        rp = baseline.rule_points(X)
        window = baseline._rules().behavior_window_days
        columns = {}
        for rule in rp.columns:
            kind, name = rule.split(":", 1)
            target = name if kind == "fit" else f"{name}_{window}d"
            if target in feature_names:
                columns[rule] = target
        pts = rp[list(columns)].sum(axis=1).to_numpy() / 10.0
        y, weight = np.asarray(y), np.asarray(weight, float)
        if columns and np.ptp(pts) > 0:
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1e6).fit(pts.reshape(-1, 1), y, sample_weight=weight)
            a, b = float(lr.intercept_[0]), float(lr.coef_[0, 0])
        else:
            a, b = float(_logit(np.average(y, weights=weight))), 0.0
        means = {r: float(np.average(rp[r].to_numpy(), weights=weight)) for r in columns}
        return cls(baseline, columns, a, b, means)

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        if not self.columns:
            return np.full(len(X), self.a)
        rp = self.baseline.rule_points(X)[list(self.columns)].fillna(0.0)  # a value not given scores 0, as in the rules
        return self.a + self.b * rp.sum(axis=1).to_numpy() / 10.0

    def contributions(self, X: pd.DataFrame, feature_names: list[str]) -> np.ndarray:
        """(n, features + 1): each rule's deviation from its training mean on its feature, the rest as bias."""
        out = np.zeros((len(X), len(feature_names) + 1))
        out[:, -1] = self.a + self.b * sum(self.means.values()) / 10.0
        if self.columns:
            rp = self.baseline.rule_points(X).fillna(0.0)
            where = {n: i for i, n in enumerate(feature_names)}
            for rule, feature in self.columns.items():
                out[:, where[feature]] += self.b * (rp[rule].to_numpy() - self.means[rule]) / 10.0
        return out


def small_data_reason(rows: pd.DataFrame, params: TrainParams) -> str | None:
    """Why the training rows call for small-data mode (None: they do not)."""
    leads = int(rows["lead_id"].nunique())
    wins = int(rows.loc[rows["label"] == 1, "lead_id"].nunique())
    if leads < params.small_data_leads or wins < params.small_data_wins:
        return (f"small-data mode: {leads:,} training leads ({wins:,} of them won) is below "
                f"train.small_data_leads = {params.small_data_leads:,} or train.small_data_wins = "
                f"{params.small_data_wins:,}; the model is the rule baseline's points as a prior with a strongly "
                f"regularised LightGBM learning corrections (number of trees by lead-grouped cross-validation)")
    return None


def _lead_weights(rows: pd.DataFrame) -> np.ndarray:
    return 1.0 / rows.groupby("lead_id", observed=True)["lead_id"].transform("size").to_numpy()


def _fit_small(skeleton: LeadScoreModel, rows: pd.DataFrame, cats: list[str], prior: RulePrior,
               seed: int, threads: int) -> tuple[lgb.Booster, int, dict]:
    """Small-data trees on top of the prior: rounds by lead-grouped CV log loss, then a fit on all rows."""
    import lightgbm as lgb
    from sklearn.model_selection import GroupKFold

    cfg = dict(SMALL_DATA_TREES)
    max_rounds, n_folds, patience = cfg.pop("max_rounds"), cfg.pop("folds"), cfg.pop("patience")
    booster_params = dict(objective="binary", verbose=-1, seed=seed, deterministic=True, force_row_wise=True,
                          num_threads=threads, **cfg)
    X, y, w = skeleton.prepare(rows), rows["label"].to_numpy(), _lead_weights(rows)
    init = prior.margin(rows)
    groups = rows["lead_id"].astype(str).to_numpy()
    n_folds = int(min(n_folds, pd.unique(groups).size))
    cv_params, folds = {**booster_params, "metric": "binary_logloss"}, []
    for fit_idx, held_idx in GroupKFold(n_splits=n_folds).split(X, y, groups):
        if len(np.unique(y[held_idx])) < 2:
            continue
        d_fit = lgb.Dataset(X.iloc[fit_idx], y[fit_idx], weight=w[fit_idx], init_score=init[fit_idx],
                            categorical_feature=cats, free_raw_data=False, params=cv_params)
        d_held = lgb.Dataset(X.iloc[held_idx], y[held_idx], weight=w[held_idx], init_score=init[held_idx],
                             categorical_feature=cats, reference=d_fit, params=cv_params)
        folds.append((d_fit, d_held))
    # rounds minimising the mean held-out log loss (the prior with a tree or two when nothing helps)
    rounds = cv_rounds(cv_params, folds, max_rounds, patience) if folds else 1
    booster = lgb.train(booster_params, lgb.Dataset(X, y, weight=w, init_score=init, categorical_feature=cats), rounds)
    return booster, rounds, {"cv_rounds": rounds, "cv_folds": len(folds)}


def cv_rounds(booster_params: dict, folds: list[tuple[lgb.Dataset, lgb.Dataset]], max_rounds: int,
              patience: int) -> int:
    """The number of boosting rounds (1 … ``max_rounds``) with the lowest mean held-out metric over ``folds``
    ((fit, held) Datasets, built with ``params=booster_params`` so that their bins follow the boosters'
    dataset parameters, as ``lgb.train`` sets them): the folds' boosters grow one round at a time, together,
    and stop once the mean has not improved for ``patience`` rounds. Ties go to the fewer rounds. This is
    ``lgb.cv``'s early stopping on the folds' mean (LightGBM docs, "lightgbm.cv"), on folds built by the
    caller (lead-grouped, each held fold with both classes, bins from the fit rows only) rather than by
    ``lgb.cv``; each fold trains as ``lgb.train`` would, round for round."""
    import lightgbm as lgb

    boosters = []
    for d_fit, d_held in folds:
        booster = lgb.Booster(params={**booster_params, "num_iterations": max_rounds}, train_set=d_fit)
        booster.add_valid(d_held, "held")
        boosters.append(booster)
    best, best_loss = 1, np.inf
    for done in range(1, max_rounds + 1):
        for booster in boosters:
            booster.update()
        loss = np.mean([booster.eval_valid()[0][2] for booster in boosters])
        if loss < best_loss:
            best, best_loss = done, loss
        elif done - best >= patience:
            break
    return best


def _fit_standard(skeleton: LeadScoreModel, train: pd.DataFrame, valid: pd.DataFrame, cats: list[str],
                  params: TrainParams, seed: int) -> tuple[lgb.Booster, int, dict]:
    """LightGBM with early stopping on the validation leads, never fewer than ``min_boost_rounds`` trees."""
    import lightgbm as lgb

    weight = train["weight"].to_numpy() if "weight" in train else _lead_weights(train)
    X, y = skeleton.prepare(train), train["label"].to_numpy()
    clf = lgb.LGBMClassifier(**lgbm_params(params, seed))
    clf.fit(X, y, sample_weight=weight, eval_X=(skeleton.prepare(valid),), eval_y=(valid["label"].to_numpy(),),
            eval_metric="binary_logloss", categorical_feature=cats,
            callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)])
    best = int(clf.best_iteration_ or clf.booster_.current_iteration())
    info = {"early_stopping_iteration": best}
    floor = min(params.min_boost_rounds, params.n_estimators)
    if best < floor:
        # Early stopping on a drifting or tiny validation set can stop after a handful of trees (a model
        # that barely ranks); fit the minimum instead and say so.
        clf = lgb.LGBMClassifier(**{**lgbm_params(params, seed), "n_estimators": floor})
        clf.fit(X, y, sample_weight=weight, categorical_feature=cats)
        info["min_boost_rounds_applied"] = (f"early stopping chose {best} tree(s); trained the minimum of "
                                            f"{floor} (train.min_boost_rounds)")
        best = floor
    return clf.booster_, best, info


def _auc(y, score) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y)
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else float("nan")


def fit_booster(train: pd.DataFrame, valid: pd.DataFrame, metadata: list[dict], params: TrainParams, seed: int,
                baseline=None) -> LeadScoreModel:
    """The trees (uncalibrated): standard LightGBM, or small-data mode (prior + corrections) when the
    training rows are few and a rule baseline is given. ``info`` says which and why."""
    names = [m["name"] for m in metadata]
    cats = categorical_features(metadata)
    categories = {c: sorted(pd.concat([train[c], valid[c]]).dropna().astype(str).unique()) for c in cats}
    skeleton = LeadScoreModel(None, None, names, categories, metadata)
    small = small_data_reason(pd.concat([train, valid]), params) if baseline is not None else None
    if small:
        rows = pd.concat([train, valid], ignore_index=True).drop(columns="weight", errors="ignore")
        prior = RulePrior.fit(baseline, rows, rows["label"].to_numpy(), _lead_weights(rows), names)
        booster, best, info = _fit_small(skeleton, rows, cats, prior, seed, params.num_threads or usable_cpus())
        skeleton.prior = prior
        info = {"mode": "small_data", "small_data_reason": small, **info}
    else:
        booster, best, info = _fit_standard(skeleton, train, valid, cats, params, seed)
        info = {"mode": "standard", **info}
    booster.free_dataset()
    skeleton.booster = booster
    skeleton.info = {"best_iteration": best, **info}
    return skeleton


def validation_check(model: LeadScoreModel, valid: pd.DataFrame, baseline) -> dict:
    """Model vs rule baseline ROC AUC on the validation leads, with a warning when the model is not better."""
    out = {"model_auc": _auc(valid["label"], model.raw_margin(valid))}
    if baseline is not None:
        out["baseline_auc"] = _auc(valid["label"], baseline.points(valid))
        if not out["model_auc"] > out["baseline_auc"]:
            out["warning"] = (f"the model does not beat the rule baseline on the validation leads (ROC AUC "
                              f"{out['model_auc']:.3f} vs {out['baseline_auc']:.3f}): check drift, leakage "
                              f"exclusions and the amount of data before trusting it")
            import warnings

            warnings.warn(out["warning"], stacklevel=2)
    return out


def train_model(split: TimeSplit, metadata: list[dict], params: TrainParams, seed: int,
                baseline=None) -> LeadScoreModel:
    """LightGBM with native categoricals and early stopping on the validation leads (never fewer than
    ``min_boost_rounds`` trees), or small-data mode below the documented size when ``baseline`` (the
    rule baseline) is given; then calibrated on the calibration period."""
    model = fit_booster(split.train, split.valid, metadata, params, seed, baseline)
    margin = model.raw_margin(split.calibration)
    calibrator, report = choose_calibration(margin, split.calibration["label"].to_numpy(), params.calibration, seed=seed)
    model.calibrator = calibrator
    model.info.update({"calibration": report, "split": split.boundaries,
                       "validation": validation_check(model, split.valid, baseline)})
    return model


# ----------------------------------------------------------------------------- rolling-origin time CV
def time_cv(split: TimeSplit, model: LeadScoreModel, params: TrainParams, seed: int, baseline=None,
            folds: int | None = None) -> dict:
    """Rolling-origin cross-validation over the training period, to show how much the AUC moves.

    The training-period snapshot dates are cut into ``folds + 1`` consecutive blocks; fold k fits on
    the blocks before block k (70 % of the leads, by a seeded hash) and is scored on block k's rows of
    the other 30 % of leads, for the model (the fitted model's recipe: its features, mode and number of
    trees, so no early stopping per fold) and the rule baseline. Labels of a fold's training rows may
    resolve after its evaluation block starts (the label horizon is long next to the training period),
    so this measures variation over time, not a strict forecast. Returns per-fold AUCs with their mean
    and standard deviation."""
    import lightgbm as lgb

    folds = params.cv_folds if folds is None else folds
    if folds < 1:
        return {"folds": 0, "note": "rolling-origin time cross-validation off (train.cv_folds = 0)"}
    rows = pd.concat([split.train, split.valid], ignore_index=True).drop(columns="weight", errors="ignore")
    dates = np.sort(rows["as_of"].unique())
    if dates.size < folds + 1:
        return {"folds": 0, "note": "too few snapshot dates for rolling-origin folds"}
    starts = [block[0] for block in np.array_split(dates, folds + 1)[1:]]
    ends = [*starts[1:], dates[-1] + np.timedelta64(1, "s")]
    fit_lead = lead_hash(rows["lead_id"], seed + 1) < 0.7
    cats = categorical_features(model.metadata)
    small = model.info.get("mode") == "small_data"
    per_fold = []
    for k, (start, end) in enumerate(zip(starts, ends), 1):
        before = (rows["as_of"] < start).to_numpy()
        block = ((rows["as_of"] >= start) & (rows["as_of"] < end)).to_numpy()
        tr, ev = rows[before & fit_lead], rows[block & ~fit_lead]
        if tr["label"].nunique() < 2 or ev["label"].nunique() < 2 or len(tr) < 50:
            continue
        m = LeadScoreModel(None, None, model.feature_names, model.categories, model.metadata)
        if small:
            m.prior = RulePrior.fit(model.prior.baseline, tr, tr["label"].to_numpy(), _lead_weights(tr),
                                    model.feature_names)
            m.booster, _, _ = _fit_small(m, tr, cats, m.prior, seed, params.num_threads or usable_cpus())
        else:
            clf = lgb.LGBMClassifier(**{**lgbm_params(params, seed), "n_estimators": model.info["best_iteration"]})
            clf.fit(m.prepare(tr), tr["label"].to_numpy(), sample_weight=_lead_weights(tr), categorical_feature=cats)
            m.booster = clf.booster_
        fold = {"fold": k, "from": str(pd.Timestamp(start)), "train_rows": len(tr), "eval_rows": len(ev),
                "model_auc": _auc(ev["label"], m.raw_margin(ev))}
        if baseline is not None:
            fold["baseline_auc"] = _auc(ev["label"], baseline.points(ev))
        per_fold.append(fold)
    out = {"folds": len(per_fold), "per_fold": per_fold}
    for who in ("model", "baseline"):
        vals = [f[f"{who}_auc"] for f in per_fold if f"{who}_auc" in f]
        if vals:
            out[f"{who}_auc_mean"], out[f"{who}_auc_std"] = float(np.mean(vals)), float(np.std(vals))
    return out


def describe_cv(cv: dict) -> str:
    """'ROC AUC 0.842 ± 0.011 over 3 rolling-origin folds (baseline 0.75 ± 0.02)' or a note."""
    if not cv.get("folds") or "model_auc_mean" not in cv:
        return cv.get("note", "rolling-origin time cross-validation not run")
    text = (f"ROC AUC {cv['model_auc_mean']:.3f} ± {cv['model_auc_std']:.3f} over {cv['folds']} rolling-origin "
            f"time folds of the training period")
    if "baseline_auc_mean" in cv:
        text += f" (rule baseline {cv['baseline_auc_mean']:.3f} ± {cv['baseline_auc_std']:.3f})"
    return text


def training_notes(model: LeadScoreModel) -> dict:
    """What the report, metrics and model card say about how the model was trained: mode (and why),
    trees, the minimum-rounds rule, the validation check against the rule baseline, the time CV."""
    info = model.info
    cv = info.get("time_cv", {})
    notes = {"mode": info.get("mode", "standard"), "trees": info.get("best_iteration"),
             "time_cv": describe_cv(cv), "warnings": []}
    for key in ("small_data_reason", "min_boost_rounds_applied"):
        if info.get(key):
            notes[key] = info[key]
    validation = info.get("validation", {})
    notes["validation"] = {k: v for k, v in validation.items() if k != "warning"}
    if validation.get("warning"):
        notes["warnings"].append(validation["warning"])
    if info.get("min_boost_rounds_applied"):
        notes["warnings"].append(info["min_boost_rounds_applied"])
    for k in ("model_auc_mean", "model_auc_std", "baseline_auc_mean", "baseline_auc_std"):
        if k in cv:
            notes[f"cv_{k}"] = cv[k]
    notes["cv_folds"] = cv.get("folds", 0)
    return notes

