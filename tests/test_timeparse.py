"""One grammar for moments (`leadscore.contract.parse_moment` for one value, `parse_timestamp` for a column, the
same rule in DuckDB for the data): ISO 8601 accepted in its common forms, ambiguous and unreadable text refused."""

import re

import pandas as pd
import pytest

from leadscore.contract import parse_moment, parse_timestamp as parse_moments

ACCEPTED = {
    "2026-10-01": "2026-10-01 00:00:00",
    "2026-10-01T00:00": "2026-10-01 00:00:00",
    "2026-10-01 14:05": "2026-10-01 14:05:00",
    "2026-10-01T14:05:09": "2026-10-01 14:05:09",
    "2026-10-01 14:05:09.25": "2026-10-01 14:05:09.250000",
    "2026-10-01T14:05:00 UTC": "2026-10-01 14:05:00",
    "2026-10-01T14:05:00Z": "2026-10-01 14:05:00",
    "2026-10-01T14:05:00+02:00": "2026-10-01 12:05:00",
    "2026-10-01 14:05:00 +02:00": "2026-10-01 12:05:00",
    "2026-10-01 14:05:00 -0530": "2026-10-01 19:35:00",
    "2026-10-01T01:00+02": "2026-09-30 23:00:00",
    "2026-10-01 14:05:00.5 Z": "2026-10-01 14:05:00.500000",
    "  2026-10-01T00:00  ": "2026-10-01 00:00:00",
}
REFUSED = ["01.10.2026", "09/10/2026", "10/09/2026 10:00", "1.10.26", "garbage", "", "   ", "2026-13-01",
           "2026-02-30", "2026-10-01T25:00", "2026-10-01T14:05:00+25:00", "2026/10/01", "20261001", "2026-10-01Z",
           "2026-10-01T14", "Oct 1 2026", "2026-10-01  14:05"]


@pytest.mark.parametrize("text,expected", ACCEPTED.items())
def test_iso_forms_are_read_as_naive_utc(text, expected):
    assert parse_moment(text) == pd.Timestamp(expected)


@pytest.mark.parametrize("text", REFUSED)
def test_ambiguous_and_unreadable_moments_are_refused_naming_the_accepted_forms(text):
    with pytest.raises(ValueError, match="ISO 8601|readable") as err:
        parse_moment(text)
    if re.match(r"\d{1,2}[./]", text):
        assert "ambiguous" in str(err.value)


def test_timestamps_pass_through_as_naive_utc():
    assert parse_moment(pd.Timestamp("2026-10-01 14:00", tz="Europe/Berlin")) == pd.Timestamp("2026-10-01 12:00")
    assert parse_moment(pd.Timestamp("2026-10-01 14:00")) == pd.Timestamp("2026-10-01 14:00")


def test_the_column_version_follows_the_same_grammar():
    texts = list(ACCEPTED) + REFUSED + [None]
    parsed, refused = parse_moments(pd.Series(texts, dtype=object))
    for text, value, bad in zip(texts, parsed, refused):
        if text in ACCEPTED:
            assert value == pd.Timestamp(ACCEPTED[text]) and not bad, text
        else:
            assert pd.isna(value), text
            assert bad == bool(text and text.strip()), text
    assert str(parsed.dtype) == "datetime64[us]"
