"""Leakage guard: synthetic columns with a known answer, the rules one by one, and real CRM data."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from leadscore.leakage import excluded_columns, leakage_report

SAMPLE = Path(__file__).parent / "data" / "x_education_sample.csv"
FULL = Path("/work/shared/data/x_education_leads/Leads.csv")
# Columns the source's PROVENANCE.md lists as filled in by sales after contact (or borderline).
AFTER_CONTACT = ["Tags", "Lead Quality", "Lead Profile", "Asymmetrique Activity Index", "Asymmetrique Profile Index",
                 "Asymmetrique Activity Score", "Asymmetrique Profile Score"]
BORDERLINE = ["Last Activity", "Last Notable Activity"]


def _synthetic(n: int = 2000, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = (rng.uniform(size=n) < 0.35).astype(int)
    noisy = np.where(rng.uniform(size=n) < 0.05, 1 - label, label)  # the label, 5 % of it flipped
    return pd.DataFrame({
        "lead_id": [f"L{i:05d}" for i in range(n)],
        "label": label,
        "stage_after_call": pd.Categorical(np.where(noisy == 1, "won-ish", "lost-ish")),
        "crm_ref": [f"REF-{v}" for v in rng.permutation(n)],  # unique per row, like an ID
        "visits": rng.poisson(3 + label).astype(float),  # weakly predictive
        "industry": pd.Categorical(rng.choice(["software", "retail", "health", "finance"], size=n)),
        "country": rng.choice(["DE", "FR", "US", None], size=n),
        "employees": np.where(rng.uniform(size=n) < 0.2, np.nan, rng.lognormal(4, 1, size=n)),
    })


FEATURES = ["stage_after_call", "crm_ref", "visits", "industry", "country", "employees"]


@pytest.fixture(scope="module")
def synthetic():
    table = _synthetic()
    return table, leakage_report(table, "label", FEATURES)


def _row(report: pd.DataFrame, column: str) -> pd.Series:
    return report.set_index("column").loc[column]


# --------------------------------------------------------------------------------------------- shape

def test_report_has_one_row_per_column_with_the_documented_fields(synthetic):
    _, report = synthetic
    assert sorted(report["column"]) == sorted(FEATURES)
    for field in ["column", "single_column_auc", "pure_value_share", "flagged", "reason", "excluded"]:
        assert field in report.columns
    assert report["flagged"].dtype == bool and report["excluded"].dtype == bool
    assert report["single_column_auc"].between(0.5, 1).all()
    assert report["pure_value_share"].between(0, 1).all() and report["decisive_share"].between(0, 1).all()


def test_most_suspicious_first(synthetic):
    _, report = synthetic
    flags = report["flagged"].tolist()
    assert flags == sorted(flags, reverse=True)
    for _, group in report.groupby("flagged"):
        assert group["single_column_auc"].is_monotonic_decreasing


def test_deterministic(synthetic):
    table, report = synthetic
    pd.testing.assert_frame_equal(report, leakage_report(table, "label", FEATURES))


def test_label_as_series_is_the_same_as_label_by_name(synthetic):
    table, report = synthetic
    by_series = leakage_report(table.drop(columns="label"), table["label"], FEATURES)
    pd.testing.assert_frame_equal(report, by_series)


# --------------------------------------------------------------------------------------------- the rules

def test_a_column_equal_to_the_label_with_noise_is_flagged_and_excluded(synthetic):
    _, report = synthetic
    row = _row(report, "stage_after_call")
    assert row["single_column_auc"] > 0.9
    assert row["flagged"] and row["excluded"]
    assert "single-column AUC" in row["reason"]
    assert report["column"].iloc[0] == "stage_after_call"
    assert excluded_columns(report) == ["stage_after_call"]


def test_an_id_like_column_is_not_flagged_thanks_to_out_of_fold_encoding(synthetic):
    table, report = synthetic
    # In-sample target encoding would give every unique value its own label: a perfect, spurious AUC.
    in_sample = table.groupby("crm_ref")["label"].transform("mean")
    assert roc_auc_score(table["label"], in_sample) == 1.0
    row = _row(report, "crm_ref")
    assert row["single_column_auc"] == pytest.approx(0.5)  # every value unseen on the other folds
    assert row["pure_value_share"] == 0.0  # one row per value: never enough support
    assert not row["flagged"] and row["reason"] == "no rule triggered"


def test_weak_and_irrelevant_columns_are_not_flagged(synthetic):
    _, report = synthetic
    for column in ["visits", "industry", "country", "employees"]:
        row = _row(report, column)
        assert not row["flagged"] and not row["excluded"], column
    assert 0.55 < _row(report, "visits")["single_column_auc"] < 0.75
    assert _row(report, "industry")["single_column_auc"] < 0.56


def test_declared_after_contact_flags_a_column_the_data_cannot_catch(synthetic):
    table, _ = synthetic
    report = leakage_report(table, "label", FEATURES, declared_after_contact=["industry", "not_a_column"])
    row = _row(report, "industry")
    assert row["flagged"] and row["excluded"]
    assert row["reason"] == "declared as filled in after sales contact"
    assert set(excluded_columns(report)) == {"stage_after_call", "industry"}
    assert "not_a_column" not in set(report["column"])


def test_override_keep_keeps_a_flagged_column_but_still_reports_it(synthetic):
    table, _ = synthetic
    report = leakage_report(table, "label", FEATURES, override_keep=["stage_after_call"])
    row = _row(report, "stage_after_call")
    assert row["flagged"] and not row["excluded"]
    assert "single-column AUC" in row["reason"] and "kept by override_keep" in row["reason"]
    assert excluded_columns(report) == []


def test_pure_values_flag_a_column_whose_auc_is_unremarkable():
    # A status that is "closed-won" for 10 % of leads, and uninformative otherwise.
    rng = np.random.default_rng(1)
    n = 3000
    y = (rng.uniform(size=n) < 0.3).astype(int)
    status = np.where((y == 1) & (rng.uniform(size=n) < 0.35), "closed-won", rng.choice(["a", "b", "c"], size=n))
    report = leakage_report(pd.DataFrame({"y": y, "status": status}), "y", ["status"])
    row = _row(report, "status")
    assert row["single_column_auc"] < 0.85
    assert row["pure_value_share"] == pytest.approx((status == "closed-won").mean())
    assert row["flagged"] and "almost only with one outcome" in row["reason"] and "'closed-won'" in row["reason"]


def test_values_decisive_both_ways_flag_a_sales_rating():
    # Like X Education's Lead Quality: empty for most leads, near-decisive both ways where set.
    rng = np.random.default_rng(2)
    n = 4000
    y = (rng.uniform(size=n) < 0.4).astype(int)
    u = rng.uniform(size=n)
    # Won leads are mostly rated "hot", lost ones "dead", with a few mistakes each way.
    hot = np.where(y == 1, u < 0.15, u < 0.008)
    dead = np.where(y == 1, (u >= 0.15) & (u < 0.155), (u >= 0.008) & (u < 0.128))
    rating = np.where(hot, "hot", np.where(dead, "dead", np.where(u > 0.6, "maybe", None)))
    report = leakage_report(pd.DataFrame({"y": y, "rating": rating}), "y", ["rating"])
    row = _row(report, "rating")
    assert row["single_column_auc"] < 0.85 and row["pure_value_share"] < 0.05
    assert row["decisive_share"] > 0.05
    assert row["flagged"] and "both ways" in row["reason"] and "'hot'" in row["reason"] and "'dead'" in row["reason"]


def test_one_sided_strong_value_is_not_enough_for_the_decisive_rule():
    # A legitimate attribute with one near-certain-win value ("referral", ~90 % won, like X Education's
    # "Lead Add Form") covering 8 % of leads, but no near-certain-loss value.
    rng = np.random.default_rng(3)
    n = 4000
    y = (rng.uniform(size=n) < 0.35).astype(int)
    u = rng.uniform(size=n)
    referral = np.where(y == 1, u < 0.2, u < 0.012)
    source = np.where(referral, "referral", rng.choice(["ads", "seo", "email"], size=n))
    table = pd.DataFrame({"y": y, "source": source})
    assert table.loc[table["source"] == "referral", "y"].mean() > 0.85
    row = _row(leakage_report(table, "y", ["source"]), "source")
    assert row["decisive_share"] == 0.0 and row["pure_value_share"] == 0.0 and not row["flagged"]
    # Had it a near-certain-loss value too, it would be flagged.
    table.loc[(table["y"] == 0) & (u > 0.9), "source"] = "unsubscribed"
    assert _row(leakage_report(table, "y", ["source"]), "source")["decisive_share"] > 0.05


def test_purity_is_class_balanced_so_a_low_win_rate_does_not_make_every_value_pure():
    # 1.5 % win rate: every category is ~98.5 % lost, which says nothing about leakage.
    rng = np.random.default_rng(4)
    n = 20000
    y = (rng.uniform(size=n) < 0.015).astype(int)
    table = pd.DataFrame({"y": y, "industry": rng.choice(["software", "retail", "health"], size=n)})
    assert (1 - table.groupby("industry")["y"].mean() >= 0.98).all()  # the unbalanced rule would fire
    row = _row(leakage_report(table, "y", ["industry"]), "industry")
    assert row["pure_value_share"] == 0.0 and not row["flagged"]


def test_a_numeric_column_whose_missingness_is_the_outcome_is_flagged():
    # "days_to_close" filled in only once a deal is won: its value is noise, its NaN is the label.
    rng = np.random.default_rng(5)
    n = 2000
    y = (rng.uniform(size=n) < 0.3).astype(int)
    days = np.where(y == 1, rng.integers(5, 90, size=n), np.nan)
    random_gaps = np.where(rng.uniform(size=n) < 0.3, np.nan, rng.normal(size=n))
    table = pd.DataFrame({"y": y, "days_to_close": days, "random_gaps": random_gaps})
    report = leakage_report(table, "y", ["days_to_close", "random_gaps"])
    assert _row(report, "days_to_close")["single_column_auc"] == pytest.approx(1.0)
    assert _row(report, "days_to_close")["flagged"]
    assert _row(report, "days_to_close")["pure_value_share"] == pytest.approx(1 - y.mean())  # the NaN level
    assert not _row(report, "random_gaps")["flagged"]


def test_text_and_categorical_dtypes_give_the_same_report(synthetic):
    table, _ = synthetic
    as_text = table.assign(industry=table["industry"].astype(str), stage_after_call=table["stage_after_call"].astype(str))
    cols = ["industry", "stage_after_call"]
    a = leakage_report(table, "label", cols).drop(columns="kind")
    b = leakage_report(as_text, "label", cols).drop(columns="kind")
    pd.testing.assert_frame_equal(a, b)


def test_bad_inputs_are_refused(synthetic):
    table, _ = synthetic
    with pytest.raises(KeyError):
        leakage_report(table, "label", ["nope"])
    with pytest.raises(KeyError):
        leakage_report(table, "outcome", ["visits"])
    with pytest.raises(ValueError, match="label column"):
        leakage_report(table, "label", ["label", "visits"])
    with pytest.raises(ValueError, match="0/1"):
        leakage_report(table, table["label"] * 2, ["visits"])
    with pytest.raises(ValueError, match="missing"):
        leakage_report(table, table["label"].where(table.index > 0), ["visits"])
    with pytest.raises(ValueError, match="rows"):
        leakage_report(table, table["label"].iloc[:10], ["visits"])
    with pytest.raises(ValueError, match="two rows of each"):
        leakage_report(table, pd.Series(np.zeros(len(table), dtype=int)), ["visits"])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), keep=st.sets(st.sampled_from(FEATURES)),
       declared=st.sets(st.sampled_from(FEATURES)))
def test_excluded_is_flagged_minus_kept(seed, keep, declared):
    table = _synthetic(n=300, seed=seed)
    report = leakage_report(table, "label", FEATURES, override_keep=keep, declared_after_contact=declared)
    flagged = set(report.loc[report["flagged"], "column"])
    assert declared <= flagged
    assert set(excluded_columns(report)) == flagged - keep
    assert (report["excluded"] <= report["flagged"]).all()
    assert report["single_column_auc"].between(0.5, 1).all()


@settings(max_examples=25, deadline=None, derandomize=True)  # a statistical property: fixed examples
@given(n_levels=st.integers(1, 40), n=st.integers(20, 400), seed=st.integers(0, 2**31 - 1))
def test_labels_independent_of_a_column_rarely_look_leaky(n_levels, n, seed):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.4).astype(int)
    y[:2], y[2:4] = 1, 0
    table = pd.DataFrame({"y": y, "noise": rng.integers(0, n_levels, size=n).astype(str)})
    row = _row(leakage_report(table, "y", ["noise"]), "noise")
    assert row["pure_value_share"] == 0.0 or n < 100  # support rules stop chance purity
    assert row["single_column_auc"] < 0.85 or n < 60


# --------------------------------------------------------------------------------------------- real data

def _x_education(path: Path) -> tuple[pd.DataFrame, list[str]]:
    table = pd.read_csv(path).replace("Select", np.nan)  # "Select" = drop-down left unset
    table = table.drop(columns=[c for c in table.columns if c.startswith("Unnamed")])
    return table, [c for c in table.columns if c != "Converted"]


@pytest.fixture(scope="module")
def x_sample():
    table, columns = _x_education(SAMPLE)
    return table, columns, leakage_report(table, "Converted", columns)


def test_sample_is_the_documented_stratified_sample():
    table, _ = _x_education(SAMPLE)
    assert len(table) == 2000 and int(table["Converted"].sum()) == 771
    assert table["Lead Number"].is_unique


def test_x_education_sales_fields_are_flagged(x_sample):
    _, _, report = x_sample
    for column in ["Tags", "Lead Quality"]:
        row = _row(report, column)
        assert row["flagged"] and row["excluded"], column
    assert _row(report, "Tags")["single_column_auc"] > 0.88
    assert "both ways" in _row(report, "Lead Quality")["reason"]
    assert set(report["column"].iloc[:2]) == {"Tags", "Lead Quality"}


def test_x_education_fit_and_behavior_fields_are_not_flagged(x_sample):
    _, columns, report = x_sample
    for column in ["Lead Source", "Country", "Specialization", "TotalVisits", "Lead Origin", "City",
                   "Total Time Spent on Website", "What is your current occupation", "Prospect ID", "Lead Number"]:
        assert not _row(report, column)["flagged"], column
    # Whatever the data rules flag, it is something PROVENANCE.md lists as filled in after contact.
    assert set(report.loc[report["flagged"], "column"]) <= set(AFTER_CONTACT + BORDERLINE)


def test_x_education_declared_columns_complete_what_the_data_rules_miss(x_sample):
    table, columns, _ = x_sample
    report = leakage_report(table, "Converted", columns, declared_after_contact=AFTER_CONTACT,
                            override_keep=["Lead Profile"])
    assert set(excluded_columns(report)) == set(AFTER_CONTACT) - {"Lead Profile"}
    assert _row(report, "Lead Profile")["flagged"]


@pytest.mark.skipif(not FULL.exists(), reason="the full X Education export is not available")
def test_full_x_education_export():
    table, columns = _x_education(FULL)
    report = leakage_report(table, "Converted", columns)
    assert set(excluded_columns(report)) == {"Tags", "Lead Quality"}
    assert _row(report, "Tags")["single_column_auc"] == pytest.approx(0.92, abs=0.01)
    assert _row(report, "Lead Quality")["single_column_auc"] == pytest.approx(0.80, abs=0.01)
    for column in ["Lead Source", "Country", "Specialization", "TotalVisits"]:
        assert _row(report, column)["single_column_auc"] < 0.7, column


def test_without_the_one_sided_rule_a_genuine_disqualifier_is_kept_but_sales_ratings_are_not():
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from leadscore.leakage import leakage_report

    rng = np.random.default_rng(3)
    n = 4000
    student = rng.random(n) < 0.2
    y = np.where(student, 0, rng.random(n) < 0.3).astype(int)
    rating = np.where(y == 1, np.where(rng.random(n) < 0.6, "hot", "warm"), np.where(rng.random(n) < 0.6, "cold", "warm"))
    frame = pd.DataFrame({"seniority": np.where(student, "student", "manager"), "rating": rating, "label": y})
    r = leakage_report(frame, "label", ["seniority", "rating"], pure_values_rule=False).set_index("column")
    assert not r.loc["seniority", "flagged"] and r.loc["seniority", "pure_value_share"] > 0.15
    assert r.loc["rating", "flagged"]
    sample = Path(__file__).parent / "data" / "x_education_sample.csv"
    xe = pd.read_csv(sample, dtype=str).replace("Select", np.nan)
    r = leakage_report(xe, xe["Converted"].astype(int), ["Tags", "Lead Quality", "Lead Source", "Country"],
                       pure_values_rule=False).set_index("column")
    assert r.loc["Tags", "flagged"] and r.loc["Lead Quality", "flagged"]
    assert not r.loc["Lead Source", "flagged"] and not r.loc["Country", "flagged"]


# --------------------------------------------------------------------------------------------- filled after the deal

def _filled_after_the_deal(n: int = 6000, seed: int = 11) -> pd.DataFrame:
    """Leads over six periods with a win rate rising 4% → 30%, and one column per pattern."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 1, n))
    win_rate = 0.04 * np.exp(np.log(7.5) * t)
    y = (rng.random(n) < win_rate).astype(int)
    student = rng.random(n) < 0.15
    y = np.where(student, 0, y)
    value = rng.lognormal(3, 1, n)
    # filled for most wins, few losses (a sales profile filled once the deal is won); values look innocent
    won_only = np.where(rng.random(n) < np.where(y == 1, 0.7, 0.04), value, np.nan)
    # filled after contact: fill rises over time with the outcome, modestly more for wins within a period
    p_fill = np.clip(0.05 + 0.75 * t, 0, 1) * np.where(y == 1, 1.0, 0.6)
    after_contact = np.where(rng.random(n) < p_fill, rng.choice(["a", "b", "c"], n), "unknown")
    # genuine: a title where students never buy, a field with random gaps, a form field added mid-way
    title = np.where(student, "student", rng.choice(["manager", "director", "analyst"], n))
    gaps = np.where(rng.random(n) < 0.3, "unknown", rng.choice(["software", "retail"], n))
    added_later = np.where((t > 0.5) & (rng.random(n) < 0.9), rng.choice(["x", "y"], n), None)
    return pd.DataFrame({"label": y, "as_of": pd.Timestamp("2024-01-01") + pd.to_timedelta(t * 700, unit="D"),
                         "won_only": won_only, "after_contact": after_contact, "title": title, "industry": gaps,
                         "added_later": added_later})


@pytest.fixture(scope="module")
def deal_fields():
    table = _filled_after_the_deal()
    cols = ["won_only", "after_contact", "title", "industry", "added_later"]
    return table, leakage_report(table, "label", cols, pure_values_rule=False, time="as_of").set_index("column")


def test_a_won_only_column_is_flagged_by_its_fill_rates_whatever_its_values(deal_fields):
    _, r = deal_fields
    row = r.loc["won_only"]
    assert row["flagged"] and row["single_column_auc"] < 0.85  # the AUC rule alone would keep it
    assert row["fill_rate_won"] > 0.6 and row["fill_rate_lost"] < 0.06
    assert "of wins but" in row["reason"] and "a field filled once the outcome is known" in row["reason"]


def test_a_column_filled_after_contact_is_flagged_by_its_fill_rate_over_time(deal_fields):
    _, r = deal_fields
    row = r.loc["after_contact"]
    assert row["flagged"] and "fill rate follows the outcome over time" in row["reason"]
    assert "of wins but" not in row["reason"]  # the fill-rate ratio alone (< ×5) would not catch it
    assert row["fill_time_correlation"] >= 0.8


def test_genuine_disqualifiers_gaps_and_late_fields_are_not_flagged(deal_fields):
    _, r = deal_fields
    for column in ("title", "industry", "added_later"):
        assert not r.loc[column, "flagged"], (column, r.loc[column, "reason"])
    assert r.loc["title", "pure_value_share"] > 0.1  # students never buy: reported, not flagged


def test_without_time_the_over_time_rule_is_silent(deal_fields):
    table, _ = deal_fields
    r = leakage_report(table, "label", ["after_contact"], pure_values_rule=False).set_index("column")
    assert "over time" not in r.loc["after_contact", "reason"]


def test_per_lead_examines_each_lead_once_with_its_outcome():
    from leadscore.leakage import per_lead

    rows = pd.DataFrame({"lead_id": ["a", "a", "a", "b", "b", "c"],
                         "as_of": pd.to_datetime(["2025-01-08", "2025-01-01", "2025-01-15", "2025-01-01", "2025-01-08",
                                                  "2025-01-01"]),
                         "label": [1.0, 0.0, np.nan, 0.0, 0.0, np.nan], "x": [1, 2, 3, 4, 5, 6]})
    leads = per_lead(rows).set_index("lead_id")
    assert list(leads.index) == ["a", "b"]  # c has no labelled snapshot
    assert leads.loc["a", "label"] == 1 and leads.loc["a", "x"] == 2 and leads.loc["b", "label"] == 0
