"""Points, reasons, bands, grades and the MQL threshold."""

import json
import math
import re

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
    table = table[table["label"].notna()].reset_index(drop=True)  # censored snapshots carry no label
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


def test_shown_reasons_are_the_strongest_groups_and_in_order(scorer_and_table):
    scorer, table = scorer_and_table
    sample = table.head(300)
    scored = scorer.score(sample)
    exp = scorer.explain(sample)
    G = scorer.grouped(exp.contributions)
    keys, _ = scorer.reason_groups()
    k = scorer.params.top_reasons
    for i in (0, 50, 150, 299):
        r = json.loads(scored["reasons"].iloc[i])
        pos = [x["points"] for x in r["positive"]]
        assert pos == sorted(pos, reverse=True) and all(p > 0 for p in pos)
        neg = [x["points"] for x in r["negative"]]
        assert neg == sorted(neg) and all(p < 0 for p in neg)
        listed = {x["feature"] for x in r["positive"] + r["negative"]}
        assert len(listed) == len(pos) + len(neg) <= k and listed <= set(keys)
        strongest = np.sort(np.abs(G[i]))[::-1]
        shown = sorted((abs(x) for x in pos + neg), reverse=True)
        np.testing.assert_allclose(shown, strongest[:len(shown)], atol=0.051)  # the strongest groups, by |points|
        for x in r["positive"] + r["negative"]:
            assert x["sentence"][0].isupper() and "{value}" not in x["sentence"]


def test_base_listed_reasons_and_remainder_add_up_to_the_points(scorer_and_table):
    scorer, table = scorer_and_table
    scored = scorer.score(table.head(500))
    for row in scored.itertuples():
        r = json.loads(row.reasons)
        listed = sum(x["points"] for x in r["positive"] + r["negative"])
        assert row.base_points + listed + row.other_points + row.capped_points == pytest.approx(row.points, abs=0.051)
    assert scored["base_points"].nunique() == 1


def test_top_five_grouped_reasons_cover_most_of_the_points(scorer_and_table):
    """The issue's target is >= 80% for the median lead on the default data (measured 82% on `make run`'s
    model); this 4,000-lead fixture trains in small-data mode (rule points as the start, many small
    corrections), whose points spread over more groups: the bound here is 60%."""
    scorer, table = scorer_and_table
    exp = scorer.explain(table)
    G = np.abs(scorer.grouped(exp.contributions))
    top5 = -np.sort(-G, axis=1)[:, :5].sum(axis=1)
    coverage = top5 / np.maximum(G.sum(axis=1), 1e-12)
    assert np.median(coverage) >= 0.6


def test_reasons_read_as_sentences_with_the_leads_values(scorer_and_table):
    scorer, table = scorer_and_table
    row = table[table["pricing_page_7d"] >= 2].head(1)
    features = [f for f in scorer.features if f.name == "pricing_page_7d"]
    from leadscore.scoring import sentences

    text = sentences(features, row, np.array([[0]]))[0, 0]
    assert text == f"Visited the pricing page {int(row['pricing_page_7d'].iloc[0])} times in the last 7 days"


def _check_pushed_over(c, raw, t, idx, valid):
    """Removing the listed set drops the lead under ``t``; no smaller set of reasons does."""
    import itertools

    for i in np.flatnonzero(raw >= t):
        chosen = idx[i][valid[i]]
        if len(chosen) == 0:  # no set of positive reasons brings it under: all positives together are not enough
            assert raw[i] - np.maximum(c[i], 0).sum() >= t
            continue
        assert (c[i, chosen] > 0).all()
        assert raw[i] - c[i, chosen].sum() < t
        if c.shape[1] <= 8:  # every smaller set, exhaustively
            for size in range(len(chosen)):
                for subset in itertools.combinations(range(c.shape[1]), size):
                    assert raw[i] - c[i, list(subset)].sum() >= t
        else:  # the largest positives are the best any set of that size can do
            assert raw[i] - np.sort(c[i])[::-1][:len(chosen) - 1].clip(0).sum() >= t
    assert not valid[raw < t].any()


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), n_features=st.integers(1, 7), t=st.floats(1, 100), spread=st.floats(1, 60))
def test_pushed_over_property_on_unclipped_points(seed, n_features, t, spread):
    rng = np.random.default_rng(seed)
    c = rng.normal(0, spread, (40, n_features)) * (rng.random((40, n_features)) < 0.8)
    raw = 50 + c.sum(axis=1)  # may run far past 100 or under 0: the clip does not enter
    idx, valid = pushed_over(c, raw, t)
    _check_pushed_over(c, raw, t, idx, valid)


def test_pushed_over_mql_is_the_smallest_set_on_the_model(scorer_and_table):
    scorer, table = scorer_and_table
    exp = scorer.explain(table)
    t = scorer.mql_threshold
    G = scorer.grouped(exp.contributions)
    raw = exp.points - exp.cap
    idx, valid = pushed_over(G, raw, t)
    assert (raw >= t).sum() > 0
    _check_pushed_over(G, raw, t, idx, valid)
    # and what the scorer lists: removing the listed points drops the unclipped points under the threshold
    scored = scorer.score(table)
    for i in np.flatnonzero(scored["is_mql"].to_numpy())[:300]:
        listed = json.loads(scored["pushed_over_mql"].iloc[i])
        if listed:
            assert raw[i] - sum(x["points"] for x in listed) < t + 0.1


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


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_every_lead_that_moves_gets_reasons_under_any_calibration(scorer_and_table, method):
    scorer, table = scorer_and_table
    model = scorer.model
    original = model.calibrator
    model.calibrator = MarginCalibrator(method).fit(model.raw_margin(table), table["label"].to_numpy())
    try:
        exp = scorer.explain(table)
        scored = scorer.score(table, explanation=exp)
    finally:
        model.calibrator = original
    moved = np.abs(scorer.grouped(exp.contributions)).max(axis=1) >= 0.5
    reasons = scored["reasons"].map(json.loads)
    has = reasons.map(lambda r: len(r["positive"]) + len(r["negative"]) > 0).to_numpy()
    assert moved.mean() > 0.9 and has[moved].all()
    p = scored["probability"].to_numpy()
    assert (p >= 0.0001).all() and (p <= 0.9999).all()
    assert (np.round(p, 4) == p).all()  # no 1e-06 or 0.999999 shown


def test_isotonic_map_is_strictly_increasing_and_close_to_the_steps(scorer_and_table):
    scorer, table = scorer_and_table
    margin = scorer.model.raw_margin(table)
    cal = MarginCalibrator("isotonic").fit(margin, table["label"].to_numpy())
    grid = np.linspace(margin.min() - 3, margin.max() + 3, 5000)
    g = cal.calibrated_margin(grid)
    assert (np.diff(g) > 0).all()
    p = cal.predict(margin)
    assert abs(p.mean() - table["label"].mean()) < 0.02  # still calibrated in the large
    assert p.min() >= 1e-3 * 0.5 and p.max() <= 1 - 1e-3 * 0.5


BANNED = re.compile(r"time-weighted|half-life|decayed|\bunknown\b|\bnan\b|\bNone\b|_|\{|\}|\b1 times\b|"
                    r"\b1 (forms|webinars|days|emails|pieces|leads|sessions)\b|\b(0|1) different days")


def test_no_sentence_has_an_internal_term_unknown_value_or_wrong_plural(scorer_and_table):
    """The vocabulary of every reason sentence of every group on the synthetic data."""
    from leadscore.reasons import all_group_sentences

    scorer, table = scorer_and_table
    sample = table.sample(min(len(table), 3000), random_state=0).reset_index(drop=True)
    for c in (m["name"] for m in scorer.model.metadata if m["kind"] == "categorical"):
        sample[c] = sample[c].astype("category")
    sample.loc[:20, ["industry", "company_size", "country", "seniority"]] = "unknown"
    sentences = all_group_sentences(scorer.features, sample)
    vocabulary = set()
    for key, texts in sentences.items():
        for t in set(texts):
            assert t and t[0].isupper(), (key, t)
            assert not BANNED.search(t), (key, t)
            vocabulary.update(t.replace(",", " ").replace(":", " ").split())
    assert any(t.startswith("Company: ") and "size" in t and t.endswith("not known") for t in sentences["company"])
    assert any(t.startswith("No pricing-page visit in the last") for t in sentences["pricing_page"])
    assert any(t.startswith("Pricing page: visited") for t in sentences["pricing_page"])


@pytest.mark.parametrize("missing", [np.nan, None, pd.NA])
def test_a_missing_value_in_any_column_reads_not_known_and_never_raises(scorer_and_table, missing):
    """pandas 3 keeps a missing value missing through ``astype(str)``: every sentence builder must still
    say "not known" (a request with few columns, a CRM export with empty cells)."""
    from leadscore.reasons import all_group_sentences

    scorer, table = scorer_and_table
    sample = table.head(6).reset_index(drop=True).astype(object)
    names = [m["name"] for m in scorer.model.metadata]
    sample.loc[1:, names] = missing  # row 0 stays complete: the same builders see both
    sentences = all_group_sentences(scorer.features, sample)
    for key, texts in sentences.items():
        for t in texts[1:]:
            assert isinstance(t, str) and t and t[0].isupper(), (key, t)
            assert "nan" not in t.lower().split() and "<na>" not in t.lower(), (key, t)
    assert any("not known" in t for t in sentences["company"][1:])
    out = scorer.score(sample.assign(**{c: missing for c in names}))
    assert out["probability"].between(0, 1).all() and out["reasons"].map(json.loads).map(len).gt(0).all()


def test_the_one_line_text_lists_positive_then_negative_reasons_and_the_rest(scorer_and_table):
    # score(text=True) writes reasons_text from the sentences: exactly what the batch job reads back from
    # the reasons JSON of a reused run (positives, then negatives, then "all other factors"), for every lead.
    from leadscore.batch import _reason_text

    scorer, table = scorer_and_table
    scored = scorer.score(table.head(400), text=True)
    back = _reason_text(scored["reasons"], scored["other_points"])
    assert scored["reasons_text"].tolist() == back.tolist()
    both = [json.loads(r) for r in scored["reasons"]]
    assert any(r["positive"] and r["negative"] for r in both)  # the join of the two lists is exercised
    assert scored.drop(columns="reasons_text").equals(scorer.score(table.head(400)))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), share=st.floats(0.0, 1.0))
def test_sentences_written_once_per_combination_equal_each_leads_own(scorer_and_table, seed, share):
    """group_sentences writes a group's sentence once per distinct combination of the values it reads
    (window counts, whole days, whole percent): every lead must still get exactly the sentence written
    from its own row. Values are perturbed where sentences read less than the exact value (a fraction of
    a day, a decayed count, a watched share), and some set missing."""
    from leadscore.reasons import group_layout, group_sentence, group_sentences

    scorer, table = scorer_and_table
    rng = np.random.default_rng(seed)
    # 60 leads, 5 copies each: copies differ only where perturbed, so they share combinations
    X = table.sample(60, random_state=seed % 1000).loc[lambda d: d.index.repeat(5)].reset_index(drop=True)
    for c in (m["name"] for m in scorer.model.metadata if m["kind"] == "categorical"):
        X[c] = X[c].astype("category")
    for c in X.columns:
        if c.endswith(("_days", "_activity", "_touch", "_funnel", "_decayed", "_pct")) and X[c].dtype.kind == "f":
            jitter = rng.random(len(X)) < share
            X.loc[jitter, c] = X.loc[jitter, c] + rng.uniform(-0.99, 0.99, jitter.sum()).round(rng.integers(0, 3))
            X.loc[rng.random(len(X)) < share / 4, c] = np.nan
    keys, member = group_layout(scorer.features)
    index = np.column_stack([rng.integers(-1, len(keys), len(X)) for _ in range(4)])
    got = group_sentences(scorer.features, X, index)
    for g, key in enumerate(keys):
        members = [scorer.features[j] for j in np.flatnonzero(member == g)]
        own = group_sentence(key, members, X)  # every row on its own
        rows, slots = np.nonzero(index == g)
        assert (got[rows, slots] == own[rows]).all(), key
    assert (got[index < 0] == "").all()


def test_a_behaviour_that_happened_but_counts_against_the_lead_says_less_than_a_typical_lead(scorer_and_table):
    """'Marketing emails: opened 1 email in the last 30 days (-8.8)' reads as if opening an email hurt:
    a negative reason of an engagement behaviour the lead did says it was less than a typical lead's. Not
    for its absence ('No …'), not for a positive reason, not for careers page or unsubscribe."""
    from leadscore.reasons import BELOW_TYPICAL

    scorer, table = scorer_and_table
    scored = scorer.score(table.head(1500), text=True)
    seen = 0
    for r, text in zip(scored["reasons"], scored["reasons_text"]):
        r = json.loads(r)
        for item in r["positive"]:
            assert BELOW_TYPICAL not in item["sentence"]
        for item in r["negative"]:
            s, key = item["sentence"], item["feature"]
            engaged = key in {"emails", "webinars", "web_visit", "form_fill", "pricing_page", "demo_request",
                              "quote_form", "content_download", "newsletter_signup", "social_follow"}
            said = s.split(": ", 1)[0].endswith(BELOW_TYPICAL)  # after the label: "Webinars (less than …): …"
            assert said == (engaged and not s.startswith("No ")), s
            seen += said
            assert s in text  # the one-line text reads the same sentence
    assert seen > 0
