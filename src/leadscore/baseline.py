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
from leadscore.rules import RulePoints


class RuleBaseline(ClassifierMixin, BaseEstimator, RulePoints):
    """Points from marketer-readable rules (:class:`leadscore.rules.RulePoints`) as a classifier.

    Parameters
    ----------
    rules : BaselineParams or dict
        The ``baseline`` section of params.yaml.
    """

    def __init__(self, rules: BaselineParams | dict | None = None):
        self.rules = rules

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
