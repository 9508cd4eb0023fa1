"""Real exports in without a prep script (issue 12): one reader, one timestamp grammar, one id rule, one number
rule, every row and event accounted for. Each case of ../shared/cases (copied into tests/data/cases) is a test
here, next to cases of the same kinds of our own."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import duckdb
import joblib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from leadscore.batch import score_leads
from leadscore.cli import app
from leadscore.contract import (
    AMBIGUOUS_DATE,
    ContractError,
    amount_warning,
    id_sql,
    normalise_domains,
    normalise_ids,
    parse_amount,
    parse_moment,
    parse_timestamp,
    read_priority_accounts,
    timestamp_problem,
    timestamp_sql,
    unmatched_priority,
    validate_events,
    validate_leads,
)
from leadscore.mapping import ExportMapping, apply_mapping, load_mapping, read_export, read_export_table
from leadscore.reader import EMPTY_RECORDS, ReadOptions, read_table

CASES = Path(__file__).parent / "data" / "cases"
AS_OF = "2026-10-01T00:00"


def _leads_events(case: str, tmp_path: Path, **options):
    leads, lead_rejects, lead_report = validate_leads(CASES / case / "leads.csv", require_outcome=False, options=options)
    ev_rejects, ev_report = validate_events(CASES / case / "events.csv", leads, lead_rejects, tmp_path / "ev.parquet",
                                            options=options)
    return leads, lead_rejects, lead_report, ev_rejects, ev_report, pd.read_parquet(tmp_path / "ev.parquet")


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


LEADS_HEADER = "lead_id,created_at,email_domain,title,employees,annual_revenue"


# ============================================================================ 1. one reader
def test_case_trailing_delimiter_fields_land_in_their_columns(tmp_path):
    leads, _, report, ev_rejects, _, events = _leads_events("trailing_delimiter", tmp_path)
    assert list(leads["lead_id"]) == ["L1", "L2", "L3"]
    assert list(leads["created_at"].astype(str)) == ["2026-09-01 10:00:00", "2026-09-05 12:00:00", "2026-09-10 09:30:00"]
    assert list(leads["email_domain"]) == ["acme-widgets.com", "globex-example.com", "gmail.com"]
    assert report.read["trailing_delimiter"] and "trailing delimiter ignored" in report.read["described"]
    assert ev_rejects.empty and len(events) == 5


def test_trailing_delimiter_gives_the_same_leads_as_without(tmp_path):
    src = (CASES / "trailing_delimiter" / "leads.csv").read_text()
    plain = _write(tmp_path / "plain.csv", "\n".join(line.rstrip(",") for line in src.splitlines()) + "\n")
    with_commas, _, _ = validate_leads(CASES / "trailing_delimiter" / "leads.csv", require_outcome=False)
    without, _, _ = validate_leads(plain, require_outcome=False)
    pd.testing.assert_frame_equal(with_commas, without)


def test_trailing_delimiter_row_with_a_value_in_the_extra_field_is_rejected(tmp_path):
    path = _write(tmp_path / "l.csv", "lead_id,created_at,title\nL1,2026-09-01,CEO,\nL2,2026-09-02,CTO,oops\n"
                                      "L3,2026-09-03,CFO,\n")
    leads, rejects, report = validate_leads(path, require_outcome=False)
    assert list(leads["lead_id"]) == ["L1", "L3"]
    assert rejects.iloc[0][["row", "reason"]].tolist() == [2, "4 fields, header has 3"]


@pytest.mark.parametrize("sep,encoding", [(",", "utf-8"), (";", "cp1252"), ("\t", "utf-16")])
def test_empty_records_below_a_spreadsheet_table_are_skipped_like_blank_lines_and_said(tmp_path, sep, encoding):
    """Excel saves rows it once formatted as ',,,,,' (every field empty): a blank line, not a lead without
    an id. They are skipped and reported with their rows; a row with one value left is still a reject."""
    rows = ["lead_id,created_at,title,industry", "L1,2026-09-01,CEO,software", ",,,", "L2,2026-09-02,CTO,retail",
            " , ,,", ",,,", ",,CFO,", "N/A,,,", "   "]
    text = "\r\n".join(r.replace(",", sep) for r in rows) + "\r\n"
    path = _write(tmp_path / "l.csv", text, encoding)
    leads, rejects, report = validate_leads(path, require_outcome=False)
    assert list(leads["lead_id"]) == ["L1", "L2"]
    assert rejects[["row", "column"]].values.tolist() == [[6, "lead_id"]]  # ',,CFO,': a lead without an id
    assert report.rows_in == 3 and report.rows_valid == 2 and report.rows_rejected == 1
    line = next(w for w in report.warning_lines() if w.startswith("records with every field empty"))
    assert line.endswith(": 5 (rows 2, 4, 5, 7, 8)")  # row 8: a line of spaces
    mapped = read_export_table(path)  # the mapping's reader: 'N/A' is for the mapping's placeholders to decide
    assert mapped.empty_rows == [2, 4, 5, 8] and len(mapped.frame) == 4


@pytest.mark.parametrize("sep", [",", ";"])
def test_empty_records_in_an_event_log_are_skipped_like_blank_lines_and_said(tmp_path, sep):
    leads = _write(tmp_path / "l.csv", "lead_id,created_at\nL1,2026-09-01\n")
    rows = ["lead_id,timestamp,event_type,duration_s", "L1,2026-09-02,web_visit,5", ",,,", " , ,,",
            "L1,2026-09-03,web_visit,", ",,web_visit,", ",,,", "    "]
    events = _write(tmp_path / "e.csv", "\n".join(r.replace(",", sep) for r in rows) + "\n")
    lv, lr, _ = validate_leads(leads, require_outcome=False)
    rejects, report = validate_events(events, lv, lr, tmp_path / "ev.parquet")
    assert len(pd.read_parquet(tmp_path / "ev.parquet")) == 2
    assert rejects[["row", "reason"]].values.tolist() == [[5, "lead_id is missing"]]  # one value left: a reject
    assert report.rows_in == 3 and report.rows_valid == 2 and report.rows_rejected == 1
    assert report.warnings[EMPTY_RECORDS] == 4 and report.warning_rows[EMPTY_RECORDS] == [2, 3, 6, 7]
    only_blank = _write(tmp_path / "b.csv", "lead_id,timestamp,event_type\n,,\n,,\n")
    with pytest.raises(ContractError, match="no data rows"):
        validate_events(only_blank, lv, lr, tmp_path / "ev2.parquet")


def test_a_file_of_only_empty_records_has_no_data_rows(tmp_path):
    path = _write(tmp_path / "l.csv", "lead_id,created_at\n,\n,\n")
    with pytest.raises(ContractError, match="no data rows"):
        validate_leads(path, require_outcome=False)


def test_case_semicolon_separator_detected_for_leads_and_events(tmp_path):
    leads, _, report, ev_rejects, ev_report, events = _leads_events("semicolon", tmp_path)
    assert list(leads["employees"]) == [1200.0, 250.0] and list(leads["annual_revenue"]) == [2.5e6, 9e5]
    assert report.read["sep"] == ";" and ev_report.read["sep"] == ";"
    assert "separator ';' (detected)" in report.read["described"]
    assert ev_rejects.empty and events["percent_watched"].iloc[2] == 85.5  # 85,5: the file's decimal comma


@pytest.mark.parametrize("sep", ["\t", "|", ";"])
def test_every_separator_is_detected_and_can_be_set(tmp_path, sep):
    text = "\n".join(sep.join(r) for r in [["lead_id", "created_at", "title"], ["L1", "2026-09-01", "CEO, Founder"],
                                            ["L2", "2026-09-02", "CTO"]]) + "\n"
    path = _write(tmp_path / "l.csv", text)
    leads, _, report = validate_leads(path, require_outcome=False)
    assert list(leads["title"]) == ["CEO, Founder", "CTO"] and report.read["sep"] == sep
    _, _, set_report = validate_leads(path, require_outcome=False, options={"sep": "tab" if sep == "\t" else sep})
    assert set_report.read["how"]["sep"] == "set"


def test_case_utf16_is_read(tmp_path):
    leads, _, report, ev_rejects, ev_report, events = _leads_events("utf16", tmp_path)
    assert list(leads["lead_id"]) == ["L1", "L2", "L3"] and report.read["encoding"] == "utf-16"
    assert ev_rejects.empty and len(events) == 5 and ev_report.read["encoding"] == "utf-16"


def test_case_cp1252_accents_intact(tmp_path):
    leads, _, report, ev_rejects, _, events = _leads_events("cp1252", tmp_path)
    assert report.read["encoding"] == "windows-1252"
    assert leads["title"].iloc[2] == "Directeur Général" and leads["email_domain"].iloc[2] == "société-example.fr"
    assert "whitepaper:Übersicht-Lösungen-für-Händler" in set(events["asset"]) and ev_rejects.empty


@pytest.mark.parametrize("encoding, label", [("utf-8-sig", "utf-8 (with BOM)"), ("utf-16-le", "utf-16-le"),
                                             ("cp1252", "windows-1252")])
def test_encodings_detected_with_euro_sign_and_umlauts(tmp_path, encoding, label):
    text = f"{LEADS_HEADER}\nL1,2026-09-01,müller.de,Geschäftsführer,10,5 €\n"
    leads, _, report = validate_leads(_write(tmp_path / "l.csv", text, encoding), require_outcome=False)
    assert leads["title"].iloc[0] == "Geschäftsführer" and leads["annual_revenue"].iloc[0] == 5.0
    assert report.read["encoding"] == label


def test_a_wrong_encoding_set_names_the_file_and_the_option(tmp_path):
    path = _write(tmp_path / "l.csv", f"{LEADS_HEADER}\nL1,2026-09-01,a.de,Geschäftsführer,10,5\n", "cp1252")
    with pytest.raises(ContractError, match=r"l\.csv.*not valid utf-8.*encoding"):
        validate_leads(path, options={"encoding": "utf-8"})


@pytest.mark.parametrize("encoding", ["windows-1252", "latin-1", "cp1250"])
def test_a_single_byte_encoding_set_for_utf8_text_is_refused_not_garbled(tmp_path, encoding):
    # Read as Windows-1252, UTF-8 'é' becomes 'Ã©' with no error at all: refused, naming the line, both
    # readings and the option; an ASCII-only file or a real Windows-1252 file reads as set.
    path = _write(tmp_path / "l.csv", f"{LEADS_HEADER}\nL1,2026-09-01,a.de,CEO,10,5\nL2,2026-09-01,b.fr,"
                                      f"Directeur Général,10,5\n")
    with pytest.raises(ContractError, match=r"l\.csv: encoding .* is set, but the file is UTF-8 text: line 3 "
                                            r"holds 'Général', which .* would become 'G.*'.*encoding: utf-8"):
        validate_leads(path, options={"encoding": encoding}, require_outcome=False)
    ascii_only = _write(tmp_path / "a.csv", f"{LEADS_HEADER}\nL1,2026-09-01,a.de,CEO,10,5\n")
    assert validate_leads(ascii_only, options={"encoding": encoding}, require_outcome=False)[0]["title"].iloc[0] == "CEO"
    real = _write(tmp_path / "r.csv", f"{LEADS_HEADER}\nL2,2026-09-01,b.fr,Directeur Général,10,5\n", "cp1252")
    if encoding != "cp1250":  # (é is the same byte in both)
        leads = validate_leads(real, options={"encoding": encoding}, require_outcome=False)[0]
        assert leads["title"].iloc[0] == "Directeur Général"


def test_case_malformed_row_is_rejected_with_row_number_and_counts(tmp_path):
    _, _, _, ev_rejects, ev_report, events = _leads_events("malformed_row", tmp_path)
    assert ev_rejects[["row", "reason"]].values.tolist() == [[2, "7 fields, header has 6"]]
    assert ev_report.rows_in == 3 and ev_report.rows_valid == 2
    assert list(events["asset"]) == ["/home", "case-study:acme"]  # the other rows are used, none shifted


LEADS6 = "lead_id,created_at,title,industry,employees,outcome"


@pytest.mark.parametrize("row, fields", [("L2,2026-10-05,VP, Sales,Software,10,", 7),  # extra field empty
                                         ("L2,2026-10-05,VP, Sales,Software,10,,", 8),  # two empty extras
                                         ("L2,2026-10-05,A, B, C,Software,,,", 9)])
def test_a_row_with_more_fields_whose_extras_are_empty_is_rejected_never_read_shifted(tmp_path, row, fields):
    # DuckDB's strict mode drops empty extra fields and would read "VP, Sales" shifted (industry " Sales",
    # employees "Software"); the row is rejected with its number, everyone else's rows and numbers kept.
    text = f"{LEADS6}\nL0,2026-10-01,CEO,Software\nL1,2026-10-01,CEO,Software,250,open\n{row}\nL3,2026-10-06,CTO,Software,20,open\n"
    leads, rejects, report = validate_leads(_write(tmp_path / "l.csv", text), require_outcome=False)
    assert leads["lead_id"].tolist() == ["L1", "L3"] and leads["title"].tolist() == ["CEO", "CTO"]
    got = dict(zip(rejects["row"], rejects["reason"]))
    assert got[1].endswith(" fields, header has 6") and set(got) == {1, 3}  # (a short row: rejected by DuckDB)
    assert got[3].startswith("more fields than the header's 6") or got[3] == f"{fields} fields, header has 6"
    assert report.rows_in == 4 and report.warnings == {}


@pytest.mark.parametrize("keep_order", [True, False])
def test_an_event_row_with_empty_extra_fields_is_rejected_in_both_orders(tmp_path, keep_order):
    leads = validate_leads(_write(tmp_path / "l.csv", "lead_id,created_at\nL1,2026-01-01\nL2,2026-01-01\n"),
                           require_outcome=False)[0]
    text = ("lead_id,timestamp,event_type,asset\nL1,2026-01-05 10:00:00,web_visit,/home\n"
            "L2,2026-01-05 11:00:00,web_visit,/a, b,\n"  # shifted: asset "/a", then " b" and ""
            "L2,2026-01-05 11:00:00,content_download,ebook,\n"  # one empty extra field
            "L1,2026-01-06 10:00:00,pricing_page,\nL2,2026-01-07 10:00:00,web_visit,x\n")
    rejects, report = validate_events(_write(tmp_path / "e.csv", text), leads, leads.iloc[:0],
                                      tmp_path / "v.parquet", keep_order=keep_order)
    out = pd.read_parquet(tmp_path / "v.parquet")
    assert sorted(out["asset"].fillna("").tolist()) == ["", "/home", "x"]
    assert rejects["row"].tolist() == [2, 3] and report.rows_in == 5 and report.rows_valid == 3
    assert rejects["reason"].iloc[1].startswith("more fields than the header's 4")


def test_a_file_with_many_rows_with_extra_empty_fields_is_refused_naming_the_options(tmp_path):
    from leadscore.reader import Source

    # (two empty extras: one on every row would read as the file's trailing delimiter, which is ignored)
    rows = "".join(f"L{i},2026-10-05,VP, Sales,Software,10,,\n" for i in range(Source.MAX_EXTRA_FIELD_ROWS + 1))
    with pytest.raises(ContractError, match=r"1,001 rows have more fields than the header's 6.*sep"):
        validate_leads(_write(tmp_path / "l.csv", f"{LEADS6}\n{rows}"), require_outcome=False)


def test_rows_with_too_few_or_too_many_fields_keep_everyone_elses_row_numbers(tmp_path):
    rows = ["L1,2026-09-01,web_visit", "L1,2026-09-02", "L1,2026-09-03,web_visit,x", "L1,2026-09-04,nonsense",
            'L1,2026-09-05,"web_visit"']
    path = _write(tmp_path / "ev.csv", "lead_id,timestamp,event_type\n" + "\n".join(rows) + "\n")
    leads = pd.DataFrame({"lead_id": ["L1"]})
    rejects, report = validate_events(path, leads, leads.iloc[:0], tmp_path / "out.parquet")
    assert rejects[["row", "reason"]].values.tolist() == [
        [2, "2 fields, header has 3"], [3, "4 fields, header has 3"], [4, "unknown event_type"]]
    assert report.rows_in == 5 and report.rows_valid == 2


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_rejected_rows_value_is_the_row_without_its_line_break(tmp_path, newline):
    """Windows (CRLF) exports: the reject names the row as written, not with the previous line's break."""
    text = newline.join(["lead_id,created_at,title", "L1,2026-09-01,CEO", "L2,2026-09-02,CTO,oops", "L3,2026-09-03,CFO"])
    path = tmp_path / "l.csv"
    path.write_bytes((text + newline).encode())
    leads, rejects, _ = validate_leads(path, require_outcome=False)
    assert list(leads["lead_id"]) == ["L1", "L3"]
    assert rejects[["row", "reason", "value"]].values.tolist() == [[2, "4 fields, header has 3", "L2,2026-09-02,CTO,oops"]]


def test_a_file_read_with_the_wrong_separator_names_the_separator_option(tmp_path):
    path = _write(tmp_path / "l.csv", "Lead ID;created_at;title\nL1;2026-09-01;CEO\n")
    with pytest.raises(ContractError, match=r"separated by ';'.*--sep"):
        validate_leads(path, require_outcome=False, options={"sep": ","})


def test_an_event_of_an_unreadable_lead_row_says_it_may_be_that_row(tmp_path):
    """A leads row with a wrong field count has no id to link its events to: they are not found, and the
    reason says the leads file had unreadable rows (and how many), not only "not found"."""
    leads_path = _write(tmp_path / "l.csv", "lead_id,created_at,title\nL1,2026-09-01,CEO\nL2,2026-09-02,CTO,oops\n")
    leads, lead_rejects, _ = validate_leads(leads_path, require_outcome=False)
    ev = _write(tmp_path / "e.csv", "lead_id,timestamp,event_type\nL1,2026-09-03,web_visit\nL2,2026-09-03,web_visit\n")
    rejects, report = validate_events(ev, leads, lead_rejects, tmp_path / "out.parquet")
    assert report.rows_valid == 1
    assert rejects[["row", "lead_id", "reason"]].values.tolist() == [
        [2, "L2", "lead_id not found in the leads file (1 row of the leads file could not be read: it may be that one)"]]


def test_quoted_newlines_are_kept_and_rows_counted_as_records(tmp_path):
    path = _write(tmp_path / "l.csv", 'lead_id,created_at,title\nL1,2026-09-01,"Head of\nSales"\nL2,2026-09-02,x,y\n'
                                      'L3,2026-09-03,CEO\n')
    leads, rejects, _ = validate_leads(path, require_outcome=False)
    assert leads["title"].iloc[0] == "Head of\nSales" and list(leads["lead_id"]) == ["L1", "L3"]
    assert rejects[["row", "reason"]].values.tolist() == [[2, "4 fields, header has 3"]]


def test_a_long_quoted_field_is_read_whole_in_leads_and_events(tmp_path):
    # A notes field of several MB (with separators and line breaks inside its quotes) is one value: the
    # reader's buffer is sized for records up to reader.MAX_LINE_BYTES, not for the default 2 MB.
    from leadscore.reader import MAX_LINE_BYTES

    note = ("call back, maybe\n" * 250_000)[: 3_500_000]
    assert 2_097_152 < len(note) < MAX_LINE_BYTES
    path = _write(tmp_path / "l.csv", f'lead_id,created_at,notes\nL1,2026-09-01,"{note}"\nL2,2026-09-02,short\n')
    leads, rejects, _ = validate_leads(path, require_outcome=False)
    assert rejects.empty and list(leads["lead_id"]) == ["L1", "L2"]
    ev = _write(tmp_path / "e.csv", f'lead_id,timestamp,event_type,asset\nL1,2026-09-03,web_visit,"{note}"\n'
                                    f'L2,2026-09-04,web_visit,/pricing\n')
    ev_rejects, report = validate_events(ev, leads, rejects, tmp_path / "ev.parquet")
    out = pd.read_parquet(tmp_path / "ev.parquet")
    assert ev_rejects.empty and report.rows_valid == 2
    assert out["asset"].str.len().tolist() == [len(note.strip()), len("/pricing")]


def _big(rows: list[str], encoding: str, newline: str = "\n") -> bytes:
    data = (newline.join(rows) + newline).encode(encoding)
    assert len(data) > 1 << 20  # past the sniffed sample (1 MiB)
    return data


def test_a_windows_1252_file_whose_first_accent_comes_after_the_sample_is_read_whole(tmp_path):
    # The first MiB is plain ASCII (valid UTF-8): the rest of the file decides. Every row is read, with its
    # accents (not dropped without a reject, exit 0, as before).
    rows = ["lead_id,created_at,title"] + [f"L{i},2026-09-01,Manager" for i in range(60000)]
    rows[55001] = "L55000,2026-09-01,Directeur Général"
    path = tmp_path / "late.csv"
    path.write_bytes(_big(rows, "cp1252"))
    leads, rejects, report = validate_leads(path, require_outcome=False)
    assert len(leads) == 60000 and rejects.empty and report.read["encoding"] == "windows-1252"
    assert leads.loc[leads["lead_id"] == "L55000", "title"].tolist() == ["Directeur Général"]


@pytest.mark.parametrize("where", [700_000, 1_500_000])  # inside the sniffed sample, after it
def test_a_damaged_byte_in_utf8_text_rejects_its_row_and_garbles_nothing(tmp_path, where):
    rows = ["lead_id,timestamp,event_type,asset"] + [f"L{i % 100},2026-09-01,web_visit,/päge" for i in range(60000)]
    data = _big(rows, "utf-8")
    at = data.index(b"\nL0,", where) + 1
    line = data[at:data.index(b"\n", at)]
    data = data[:at + 25] + b"\xff" + data[at + 25:]
    (tmp_path / "e.csv").write_bytes(data)
    row = data[:at].count(b"\n")  # the damaged record's data row number
    leads = pd.DataFrame({"lead_id": [f"L{i}" for i in range(100)]})
    rejects, report = validate_events(tmp_path / "e.csv", leads, leads.iloc[:0], tmp_path / "out.parquet")
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert report.read["encoding"] == "utf-8" and line.startswith(b"L0,")
    assert rejects[["row"]].values.ravel().tolist() == [row] and "not valid utf-8" in rejects["reason"].iloc[0]
    assert report.rows_valid == 59999 and out["asset"].unique().tolist() == ["/päge"]
    # the same for a leads table: the damaged row is a reject with its row number, not a lost row
    lead_rows = ["lead_id,created_at,title"] + [f"L{i},2026-09-01,Gérant" for i in range(60000)]
    ldata = _big(lead_rows, "utf-8")
    at = ldata.index(b"\nL55000,") + 1
    (tmp_path / "l.csv").write_bytes(ldata[:at + 20] + b"\xff" + ldata[at + 20:])
    valid, lead_rejects, lead_report = validate_leads(tmp_path / "l.csv", require_outcome=False)
    assert len(valid) == 59999 and lead_rejects["row"].tolist() == [55001] and lead_report.rows_in == 60000
    assert (valid["title"] == "Gérant").all()


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16"])
def test_utf16_files_larger_than_the_sample_are_read(tmp_path, encoding):
    # Excel's "Unicode text": cutting the sample at a newline byte split a two-byte character
    rows = ["lead_id\tcreated_at\ttitle"] + [f"L{i}\t2026-09-01\tGérant {i}" for i in range(40000)]
    (tmp_path / "u.txt").write_bytes(_big(rows, encoding, "\r\n"))
    leads, rejects, report = validate_leads(tmp_path / "u.txt", require_outcome=False)
    assert len(leads) == 40000 and rejects.empty and report.read["sep"] == "\t"
    assert leads["title"].iloc[-1] == "Gérant 39999"


def test_a_row_with_empty_extra_fields_after_a_multi_line_note_is_rejected_not_shifted(tmp_path):
    # DuckDB's parallel reader cannot pad rows after a quoted line break: the check then runs on one thread
    path = _write(tmp_path / "l.csv", 'lead_id,created_at,outcome,outcome_at,title,industry,country\n'
                                      'L1,2025-01-01,open,,"CEO\nof",Retail,France\n'
                                      'L3,2025-01-03,open,,VP, Sales,Software,,\n'
                                      'L4,2025-01-04,open,,CTO,Retail,Spain\n')
    leads, rejects, _ = validate_leads(path, require_outcome=False)
    assert leads["lead_id"].tolist() == ["L1", "L4"] and leads["title"].iloc[0] == "CEO\nof"
    assert rejects["row"].tolist() == [2] and "more fields than the header's 7" in rejects["reason"].iloc[0]


def test_valid_events_replace_what_an_earlier_run_left_at_the_output_path(tmp_path):
    # An older version wrote one file there; a run on a larger log left more parts: neither is read as data.
    leads = pd.DataFrame({"lead_id": ["L1", "L2"]})
    ev = _write(tmp_path / "e.csv", "lead_id,timestamp,event_type\nL1,2026-09-03,web_visit\nL2,2026-09-04,web_visit\n")
    out = tmp_path / "ev.parquet"
    pd.DataFrame({"lead_id": ["OLD"] * 3}).to_parquet(out)
    validate_events(ev, leads, leads.iloc[:0], out)
    assert out.is_dir() and pd.read_parquet(out)["lead_id"].tolist() == ["L1", "L2"]
    pd.DataFrame({"lead_id": ["STALE"]}).to_parquet(out / "part-00007.parquet")
    validate_events(ev, leads, leads.iloc[:0], out)
    assert sorted(p.name for p in out.iterdir()) == ["part-00000.parquet"]
    assert pd.read_parquet(out)["lead_id"].tolist() == ["L1", "L2"]


def test_priority_lists_and_exports_use_the_same_reader(tmp_path):
    path = _write(tmp_path / "p.csv", "Domain;Account ID\nhttps://www.Acme.com/about;\n;A-7\n", "utf-16")
    pri = read_priority_accounts(path)
    assert list(pri["domain"].fillna("-")) == ["acme.com", "-"] and pri["account_id"].iloc[1] == "A-7"
    table = read_export_table(path)
    assert table.dialect.sep == ";" and table.dialect.encoding == "utf-16"


def test_read_options_are_validated():
    with pytest.raises(ValueError, match="decimal"):
        ReadOptions(decimal=";")
    with pytest.raises(ValueError, match="encoding"):
        ReadOptions(encoding="klingon")


# ============================================================================ 4. numbers, empty files
def test_case_european_numbers_read_by_the_decimal_convention_or_missing_with_a_warning(tmp_path):
    leads, _, report, *_ = _leads_events("european_numbers", tmp_path)
    assert report.read["decimal"] == "," and report.read["how"]["decimal"] == "detected"
    emp = leads.set_index("lead_id")["employees"]
    rev = leads.set_index("lead_id")["annual_revenue"]
    assert emp["L1"] == 1200 and emp["L2"] == 12500 and emp["L4"] == 850 and pd.isna(emp["L3"])  # never 1.2
    assert list(rev) == [2.5e6, 2.5e6, 1.5e6, 2.5e6]
    (warning,) = [w for w in report.warning_lines() if w.startswith("employees")]
    assert "ambiguous" in warning and "rows 3" in warning


def test_a_decimal_set_in_the_options_is_trusted(tmp_path):
    path = _write(tmp_path / "l.csv", f"{LEADS_HEADER}\nL1,2026-09-01,a.de,CEO,\"1,200\",\"2,5 Mio.\"\n")
    leads, _, report = validate_leads(path, require_outcome=False, options={"decimal": "."})
    assert leads["employees"].iloc[0] == 1200 and leads["annual_revenue"].iloc[0] == 2.5e6


@pytest.mark.parametrize("text, decimal, expected", [
    ("1.200", ",", 1200.0), ("1.200", ".", None), ("1,200", ".", 1200.0), ("1,200", ",", None), ("€2,5M", ",", 2.5e6),
    ("2,5 Mio. €", ".", 2.5e6), ("1.500.000,00 €", ".", 1.5e6), ("1,234.5", ",", 1234.5), ("$1.2M", ".", 1.2e6),
    ("0.125", ".", 0.125), ("1 200", ",", 1200.0), ("1.2.3", ".", None), ("12,34,56", ".", None)])
def test_number_rule(text, decimal, expected):
    value, status = parse_amount(pd.Series([text]), decimal)
    assert (pd.isna(value[0]) and status[0] != "") if expected is None else (value[0] == expected and status[0] == "")


@pytest.mark.parametrize("text", ["inf", "Infinity", "-inf", "1e400", "NaN"])
def test_infinite_numbers_are_missing_with_a_warning(tmp_path, text):
    path = _write(tmp_path / "l.csv", f"{LEADS_HEADER}\nL1,2026-09-01,a.de,CEO,{text},10\nL2,2026-09-01,a.de,CEO,5,10\n")
    leads, _, report = validate_leads(path, require_outcome=False)
    assert pd.isna(leads["employees"].iloc[0]) and leads["employees"].iloc[1] == 5
    if text != "NaN":  # NaN is one of the contract's spellings of missing
        assert any(w.startswith("employees: not a finite number") and "rows 1" in w for w in report.warning_lines())


def test_infinite_numbers_in_parquet_and_events_are_missing(tmp_path):
    pd.DataFrame({"lead_id": ["L1"], "created_at": ["2026-09-01"], "employees": [float("inf")]}).to_parquet(
        tmp_path / "l.parquet")
    leads, _, report = validate_leads(tmp_path / "l.parquet", require_outcome=False)
    assert pd.isna(leads["employees"].iloc[0]) and report.warnings
    ev = _write(tmp_path / "e.csv", "lead_id,timestamp,event_type,duration_s\nL1,2026-09-02,web_visit,1e400\n")
    rejects, ev_report = validate_events(ev, leads, leads.iloc[:0], tmp_path / "o.parquet")
    assert rejects.empty and pd.isna(pd.read_parquet(tmp_path / "o.parquet")["duration_s"].iloc[0])
    assert ev_report.warnings == {amount_warning("duration_s", "not finite", "."): 1}  # as a lead's number


@pytest.mark.parametrize("content, message", [("", "empty \\(0 bytes\\)"), ("\n\n", "no header and no rows"),
                                              (LEADS_HEADER + "\n", "header .* but no data rows")])
def test_empty_and_header_only_files_say_so(tmp_path, content, message):
    path = _write(tmp_path / "l.csv", content)
    with pytest.raises(ContractError, match=message):
        validate_leads(path)
    leads = pd.DataFrame({"lead_id": ["L1"]})
    ev = _write(tmp_path / "e.csv", content.replace(LEADS_HEADER, "lead_id,timestamp,event_type"))
    with pytest.raises(ContractError, match=message) as raised:
        validate_events(ev, leads, leads.iloc[:0], tmp_path / "o.parquet")
    assert "omit the event log" in str(raised.value)  # an empty event log: score the leads without one


def test_header_only_parquet_says_so(tmp_path):
    pd.DataFrame({"lead_id": pd.Series(dtype=str), "created_at": pd.Series(dtype=str)}).to_parquet(tmp_path / "l.parquet")
    with pytest.raises(ContractError, match="no data rows"):
        validate_leads(tmp_path / "l.parquet")


# ============================================================================ 2. one timestamp grammar
PROBES = ["2026-09-01", "2026-09-01 10:00", "2026-09-01T10:00", "2026-09-01 10:00:00", "2026-09-01T10:00:00Z",
          "2026-09-01 10:00:00 +02:00", "2026-09-01 10:00:00+0200", "2026-09-01T10:00:00+02", "2026-09-01 10:00:00 UTC",
          "2026-09-01 10:00:00.123456", "2026-09-01T10:00:00.5-05:00", " 2026-09-01 10:00:00 ", "01.10.2026",
          "09/10/2026", "garbage", "2026-9-1", "2026-09-01 10", "20260901", "2026-02-30", "2026-09-01 25:00:00",
          "2026-09-01 10:00:00 Europe/Berlin", "10-09-26"]


def test_leads_and_events_read_every_probe_timestamp_alike():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("p", pd.DataFrame({"x": PROBES}))
    in_sql = con.sql(f"SELECT {timestamp_sql('x')} AS t FROM p").df()["t"]
    in_pandas, bad = parse_timestamp(pd.Series(PROBES))
    assert [None if pd.isna(v) else pd.Timestamp(v) for v in in_sql] == \
        [None if pd.isna(v) else pd.Timestamp(v) for v in in_pandas]
    assert in_pandas.notna().sum() == 12 and bad.sum() == len(PROBES) - 12
    assert in_pandas[5] == pd.Timestamp("2026-09-01 08:00:00")  # an offset after a space is honoured


@pytest.mark.parametrize("text", ["01.10.2026", "09/10/2026", "10-09-26"])
def test_day_month_forms_are_refused_as_ambiguous_everywhere(tmp_path, text):
    with pytest.raises(ValueError, match="ambiguous"):
        parse_moment(text, "--as-of")
    path = _write(tmp_path / "l.csv", f"lead_id,created_at\nL1,{text}\nL2,2026-09-01\n")
    _, rejects, _ = validate_leads(path, require_outcome=False, options={})
    assert "ambiguous" in rejects["reason"].iloc[0]
    leads = pd.DataFrame({"lead_id": ["L1"]})
    ev = _write(tmp_path / "e.csv", f"lead_id,timestamp,event_type\nL1,{text},web_visit\nL1,2026-09-02,web_visit\n")
    ev_rejects, _ = validate_events(ev, leads, leads.iloc[:0], tmp_path / "o.parquet")
    assert "ambiguous" in ev_rejects["reason"].iloc[0]


def test_params_and_mapping_dates_use_the_grammar():
    from leadscore.config import FeatureParams

    with pytest.raises(ValueError, match="ambiguous"):
        FeatureParams(export_at="01.10.2026")
    assert FeatureParams(export_at="2026-10-01 12:00 +02:00").export_at
    with pytest.raises(ValueError, match="ambiguous"):
        ExportMapping.model_validate({"id_column": "Id", "time": {"order_by": "n", "start": "01.01.2025",
                                                                  "end": "2025-12-31"}})


def test_as_of_is_parsed_by_the_grammar():
    assert parse_moment("2026-10-01T02:00:00+02:00") == pd.Timestamp("2026-10-01 00:00:00")
    with pytest.raises(ValueError, match="not a readable timestamp"):
        parse_moment("garbage", "--as-of")


# ============================================================================ 3. one id rule, emails and domains
def test_case_float_ids_match_their_events(tmp_path):
    leads, lead_rejects, _, ev_rejects, _, events = _leads_events("float_ids", tmp_path)
    assert list(leads["lead_id"]) == ["17", "18", "20"]
    assert lead_rejects["reason"].tolist() == ["lead_id is missing"]
    assert ev_rejects.empty and list(events["lead_id"]) == ["17", "17", "20"]


def test_float_ids_in_parquet_and_fractions_never_rounded_onto_another_lead(tmp_path):
    pd.DataFrame({"lead_id": [15.0, 16.0, 15.5], "created_at": ["2026-09-01"] * 3}).to_parquet(tmp_path / "l.parquet")
    leads, rejects, _ = validate_leads(tmp_path / "l.parquet", require_outcome=False)
    assert list(leads["lead_id"]) == ["15", "16"] and "fraction" in rejects["reason"].iloc[0]
    pd.DataFrame({"lead_id": [15.5, 16.5, 16.0, 15.0], "timestamp": pd.to_datetime(["2026-09-02"] * 4),
                  "event_type": ["web_visit"] * 4}).to_parquet(tmp_path / "e.parquet")
    ev_rejects, report = validate_events(tmp_path / "e.parquet", leads, rejects, tmp_path / "o.parquet")
    assert ev_rejects["row"].tolist() == [1, 2] and ev_rejects["reason"].str.contains("fraction").all()
    assert sorted(pd.read_parquet(tmp_path / "o.parquet")["lead_id"]) == ["15", "16"]
    csv_ev = _write(tmp_path / "e.csv", "lead_id,timestamp,event_type\n15.5,2026-09-02,web_visit\n16.0,2026-09-02,web_visit\n")
    ev_rejects, _ = validate_events(csv_ev, leads, rejects, tmp_path / "o2.parquet")
    assert ev_rejects["row"].tolist() == [1] and "fraction" in ev_rejects["reason"].iloc[0]


def test_salesforce_15_and_18_character_ids_of_one_record_match(tmp_path):
    ids = pd.Series(["001A0000006Vm9r", "001A0000006Vm9rIAC", "001A0000006Vm9rIAD", " 17.00 ", "abc"])
    norm, bad = normalise_ids(ids)
    assert norm.tolist() == ["001A0000006Vm9r", "001A0000006Vm9r", "001A0000006Vm9rIAD", "17", "abc"] and not bad.any()
    con = duckdb.connect()
    con.register("i", pd.DataFrame({"x": ids}))
    nid, _ = id_sql("x")
    assert con.sql(f"SELECT {nid} FROM i").fetchall() == [(v,) for v in norm]
    path = _write(tmp_path / "l.csv", "lead_id,created_at\n001A0000006Vm9rIAC,2026-09-01\n")
    leads, _, _ = validate_leads(path, require_outcome=False)
    ev = _write(tmp_path / "e.csv", "lead_id,timestamp,event_type\n001A0000006Vm9r,2026-09-02,web_visit\n")
    ev_rejects, _ = validate_events(ev, leads, leads.iloc[:0], tmp_path / "o.parquet")
    assert ev_rejects.empty


def test_two_columns_meaning_lead_id_are_refused(tmp_path):
    with pytest.raises(ContractError, match="both mean 'lead_id'"):
        validate_leads(_write(tmp_path / "l.csv", "Lead ID,lead_id,created_at\nA,B,2026-09-01\n"))
    with pytest.raises(ContractError, match="more than once"):
        validate_leads(_write(tmp_path / "l2.csv", "lead_id,lead_id,created_at\nA,B,2026-09-01\n"))


def test_emails_and_domains_are_normalised_one_way_and_unmatched_priority_entries_reported(tmp_path):
    values = pd.Series(['"Ann Lee" <Ann@ACME.com>', "https://www.Acme.com/about/", "acme.com.", "WWW.ACME.COM:8080",
                        "mailto:bob@acme.com"])
    assert normalise_domains(values).tolist() == ["acme.com"] * 5
    path = _write(tmp_path / "l.csv", 'lead_id,created_at,email_domain\nL1,2026-09-01,"""Ann Lee"" <Ann@ACME.com>"\n')
    leads, _, _ = validate_leads(path, require_outcome=False)
    assert leads["email_domain"].iloc[0] == "acme.com"
    pri = read_priority_accounts(_write(tmp_path / "p.csv", "domain\nhttps://www.acme.com/\nglobex.com\n"))
    assert unmatched_priority(pri, leads)["domain"].tolist() == ["globex.com"]



def test_priority_entries_with_a_blank_column_match_by_the_other_and_blanks_match_nothing(tmp_path):
    leads = pd.DataFrame({"account_id": pd.array(["A1", None, "A3"], dtype="string"),
                          "email_domain": pd.array([None, "acme.com", None], dtype="string")})
    pri = read_priority_accounts(_write(tmp_path / "p.csv", "account_id,domain\nA1,\n,www.acme.com\nA9,\n,\n,globex.com\n"))
    got = unmatched_priority(pri, leads)
    # A1 by id, acme.com by domain; A9 and globex.com match no lead (a blank never matches a blank); the
    # ',' line is a blank line: skipped, and its row kept for the job's warning
    assert pri.attrs["empty_rows"] == [4] and len(pri) == 4
    assert len(got) == 2 and sorted(got["account_id"].fillna("").tolist()) == ["", "A9"]
    assert sorted(got["domain"].fillna("").tolist()) == ["", "globex.com"]
    assert unmatched_priority(pri, leads[["email_domain"]]).shape[0] == 3  # no account_id column: ids match nothing

@pytest.mark.parametrize("text", ["account_id,domain\n", "account_id,domain\r\n", "domain\n"])
def test_a_header_only_priority_list_means_no_priority_accounts(tmp_path, text):
    # README: "without a priority list, point data.priority_accounts at a CSV holding just the header"
    pri = read_priority_accounts(_write(tmp_path / "p.csv", text))
    assert pri.empty and list(pri.columns) == ["account_id", "domain"]
    empty_leads = pd.DataFrame({"account_id": ["a"], "email_domain": ["acme.com"]})
    assert unmatched_priority(pri, empty_leads).empty


def test_score_with_a_header_only_priority_list_scores_every_lead(model, tmp_path):
    pri = _write(tmp_path / "p.csv", "account_id,domain\n")
    result = _score(model, "float_ids", tmp_path / "out.csv", "--priority-accounts", str(pri),
                    "--max-reject-share", "0.5")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "out.csv")) > 0


# ============================================================================ 7. mappings
def _export_csv(tmp_path, text, name="export.csv"):
    return _write(tmp_path / name, text)


def test_mapping_reads_a_semicolon_file_with_row_numbers_as_ids_and_time_order(tmp_path):
    path = _export_csv(tmp_path, "Plan;Visits;Converted\n2;3;1\n1;0;0\n3;;0\n")
    m = ExportMapping.model_validate({"id_column": "@row", "time": {"order_by": "@row", "start": "2025-01-01",
                                                                      "end": "2025-01-03", "decision_days": 10},
                                      "read": {"sep": ";"}, "outcome": {"column": "Converted", "won": ["1"], "lost": ["0"]},
                                      "extra_fit": ["Plan"], "extra_behavior": ["Visits"], "categorical": ["Plan"]})
    mapped, report = apply_mapping(read_export_table(path, m.read), m, str(path))
    assert mapped["lead_id"].tolist() == ["1", "2", "3"]
    assert mapped["created_at"].tolist() == [pd.Timestamp(f"2025-01-0{d}") for d in (1, 2, 3)]
    kinds = {e.name: e.kind for e in report.extras}
    assert kinds == {"x_plan": "categorical", "x_visits": "numeric"}


def test_mapping_placeholders_per_column(tmp_path):
    raw = pd.DataFrame({"Id": ["a", "b"], "Created": ["2025-01-01", "2025-01-02"], "City": ["Select", "0"],
                        "Score": ["0", "Select"]})
    m = ExportMapping.model_validate({"id_column": "Id", "time": {"created_at": "Created"},
                                      "placeholders": {"*": ["Select"], "City": ["0"]},
                                      "extra_fit": ["City", "Score"]})
    mapped, report = apply_mapping(raw, m, "x.csv")
    assert mapped["x_city"].isna().all() and mapped["x_score"].tolist()[0] == 0.0
    assert report.placeholders_replaced["City"] == {"Select": 1, "0": 1}


def test_mapping_won_when_the_id_is_in_another_file(tmp_path):
    deals = _export_csv(tmp_path, "Lead;Closed On\n17.0;2025-03-01\n99;2025-03-02\n", "deals.csv")
    raw = pd.DataFrame({"Id": ["17", "18"], "Created": ["2025-01-01", "2025-01-02"]})
    m = ExportMapping.model_validate({"id_column": "Id", "time": {"created_at": "Created", "decision_days": 30},
                                      "outcome": {"won_if_id_in": {"file": str(deals), "column": "Lead", "at": "Closed On"},
                                                  "otherwise": "lost"}})
    mapped, report = apply_mapping(raw, m, "x.csv")
    assert mapped["outcome"].tolist() == ["won", "lost"]
    assert str(mapped["outcome_at"].iloc[0]).startswith("2025-03-01")
    assert any("1 ids of" in w for w in report.warnings)  # 99 matches no lead


def test_mapping_outcome_from_a_stage_name_with_a_date():
    raw = pd.DataFrame({"Id": ["a", "b", "c"], "Created": ["2025-01-01"] * 3,
                        "Stage": ["Closed Won 2025-03-04", "Closed Lost (2025-02-01)", "Negotiation"]})
    m = ExportMapping.model_validate({"id_column": "Id", "time": {"created_at": "Created"},
                                      "outcome": {"column": "Stage", "won": ["Closed Won"], "lost": ["Closed Lost"],
                                                  "open": ["Negotiation"], "date_in_value": True}})
    mapped, _ = apply_mapping(raw, m, "x.csv")
    assert mapped["outcome"].tolist() == ["won", "lost", "open"]
    assert mapped["outcome_at"].tolist()[:2] == ["2025-03-04", "2025-02-01"]


def test_mapping_order_by_text_is_refused_unless_declared():
    raw = pd.DataFrame({"Id": ["a", "b"], "Ref": ["B-2", "A-1"]})
    spec = {"id_column": "Id", "time": {"order_by": "Ref", "start": "2025-01-01", "end": "2025-02-01"}}
    with pytest.raises(ContractError, match="order_by_text"):
        apply_mapping(raw, ExportMapping.model_validate(spec), "x.csv")
    spec["time"]["order_by_text"] = True
    mapped, _ = apply_mapping(raw, ExportMapping.model_validate(spec), "x.csv")
    assert mapped["created_at"].iloc[1] < mapped["created_at"].iloc[0]


def test_a_mapped_export_is_scored_without_outcome_and_after_contact_columns():
    raw = pd.DataFrame({"Id": ["a", "b"], "n": ["1", "2"], "Visits": ["3", "4"]})
    m = ExportMapping.model_validate({"id_column": "Id", "time": {"order_by": "n", "start": "2025-01-01",
                                                                   "end": "2025-02-01", "decision_days": 10},
                                      "outcome": {"column": "Converted", "won": ["1"], "lost": ["0"]},
                                      "extra_behavior": ["Visits"], "after_sales_contact": ["Tags"]})
    with pytest.raises(ContractError, match="Converted"):
        apply_mapping(raw, m, "x.csv")
    mapped, report = apply_mapping(raw, m, "x.csv", scoring=True, as_of="2026-10-01")
    assert "outcome" not in mapped and (mapped["created_at"] == pd.Timestamp("2026-10-01") - pd.Timedelta(microseconds=1)).all()  # just before as_of
    assert mapped["x_visits"].tolist() == [3.0, 4.0] and "as_of" in report.time


@pytest.mark.parametrize("text, message", [("id_column: [unclosed", "not valid YAML"), ("- a\n- b", "dictionary"),
                                           ("id_column: Id\ntime: {created_at: C}\nbogus: 1", "bogus")])
def test_mapping_yaml_errors_are_contract_errors_and_exit_3(tmp_path, text, message):
    path = _write(tmp_path / "m.yaml", text)
    with pytest.raises(ContractError, match=message):
        load_mapping(path)
    params = _write(tmp_path / "params.yaml", f"data:\n  leads: {CASES / 'semicolon' / 'leads.csv'}\n  events: null\n"
                                              f"  priority_accounts: null\n  mapping: {path}\n")
    result = CliRunner().invoke(app, ["validate", "--params", str(params), "--out", str(tmp_path / "v")])
    assert result.exit_code == 3 and "Traceback" not in result.output


def test_validate_reports_how_every_file_was_read(tmp_path):
    leads = _write(tmp_path / "l.csv", "lead_id;created_at;outcome;outcome_at\nL1;2026-09-01 10:00:00;won;2026-09-20\n"
                                       "L2;2026-09-05 12:00:00;;\n")
    params = _write(tmp_path / "params.yaml", f"data:\n  leads: {leads}\n"
                                              f"  events: {CASES / 'semicolon' / 'events.csv'}\n  priority_accounts: null\n")
    result = CliRunner().invoke(app, ["validate", "--params", str(params), "--out", str(tmp_path / "v")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    assert [f["read"]["sep"] for f in report["files"]] == [";", ";"]


# ============================================================================ 6. batch scoring: end to end
@pytest.fixture(scope="module")
def model(trained):
    return trained["tmp"] / "models" / "scorer.joblib"


def _score(model, case, out, *extra):
    return CliRunner().invoke(app, ["score", "--model", str(model), "--as-of", AS_OF, "--leads",
                                    str(CASES / case / "leads.csv"), "--events", str(CASES / case / "events.csv"),
                                    "--out", str(out), *extra])


@pytest.mark.parametrize("case", ["trailing_delimiter", "semicolon", "utf16", "cp1252", "european_numbers", "float_ids"])
def test_cases_score_with_exit_0_and_report_how_they_were_read(model, tmp_path, case):
    result = _score(model, case, tmp_path / "out.csv", "--max-reject-share", "0.5")
    assert result.exit_code == 0, result.output
    assert "read " in result.output and "separator" in result.output
    out = pd.read_csv(tmp_path / "out.csv", dtype={"lead_id": str})
    n_leads = len(read_table(CASES / case / "leads.csv").frame)
    assert len(out) + len(pd.read_csv(tmp_path / "out.rejects.csv").query("column != 'timestamp'")) >= n_leads - 1


def test_case_trailing_delimiter_scores_like_the_file_without(model, tmp_path):
    src = (CASES / "trailing_delimiter" / "leads.csv").read_text()
    plain = _write(tmp_path / "plain.csv", "\n".join(line.rstrip(",") for line in src.splitlines()) + "\n")
    scorer = joblib.load(model)
    a = score_leads(scorer, CASES / "trailing_delimiter" / "leads.csv", CASES / "trailing_delimiter" / "events.csv",
                    tmp_path / "a.parquet", as_of=AS_OF)
    b = score_leads(scorer, plain, CASES / "trailing_delimiter" / "events.csv", tmp_path / "b.parquet", as_of=AS_OF)
    cols = ["lead_id", "probability", "points", "reasons"]
    pd.testing.assert_frame_equal(pd.read_parquet(a.output)[cols], pd.read_parquet(b.output)[cols])
    assert a.scored == 3 and a.events_rejected == 0


def test_case_malformed_row_event_rejects_are_counted_printed_and_written(model, tmp_path):
    result = _score(model, "malformed_row", tmp_path / "out.csv", "--max-reject-share", "0.5")
    assert result.exit_code == 0, result.output
    assert "event rejected: 7 fields, header has 6: 1" in result.output
    rejects = pd.read_csv(tmp_path / "out.rejects.csv")
    assert rejects.query("reason == '7 fields, header has 6'")["row"].tolist() == [2]


def test_too_many_rejected_events_fail_the_job_with_exit_4(model, tmp_path):
    ev = _write(tmp_path / "e.csv", "lead_id,timestamp,event_type\n" + "L9,2026-09-02,web_visit\n" * 9
                + "L1,2026-09-02,web_visit\n")
    (tmp_path / "out.csv").write_text("previous\n")
    result = CliRunner().invoke(app, ["score", "--model", str(model), "--as-of", AS_OF, "--leads",
                                      str(CASES / "as_of_formats" / "leads.csv"), "--events", str(ev), "--out",
                                      str(tmp_path / "out.csv")])
    assert result.exit_code == 4 and "9 of 10 events" in result.output
    assert (tmp_path / "out.csv").read_text() == "previous\n"


@pytest.mark.parametrize("as_of", ["01.10.2026", "09/10/2026", "garbage"])
def test_case_as_of_formats_refused_with_exit_2_and_the_previous_output_kept(model, tmp_path, as_of):
    out = tmp_path / "out.csv"
    out.write_text("previous\n")
    result = CliRunner().invoke(app, ["score", "--model", str(model), "--as-of", as_of, "--leads",
                                      str(CASES / "as_of_formats" / "leads.csv"), "--events",
                                      str(CASES / "as_of_formats" / "events.csv"), "--out", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert ("ambiguous" if as_of != "garbage" else "not a readable timestamp") in result.output
    assert out.read_text() == "previous\n"


def test_header_only_leads_fail_the_score_job(model, tmp_path):
    leads = _write(tmp_path / "l.csv", LEADS_HEADER + "\n")
    result = CliRunner().invoke(app, ["score", "--model", str(model), "--as-of", AS_OF, "--leads", str(leads),
                                      "--out", str(tmp_path / "out.csv")])
    assert result.exit_code == 3 and "no data rows" in result.output


def test_score_refuses_a_wrong_encoding_option_with_exit_3_and_keeps_the_previous_output(model, tmp_path):
    leads = _write(tmp_path / "l.csv", f"{LEADS_HEADER}\nL2,2026-09-01,b.fr,Directeur Général,10,5\n")
    out = tmp_path / "out.csv"
    out.write_text("previous\n")
    result = CliRunner().invoke(app, ["score", "--model", str(model), "--as-of", AS_OF, "--leads", str(leads),
                                      "--encoding", "windows-1252", "--out", str(out)])
    assert result.exit_code == 3, result.output
    assert "is UTF-8 text" in " ".join(result.output.split()) and "'Général'" in result.output
    assert out.read_text() == "previous\n"



# ============================================================================ one number grammar
NUMBER_TEXTS = ["1200", " 30 ", "-5", "1.200", "1,200", "1,234.5", "1.234,5", "12,5", "85.5", "0.5", "2,5 Mio. €",
                "$1.2M", "51-200", "10,000+", "abc", "inf", "1e400", "1e3", "45%", "", "  ", "1.500.000,00", "1,2,3"]


def _events_with_numbers(tmp_path, texts, sep=",", decimal=None):
    leads = _write(tmp_path / "leads.csv", "lead_id,created_at\nL1,2026-09-01\n")
    with open(tmp_path / "events.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=sep, quoting=csv.QUOTE_ALL)
        w.writerow(["lead_id", "timestamp", "event_type", "duration_s", "percent_watched"])
        for t in texts:
            w.writerow(["L1", "2026-09-02", "webinar_attend", t, t])
    options = {"decimal": decimal} if decimal else None
    lv, lr, _ = validate_leads(leads, require_outcome=False)
    _, report = validate_events(tmp_path / "events.csv", lv, lr, tmp_path / "ev.parquet", options=options)
    return pd.read_parquet(tmp_path / "ev.parquet"), report


@pytest.mark.parametrize("sep,decimal", [(",", None), (";", None), (";", ","), (",", ".")])
def test_event_numbers_are_read_by_the_leads_grammar(tmp_path, sep, decimal):
    """duration_s and percent_watched read '1,234.5', '1.200' (ambiguous where '.' is the decimal
    separator), '2,5 Mio. €' … exactly as a lead's employees column does (parse_amount): one grammar.
    percent_watched also takes '45%'. Every value set to missing is counted with its reason."""
    events, report = _events_with_numbers(tmp_path, NUMBER_TEXTS, sep, decimal)
    file_decimal = report.read["decimal"]
    want, status = parse_amount(pd.Series(NUMBER_TEXTS, dtype="str"), file_decimal, trusted=decimal is not None)
    got = events["duration_s"].to_numpy()
    for t, g, w_ in zip(NUMBER_TEXTS, got, want):
        assert (np.isnan(g) and (np.isnan(w_) or w_ < 0)) or g == w_, (t, g, w_)
    pct = events["percent_watched"].to_numpy()
    assert pct[NUMBER_TEXTS.index("45%")] == 45.0 and np.isnan(got[NUMBER_TEXTS.index("45%")])
    for st_, n in status.value_counts().items():  # the leads' warning, with the same count
        if st_:
            assert report.warnings[amount_warning("duration_s", st_, file_decimal)] == n, (st_, report.warnings)
    assert len(events) == len(NUMBER_TEXTS)  # no event dropped for a number


# Each text is read on its own (row by row): 10 files of up to 80 texts test as many texts as 25 of 30 would,
# with fewer validation runs (~0.7 s each).
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.from_regex(r"[+-]?[0-9]{1,7}([.,][0-9]{1,4}){0,3}( ?(k|M|Mio\\.|%))?", fullmatch=True),
                      min_size=1, max_size=80))
def test_any_number_text_reads_the_same_in_events_as_in_leads(tmp_path, texts):
    events, report = _events_with_numbers(tmp_path, texts)
    want, _ = parse_amount(pd.Series(texts, dtype="str"), report.read["decimal"])
    got = events["duration_s"].to_numpy()
    for t, g, w_ in zip(texts, got, want):
        assert (np.isnan(g) and (np.isnan(w_) or w_ < 0)) or g == w_, (t, g, w_)



def test_a_spreadsheet_serial_date_is_rejected_with_the_hint_to_export_it_as_a_date(tmp_path):
    """Excel writes 45766.2167 for 2025-04-19 05:12 when a date column is not formatted as a date: refused
    like any other form (never guessed), with the reason that says what it is, in leads and in events."""
    leads = _write(tmp_path / "l.csv", "lead_id,created_at\nL1,45766.2167\nL2,2025-04-19\nL3,12345\n")
    valid, rejects, _ = validate_leads(leads, require_outcome=False)
    assert list(valid["lead_id"]) == ["L2"]
    reason = rejects.set_index("row")["reason"]
    assert "serial date number" in reason[1] and "ISO 8601" in reason[1]
    assert "serial date number" not in reason[3] and "not a readable timestamp" in reason[3]  # 12345: not a date
    events = _write(tmp_path / "e.csv", "lead_id,timestamp,event_type\nL2,45767,web_visit\nL2,2025-04-20,web_visit\n")
    ev_rejects, _ = validate_events(events, valid, rejects, tmp_path / "ev.parquet")
    assert len(ev_rejects) == 1 and "serial date number" in ev_rejects["reason"].iloc[0]
    assert "serial date number" in timestamp_problem("45766.2167")  # the --as-of and params message


@pytest.mark.parametrize("name, header, meant", [
    ("title", "Job Title", True), ("title", "JobTitle", True), ("title", "State", False), ("title", "Title Notes", False),
    ("country", "County", False), ("country", "Country/Region", True), ("lead_source", "Lead Score", False),
    ("lead_source", "Lead Status", False), ("lead_source", "Original Lead Source", True),
    ("employees", "Employee ID", False), ("employees", "No. of Employees", True), ("employees", "Employees Range", True),
    ("employees", "NumberOfEmployees", True), ("employees", "Company Size", True),
    ("annual_revenue", "Annual Revenue Currency", False), ("email_domain", "Email", True),
    ("email_domain", "Email Domain Name", True), ("email_domain", "Email Opt Out", False)])
def test_a_crm_header_is_taken_for_a_contract_column_only_when_it_names_it(name, header, meant):
    """A rename ('Job Title', 'No. of Employees', Salesforce's 'NumberOfEmployees', HubSpot's 'Email') is found;
    a header that only looks alike ('Title Notes', 'Employee ID', 'Lead Score', 'County') is another column."""
    from leadscore.contract import closest_column

    assert (closest_column(name, ["lead_id", "created_at", header]) == header) is meant



def test_a_priority_row_with_a_field_too_many_is_rejected_with_its_row_not_dropped(tmp_path):
    pri = read_priority_accounts(_write(tmp_path / "p.csv", "account_id,domain\nA1,acme.com,Tier 1\nA2,globex.com\n"))
    assert pri["account_id"].tolist() == ["A2"]
    from leadscore.contract import priority_rejects

    refused = priority_rejects(pri, tmp_path / "p.csv")
    assert refused[["row", "column"]].values.tolist() == [[1, "(row)"]] and "3 fields" in refused["reason"].iloc[0]
    pri.to_parquet(tmp_path / "p.parquet")  # what the pipeline writes: the notes travel as plain values
