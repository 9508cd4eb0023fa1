"""The data contract: what a leads table, an event log and a priority-account list must look like.

Validation never loses a row silently. Structural problems (a missing column, an unreadable file)
raise :class:`ContractError` naming the file and column. Row problems (a duplicate lead id, an
unparseable timestamp, an event of an unknown type or for an unknown lead, ...) send the row to the
rejects table with its reason; a file whose rejected share passes ``max_reject_share`` raises
:class:`ContractError` with the counts and example rows. Optional attributes that cannot be read
(``employees = "lots"``) are set to missing and counted as warnings: the lead is still scored.

Row numbers in messages and rejects are 1-based data rows, the header not counted (CSV line = row + 1).

The leads table is checked with a pandera schema; the event log, which can hold hundreds of millions
of rows, is checked with the equivalent SQL in DuckDB, reading the file directly.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa

from leadscore.vocabulary import EVENT_TYPE_NAMES, OUTCOMES

LEAD_COLUMNS = {  # name: (kind, required)
    "lead_id": ("id", True),
    "created_at": ("timestamp", True),
    "account_id": ("text", False),
    "email_domain": ("text", False),
    "title": ("text", False),
    "industry": ("text", False),
    "employees": ("amount", False),
    "annual_revenue": ("amount", False),
    "country": ("text", False),
    "lead_source": ("text", False),
    "outcome": ("outcome", False),
    "outcome_at": ("timestamp", False),
}
EVENT_COLUMNS = {
    "lead_id": ("id", True),
    "timestamp": ("timestamp", True),
    "event_type": ("event_type", True),
    "asset": ("text", False),
    "duration_s": ("amount", False),
    "percent_watched": ("amount", False),
}
REJECT_COLUMNS = ["file", "row", "lead_id", "column", "reason", "value"]
# Text that CRMs and spreadsheets write for "no value".
NULL_STRINGS = ("", "NULL", "null", "Null", "N/A", "n/a", "NA", "#N/A", "None", "none", "NaN", "nan", "-")
EXAMPLES = 5


class ContractError(ValueError):
    """Input that breaks the data contract; the message says what to fix and where."""


@dataclass
class FileReport:
    """What validation did to one file: rows in = rows valid + rows rejected, always."""

    file: str
    rows_in: int = 0
    rows_valid: int = 0
    rows_rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)  # values set to missing, by reason
    columns_added: list[str] = field(default_factory=list)  # optional columns absent from the input

    def check_reconciled(self) -> None:
        if self.rows_in != self.rows_valid + self.rows_rejected:
            raise AssertionError(f"{self.file}: {self.rows_in} rows in but {self.rows_valid} valid "
                                 f"+ {self.rows_rejected} rejected")


@dataclass
class Validated:
    leads: pd.DataFrame
    events_path: Path | None
    priority_accounts: pd.DataFrame
    rejects: pd.DataFrame
    reports: list[FileReport]


# ----------------------------------------------------------------------------- reading helpers
def _canonical(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


def _check_columns(columns, spec: dict, file: str, required_extra=()) -> dict[str, str]:
    """Map the file's column names to the contract's; raise naming every missing required column."""
    by_canon: dict[str, str] = {}
    for c in columns:
        key = _canonical(c)
        if key in by_canon and key in spec:
            raise ContractError(f"{file}: columns '{by_canon[key]}' and '{c}' both mean '{key}'; keep one of them")
        by_canon.setdefault(key, c)
    missing = [c for c, (_, req) in spec.items() if (req or c in required_extra) and c not in by_canon]
    if missing:
        hints = []
        for m in missing:
            close = difflib.get_close_matches(m, list(by_canon), n=1, cutoff=0.6)
            hints.append(f"'{m}'" + (f" (did you mean '{by_canon[close[0]]}'?)" if close else ""))
        raise ContractError(
            f"{file}: required column(s) {', '.join(hints)} missing. Found columns: "
            f"{', '.join(map(str, columns))}. Rename them to the contract's names (see README: data contract)."
        )
    return {c: by_canon[c] for c in spec if c in by_canon}


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise ContractError(f"{path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt", ".gz"):
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=list(NULL_STRINGS))
    except Exception as exc:  # unreadable file: say which, and why
        raise ContractError(f"{path}: cannot be read as {suffix[1:]}: {exc}") from exc
    raise ContractError(f"{path}: unsupported file type '{suffix}'; use CSV or Parquet")


_AMOUNT = re.compile(r"^(\d+(?:\.\d+)?)(k|m|mm|b|bn)?\+?$")
_RANGE = re.compile(r"^(\d+(?:\.\d+)?)(k|m|mm|b|bn)?(?:-|–|to)(\d+(?:\.\d+)?)(k|m|mm|b|bn)?$")
_SCALE = {None: 1.0, "": 1.0, "k": 1e3, "m": 1e6, "mm": 1e6, "b": 1e9, "bn": 1e9}


def parse_amount(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Numbers as CRMs export them: 1200, "1,200", "$1.2M", "51-200" (midpoint), "10,000+".

    Returns the parsed floats and a mask of values present but unreadable.
    """
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        out = pd.to_numeric(values, errors="coerce").astype(float)
        return out, pd.Series(False, index=values.index)
    s = values.astype("string").str.strip().str.lower().str.replace(r"[\s,$€£]", "", regex=True)
    present = s.notna() & (s != "")
    num = pd.to_numeric(s, errors="coerce")
    single = s.str.extract(_AMOUNT)
    single_v = pd.to_numeric(single[0], errors="coerce") * single[1].map(_SCALE).fillna(1.0)
    rng = s.str.extract(_RANGE)
    lo = pd.to_numeric(rng[0], errors="coerce") * rng[1].map(_SCALE).fillna(rng[3].map(_SCALE)).fillna(1.0)
    hi = pd.to_numeric(rng[2], errors="coerce") * rng[3].map(_SCALE).fillna(1.0)
    out = num.astype("Float64").fillna(single_v.astype("Float64")).fillna(((lo + hi) / 2).astype("Float64"))
    out = out.astype(float)
    return out, present & out.isna()


def parse_timestamp(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Timestamps to naive UTC; returns the parsed values and a mask of present-but-unparseable."""
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values
        if getattr(ts.dt, "tz", None) is not None:
            ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
        return ts.astype("datetime64[us]"), pd.Series(False, index=values.index)
    s = values.astype("string").str.strip()
    present = s.notna() & (s != "")
    # ISO 8601 only, as for the event log: a guessed format would read 01/02 as 2 January in one row
    # and 13/01 as 13 January in the next, silently.
    ts = pd.to_datetime(s.where(present), errors="coerce", utc=True, format="ISO8601")
    ts = ts.dt.tz_localize(None).astype("datetime64[us]")
    return ts, present & ts.isna()


# ----------------------------------------------------------------------------- leads
def _lead_checks():
    decided = ("won", "lost")
    return [
        pa.Check(lambda df: ~(df["outcome"].isin(decided) & df["outcome_at"].isna()),
                 name="outcome is won or lost but outcome_at is missing"),
        pa.Check(lambda df: ~(df["outcome_at"] < df["created_at"]).fillna(False),
                 name="outcome_at is before created_at"),
    ]


LEADS_SCHEMA = pa.DataFrameSchema(
    {
        "lead_id": pa.Column(str, nullable=False, unique=True, report_duplicates="exclude_first"),
        "created_at": pa.Column("datetime64[us]", nullable=False),
        "account_id": pa.Column(str, nullable=True),
        "email_domain": pa.Column(str, nullable=True),
        "title": pa.Column(str, nullable=True),
        "industry": pa.Column(str, nullable=True),
        "employees": pa.Column(float, pa.Check.ge(0), nullable=True),
        "annual_revenue": pa.Column(float, pa.Check.ge(0), nullable=True),
        "country": pa.Column(str, nullable=True),
        "lead_source": pa.Column(str, nullable=True),
        "outcome": pa.Column(str, pa.Check.isin(OUTCOMES), nullable=False),
        "outcome_at": pa.Column("datetime64[us]", nullable=True),
    },
    checks=_lead_checks(),
    strict=True,
    ordered=False,
    name="leads",
)

_REASONS = {
    ("lead_id", "not_nullable"): "lead_id is missing",
    ("lead_id", "field_uniqueness"): "duplicate lead_id (the first occurrence is kept)",
    ("created_at", "not_nullable"): "created_at is missing",
    ("outcome", "isin"): f"outcome is not one of {', '.join(OUTCOMES)}",
}


def _reason(column: str, check: str) -> str:
    check_name = str(check).split("(")[0]
    return _REASONS.get((column, check_name), f"{column}: fails check {check}")


# Rows parsed and checked at a time: pandera and the string parsing need several copies of what they
# check, so checking the whole table at once would make memory grow with the export several times over.
LEAD_CHUNK_ROWS = 200_000
_LEADS_ROW_SCHEMA = LEADS_SCHEMA.update_column("lead_id", unique=False)  # uniqueness is checked file-wide


def validate_leads(path: str | Path, require_outcome: bool = True,
                   chunk_rows: int = LEAD_CHUNK_ROWS) -> tuple[pd.DataFrame, pd.DataFrame, FileReport]:
    """Parse and check the leads table. Returns (valid leads, rejects, report).

    Rows are parsed and checked ``chunk_rows`` at a time; lead_id uniqueness is checked over the whole file
    (the first occurrence among the otherwise parseable rows is kept, later ones are rejected)."""
    path = Path(path)
    file = str(path)
    raw = _read_table(path)
    if raw.empty:
        raise ContractError(f"{file}: the file has no data rows")
    raw = raw.reset_index(drop=True)
    cols = _check_columns(raw.columns, LEAD_COLUMNS, file,
                          required_extra=("outcome", "outcome_at") if require_outcome else ())
    report = FileReport(file=file, rows_in=len(raw))
    extras = [c for c in raw.columns if str(c).startswith("x_")]
    parsed, parse_rejects, check_rejects, candidate_ids = [], [], [], []
    for start in range(0, len(raw), chunk_rows):
        df, unparsed, failed = _check_lead_rows(raw.iloc[start:start + chunk_rows], cols, extras, file, report)
        parsed.append(df)
        parse_rejects += unparsed
        check_rejects += failed
        unparsed_rows = pd.concat(unparsed)["row"].to_numpy() - 1 if unparsed else []
        candidate_ids.append(df["lead_id"].drop(index=unparsed_rows))
    df = pd.concat(parsed) if len(parsed) > 1 else parsed[0]
    del parsed
    candidates = pd.concat(candidate_ids)
    duplicate = candidates.notna() & candidates.duplicated(keep="first")
    duplicate_rejects = []
    if duplicate.any():
        rows = duplicate.index[duplicate]
        duplicate_rejects.append(pd.DataFrame({
            "file": file, "row": rows + 1, "lead_id": None, "column": "lead_id",
            "reason": _REASONS[("lead_id", "field_uniqueness")], "value": candidates[rows].astype("string")}))

    # One reason per rejected row, in pandera's order on the whole table: what could not be read, then
    # the checks across columns, then column checks in schema order (uniqueness with lead_id's).
    ranked = sorted(check_rejects + [(_check_rank("lead_id") + 0.5, f) for f in duplicate_rejects], key=lambda t: t[0])
    rejects = parse_rejects + [f for _, f in ranked]
    rej = pd.concat(rejects, ignore_index=True) if rejects else pd.DataFrame(columns=REJECT_COLUMNS)
    rej["lead_id"] = raw[cols["lead_id"]].astype("string").reindex(rej["row"] - 1).to_numpy()
    rej = rej.drop_duplicates(subset=["row"], keep="first").sort_values("row", kind="stable")
    valid = df.drop(index=rej["row"].to_numpy() - 1).reset_index(drop=True)
    report.rows_valid, report.rows_rejected = len(valid), len(rej)
    report.rejected_by_reason = rej["reason"].value_counts().to_dict()
    report.warnings = {k: v for k, v in report.warnings.items() if v}
    report.check_reconciled()
    return valid, rej[REJECT_COLUMNS].reset_index(drop=True), report


def _check_rank(column: str | None) -> int:
    """Where pandera reports a check: the checks across columns (None) first, then columns in schema order."""
    names = list(LEADS_SCHEMA.columns)
    return names.index(column) if column in names else -1


def _check_lead_rows(raw: pd.DataFrame, cols: dict[str, str], extras: list[str], file: str, report: FileReport
                     ) -> tuple[pd.DataFrame, list[pd.DataFrame], list[tuple[int, pd.DataFrame]]]:
    """Parse and check one slice of the leads table (index = file row - 1). Returns the parsed rows, the
    rejects of values that could not be read, and the rejects of the row checks (all but uniqueness) with
    their :func:`_check_rank`."""
    df = pd.DataFrame(index=raw.index)
    unparsed: list[pd.DataFrame] = []
    failed: list[tuple[int, pd.DataFrame]] = []

    def reject(into: list, mask: pd.Series, column: str, reason: str, values: pd.Series | None = None):
        if mask.any():
            into.append(pd.DataFrame({
                "file": file, "row": mask.index[mask] + 1, "lead_id": None, "column": column,
                "reason": reason,
                "value": (values[mask].astype("string") if values is not None else pd.NA),
            }))

    def warn(reason: str, n: int) -> None:
        report.warnings[reason] = report.warnings.get(reason, 0) + int(n)

    for name, (kind, _) in LEAD_COLUMNS.items():
        if name not in cols:
            if name not in report.columns_added:
                report.columns_added.append(name)
            df[name] = (pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us]") if kind == "timestamp"
                        else np.nan if kind == "amount" else pd.Series(None, index=raw.index, dtype="str"))
            continue
        col = raw[cols[name]]
        if kind == "timestamp":
            df[name], bad = parse_timestamp(col)
            reject(unparsed, bad, name, f"{name} is not a readable timestamp", col)
        elif kind == "amount":
            df[name], bad = parse_amount(col)
            negative = df[name] < 0
            if bad.any() or negative.any():
                warn(f"{name}: not a number, set to missing", bad.sum())
                warn(f"{name}: negative, set to missing", negative.sum())
                df.loc[bad | negative, name] = np.nan
        else:
            if kind == "id" and pd.api.types.is_float_dtype(col):
                col = col.astype("Int64")  # 17.0 → "17", as the event log writes it
            s = col.astype("string").str.strip()
            df[name] = s.where(s != "").astype("str")

    df["outcome"] = df["outcome"].str.lower().fillna("open")
    if "email_domain" in cols:
        df["email_domain"] = df["email_domain"].str.lower().str.replace(r"^.*@", "", regex=True)
    open_with_date = (df["outcome"] == "open") & df["outcome_at"].notna()
    if open_with_date.any():
        warn("outcome_at given for an open lead, ignored", open_with_date.sum())
        df.loc[open_with_date, "outcome_at"] = pd.NaT

    # Columns a mapping kept from the export (x_…) travel along unchecked: they become extra features.
    for c in extras:
        df[c] = raw[c]
    rows = pd.concat(unparsed)["row"].to_numpy() - 1 if unparsed else np.array([], dtype=int)
    candidates = df.drop(index=rows).drop(columns=extras)
    try:
        _LEADS_ROW_SCHEMA.validate(candidates, lazy=True)
    except pa.errors.SchemaErrors as exc:
        fc = exc.failure_cases
        row_level = fc[fc["index"].notna()]
        structural = fc[fc["index"].isna()]
        if len(structural):
            raise ContractError(f"{file}: " + "; ".join(
                f"column '{r.column}' fails {r.check}" for r in structural.itertuples())) from exc
        across = row_level["schema_context"] == "DataFrameSchema"
        row_level = row_level.assign(rank=[_check_rank(None if a else c) for a, c in zip(across, row_level["column"])],
                                     column=np.where(across, "outcome_at", row_level["column"]))
        for (rank, column, check), grp in row_level.groupby(["rank", "column", "check"], sort=False):
            mask = pd.Series(df.index.isin(grp["index"].astype(int).unique()), index=df.index)
            reason = _reason(column, check) if (column, str(check).split("(")[0]) in _REASONS else str(check)
            ranked: list[pd.DataFrame] = []
            reject(ranked, mask, column, reason, df[column])
            failed += [(rank, f) for f in ranked]
    return df, unparsed, failed


# ----------------------------------------------------------------------------- events
def _duckdb_source(path: Path) -> str:
    p = str(path).replace("'", "''")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return f"(SELECT file_row_number + 1 AS _row, * FROM read_parquet('{p}', file_row_number=true))"
    if suffix in (".csv", ".txt", ".gz"):
        nulls = ", ".join("'" + v + "'" for v in NULL_STRINGS)
        return (f"(SELECT row_number() OVER () AS _row, * FROM read_csv('{p}', all_varchar=true, header=true, "
                f"nullstr=[{nulls}]))")
    raise ContractError(f"{path}: unsupported file type '{suffix}'; use CSV or Parquet")


def _ts_sql(col: str, sql_type: str = "VARCHAR") -> str:
    """A column to naive UTC by its declared type: typed timestamps pass through (with an offset,
    converted), text is parsed (an offset converted, a naive time taken as UTC)."""
    if sql_type == "TIMESTAMP" or sql_type.startswith("TIMESTAMP("):
        return f"CAST({col} AS TIMESTAMP)"
    if sql_type.startswith("TIMESTAMP") or sql_type == "DATE":
        return f"TRY_CAST(TRY_CAST({col} AS TIMESTAMPTZ) AS TIMESTAMP)"
    return f"TRY_CAST(TRY_CAST(trim(CAST({col} AS VARCHAR)) AS TIMESTAMPTZ) AS TIMESTAMP)"


def validate_events(path: str | Path, leads: pd.DataFrame, rejected_leads: pd.DataFrame, out_path: str | Path,
                    con: duckdb.DuckDBPyConnection | None = None) -> tuple[pd.DataFrame, FileReport]:
    """Check the event log in DuckDB and write the valid events to ``out_path`` (Parquet).

    Returns (rejects, report). Every input row is either written or rejected with a reason.
    """
    path, out_path = Path(path), Path(out_path)
    file = str(path)
    if not path.exists():
        raise ContractError(f"{path}: file not found")
    if con is None:
        from leadscore.features import connect

        con = connect()
    con.execute("SET TimeZone = 'UTC'")
    src = _duckdb_source(path)
    try:
        probe = con.sql(f"SELECT * FROM {src} LIMIT 0")
        types = dict(zip(probe.columns, map(str, probe.types)))
    except duckdb.Error as exc:
        raise ContractError(f"{path}: cannot be read: {exc}") from exc
    columns = [c for c in types if c != "_row"]
    cols = _check_columns(columns, EVENT_COLUMNS, file)
    q = lambda c: '"' + cols[c].replace('"', '""') + '"'  # noqa: E731

    id_type = types.get(cols["lead_id"], "VARCHAR")
    id_sql = (f"CAST(TRY_CAST({q('lead_id')} AS BIGINT) AS VARCHAR)" if id_type in ("DOUBLE", "FLOAT")
              else f"CAST({q('lead_id')} AS VARCHAR)")
    con.register("_valid_leads", leads[["lead_id"]])
    con.register("_rejected_leads", rejected_leads[["lead_id"]].dropna().drop_duplicates())
    known = ", ".join(f"'{t}'" for t in EVENT_TYPE_NAMES)
    opt = {c: (f"TRY_CAST({q(c)} AS DOUBLE)" if c in cols else "NULL::DOUBLE") for c in ("duration_s", "percent_watched")}
    unreadable = {c: (f"{q(c)} IS NOT NULL AND TRY_CAST({q(c)} AS DOUBLE) IS NULL" if c in cols else "false")
                  for c in ("duration_s", "percent_watched")}
    asset = f"NULLIF(trim(CAST({q('asset')} AS VARCHAR)), '')" if "asset" in cols else "NULL::VARCHAR"
    # Views, not tables: the event log is read as a stream (hundreds of millions of rows), once to
    # write the valid rows and once to return the rejected ones; nothing is held in memory whole.
    scan = f"""
        CREATE OR REPLACE TEMP VIEW _ev AS
        SELECT _row,
               NULLIF(trim({id_sql}), '') AS lead_id,
               CAST({q('timestamp')} AS VARCHAR) AS raw_timestamp,
               {_ts_sql(q('timestamp'), types.get(cols['timestamp'], 'VARCHAR'))} AS timestamp,
               CAST({q('event_type')} AS VARCHAR) AS raw_event_type,
               {asset} AS asset,
               {opt['duration_s']} AS duration_s,
               {opt['percent_watched']} AS percent_watched,
               {unreadable['duration_s']} AS bad_duration_text,
               {unreadable['percent_watched']} AS bad_pct_text
        FROM {src}
    """
    try:
        con.execute(scan)
    except duckdb.Error as exc:  # e.g. a malformed line far into a CSV
        raise ContractError(f"{path}: cannot be read as a table: {exc}") from exc
    # An export holds a handful of distinct event types: fold their spelling once, not per row.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _types AS
        SELECT raw, regexp_replace(lower(trim(raw)), '[^a-z0-9]+', '_', 'g') AS event_type
        FROM (SELECT DISTINCT CAST({q('event_type')} AS VARCHAR) AS raw FROM {src})""")
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW _ev_checked AS
        SELECT e.*, t.event_type,
          CASE
            WHEN e.lead_id IS NULL THEN 'lead_id is missing'
            WHEN v.lead_id IS NULL AND r.lead_id IS NOT NULL THEN 'lead was rejected in the leads file'
            WHEN v.lead_id IS NULL THEN 'lead_id not found in the leads file'
            WHEN e.timestamp IS NULL AND nullif(trim(e.raw_timestamp), '') IS NULL THEN 'timestamp is missing'
            WHEN e.timestamp IS NULL THEN 'timestamp is not a readable timestamp'
            WHEN t.event_type IS NULL OR t.event_type = '' THEN 'event_type is missing'
            WHEN t.event_type NOT IN ({known}) THEN 'unknown event_type'
          END AS reason,
          CASE
            WHEN e.lead_id IS NULL OR v.lead_id IS NULL THEN 'lead_id'
            WHEN e.timestamp IS NULL THEN 'timestamp'
            ELSE 'event_type'
          END AS reason_column
        FROM _ev e
        LEFT JOIN _types t ON e.raw_event_type = t.raw
        LEFT JOIN _valid_leads v ON e.lead_id = v.lead_id
        LEFT JOIN _rejected_leads r ON e.lead_id = r.lead_id
    """)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    op = str(out_path).replace("'", "''")
    con.execute(f"""
        COPY (SELECT lead_id, timestamp, event_type, asset,
                     CASE WHEN duration_s >= 0 THEN duration_s END AS duration_s,
                     CASE WHEN percent_watched BETWEEN 0 AND 100 THEN percent_watched END AS percent_watched
              FROM _ev_checked WHERE reason IS NULL)
        TO '{op}' (FORMAT parquet, COMPRESSION zstd)
    """)  # insertion order is preserved: the valid events keep the file's order
    flagged = con.sql(f"""
        SELECT '{file.replace("'", "''")}' AS file, _row AS row, lead_id, reason_column AS column, reason,
               CASE reason_column WHEN 'lead_id' THEN lead_id WHEN 'timestamp' THEN raw_timestamp
                    ELSE raw_event_type END AS value,
               reason IS NULL AND duration_s < 0 AS bad_duration,
               reason IS NULL AND NOT percent_watched BETWEEN 0 AND 100 AS bad_pct,
               reason IS NULL AND bad_duration_text AS text_duration,
               reason IS NULL AND bad_pct_text AS text_pct
        FROM _ev_checked
        WHERE reason IS NOT NULL OR duration_s < 0 OR NOT percent_watched BETWEEN 0 AND 100
              OR bad_duration_text OR bad_pct_text
    """).df().sort_values("row", kind="stable")
    rejects = flagged[flagged["reason"].notna()].reset_index(drop=True)
    total = con.sql(f"SELECT count(*) FROM {src}").fetchall()[0][0]
    counts = (total, total - len(rejects), int(flagged["bad_duration"].sum()), int(flagged["bad_pct"].sum()),
              int(flagged["text_duration"].sum()), int(flagged["text_pct"].sum()))
    report = FileReport(file=file, rows_in=counts[0], rows_valid=counts[1], rows_rejected=len(rejects),
                        rejected_by_reason=rejects["reason"].value_counts().to_dict(),
                        columns_added=[c for c in EVENT_COLUMNS if c not in cols])
    if counts[2]:
        report.warnings["duration_s: negative, set to missing"] = counts[2]
    if counts[3]:
        report.warnings["percent_watched: outside 0-100, set to missing"] = counts[3]
    if counts[4]:
        report.warnings["duration_s: not a number, set to missing"] = counts[4]
    if counts[5]:
        report.warnings["percent_watched: not a number, set to missing"] = counts[5]
    con.execute("DROP VIEW _ev_checked; DROP VIEW _ev; DROP TABLE _types")
    report.check_reconciled()
    return rejects[REJECT_COLUMNS], report


# ----------------------------------------------------------------------------- priority accounts
def read_priority_accounts(path: str | Path | None) -> pd.DataFrame:
    """A list of target accounts, matched to leads by account_id or by email/company domain."""
    if path is None:
        return pd.DataFrame({"account_id": pd.Series(dtype="str"), "domain": pd.Series(dtype="str")})
    path = Path(path)
    raw = _read_table(path)
    by = {_canonical(c): c for c in raw.columns}
    if "account_id" not in by and "domain" not in by:
        raise ContractError(f"{path}: needs a column 'account_id' or 'domain' (found: {', '.join(raw.columns)})")
    out = pd.DataFrame(index=raw.index)
    for c in ("account_id", "domain"):
        out[c] = (raw[by[c]].astype("string").str.strip() if c in by else pd.Series(pd.NA, index=raw.index, dtype="string"))
    out["domain"] = out["domain"].str.lower()
    return out.astype("str")


# ----------------------------------------------------------------------------- thresholds
def enforce_reject_share(rejects: pd.DataFrame, report: FileReport, max_share: float, rejects_path: str | Path) -> None:
    """Raise when a file lost more than ``max_share`` of its rows, with counts and example rows."""
    if report.rows_in == 0:
        raise ContractError(f"{report.file}: the file has no data rows")
    share = report.rows_rejected / report.rows_in
    if share <= max_share:
        return
    lines = [f"{report.file}: {report.rows_rejected:,} of {report.rows_in:,} rows ({share:.1%}) rejected, "
             f"more than validate.max_reject_share = {max_share:.1%}:"]
    mine = rejects[rejects["file"] == report.file]
    for (column, reason), grp in mine.groupby(["column", "reason"], sort=False):
        ex = grp.head(EXAMPLES)
        examples = ", ".join(f"row {r} ({v!r})" for r, v in zip(ex["row"], ex["value"].fillna("")))
        hint = ""
        if reason == "unknown event_type":
            hint = f" Known types: {', '.join(EVENT_TYPE_NAMES)}."
        elif "timestamp" in reason:
            hint = " Use ISO 8601, e.g. 2026-11-23 14:05:00 or 2026-11-23T14:05:00+01:00."
        lines.append(f"  - column '{column}': {reason}: {len(grp):,} rows, e.g. {examples}.{hint}")
    lines.append(f"Every rejected row, with its reason: {rejects_path}")
    raise ContractError("\n".join(lines))
