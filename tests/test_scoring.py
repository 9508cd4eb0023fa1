"""Points, reasons, bands, grades and the MQL threshold."""

import json
import math

import joblib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.config import ScoringParams
from leadscore.model import MarginCalibrator
from leadscore.scoring import LeadScorer, PointsScale, choose_threshold, grade, pushed_over, threshold_table


@given(base=st.floats(20, 80), p0=st.floats(0.01, 0.5), pdo=st.floats(5, 40), logit=st.floats(-8, 8))
def test_doubling_the_odds_adds_points_to_double_odds(base, p0, pdo, logit):
    scale = PointsScale(base, p0, pdo)
    assert scale.points(logit + math.log(2)) - scale.points(logit) == pytest.approx(pdo)
    assert scale.points(math.log(p0 / (1 - p0))) == pytest.approx(base)
    assert scale.probability(scale.points(logit)) == pytest.approx(1 / (1 + math.exp(-logit)))


@pytest.fixture(scope="module")
def scorer_and_table(trained):
    scorer = joblib.load(trained["tmp"] / "models" / "scorer.joblib")
    table = pd.read_parquet(trained["tmp"] / "features" / "features.parquet")
    return scorer, table


@pytest.mark.parametrize("method", ["sigmoid", "isotonic", "none"])
def test_base_plus_reasons_equals_points_for_every_lead(scorer_and_table, method):
    scorer, table = scorer_and_table
    margin = scorer.model.raw_margin(table)
    labelled = table["label"].notna().to_numpy()  # censored snapshots have no label
    cal = MarginCalibrator(method).fit(margin[labelled], table["label"].to_numpy()[labelled].astype(int))
    model = scorer.model
    original = model.calibrator
    model.calibrator = cal
    try:
        exp = scorer.explain(table)
    finally:
        model.calibrator = original
    total = exp.base_points + exp.contributions.sum(axis=1) + exp.cap
    np.testing.assert_allclose(total, exp.points, atol=1e-9)
    assert ((exp.points >= 0) & (exp.points <= 100)).all()
    assert np.all((np.abs(exp.cap) < 1e-9) | (exp.points == 0) | (exp.points == 100))
    expected = np.clip(scorer.scale.points(cal.calibrated_margin(margin)), 0, 100)
    np.testing.assert_allclose(exp.points, expected, atol=1e-9)


def test_shown_reasons_are_the_strongest_and_in_order(scorer_and_table):
    scorer, table = scorer_and_table
    sample = table.head(300)
    scored = scorer.score(sample)
    exp = scorer.explain(sample)
    for i in (0, 50, 150, 299):
        r = json.loads(scored["reasons"].iloc[i])
        pos = [x["points"] for x in r["positive"]]
        assert pos == sorted(pos, reverse=True) and all(p > 0 for p in pos)
        assert pos[0] == pytest.approx(max(exp.contributions[i].max(), 0), abs=0.051) if pos else True
        neg = [x["points"] for x in r["negative"]]
        assert neg == sorted(neg) and all(p < 0 for p in neg)
        for x in r["positive"] + r["negative"]:
            assert x["sentence"][0].isupper() and "{value}" not in x["sentence"]


def test_reasons_read_as_sentences_with_the_leads_values(scorer_and_table):
    scorer, table = scorer_and_table
    row = table[table["pricing_page_7d"] >= 2].head(1)
    features = [f for f in scorer.features if f.name == "pricing_page_7d"]
    from leadscore.scoring import sentences

    text = sentences(features, row, np.array([[0]]))[0, 0]
    assert text == f"Visited the pricing page {int(row['pricing_page_7d'].iloc[0])} times in the last 7 days"


def test_pushed_over_mql_is_the_smallest_set_that_keeps_the_lead_over(scorer_and_table):
    scorer, table = scorer_and_table
    exp = scorer.explain(table)
    t = scorer.mql_threshold
    idx, valid = pushed_over(exp, t)
    rows = np.flatnonzero(exp.points >= t)
    assert len(rows) > 0
    for i in rows[:200]:
        chosen = idx[i][valid[i]]
        c = exp.contributions[i]
        if len(chosen) == 0:  # no set of positive reasons brings it under: all positives together are not enough
            assert exp.points[i] - np.maximum(c, 0).sum() >= t
            continue
        assert (c[chosen] > 0).all()
        assert exp.points[i] - c[chosen].sum() < t
        assert exp.points[i] - c[chosen[:-1]].sum() >= t  # one fewer is not enough
        assert c[chosen].min() >= np.sort(c)[::-1][len(chosen) - 1] - 1e-12  # the largest first


def test_scores_carry_bands_grades_and_mql_flags_consistently(scorer_and_table):
    scorer, table = scorer_and_table
    s = scorer.score(table)
    bands = scorer.params.bands
    assert set(s["band"]) <= set(bands) | {"D"}
    a_cut = bands["A"]
    assert (s.loc[s["band"] == "A", "points"] >= a_cut - 0.05).all()
    assert (s["matrix_cell"] == s["fit_grade"] + s["engagement_grade"]).all()
    assert (s["is_mql"] == (s["points"] >= scorer.mql_threshold)).all()
    assert (s.loc[s["band"] == "A", "points"] >= a_cut).all()
    win = table["label"].to_numpy()
    rate = pd.Series(win).groupby(s["band"].to_numpy()).mean()
    assert rate["A"] > rate["D"]
    pushed_nonempty = s["pushed_over_mql"] != "[]"
    assert (pushed_nonempty <= s["is_mql"]).all()


def test_grade_cuts():
    v = np.array([20.0, 8.0, 7.9, 0.0, -8.0, -30.0])
    assert list(grade(v, {"A": 8, "B": 0, "C": -8}, "D")) == ["A", "A", "B", "B", "C", "D"]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), capacity=st.floats(1, 200))
def test_capacity_policy_never_plans_more_mqls_than_capacity(seed, capacity):
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 100, 2000)
    prob = 1 / (1 + np.exp(-(points - 60) / 10))
    table = threshold_table(points, prob, weeks=13)
    params = ScoringParams(capacity_per_week=capacity, capacity_headroom=0.9)
    t, reason = choose_threshold(table, params, PointsScale(50, 0.1, 10))
    assert "capacity" in reason and "nan" not in reason
    if reason.startswith("fallback"):  # the capacity threshold would send nobody: the best leads still go
        assert (points >= t).sum() / 13 >= 1 and (points >= t + 1).sum() / 13 < 1
        return
    assert (points >= t).sum() / 13 <= capacity * 0.9
    if t > 0:
        assert (points >= t - 1).sum() / 13 > capacity * 0.9  # the lowest such threshold


def test_a_threshold_that_sends_nobody_falls_back_and_says_so():
    scale = PointsScale(50, 0.1, 10)
    points = np.linspace(0, 60, 600)
    prob = scale.probability(points)
    table = threshold_table(points, prob, weeks=13)
    # min_conversion of 90% is out of reach: the policy's threshold (100) sends nobody
    t, reason = choose_threshold(table, ScoringParams(mql_policy="min_conversion", min_conversion=0.9), scale)
    assert reason.startswith("fallback: the min_conversion policy's threshold (100 points) would send 0.0 new MQLs")
    assert (points >= t).sum() / 13 >= 1 and (points >= t + 1).sum() / 13 < 1 and "nan" not in reason
    # no volume known at all: the expected-value break-even threshold, said in words
    empty = table.assign(mqls_per_week=np.nan, expected_win_rate=np.nan)
    for policy in ("capacity", "min_conversion", "expected_value"):
        t, reason = choose_threshold(empty, ScoringParams(mql_policy=policy), scale)
        assert reason.startswith("fallback: no threshold sends 1 new MQL a week") and "nan" not in reason.lower()
        assert t == 26  # break-even 400 / 20000 = 2% is 25.6 points on this scale


def test_expected_value_policy_calls_leads_worth_the_touch():
    scale = PointsScale(50, 0.1, 10)
    params = ScoringParams(mql_policy="expected_value", deal_value=20000, touch_cost=2000)
    t, reason = choose_threshold(threshold_table(np.array([50.0]), np.array([0.1]), 1), params, scale)
    assert scale.probability(t) >= 0.1 and scale.probability(t - 1) < 0.1
    assert "10.0%" in reason


def test_min_conversion_policy():
    points = np.linspace(0, 100, 1001)
    prob = PointsScale(50, 0.1, 10).probability(points)
    params = ScoringParams(mql_policy="min_conversion", min_conversion=0.5)
    t, _ = choose_threshold(threshold_table(points, prob, 1), params, PointsScale(50, 0.1, 10))
    assert prob[points >= t].mean() >= 0.5 and prob[points >= t - 1].mean() < 0.5


def test_scores_do_not_depend_on_the_tables_index(scorer_and_table):
    scorer, table = scorer_and_table
    sample = table.head(50)
    shuffled = sample.set_index(pd.Index(np.arange(1000, 1050)[::-1]))
    a = scorer.score(sample).reset_index(drop=True)
    b = scorer.score(shuffled).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert b["reasons"].str.startswith('{"positive": [').all()


def test_the_fast_engine_gives_lightgbms_reasons(scorer_and_table):
    scorer, table = scorer_and_table
    sample = table.head(500)
    fast = scorer.explain(sample, engine="fast")
    slow = scorer.explain(sample, engine="lightgbm")
    np.testing.assert_allclose(fast.contributions, slow.contributions, rtol=1e-9, atol=1e-9)
    pd.testing.assert_frame_equal(scorer.score(sample, engine="fast"), scorer.score(sample, engine="lightgbm"))
