"""One grammar for moments given as text: ``--as-of``, params, mappings and (vectorised) data columns.

Accepted, ISO 8601 only:

* a date: ``2026-10-01`` (midnight);
* a date and a time, separated by ``T`` or one space: ``2026-10-01 14:05``, ``2026-10-01T14:05:09``,
  with optional fractional seconds (``.`` or ``,``, up to 9 digits; kept to the microsecond, the data's
  resolution): ``2026-10-01T14:05:09.250``;
* after a time, an optional offset, directly or after one space: ``Z``, ``+02:00``, ``-0530``, ``+02``:
  ``2026-10-01T14:05:00Z``, ``2026-10-01 14:05:00 +02:00``.

A moment with an offset is converted to UTC; one without is taken as UTC already (the data's
convention). Everything else is refused with a :class:`ValueError` naming the accepted forms, in
particular day/month orders such as ``01.10.2026`` or ``09/10/2026``: whether they mean 1 October or
10 January depends on the country of whoever typed them, and a guess is a silently wrong score.
"""

from __future__ import annotations

import re

import pandas as pd

# year-month-day [T|space hour:minute [:second [.fraction]] [space? offset]]
MOMENT_PATTERN = (r"(?P<date>\d{4}-\d{2}-\d{2})"
                  r"(?:[T ](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?"
                  r"(?: ?(?P<offset>Z|[+-]\d{2}(?::?\d{2})?))?)?")
_MOMENT = re.compile(MOMENT_PATTERN + r"\Z")

ACCEPTED_FORMS = ("ISO 8601: 2026-10-01, 2026-10-01 14:05, 2026-10-01T14:05:09, 2026-10-01T14:05:09.250, "
                  "2026-10-01T14:05:00Z or 2026-10-01 14:05:00+02:00 (offset also after a space)")


def _refuse(text: str, why: str = "") -> ValueError:
    hint = ""
    if re.fullmatch(r"\s*\d{1,2}[./-]\d{1,2}[./-]\d{2,4}.*", text):
        hint = " Day/month orders such as 01.10.2026 or 09/10/2026 are ambiguous (1 October or 10 January?) and refused."
    return ValueError(f"{text!r} is not a moment leadscore reads{': ' + why if why else ''}. Accepted: "
                      f"{ACCEPTED_FORMS}.{hint}")


def _offset_minutes(offset: str) -> int:
    if offset == "Z":
        return 0
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset {offset} is out of range")
    return sign * (hours * 60 + minutes)


def parse_moment(text) -> pd.Timestamp:
    """A moment as a naive UTC :class:`pandas.Timestamp` (microsecond resolution), or a ValueError that
    names the accepted forms. A ``datetime``/``Timestamp`` passes through (converted to naive UTC)."""
    if isinstance(text, pd.Timestamp) or hasattr(text, "tzinfo") and not isinstance(text, str):
        ts = pd.Timestamp(text)
        return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts).floor("us")
    if not isinstance(text, str):
        raise _refuse(str(text), "not text")
    s = text.strip()
    m = _MOMENT.match(s)
    if not s or m is None:
        raise _refuse(text)
    g = m.groupdict()
    fraction = (g["fraction"] or "").ljust(6, "0")[:6]
    try:
        year, month, day = (int(x) for x in g["date"].split("-"))
        ts = pd.Timestamp(year=year, month=month, day=day, hour=int(g["hour"] or 0), minute=int(g["minute"] or 0),
                          second=int(g["second"] or 0), microsecond=int(fraction or 0))
        if g["offset"]:
            ts = ts - pd.Timedelta(minutes=_offset_minutes(g["offset"]))
    except (ValueError, OverflowError) as exc:
        raise _refuse(text, str(exc)) from None
    return ts


def parse_moments(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The same grammar over a column: (naive UTC datetime64[us], mask of present-but-refused values).
    Blank and missing values are missing, not refused."""
    s = values.astype("string").str.strip()
    present = s.notna() & (s != "")
    parts = s.str.extract("^" + MOMENT_PATTERN + "$")
    fraction = parts["fraction"].fillna("").str.ljust(6, "0").str[:6].replace("", "000000")
    canonical = (parts["date"] + "T" + parts["hour"].fillna("00") + ":" + parts["minute"].fillna("00") + ":"
                 + parts["second"].fillna("00") + "." + fraction)
    ts = pd.to_datetime(canonical, format="%Y-%m-%dT%H:%M:%S.%f", errors="coerce")
    off = parts["offset"].fillna("Z")
    sign = off.str[0].map({"+": 1, "-": -1}).fillna(0)
    digits = off.str[1:].str.replace(":", "", regex=False)
    hours = pd.to_numeric(digits.str[:2], errors="coerce").fillna(0)
    minutes = pd.to_numeric(digits.str[2:4].replace("", "0"), errors="coerce").fillna(0)
    bad_offset = (hours > 23) | (minutes > 59)
    ts = ts - pd.to_timedelta(sign * (hours * 60 + minutes), unit="min")
    ts = ts.where(~bad_offset).astype("datetime64[us]")
    return ts, present & ts.isna()
