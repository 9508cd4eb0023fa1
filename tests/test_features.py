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

# Snapshot dates every 7 days back from 2025-12-26 (the export day): 2025-01-31 is one of them.
PARAMS = FeatureParams(snapshot_every_days=7, max_age_days=365, label_horizon_days=60, windows_days=(7, 30),
                       half_life_days=14, stakeholder_window_days=30, competitor_domains=("rival.io",),
                       content_value={"case-study": 3, "blog": 1}, export_at="2025-12-26T12:00:00")
T0 = pd.Timestamp("2025-01-01")
AS_OF = T0 + pd.Timedelta(days=30)  # a snapshot date: L1 is 30 days old


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


def _at(build, as_of=AS_OF):
    f = pd.read_parquet(build.features)
    return f[f["as_of"] == as_of].set_index("lead_id")


def test_hand_computed_features_of_one_lead(tmp_path):
    build = _hand_made(tmp_path)
    l1 = _at(build).loc["L1"]
    assert l1["as_of"] == AS_OF and l1["label"] == 1  # won 20 days after the snapshot, inside 60
    assert (l1["pricing_page_7d"], l1["pricing_page_30d"]) == (2, 3)
    assert l1["quote_form_30d"] == 0
    expected_decay = sum(2 ** (-a / 14) for a in (1, 3, 10))
    assert l1["pricing_page_decayed"] == pytest.approx(expected_decay, abs=1e-6)
    assert l1["days_since_last_activity"] == pytest.approx(1)
    assert l1["lead_age_days"] == pytest.approx(30)
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
    l4 = _at(_hand_made(tmp_path)).loc["L4"]
    assert (l4["seniority"], l4["email_domain_type"], l4["company_size"]) == ("unknown", "competitor", "1-10")
    assert l4["label"] == 0  # won, but 170 days after the snapshot: outside the horizon
    assert l4["pricing_page_30d"] == 0 and math.isnan(l4["days_since_last_activity"])


def test_every_open_lead_has_a_row_at_every_snapshot_date_of_its_life(tmp_path):
    build = _hand_made(tmp_path)
    f = pd.read_parquet(build.features)
    dates = lambda lead: list(f.loc[f["lead_id"] == lead, "as_of"])  # noqa: E731
    # L1: created T0, won T0+50: open at the dates T0+2, +9, …, +44 (T0+51 is after the win)
    assert dates("L1") == [T0 + pd.Timedelta(days=d) for d in (2, 9, 16, 23, 30, 37, 44)]
    assert dates("L2") == [T0 + pd.Timedelta(days=d) for d in (-19, -12, -5, 2)]  # lost at T0+5
    # L4: won at T0+200; rows until then, age capped at max_age_days
    assert max(dates("L4")) == T0 + pd.Timedelta(days=198)
    l1 = f[f["lead_id"] == "L1"].set_index("as_of")
    assert list(l1["label"]) == [1] * 7  # won within 60 days of each of them
    assert list(l1["lead_age_days"]) == [2, 9, 16, 23, 30, 37, 44]


def test_a_label_is_known_only_when_its_whole_window_is_before_the_export(tmp_path):
    build = _hand_made(tmp_path)
    f = pd.read_parquet(build.features)
    export = pd.Timestamp(PARAMS.export_at)
    window_over = f["as_of"] + pd.Timedelta(days=PARAMS.label_horizon_days) <= export
    assert f.loc[window_over, "label"].notna().all() and f.loc[~window_over, "label"].isna().all()
    assert f.loc[f["lead_id"] == "L5", "label"].isna().all()  # created 2025-12-20: censored, not dropped
    meta = json.loads(build.metadata.read_text())
    assert meta["rows"]["censored"] == int((~window_over).sum()) and meta["rows"]["total"] == len(f)


def test_leads_without_a_row_are_listed_with_the_reason(tmp_path):
    _hand_made(tmp_path)
    leads = pd.read_parquet(tmp_path / "leads.parquet")
    extra = leads.iloc[[2, 2, 2]].assign(
        lead_id=["Q1", "Q2", "Q3"],
        created_at=[T0 + pd.Timedelta(days=3), pd.Timestamp("2025-12-26T06:00"), pd.Timestamp("2026-01-05")],
        outcome=["lost", "open", "open"], outcome_at=[T0 + pd.Timedelta(days=5), pd.NaT, pd.NaT])
    pd.concat([leads, extra]).to_parquet(tmp_path / "leads2.parquet")
    build = build_features(tmp_path / "leads2.parquet", tmp_path / "events.parquet", tmp_path / "o2", PARAMS)
    excl = pd.read_csv(build.exclusions).set_index("lead_id")["reason"]
    assert "decided before its first snapshot date" in excl["Q1"]
    assert "created after the newest snapshot date" in excl["Q2"]
    assert "created at or after the export moment" in excl["Q3"]
    assert set(excl.index) == {"Q1", "Q2", "Q3"}
    assert build.leads_in == 8 and build.leads_with_rows + build.excluded == 8


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory):
    """The hand-made export's folder and its feature build (read only)."""
    tmp = tmp_path_factory.mktemp("hand-made")
    return tmp, _hand_made(tmp)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flip=st.lists(st.booleans(), min_size=5, max_size=5),
       later=st.lists(st.floats(0, 300), min_size=5, max_size=5), won=st.lists(st.booleans(), min_size=5, max_size=5))
def test_which_rows_are_labelled_never_depends_on_an_outcome(hand_made, tmp_path_factory, flip, later, won):
    """Flipping won and lost, or deciding open leads after the export, changes no labelled row's
    existence or features: the selection depends on the dates only."""
    made, base = hand_made  # the unchanged export, built once for every example
    tmp = tmp_path_factory.mktemp("sel")
    leads = pd.read_parquet(made / "leads.parquet")
    f = np.array(flip)
    leads.loc[f & leads["outcome"].isin(["won", "lost"]).to_numpy(), "outcome"] = leads["outcome"].map(
        {"won": "lost", "lost": "won", "open": "open"})
    still_open = (leads["outcome"] == "open").to_numpy()
    leads.loc[still_open, "outcome_at"] = (pd.Timestamp(PARAMS.export_at) + pd.to_timedelta(np.round(np.array(later)[still_open] * 86400), unit="s")).as_unit("us")
    leads.loc[still_open, "outcome"] = np.where(np.array(won)[still_open], "won", "lost")
    leads.to_parquet(tmp / "leads2.parquet")
    other = build_features(tmp / "leads2.parquet", made / "events.parquet", tmp / "o", PARAMS,
                           priority_path=made / "priority.csv")
    a, b = pd.read_parquet(base.features), pd.read_parquet(other.features)
    key = ["lead_id", "as_of"]
    pd.testing.assert_frame_equal(a.loc[a["label"].notna()].drop(columns="label").reset_index(drop=True),
                                  b.loc[b["label"].notna()].drop(columns="label").reset_index(drop=True))
    assert a[key].equals(b[key])


def test_metadata_describes_every_feature_with_group_and_sentence(tmp_path):
    build = _hand_made(tmp_path)
    meta = json.loads(build.metadata.read_text())["features"]
    columns = pd.read_parquet(build.features).columns
    assert [m["name"] for m in meta] == [c for c in columns if c not in ("lead_id", "as_of", "label")]
    assert {m["group"] for m in meta} == {"fit", "behavior", "account"}
    # a sentence per feature; the decayed counts only feed their behaviour's grouped reason ("how recent …")
    assert all(m["description"].strip() for m in meta)
    assert all("{value}" in m["description"] for m in meta if not m["name"].endswith("_decayed"))
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
    assert f["lead_id"].is_unique
    assert set(pd.read_csv(build.exclusions)["lead_id"]) == {"L5"}  # created after as_of


def test_a_lead_created_exactly_at_as_of_is_not_scored(tmp_path):
    _hand_made(tmp_path)
    build = build_features(tmp_path / "leads.parquet", tmp_path / "events.parquet", tmp_path / "edge", PARAMS,
                           as_of=T0)
    assert set(pd.read_parquet(build.features)["lead_id"]) == {"L2"}
    assert {"L1", "L3", "L4"} <= set(pd.read_csv(build.exclusions)["lead_id"])


def test_one_stray_future_timestamp_cannot_move_the_export_moment(tmp_path):
    _hand_made(tmp_path)
    events = pd.read_parquet(tmp_path / "events.parquet")
    leads = pd.read_parquet(tmp_path / "leads.parquet")
    busy = pd.DataFrame({"lead_id": "L1", "timestamp": pd.date_range("2025-01-01", "2025-12-01", freq="6h"),
                         "event_type": "web_visit", "asset": None, "percent_watched": None})
    stray = busy.iloc[[0]].assign(timestamp=pd.Timestamp("2027-03-01"))
    fp = PARAMS.model_copy(update={"export_at": None})
    pd.concat([events, busy]).to_parquet(tmp_path / "clean.parquet")
    pd.concat([events, busy, stray]).to_parquet(tmp_path / "stray.parquet")
    clean = build_features(tmp_path / "leads.parquet", tmp_path / "clean.parquet", tmp_path / "c", fp)
    dirty = build_features(tmp_path / "leads.parquet", tmp_path / "stray.parquet", tmp_path / "d", fp)
    assert clean.export_at == dirty.export_at
    newest = max(busy["timestamp"].max(), leads["outcome_at"].max(), leads["created_at"].max())
    assert clean.export_at == newest + pd.Timedelta(seconds=1)
    assert dirty.records_after_export["events.timestamp"] == 1 and dirty.export.stray_records == 1
    assert json.loads(dirty.metadata.read_text())["records_after_export"]["events.timestamp"] == 1
    pd.testing.assert_frame_equal(pd.read_parquet(clean.features), pd.read_parquet(dirty.features))


def test_export_moment_keeps_a_real_recent_surge_and_honours_params():
    from leadscore.features import export_moment

    days = pd.date_range("2025-01-01", "2025-06-30", freq="D")
    daily = pd.DataFrame({"day": days.astype(str), "n": 100, "newest": (days + pd.Timedelta(hours=20)).astype(str)})
    assert export_moment(daily).at == pd.Timestamp("2025-06-30T20:00:01")
    # a quiet month, then the newest week busier than ever: real data, not stray records
    gap = pd.concat([daily.iloc[:100], daily.iloc[-7:].assign(n=5000)])
    assert export_moment(gap).at == pd.Timestamp("2025-06-30T20:00:01")
    stray = pd.concat([daily, pd.DataFrame({"day": ["2026-06-01"], "n": [3], "newest": ["2026-06-01 10:00:00"]})])
    m = export_moment(stray)
    assert m.at == pd.Timestamp("2025-06-30T20:00:01") and m.stray_records == 3
    assert export_moment(stray, "2026-07-01T00:00:00+02:00").at == pd.Timestamp("2026-06-30T22:00:00")
    # no record at all (every lead broke the contract): a scoring build has no row to build and takes as_of;
    # a training build cannot place its snapshots and says what to set
    none = daily.head(0)
    assert export_moment(none, None, pd.Timestamp("2026-06-01")).at == pd.Timestamp("2026-06-01")
    with pytest.raises(ValueError, match="set features.export_at"):
        export_moment(none)


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
    return pd.read_parquet(build.features).drop(columns=["label"]).set_index(["lead_id", "as_of"]).sort_index()


@pytest.fixture(scope="module")
def base(pipeline_data):
    tmp, params = pipeline_data["tmp"], pipeline_data["params"]
    leads = pd.read_parquet(tmp / "validated" / "leads.parquet")
    events = pd.read_parquet(tmp / "validated" / "events.parquet")
    feats = pd.read_parquet(pipeline_data["build"].features)
    # The property test moves the export to 2030: the snapshot dates are those of that export.
    far = build_features(tmp / "validated" / "leads.parquet", tmp / "validated" / "events.parquet", tmp / "far",
                         params.features.model_copy(update={"export_at": "2030-01-01"}),
                         priority_path=tmp / "validated" / "priority_accounts.parquet")
    latest = pd.read_parquet(far.features).groupby("lead_id")["as_of"].max()
    as_of = leads["lead_id"].map(latest).fillna(leads["created_at"])
    # An event of lead M may feed a colleague's account features: "the future" for M is after the
    # latest snapshot of anyone at M's account.
    account_as_of = as_of.groupby(leads["account_id"].fillna(leads["lead_id"])).transform("max")
    return dict(params=params, leads=leads, events=events, feats=feats, tmp=tmp, far=_features(far),
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
    pd.testing.assert_frame_equal(_features(build), base["far"])  # the unchanged export's, same params
    labels = pd.read_parquet(build.features).set_index("lead_id")["label"]
    flipped_won = set(leads.loc[flip & (leads["outcome"] == "lost"), "lead_id"]) & set(labels.index)
    assert (labels.loc[sorted(flipped_won)].dropna() == 0).all()


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
    if "scored_2025_09_01" not in base:  # the unchanged export's, built once for every example
        base["scored_2025_09_01"] = _features(build_features(leads, base["tmp"] / "validated" / "events.parquet",
                                                             tmp / "a", base["params"].features, as_of=as_of))
    b = build_features(leads, tmp / "events.parquet", tmp / "b", base["params"].features, as_of=as_of)
    pd.testing.assert_frame_equal(base["scored_2025_09_01"], _features(b))


def test_an_event_just_before_as_of_does_change_features(base, tmp_path):
    """The guard above is not vacuous: the past does move features."""
    lead = base["feats"]["lead_id"].iloc[0]
    as_of = base["feats"]["as_of"].iloc[0]
    extra = pd.DataFrame({"lead_id": [lead], "timestamp": [as_of - pd.Timedelta(seconds=1)],
                          "event_type": ["demo_request"], "asset": [None], "percent_watched": [None]})
    pd.concat([base["events"], extra], ignore_index=True).to_parquet(tmp_path / "events.parquet")
    b = build_features(base["tmp"] / "validated" / "leads.parquet", tmp_path / "events.parquet", tmp_path / "o",
                       base["params"].features, priority_path=base["tmp"] / "validated" / "priority_accounts.parquet")
    before = base["feats"].set_index(["lead_id", "as_of"]).loc[(lead, as_of)]
    after = pd.read_parquet(b.features).set_index(["lead_id", "as_of"]).loc[(lead, as_of)]
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
    assert df["label"].dropna().isin([0, 1]).all() and not df.duplicated(["lead_id", "as_of"]).any()


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
    l1 = _at(build).loc["L1"]
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
    l1 = _at(b).loc["L1"]
    assert l1["demo_request_30d"] == 1 and l1["active_days_30d"] == 6


def test_as_of_with_a_utc_offset_is_honoured(tmp_path):
    _hand_made(tmp_path)
    utc = build_features(tmp_path / "leads.parquet", tmp_path / "events.parquet", tmp_path / "u", PARAMS,
                         as_of="2025-01-31T00:00:00")
    offset = build_features(tmp_path / "leads.parquet", tmp_path / "events.parquet", tmp_path / "o", PARAMS,
                            as_of="2025-01-31T02:00:00+02:00")
    pd.testing.assert_frame_equal(pd.read_parquet(utc.features), pd.read_parquet(offset.features))
