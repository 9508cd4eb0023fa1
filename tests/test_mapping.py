"""Export mappings: the X Education export end to end, then each mapping rule on a small export."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.contract import ContractError, validate_leads
from leadscore.features import Feature
from leadscore.leakage import leakage_report
from leadscore.mapping import (ExportMapping, apply_mapping, extra_feature_specs, extra_name, load_mapping,
                               read_export)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "x_education_sample.csv"
X_MAPPING = ROOT / "mappings" / "x_education.yaml"
AFTER_CONTACT = ["Tags", "Lead Quality", "Lead Profile", "Asymmetrique Activity Index", "Asymmetrique Profile Index",
                 "Asymmetrique Activity Score", "Asymmetrique Profile Score"]


@pytest.fixture(scope="module")
def x_education():
    raw = read_export(SAMPLE)
    mapped, report = apply_mapping(raw, load_mapping(X_MAPPING), str(SAMPLE))
    return raw, mapped, report


def _mapping(**overrides) -> ExportMapping:
    base = {"id_column": "Id", "time": {"created_at": "Created"},
            "outcome": {"column": "Stage", "won": ["Closed Won", 1], "lost": ["Closed Lost", "0"], "open": ["Negotiation"]}}
    base.update(overrides)
    return ExportMapping.model_validate(base)


def _export(**columns) -> pd.DataFrame:
    base = {"Id": ["a", "b", "c", "d"], "Created": ["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04"],
            "Stage": ["Closed Won", "closed lost ", "Negotiation", ""]}
    base.update(columns)
    return pd.DataFrame(base)


# --------------------------------------------------------------------------------------------- X Education

def test_x_education_rows_reconcile_and_every_column_is_accounted_for(x_education):
    raw, mapped, report = x_education
    assert report.rows_in == report.rows_out == len(mapped) == len(raw) == 2000
    assert mapped["lead_id"].tolist() == raw["Prospect ID"].tolist()  # same rows, same order
    accounted = (set(report.renamed) | set(report.dropped) | {e.source for e in report.extras} | {"Lead Number"})
    assert report.unmapped == []
    assert accounted == set(raw.columns)
    # the header and every row end with a comma: the reader ignores that trailing delimiter (and says so)
    assert raw.attrs["read"]["trailing_delimiter"] and not any(str(c).startswith("Unnamed") for c in raw.columns)
    assert not any(c.startswith("Unnamed") for c in mapped.columns)


def test_x_education_select_is_replaced_and_counted(x_education):
    raw, mapped, report = x_education
    for column, out in [("City", "x_city"), ("Specialization", "x_specialization"), ("Lead Profile", "x_lead_profile"),
                        ("How did you hear about X Education", "x_heard_about_us")]:
        n_select = int((raw[column] == "Select").sum())
        n_blank = int((raw[column].str.strip() == "").sum())
        assert n_select > 0
        assert report.placeholders_replaced[column].get("Select") == n_select
        assert report.placeholders_replaced[column].get("", 0) == n_blank
        assert mapped[out].isna().sum() == n_select + n_blank
    text = mapped.select_dtypes(include=["string", "object"])
    assert not text.apply(lambda s: s.str.lower().eq("select").any()).any()
    assert report.placeholders_replaced["City"] == {"Select": 463, "": 303}


def test_x_education_converted_is_mapped_to_won_and_lost(x_education):
    raw, mapped, report = x_education
    expected = np.where(raw["Converted"] == "1", "won", "lost")
    assert (mapped["outcome"].to_numpy() == expected).all()
    assert report.outcome_mapped == {"won": {"1": 771}, "lost": {"0": 1229}}
    assert report.outcome_unmapped == {} and report.outcome_missing == 0
    assert report.renamed["Converted"] == "outcome"


def test_x_education_created_at_follows_lead_number_and_outcome_at_is_the_stand_in(x_education):
    raw, mapped, report = x_education
    order = np.argsort(raw["Lead Number"].astype(int).to_numpy())
    created = mapped["created_at"].to_numpy()[order]
    assert (np.diff(created) > np.timedelta64(0)).all()  # strictly increasing in Lead Number
    assert mapped["created_at"].min() == pd.Timestamp("2024-01-01")
    assert mapped["created_at"].max() == pd.Timestamp("2025-12-31")
    gaps = np.diff(created).astype("timedelta64[s]").astype(float)
    assert gaps.max() - gaps.min() <= 1  # evenly spread (whole seconds)
    assert ((mapped["outcome_at"] - mapped["created_at"]) == pd.Timedelta(days=60)).all()
    assert report.outcome_at_filled == 2000
    assert "Lead Number" in report.time and "stand-in" in report.time


def test_x_education_casing_is_folded(x_education):
    raw, mapped, report = x_education
    assert set(raw["Lead Source"]) >= {"Google", "Direct Traffic"}
    assert mapped["lead_source"].dropna().str.islower().all()
    assert mapped["lead_source"].value_counts()["google"] == raw["Lead Source"].str.lower().eq("google").sum()
    assert report.casing_changed["Lead Source"] == int(
        (raw["Lead Source"].str.strip() != raw["Lead Source"].str.strip().str.lower()).sum())
    assert report.casing_merged == {"Lead Source": 1}  # "google" and "Google" became one source
    assert mapped["lead_id"].tolist() == raw["Prospect ID"].tolist()  # ids are never case-folded


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_x_education_mapped_frame_passes_the_contract(x_education, tmp_path, suffix):
    _, mapped, _ = x_education
    path = tmp_path / f"leads{suffix}"
    mapped.to_csv(path, index=False) if suffix == ".csv" else mapped.to_parquet(path, index=False)
    valid, rejects, file_report = validate_leads(path, require_outcome=True)
    assert len(rejects) == 0 and file_report.rows_valid == 2000
    assert valid["outcome"].value_counts().to_dict() == {"lost": 1229, "won": 771}
    assert valid["created_at"].notna().all()
    assert (valid["outcome_at"] > valid["created_at"]).all()
    assert valid["lead_source"].str.contains("google").any()


def test_x_education_extras_are_typed_and_named(x_education):
    raw, mapped, report = x_education
    kinds = {e.name: e.kind for e in report.extras}
    assert kinds["x_totalvisits"] == kinds["x_total_time_spent_on_website"] == kinds["x_page_views_per_visit"] == "numeric"
    assert kinds["x_last_activity"] == kinds["x_city"] == kinds["x_occupation"] == "categorical"
    assert mapped["x_totalvisits"].dtype == float
    np.testing.assert_array_equal(mapped["x_totalvisits"].to_numpy(),
                                  pd.to_numeric(raw["TotalVisits"].replace("", np.nan)).to_numpy())
    groups = {e.name: e.group for e in report.extras}
    assert groups["x_last_notable_activity"] == "behavior" and groups["x_lead_origin"] == "fit"


def test_x_education_feature_specs_leave_out_after_contact_columns(x_education):
    _, mapped, report = x_education
    specs = extra_feature_specs(report)
    names = [s["name"] for s in specs]
    declared = report.declared_after_contact
    assert sorted(declared) == sorted(extra_name(c) for c in ["tags", "lead_quality", "lead_profile",
                                                             "asymmetrique_activity_index", "asymmetrique_profile_index",
                                                             "asymmetrique_activity_score", "asymmetrique_profile_score"])
    assert not set(names) & set(declared)
    assert "x_totalvisits" in names and len(names) == 13
    spec = next(s for s in specs if s["name"] == "x_totalvisits")
    assert spec == {"name": "x_totalvisits", "group": "behavior", "kind": "numeric", "description": "TotalVisits is {value}"}
    # The form the scorer reads feature metadata in (scoring.py builds Feature(**metadata, sql=""))
    assert Feature(**spec, sql="").describe(5.0) == "TotalVisits is 5"
    assert len(extra_feature_specs(report, include_after_contact=True)) == 20
    assert all(c in mapped.columns for c in names + declared)


def test_x_education_declared_columns_are_excluded_by_the_leakage_guard(x_education):
    _, mapped, report = x_education
    label = (mapped["outcome"] == "won").astype(int)
    specs = extra_feature_specs(report, include_after_contact=True)
    guard = leakage_report(mapped, label, [s["name"] for s in specs],
                           declared_after_contact=report.declared_after_contact).set_index("column")
    assert guard.loc[report.declared_after_contact, "excluded"].all()
    assert guard.loc["x_tags", "single_column_auc"] > 0.85  # and the data agrees for Tags
    assert not guard.loc[["x_city", "x_totalvisits", "x_lead_origin"], "excluded"].any()


def test_summary_names_the_counts(x_education):
    _, _, report = x_education
    text = report.summary()
    assert "2,000 rows in, 2,000 out" in text and "'1' ×771" in text and "City: 766" in text
    d = report.to_dict()
    assert d["placeholders_total"] == report.placeholders_total > 0 and d["casing_changes"] == report.casing_changes


# --------------------------------------------------------------------------------------------- rules

def test_missing_mapped_column_names_file_column_and_close_match():
    raw = _export().rename(columns={"Stage": "Stage Name"})
    with pytest.raises(ContractError, match=r"crm\.csv.*'Stage'.*did you mean 'Stage Name'"):
        apply_mapping(raw, _mapping(), "crm.csv")


def test_columns_match_ignoring_case_and_punctuation():
    raw = _export().rename(columns={"Created": "created", "Stage": "STAGE"})
    mapped, report = apply_mapping(raw, _mapping(), "crm.csv")
    assert report.renamed == {"Id": "lead_id", "created": "created_at", "STAGE": "outcome"}
    assert mapped["outcome"].tolist()[:3] == ["won", "lost", "open"]


def test_outcome_values_are_matched_as_text_case_insensitively():
    raw = _export(Stage=["Closed Won", "closed lost ", "1.0", "Won"])
    mapped, report = apply_mapping(raw, _mapping(), "crm.csv")
    assert mapped["outcome"].tolist() == ["won", "lost", "won", "won"]  # "1.0" is 1; "Won" is the contract's word
    assert report.outcome_mapped == {"won": {"Closed Won": 1, "1.0": 1, "Won": 1}, "lost": {"closed lost": 1}}


def test_unmapped_outcomes_stay_raw_and_are_rejected_with_a_reason(tmp_path):
    raw = _export(Stage=["Closed Won", "Proposal", "Proposal", "Negotiation"])
    mapped, report = apply_mapping(raw, _mapping(time={"created_at": "Created", "decision_days": 30}), "crm.csv")
    assert len(mapped) == 4 and mapped["outcome"].tolist()[1:3] == ["Proposal", "Proposal"]
    assert report.outcome_unmapped == {"Proposal": 2}
    assert "Proposal" in report.summary() and "reject" in report.summary()
    path = tmp_path / "leads.csv"
    mapped.to_csv(path, index=False)
    valid, rejects, file_report = validate_leads(path, require_outcome=False)
    assert rejects["row"].tolist() == [2, 3]
    assert rejects["reason"].str.contains("outcome is not one of").all()
    assert file_report.rows_in == 4 and file_report.rows_valid == 2


def test_missing_outcome_is_open_and_counted():
    mapped, report = apply_mapping(_export(), _mapping(), "crm.csv")
    assert report.outcome_missing == 1 and pd.isna(mapped["outcome"].iloc[3])
    assert report.outcome_mapped["open"] == {"Negotiation": 1}


def test_placeholders_are_case_insensitive_and_stripped():
    raw = _export(Country=[" unknown ", "UNKNOWN", "N/A", "Germany"])
    m = _mapping(renames={"Country": "country"}, placeholders=["Unknown", "n/a"])
    mapped, report = apply_mapping(raw, m, "crm.csv")
    assert mapped["country"].isna().tolist() == [True, True, True, False]
    assert report.placeholders_replaced["Country"] == {"Unknown": 2, "n/a": 1}
    assert mapped["country"].iloc[3] == "Germany"  # no lowercase asked for: casing kept


def test_lowercase_list_only_touches_named_columns():
    raw = _export(Country=["DE", "de", "FR", None], Industry=["Software", "software", "Retail", None])
    m = _mapping(renames={"Country": "country", "Industry": "industry"}, lowercase=["Industry"])
    mapped, report = apply_mapping(raw, m, "crm.csv")
    assert mapped["industry"].tolist()[:3] == ["software", "software", "retail"]
    assert mapped["country"].tolist()[:3] == ["DE", "de", "FR"]
    assert report.casing_changed == {"Industry": 2}
    assert report.casing_merged == {"Industry": 1}  # "Software" and "software" are one value now


def test_created_at_column_with_decision_days_fills_only_missing_decision_dates(tmp_path):
    raw = _export(Closed=["2025-02-01", "", "", ""])
    m = _mapping(time={"created_at": "Created", "outcome_at": "Closed", "decision_days": 10})
    mapped, report = apply_mapping(raw, m, "crm.csv")
    assert report.outcome_at_filled == 1  # row 2 (lost, no date); row 3 is open, row 4 missing → open
    assert pd.Timestamp(mapped["outcome_at"].iloc[0]) == pd.Timestamp("2025-02-01")
    assert pd.Timestamp(mapped["outcome_at"].iloc[1]) == pd.Timestamp("2025-01-12")
    assert mapped["outcome_at"].iloc[2:].isna().all()
    path = tmp_path / "leads.csv"
    mapped.to_csv(path, index=False)
    _, rejects, _ = validate_leads(path)
    assert len(rejects) == 0


def test_without_decision_dates_the_report_warns():
    _, report = apply_mapping(_export(), _mapping(), "crm.csv")
    assert any("outcome_at" in w for w in report.warnings)


def test_order_by_sorts_numbers_as_numbers_and_ties_share_a_time():
    raw = _export(Seq=["10", "9", "9", "100"]).drop(columns="Created")
    m = _mapping(time={"order_by": "Seq", "start": "2025-01-01", "end": "2025-01-03"})
    mapped, _ = apply_mapping(raw, m, "crm.csv")
    assert mapped["created_at"].tolist() == [pd.Timestamp("2025-01-02"), pd.Timestamp("2025-01-01"),
                                             pd.Timestamp("2025-01-01"), pd.Timestamp("2025-01-03")]


def test_missing_order_value_leaves_created_at_missing_for_the_contract_to_reject():
    raw = _export(Seq=["1", "", "3", "4"]).drop(columns="Created")
    m = _mapping(time={"order_by": "Seq", "start": "2025-01-01", "end": "2025-01-03"})
    mapped, report = apply_mapping(raw, m, "crm.csv")
    assert mapped["created_at"].isna().tolist() == [False, True, False, False]
    assert len(mapped) == 4 and any("created_at missing" in w for w in report.warnings)


def test_float_ids_are_read_as_integers_and_unmapped_columns_are_listed():
    raw = _export(Id=[17.0, 18.0, 19.0, 20.0], Notes=["x", "y", "z", "w"])
    mapped, report = apply_mapping(raw, _mapping(), "crm.csv")
    assert mapped["lead_id"].tolist() == ["17", "18", "19", "20"]
    assert report.unmapped == ["Notes"] and "Notes" not in mapped.columns


def test_a_non_numeric_value_makes_an_extra_categorical():
    raw = _export(Visits=["1", "2", "lots", ""], Score=["1", "2.5", None, ""])
    mapped, report = apply_mapping(raw, _mapping(extra_behavior=["Visits", "Score"]), "crm.csv")
    kinds = {e.name: e.kind for e in report.extras}
    assert kinds == {"x_visits": "categorical", "x_score": "numeric"}
    assert mapped["x_score"].tolist()[:2] == [1.0, 2.5] and mapped["x_score"].iloc[2:].isna().all()


def test_headerless_column_with_values_is_not_silently_dropped():
    raw = _export(**{"Unnamed: 4": ["", "", "", ""], "Unnamed: 5": ["a", "", "", ""]})
    _, report = apply_mapping(raw, _mapping(), "crm.csv")
    assert report.dropped == ["Unnamed: 4"] and report.unmapped == ["Unnamed: 5"]


# --------------------------------------------------------------------------------------------- loading

def test_x_education_yaml_loads(tmp_path):
    m = load_mapping(X_MAPPING)
    assert m.id_column == "Prospect ID" and m.time.order_by == "Lead Number"
    assert m.outcome.lookup()["1"] == "won" and m.outcome.lookup()["0"] == "lost"
    assert sorted(m.after_sales_contact) == sorted(AFTER_CONTACT)
    assert m.lowercase == "all_text" and "Select" in m.placeholders


@pytest.mark.parametrize("change, message", [
    ({"outcome": {"column": "Stage", "lost": [False]}}, "quotes"),
    ({"renames": {"Id2": "lead_id"}}, "id_column"),
    ({"renames": {"Size": "employes"}}, "did you mean 'employees'"),
    ({"renames": {"A": "country", "B": "country"}}, "several export columns"),
    ({"extra_fit": ["Id"]}, "used twice"),
    ({"extra_fit": ["Total Visits"], "extra_behavior": ["total_visits"]}, "used twice"),
    ({"extra_fit": {"A": "v"}, "extra_behavior": {"B": "v"}}, "share the name"),
    ({"time": {"created_at": "Created", "order_by": "Seq"}}, "exactly one"),
    ({"time": {"order_by": "Seq", "start": "2025-01-02", "end": "2025-01-01"}}, "after start"),
    ({"time": {"order_by": "Seq"}}, "needs start and end"),
    ({"outcome": {"column": "Stage", "won": ["A"], "lost": ["a"]}}, "both won and lost"),
    ({"outcome": {"column": "Stage", "won": ["lost"]}}, "contract's word"),
    ({"placeholder": ["x"]}, "Extra inputs are not permitted"),
])
def test_bad_mappings_are_refused_with_the_reason(change, message):
    with pytest.raises(ValueError, match=message):
        _mapping(**change)


def test_yaml_booleans_are_refused_with_a_hint(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"id_column": "Id", "time": {"created_at": "Created"}})
                    + "outcome:\n  column: Stage\n  won: [Yes]\n")
    with pytest.raises(ValueError, match=r"(?s)m\.yaml.*outcome\.won.*quotes"):
        load_mapping(path)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["Closed Won", "closed won", "0", "1.0", "Proposal", "", "  ", None, "OPEN"]),
                min_size=1, max_size=30))
def test_outcome_counts_always_reconcile(values):
    n = len(values)
    raw = pd.DataFrame({"Id": [f"L{i}" for i in range(n)], "Created": ["2025-01-01"] * n, "Stage": values})
    mapped, report = apply_mapping(raw, _mapping(), "crm.csv")
    mapped_n = sum(sum(per.values()) for per in report.outcome_mapped.values())
    assert mapped_n + sum(report.outcome_unmapped.values()) + report.outcome_missing == n == len(mapped)
    assert set(mapped["outcome"].dropna()) - {"won", "lost", "open"} == set(report.outcome_unmapped)
