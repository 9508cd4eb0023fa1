"""Points from marketer-readable rules, without the estimator around them (:mod:`leadscore.baseline`).

Kept apart from scikit-learn so that a small-data model, whose starting margin is these points
(:class:`leadscore.model.RulePrior`), scores without importing it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.config import BaselineParams


def _as_float(values: pd.Series) -> np.ndarray:
    """Numbers of any dtype (nullable Int64, object with ``pd.NA``, numeric text) as float, missing as NaN."""
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


class RulePoints:
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
