"""Spark runs equal local runs: the feature build from the same SQL definitions (transpiled with SQLGlot)
and the batch job scored with ``mapInPandas``, on the same input, give the same output.

One local[2] SparkSession for the module. Skipped when pyspark, sqlglot or Java is missing, unless the
environment variable CI is set: then those tests fail instead of silently not running.
"""

from __future__ import annotations

import os
import shutil

import duckdb
import joblib
import numpy as np
import pandas as pd
import pytest

from leadscore import features
from leadscore.batch import score_leads
from leadscore.config import FeatureParams
from leadscore.features import snapshot_grid
from leadscore.vocabulary import FEATURE_EVENT_TYPES

pytestmark = pytest.mark.slow

AS_OF = "2026-06-01T00:00:00"


def _missing_spark() -> str | None:
    try:
        import pyspark  # noqa: F401
        import sqlglot  # noqa: F401
    except ImportError as exc:
        return f"the spark extra is not installed ({exc}); install leadscore[spark]"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "no Java runtime on PATH or JAVA_HOME (Spark needs Java 17+)"
    return None


@pytest.fixture(scope="module")
def lsp():
    reason = _missing_spark()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the Spark tests must run, but {reason}", pytrace=False)
        pytest.skip(reason)
    from leadscore import spark as module

    return module


#: A test session's JVM lives a few minutes and runs many small queries: the JIT's first tier only (C1) and
#: the serial collector, not the server defaults tuned for long jobs (measured on the feature tests of this
#: module: 110-117 s of CPU instead of 192 s, in the same time).
SHORT_LIVED_JVM = "-XX:TieredStopAtLevel=1 -XX:CICompilerCount=1 -XX:+UseSerialGC"


@pytest.fixture(scope="module")
def spark(lsp):
    session = lsp.session("local[2]", "leadscore-tests", conf={
        "spark.sql.session.timeZone": "UTC", "spark.ui.enabled": "false", "spark.driver.memory": "2g",
        "spark.sql.shuffle.partitions": "4", "spark.driver.extraJavaOptions": SHORT_LIVED_JVM})
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _assert_same_table(local: pd.DataFrame, spark: pd.DataFrame, key=("lead_id", "as_of")) -> None:
    """Same rows, columns (in order) and dtypes; floats equal to 1e-9, everything else exactly."""
    assert list(spark.columns) == list(local.columns)
    key = [k for k in ([key] if isinstance(key, str) else key) if k in local.columns]
    local = local.sort_values(key).reset_index(drop=True)
    spark = spark.sort_values(key).reset_index(drop=True)
    assert spark[key].to_numpy().tolist() == local[key].to_numpy().tolist()
    assert spark.dtypes.astype(str).to_dict() == local.dtypes.astype(str).to_dict()
    for c in local.columns:
        a, b = local[c], spark[c]
        if pd.api.types.is_float_dtype(a):
            np.testing.assert_allclose(b.to_numpy(float), a.to_numpy(float), rtol=0, atol=1e-9, err_msg=c)
        else:
            assert b.isna().tolist() == a.isna().tolist(), c
            assert b[b.notna()].tolist() == a[a.notna()].tolist(), c


def _compare_builds(lsp, spark, tmp, leads, events, params, priority=None, as_of=None, extra=None):
    local = features.build_features(leads, events, tmp / "duckdb", params, priority_path=priority, as_of=as_of,
                                    extra=extra)
    built = lsp.spark_features(spark, leads, events, params, priority, as_of, extra)
    assert built.export_at == local.export_at
    _assert_same_table(pd.read_parquet(local.features), built.features.toPandas())
    lsp._exclusions_frame(built).to_csv(tmp / "spark_exclusions.csv", index=False)
    assert (tmp / "spark_exclusions.csv").read_bytes() == local.exclusions.read_bytes()
    return pd.read_parquet(local.features)


# ----------------------------------------------------------------------------- the SQL rewrites
def test_each_rewrite_computes_what_duckdb_computes_where_plain_transpilation_does_not(lsp, spark, tmp_path):
    import sqlglot

    x = pd.DataFrame({
        "i": range(6),
        # near-ties of a 3-decimal round (k / 86400 days) and a 6-decimal one: DuckDB rounds x * 10^d
        "v": [43416 / 86400.0, 173448 / 86400.0, 33.0598385, 0.0025, 2.5, -1.0075],
        "title": ["directorå of sales", "sr. director", "director2", "ådirector", "it manager", None],
        "ts": pd.to_datetime(["2025-01-01 00:00:00.25", "2025-03-01 12:00:00.999999", "2025-06-01",
                              "1969-12-31 23:59:59.5", "2025-01-01", None], format="ISO8601").astype("datetime64[us]"),
        "d": pd.array([0, 1, 62, 63, 63, None], dtype="Int64"),
    })
    x.to_parquet(tmp_path / "x.parquet", index=False)
    spark.read.parquet(str(tmp_path / "x.parquet")).createOrReplaceTempView("_x")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE VIEW _x AS SELECT * FROM read_parquet('{tmp_path / 'x.parquet'}')")
    cases = {
        "round": "SELECT i, round(v, 3) AS a, round(v, 6) AS b FROM _x",
        "regex": r"SELECT i, regexp_matches(title, '\b(director)\b') AS a, regexp_matches(title, '(\bit\b|x)') AS b FROM _x",
        "epoch": "SELECT i, epoch(ts) AS a, round((epoch(ts) - epoch(TIMESTAMP '2025-01-01')) / 86400.0, 3) AS b FROM _x",
        "masks": "SELECT 0 AS i, bit_count(bit_or(CASE WHEN d >= 0 THEN (1::UBIGINT) << (d)::UBIGINT "
                 "ELSE 0::UBIGINT END)) AS a, bit_or(d) AS b FROM _x",
    }
    for name, sql in cases.items():
        expected = con.sql(sql).df().sort_values("i").reset_index(drop=True)
        got = spark.sql(lsp.spark_sql(sql)).toPandas().sort_values("i").reset_index(drop=True)
        for c in ("a", "b"):
            assert got[c].astype(object).where(got[c].notna(), None).tolist() == \
                expected[c].astype(object).where(expected[c].notna(), None).tolist(), (name, c)
        plain = sqlglot.transpile(sql, read="duckdb", write="spark")[0]
        try:
            naive = spark.sql(plain).toPandas().sort_values("i").reset_index(drop=True)
        except Exception:  # noqa: BLE001 - e.g. UBIGINT is no Spark type
            continue
        assert not naive[["a", "b"]].equals(got[["a", "b"]]), f"{name}: the rewrite should not be needed?"


def test_title_rules_on_spark_equal_duckdb_on_the_title_table(lsp, spark, tmp_path):
    """Every title of the title table (tests/test_titles.py), and Unicode/whitespace corners, classified by
    the transpiled CASE on Spark exactly as by DuckDB: word boundaries, anchors and precedence."""
    from tests.test_titles import TITLES as TABLE

    titles = list(TABLE) + TITLES + ["Geschäftsführerin", "Directeur Général", "PARTNER", "partner (tax)",
                                     "Senior Partner", "Head of Partnerships", "ceo\u00e5", "\u00e5vp sales"]
    x = pd.DataFrame({"i": range(len(titles)), "title": pd.Series(titles, dtype=object)})
    x.to_parquet(tmp_path / "t.parquet", index=False)
    spark.read.parquet(str(tmp_path / "t.parquet")).createOrReplaceTempView("l")
    con = duckdb.connect()
    con.execute(f"CREATE VIEW l AS SELECT * FROM read_parquet('{tmp_path / 't.parquet'}')")
    sql = (f"SELECT l.i, {features._title_sql(features.SENIORITY_RULES, 'individual_contributor')} AS a, "
           f"{features._title_sql(features.FUNCTION_RULES, 'other')} AS b FROM l")
    expected = con.sql(sql).df().sort_values("i").reset_index(drop=True)
    got = spark.sql(lsp.spark_sql(sql)).toPandas().sort_values("i").reset_index(drop=True)
    assert got["a"].tolist() == expected["a"].tolist()
    assert got["b"].tolist() == expected["b"].tolist()
    assert expected.loc[[titles.index(t) for t in TABLE], ["a", "b"]].apply(tuple, axis=1).tolist() == list(TABLE.values())


# ----------------------------------------------------------------------------- features
@pytest.mark.parametrize("as_of", [None, AS_OF], ids=["training-snapshots", "scoring"])
def test_spark_features_equal_duckdb_features(lsp, spark, pipeline_data, tmp_path, as_of):
    v, params = pipeline_data["tmp"] / "validated", pipeline_data["params"].features
    table = _compare_builds(lsp, spark, tmp_path, v / "leads.parquet", v / "events.parquet", params,
                            v / "priority_accounts.parquet", as_of)
    assert len(table) > 300
    assert table["label"].notna().any() if as_of is None else table["label"].isna().all()


EDGE_AS_OF = pd.Timestamp("2025-06-01 12:00:00.250000")
# Seconds before as_of: at as_of (excluded), just before, window edges (exactly 7, 30, 90 days: inside),
# just past 90 days, day 63 (the top bit of the first day mask), fractions of a second.
OFFSETS = [0, 1e-6, 216, 7 * 86400, 30 * 86400, 90 * 86400, 90 * 86400 + 1, 63.5 * 86400, 64.2 * 86400,
           89.9 * 86400, 12.3456789, 5 * 86400 + 0.5]
# Near-ties of the 3-decimal day rounds, where Spark's own ROUND differs from DuckDB's: last activity
# 0.5025 days before as_of, first touch 2.0075 days, first touch to pricing page 0.5075 days.
TIES = [(43416, "web_visit"), (129600, "pricing_page"), (173448, "email_open")]
TITLES = ["Directorå of Sales", "Ingeniør", "Head of IT", "vp\tsales", "  CEO  ", "Sr. Director", "director2",
          "Σ-Director", "Marketing Team-Lead", "", None, "IT", "CTO/Founder", "Président", "Data Engineer", "HR",
          "chief of staff", "ADMIN ASSISTANT", "Graduate Student", "Head of Sales Development (SDR)"]


def _edge_cases(tmp, params: FeatureParams, as_of):
    """Few leads, every corner the translation has to get right."""
    rng = np.random.default_rng(7)
    n = len(TITLES)
    created = EDGE_AS_OF - pd.to_timedelta(np.linspace(200, 5, n), unit="D") + pd.to_timedelta(
        rng.integers(0, 10**6, n), unit="us")
    outcome = np.array(["won", "lost", "open", "won", "open"] * 4)
    leads = pd.DataFrame({
        "lead_id": [f"E{i:03d}" for i in range(n)],
        "created_at": created.astype("datetime64[us]"),
        "account_id": ["A1"] * 5 + ["A2"] * 3 + [None] * (n - 8),
        "email_domain": (["acme.com", "gmail.com", "rivalscore.io", None, ""] * 4),
        "title": TITLES,
        "industry": [" Software ", "software", None, "", "Retail"] * 4,
        "employees": [10, 10.5, 5000, None, 50, 51, 200.5, 1000, 1001, 5001] * 2,
        "annual_revenue": [1e6, 1e6 + 1, None, 1e9, 1e10] * 4,
        "country": ["Germany", "germany ", None, "France", "Österreich"] * 4,
        "lead_source": ["Webinar", "webinar", "referral", None, " "] * 4,
        "outcome": outcome,
        "outcome_at": [c + pd.Timedelta(days=d) if o != "open" else pd.NaT
                       for c, o, d in zip(created, outcome, rng.integers(1, 120, n))],
        "x_score": [None if i % 4 == 0 else i * 1.25 for i in range(n)],
        "x_tier": [None, " Gold", "silver ", "", "BRONZE"] * 4,
    })
    leads["outcome_at"] = pd.to_datetime(leads["outcome_at"]).astype("datetime64[us]")
    types = [e.name for e in FEATURE_EVENT_TYPES] + ["onboarding_session"]  # and a post-sale type: no feature
    assets = ["Case-Study:ACME", "ROI-calculator", "BLOG: tips", None, "whitepaper"]
    rows = []
    export = pd.Timestamp(params.export_at) if params.export_at else EDGE_AS_OF + pd.Timedelta(days=140)
    grid = pd.DatetimeIndex(snapshot_grid(params, export, created.min()))
    for i, (lead, c) in enumerate(zip(leads["lead_id"], created)):
        snapshot = grid[grid > c][min(i % 4, (grid > c).sum() - 1)]  # one of the lead's own snapshot dates
        if i % 3 == 1:  # only the near-ties, before this run's as_of: the first and last activity
            anchor = snapshot if as_of is None else as_of
            rows += [(lead, anchor - pd.Timedelta(seconds=off), et, None, None) for off, et in TIES]
            continue
        # anchored at the scoring as_of and at the lead's own training snapshot
        for anchor in (EDGE_AS_OF, snapshot):
            if i % 3 == 2:  # webinars watched 33.0598385% (only): a near-tie of the 6-decimal round
                rows.append((lead, anchor - pd.Timedelta(days=2), "webinar_attend", None, 33.0598385))
            for j, off in enumerate(OFFSETS):
                et = types[(i + j) % len(types)]
                et = "form_fill" if et == "webinar_attend" and i % 3 == 2 else et
                rows.append((lead, anchor - pd.Timedelta(seconds=off), et, assets[(i + j) % 5], 100.0 * rng.random()))
    events = pd.DataFrame(rows, columns=["lead_id", "timestamp", "event_type", "asset", "percent_watched"])
    events["timestamp"] = events["timestamp"].astype("datetime64[us]")
    leads.to_parquet(tmp / "leads.parquet", index=False)
    events.to_parquet(tmp / "events.parquet", index=False)
    pd.DataFrame({"account_id": ["A2", None], "domain": [None, "acme.com"]}).to_parquet(tmp / "priority.parquet",
                                                                                         index=False)
    return tmp / "leads.parquet", tmp / "events.parquet", tmp / "priority.parquet"


@pytest.mark.parametrize("as_of", [None, EDGE_AS_OF], ids=["training-snapshots", "scoring"])
def test_spark_features_equal_duckdb_on_edge_cases(lsp, spark, pipeline_data, tmp_path, as_of):
    # training: a fixed export moment (the events sit on its snapshot dates); scoring: from the data, both engines
    export_at = (EDGE_AS_OF + pd.Timedelta(days=140)).isoformat() if as_of is None else None
    params = pipeline_data["params"].features.model_copy(update={"export_at": export_at})
    leads, events, priority = _edge_cases(tmp_path, params, as_of)
    extra = [{"name": "x_score", "group": "fit", "kind": "numeric", "description": "score {value}"},
             {"name": "x_tier", "group": "fit", "kind": "categorical", "description": "tier {value}"}]
    table = _compare_builds(lsp, spark, tmp_path, leads, events, params, priority, as_of, extra)
    assert len(table) >= 5
    assert table["seniority"].nunique() > 3 and table["active_days_90d"].max() > 5


# ----------------------------------------------------------------------------- the batch job
def test_spark_batch_scoring_from_the_cli_equals_the_local_job(lsp, spark, trained, tmp_path):
    """`leadscore score --engine spark` (run in this session: the CLI reuses an active one and leaves it
    running) on every lead open at as_of, a sample of the others (decided before, created after: skipped)
    and two rows without an id (rejected), from a CSV export validated locally: it writes the local job's
    rows, values and rejects, reconciles the same counts, scores (and explains) each lead once, not twice,
    and leaves no partial output or views of its deleted files behind."""
    from typer.testing import CliRunner

    from leadscore.cli import app
    from tests.helpers import counting

    raw = trained["tmp"] / "raw"
    scorer = joblib.load(trained["tmp"] / "models" / "scorer.joblib")
    as_of = "2026-08-01T00:00:00"
    leads = pd.read_parquet(raw / "leads.parquet")
    open_then = (leads["created_at"] <= pd.Timestamp(as_of)) & ~(
        leads["outcome"].isin(["won", "lost"]) & (leads["outcome_at"] <= pd.Timestamp(as_of)))
    leads = pd.concat([leads[open_then], leads[~open_then].sample(n=300, random_state=3)]).sort_values("lead_id")
    pd.concat([leads, leads.iloc[[1, 2]].assign(lead_id=None)], ignore_index=True).to_csv(tmp_path / "leads.csv",
                                                                                         index=False)
    events = pd.read_parquet(raw / "events.parquet")
    events[events["lead_id"].isin(leads["lead_id"])].to_parquet(tmp_path / "events.parquet", index=False)
    (tmp_path / "spark.parquet").write_bytes(b"a previous output, replaced only at the end")
    log = tmp_path / "calls.log"
    joblib.dump(counting(scorer, log), tmp_path / "counting.joblib")  # counts the rows each score call gets
    common = ["score", "--model", str(tmp_path / "counting.joblib"), "--trust-model", "--leads",
              str(tmp_path / "leads.csv"), "--events", str(tmp_path / "events.parquet"), "--as-of", as_of,
              "--priority-accounts", str(raw / "priority_accounts.csv")]
    on_spark = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "spark.parquet"), "--engine", "spark",
                                        "--spark-master", "local[2]"])
    assert on_spark.exit_code == 0, on_spark.output
    b = pd.read_parquet(tmp_path / "spark.parquet")
    name, version = b["model_name"].iloc[0], b["model_version"].iloc[0]  # the CLI's, for a trusted local file
    local = score_leads(scorer, tmp_path / "leads.csv", tmp_path / "events.parquet", tmp_path / "local.parquet",
                        as_of=as_of, priority_path=raw / "priority_accounts.csv", model_name=name,
                        model_version=version)

    a, rejects = pd.read_parquet(local.output), pd.read_csv(tmp_path / "spark.rejects.csv")
    assert (len(b), len(rejects)) == (local.scored, local.rejected)
    assert local.leads_in == len(leads) + 2 and local.scored > 300 and local.rejected == local.leads_in - local.scored
    assert rejects["reason"].value_counts().to_dict() == local.rejected_by_reason
    assert sum(int(n) for n in log.read_text().split()) == len(b)  # scored (and explained) once, not twice
    assert b["lead_id"].tolist() == a["lead_id"].tolist()  # the same open leads, in the same order
    _assert_same_table(a.drop(columns="scored_at"), b.drop(columns="scored_at"))
    for c in ("points", "band", "is_mql", "reasons", "pushed_over_mql", "matrix_cell", "model_version"):
        assert b[c].tolist() == a[c].tolist(), c  # identical, not close
    assert b["is_mql"].any() and (~b["is_mql"]).any()
    pd.testing.assert_frame_equal(rejects.drop(columns="file"), pd.read_csv(local.rejects).drop(columns="file"))
    assert rejects["lead_id"].isna().sum() == 2  # the rows without an id, each a reject
    # no partial output left behind (the jobs' lock files stay, empty, by design), no views of deleted files
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
    assert not [v for v in lsp.FEATURE_VIEWS if spark.catalog.tableExists(v)]
    assert spark.range(3).count() == 3  # the module's session is still alive (the CLI reused it)


def test_score_spark_equals_scorer_score_on_the_same_rows(lsp, spark, trained, tmp_path):
    scorer = joblib.load(trained["tmp"] / "models" / "scorer.joblib")
    X = pd.read_parquet(trained["tmp"] / "features" / "features.parquet").drop_duplicates("lead_id").head(300)
    X.to_parquet(tmp_path / "rows.parquet", index=False)  # one snapshot per lead, as a scoring run has
    got = lsp.score_spark(spark, scorer, spark.read.parquet(str(tmp_path / "rows.parquet"))).toPandas()
    for c in (m["name"] for m in scorer.model.metadata if m["kind"] == "categorical"):
        X[c] = X[c].astype("category")
    want = scorer.score(X)
    got = got.set_index("lead_id").loc[X["lead_id"]]
    np.testing.assert_allclose(got["probability"].to_numpy(), want["probability"].to_numpy(), rtol=0, atol=1e-12)
    for c in ("points", "band", "fit_grade", "engagement_grade", "matrix_cell", "is_mql", "reasons", "pushed_over_mql"):
        assert got[c].tolist() == want[c].tolist(), c


def test_cli_engine_spark_refuses_what_the_spark_job_cannot_do_up_front(lsp, trained, tmp_path):
    """Usage errors (exit 2) with the reason, before any model is loaded or Spark started."""
    from typer.testing import CliRunner

    from leadscore.cli import app

    raw = trained["tmp"] / "raw"
    common = ["score", "--model", str(trained["tmp"] / "models" / "scorer.joblib"), "--leads", str(raw / "leads.parquet"),
              "--events", str(raw / "events.parquet"), "--engine", "spark"]
    runner = CliRunner()
    refused = runner.invoke(app, [*common, "--out", str(tmp_path / "s.csv"), "--explain", "mql"])
    assert refused.exit_code == 2 and "--explain mql" in refused.output and "Parquet folder" in refused.output
    refused = runner.invoke(app, [*common, "--out", str(tmp_path / "s.parquet"), "--history", str(tmp_path / "h")])
    assert refused.exit_code == 2 and "--history" in refused.output and "local engine" in refused.output
    assert not list(tmp_path.iterdir())  # nothing written
