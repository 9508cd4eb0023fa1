"""The feature build and batch scoring on Apache Spark, with the same definitions as DuckDB.

**One definition of every feature.** :func:`leadscore.features.input_sql` and
:func:`leadscore.features.feature_sql` give the SQL statements DuckDB runs; here each one is parsed by
SQLGlot (DuckDB dialect), given the few rewrites below and generated as Spark SQL, then run over temp views
with the names the statements read (``_leads``, ``_events``, ``_priority``, ``_lead_keys``, ``_snap``, ``_exclusions``,
``_behavior``, ``_account``). Nothing of the feature logic is written a second time.

**Rewrites** where SQLGlot's plain translation would not compute what DuckDB computes (see
:func:`spark_sql`):

* ``epoch(ts)`` → ``unix_micros(CAST(ts AS TIMESTAMP)) / 1e6``: DuckDB's epoch is a double with the
  fraction of a second (it equals ``epoch_us / 1e6`` exactly); SQLGlot's ``UNIX_TIMESTAMP`` truncates to
  whole seconds. The cast reads DuckDB's naive timestamps (Spark ``TIMESTAMP_NTZ``) as UTC, which is why
  the session time zone must be UTC (set by :func:`build_features_spark`).
* ``UBIGINT`` (the activity-day bit masks) → ``BIGINT``: Spark has no unsigned type; the same 64 bits
  are set, so ``bit_or`` and ``bit_count`` give the same results (bit 63 just reads as negative).
* ``round(x, d)`` → ``round(x * 10^d, 0) / 10^d``: DuckDB rounds a double as
  ``std::round(x·10^d) / 10^d``; Spark rounds the double's shortest decimal text half-up, which differs
  on near-ties (e.g. a 3-decimal round of ``k / 86400.0`` days: 37 in 400k values). Rounding a double to
  0 decimals is the same in both (half away from zero), so the rewrite is exact. Every ``round`` in the
  feature SQL is over a DOUBLE (over a DECIMAL this rewrite would not be DuckDB's decimal rounding).
* regex ``\\b`` / ``\\B`` → ASCII word-boundary lookarounds: RE2 (DuckDB) has an ASCII ``\\b``, while
  Java 17's counts any Unicode letter as a word character (``"directorå"`` would stop matching
  ``\\bdirector\\b``).

Everything else SQLGlot translates faithfully (``INTERVAL '7 days'``, ``count(*) FILTER (WHERE …)``,
``regexp_matches`` → ``RLIKE``, ``contains``, ``TRY_CAST``, ``greatest``/``least``, ``TIMESTAMP '…'`` →
``TIMESTAMP_NTZ``, ``IN (subquery)``). Finally the feature table is cast to the Parquet schema DuckDB
writes for the same statements (found by running them in DuckDB over zero rows with the inputs' types):
the same columns, order, types and values as ``features.parquet``.

**Scoring** uses ``mapInPandas`` with the :class:`~leadscore.scoring.LeadScorer` broadcast to the
executors: each Arrow batch is scored by ``scorer.score``, the very code the local job runs.

Known differences that remain (none arise on the project's data): ``exp()`` and floating-point sums
may differ in the last bit between the JVM and DuckDB (features are rounded to 6 decimals afterwards);
``lower()`` of exotic Unicode and ``TRY_CAST`` of unusual number text (``'1.5d'``, hex, ``'1_000'``) follow
Java's rules; ``trim`` leaves a non-breaking space in Spark; a custom (``x_``) categorical column that arrives
as numbers is text like ``'1.0e7'`` in Spark where DuckDB writes ``'10000000.0'`` (Java's notation for
doubles at or above 1e7 or under 1e-3). Inputs must be Parquet files (or Spark DataFrames), validated by
:mod:`leadscore.contract`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp

from leadscore import features
from leadscore.batch import (
    SCORE_COLUMNS,
    SCORING_MEMORY_LIMIT,
    OUTPUT_TYPES,
    BatchError,
    ScoreRun,
    check_inputs,
    check_schema,
    not_scored,
    reconcile,
    refuse_broken_export,
)
from leadscore.config import FeatureParams

# Python workers import leadscore (pandera → pyspark.pandas), which warns about pandas 3 once per worker;
# the Spark path is tested against pandas 3 (tests/test_spark.py), so the warning is noise in a job's log.
WORKER_WARNINGS = "ignore:PySpark does not yet fully support pandas:FutureWarning"

SPARK_DEFAULTS = {
    "spark.executorEnv.PYTHONWARNINGS": WORKER_WARNINGS,  # cluster executors
    "spark.sql.session.timeZone": "UTC",  # naive timestamps are UTC, as in DuckDB (SET TimeZone = 'UTC')
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}

# ----------------------------------------------------------------------------- DuckDB SQL → Spark SQL
_WORD = "[0-9A-Za-z_]"  # RE2's \w: ASCII only
_BOUNDARY = {"b": f"(?:(?<!{_WORD})(?={_WORD})|(?<={_WORD})(?!{_WORD}))",
             "B": f"(?:(?<={_WORD})(?={_WORD})|(?<!{_WORD})(?!{_WORD}))"}


def _ascii_boundaries(pattern: str) -> str:
    """An RE2 pattern for Java: ``\\b``/``\\B`` outside a character class become ASCII lookarounds."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(_BOUNDARY[nxt] if nxt in _BOUNDARY and not in_class else ch + nxt)
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
        out.append(ch)
        i += 1
    return "".join(out)


def _power_of_ten(d: int) -> exp.Expression:
    return exp.cast(exp.Literal.number(10 ** abs(d)), exp.DataType.build("double"))


def _rewrite(node: exp.Expression) -> exp.Expression:
    """First pass: epoch, unsigned types and regex word boundaries (see the module docstring)."""
    if isinstance(node, exp.TimeToUnix):  # DuckDB epoch(ts): seconds as a double, fraction kept
        ts = exp.cast(node.this.transform(_rewrite), exp.DataType.build("timestamp", dialect="spark"))
        return exp.Paren(this=exp.Div(this=exp.Anonymous(this="unix_micros", expressions=[ts]),
                                      expression=_power_of_ten(6)))
    if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.UBIGINT:
        return exp.DataType.build("bigint")
    if isinstance(node, exp.RegexpLike) and isinstance(node.expression, exp.Literal) and node.expression.is_string:
        node.set("expression", exp.Literal.string(_ascii_boundaries(node.expression.this)))
    return node


def _rewrite_round(node: exp.Expression) -> exp.Expression:
    """Second pass: ``round(x, d)`` over a double as DuckDB computes it."""
    if isinstance(node, exp.Round) and isinstance(node.args.get("decimals"), exp.Literal):
        d = int(node.args["decimals"].this)
        if d == 0:
            return node
        x = exp.Paren(this=node.this.transform(_rewrite_round))
        scaled = exp.Mul(this=x, expression=_power_of_ten(d)) if d > 0 else exp.Div(this=x, expression=_power_of_ten(d))
        rounded = exp.Round(this=scaled, decimals=exp.Literal.number(0))
        back = exp.Div(this=rounded, expression=_power_of_ten(d)) if d > 0 else exp.Mul(this=rounded, expression=_power_of_ten(d))
        return exp.Paren(this=back)
    return node


def spark_sql(sql: str) -> str:
    """One DuckDB statement as Spark SQL: SQLGlot's transpilation plus the rewrites above."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    tree = tree.transform(_rewrite).transform(_rewrite_round)
    return tree.sql(dialect="spark")


# ----------------------------------------------------------------------------- the session
def session(master: str = "local[2]", app_name: str = "leadscore", conf: dict | None = None):
    """A SparkSession with what this module needs: UTC session time and, unless ``PYSPARK_PYTHON`` says
    otherwise, Python workers in this interpreter (they unpickle the scorer: leadscore, pandas, numba).
    On a cluster the executors need the same packages installed."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYTHONWARNINGS", WORKER_WARNINGS)  # local mode: workers inherit the driver's env
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in {**SPARK_DEFAULTS, **(conf or {})}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


# ----------------------------------------------------------------------------- features
_DUCKDB_TYPES = {"string": "VARCHAR", "double": "DOUBLE", "float": "FLOAT", "bigint": "BIGINT", "int": "INTEGER",
                 "smallint": "SMALLINT", "tinyint": "TINYINT", "boolean": "BOOLEAN", "timestamp": "TIMESTAMP",
                 "timestamp_ntz": "TIMESTAMP", "date": "DATE", "binary": "BLOB", "void": "VARCHAR"}


def _duckdb_type(spark_type) -> str:
    name = spark_type.simpleString()
    if name.startswith("decimal"):
        return name.upper()
    if name not in _DUCKDB_TYPES:
        raise TypeError(f"input column type {name} is not supported by the feature build")
    return _DUCKDB_TYPES[name]


def _spark_type(arrow_type: pa.DataType) -> str:
    """The Spark type of a column of DuckDB's Parquet output."""
    t = pa.types
    for test, name in ((t.is_int8, "tinyint"), (t.is_int16, "smallint"), (t.is_int32, "int"), (t.is_int64, "bigint"),
                       (t.is_float32, "float"), (t.is_float64, "double"), (t.is_boolean, "boolean"),
                       (t.is_date32, "date"), (t.is_string, "string"), (t.is_large_string, "string")):
        if test(arrow_type):
            return name
    if t.is_timestamp(arrow_type):
        return "timestamp" if arrow_type.tz else "timestamp_ntz"
    if t.is_decimal(arrow_type):
        return f"decimal({arrow_type.precision},{arrow_type.scale})"
    raise TypeError(f"unexpected feature column type {arrow_type}")


def _duckdb_schema(sources: dict, steps: list[features.SqlStep]) -> pa.Schema:
    """The Parquet schema DuckDB writes for the same statements, from a run over zero rows."""
    con = features.connect(threads=1)
    try:
        for name, df in sources.items():
            cols = ", ".join(f'CAST(NULL AS {_duckdb_type(f.dataType)}) AS "{f.name}"' for f in df.schema.fields)
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT {cols} WHERE false")
        for step in steps[:-1]:
            con.execute(f"CREATE TEMP VIEW {step.name} AS {step.sql}")
        with tempfile.TemporaryDirectory(prefix="leadscore-schema-") as d:
            path = str(Path(d) / "schema.parquet").replace("'", "''")
            con.execute(f"COPY ({steps[-1].sql}\n) TO '{path}' (FORMAT parquet)")
            return pq.read_schema(path)
    finally:
        con.close()


def _input_frame(spark, source, what: str):
    if source is None or not isinstance(source, (str, os.PathLike)):
        return source  # a Spark DataFrame already
    if str(source).lower().endswith((".csv", ".txt", ".gz")):
        raise ValueError(f"{what}: the Spark feature build reads Parquet; validate the CSV first "
                         f"(leadscore validate / contract.validate_*), which writes Parquet")
    return spark.read.parquet(str(source))


@dataclass
class SparkFeatures:
    features: object  # pyspark DataFrame: lead_id, as_of, label, features (DuckDB's schema)
    exclusions: object  # pyspark DataFrame: lead_id, as_of, reason
    export_at: pd.Timestamp
    as_of: pd.Timestamp | None
    statements: list[tuple[str, str]]  # (view, Spark SQL) as run


def spark_features(spark, leads_path, events_path, params: FeatureParams, priority_path=None, as_of=None,
                   extra: list[dict] | None = None) -> SparkFeatures:
    """The feature build of :func:`leadscore.features.build_features` on Spark (lazy DataFrames).

    Inputs are validated Parquet files or Spark DataFrames; they and every step are registered as temp
    views of ``spark`` (one build at a time per session, as with a DuckDB connection)."""
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    sources = {"_leads_src": _input_frame(spark, leads_path, "leads")}
    if events_path is not None:
        sources["_events_src"] = _input_frame(spark, events_path, "events")
    if priority_path is not None:
        sources["_priority_src"] = _input_frame(spark, priority_path, "priority accounts")
    for name, df in sources.items():
        df.createOrReplaceTempView(name)
    inputs = features.input_sql("_leads_src", "_events_src" if events_path is not None else None,
                                "_priority_src" if priority_path is not None else None)
    statements = []

    def run(name: str, sql: str):
        translated = spark_sql(sql)
        statements.append((name, translated))
        return spark.sql(translated)

    for step in inputs:
        run(step.name, step.sql).createOrReplaceTempView(step.name)
    # The same statements as DuckDB's, read back as text (no driver time-zone conversion).
    daily = pd.DataFrame([r.asDict() for r in run("daily_records", features.DAILY_RECORDS_SQL).collect()],
                         columns=["day", "n", "newest"])
    as_of_ts = features.to_utc_naive(as_of) if as_of is not None else None
    export_at = features.export_moment(daily, params.export_at, as_of_ts).at
    grid = None
    if as_of_ts is None:
        first = run("first_created", features.FIRST_CREATED_SQL).first()[0]
        grid = features.snapshot_grid(params, export_at, pd.Timestamp(first)) if first is not None else []
    steps = features.feature_sql(params, as_of_ts, export_at, extra, grid)
    for step in steps[:-1]:
        run(step.name, step.sql).createOrReplaceTempView(step.name)
    table = run(steps[-1].name, steps[-1].sql)
    schema = _duckdb_schema(sources, inputs + steps)
    if schema.names != table.columns:
        raise AssertionError(f"Spark and DuckDB feature columns differ: {table.columns} vs {schema.names}")
    from pyspark.sql import functions as F

    table = table.select([F.col(f"`{f.name}`").cast(_spark_type(f.type)).alias(f.name) for f in schema])
    exclusions = run("exclusions", features.EXCLUSIONS_SQL)
    return SparkFeatures(table, exclusions, export_at, as_of_ts, statements)


def build_features_spark(spark, leads_path, events_path, params: FeatureParams, priority_path=None, as_of=None,
                         extra: list[dict] | None = None, out_dir=None):
    """The feature table as a Spark DataFrame: the rows, columns, types and values DuckDB's
    :func:`~leadscore.features.build_features` writes for the same inputs (``as_of=None``: training
    snapshots with labels; a timestamp: scoring, one as_of for every lead).

    With ``out_dir``, also writes ``features.parquet`` (a Spark Parquet folder, sorted by lead_id),
    ``exclusions.csv`` and ``feature_metadata.json`` as the DuckDB build does."""
    built = spark_features(spark, leads_path, events_path, params, priority_path, as_of, extra)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        built.features.write.mode("overwrite").option("compression", "zstd").parquet(str(out_dir / "features.parquet"))
        _exclusions_frame(built).to_csv(out_dir / "exclusions.csv", index=False)
        (out_dir / "feature_metadata.json").write_text(json.dumps({
            "export_at": built.export_at.isoformat(),
            "as_of": None if built.as_of is None else built.as_of.isoformat(),
            "features": features.feature_metadata(params, extra), "declared_after_contact": []}, indent=2))
    return built.features


def _exclusions_frame(built: SparkFeatures) -> pd.DataFrame:
    rows = built.exclusions.selectExpr("lead_id", "CAST(as_of AS STRING) AS as_of", "reason").collect()
    out = pd.DataFrame([r.asDict() for r in rows], columns=["lead_id", "as_of", "reason"])
    out["as_of"] = pd.to_datetime(out["as_of"]).astype("datetime64[us]")
    return out


# ----------------------------------------------------------------------------- scoring
_SPARK_TYPES = {"str": "string", "float64": "double", "bool": "boolean"}
# What each mapInPandas batch returns: the local job's output columns before the run's stamps.
SCORE_SCHEMA = ", ".join(f"{c} {_SPARK_TYPES[t]}" for c, t in OUTPUT_TYPES.items())


def score_spark(spark, scorer, features_df, engine: str | None = None):
    """``scorer.score`` on every row of a feature DataFrame, in the executors (``mapInPandas``, the scorer
    broadcast once). Returns lead_id, the scorer's columns (probability, points, band, fit_grade,
    engagement_grade, matrix_cell, is_mql, reasons, pushed_over_mql) and reasons_text, as the local job."""
    check_schema(scorer, features_df.columns)
    names = list(scorer.model.feature_names)
    categorical = [m["name"] for m in scorer.model.metadata if m["kind"] == features.CATEGORICAL]
    shared = spark.sparkContext.broadcast(scorer)

    def score_batches(batches):
        model = shared.value
        for X in batches:
            if X.empty:
                continue
            X = X.reset_index(drop=True)
            for c in categorical:  # as batch.score_leads hands chunks to the scorer
                X[c] = X[c].astype("category")
            out = model.score(X, engine, text=True).astype({"probability": float, "points": float, "is_mql": bool})
            out = out[SCORE_COLUMNS + ["reasons_text"]].reset_index(drop=True)
            out.insert(0, "lead_id", X["lead_id"].astype(object).to_numpy())
            yield out

    return features_df.select("lead_id", *[f"`{n}`" for n in names]).mapInPandas(score_batches, SCORE_SCHEMA)


# ----------------------------------------------------------------------------- the batch job
# The temp views a feature build registers: its inputs and every step.
FEATURE_VIEWS = ("_leads_src", "_events_src", "_priority_src", "_leads", "_events", "_priority", "_lead_keys", "_snap", "_exclusions",
                 "_behavior", "_account")


def _replace_path(tmp: Path, out: Path) -> None:
    """Put the finished output folder in place: the old output is moved aside, the new one renamed in,
    the old one removed (two renames: a reader never sees a partial output)."""
    old = None
    if out.exists() or out.is_symlink():
        old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def score_leads_spark(spark, scorer, leads_path, events_path, out_path, *, as_of=None, priority_path=None,
                      model_name: str = "", model_version: str = "", max_reject_share: float = 0.05,
                      feature_params=None, workdir=None, engine: str | None = None,
                      memory_limit: str = SCORING_MEMORY_LIMIT) -> ScoreRun:
    """:func:`leadscore.batch.score_leads` with features and scoring on Spark (``explain="all"``).

    1. Validation runs locally with :func:`leadscore.batch.check_inputs` (pandas for the leads, streaming DuckDB for
       the events), exactly as the local job, and writes validated Parquet to ``workdir``, which Spark then
       reads (on a cluster, give a ``workdir`` the executors can read).
    2. Features with :func:`spark_features` at ``as_of``, with the model's feature params and extra columns.
    3. Leads decided at or before ``as_of`` are skipped, like excluded and rejected leads, each with its
       reason in ``<out>.rejects.csv``; counts are reconciled.
    4. Scores with :func:`score_spark` into a temporary Parquet folder next to ``out_path`` that replaces
       the output only when everything succeeded.

    The output is a Parquet folder (sorted by lead_id) with the local job's columns: lead_id, probability,
    points, band, fit_grade, engagement_grade, matrix_cell, is_mql, reasons, pushed_over_mql,
    reasons_text, model_name, model_version, as_of, scored_at. Not here: CSV output, ``explain`` modes
    other than ``all`` and the run history.
    """
    out_path = Path(out_path)
    if out_path.suffix.lower() == ".csv":
        raise ValueError("the Spark job writes Parquet; give an output path ending in .parquet")
    fparams = feature_params or scorer.feature_params
    if fparams is None:
        raise BatchError("the model does not record its feature params; pass them explicitly")
    as_of_ts = (features.to_utc_naive(as_of) if as_of is not None
                else pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s"))
    scored_at = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    work = Path(workdir or tempfile.mkdtemp(prefix="leadscore-spark-"))
    work.mkdir(parents=True, exist_ok=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex[:8]}.partial")
    rejects_path = out_path.with_name(out_path.stem + ".rejects.csv")
    scored = None
    try:
        # 1. the contract, locally: every lead valid or rejected with its reason
        checked = check_inputs(scorer, leads_path, events_path, priority_path, work, as_of_ts, memory_limit)
        refuse_broken_export(checked, None, leads_path, as_of_ts, rejects_path, max_reject_share)
        decided = checked.decided

        # 2. features at as_of on Spark, with the model's own feature definitions
        extra = [m for m in scorer.model.metadata if m["name"].startswith("x_")]
        built = spark_features(spark, checked.leads_file, checked.events_file, fparams, checked.priority_file,
                               as_of_ts, extra)
        check_schema(scorer, built.features.columns)

        # 3. who is not scored, and why (as the local job)
        excluded = _exclusions_frame(built)
        excluded.to_csv(work / "exclusions.csv", index=False)  # read back as the local job reads its own
        skipped = not_scored(checked, pd.read_csv(work / "exclusions.csv", dtype={"lead_id": str}), leads_path, as_of_ts)

        # 4. score the open leads into a temporary folder
        table = built.features
        if len(decided):
            decided[["lead_id"]].astype({"lead_id": object}).to_parquet(work / "decided.parquet", index=False)
            table = table.join(spark.read.parquet(str(work / "decided.parquet")), "lead_id", "left_anti")
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        scored = (score_spark(spark, scorer, table, engine)
                  .withColumn("model_name", F.lit(model_name)).withColumn("model_version", F.lit(model_version))
                  .withColumn("as_of", F.lit(as_of_ts.isoformat(sep=" ")).cast("timestamp_ntz"))
                  .withColumn("scored_at", F.lit(scored_at.isoformat(sep=" ")).cast("timestamp_ntz")))
        # Kept once computed: sorting samples its input first, which would otherwise score (and explain)
        # every lead a second time.
        scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
        scored.orderBy("lead_id").write.option("compression", "zstd").parquet(str(tmp_out))
        n_scored = spark.read.parquet(str(tmp_out)).count()

        # 5. reconcile before replacing anything
        tmp_rejects = reconcile(checked, n_scored, skipped, rejects_path, max_reject_share)
        _replace_path(tmp_out, out_path)
        tmp_rejects.replace(rejects_path)
        return ScoreRun(out_path, rejects_path, checked.leads_in, n_scored, len(skipped), n_scored, 0,
                        skipped["reason"].value_counts().to_dict() if len(skipped) else {}, model_name, model_version,
                        str(as_of_ts), str(scored_at), None)
    finally:
        if scored is not None:
            scored.unpersist()
        for name in FEATURE_VIEWS:  # a reused session (notebook, tests) keeps no views of deleted files
            spark.catalog.dropTempView(name)
        if tmp_out.exists():
            shutil.rmtree(tmp_out, ignore_errors=True)
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
