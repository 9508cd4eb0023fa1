"""The rule baseline: hand-computed points, caps, inactivity decay, MQL flag, sklearn behaviour."""

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.base import clone

from leadscore.baseline import RuleBaseline
from leadscore.config import BaselineParams

RULES = BaselineParams(
    mql_threshold=50, behavior_window_days=30, inactivity_half_life_days=10,
    fit={"seniority": {"vp": 10, "student": -10}, "email_domain_type": {"competitor": -25},
         "is_priority_account": {"1": 10}},
    behavior={"pricing_page": {"points": 8, "cap": 24}, "webinar_attend": {"points": 6, "cap": 15},
              "unsubscribe": {"points": -20, "cap": -20}},
)


def _leads():
    return pd.DataFrame({
        "seniority": pd.Categorical(["vp", "student", "vp", "manager"]),
        "email_domain_type": ["corporate", "corporate", "competitor", "free_mail"],
        "is_priority_account": [1, 0, 0, 0],
        "pricing_page_30d": [2, 10, 0, 1],
        "webinar_attend_30d": [1, 0, 0, 5],
        "unsubscribe_30d": [0, 2, 0, 0],
        "days_since_last_activity": [0.0, 10.0, np.nan, 20.0],
    })


def test_points_of_hand_computed_leads():
    pts = RuleBaseline(RULES).rule_points(_leads())
    # lead 0: vp 10 + priority 10 + pricing 2*8=16 + webinar 6, active today (no decay)
    assert pts.iloc[0].sum() == pytest.approx(10 + 10 + 16 + 6)
    # lead 1: student -10; pricing 10*8=80 capped at 24; unsubscribe 2*-20 capped at -20; one half-life idle
    assert pts.iloc[1]["behavior:pricing_page"] == pytest.approx(12)
    assert pts.iloc[1]["behavior:unsubscribe"] == pytest.approx(-10)
    assert pts.iloc[1].sum() == pytest.approx(-10 + 0.5 * (24 - 20))
    # lead 2: competitor, never active
    assert pts.iloc[2].sum() == pytest.approx(10 - 25)
    # lead 3: webinar 5*6=30 capped at 15, pricing 8, two half-lives idle
    assert pts.iloc[3].sum() == pytest.approx(0.25 * (15 + 8))


def test_no_single_rule_exceeds_half_the_threshold_after_caps():
    X = _leads().assign(pricing_page_30d=1000, webinar_attend_30d=1000)
    pts = RuleBaseline(RULES).rule_points(X)
    assert (pts.filter(like="behavior:") <= RULES.mql_threshold / 2).all().all()


def test_mql_flag_follows_the_threshold():
    X = pd.concat([_leads()] * 5, ignore_index=True)
    y = np.array([1, 0, 0, 1] * 5)
    model = RuleBaseline(RULES).fit(X, y)
    rich = _leads().iloc[[0]].assign(webinar_attend_30d=3)  # 10 + 10 + 16 + 15 = 51
    assert model.predict(rich)[0] == 1
    assert model.predict(_leads().iloc[[0]])[0] == 0  # 42 points
    assert model.decision_function(rich)[0] == pytest.approx(51)


def test_probabilities_rise_with_points_and_clone_like_any_estimator():
    X = pd.concat([_leads()] * 10, ignore_index=True)
    y = np.tile([1, 0, 0, 0], 10)
    model = clone(RuleBaseline(RULES)).fit(X, y)
    p = model.predict_proba(_leads())[:, 1]
    order = np.argsort(RuleBaseline(RULES).points(_leads()))
    assert np.all(np.diff(p[order]) >= 0)
    assert model.get_params()["rules"] == RULES


def test_a_rule_worth_more_than_half_the_threshold_is_refused():
    with pytest.raises(ValidationError, match="more than half the MQL threshold"):
        BaselineParams(mql_threshold=50, behavior={"demo_request": {"points": 30, "cap": 30}})
    with pytest.raises(ValidationError, match="same sign"):
        BaselineParams(mql_threshold=50, behavior={"unsubscribe": {"points": -20, "cap": 20}})


def test_a_rule_on_a_missing_feature_names_it():
    rules = BaselineParams(mql_threshold=50, behavior_window_days=14, behavior={"pricing_page": {"points": 1, "cap": 5}})
    with pytest.raises(KeyError, match="pricing_page_14d"):
        RuleBaseline(rules).points(_leads())
