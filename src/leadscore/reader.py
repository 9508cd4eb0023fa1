"""One reader for every tabular input: leads, events, priority lists and scoring exports, CSV or Parquet.

What a CSV is, is decided once per file from its first megabyte (or set in the mapping / params /
``leadscore score`` options ``sep``, ``encoding``, ``decimal``) and reported with the file:

- **encoding**: a byte-order mark says UTF-8 or UTF-16; otherwise UTF-16 without a mark is recognised
  by its zero bytes, text that decodes as UTF-8 is UTF-8, and anything else is Windows-1252 (Excel on
  Windows). Files not in UTF-8 are transcoded to a temporary UTF-8 copy (same rows, same row numbers).
- **separator**: the one of ``,`` ``;`` tab ``|`` that splits the header into the most columns with the
  rows agreeing on the count.
- **trailing delimiter**: rows that all end with one more, empty, field than the header (several CRMs
  write them) have that field ignored; a row whose extra field holds a value is rejected.
- **field count**: DuckDB's CSV reader runs in strict mode with a rejects table, so a row with more or
  fewer fields than the header goes to the rejects with its row number and the counts ("7 fields,
  header has 6"); it is never read shifted. Quoted fields keep their separators and newlines.
- **decimal separator**: ``,`` when the file's numbers say so (``2,5``, ``1.500.000,00``), else ``.``;
  it decides how a number such as ``1.200`` is read (see :func:`leadscore.contract.parse_amount`).

Row numbers are 1-based data rows (records), the header not counted.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

SEPARATORS = (",", ";", "\t", "|")
SAMPLE_BYTES = 1 << 20
SAMPLE_RECORDS = 2000
TRAILING = "_trailing_field_"  # the name given to the field after a trailing delimiter
_SEP_NAMES = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}
OPTIONS_HINT = ("set it with `sep`, `encoding` or `decimal` (params.yaml `data.read`, the mapping's `read`, "
                "or `leadscore score --sep/--encoding/--decimal`)")


class ContractError(ValueError):
    """Input that breaks the data contract; the message says what to fix and where."""


class ReadError(ContractError):
    """A file that cannot be read as a table; the message names the file and the option to set."""


@dataclass(frozen=True)
class ReadOptions:
    """How to read a CSV, where detection is not wanted: ``sep`` (``,`` ``;`` ``\\t`` ``|`` or the word
    ``tab``), ``encoding`` (``utf-8``, ``utf-16``, ``windows-1252``, any Python codec), ``decimal``
    (``.`` or ``,``). ``None`` = detect."""

    sep: str | None = None
    encoding: str | None = None
    decimal: str | None = None

    def __post_init__(self):
        if self.sep is not None:
            sep = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}.get(self.sep, self.sep)
            if len(sep) != 1:
                raise ValueError(f"sep must be one character (or 'tab'), not {self.sep!r}")
            object.__setattr__(self, "sep", sep)
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError as exc:
                raise ValueError(f"encoding {self.encoding!r} is not known; use utf-8, utf-16 or windows-1252") from exc
        if self.decimal not in (None, ".", ","):
            raise ValueError(f"decimal must be '.' or ',', not {self.decimal!r}")

    @classmethod
    def of(cls, value) -> "ReadOptions":
        if value is None:
            return cls()
        if isinstance(value, ReadOptions):
            return value
        if hasattr(value, "model_dump"):
            value = value.model_dump()
        return cls(**{k: v for k, v in dict(value).items() if k in ("sep", "encoding", "decimal")})


@dataclass
class Dialect:
    """What was detected (or set) for one file; printed and written to report.json."""

    format: str  # csv | parquet
    sep: str | None = None
    encoding: str | None = None
    decimal: str = "."
    trailing_delimiter: bool = False
    how: dict[str, str] = field(default_factory=dict)  # option → detected | set | default

    def describe(self) -> str:
        if self.format != "csv":
            return self.format
        parts = [f"separator {_SEP_NAMES.get(self.sep, repr(self.sep))} ({self.how.get('sep', 'detected')})",
                 f"encoding {self.encoding} ({self.how.get('encoding', 'detected')})",
                 f"decimal '{self.decimal}' ({self.how.get('decimal', 'default')})"]
        if self.trailing_delimiter:
            parts.append("trailing delimiter ignored")
        return "CSV, " + ", ".join(parts)

    def to_dict(self) -> dict:
        return {**asdict(self), "described": self.describe()}


# ----------------------------------------------------------------------------- detection
def _detect_encoding(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    sample = head[:4096]
    if len(sample) >= 4 and sample.count(0) >= len(sample) // 4:
        return "utf-16-le" if sample[1::2].count(0) > sample[0::2].count(0) else "utf-16-be"
    try:
        _sample_text(head, "utf-8", whole=False)
        return "utf-8"
    except UnicodeDecodeError as exc:
        # UTF-8 accents before the first invalid byte: UTF-8 with a damaged byte (its row is rejected),
        # not Windows-1252 (which would garble every accent of the file)
        return "windows-1252" if head[: exc.start].isascii() else "utf-8"


def _refuse_utf8_read_as_single_byte(sample: bytes, encoding: str, file: str) -> None:
    """A single-byte encoding set for a file whose bytes are UTF-8 text with accents would turn every 'é'
    into 'Ã©' without a single error (wrong titles, industries and names, exit 0): refused, with the line
    and both readings. (Text written in Windows-1252 or Latin-1 is practically never valid UTF-8 once it
    holds a non-ASCII character.)"""
    name = codecs.lookup(encoding).name
    if name.startswith(("utf", "utf_")) or all(b < 0x80 for b in sample[:SAMPLE_BYTES]):
        return
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        return
    lines = text.splitlines()
    n, line = next((i + 1, ln) for i, ln in enumerate(lines) if any(ord(c) > 127 for c in ln))
    word = next(w for w in re.split(r"[\s,;|\t]+", line) if any(ord(c) > 127 for c in w))[:40]
    raise ReadError(f"{file}: encoding {encoding} is set, but the file is UTF-8 text: line {n} holds {word!r}, which "
                    f"read as {encoding} would become {word.encode('utf-8').decode(encoding, 'replace')!r}. Remove "
                    f"the encoding option (UTF-8 is detected) or set encoding: utf-8")


def _sample_text(head: bytes, encoding: str, whole: bool, errors: str = "strict") -> str:
    """The sample decoded up to its last complete line: decoded first, then cut (cutting bytes at the last
    b"\\n" splits a UTF-16 character in two: a 'truncated data' error on any UTF-16 file over the sample)."""
    text = codecs.getincrementaldecoder(encoding)(errors).decode(head, final=whole)
    i = text.rfind("\n")
    return text[: i + 1] if not whole and 0 <= i < len(text) - 1 else text


def _utf8_past_sample(path: Path, start: int) -> tuple[bool, bool]:
    """Whether the file is valid UTF-8 from byte ``start`` to its end (read in 16 MiB blocks; ASCII text
    decodes at gigabytes a second), and whether a non-ASCII (multi-byte) character came before the first
    invalid byte."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    multibyte = False
    with open(path, "rb") as f:
        f.seek(start)
        while block := f.read(1 << 24):
            if block.isascii() and not decoder.getstate()[0]:
                continue  # ASCII is valid UTF-8 (and ~10x faster to check than to decode)
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                return False, multibyte or not block[: max(exc.start, 0)].isascii()
            multibyte = multibyte or not block.isascii()
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False, multibyte
    return True, multibyte


def _cut(head: bytes) -> bytes:
    """The sample up to its last newline (no character or record cut in half), unless it is the whole file."""
    i = head.rfind(b"\n")
    return head[: i + 1] if 0 <= i < len(head) - 1 else head


def _records(text: str, sep: str, limit: int = SAMPLE_RECORDS) -> list[list[str]]:
    # Python's csv module refuses a field over 128 KiB (a long notes field): allow what DuckDB reads
    if csv.field_size_limit() < MAX_LINE_BYTES:
        csv.field_size_limit(MAX_LINE_BYTES)
    out = []
    for rec in csv.reader(io.StringIO(text, newline=""), delimiter=sep, quotechar='"', doublequote=True, strict=False):
        out.append(rec)
        if len(out) >= limit:
            break
    return out


def _detect_sep(text: str) -> str:
    best, best_key = ",", (-1.0, 0)
    for sep in SEPARATORS:
        recs = [r for r in _records(text, sep, 200) if r]
        if not recs or len(recs[0]) < 2:
            continue
        h = len(recs[0]) - (1 if recs[0][-1].strip() == "" else 0)
        rows = recs[1:] or [recs[0]]
        agree = sum(1 for r in rows if len(r) == h or (len(r) == h + 1 and r[-1].strip() == "")) / len(rows)
        key = (agree, h)
        if key > best_key:
            best, best_key = sep, key
    return best


_NUM_CORE = re.compile(r"^[+-]?\d[\d.,]*$")


def number_convention(core: str) -> str | None:
    """Which decimal separator a number written with separators shows unambiguously: ',' | '.' | None."""
    dots, commas = core.count("."), core.count(",")
    if dots and commas:
        return "," if core.rfind(",") > core.rfind(".") else "."
    if dots > 1:
        return ","
    if commas > 1:
        return "."
    if dots == 1 or commas == 1:
        sep = "." if dots else ","
        whole, frac = core.lstrip("+-").split(sep)
        if len(frac) == 3 and whole not in ("", "0"):
            return None  # 1.200 / 1,200: thousands or decimal?
        return sep
    return None


_STRIP = re.compile(r"[\s\u00a0\u202f'’$€£¥]|\b(?:eur|usd|gbp|chf)\b|(?:mio|mrd|tsd|mn|mm|bn|million|billion|[kmb])\.?\+?$")


def _detect_decimal(records: list[list[str]]) -> tuple[str, bool]:
    votes = {",": 0, ".": 0}
    for rec in records[1:]:
        for cell in rec:
            if not cell or len(cell) > 40 or ":" in cell:
                continue
            core = _STRIP.sub("", cell.strip().lower())
            if _NUM_CORE.match(core):
                conv = number_convention(core)
                if conv:
                    votes[conv] += 1
    if votes[","] > votes["."]:
        return ",", True
    return ".", votes["."] > 0


@dataclass
class CsvLayout:
    dialect: Dialect
    names: list[str]  # header names, made safe (empty → "Unnamed: i")
    utf8_path: Path  # the file DuckDB reads (a UTF-8 copy when the source is not UTF-8)
    tmpdir: Path | None = None

    def close(self) -> None:
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


def sniff_csv(path: Path, options: ReadOptions | None = None) -> CsvLayout:
    """Detect (or take from ``options``) encoding, separator, trailing delimiter and decimal separator."""
    options = ReadOptions.of(options)
    file = str(path)
    size = path.stat().st_size
    if size == 0:
        raise ReadError(f"{file}: the file is empty (0 bytes): no header, no rows")
    with open(path, "rb") as f:
        head = f.read(SAMPLE_BYTES)
    how = {}
    if options.encoding:
        encoding, how["encoding"] = options.encoding, "set"
    else:
        encoding, how["encoding"] = _detect_encoding(head), "detected"
    whole = size <= SAMPLE_BYTES
    if encoding == "utf-8" and how["encoding"] == "detected" and not whole:
        # The sample is UTF-8; the rest of the file may not be (a Windows-1252 export whose first accent
        # comes after the sample): every row holding one would be lost or garbled. Text with no UTF-8
        # multi-byte character before the first invalid byte is Windows-1252; text that has some is UTF-8
        # with damaged bytes, and those rows are rejected by the reader.
        sample = _cut(head)
        ok, multibyte = _utf8_past_sample(path, len(sample))
        if not ok and sample.isascii() and not multibyte:
            encoding = "windows-1252"
    try:  # (a damaged byte in detected UTF-8 text: its row is the reader's reject, the sample is only sniffed)
        text = _sample_text(head, encoding, whole, "replace" if how["encoding"] == "detected" and
                            encoding == "utf-8" else "strict")
    except UnicodeDecodeError as exc:
        line = head[: exc.start].count(b"\n") + 1
        raise ReadError(f"{file}: line {line} is not valid {encoding} ({exc.reason}); the file's encoding is "
                        f"something else: {OPTIONS_HINT} (e.g. encoding: windows-1252)") from exc
    if how["encoding"] == "set":
        _refuse_utf8_read_as_single_byte(head if whole else _cut(head), encoding, file)
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise ReadError(f"{file}: the file holds no header and no rows (only blank space)")
    if options.sep:
        sep, how["sep"] = options.sep, "set"
    else:
        sep, how["sep"] = _detect_sep(text), "detected"
    recs = _records(text, sep)
    if not whole and len(recs) > 1:
        recs = recs[:-1]  # the last record of a sample may be cut
    header = [h.strip() for h in recs[0]]
    trailing = False
    if len(header) > 1 and header[-1] == "":
        header, trailing = header[:-1], True
    rows = [r for r in recs[1:] if r != []]
    if not trailing and rows:
        extra = sum(1 for r in rows if len(r) == len(header) + 1 and r[-1].strip() == "")
        trailing = extra > len(rows) / 2
    if options.decimal:
        decimal, how["decimal"] = options.decimal, "set"
    else:
        decimal, seen = _detect_decimal(recs)
        how["decimal"] = "detected" if seen else "default"
    names = [h if h else f"Unnamed: {i}" for i, h in enumerate(header)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ReadError(f"{file}: the header names {', '.join(repr(d) for d in dupes)} more than once; "
                        f"rename or remove the duplicate column")
    dialect = Dialect("csv", sep, encoding.replace("-sig", "") if encoding == "utf-8-sig" else encoding, decimal,
                      trailing, how)
    if encoding == "utf-8-sig":
        dialect.encoding = "utf-8 (with BOM)"
    layout = CsvLayout(dialect, names, path)
    if encoding not in ("utf-8", "utf-8-sig"):
        layout.tmpdir = Path(tempfile.mkdtemp(prefix="leadscore-read-"))
        layout.utf8_path = layout.tmpdir / (path.stem + ".utf8.csv")
        _transcode(path, layout.utf8_path, encoding, file)
    return layout


def _transcode(src: Path, dst: Path, encoding: str, file: str) -> None:
    line = 1
    try:
        with open(src, "r", encoding=encoding, newline="") as fin, open(dst, "w", encoding="utf-8", newline="") as fout:
            while True:
                chunk = fin.read(1 << 22)
                if not chunk:
                    break
                fout.write(chunk)
                line += chunk.count("\n")
    except UnicodeDecodeError as exc:
        raise ReadError(f"{file}: near line {line} the file is not valid {encoding} ({exc.reason}): "
                        f"{OPTIONS_HINT}") from exc


# ----------------------------------------------------------------------------- DuckDB sources
#: Longest CSV record read (a long quoted note field); DuckDB's buffer defaults to 16 times this (160 MB per
#: buffer, ~0.5 GiB resident while a 10M-row file is scanned): two records' worth is enough (10M events:
#: 0.14 instead of 0.51 GiB, and faster).
MAX_LINE_BYTES = 10_000_000
CSV_BUFFER_BYTES = 2 * MAX_LINE_BYTES


def _q(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def _row_numbers(accepted: np.ndarray, rejected_rows: np.ndarray) -> np.ndarray:
    """File row numbers of accepted rows k (1-based among the rows a scan accepted), given the row numbers
    the scan rejected: row k is k plus the number of rejected rows before it."""
    rejected_rows = np.sort(rejected_rows)
    c = rejected_rows - np.arange(1, len(rejected_rows) + 1)
    return accepted + np.searchsorted(c, accepted, side="left")


class Source:
    """A file as a DuckDB table expression with its 1-based row number ``_row`` (and, for a CSV with a
    trailing delimiter, ``_trailing_field_``), plus the rows the CSV reader rejected."""

    def __init__(self, path: str | Path, con: duckdb.DuckDBPyConnection, options: ReadOptions | None = None,
                 nullstr: tuple[str, ...] = ("",)):
        self.path = Path(path)
        self.file = str(self.path)
        self.con = con
        if not self.path.exists():
            raise ReadError(f"{self.path}: file not found")
        suffix = self.path.suffix.lower()
        self.layout: CsvLayout | None = None
        tag = uuid.uuid4().hex[:10]
        self._rt, self._rs = f"_rej_{tag}", f"_rejscan_{tag}"
        self._bad: pd.DataFrame | None = None
        if suffix in (".parquet", ".pq"):
            self.dialect = Dialect("parquet", how={})
            p = _q(self.path)
            self.plain = f"read_parquet({p})"
            self._numbered = f"(SELECT file_row_number + 1 AS _row, * EXCLUDE (file_row_number) FROM read_parquet({p}, file_row_number=true))"
            try:
                probe = con.sql(f"SELECT * FROM {self.plain} LIMIT 0")
            except duckdb.Error as exc:
                raise ReadError(f"{self.path}: cannot be read as Parquet: {exc}") from exc
            self.columns = list(probe.columns)
            self.types = dict(zip(probe.columns, map(str, probe.types)))
            self._bad = pd.DataFrame({"row": pd.Series(dtype="int64"), "reason": pd.Series(dtype="str"),
                                      "value": pd.Series(dtype="str")})
            return
        if suffix not in (".csv", ".txt", ".tsv", ".gz"):
            raise ReadError(f"{self.path}: unsupported file type '{suffix}'; use CSV or Parquet")
        try:
            self.layout = sniff_csv(self.path, options)
        except OSError as exc:
            raise ReadError(f"{self.path}: cannot be read: {exc}") from exc
        lay = self.layout
        self.dialect = lay.dialect
        names = lay.names + ([TRAILING] if lay.dialect.trailing_delimiter else [])
        cols = "{" + ", ".join(f"{_q(n)}: 'VARCHAR'" for n in names) + "}"
        nulls = ", ".join(_q(v) for v in nullstr)
        self.plain = (f"read_csv({_q(lay.utf8_path)}, auto_detect=false, header=true, delim={_q(lay.dialect.sep)}, "
                      f"quote='\"', escape='\"', columns={cols}, nullstr=[{nulls}], strict_mode=true, "
                      f"store_rejects=true, rejects_table={_q(self._rt)}, rejects_scan={_q(self._rs)}, "
                      f"max_line_size={MAX_LINE_BYTES}, buffer_size={CSV_BUFFER_BYTES})")
        self.columns = list(lay.names)
        self.types = {n: "VARCHAR" for n in names}
        self._numbered = None
        self._exclude_extra_field_rows(names)

    # A row with MORE fields than the header whose extra fields are all empty ("a,b, c,d,,": a separator
    # inside an unquoted value, then empty last fields) is not rejected by DuckDB's strict mode: it drops
    # the empty extras and reads the row shifted. A check-only scan counts every record's fields: one
    # sentinel column after the header's, null padding, and a null string that never occurs, so a present
    # but empty field reads '' and an absent one NULL. Such rows are rejected with their row numbers and
    # left out of ``plain`` and ``numbered()``.
    _SENTINEL = "__leadscore_extra_field__"
    #: More such rows than this: the file is refused (its separator or quoting is wrong, not a few rows).
    MAX_EXTRA_FIELD_ROWS = 1000

    def _exclude_extra_field_rows(self, names: list[str]) -> None:
        lay = self.layout
        h = len(lay.names)
        tag = uuid.uuid4().hex[:10]
        rt, rs = f"_rejx_{tag}", f"_rejxscan_{tag}"
        cols = "{" + ", ".join(f"{_q(n)}: 'VARCHAR'" for n in [*names, self._SENTINEL]) + "}"
        check = (f"read_csv({_q(lay.utf8_path)}, auto_detect=false, header=true, delim={_q(lay.dialect.sep)}, "
                 f"quote='\"', escape='\"', columns={cols}, nullstr=['\u0001leadscore-never-null'], "
                 f"null_padding=true, strict_mode=true, store_rejects=true, rejects_table={_q(rt)}, "
                 f"rejects_scan={_q(rs)}, max_line_size={MAX_LINE_BYTES}, buffer_size={CSV_BUFFER_BYTES})")
        sep = lay.dialect.sep.replace("'", "''")
        text = f" || '{sep}' || ".join(f"coalesce({_ident(n)}, '')" for n in lay.names)  # the row as written
        count = f"SELECT count(*) FROM {{}} WHERE {_ident(self._SENTINEL)} IS NOT NULL"
        try:
            # a streamed count first (numbering every row holds the file in memory); rows only when there are any
            try:
                n_hits = self.con.sql(count.format(check)).fetchall()[0][0]
            except duckdb.Error as exc:
                # DuckDB's parallel scanner cannot pad rows once a quoted value holds a line break: the file is
                # checked by one thread (never skipped: a shifted row after a multi-line note was read as valid)
                if "parallel=false" not in str(exc):
                    raise
                self.con.execute(f"DROP TABLE IF EXISTS {rt}; DROP TABLE IF EXISTS {rs}")
                check = check[:-1] + ", parallel=false)"
                n_hits = self.con.sql(count.format(check)).fetchall()[0][0]
            hits = self.con.sql(f"""
                SELECT _rn, {text} AS value FROM (
                    SELECT row_number() OVER () AS _rn, * FROM {check})
                WHERE {_ident(self._SENTINEL)} IS NOT NULL ORDER BY _rn""").df() if n_hits else \
                pd.DataFrame({"_rn": pd.Series(dtype="int64"), "value": pd.Series(dtype="str")})
        except duckdb.Error:
            self.con.execute(f"DROP TABLE IF EXISTS {rt}; DROP TABLE IF EXISTS {rs}")
            return  # the main read reports what is wrong with the file
        try:
            check_rej = self.con.sql(f"SELECT line - 1 AS row, any_value(csv_line) AS value FROM {rt} "
                                     f"GROUP BY line ORDER BY line").df()
        except duckdb.Error:  # no rejects table: the scan rejected nothing
            check_rej = pd.DataFrame({"row": pd.Series(dtype="int64"), "value": pd.Series(dtype="str")})
        finally:
            self.con.execute(f"DROP TABLE IF EXISTS {rt}; DROP TABLE IF EXISTS {rs}")
        if hits.empty and check_rej.empty:
            return
        main_bad = self.scan_rejects()  # what DuckDB itself rejected (a scan of the file)
        # record number of the check scan's accepted row k: k + the rows that scan rejected before it
        rows = _row_numbers(hits["_rn"].to_numpy(dtype="int64"), check_rej["row"].to_numpy(dtype="int64"))
        # a row with even more empty extras is rejected by the check scan, yet read (shifted) by the main one
        more = check_rej[~check_rej["row"].isin(main_bad["row"])]
        found = pd.DataFrame({"row": np.r_[rows, more["row"].to_numpy(dtype="int64")],
                              "value": pd.concat([hits["value"], more["value"]], ignore_index=True).astype("string")})
        # (rows DuckDB rejected itself, e.g. an extra field that holds a value, keep that reject)
        found = found[~found["row"].isin(main_bad["row"])].sort_values("row").reset_index(drop=True)
        if found.empty:
            return
        if len(found) > self.MAX_EXTRA_FIELD_ROWS:
            raise ReadError(f"{self.path}: {len(found):,} rows have more fields than the header's {h} (e.g. row "
                            f"{int(found['row'].iloc[0])}); the separator or the quoting is not what was "
                            f"detected ({self.dialect.describe()}): {OPTIONS_HINT}")
        rows = found["row"].to_numpy(dtype="int64")
        # the same rows as the main read's accepted row numbers: minus the rows it rejected before them
        main_rn = rows - np.searchsorted(np.sort(main_bad["row"].to_numpy(dtype="int64")), rows, side="left")
        keep = " AND ".join(f"_rn <> {int(k)}" for k in main_rn)  # no IN list: a join would lose the order
        self.plain = (f"(SELECT * EXCLUDE (_rn) FROM (SELECT row_number() OVER () AS _rn, * FROM {self.plain}) "
                      f"WHERE {keep})")
        trail = " (not counting the trailing delimiter)" if self.dialect.trailing_delimiter else ""
        extra = pd.DataFrame({"row": rows,
                              "reason": f"more fields than the header's {h}{trail}; the extra ones are empty "
                                        f"(a separator inside an unquoted value?)",
                              "value": found["value"].str.strip("\r\n").str.slice(0, 200)})
        self._bad = (pd.concat([main_bad, extra], ignore_index=True).sort_values("row", kind="stable")
                     .reset_index(drop=True))

    # the reader's rejects are known once the file has been scanned (rows rejected by field count)
    def scan_rejects(self) -> pd.DataFrame:
        """Rows the CSV reader refused (row, reason, value); scans the file if nothing has yet."""
        if self._bad is not None:
            return self._bad
        # every column read: DuckDB refuses a row with text that is not valid in the file's encoding only
        # when it decodes that column (a bare count(*) would accept it, and a later full read drop it)
        lengths = ", ".join(f"max(length({_ident(c)}))" for c in self.columns)
        try:
            self.con.execute(f"SELECT count(*){', ' + lengths if lengths else ''} FROM {self.plain}").fetchall()
        except duckdb.Error as exc:
            raise self.error(exc) from exc
        return self.collect_rejects()

    def refresh_rejects(self) -> pd.DataFrame:
        """The rejects, with rows DuckDB refused in scans since they were first collected (a scan that
        decoded columns an earlier one did not: text not valid in the file's encoding)."""
        if self.layout is None or self._bad is None:
            return self.scan_rejects()
        known, self._bad = self._bad, None
        later = self.collect_rejects()
        self._bad = (pd.concat([known, later[~later["row"].isin(known["row"])]], ignore_index=True)
                     .sort_values("row", kind="stable").reset_index(drop=True))
        return self._bad

    def collect_rejects(self) -> pd.DataFrame:
        """Read (and drop) DuckDB's rejects tables after a scan."""
        if self._bad is not None:
            return self._bad
        try:
            rej = self.con.sql(f"SELECT DISTINCT line, error_type, error_message, csv_line FROM {self._rt} "
                               f"ORDER BY line").df()
        except duckdb.Error:
            rej = pd.DataFrame(columns=["line", "error_type", "error_message", "csv_line"])
        self.con.execute(f"DROP TABLE IF EXISTS {self._rt}; DROP TABLE IF EXISTS {self._rs}")
        h = len(self.layout.names)
        reasons, counts = [], []
        for etype, msg in zip(rej["error_type"], rej["error_message"]):
            m = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", str(msg))
            counts.append(int(m.group(2)) if m else -1)
            if m and etype in ("TOO MANY COLUMNS", "MISSING COLUMNS"):
                found = int(m.group(2))
                trail = " (not counting the trailing delimiter)" if self.dialect.trailing_delimiter else ""
                found -= 1 if self.dialect.trailing_delimiter and found > h else 0
                reasons.append(f"{found} fields, header has {h}{trail}")
            elif "encoding" in str(etype).lower() or "unicode" in str(msg).lower():
                reasons.append(f"not valid {self.dialect.encoding} text: {OPTIONS_HINT}")
            else:
                reasons.append(f"unreadable row: {str(msg).splitlines()[0]}")
        bad = pd.DataFrame({"row": rej["line"].astype("int64") - 1, "reason": reasons,
                            "value": rej["csv_line"].astype("string").str.strip("\r\n").str.slice(0, 200), "_found": counts})
        # DuckDB may report one line once per extra field it stumbled on (4, 5, 6 fields): one reject per
        # row, with the row's real field count (the largest).
        bad = (bad.sort_values(["row", "_found"], ascending=[True, False], kind="stable")
               .drop_duplicates("row").drop(columns="_found").reset_index(drop=True))
        self._bad = bad
        return self._bad

    def row_range(self, start: int, stop: int) -> str:
        """A Parquet file's rows ``start`` ≤ row < ``stop`` (0-based, in the file's order) as a table
        expression with the file's columns; DuckDB skips the row groups outside the range."""
        if self.dialect.format != "parquet":
            raise ValueError("row ranges are read from a Parquet file only")
        return (f"(SELECT * EXCLUDE (file_row_number) FROM read_parquet({_q(self.path)}, file_row_number=true) "
                f"WHERE file_row_number >= {int(start)} AND file_row_number < {int(stop)})")

    def numbered(self) -> str:
        """The table with ``_row``: the file's data row number, counting the rows the reader rejected."""
        if self._numbered is not None:
            return self._numbered
        bad = self.scan_rejects()
        base = f"(SELECT row_number() OVER () AS _rn, * FROM {self.plain})"
        if bad.empty:
            self._numbered = f"(SELECT _rn AS _row, * EXCLUDE (_rn) FROM {base})"
        else:
            gaps = bad["row"].sort_values().to_numpy()
            # accepted row k is file row k + (number of rejected rows before it)
            c = gaps - pd.RangeIndex(1, len(gaps) + 1).to_numpy()
            g = pd.DataFrame({"c": c, "n": range(1, len(gaps) + 1)}).groupby("c", as_index=False)["n"].max()
            name = f"_gaps_{uuid.uuid4().hex[:8]}"
            self.con.register(name, g)
            self._numbered = (f"(SELECT s._rn + coalesce(g.n, 0) AS _row, s.* EXCLUDE (_rn) FROM {base} s "
                              f"ASOF LEFT JOIN {name} g ON s._rn > g.c)")
        return self._numbered

    def error(self, exc: Exception) -> Exception:
        """What to raise for DuckDB's error ``exc`` reading the file: a :class:`ReadError` naming the file and
        how it was read; memory running out is not the file's fault and stays what it is."""
        if isinstance(exc, duckdb.OutOfMemoryException):
            return duckdb.OutOfMemoryException(str(exc))
        msg = str(exc).splitlines()[0]
        return ReadError(f"{self.path}: cannot be read as {self.dialect.describe()}: {msg}. If this is not how the "
                         f"file is written, {OPTIONS_HINT}")

    def close(self) -> None:
        try:
            self.con.execute(f"DROP TABLE IF EXISTS {self._rt}; DROP TABLE IF EXISTS {self._rs}")
        except duckdb.Error:
            pass
        if self.layout is not None:
            self.layout.close()


@dataclass
class Table:
    frame: pd.DataFrame  # index = data row - 1; every column text for a CSV, as stored for Parquet
    bad_rows: pd.DataFrame  # row, reason, value: rows the reader refused
    dialect: Dialect
    rows_in: int  # data rows in the file, refused ones included
    empty_rows: list = field(default_factory=list)  # rows with every field empty (',,,,'): skipped as blank lines


EMPTY_RECORDS = "records with every field empty (what a spreadsheet leaves below a table): skipped, as blank lines"


def empty_records_note(rows: list[int]) -> str | None:
    """The warning line for skipped empty records (``rows``, 1-based), with the first rows; None for none."""
    if not rows:
        return None
    return f"{EMPTY_RECORDS}: {len(rows):,} (rows {', '.join(map(str, rows[:10]))}{', …' if len(rows) > 10 else ''})"


def blank_lines(bad: pd.DataFrame) -> tuple[pd.DataFrame, list[int]]:
    """(the refused rows that hold text, the rows of those that hold only spaces): a line of spaces has too
    few fields for the reader, yet it is a blank line, not a broken row."""
    if bad.empty:
        return bad, []
    blank = bad["value"].astype("string").str.strip().fillna("").eq("").to_numpy(dtype=bool)
    return bad[~blank].reset_index(drop=True), [int(r) for r in bad.loc[blank, "row"]]


def empty_records(frame: pd.DataFrame, nullstr: tuple[str, ...] = ("",)) -> pd.Index:
    """Index labels of the rows whose every field is missing, empty or blank (what Excel writes as ',,,,'
    below a table). Only rows with an empty first field are looked at further."""
    if frame.empty or not len(frame.columns):
        return frame.index[:0]

    def blank(v: pd.Series) -> np.ndarray:
        t = v.astype("string").str.strip()
        return (v.isna() | t.isna() | (t == "") | t.isin([x.strip() for x in nullstr])).to_numpy(dtype=bool)

    rows = frame.index[blank(frame.iloc[:, 0])]
    for c in frame.columns[1:]:
        if not len(rows):
            break
        rows = rows[blank(frame.loc[rows, c])]
    return rows


def read_table(path: str | Path, options: ReadOptions | None = None, nullstr: tuple[str, ...] = ("",),
               what: str = "", allow_empty: bool = False) -> Table:
    """Read a whole (small enough) table into pandas through :class:`Source`: leads, priority lists, exports.

    A file with a header and no rows raises :class:`ReadError`, unless ``allow_empty`` (a list that may
    legitimately be empty, e.g. no priority accounts): then the frame has the columns and no rows."""
    path = Path(path)
    if not path.exists():
        raise ReadError(f"{path}: file not found")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:
            raise ReadError(f"{path}: cannot be read as Parquet: {exc}") from exc
        if frame.empty and not allow_empty:
            raise ReadError(f"{path}: the file has columns ({', '.join(map(str, frame.columns))}) but no data rows")
        bad = pd.DataFrame({"row": pd.Series(dtype="int64"), "reason": pd.Series(dtype="str"),
                            "value": pd.Series(dtype="str")})
        return Table(frame.reset_index(drop=True), bad, Dialect("parquet"), len(frame))
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    src = Source(path, con, options, nullstr)
    try:
        try:
            frame = con.sql(f"SELECT * FROM {src.numbered()} ORDER BY _row").df()
        except duckdb.Error as exc:
            raise src.error(exc) from exc
        bad = src.scan_rejects()
        frame.index = frame.pop("_row").to_numpy() - 1
        if TRAILING in frame:
            over = frame.pop(TRAILING)
            extra = over.notna() & (over.astype("string").str.strip() != "")
            if extra.any():
                h = len(src.layout.names)
                bad = pd.concat([bad, pd.DataFrame({"row": frame.index[extra] + 1,
                                                    "reason": f"{h + 1} fields, header has {h}",
                                                    "value": over[extra].astype("string")})], ignore_index=True)
                frame = frame[~extra.to_numpy()]
        for c in frame.columns:
            frame[c] = frame[c].astype("string").astype(object).where(frame[c].notna(), None)
        empty = empty_records(frame, nullstr)
        if len(empty):  # a spreadsheet's ',,,,' line is a blank line: skipped, and said so
            frame = frame.drop(index=empty)
        bad, spaces = blank_lines(bad)
        rows_in = len(frame) + len(bad)
        if rows_in == 0 and allow_empty:
            return Table(frame, bad, src.dialect, 0)
        if rows_in == 0:
            raise ReadError(f"{path}: the file has a header ({', '.join(src.columns)}) but no data rows")
        if frame.empty:
            raise ReadError(f"{path}: none of its {rows_in:,} rows could be read as {src.dialect.describe()}; "
                            f"first problem: row {bad['row'].iloc[0]}: {bad['reason'].iloc[0]}. {OPTIONS_HINT}")
        return Table(frame, bad.sort_values("row").reset_index(drop=True), src.dialect, rows_in,
                     sorted([int(i) + 1 for i in empty] + spaces))
    finally:
        src.close()
        con.close()


def parquet_sql(path: str | Path) -> str:
    """``read_parquet`` of a Parquet file, or of a folder of Parquet parts (``part-00000.parquet`` …, read
    in name order: the order they were written in)."""
    p = Path(path)
    return f"read_parquet({_q(p / '*.parquet' if p.is_dir() else p)})"


def parquet_rows(path: str | Path) -> int:
    """Rows of a Parquet file or of a folder of Parquet parts, from the files' footers (no data read)."""
    import pyarrow.parquet as pq

    p = Path(path)
    return sum(pq.ParquetFile(f).metadata.num_rows for f in (sorted(p.glob("*.parquet")) if p.is_dir() else [p]))


def remove_parquet(path: str | Path) -> None:
    """Remove a Parquet file or a folder of Parquet parts at ``path`` (nothing there: nothing to do)."""
    p = Path(path)
    if p.is_dir():
        shutil.rmtree(p)
    else:
        p.unlink(missing_ok=True)


def fresh_parquet_folder(path: str | Path) -> Path:
    """An empty folder at ``path`` for Parquet parts: a file or folder left there by an earlier run is
    removed first (a stale part would otherwise be read as data)."""
    remove_parquet(path)
    Path(path).mkdir(parents=True)
    return Path(path)
