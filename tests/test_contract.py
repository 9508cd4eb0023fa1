"""Bad input: a clear error naming file, column and rows; rejected rows are kept with their reason."""

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.contract import (
    ContractError,
    enforce_reject_share,
    parse_amount,
    parse_timestamp,
    validate_events,
    validate_leads,
)


def _leads(n=6) -> pd.DataFrame:
    return pd.DataFrame({
        "lead_id": [f"L{i}" for i in range(1, n + 1)],
        "created_at": ["2025-01-0%d 10:00:00" % (1 + i % 9) for i in range(n)],
        "account_id": ["A1"] * n,
        "email_domain": ["acme.com"] * n,
        "title": ["VP Sales"] * n,
        "industry": ["Software"] * n,
        "employees": ["120"] * n,
        "annual_revenue": ["1000000"] * n,
        "country": ["Germany"] * n,
        "lead_source": ["webinar"] * n,
        "outcome": ["won", "lost"] * (n // 2) + ["open"] * (n % 2),
        "outcome_at": ["2025-03-01"] * n,
    })


def _write(df, path):
    df.to_csv(path, index=False)
    return path


def test_missing_required_column_names_file_column_and_suggests_a_match(tmp_path):
    df = _leads().rename(columns={"created_at": "Created Date"})
    path = _write(df, tmp_path / "crm_leads.csv")
    with pytest.raises(ContractError) as err:
        validate_leads(path)
    msg = str(err.value)
    assert "crm_leads.csv" in msg and "'created_at'" in msg and "Created Date" in msg


def test_column_names_are_matched_regardless_of_case_and_spacing(tmp_path):
    df = _leads().rename(columns={"lead_id": "Lead ID", "created_at": "CREATED_AT"})
    valid, rejects, report = validate_leads(_write(df, tmp_path / "l.csv"))
    assert len(valid) == len(df) and rejects.empty


def test_duplicate_lead_ids_keep_the_first_and_reject_the_rest_with_rows(tmp_path):
    df = _leads()
    df.loc[3, "lead_id"] = "L1"
    df.loc[5, "lead_id"] = "L1"
    valid, rejects, report = validate_leads(_write(df, tmp_path / "l.csv"))
    assert list(rejects["row"]) == [4, 6]
    assert rejects["reason"].str.contains("duplicate lead_id").all()
    assert valid["lead_id"].is_unique and "L1" in set(valid["lead_id"])
    assert report.rows_in == report.rows_valid + report.rows_rejected == 6


def test_unparseable_and_inconsistent_timestamps_are_rejected_with_reason(tmp_path):
    df = _leads()
    df.loc[1, "created_at"] = "last tuesday"
    df.loc[2, "outcome_at"] = "2024-01-01"  # before created_at
    df.loc[4, "outcome_at"] = None  # won without a date
    valid, rejects, report = validate_leads(_write(df, tmp_path / "l.csv"))
    by_row = rejects.set_index("row")
    assert by_row.loc[2, "column"] == "created_at" and "timestamp" in by_row.loc[2, "reason"]
    assert by_row.loc[2, "value"] == "last tuesday"
    assert by_row.loc[3, "reason"] == "outcome_at is before created_at"
    assert by_row.loc[5, "reason"] == "outcome is won or lost but outcome_at is missing"
    assert len(valid) == 3


def test_unknown_outcome_value_is_rejected_but_blank_means_open(tmp_path):
    df = _leads()
    df.loc[0, "outcome"] = "maybe"
    df.loc[1, "outcome"] = None
    df.loc[1, "outcome_at"] = None
    valid, rejects, _ = validate_leads(_write(df, tmp_path / "l.csv"))
    assert rejects.set_index("row").loc[1, "column"] == "outcome"
    assert valid.set_index("lead_id").loc["L2", "outcome"] == "open"


def test_unreadable_optional_numbers_become_missing_and_are_counted_not_dropped(tmp_path):
    df = _leads()
    df.loc[0, "employees"] = "lots"
    df.loc[1, "employees"] = "51-200"
    df.loc[2, "annual_revenue"] = "$2.5M"
    valid, rejects, report = validate_leads(_write(df, tmp_path / "l.csv"))
    assert rejects.empty and len(valid) == 6
    emp = valid.set_index("lead_id")["employees"]
    assert pd.isna(emp["L1"]) and emp["L2"] == pytest.approx(125.5)
    assert valid.set_index("lead_id").loc["L3", "annual_revenue"] == pytest.approx(2.5e6)
    assert report.warnings == {"employees: not a number, set to missing": 1}


def test_timezones_are_converted_to_utc(tmp_path):
    df = _leads()
    df.loc[0, "created_at"] = "2025-01-01T10:00:00+02:00"
    valid, _, _ = validate_leads(_write(df, tmp_path / "l.csv"))
    assert valid.loc[0, "created_at"] == pd.Timestamp("2025-01-01 08:00:00")


def test_events_for_unknown_or_rejected_leads_and_unknown_types_are_rejected(tmp_path):
    leads = _leads()
    leads.loc[5, "created_at"] = "not a date"
    valid, lead_rejects, _ = validate_leads(_write(leads, tmp_path / "l.csv"))
    events = pd.DataFrame({
        "lead_id": ["L1", "L2", "ghost", "L6", "L1", "L1", "L3"],
        "timestamp": ["2025-01-05", "2025-01-06T09:00:00+01:00", "2025-01-05", "2025-01-05", "soon",
                      "2025-01-05", "2025-01-07"],
        "event_type": ["Pricing Page", "web_visit", "web_visit", "web_visit", "web_visit", "tiktok_like",
                       "webinar_attend"],
        "percent_watched": [None, None, None, None, None, None, "130"],
    })
    rejects, report = validate_events(_write(events, tmp_path / "ev.csv"), valid, lead_rejects,
                                      tmp_path / "out" / "events.parquet")
    by_row = rejects.set_index("row")
    assert by_row.loc[3, "reason"] == "lead_id not found in the leads file" and by_row.loc[3, "value"] == "ghost"
    assert by_row.loc[4, "reason"] == "lead was rejected in the leads file"
    assert by_row.loc[5, "column"] == "timestamp" and by_row.loc[5, "value"] == "soon"
    assert by_row.loc[6, "reason"] == "unknown event_type" and by_row.loc[6, "value"] == "tiktok_like"
    assert report.rows_in == 7 and report.rows_valid == 3 and report.rows_rejected == 4
    out = pd.read_parquet(tmp_path / "out" / "events.parquet")
    assert list(out["event_type"]) == ["pricing_page", "web_visit", "webinar_attend"]
    assert out.loc[1, "timestamp"] == pd.Timestamp("2025-01-06 08:00:00")
    assert pd.isna(out.loc[2, "percent_watched"])
    assert report.warnings == {"percent_watched: outside 0-100, set to missing": 1}


def test_too_many_rejects_raise_with_counts_examples_and_a_hint(tmp_path):
    leads = _leads()
    valid, lead_rejects, _ = validate_leads(_write(leads, tmp_path / "l.csv"))
    events = pd.DataFrame({"lead_id": ["L1"] * 4, "timestamp": ["2025-01-05"] * 4,
                           "event_type": ["pageview", "pageview", "web_visit", "web_visit"]})
    rejects, report = validate_events(_write(events, tmp_path / "ev.csv"), valid, lead_rejects,
                                      tmp_path / "events.parquet")
    with pytest.raises(ContractError) as err:
        enforce_reject_share(rejects, report, 0.01, "data/validated/rejects.csv")
    msg = str(err.value)
    assert "ev.csv" in msg and "2 of 4 rows" in msg and "'event_type'" in msg
    assert "(read as CSV, separator ',' (detected), encoding utf-8 (detected)" in msg  # how, on a refusal too
    assert "row 1 ('pageview')" in msg and "Known types:" in msg and "rejects.csv" in msg
    enforce_reject_share(rejects, report, 0.5, "rejects.csv")  # within the allowed share: no error


@settings(max_examples=25, deadline=None)
@given(corrupt=st.lists(st.tuples(st.integers(0, 11), st.sampled_from(
    ["created_at", "lead_id", "outcome", "outcome_at", "employees"])), max_size=8),
    dup=st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11)), max_size=3), chunk_rows=st.integers(1, 6))
def test_every_row_is_either_valid_or_rejected_with_a_reason(tmp_path_factory, corrupt, dup, chunk_rows):
    df = _leads(12)
    garbage = {"created_at": "??", "lead_id": None, "outcome": "perhaps", "outcome_at": "1999-01-01",
               "employees": "n/a"}
    for row, col in corrupt:
        df.loc[row, col] = garbage[col]
    for a, b in dup:
        df.loc[b, "lead_id"] = df.loc[a, "lead_id"]
    path = _write(df, tmp_path_factory.mktemp("prop") / "l.csv")
    valid, rejects, report = validate_leads(path)
    assert len(valid) + len(rejects) == len(df)
    assert rejects["row"].is_unique and rejects["reason"].notna().all()
    assert valid["lead_id"].is_unique and valid["lead_id"].notna().all()
    assert valid["created_at"].notna().all()
    # Checked a few rows at a time (as large exports are), the outcome is the same: duplicates are found
    # across chunk boundaries and every row keeps the same reason.
    v, r, rep = validate_leads(path, chunk_rows=chunk_rows)
    pd.testing.assert_frame_equal(v, valid)
    pd.testing.assert_frame_equal(r, rejects)
    assert rep == report


@given(st.integers(0, 10**9))
def test_amounts_are_read_as_crms_write_them(n):
    raw = pd.Series([str(n), f"{n:,}", f"${n:,}", f"{n}+", f"{n}-{n + 10}"])
    parsed, bad = parse_amount(raw)
    assert not bad.any()
    assert list(parsed[:4]) == [float(n)] * 4 and parsed[4] == n + 5


def test_amount_suffixes_and_garbage():
    parsed, bad = parse_amount(pd.Series(["10k", "2.5M", "1bn", "11-50", "unknown", None]))
    assert list(parsed[:4]) == [1e4, 2.5e6, 1e9, 30.5]
    assert list(bad) == ["", "", "", "", "unreadable", ""]


def test_timestamps_unparseable_are_flagged_blank_are_missing():
    ts, bad = parse_timestamp(pd.Series(["2025-01-01", "2025-01-01T12:00:00Z", "", None, "nope"]))
    assert list(bad) == [False, False, False, False, True]
    assert ts[1] == pd.Timestamp("2025-01-01 12:00:00")


def test_a_valid_leads_events_survive_a_rejected_duplicate_of_its_id(tmp_path):
    leads = _leads()
    leads.loc[3, "lead_id"] = "L1"
    valid, lead_rejects, _ = validate_leads(_write(leads, tmp_path / "l.csv"))
    events = pd.DataFrame({"lead_id": ["L1"], "timestamp": ["2025-01-05"], "event_type": ["web_visit"]})
    rejects, report = validate_events(_write(events, tmp_path / "ev.csv"), valid, lead_rejects, tmp_path / "e.parquet")
    assert rejects.empty and report.rows_valid == 1


def test_empty_and_clashing_and_malformed_files_raise_contract_errors(tmp_path):
    _write(_leads().head(0), tmp_path / "empty.csv")
    with pytest.raises(ContractError, match="no data rows"):
        validate_leads(tmp_path / "empty.csv")
    clash = _leads().assign(**{"Lead ID": "X"})
    with pytest.raises(ContractError, match="both mean 'lead_id'"):
        validate_leads(_write(clash, tmp_path / "clash.csv"))
    valid, lead_rejects, _ = validate_leads(_write(_leads(), tmp_path / "l.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("lead_id,timestamp,event_type\n" + "L1,2025-01-05,web_visit\n" * 3000 + "L1,2025-01-05,web_visit,x,y,z\n")
    # a malformed row far into the file is a reject with its row number, never a shifted read
    rejects, report = validate_events(bad, valid, lead_rejects, tmp_path / "e.parquet")
    assert list(rejects["row"]) == [3001] and rejects["reason"][0] == "6 fields, header has 3"
    assert report.rows_in == 3001 and report.rows_valid == 3000


def test_whole_number_float_ids_match_their_events(tmp_path):
    leads = _leads().assign(lead_id=[1.0, 2.0, 3.0, 4.0, 5.0, None])
    leads.to_parquet(tmp_path / "l.parquet")
    valid, lead_rejects, _ = validate_leads(tmp_path / "l.parquet")
    assert list(valid["lead_id"]) == ["1", "2", "3", "4", "5"]
    events = pd.DataFrame({"lead_id": [1.0, 5.0], "timestamp": pd.to_datetime(["2025-01-05", "2025-01-06"]),
                           "event_type": ["web_visit", "web_visit"]})
    events.to_parquet(tmp_path / "e.parquet")
    rejects, report = validate_events(tmp_path / "e.parquet", valid, lead_rejects, tmp_path / "out.parquet")
    assert rejects.empty and report.rows_valid == 2


def test_common_null_spellings_mean_missing(tmp_path):
    leads = _leads()
    leads.loc[1, ["outcome", "outcome_at", "title"]] = ["open", "NULL", "N/A"]
    valid, rejects, _ = validate_leads(_write(leads, tmp_path / "l.csv"))
    assert rejects.empty
    assert pd.isna(valid.loc[1, "title"]) and pd.isna(valid.loc[1, "outcome_at"])


def _parts_bytes(folder) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(Path(folder).glob("*.parquet"))]


@pytest.mark.parametrize("unknown", [0, 3])
def test_a_parquet_log_is_written_as_ordered_parts_with_the_same_bytes_on_any_thread_count(tmp_path, monkeypatch, unknown):
    # Parts of EVENT_PART_ROWS rows are written side by side, each in order: read in name order they are the
    # file's valid events in the file's order, and a machine with another number of threads writes the
    # same parts, byte for byte. A stale part of an earlier, larger run is not left behind.
    import leadscore.contract as contract
    from leadscore.features import connect

    monkeypatch.setattr(contract, "EVENT_PART_ROWS", 700)
    n = 3000
    ids = [f"L{(i * 7919) % 500}" if i % 997 != 5 or not unknown else f"X{i}" for i in range(n)]
    events = pd.DataFrame({"lead_id": ids, "timestamp": pd.date_range("2025-01-01", periods=n, freq="37min"),
                           "event_type": ["web_visit", "pricing_page", "Email Open"] * (n // 3)})
    events.to_parquet(tmp_path / "ev.parquet", index=False, row_group_size=250)
    leads = pd.DataFrame({"lead_id": [f"L{i}" for i in range(500)]})
    out = tmp_path / "out.parquet"
    out.mkdir()
    (out / "part-00009.parquet").write_bytes(b"stale")
    runs = []
    for threads in (1, 2, 3):
        _, report = validate_events(tmp_path / "ev.parquet", leads, leads.iloc[:0], out, con=connect(threads=threads))
        runs.append(_parts_bytes(out))
    assert runs[0] == runs[1] == runs[2]
    assert [name for name, _ in runs[0]] == [f"part-{i:05d}.parquet" for i in range(5)]  # 3,000 rows / 700
    kept = events[events["lead_id"].str.startswith("L")].reset_index(drop=True)
    back = pd.read_parquet(out)
    assert back["lead_id"].tolist() == kept["lead_id"].tolist()
    assert back["timestamp"].tolist() == kept["timestamp"].tolist()
    assert report.rows_valid == len(kept) and report.rows_rejected == n - len(kept)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("unknown", [0, 3, 2200])
def test_valid_events_keep_the_files_order_whatever_the_sizes(tmp_path, fmt, unknown):
    # A small event log against a large leads table (DuckDB would probe with the smaller side), a few
    # unknown ids (checked as a list) or many (joined, then sorted back): the valid events are written in
    # the order of the file, and the same input gives the same bytes.
    n_leads, n_events = 5000, 3000
    leads = pd.DataFrame({"lead_id": [f"L{i}" for i in range(n_leads)]})
    ids = [f"L{(i * 7919) % n_leads}" for i in range(n_events)]
    if unknown > n_events // 2:  # more than the list pass 2 checks: joined and sorted back
        ids = [f"X{i}" for i in range(unknown)] + ids[unknown:]
    elif unknown:
        ids = [f"X{i}" if i % (n_events // unknown) == 1 else v for i, v in enumerate(ids)]
    events = pd.DataFrame({"lead_id": ids,
                           "timestamp": [f"2025-01-{1 + i % 28:02d} {i % 24:02d}:00:00" for i in range(n_events)],
                           "event_type": ["web_visit", "pricing_page", "Email Open"] * (n_events // 3),
                           "percent_watched": [str(i % 150) for i in range(n_events)]})
    src = tmp_path / f"ev.{fmt}"
    events.to_csv(src, index=False) if fmt == "csv" else events.to_parquet(src, index=False)
    outs = []
    for k in range(2):
        rejects, report = validate_events(src, leads, leads.iloc[:0], tmp_path / f"out{k}.parquet")
        outs.append(_parts_bytes(tmp_path / f"out{k}.parquet"))
    assert outs[0] == outs[1]
    out = pd.read_parquet(tmp_path / "out0.parquet")
    kept = events[~events["lead_id"].str.startswith("X")]
    assert out["lead_id"].tolist() == kept["lead_id"].tolist()
    assert out["timestamp"].tolist() == pd.to_datetime(kept["timestamp"]).tolist()
    assert report.rows_valid == len(kept) and report.rows_rejected == len(events) - len(kept)
    assert (rejects["reason"] == "lead_id not found in the leads file").sum() == len(events) - len(kept)


@pytest.mark.parametrize("unknown", [0, 3, 2200])
def test_free_order_writes_the_same_events_and_rejects_as_the_kept_order(tmp_path, unknown):
    # A batch job's working copy (keep_order=False) may be written by every thread in any order, but it
    # holds exactly the rows (and the values) of the ordered file, and the same rejects.
    n_leads, n_events = 4000, 6000
    leads = pd.DataFrame({"lead_id": [f"L{i}" for i in range(n_leads)]})
    ids = [f"L{(i * 7919) % n_leads}" for i in range(n_events)]
    ids = [f"X{i}" for i in range(unknown)] + ids[unknown:]
    events = pd.DataFrame({"lead_id": ids,
                           "timestamp": [f"2025-01-{1 + i % 28:02d} {i % 24:02d}:00:00" if i % 97 else "13/01/2025"
                                         for i in range(n_events)],
                           "event_type": ["web_visit", "pricing_page", "Email Open", "bogus"] * (n_events // 4),
                           "percent_watched": [str(i % 150) for i in range(n_events)]})
    src = tmp_path / "ev.parquet"
    events.to_parquet(src, index=False)
    got = {}
    for keep in (True, False):
        rejects, report = validate_events(src, leads, leads.iloc[:0], tmp_path / f"out_{keep}.parquet", keep_order=keep)
        out = pd.read_parquet(tmp_path / f"out_{keep}.parquet")
        got[keep] = (out.sort_values(list(out.columns), kind="stable").reset_index(drop=True), rejects, report)
    pd.testing.assert_frame_equal(got[True][0], got[False][0])
    pd.testing.assert_frame_equal(got[True][1], got[False][1])
    assert got[True][2].rows_valid == got[False][2].rows_valid == len(got[False][0])
    assert got[False][2].rows_valid + got[False][2].rows_rejected == n_events
