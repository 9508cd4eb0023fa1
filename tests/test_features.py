"""Point-in-time features: hand-computed values, and properties that no future event or outcome
can change a feature."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.config import FeatureParams
from leadscore.features import build_features, feature_specs, load_feature_table
from leadscore.vocabulary import EVENT_TYPE_NAMES

PARAMS = FeatureParams(snapshot_days=30, label_horizon_days=60, windows_days=(7, 30), half_life_days=14,
                       stakeholder_window_days=30, competitor_domains=("rival.io",),
                       content_value={"case-study": 3, "blog": 1}, export_at="2025-12-31")
T0 = pd.Timestamp("2025-01-01")
AS_OF = T0 + pd.Timedelta(days=30)  # L1's snapshot


def _hand_made(tmp_path):
    leads = pd.DataFrame({
        "lead_id": ["L1", "L2", "L3", "L4", "L5"],
        "created_at": [T0, T0 - pd.Timedelta(days=20), T0, T0, pd.Timestamp("2025-12-20")],
        "account_id": ["A1", "A1", None, None, None],
        "email_domain": ["acme.com", "acme.com", "gmail.com", "rival.io", None],
        "title": ["VP of Marketing", "Marketing Intern", "CFO", None, "analyst"],
        "industry": ["Software", "Software", None, "Retail", None],
        "employees": [125.5, 125.5, None, 5.0, None],
        "annual_revenue": [5e6, 5e6, None, None, None],
        "country": ["Germany", "Germany", "France", None, None],
        "lead_source": ["Webinar", "webinar", "referral", None, None],
        "outcome": ["won", "lost", "lost", "won", "open"],
        "outcome_at": [T0 + pd.Timedelta(days=50), T0 + pd.Timedelta(days=5), T0 + pd.Timedelta(days=10),
                       T0 + pd.Timedelta(days=200), pd.NaT],
    })
    d = lambda days: AS_OF - pd.Timedelta(days=days)  # noqa: E731
    events = pd.DataFrame([
        ("L1", d(1), "pricing_page", None, None),
        ("L1", d(3), "pricing_page", None, None),
        ("L1", d(10), "pricing_page", None, None),
        ("L1", d(0), "pricing_page", None, None),  # at as_of: excluded
        ("L1", d(-5), "quote_form", None, None),  # after as_of: excluded
        ("L1", d(20), "webinar_attend", "webinar:x", 50.0),
        ("L1", d(20.5), "webinar_attend", "webinar:y", 100.0),
        ("L1", d(25), "content_download", "case-study:acme", None),
        ("L1", d(25), "content_download", "blog:tips", None),
        ("L1", d(40), "web_visit", None, None),  # first touch, outside every window
        ("L2", d(5), "web_visit", None, None),  # a colleague engaged before L1's as_of
        ("L2", d(-1), "web_visit", None, None),
    ], columns=["lead_id", "timestamp", "event_type", "asset", "percent_watched"])
    leads.to_parquet(tmp_path / "leads.parquet")
    events.to_parquet(tmp_path / "events.parquet")
    pd.DataFrame({"account_id": ["A1"], "domain": [None]}).to_csv(tmp_path / "priority.csv", index=False)
    build = build_features(tmp_path / "leads.parquet", tmp_path / "events.parquet", tmp_path / "out", PARAMS,
                           priority_path=tmp_path / "priority.csv")
    return build


def test_hand_computed_features_of_one_lead(tmp_path):
    build = _hand_made(tmp_path)
    f = pd.read_parquet(build.features).set_index("lead_id")
    l1 = f.loc["L1"]
    assert l1["as_of"] == AS_OF and l1["label"] == 1  # won 20 days after the snapshot, inside 60
    assert (l1["pricing_page_7d"], l1["pricing_page_30d"]) == (2, 3)
    assert l1["quote_form_30d"] == 0
    expected_decay = sum(2 ** (-a / 14) for a in (1, 3, 10))
    assert l1["pricing_page_decayed"] == pytest.approx(expected_decay, abs=1e-6)
    assert l1["days_since_last_activity"] == pytest.approx(1)
    assert l1["days_since_first_touch"] == pytest.approx(40)
    assert l1["days_first_touch_to_late_funnel"] == pytest.approx(30)
    assert l1["active_days_30d"] == 5  # days ago 1, 3, 10, 20, 25 (20.5 falls on day 20)
    assert l1["furthest_funnel_stage"] == 3
    assert l1["webinar_watched_pct"] == pytest.approx(75)
    assert l1["content_value"] == 4
    assert l1["account_engaged_stakeholders_30d"] == 1 and l1["account_known_leads"] == 1
    assert l1["is_priority_account"] == 1
    assert (l1["seniority"], l1["job_function"], l1["company_size"], l1["email_domain_type"]) == (
        "vp", "marketing", "51-200", "corporate")
    assert (l1["revenue_band"], l1["industry"], l1["lead_source"]) == ("$1M-10M", "software", "webinar")


def test_fit_parsing_and_unknowns(tmp_path):
    f = pd.read_parquet(_hand_made(tmp_path).features).set_index("lead_id")
    l4 = f.loc["L4"]
    assert (l4["seniority"], l4["email_domain_type"], l4["company_size"]) == ("unknown", "competitor", "1-10")
    assert l4["label"] == 0  # won, but 170 days after the snapshot: outside the horizon
    assert l4["pricing_page_30d"] == 0 and math.isnan(l4["days_since_last_activity"])


def test_leads_without_an_honest_example_are_listed_with_the_reason(tmp_path):
    build = _hand_made(tmp_path)
    excl = pd.read_csv(build.exclusions).set_index("lead_id")["reason"]
    assert "decided at or before the snapshot" in excl["L2"]  # lost 25 days after creation
    assert "decided at or before the snapshot" in excl["L3"]
    assert "younger than snapshot_days" in excl["L5"]
    assert build.leads_in == 5 and build.rows + build.excluded == 5


def test_metadata_describes_every_feature_with_group_and_sentence(tmp_path):
    build = _hand_made(tmp_path)
    meta = json.loads(build.metadata.read_text())["features"]
    columns = pd.read_parquet(build.features).columns
    assert [m["name"] for m in meta] == [c for c in columns if c not in ("lead_id", "as_of", "label")]
    assert {m["group"] for m in meta} == {"fit", "behavior", "account"}
    assert all("{value}" in m["description"] for m in meta)
    spec = {f.name: f for f in feature_specs(PARAMS)}
    assert spec["pricing_page_7d"].describe(3.0) == "visited the pricing page 3 times in the last 7 days"
    assert spec["email_domain_type"].describe("free_mail") == "email domain is a free-mail address"
    assert not any(n.startswith("onboarding") for n in spec)  # post-sale events never become features


def test_scoring_mode_uses_one_as_of_and_has_no_label(tmp_path):
    _hand_made(tmp_path)
    build = build_features(tmp_path / "leads.parquet", tmp_path / "events.parquet", tmp_path / "score", PARAMS,
                           as_of="2025-01-15")
    f = pd.read_parquet(build.features)
    assert (f["as_of"] == pd.Timestamp("2025-01-15")).all() and f["label"].isna().all()
    assert set(pd.read_csv(build.exclusions)["lead_id"]) == {"L5"}  # created after as_of


def test_a_lead_created_exactly_at_as_of_is_not_scored_one_created_just_before_is(tmp_path):
    _hand_made(tmp_path)
    as_of = pd.Timestamp("2025-01-15")
    leads = pd.read_parquet(tmp_path / "leads.parquet")
    leads.loc[leads["lead_id"] == "L3", "created_at"] = as_of
    leads.loc[leads["lead_id"] == "L4", "created_at"] = as_of - pd.Timedelta(microseconds=1)
    leads.to_parquet(tmp_path / "leads.parquet", index=False)
    build = build_features(tmp_path / "leads.parquet", tmp_path / "events.parquet", tmp_path / "score", PARAMS,
                           as_of=as_of)
    scored = set(pd.read_parquet(build.features)["lead_id"])
    excluded = pd.read_csv(build.exclusions).set_index("lead_id")["reason"]
    assert "L4" in scored and "L3" not in scored
    assert excluded["L3"] == "created at or after as_of"


# ----------------------------------------------------------------------------- properties
def _features(build):
    return pd.read_parquet(build.features).drop(columns=["label"]).set_index("lead_id").sort_index()


@pytest.fixture(scope="module")
def base(pipeline_data):
    tmp, params = pipeline_data["tmp"], pipeline_data["params"]
    leads = pd.read_parquet(tmp / "validated" / "leads.parquet")
    events = pd.read_parquet(tmp / "validated" / "events.parquet")
    feats = pd.read_parquet(pipeline_data["build"].features)
    as_of = leads["created_at"] + pd.Timedelta(days=params.features.snapshot_days)
    # An event of lead M may feed a colleague's account features: "the future" for M is after the
    # latest snapshot of anyone at M's account.
    account_as_of = as_of.groupby(leads["account_id"].fillna(leads["lead_id"])).transform("max")
    return dict(params=params, leads=leads, events=events, feats=feats, tmp=tmp,
                future=pd.Series(account_as_of.to_numpy(), index=leads["lead_id"]))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_events_at_or_after_as_of_and_outcomes_change_no_feature(base, tmp_path_factory, data):
    leads, events, params = base["leads"].copy(), base["events"], base["params"]
    n = data.draw(st.integers(1, 40))
    who = data.draw(st.lists(st.sampled_from(list(leads["lead_id"])), min_size=n, max_size=n))
    after_days = data.draw(st.lists(st.floats(0, 400), min_size=n, max_size=n))
    types = data.draw(st.lists(st.sampled_from(EVENT_TYPE_NAMES), min_size=n, max_size=n))
    extra = pd.DataFrame({
        "lead_id": who,
        "timestamp": (base["future"].loc[who].to_numpy() + pd.to_timedelta(after_days, unit="D")).floor("s"),
        "event_type": types, "asset": "case-study:late", "percent_watched": 100.0,
    })
    decided = leads["outcome"].isin(["won", "lost"])
    flip = decided & pd.Series(data.draw(st.lists(st.booleans(), min_size=len(leads), max_size=len(leads))))
    leads.loc[flip, "outcome"] = leads.loc[flip, "outcome"].map({"won": "lost", "lost": "won"})
    tmp = tmp_path_factory.mktemp("pit")
    leads.to_parquet(tmp / "leads.parquet")
    pd.concat([events, extra], ignore_index=True).to_parquet(tmp / "events.parquet")
    fp = params.features.model_copy(update={"export_at": "2030-01-01"})
    build = build_features(tmp / "leads.parquet", tmp / "events.parquet", tmp / "out", fp,
                           priority_path=base["tmp"] / "validated" / "priority_accounts.parquet")
    base_build = build_features(base["tmp"] / "validated" / "leads.parquet",
                                base["tmp"] / "validated" / "events.parquet", tmp / "base", fp,
                                priority_path=base["tmp"] / "validated" / "priority_accounts.parquet")
    pd.testing.assert_frame_equal(_features(build), _features(base_build))
    labels = pd.read_parquet(build.features).set_index("lead_id")["label"]
    flipped_won = set(leads.loc[flip & (leads["outcome"] == "lost"), "lead_id"]) & set(labels.index)
    assert (labels.loc[sorted(flipped_won)] == 0).all()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(after_days=st.lists(st.floats(0, 100), min_size=1, max_size=30), seed=st.integers(0, 10**6))
def test_scoring_as_of_ignores_any_later_event(base, tmp_path_factory, after_days, seed):
    as_of = pd.Timestamp("2025-09-01")
    rng = np.random.default_rng(seed)
    extra = pd.DataFrame({
        "lead_id": rng.choice(base["leads"]["lead_id"], len(after_days)),
        "timestamp": as_of + pd.to_timedelta(after_days, unit="D"),
        "event_type": rng.choice(EVENT_TYPE_NAMES, len(after_days)), "asset": None, "percent_watched": None,
    })
    tmp = tmp_path_factory.mktemp("score")
    pd.concat([base["events"], extra], ignore_index=True).to_parquet(tmp / "events.parquet")
    leads = base["tmp"] / "validated" / "leads.parquet"
    a = build_features(leads, base["tmp"] / "validated" / "events.parquet", tmp / "a", base["params"].features, as_of=as_of)
    b = build_features(leads, tmp / "events.parquet", tmp / "b", base["params"].features, as_of=as_of)
    pd.testing.assert_frame_equal(_features(a), _features(b))


def test_an_event_just_before_as_of_does_change_features(base, tmp_path):
    """The guard above is not vacuous: the past does move features."""
    lead = base["feats"]["lead_id"].iloc[0]
    as_of = base["feats"]["as_of"].iloc[0]
    extra = pd.DataFrame({"lead_id": [lead], "timestamp": [as_of - pd.Timedelta(seconds=1)],
                          "event_type": ["demo_request"], "asset": [None], "percent_watched": [None]})
    pd.concat([base["events"], extra], ignore_index=True).to_parquet(tmp_path / "events.parquet")
    b = build_features(base["tmp"] / "validated" / "leads.parquet", tmp_path / "events.parquet", tmp_path / "o",
                       base["params"].features, priority_path=base["tmp"] / "validated" / "priority_accounts.parquet")
    before = base["feats"].set_index("lead_id").loc[lead]
    after = pd.read_parquet(b.features).set_index("lead_id").loc[lead]
    assert after["demo_request_7d"] == before["demo_request_7d"] + 1
    assert after["days_since_last_activity"] == pytest.approx(1 / 86400, abs=1e-3)


def test_feature_build_is_deterministic_to_the_byte(base, tmp_path):
    v = base["tmp"] / "validated"
    runs = [build_features(v / "leads.parquet", v / "events.parquet", tmp_path / str(i), base["params"].features,
                           priority_path=v / "priority_accounts.parquet") for i in range(2)]
    assert runs[0].features.read_bytes() == runs[1].features.read_bytes()
    assert runs[0].exclusions.read_bytes() == runs[1].exclusions.read_bytes()


def test_feature_table_loads_with_categories_for_models(pipeline_data):
    df, meta = load_feature_table(pipeline_data["build"].features)
    cats = [m["name"] for m in meta if m["kind"] == "categorical"]
    assert cats and all(isinstance(df[c].dtype, pd.CategoricalDtype) for c in cats)
    assert df["label"].isin([0, 1]).all() and df["lead_id"].is_unique


def test_a_colleague_created_after_as_of_never_counts_even_with_backfilled_history(tmp_path):
    """Anonymous history is attributed when a lead is created: before that, nobody knew it."""
    _hand_made(tmp_path)
    leads = pd.read_parquet(tmp_path / "leads.parquet")
    events = pd.read_parquet(tmp_path / "events.parquet")
    late = leads.iloc[[1]].assign(lead_id="L9", created_at=AS_OF + pd.Timedelta(days=10), outcome="open",
                                  outcome_at=pd.NaT)
    backfill = pd.DataFrame({"lead_id": ["L9"], "timestamp": [AS_OF - pd.Timedelta(days=1)],
                             "event_type": ["web_visit"], "asset": [None], "percent_watched": [None]})
    pd.concat([leads, late]).to_parquet(tmp_path / "leads.parquet")
    pd.concat([events, backfill]).to_parquet(tmp_path / "events.parquet")
    build = build_features(tmp_path / "leads.parquet", tmp_path / "events.parquet", tmp_path / "out2", PARAMS,
                           priority_path=tmp_path / "priority.csv")
    l1 = pd.read_parquet(build.features).set_index("lead_id").loc["L1"]
    assert l1["account_engaged_stakeholders_30d"] == 1 and l1["account_known_leads"] == 1


def test_post_sale_events_feed_no_feature_not_even_recency(tmp_path):
    _hand_made(tmp_path)
    events = pd.read_parquet(tmp_path / "events.parquet")
    onboarding = pd.DataFrame({"lead_id": ["L1"], "timestamp": [AS_OF - pd.Timedelta(hours=1)],
                               "event_type": ["onboarding_session"], "asset": [None], "percent_watched": [None]})
    pd.concat([events, onboarding]).to_parquet(tmp_path / "events2.parquet")
    a = build_features(tmp_path / "leads.parquet", tmp_path / "events.parquet", tmp_path / "a", PARAMS)
    b = build_features(tmp_path / "leads.parquet", tmp_path / "events2.parquet", tmp_path / "b", PARAMS)
    pd.testing.assert_frame_equal(pd.read_parquet(a.features), pd.read_parquet(b.features))


def test_an_event_exactly_a_window_old_counts_in_every_windowed_feature(tmp_path):
    _hand_made(tmp_path)
    events = pd.read_parquet(tmp_path / "events.parquet")
    edge = pd.DataFrame({"lead_id": ["L1"], "timestamp": [AS_OF - pd.Timedelta(days=30)],
                         "event_type": ["demo_request"], "asset": [None], "percent_watched": [None]})
    pd.concat([events, edge]).to_parquet(tmp_path / "events2.parquet")
    b = build_features(tmp_path / "leads.parquet", tmp_path / "events2.parquet", tmp_path / "b", PARAMS)
    l1 = pd.read_parquet(b.features).set_index("lead_id").loc["L1"]
    assert l1["demo_request_30d"] == 1 and l1["active_days_30d"] == 6


def test_as_of_with_a_utc_offset_is_honoured(tmp_path):
    _hand_made(tmp_path)
    utc = build_features(tmp_path / "leads.parquet", tmp_path / "events.parquet", tmp_path / "u", PARAMS,
                         as_of="2025-01-31T00:00:00")
    offset = build_features(tmp_path / "leads.parquet", tmp_path / "events.parquet", tmp_path / "o", PARAMS,
                            as_of="2025-01-31T02:00:00+02:00")
    pd.testing.assert_frame_equal(pd.read_parquet(utc.features), pd.read_parquet(offset.features))
