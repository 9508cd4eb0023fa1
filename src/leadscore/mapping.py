"""Export mappings: turn a real CRM export into contract-shaped leads, and say what was done.

Real exports rarely match the data contract: other column names, placeholder text meaning "not set"
("Select", "unknown"), casing noise ("google" / "Google"), outcomes as 1/0 or "Closed Won" / stage
names, and leads-only exports whose behaviour comes as aggregated columns (visits, time on site, last
activity) with no event log and sometimes no timestamps at all. Rather than editing the export by hand
(unrepeatable, unreviewable), an :class:`ExportMapping` written in YAML says once how to read it, and
:func:`apply_mapping` applies it and returns a :class:`MappingReport` with every count, so a reviewer
can reconcile rows in = rows out and see what was replaced, mapped, kept and dropped.

What the mapping never does is decide a row is bad: an outcome value it cannot map stays as the raw
text, so :func:`leadscore.contract.validate_leads` rejects the row *with a reason* instead of the
mapping dropping or guessing it. Empty cells always mean missing, as in the contract.

Extra export columns are kept as features under ``x_<snake_case>`` names (``TotalVisits`` →
``x_totalvisits``), typed numeric when every present value is a number and categorical otherwise;
:func:`extra_feature_specs` gives their metadata in the form of ``feature_metadata.json``. Columns
known to be filled in by sales after contact (``after_sales_contact``) are kept too, but only so the
leakage guard can examine them (pass :attr:`MappingReport.declared_after_contact` as
``declared_after_contact``); they are not feature specs unless asked for.

Exports without timestamps (``time.order_by``) get ``created_at`` spread evenly over
``[start, end]`` in the order of a sequential column, and won/lost leads get
``outcome_at = created_at + decision_days``. Both are stand-ins: they keep the time order, so a time
split is "oldest leads train, newest test", but the dates themselves are invented.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadscore.contract import LEAD_COLUMNS, ContractError, _canonical, parse_moment, parse_timestamp
from leadscore.reader import ReadOptions, Table, read_table

#: Contract columns filled by dedicated mapping fields, not by ``renames``.
_DEDICATED = {"lead_id": "id_column", "created_at": "time.created_at / time.order_by",
              "outcome": "outcome.column", "outcome_at": "time.outcome_at / time.decision_days"}
_OUTCOME_WORDS = ("won", "lost", "open")
#: pandas names a column without a header "Unnamed: <position>" (a trailing comma in a CSV).
_UNNAMED = re.compile(r"^\s*$|^Unnamed: \d+$")
EXTRA_PREFIX = "x_"
#: A mapping name for the export's row number (1-based data row): usable as id_column or time.order_by.
ROW_NUMBER = "@row"
_ISO_IN_TEXT = re.compile(r"(\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?)")
NUMERIC, CATEGORICAL = "numeric", "categorical"
FIT, BEHAVIOR = "fit", "behavior"


def _as_texts(values, what: str) -> list[str]:
    """YAML scalars as text. YAML 1.1 reads unquoted No/Yes/off as booleans: refuse rather than guess."""
    out = []
    for v in values or []:
        if isinstance(v, bool):
            raise ValueError(f"{what}: YAML read a value as {v}; write it in quotes (e.g. 'No'), "
                             f"since Yes/No/On/Off are booleans in YAML")
        out.append("" if v is None else _number_text(str(v)))
    return out


def _number_text(text: str) -> str:
    """'1.0' → '1' (a whole number written as a float, as pandas writes integer columns with gaps)."""
    try:
        f = float(text)
    except ValueError:
        return text
    return str(int(f)) if np.isfinite(f) and f.is_integer() and not re.search(r"[a-zA-Z]", text) else text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutcomeSpec(_Strict):
    """Which export values mean won / lost / open. Compared as text, case-insensitive, stripped;
    the contract's own words won/lost/open are always understood. A missing value means open."""

    column: str | None = None
    won: list[str] = Field(default_factory=list)
    lost: list[str] = Field(default_factory=list)
    open: list[str] = Field(default_factory=list)
    #: the stage value carries its date ("Closed Won 2026-03-04"): the ISO date is outcome_at, the rest the stage
    date_in_value: bool = False
    #: won when the lead's id appears in another file (a closed-deals list): {file, column, at (optional date column)}
    won_if_id_in: "IdListSpec | None" = None
    otherwise: Literal["open", "lost"] = "open"  # with won_if_id_in: the outcome of leads not in the list

    @field_validator("won", "lost", "open", mode="before")
    @classmethod
    def _texts(cls, v, info):
        return _as_texts(v, f"outcome.{info.field_name}")

    @model_validator(mode="after")
    def _disjoint(self):
        if (self.column is None) == (self.won_if_id_in is None):
            raise ValueError("outcome: give exactly one of column (a stage/outcome column) or won_if_id_in "
                             "(a file of won ids)")
        seen: dict[str, str] = {}
        for outcome in _OUTCOME_WORDS:
            for value in getattr(self, outcome):
                key = _normalise_text(value)
                if key in _OUTCOME_WORDS and key != outcome:
                    raise ValueError(f"outcome.{outcome}: '{value}' is the contract's word for {key}")
                if key in seen and seen[key] != outcome:
                    raise ValueError(f"outcome: '{value}' is listed under both {seen[key]} and {outcome}")
                seen[key] = outcome
        return self

    def lookup(self) -> dict[str, str]:
        """Normalised export value → outcome, the contract's own words included."""
        table = {w: w for w in _OUTCOME_WORDS}
        for outcome in _OUTCOME_WORDS:
            table.update({_normalise_text(v): outcome for v in getattr(self, outcome)})
        return table


class IdListSpec(_Strict):
    """Another file whose ids mark leads as won (a closed-deals list), read by the same reader."""

    file: str
    column: str
    at: str | None = None  # the decision date column in that file
    read: "ReadSpec | None" = None


class ReadSpec(_Strict):
    """How to read the export where detection is not wanted (see :mod:`leadscore.reader`)."""

    sep: str | None = None
    encoding: str | None = None
    decimal: Literal[".", ","] | None = None

    @model_validator(mode="after")
    def _valid(self):
        ReadOptions(self.sep, self.encoding, self.decimal)
        return self


class TimeSpec(_Strict):
    """Where ``created_at`` (and ``outcome_at``) come from: columns, or a stand-in from row order."""

    created_at: str | None = None  # export column with the creation timestamp (ISO 8601)
    outcome_at: str | None = None  # export column with the decision timestamp
    order_by: str | None = None  # no timestamps: spread created_at over [start, end] in this column's order
    start: str | None = None
    end: str | None = None
    decision_days: float | None = Field(None, gt=0)  # stand-in: outcome_at = created_at + decision_days
    order_by_text: bool = False  # declare that order_by is a text column whose sort order is the time order

    @field_validator("start", "end", mode="before")
    @classmethod
    def _date_text(cls, v):
        if v is None:
            return None
        text = v.isoformat() if hasattr(v, "isoformat") else str(v)
        parse_moment(text, "time.start/end")  # the one timestamp grammar
        return text

    @model_validator(mode="after")
    def _one_source(self):
        if (self.created_at is None) == (self.order_by is None):
            raise ValueError("time: give exactly one of created_at (a timestamp column) or order_by "
                             "(a sequential column, for exports without timestamps)")
        if self.order_by is None:
            if self.start is not None or self.end is not None:
                raise ValueError("time: start and end only apply with order_by")
            return self
        if self.start is None or self.end is None:
            raise ValueError("time.order_by needs start and end (the period the leads are spread over)")
        start, end = parse_moment(self.start, "time.start"), parse_moment(self.end, "time.end")
        if not end > start:
            raise ValueError(f"time: end ({self.end}) must be after start ({self.start})")
        return self


OutcomeSpec.model_rebuild()


class ExportMapping(_Strict):
    """How to read one kind of export. Column names are export names, matched exactly or, failing
    that, ignoring case, spaces and punctuation (as the contract matches its own columns)."""

    name: str = ""
    id_column: str
    time: TimeSpec
    read: ReadSpec | None = None  # sep / encoding / decimal of the export, where detection is not wanted
    renames: dict[str, str] = Field(default_factory=dict)  # export column → contract column
    # values meaning missing, case-insensitive: a list for every column, or column → list (key "*": all)
    placeholders: list[str] | dict[str, list[str]] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)  # kept columns that are codes (1, 2, 3), not amounts
    lowercase: list[str] | Literal["all_text"] = Field(default_factory=list)
    outcome: OutcomeSpec | None = None
    extra_fit: list[str] | dict[str, str] = Field(default_factory=list)  # list, or column → short name
    extra_behavior: list[str] | dict[str, str] = Field(default_factory=list)
    after_sales_contact: list[str] | dict[str, str] = Field(default_factory=list)
    drop: list[str] = Field(default_factory=list)
    drop_empty_unnamed: bool = True  # drop header-less, all-empty columns (a CSV's trailing comma)

    @field_validator("placeholders", mode="before")
    @classmethod
    def _placeholder_texts(cls, v):
        if isinstance(v, dict):
            return {str(k): [t.strip() for t in _as_texts(vals if isinstance(vals, list) else [vals],
                                                          f"placeholders.{k}")] for k, vals in v.items()}
        return [t.strip() for t in _as_texts(v, "placeholders")]

    @field_validator("renames")
    @classmethod
    def _contract_targets(cls, v: dict[str, str]) -> dict[str, str]:
        for src, dst in v.items():
            if dst in _DEDICATED:
                raise ValueError(f"renames: '{src}' → '{dst}': {dst} is set by {_DEDICATED[dst]}, not renames")
            if dst not in LEAD_COLUMNS:
                close = difflib.get_close_matches(dst, list(LEAD_COLUMNS), n=1)
                raise ValueError(f"renames: '{dst}' is not a contract column" +
                                 (f" (did you mean '{close[0]}'?)" if close else ""))
        targets = list(v.values())
        dup = sorted({t for t in targets if targets.count(t) > 1})
        if dup:
            raise ValueError(f"renames: several export columns map to {', '.join(dup)}")
        return v

    @model_validator(mode="after")
    def _one_role_per_column(self):
        roles: dict[str, str] = {}

        def claim(col: str | None, role: str) -> None:
            if col is None:
                return
            key = _canonical(col)
            if key in roles and roles[key] != role:
                raise ValueError(f"column '{col}' is used twice: as {roles[key]} and as {role}")
            roles[key] = role

        if self.id_column != ROW_NUMBER:
            claim(self.id_column, "id_column")
        for src in self.renames:
            claim(src, f"renames → {self.renames[src]}")
        if self.outcome is not None and self.outcome.column is not None:
            claim(self.outcome.column, "outcome.column")
        claim(self.time.created_at, "time.created_at")
        claim(self.time.outcome_at, "time.outcome_at")
        for group in ("extra_fit", "extra_behavior", "after_sales_contact"):
            for src in _extra_items(getattr(self, group)):
                claim(src, group)
        for src in self.drop:
            claim(src, "drop")
        # time.order_by is only read, so it may also be the id or a kept column (Lead Number).
        names = [n for n, _, _ in self.extra_columns()]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"extra columns would share the name(s) {', '.join(dup)}; give them short names "
                             f"(column: name) in extra_fit / extra_behavior / after_sales_contact")
        return self

    def extra_columns(self) -> list[tuple[str, str, str]]:
        """(output name, export column, group) for every kept extra, in mapping order."""
        out = []
        for group, items in ((FIT, self.extra_fit), (BEHAVIOR, self.extra_behavior),
                             ("after_sales_contact", self.after_sales_contact)):
            for src, short in _extra_items(items).items():
                out.append((extra_name(short or src), src, group))
        return out


def _won_ids(listed: IdListSpec, file: str) -> pd.Series:
    """The ids of a won-deals file (by the id rule), with their decision date when ``at`` is given."""
    from leadscore.contract import normalise_ids

    frame = read_table(Path(listed.file), ReadOptions.of(listed.read)).frame
    resolve = _resolver(frame.columns, listed.file)
    cols = resolve([c for c in (listed.column, listed.at) if c])
    ids, _ = normalise_ids(frame[cols[listed.column]])
    at = (frame[cols[listed.at]].astype("string") if listed.at else pd.Series(pd.NA, index=frame.index, dtype="string"))
    keep = ids.notna()
    won = pd.Series(at[keep].to_numpy(), index=ids[keep].to_numpy())
    return won[~won.index.duplicated(keep="first")]


def _extra_items(items: list[str] | dict[str, str]) -> dict[str, str | None]:
    return dict(items) if isinstance(items, dict) else {c: None for c in items}


def extra_name(column: str) -> str:
    """The safe output name of a kept export column: ``Total Time Spent on Website`` →
    ``x_total_time_spent_on_website``."""
    return EXTRA_PREFIX + (_canonical(column) or "column")


def load_mapping(path: str | Path) -> ExportMapping:
    """Read a mapping YAML; unknown keys are an error (a typo must not silently do nothing)."""
    path = Path(path)
    if not path.exists():
        raise ContractError(f"{path}: mapping file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ContractError(f"{path}: a mapping is a YAML dictionary (id_column:, time:, ...), not {type(raw).__name__}")
    try:
        return ExportMapping.model_validate(raw)
    except ValueError as exc:
        raise ContractError(f"{path}: {exc}") from exc


def read_export_table(path: str | Path, options=None) -> Table:
    """Read an export by the one reader (:func:`leadscore.reader.read_table`): a CSV with every cell as
    text and nothing pre-judged as missing (the mapping's placeholders decide), or Parquet as stored.
    Returns the reader's :class:`~leadscore.reader.Table` (frame, refused rows, dialect)."""
    table = read_table(Path(path), ReadOptions.of(options), nullstr=("\x00",))
    frame = table.frame
    for c in frame.columns:
        if frame[c].dtype == object:
            frame[c] = frame[c].fillna("")
    frame.attrs["bad_rows"] = table.bad_rows
    frame.attrs["read"] = table.dialect.to_dict()
    frame.attrs["rows"] = (frame.index + 1).tolist()
    table.frame = frame
    return table


def read_export(path: str | Path, options=None) -> pd.DataFrame:
    """:func:`read_export_table`'s frame (rows in file order; the reader's refused rows in
    ``.attrs["bad_rows"]``, counted by :func:`apply_mapping`)."""
    return read_export_table(path, options).frame.reset_index(drop=True)


# --------------------------------------------------------------------------------------------- report

@dataclass
class ExtraColumn:
    name: str  # output column, x_…
    source: str  # export column
    group: str  # fit | behavior (after-contact columns: fit)
    kind: str  # numeric | categorical
    after_sales_contact: bool = False


@dataclass
class MappingReport:
    """What :func:`apply_mapping` did to one export. ``rows_in == rows_out`` always."""

    file: str
    rows_in: int = 0
    rows_out: int = 0
    renamed: dict[str, str] = field(default_factory=dict)  # export column → contract column
    dropped: list[str] = field(default_factory=list)  # dropped on purpose (drop list, empty header-less)
    unmapped: list[str] = field(default_factory=list)  # not named by the mapping: not carried over
    placeholders_replaced: dict[str, dict[str, int]] = field(default_factory=dict)  # column → value → rows
    outcome_mapped: dict[str, dict[str, int]] = field(default_factory=dict)  # outcome → export value → rows
    outcome_unmapped: dict[str, int] = field(default_factory=dict)  # export value → rows (contract rejects)
    outcome_missing: int = 0  # no outcome value: open, by the contract
    casing_changed: dict[str, int] = field(default_factory=dict)  # column → values changed by lowercasing
    casing_merged: dict[str, int] = field(default_factory=dict)  # column → spellings merged ("Google"/"google")
    extras: list[ExtraColumn] = field(default_factory=list)
    time: str = ""  # how created_at / outcome_at were obtained
    outcome_at_filled: int = 0  # won/lost rows given outcome_at = created_at + decision_days
    warnings: list[str] = field(default_factory=list)
    rows_refused: int = 0  # rows the reader could not read (wrong number of fields), listed in warnings

    @property
    def casing_changes(self) -> int:
        return int(sum(self.casing_changed.values()))

    @property
    def placeholders_total(self) -> int:
        return int(sum(n for per in self.placeholders_replaced.values() for n in per.values()))

    @property
    def declared_after_contact(self) -> list[str]:
        """Output names to pass to ``leakage_report(declared_after_contact=...)``."""
        return [e.name for e in self.extras if e.after_sales_contact]

    def check_reconciled(self) -> None:
        if self.rows_in != self.rows_out + self.rows_refused:
            raise AssertionError(f"{self.file}: {self.rows_in} rows in but {self.rows_out} out "
                                 f"+ {self.rows_refused} unreadable")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(casing_changes=self.casing_changes, placeholders_total=self.placeholders_total,
                 declared_after_contact=self.declared_after_contact)
        return d

    def summary(self) -> str:
        """A few lines a reviewer can check against the export."""
        outcomes = "; ".join(f"{o}: " + ", ".join(f"'{v}' ×{n:,}" for v, n in per.items())
                             for o, per in self.outcome_mapped.items()) or "no outcome column"
        lines = [f"{self.file}: {self.rows_in:,} rows in, {self.rows_out:,} out",
                 f"renamed: " + (", ".join(f"{s} → {d}" for s, d in self.renamed.items()) or "none"),
                 f"outcome: {outcomes}"]
        if self.outcome_unmapped:
            lines.append("outcome values not mapped (validation will reject these rows): " +
                         ", ".join(f"'{v}' ×{n:,}" for v, n in self.outcome_unmapped.items()))
        if self.outcome_missing:
            lines.append(f"outcome missing (open): {self.outcome_missing:,}")
        lines.append(f"placeholders set to missing: {self.placeholders_total:,} (" + ", ".join(
            f"{c}: {sum(p.values()):,}" for c, p in self.placeholders_replaced.items()) + ")")
        lines.append(f"values lowercased: {self.casing_changes:,}" + (" (spellings merged: " + ", ".join(
            f"{c}: {n}" for c, n in self.casing_merged.items()) + ")" if self.casing_merged else ""))
        lines.append("extra columns: " + (", ".join(
            f"{e.name} ({e.group}, {e.kind}{', after sales contact' if e.after_sales_contact else ''})"
            for e in self.extras) or "none"))
        lines.append("dropped: " + (", ".join(self.dropped) or "none"))
        if self.unmapped:
            lines.append("not in the mapping, not carried over: " + ", ".join(self.unmapped))
        lines.append(f"time: {self.time}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------- apply

def apply_mapping(raw: pd.DataFrame | Table, mapping: ExportMapping, file: str, *, scoring: bool = False,
                  as_of=None, bad_rows: pd.DataFrame | None = None) -> tuple[pd.DataFrame, MappingReport]:
    """Contract-shaped leads from an export, plus the report of what was done.

    The frame holds ``lead_id``, ``created_at``, the renamed contract columns, ``outcome`` and
    ``outcome_at`` when the mapping gives them (absent optional columns are added by
    :func:`leadscore.contract.validate_leads`), then the kept extras (``x_…``). Row order and count
    are the export's. Raises :class:`ContractError` naming ``file`` and the column when a column the
    mapping names is not in the export.

    ``scoring``: the export is scored, not trained on: the outcome, outcome dates and after-sales-contact
    columns are used when present and not required; time from row order (``time.order_by``) is for
    training only, so every lead gets ``created_at`` = one microsecond before ``as_of`` (real dates, with ``time.created_at``, are
    used as they are). Rows the reader refused (``bad_rows``, or ``raw.attrs["bad_rows"]``) are counted
    and listed in the report's warnings.
    """
    if isinstance(raw, Table):
        bad_rows = raw.bad_rows if bad_rows is None else bad_rows
        raw = raw.frame
    if bad_rows is None:
        bad_rows = raw.attrs.get("bad_rows")
    int_index = pd.api.types.is_integer_dtype(raw.index) and raw.index.is_unique
    rows = np.asarray(raw.attrs.get("rows") or (raw.index + 1 if int_index else range(1, len(raw) + 1)), dtype="int64")
    raw = raw.reset_index(drop=True)
    m, t = mapping, mapping.time
    if ROW_NUMBER in (m.id_column, t.order_by):
        raw = raw.assign(**{ROW_NUMBER: pd.Series(rows, index=raw.index).astype("string")})
    n_bad = 0 if bad_rows is None else len(bad_rows)
    report = MappingReport(file=file, rows_in=len(raw) + n_bad, rows_refused=n_bad)
    if n_bad:
        report.warnings.append(f"{n_bad:,} rows could not be read and are left out: " + "; ".join(
            f"row {r}: {why}" for r, why in zip(bad_rows["row"].head(10), bad_rows["reason"].head(10))))
    resolve = _resolver(raw.columns, file)

    after_contact = {src for _, src, g in m.extra_columns() if g == "after_sales_contact"}
    optional = set()
    if scoring:  # what only a training export has: used when present
        optional = {c for c in (t.outcome_at, m.outcome.column if m.outcome else None, *after_contact) if c}
    needed = [m.id_column, *m.renames, t.created_at, t.outcome_at, None if scoring else t.order_by,
              m.outcome.column if m.outcome else None, *(src for _, src, _ in m.extra_columns())]
    needed = [c for c in needed if c is not None and not (c in optional and _match(raw.columns, c) is None)]
    cols = resolve(needed)  # mapping name → export name; raises if missing

    # Columns left out: dropped on purpose, header-less and empty, or not named by the mapping.
    used = set(cols.values())
    for name in m.drop:
        hit = _match(raw.columns, name)
        if hit is None:
            report.warnings.append(f"drop: column '{name}' is not in the export")
        elif hit not in used:
            report.dropped.append(hit)
    for c in raw.columns:
        if c in used or c in report.dropped or c == ROW_NUMBER:
            continue
        if m.drop_empty_unnamed and _UNNAMED.match(str(c)) and _blank(raw[c]).all():
            report.dropped.append(str(c))
        else:
            report.unmapped.append(str(c))

    if isinstance(m.placeholders, dict):
        everywhere = m.placeholders.get("*", [])
        per_column = {(_match(raw.columns, k) or k): v for k, v in m.placeholders.items() if k != "*"}
        for k in m.placeholders:
            if k != "*" and _match(raw.columns, k) is None:
                report.warnings.append(f"placeholders: column '{k}' is not in the export")
    else:
        everywhere, per_column = list(m.placeholders), {}
    cleaned: dict[str, pd.Series] = {}  # export name → text with placeholders set to missing

    def text(col: str) -> pd.Series:
        if col not in cleaned:
            keys = {p.lower(): p for p in [*everywhere, *per_column.get(col, [])]}
            cleaned[col], counts = _clean_text(raw[col], keys)
            if counts:
                report.placeholders_replaced[col] = counts
        return cleaned[col]

    out = pd.DataFrame(index=raw.index)
    lower_all = m.lowercase == "all_text"
    lower_cols = set() if lower_all else {cols.get(c) or _require(resolve, c) for c in m.lowercase}

    def cased(col: str, s: pd.Series, eligible: bool) -> pd.Series:
        if not ((lower_all and eligible) or col in lower_cols) or not pd.api.types.is_string_dtype(s):
            return s
        low = s.str.lower()
        changed = int((low != s).fillna(False).sum())
        if changed:
            report.casing_changed[col] = changed
            merged = s.nunique() - low.nunique()
            if merged:
                report.casing_merged[col] = int(merged)
        return low

    # lead_id: text, whole-number floats as integers (17.0 → "17", as the contract reads them).
    id_col = cols[m.id_column]
    ids = raw[id_col]
    if pd.api.types.is_float_dtype(ids) and (ids.dropna() % 1 == 0).all():
        cleaned[id_col] = ids.astype("Int64").astype("string")
    out["lead_id"] = cased(id_col, text(id_col), eligible=False)
    report.renamed[id_col] = "lead_id"

    # created_at
    if t.order_by is not None and scoring:
        moment = parse_moment(as_of, "as_of") if as_of is not None else pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
        # One microsecond before as_of: a lead is scored when created strictly before as_of.
        moment = moment - pd.Timedelta(microseconds=1)
        created_ts = out["created_at"] = pd.Series(moment, index=raw.index).astype("datetime64[us]")
        report.time = (f"scoring: created_at = just before as_of ({moment}) for every lead (time from row order is "
                       f"for training only; the leads are scored as new leads)")
    elif t.order_by is not None:
        order_col = cols[t.order_by]
        key = _order_key(raw[order_col], text(order_col))
        if not (pd.api.types.is_numeric_dtype(key) or pd.api.types.is_datetime64_any_dtype(key)) and not t.order_by_text:
            raise ContractError(f"{file}: time.order_by column '{order_col}' holds text, whose sort order is rarely "
                                f"the time order (e.g. {', '.join(map(str, key.dropna().head(3)))}); use a number or "
                                f"date column, or declare time.order_by_text: true if its order is the time order")
        created = _spread(key, parse_moment(t.start), parse_moment(t.end))
        no_order = int(created.isna().sum())
        if no_order:
            report.warnings.append(f"{no_order:,} rows have no '{order_col}': created_at missing, "
                                   f"validation will reject them")
        out["created_at"] = created
        created_ts = created
        report.time = (f"no timestamps: created_at spread evenly over {t.start} .. {t.end} in the order of "
                       f"'{order_col}' (a stand-in that keeps the time order, not real dates)")
    else:
        cc = cols[t.created_at]
        created_raw = raw[cc] if pd.api.types.is_datetime64_any_dtype(raw[cc]) else text(cc)
        out["created_at"] = created_raw
        created_ts, _ = parse_timestamp(created_raw)
        report.renamed[cc] = "created_at"
        report.time = f"created_at from '{cc}'"

    # renamed contract columns, in contract order
    by_target = {dst: cols[src] for src, dst in m.renames.items()}
    for name, (kind, _) in LEAD_COLUMNS.items():
        if name in by_target:
            src = by_target[name]
            s = raw[src] if kind == "amount" and pd.api.types.is_numeric_dtype(raw[src]) else text(src)
            out[name] = cased(src, s, eligible=kind == "text")
            report.renamed[src] = name

    # outcome
    if m.outcome is not None and m.outcome.won_if_id_in is not None and not scoring:
        listed = m.outcome.won_if_id_in
        won_at = _won_ids(listed, file)
        from leadscore.contract import normalise_ids

        ids, _ = normalise_ids(out["lead_id"])
        won = ids.isin(won_at.index).fillna(False).to_numpy()
        out["outcome"] = pd.Series(np.where(won, "won", m.outcome.otherwise), index=out.index, dtype="string")
        report.outcome_mapped["won"] = {f"id in {listed.file}": int(won.sum())}
        report.outcome_mapped[m.outcome.otherwise] = {f"id not in {listed.file}": int((~won).sum())}
        if listed.at is not None and t.outcome_at is None:
            out["outcome_at"] = ids.map(won_at).where(won).astype("string")
        unmatched = int((~won_at.index.isin(ids.dropna())).sum())
        if unmatched:
            report.warnings.append(f"outcome.won_if_id_in: {unmatched:,} ids of {listed.file} match no lead of the export")
    elif m.outcome is not None and m.outcome.column is not None and m.outcome.column in cols:
        oc = cols[m.outcome.column]
        values = text(oc)
        if m.outcome.date_in_value:
            dates = values.str.extract(_ISO_IN_TEXT)[0]
            values = values.str.replace(_ISO_IN_TEXT, "", regex=True).str.strip(" -–:,;()[]@").str.strip()
            values = values.str.replace(r"\s+(?:on|am|at|since|seit)$", "", regex=True).mask(lambda v: v == "")
            if t.outcome_at is None:
                out["outcome_at"] = dates.astype("string")
        out["outcome"] = _map_outcome(values, m.outcome, report)
        report.renamed[oc] = "outcome"

    # outcome_at: a column, and/or the decision_days stand-in for decided leads without one
    if t.outcome_at is not None and t.outcome_at in cols:
        oa = cols[t.outcome_at]
        out["outcome_at"] = raw[oa] if pd.api.types.is_datetime64_any_dtype(raw[oa]) else text(oa)
        report.renamed[oa] = "outcome_at"
        report.time += f"; outcome_at from '{oa}'"
    if t.decision_days is not None and "outcome" in out:
        decided = out["outcome"].isin(["won", "lost"]).to_numpy()
        stand_in = created_ts + pd.Timedelta(days=t.decision_days)
        if "outcome_at" in out:
            have = out["outcome_at"].notna().to_numpy()
            fill = decided & ~have & stand_in.notna().to_numpy()
            if pd.api.types.is_datetime64_any_dtype(out["outcome_at"]):
                out.loc[fill, "outcome_at"] = stand_in[fill]
            else:
                out["outcome_at"] = out["outcome_at"].astype(object)
                out.loc[fill, "outcome_at"] = stand_in[fill].astype(str)
                out["outcome_at"] = out["outcome_at"].astype("string")
        else:
            fill = decided & stand_in.notna().to_numpy()
            out["outcome_at"] = stand_in.where(fill)
        report.outcome_at_filled = int(fill.sum())
        report.time += (f"; outcome_at = created_at + {t.decision_days:g} days for won/lost leads without one "
                        f"(a stand-in decision date)")
    elif m.outcome is not None and "outcome" in out and "outcome_at" not in out and out["outcome"].isin(["won", "lost"]).any():
        report.warnings.append("won/lost leads have no outcome_at (set time.outcome_at or time.decision_days): "
                               "validation will reject them")

    # extras: numeric when every present value is a number, else categorical text; declared codes categorical
    declared = {_canonical(c) for c in m.categorical}
    for name, src_name, group in m.extra_columns():
        if src_name not in cols:  # an after-contact column absent from an export being scored
            continue
        src = cols[src_name]
        if _canonical(src_name) in declared or _canonical(src) in declared:
            values, kind = text(src), CATEGORICAL
        else:
            values, kind = _extra_values(raw[src], text(src))
        if kind == CATEGORICAL:
            values = cased(src, values, eligible=True)
        out[name] = values
        report.extras.append(ExtraColumn(name, src, FIT if group == "after_sales_contact" else group, kind,
                                         after_sales_contact=group == "after_sales_contact"))

    report.rows_out = len(out)
    report.check_reconciled()
    return out.reset_index(drop=True), report


def extra_feature_specs(report: MappingReport, include_after_contact: bool = False) -> list[dict]:
    """Metadata of the kept extras, in the form of ``feature_metadata.json``: name, group, kind and a
    sentence template ("TotalVisits is {value}").

    Columns declared as filled in after sales contact are left out unless ``include_after_contact``
    (e.g. to run the leakage guard over them, which then excludes them as declared).
    """
    return [{"name": e.name, "group": e.group, "kind": e.kind,
             "description": e.source.replace("{", "{{").replace("}", "}}") + " is {value}"}
            for e in report.extras if include_after_contact or not e.after_sales_contact]


# --------------------------------------------------------------------------------------------- helpers

def _match(columns, name: str) -> str | None:
    """The export column for a mapping name: exact, else ignoring case, spaces and punctuation."""
    if name in columns:
        return name
    key = _canonical(name)
    hits = [c for c in columns if _canonical(c) == key]
    return hits[0] if len(hits) == 1 else None


def _resolver(columns, file: str):
    columns = [str(c) for c in columns]

    def resolve(names: list[str]) -> dict[str, str]:
        found, missing = {}, []
        for n in names:
            hit = _match(columns, n)
            if hit is None:
                missing.append(n)
            else:
                found[n] = hit
        if missing:
            hints = []
            for n in dict.fromkeys(missing):
                close = difflib.get_close_matches(n, columns, n=1, cutoff=0.6)
                hints.append(f"'{n}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise ContractError(f"{file}: column(s) {', '.join(hints)} named in the mapping are not in the export. "
                                f"Found columns: {', '.join(columns)}. Fix the mapping or the export.")
        return found

    return resolve


def _require(resolve, name: str) -> str:
    return resolve([name])[name]


def _blank(s: pd.Series) -> pd.Series:
    return s.isna() | (s.astype("string").str.strip() == "").fillna(True)


def _clean_text(s: pd.Series, placeholders: dict[str, str]) -> tuple[pd.Series, dict[str, int]]:
    """Stripped text; blanks and placeholders (case-insensitive) set to missing, counted by placeholder."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    txt = s.astype("string").str.strip()
    key = txt.str.lower()
    hit = key.isin(list(placeholders)).fillna(False)
    if "" not in placeholders:  # empty cells always mean missing, counted only when listed
        txt = txt.mask(txt == "")
    counts = key[hit].value_counts()
    txt = txt.mask(hit)
    return txt, {placeholders[k]: int(n) for k, n in counts.items()}


def _normalise_text(value: str) -> str:
    return _number_text(str(value).strip().lower())


def _normalise(s: pd.Series) -> pd.Series:
    """Vectorised :func:`_normalise_text`: stripped, lowercased, whole-number floats as integers."""
    low = s.str.strip().str.lower()
    num = pd.to_numeric(low.where(~low.str.contains(r"[a-z]", regex=True).fillna(True)), errors="coerce")
    whole = num.notna() & np.isfinite(num) & (num % 1 == 0)
    return low.mask(whole, num[whole].astype("Int64").astype("string"))


def _map_outcome(values: pd.Series, spec: OutcomeSpec, report: MappingReport) -> pd.Series:
    """won/lost/open where the value is listed; the raw text where not (the contract rejects it)."""
    mapped = _normalise(values).map(spec.lookup())
    present = values.notna()
    ok = mapped.notna() & present
    for outcome in _OUTCOME_WORDS:
        sel = ok & (mapped == outcome)
        if sel.any():
            report.outcome_mapped[outcome] = {str(k): int(n) for k, n in values[sel].value_counts().items()}
    bad = present & ~ok
    report.outcome_unmapped = {str(k): int(n) for k, n in values[bad].value_counts().items()}
    report.outcome_missing = int((~present).sum())
    return mapped.where(ok, values).astype("string")


def _order_key(raw: pd.Series, text: pd.Series) -> pd.Series:
    """The values to sort by: numbers when every present value is one (so 10 comes after 9), else text."""
    if pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_datetime64_any_dtype(raw):
        return raw
    num = pd.to_numeric(text, errors="coerce")
    return num if num.notna().sum() == text.notna().sum() else text


def _spread(key: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """Timestamps evenly over [start, end] by dense rank of ``key`` (equal keys, equal times), whole seconds."""
    rank = key.rank(method="dense")
    n = rank.max()
    frac = (rank - 1) / (n - 1) if n and n > 1 else rank * 0.0
    span = (end - start).total_seconds()
    seconds = (frac * span).round()
    return (start + pd.to_timedelta(seconds, unit="s")).astype("datetime64[us]")


def _extra_values(raw: pd.Series, text: pd.Series) -> tuple[pd.Series, str]:
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        return pd.to_numeric(raw, errors="coerce").astype(float), NUMERIC
    num = pd.to_numeric(text, errors="coerce")
    if text.notna().any() and num.notna().sum() == text.notna().sum():
        return num.astype(float), NUMERIC
    return text, CATEGORICAL
