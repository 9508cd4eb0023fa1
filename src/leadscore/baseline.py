"""The rule-based points model marketing runs today ("VP: +10, pricing page: +8, student: -10, MQL at
50"), as a scikit-learn classifier so that every evaluation path treats it exactly like the model.

Points = fit points (per attribute value) + behaviour points (per action in the window, capped per
rule), where behaviour points lose half their value every ``inactivity_half_life_days`` without
activity. ``predict`` is the MQL flag. The rules are hand-written, so ``fit`` learns only how points
map to a probability (a logistic curve on the points), which log loss, Brier score and calibration
error need.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from leadscore.config import BaselineParams


def _as_float(values: pd.Series) -> np.ndarray:
    """Numbers of any dtype (nullable Int64, object with ``pd.NA``, numeric text) as float, missing as NaN."""
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


class RuleBaseline(ClassifierMixin, BaseEstimator):
    """Points from marketer-readable rules.

    Parameters
    ----------
    rules : BaselineParams or dict
        The ``baseline`` section of params.yaml.
    """

    def __init__(self, rules: BaselineParams | dict | None = None):
        self.rules = rules

    def _rules(self) -> BaselineParams:
        if isinstance(self.rules, BaselineParams):
            return self.rules
        return BaselineParams.model_validate(self.rules or {})

    def rule_points(self, X: pd.DataFrame) -> pd.DataFrame:
        """Points per rule and lead (columns ``fit:<attribute>`` and ``behavior:<event type>``)."""
        rules = self._rules()
        out = {}
        for attr, values in rules.fit.items():
            if attr not in X:
                raise KeyError(f"baseline rule on '{attr}' but the feature table has no such column")
            col = X[attr].astype("string").fillna("")
            col = col.str.replace(r"\.0$", "", regex=True)  # 1.0 → "1" for numeric flags
            out[f"fit:{attr}"] = col.map(values).astype(float).fillna(0.0).to_numpy()
        window = rules.behavior_window_days
        idle = _as_float(X["days_since_last_activity"]) if len(rules.behavior) else None
        decay = np.where(np.isnan(idle), 0.0, 0.5 ** (np.nan_to_num(idle) / rules.inactivity_half_life_days)) \
            if idle is not None else None
        for event, rule in rules.behavior.items():
            column = f"{event}_{window}d"
            if column not in X:
                raise KeyError(f"baseline rule on '{event}' needs feature '{column}': is {window} one of "
                               f"features.windows_days and '{event}' an event type?")
            raw = rule.points * _as_float(X[column])
            capped = np.minimum(raw, rule.cap) if rule.cap > 0 else np.maximum(raw, rule.cap)
            out[f"behavior:{event}"] = capped * decay
        return pd.DataFrame(out, index=X.index)

    def points(self, X: pd.DataFrame) -> np.ndarray:
        return self.rule_points(X).sum(axis=1).to_numpy()

    def fit(self, X: pd.DataFrame, y) -> RuleBaseline:
        pts = self.points(X).reshape(-1, 1)
        self.mapping_ = LogisticRegression(C=1e6).fit(pts / 10.0, np.asarray(y))
        self.classes_ = self.mapping_.classes_
        self.mql_threshold_ = self._rules().mql_threshold
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        return self.points(X)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "mapping_")
        return self.mapping_.predict_proba(self.points(X).reshape(-1, 1) / 10.0)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The MQL flag: 1 when the lead's points reach the threshold."""
        check_is_fitted(self, "mapping_")
        return (self.points(X) >= self.mql_threshold_).astype(int)
