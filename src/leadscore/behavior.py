"""The behaviour aggregate of the feature table (``_behavior``), computed by a Numba kernel over the events
DuckDB streams to it, instead of DuckDB's two hash aggregations.

What it computes is defined by :func:`leadscore.features._behavior_sql` — the SQL that Spark runs — and it
computes exactly that, value for value (``tests/test_behavior.py`` checks both on random event logs, window
edges included): per feature row (lead, as_of), over the events of the feature types strictly before
``as_of``, per event type the count in each window and the recency-weighted count (half-life decay,
rounded to 6 decimals as the SQL rounds), the first and last event, the first late-funnel event, the
furthest funnel stage, the content value, the webinar watch time and the bit mask of active days. A row
exists only for a (lead, as_of) with at least one such event, as in the SQL's GROUP BY.

Why: DuckDB's aggregation of 98M events to 10.4M (lead, event type) groups and then to 1M leads took 44-58 s
of a 1M-lead scoring job at the job's 768MB memory limit (31 s without one), most of it hash-table work and
spilling; DuckDB joins and streams the same events to Python in ~6 s, and the kernel adds each event to
dense per-row arrays in ~1 s, in memory proportional to the feature rows, not to the events.

Summation order: a sum of doubles depends on the order of its terms, and DuckDB streams a parallel join's
rows in no fixed order (its own parallel ``sum(DOUBLE)`` had no fixed order either). The sums of recency
weights, content values and watch percentages are compensated (Kahan-Babuska-Neumaier: Neumaier, 1974, ZAMM
54(1)): a running sum and the exact rounding error of each addition, added at the end, so the result is the
correctly rounded sum but for an error of about n·2**-106 of the terms' size. The same events in another
order then give the same double unless the exact sum lies within that error of a rounding midpoint, and it
is closer to the true sum than a plain double sum (DuckDB's or Spark's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numba import njit

from leadscore.config import FeatureParams
from leadscore.memory import job_heap, release_memory
from leadscore.numba_cache import CACHE_DIR  # noqa: F401  (set before the kernels below compile)
from leadscore.reader import parquet_sql
from leadscore.vocabulary import FEATURE_EVENT_TYPES, LATE_FUNNEL, STAGE_RANK

#: Events handed to the kernel at a time (rows of one Arrow batch: ~30 bytes each).
BATCH_ROWS = 1_000_000
_US_PER_DAY = 86_400_000_000
_FIRST, _LAST, _FIRST_LATE, _STAGE, _CONTENT_N, _WATCHED_N, _MASKS = range(7)  # columns of the kernel's ``moments``
_NO_TS = np.iinfo(np.int64).max


@njit(cache=True, nogil=True)
def _round6(x):
    """DuckDB's ``round(x, 6)`` for a double: ``std::round(x * 1e6) / 1e6`` (halves away from zero)."""
    v = x * 1e6
    r = math.floor(v)
    if v - r >= 0.5:
        r += 1.0
    return r / 1e6


@njit(cache=True, nogil=True, inline="always")
def _add(sums, r, k, x):
    """sums[r, k, 0] += x, the rounding error of the addition kept in sums[r, k, 1] (Neumaier's summation)."""
    s = sums[r, k, 0]
    t = s + x
    if abs(s) >= abs(x):
        sums[r, k, 1] += (s - t) + x
    else:
        sums[r, k, 1] += (x - t) + s
    sums[r, k, 0] = t


@njit(cache=True, nogil=True)
def _add_events(row, ts, code, value, as_of, win_us, wmax, decay, is_late, rank, content_code, webinar_code,
                counts, moments, sums):
    """Add one batch of events to the per-row state; each row's state is contiguous (an event touches a
    few cache lines, not one per array).

    row: int64 feature row of each event; ts: int64 µs; code: int8 event type; value: the content value of a
    content download, the percent watched of a webinar attendance (NaN: none); as_of: int64 µs per row.
    Events must be before their row's as_of. State, per row: ``counts`` int32 [type, 1 + windows] (events
    of the type, then in each window); ``moments`` int64 (see :data:`_MOMENTS`, then the day masks' bits);
    ``sums`` float64 [k, 2] compensated sums (:func:`_add`): k < n_types the recency weights of type k,
    then the content value, then the percent watched."""
    n_win = win_us.shape[0]
    n_types = counts.shape[1]
    wmax_us = np.int64(wmax) * _US_PER_DAY
    for i in range(row.shape[0]):
        r = row[i]
        t = ts[i]
        c = code[i]
        a = as_of[r]
        counts[r, c, 0] += 1
        for j in range(n_win):
            if t >= a - win_us[j]:
                counts[r, c, j + 1] += 1
        # (epoch(as_of) - epoch(timestamp)) / 86400.0, as DuckDB computes it: epoch() is µs / 1e6 as a double
        age = (a / 1e6 - t / 1e6) / 86400.0
        _add(sums, r, c, math.exp(-decay * age))
        m = moments[r]
        if t < m[_FIRST]:
            m[_FIRST] = t
        if t > m[_LAST]:
            m[_LAST] = t
        if is_late[c] and t < m[_FIRST_LATE]:
            m[_FIRST_LATE] = t
        if rank[c] > m[_STAGE]:
            m[_STAGE] = rank[c]
        if not math.isnan(value[i]):
            if c == content_code:
                _add(sums, r, n_types, value[i])
                m[_CONTENT_N] += 1
            elif c == webinar_code:
                _add(sums, r, n_types + 1, value[i])
                m[_WATCHED_N] += 1
        if t >= a - wmax_us:
            day = min(np.int64(math.floor(age)), wmax - 1)
            m[_MASKS + day // 64] |= np.int64(1) << np.int64(day % 64)


@njit(cache=True, nogil=True)
def _round6_all(values):
    out = np.empty(values.shape)
    for r in range(values.shape[0]):
        for c in range(values.shape[1]):
            out[r, c] = _round6(values[r, c])
    return out


def events_sql(params: FeatureParams, rows: tuple[int, int] | None = None) -> str:
    """The events the kernel reads, one row per (event, feature row it counts for): the row number, the
    timestamp in µs, the event type's code (its index in FEATURE_EVENT_TYPES), and the content value of a
    content download or the percent watched of a webinar attendance (NULL: none). Reads ``_events`` and
    ``_snap_rows``; ``rows`` (lo, hi): only the feature rows lo <= rn < hi, numbered from 0 (rn - lo)."""
    from leadscore.features import _content_value_sql, _sql_list

    types = [e.name for e in FEATURE_EVENT_TYPES]
    code = "CASE e.event_type " + " ".join(f"WHEN '{t}' THEN {i}" for i, t in enumerate(types)) + " END"
    lo, where = 0, ""
    if rows is not None:
        lo, hi = (int(x) for x in rows)
        where = f" AND s.rn >= {lo} AND s.rn < {hi}"
    return f"""
        SELECT s.rn - {lo} AS rn, epoch_us(e.timestamp) AS ts, CAST({code} AS TINYINT) AS code,
               CASE WHEN e.event_type = 'content_download' THEN {_content_value_sql(params)}
                    WHEN e.event_type = 'webinar_attend' THEN e.percent_watched END AS value
        FROM _events e JOIN _snap_rows s ON e.lead_id = s.lead_id
        WHERE e.timestamp < s.as_of AND e.event_type IN ({_sql_list(types)}){where}"""


def _floats(col) -> np.ndarray:
    return col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


@dataclass
class BehaviorState:
    """The kernel's per-row state (see :func:`_add_events`), for the rows of ``_snap_rows`` in order."""
    counts: np.ndarray  # int32 [rows, types, 1 + windows]
    moments: np.ndarray  # int64 [rows, _MASKS + masks]
    sums: np.ndarray  # float64 [rows, types + 2, 2]


#: Feature rows the kernel holds state for at a time (~0.42 KB a row: ~0.1 GB). More rows are aggregated in
#: parts of this many, each from its own join of the events with its rows: the state, and the join's hash
#: table, no longer grow with the leads. Each part reads the event log again, but DuckDB prunes what the
#: join cannot match (measured on 98M events, 1M feature rows: one pass 4.5 s on an event log grouped by
#: lead, 14.4 s on one in time order; a part of 125k rows 0.6 s and 4.5 s).
PART_ROWS = 250_000


def parts(n: int, part_rows: int | None = None) -> list[tuple[int, int]]:
    """Row ranges [lo, hi) of at most ``part_rows`` (default :data:`PART_ROWS`) covering 0..n, as even as
    possible (n = 0: one empty range)."""
    k = max(1, math.ceil(n / (part_rows or PART_ROWS)))
    cuts = [round(i * n / k) for i in range(k + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def aggregate(con: duckdb.DuckDBPyConnection, params: FeatureParams,
              rows: tuple[int, int] | None = None) -> BehaviorState:
    """Stream the events of ``_events`` before each row's as_of through the kernel, for the rows of
    ``_snap_rows`` (lead_id, as_of, rn = 0..n-1) with lo <= rn < hi (``rows``; default all); the state's
    row i is rn = lo + i. Memory: ~0.42 KB a row, plus one batch of events."""
    types = FEATURE_EVENT_TYPES
    wins = list(params.windows_days)
    wmax = max(wins)
    where = "" if rows is None else f" WHERE rn >= {int(rows[0])} AND rn < {int(rows[1])}"
    as_of = con.sql(f"SELECT epoch_us(as_of) FROM _snap_rows{where} ORDER BY rn").fetchnumpy()
    as_of = np.ascontiguousarray(next(iter(as_of.values())), dtype=np.int64)
    from leadscore.features import _n_masks  # (features imports this module)

    n, t, m = len(as_of), len(types), _n_masks(wmax)
    state = BehaviorState(np.zeros((n, t, 1 + len(wins)), np.int32), np.zeros((n, _MASKS + m), np.int64),
                          np.zeros((n, t + 2, 2)))
    state.moments[:, [_FIRST, _FIRST_LATE]] = _NO_TS
    state.moments[:, _LAST] = -_NO_TS - 1
    win_us = np.array(wins, np.int64) * _US_PER_DAY
    is_late = np.array([e.stage == LATE_FUNNEL for e in types])
    rank = np.array([STAGE_RANK[e.stage] for e in types], np.int64)
    names = [e.name for e in types]
    decay = math.log(2) / params.half_life_days
    for batch in con.sql(events_sql(params, rows)).to_arrow_reader(BATCH_ROWS):
        _add_events(batch.column(0).to_numpy(), batch.column(1).to_numpy(), batch.column(2).to_numpy(),
                    _floats(batch.column(3)), as_of, win_us, wmax, decay, is_late, rank,
                    names.index("content_download"), names.index("webinar_attend"),
                    state.counts, state.moments, state.sums)
    return state


#: Feature rows per Arrow table written from the kernel's state (~0.6 KB a row: ~40 MB at a time; 262,144
#: rows took 1M leads' feature build from 1.1 to 1.5 GiB at its peak).
TABLE_ROWS = 65_536


def tables(state: BehaviorState, params: FeatureParams, first_rn: int = 0):
    """The state as Arrow tables of up to :data:`TABLE_ROWS` rows: ``rn`` (``first_rn`` + the state's row)
    and the columns of :func:`leadscore.features._behavior_sql` but lead_id and as_of, for the rows with an
    event."""
    names = [e.name for e in FEATURE_EVENT_TYPES]
    n = state.counts.shape[0]
    for lo in range(0, n, TABLE_ROWS):
        part = slice(lo, min(n, lo + TABLE_ROWS))
        counts = state.counts[part]
        keep = np.flatnonzero(counts[:, :, 0].any(axis=1))
        yield _table(first_rn + lo + keep, counts[keep], state.moments[part][keep], state.sums[part][keep], params, names)


def _table(rn: np.ndarray, counts: np.ndarray, moments: np.ndarray, sums: np.ndarray, params: FeatureParams,
           names: list[str]) -> pa.Table:
    """Rows of the kernel's state as the SQL's columns (types and NULLs as its aggregates give them)."""
    values = sums[:, :, 0] + sums[:, :, 1]
    t = len(names)
    decayed = np.ascontiguousarray(_round6_all(values[:, :t]).T).T  # columns contiguous
    cols: dict[str, pa.Array] = {"rn": pa.array(rn.astype(np.int64))}
    for c, name in enumerate(names):
        of_type = np.ascontiguousarray(counts[:, c, :].T)  # [1 + windows, rows]: strided reads once
        none = of_type[0] == 0
        for j, w in enumerate(params.windows_days):
            cols[f"{name}_{w}d"] = pa.array(of_type[j + 1].astype(np.float64), mask=none)
        cols[f"{name}_decayed"] = pa.array(decayed[:, c], mask=none)
    ts = pa.timestamp("us")
    cols["first_ts"] = pa.array(moments[:, _FIRST], ts)
    cols["last_ts"] = pa.array(moments[:, _LAST], ts)
    cols["first_late_ts"] = pa.array(moments[:, _FIRST_LATE], ts, mask=moments[:, _FIRST_LATE] == _NO_TS)
    cols["furthest_stage"] = pa.array(moments[:, _STAGE].astype(np.int32))
    cols["content_value"] = pa.array(values[:, t], mask=moments[:, _CONTENT_N] == 0)
    cols["watched_sum"] = pa.array(values[:, t + 1], mask=moments[:, _WATCHED_N] == 0)
    cols["watched_n"] = pa.array(moments[:, _WATCHED_N])
    for i in range(moments.shape[1] - _MASKS):
        cols[f"day_mask_{i}"] = pa.array(moments[:, _MASKS + i].view(np.uint64))
    return pa.table(cols)


@job_heap()  # the collections between parts scan only what the aggregation makes (memory.job_heap)
def create_behavior_view(con: duckdb.DuckDBPyConnection, params: FeatureParams, scratch: Path,
                         name: str = "_behavior", part_rows: int | None = None) -> None:
    """A view ``name`` (lead_id, as_of, the behaviour aggregate) over ``_snap`` and ``_events``: what
    ``CREATE TEMP TABLE _behavior AS`` :func:`leadscore.features._behavior_sql` creates. The rows are written
    to ``scratch/behavior.parquet`` (compressed: 1M leads ~0.1 GB, where a DuckDB table held ~0.6 GB beside
    the kernel's state); the view also reads the table ``_snap_rows``, so drop both with :func:`drop`.
    The rows are aggregated in parts of ``part_rows`` (default :data:`PART_ROWS`; see :func:`parts`)."""
    # rows numbered in (lead_id, as_of) order: a part of rows is a range of leads, as the feature table's
    # parts are (leadscore.features.build_features)
    con.execute("CREATE OR REPLACE TEMP TABLE _snap_rows AS SELECT lead_id, as_of, "
                "CAST(row_number() OVER (ORDER BY lead_id, as_of) - 1 AS BIGINT) AS rn FROM _snap")
    n = con.sql("SELECT count(*) FROM _snap_rows").fetchall()[0][0]
    path = Path(scratch) / "behavior.parquet"
    writer = None
    try:
        for lo, hi in parts(n, part_rows):
            state = aggregate(con, params, (lo, hi))
            for table in tables(state, params, first_rn=lo):
                writer = writer or pq.ParquetWriter(path, table.schema, compression="zstd")
                writer.write_table(table)
            if writer is None and hi == n:  # no row with an event: the columns, no rows
                names = [e.name for e in FEATURE_EVENT_TYPES]
                pq.write_table(_table(np.zeros(0, np.int64), state.counts[:0], state.moments[:0], state.sums[:0],
                                      params, names), path)
            del state
            release_memory()  # the state's pages, before the next part or DuckDB's final query takes its share
    finally:
        if writer is not None:
            writer.close()
    con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT s.lead_id, s.as_of, b.* EXCLUDE (rn) "
                f"FROM {parquet_sql(path)} b JOIN _snap_rows s ON s.rn = b.rn")


def drop(con: duckdb.DuckDBPyConnection, scratch: Path, name: str = "_behavior") -> None:
    """Remove the view, its row table and its Parquet file."""
    con.execute(f"DROP VIEW IF EXISTS {name}")
    con.execute("DROP TABLE IF EXISTS _snap_rows")
    (Path(scratch) / "behavior.parquet").unlink(missing_ok=True)
