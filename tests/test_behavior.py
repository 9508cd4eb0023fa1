"""The behaviour kernel (leadscore.behavior) computes what the behaviour SQL (features._behavior_sql, the one
Spark runs) computes, value for value, on random event logs with events on every window edge; and the
scoring run's account SQL equals the training one's at one as_of."""

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore import behavior, features
from leadscore.config import FeatureParams
from leadscore.vocabulary import EVENT_TYPE_NAMES

PARAMS = FeatureParams(snapshot_every_days=7, max_age_days=120, label_horizon_days=30, windows_days=(7, 30, 90),
                       half_life_days=14, stakeholder_window_days=30, competitor_domains=(),
                       content_value={"case-study": 3.3, "blog": 0.7}, export_at="2025-06-30T00:00:00")
EXPORT = pd.Timestamp("2025-06-30")
US = pd.Timedelta(microseconds=1)
# offsets from a snapshot date that sit on the edges: the 7/30/90-day windows, their last microsecond, the
# 64-day mask word boundary, exactly as_of (excluded) and just before it
EDGES = [pd.Timedelta(days=d) for d in (0, 7, 30, 64, 90, 91, 128)] + [pd.Timedelta(days=d) - US for d in (7, 30, 90)] \
    + [US, pd.Timedelta(days=7) + US, pd.Timedelta(hours=12)]


def _connect(leads: pd.DataFrame, events: pd.DataFrame) -> duckdb.DuckDBPyConnection:
    """The frames as the validated Parquet has them (timestamps in µs), as the views the feature SQL reads."""
    leads, events = leads.copy(), events.copy()
    for df, cols in ((leads, ("created_at", "outcome_at")), (events, ("timestamp",))):
        for c in cols:
            df[c] = df[c].astype("datetime64[us]")
    events = events.astype({"lead_id": "str", "event_type": "str", "asset": "str", "percent_watched": "float64"})
    con = features.connect(threads=2)
    con.register("leads_df", leads)
    con.register("events_df", events)
    for step in features.input_sql("leads_df", "events_df", None):
        con.execute(f"CREATE OR REPLACE TEMP VIEW {step.name} AS {step.sql}")
    return con


def _steps(con, as_of):
    grid = None
    if as_of is None:
        first = con.sql(features.FIRST_CREATED_SQL).fetchall()[0][0]
        grid = features.snapshot_grid(PARAMS, EXPORT, pd.Timestamp(first))
    steps = features.feature_sql(PARAMS, as_of, EXPORT, None, grid)
    for step in steps[:3]:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {step.name} AS {step.sql}")
    return steps


def _sql_and_kernel(con, steps, tmp_path, part_rows=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    con.execute(f"CREATE OR REPLACE TEMP TABLE _b_sql AS {steps[3].sql}")
    behavior.create_behavior_view(con, PARAMS, tmp_path, name="_b_kernel", part_rows=part_rows)
    want = con.sql("SELECT * FROM _b_sql ORDER BY lead_id, as_of").df()
    got = con.sql("SELECT * FROM _b_kernel ORDER BY lead_id, as_of").df()
    behavior.drop(con, tmp_path, name="_b_kernel")
    return want, got


def assert_same_behavior(want: pd.DataFrame, got: pd.DataFrame):
    assert list(got.columns) == list(want.columns) or sorted(got.columns) == sorted(want.columns)
    got = got[want.columns]
    assert len(got) == len(want)
    pd.testing.assert_frame_equal(got[["lead_id", "as_of"]], want[["lead_id", "as_of"]])
    for c in want.columns.drop(["lead_id", "as_of"]):
        a, b = want[c], got[c]
        np.testing.assert_array_equal(b.isna().to_numpy(), a.isna().to_numpy(), err_msg=f"NULLs of {c}")
        if a.dtype.kind == "M":
            np.testing.assert_array_equal(b.to_numpy(), a.to_numpy(), err_msg=c)
            continue
        x = a.to_numpy(float, na_value=np.nan)
        y = b.to_numpy(float, na_value=np.nan)
        if c.endswith("_decayed"):
            # rounded to 6 decimals from sums of the same terms in another order (DuckDB's is a plain double
            # sum): equal, or one rounding step apart when the two sums straddle a rounding midpoint
            np.testing.assert_allclose(y, x, rtol=0, atol=1.0000001e-6, err_msg=c)
            assert np.sum((x != y) & ~np.isnan(x)) <= max(1, 0.01 * len(x)), c
        elif c in ("content_value", "watched_sum"):
            np.testing.assert_allclose(y, x, rtol=1e-12, atol=1e-9, err_msg=c)  # the SQL's plain double sum
        else:
            np.testing.assert_array_equal(y, x, err_msg=c)  # counts, stage, masks: exact


def _random_log(seed: int, n_leads: int, n_events: int, on_edges: float):
    rng = np.random.default_rng(seed)
    ids = [f"L{i}" for i in range(n_leads)]
    created = EXPORT - pd.to_timedelta(rng.integers(1, 200, n_leads), unit="D") \
        + pd.to_timedelta(rng.integers(0, 86_400_000_000, n_leads), unit="us")
    outcome = rng.choice(["won", "lost", "open"], n_leads)
    leads = pd.DataFrame({
        "lead_id": ids, "created_at": created, "account_id": rng.choice(["A1", "A2", "A3", None], n_leads),
        "email_domain": rng.choice(["acme.com", "gmail.com", None], n_leads), "title": None, "industry": None,
        "employees": np.nan, "annual_revenue": np.nan, "country": None, "lead_source": None, "outcome": outcome,
        "outcome_at": [c + pd.Timedelta(days=int(d)) if o != "open" else pd.NaT
                       for c, o, d in zip(created, outcome, rng.integers(1, 150, n_leads))]})
    # snapshot dates and a fixed scoring moment: events placed on their edges as well as at random
    anchors = [EXPORT - pd.Timedelta(days=7 * k) for k in range(30)] + [pd.Timestamp("2025-06-15 08:00")]
    lead = rng.integers(0, n_leads, n_events)
    random_ts = EXPORT - pd.to_timedelta(rng.integers(0, 250 * 86_400_000_000, n_events), unit="us")
    edge_ts = pd.DatetimeIndex([anchors[i] for i in rng.integers(0, len(anchors), n_events)]) \
        - pd.TimedeltaIndex([EDGES[i] for i in rng.integers(0, len(EDGES), n_events)])
    ts = np.where(rng.random(n_events) < on_edges, edge_ts, random_ts)
    kinds = rng.choice(list(EVENT_TYPE_NAMES), n_events)
    events = pd.DataFrame({
        "lead_id": [ids[i] for i in lead], "timestamp": pd.DatetimeIndex(ts), "event_type": kinds,
        "asset": rng.choice(["case-study:x", "blog:y", "whitepaper", None], n_events),
        "percent_watched": np.where(rng.random(n_events) < 0.3, np.nan, rng.choice([0, 33.3, 50.5, 100], n_events))})
    return leads, events.sample(frac=1, random_state=seed)  # in no lead order


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), n_leads=st.integers(1, 40), n_events=st.integers(0, 400),
       on_edges=st.sampled_from([0.0, 0.5, 1.0]), training=st.booleans(), n_parts=st.integers(1, 4))
def test_kernel_equals_the_behaviour_sql(tmp_path, seed, n_leads, n_events, on_edges, training, n_parts):
    """Also when the rows are aggregated in parts (``n_parts`` ranges of rows)."""
    leads, events = _random_log(seed, n_leads, n_events, on_edges)
    con = _connect(leads, events)
    steps = _steps(con, None if training else pd.Timestamp("2025-06-15 08:00"))
    rows = con.sql("SELECT count(*) FROM _snap").fetchall()[0][0]
    want, got = _sql_and_kernel(con, steps, tmp_path, part_rows=max(1, -(-rows // n_parts)))
    assert_same_behavior(want, got)


@given(part_rows=st.integers(1, 10**6), n_over=st.integers(0, 300), extra=st.integers(0, 10**6))
def test_parts_cover_every_row_once_in_even_ranges_of_at_most_part_rows(part_rows, n_over, extra):
    n = part_rows * n_over + extra % part_rows  # up to ~300 parts, any remainder
    parts = behavior.parts(n, part_rows)
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))  # contiguous: every row once
    sizes = [hi - lo for lo, hi in parts]
    assert max(sizes) <= part_rows and max(sizes) - min(sizes) <= 1
    assert len(parts) == max(1, -(-n // part_rows))  # as few parts as the limit allows


@pytest.mark.parametrize("as_of", [None, "2025-06-15 08:00"], ids=["training", "scoring"])
def test_a_feature_table_built_in_parts_is_the_one_built_at_once(tmp_path, as_of):
    """Parts of a few rows up to all rows in one (the behaviour kernel's and, when scoring, the table's own
    parts, each a range of leads) give the table of one part: same rows, values, order and schema."""
    leads, events = _random_log(11, 40, 2000, 0.5)
    # ids that sort awkwardly: case, accents, emoji, quotes, a leading space, numbers of different lengths
    awkward = ["a", "A", "é", "É", "z", "😀", "'q", '"q', " x", "9", "10", "100", "L1", "l1", "Ü-ö", "ß"]
    ids = {f"L{i}": awkward[i] if i < len(awkward) else f"L{i}" for i in range(40)}
    leads["lead_id"], events["lead_id"] = leads["lead_id"].map(ids), events["lead_id"].map(ids)
    for df, cols in ((leads, ("created_at", "outcome_at")), (events, ("timestamp",))):
        for c in cols:
            df[c] = df[c].astype("datetime64[us]")
    leads.to_parquet(tmp_path / "leads.parquet", index=False)
    events.astype({"percent_watched": "float64"}).to_parquet(tmp_path / "events.parquet", index=False)

    def build(part_rows):
        out = features.build_features(tmp_path / "leads.parquet", tmp_path / "events.parquet",
                                      tmp_path / f"f{part_rows}", PARAMS, as_of=as_of, part_rows=part_rows)
        return pq.read_table(out.features)

    whole = build(10**9)
    assert whole.num_rows >= 30
    keys = whole.select(["lead_id", "as_of"]).to_pandas()
    assert keys.equals(keys.sort_values(["lead_id", "as_of"]).reset_index(drop=True))
    for n_parts in (2, 5, 9):
        t = build(-(-whole.num_rows // n_parts))
        assert t.schema.equals(whole.schema) and t.equals(whole), n_parts


def test_kernel_counts_hand_made_edges(tmp_path):
    """One lead scored at as_of: what lands in which window and on which day, by hand."""
    as_of = pd.Timestamp("2025-06-15 08:00")
    leads, _ = _random_log(0, 1, 0, 0)
    leads["created_at"] = as_of - pd.Timedelta(days=300)
    leads["outcome"], leads["outcome_at"] = "open", pd.NaT
    at = lambda d: as_of - d  # noqa: E731
    events = pd.DataFrame({"lead_id": "L0", "event_type": "pricing_page", "asset": None, "percent_watched": np.nan,
                           "timestamp": [at(pd.Timedelta(0)),  # at as_of: not counted
                                         at(US),  # 7d, 30d, 90d; day 0
                                         at(pd.Timedelta(days=7)),  # exactly 7 days: inside 7d; day 7
                                         at(pd.Timedelta(days=7) + US),  # outside 7d; day 7
                                         at(pd.Timedelta(days=90)),  # inside 90d, on the last day (89)
                                         at(pd.Timedelta(days=90) + US)]})  # outside every window
    con = _connect(leads, events)
    want, got = _sql_and_kernel(con, _steps(con, as_of), tmp_path)
    assert_same_behavior(want, got)
    row = got.iloc[0]
    assert (row["pricing_page_7d"], row["pricing_page_30d"], row["pricing_page_90d"]) == (2, 3, 4)
    mask = int(row["day_mask_0"]) | (int(row["day_mask_1"]) << 64)
    assert sorted(i for i in range(128) if mask >> i & 1) == [0, 7, 89]
    assert row["first_ts"] == at(pd.Timedelta(days=90) + US) and row["last_ts"] == at(US)


def test_no_events_gives_no_rows_with_the_sql_columns(tmp_path):
    leads, events = _random_log(1, 5, 0, 0)
    con = _connect(leads, events)
    want, got = _sql_and_kernel(con, _steps(con, pd.Timestamp("2025-06-15")), tmp_path)
    assert len(want) == len(got) == 0
    assert sorted(got.columns) == sorted(want.columns)


def test_same_events_in_another_order_give_the_same_bytes(tmp_path):
    leads, events = _random_log(7, 30, 3000, 0.5)
    out = []
    for k, ev in enumerate((events, events.iloc[::-1], events.sample(frac=1, random_state=3))):
        con = _connect(leads, ev)
        _steps(con, None)
        behavior.create_behavior_view(con, PARAMS, tmp_path, name="_b")
        con.execute(f"COPY (SELECT * FROM _b ORDER BY lead_id, as_of) TO '{tmp_path}/b{k}.parquet' (FORMAT parquet)")
        out.append((tmp_path / f"b{k}.parquet").read_bytes())
    assert out[0] == out[1] == out[2]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), n_leads=st.integers(1, 40), n_events=st.integers(0, 300))
def test_scoring_account_sql_equals_the_training_one_at_one_as_of(tmp_path, seed, n_leads, n_events):
    leads, events = _random_log(seed, n_leads, n_events, 0.5)
    con = _connect(leads, events)
    steps = _steps(con, pd.Timestamp("2025-06-15 08:00"))
    con.execute(f"CREATE OR REPLACE TEMP TABLE _behavior AS {steps[3].sql}")
    want = con.sql(f"SELECT lead_id, coalesce(engaged_stakeholders, 0) AS e, coalesce(known_leads, 0) AS k "
                   f"FROM ({features._account_sql(PARAMS)}) ORDER BY lead_id").df()
    got = con.sql(f"SELECT lead_id, coalesce(engaged_stakeholders, 0) AS e, coalesce(known_leads, 0) AS k "
                  f"FROM ({features._account_at_sql(PARAMS)}) ORDER BY lead_id").df()
    keep = lambda df: df[(df["e"] != 0) | (df["k"] != 0)].reset_index(drop=True)  # noqa: E731  (no row = 0)
    pd.testing.assert_frame_equal(keep(got), keep(want), check_dtype=False)

