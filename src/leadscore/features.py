"""Point-in-time fit, behavior and account features, built in DuckDB.

Each lead is described *as of* a moment: only events strictly before ``as_of`` enter its features,
and the outcome never does. Two ways to choose ``as_of``:

* **training snapshots** (``as_of=None``): a historical lead is seen as it was ``snapshot_days``
  after it was created, the moment sales would have scored it. The moment depends on the lead's
  creation only, never on its outcome. Its label is 1 when it was won within ``label_horizon_days``
  after the snapshot. Leads that cannot give an honest example are listed with the reason: decided
  at or before the snapshot, too young at export time, or still open with the label window unfinished.
* **scoring** (``as_of=<timestamp>``): every lead created strictly before that moment, no label.

Every feature is defined once, in :func:`feature_specs`: its SQL, its group (fit / behavior /
account) and the sentence that explanations fill in ("visited the pricing page {value} times in the
last 7 days"). Training, batch scoring and explanations all read that one definition.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import duckdb
import pandas as pd

from leadscore.config import FeatureParams
from leadscore.vocabulary import FEATURE_EVENT_TYPES, FREE_MAIL_DOMAINS, LATE_FUNNEL, STAGE_RANK

FIT, BEHAVIOR, ACCOUNT = "fit", "behavior", "account"
CATEGORICAL, NUMERIC = "categorical", "numeric"
KEY_COLUMNS = ["lead_id", "as_of", "label"]

FUNNEL_STAGE_LABELS = {0: "none", 1: "first touch", 2: "mid funnel", 3: "late funnel"}


@dataclass(frozen=True)
class Feature:
    name: str
    group: str  # fit | behavior | account
    kind: str  # categorical | numeric
    description: str  # sentence template; {value} is the lead's value
    sql: str  # expression over the final join (see _final_select)
    value_labels: dict | None = None  # readable names for coded values

    def describe(self, value) -> str:
        """The sentence for one value, as a marketer reads it."""
        if self.value_labels is not None and value in self.value_labels:
            value = self.value_labels[value]
        elif isinstance(value, float) and not math.isnan(value):
            value = f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            value = "unknown"
        return self.description.format(value=value)


def _sql_list(values) -> str:
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


# Title rules, first match wins: (label, RE2 pattern over the lower-cased title).
SENIORITY_RULES = [
    ("student", "\\b(student|intern|mba candidate|graduate|phd|trainee)\\b"),
    ("c_level", "\\b(chief|ceo|cfo|cto|cmo|coo|cio|cro|president|founder|owner|partner)\\b"),
    ("vp", "\\b(vp|svp|evp|vice president|head of)\\b"),
    ("director", "\\bdirector\\b"),
    ("manager", "\\b(manager|team lead|lead)\\b"),
    ("assistant", "\\b(assistant|coordinator|receptionist|secretary)\\b"),
]
FUNCTION_RULES = [
    ("marketing", "(market|growth|brand|demand|content|seo|communications)"),
    ("sales", "(sales|account exec|business develop|revenue|\\bsdr\\b|\\bbdr\\b|\\bcro\\b)"),
    ("it", "(\\bit\\b|information|\\bcio\\b|\\bcto\\b|technolog|system|security)"),
    ("engineering", "(engineer|developer|software|data|architect)"),
    ("finance", "(financ|\\bcfo\\b|accounting|accountant|controller)"),
    ("operations", "(operation|\\bcoo\\b|supply|logistic|procurement)"),
    ("hr", "(\\bhr\\b|human|people|talent|recruit)"),
    ("general_management", "(ceo|founder|owner|president|general manager|executive)"),
]


def _title_sql(rules: list[tuple[str, str]], otherwise: str) -> str:
    """A CASE over the title: 'unknown' when blank, the first rule whose pattern matches, else ``otherwise``."""
    whens = "".join(f"\n        WHEN regexp_matches(lower(l.title), '{pattern}') THEN '{label}'" for label, pattern in rules)
    return f"""CASE
        WHEN l.title IS NULL OR trim(l.title) = '' THEN 'unknown'{whens}
        ELSE '{otherwise}' END"""


def _band_sql(col: str, cuts: list[tuple[float, str]], top: str) -> str:
    whens = " ".join(f"WHEN {col} <= {c} THEN '{label}'" for c, label in cuts)
    return f"CASE WHEN {col} IS NULL THEN 'unknown' {whens} ELSE '{top}' END"


def domain_type_sql(domain: str, competitors) -> str:
    comp = _sql_list(competitors) if competitors else "''"
    return f"""CASE WHEN {domain} IS NULL OR {domain} = '' THEN 'unknown'
        WHEN {domain} IN ({comp}) THEN 'competitor'
        WHEN {domain} IN ({_sql_list(FREE_MAIL_DOMAINS)}) THEN 'free_mail'
        ELSE 'corporate' END"""


def extra_specs(extra: list[dict] | None) -> list[Feature]:
    """Columns a mapping kept from an export (``x_…``), as they are: numbers as numbers, text folded."""
    out = []
    for m in extra or []:
        col = f"l.{m['name']}"
        sql = (f"TRY_CAST({col} AS DOUBLE)" if m["kind"] == NUMERIC
               else f"coalesce(nullif(lower(trim(CAST({col} AS VARCHAR))), ''), 'unknown')")
        out.append(Feature(m["name"], m["group"], m["kind"], m["description"], sql))
    return out


def feature_specs(params: FeatureParams, extra: list[dict] | None = None) -> list[Feature]:
    """Every feature, in output order. Behaviour columns come from the per-lead aggregate ``b``;
    ``extra`` are mapped export columns (see :mod:`leadscore.mapping`)."""
    cat = lambda col: f"coalesce(nullif(lower(trim(l.{col})), ''), 'unknown')"  # noqa: E731
    specs = [
        Feature("seniority", FIT, CATEGORICAL, "title seniority is {value}",
                _title_sql(SENIORITY_RULES, "individual_contributor")),
        Feature("job_function", FIT, CATEGORICAL, "works in {value}", _title_sql(FUNCTION_RULES, "other")),
        Feature("company_size", FIT, CATEGORICAL, "company has {value} employees",
                _band_sql("l.employees", [(10, "1-10"), (50, "11-50"), (200, "51-200"), (1000, "201-1000"),
                                          (5000, "1001-5000")], "5000+")),
        Feature("revenue_band", FIT, CATEGORICAL, "company revenue is {value}",
                _band_sql("l.annual_revenue", [(1e6, "under $1M"), (1e7, "$1M-10M"), (1e8, "$10M-100M"),
                                               (1e9, "$100M-1B")], "over $1B")),
        Feature("industry", FIT, CATEGORICAL, "industry is {value}", cat("industry")),
        Feature("country", FIT, CATEGORICAL, "based in {value}", cat("country")),
        Feature("email_domain_type", FIT, CATEGORICAL, "email domain is {value}",
                domain_type_sql("l.email_domain", params.competitor_domains),
                {"corporate": "a company domain", "free_mail": "a free-mail address",
                 "competitor": "a competitor's", "unknown": "unknown"}),
        Feature("lead_source", FIT, CATEGORICAL, "came in through {value}", cat("lead_source")),
    ]
    for et in FEATURE_EVENT_TYPES:
        for w in params.windows_days:
            specs.append(Feature(f"{et.name}_{w}d", BEHAVIOR, NUMERIC,
                                 et.phrase.replace("{n}", "{value}") + f" in the last {w} days",
                                 f"coalesce(b.{et.name}_{w}d, 0)"))
    for et in FEATURE_EVENT_TYPES:
        specs.append(Feature(f"{et.name}_decayed", BEHAVIOR, NUMERIC,
                             f"recent {et.noun} (time-weighted score {{value}}, half-life "
                             f"{params.half_life_days:g} days)",
                             f"coalesce(b.{et.name}_decayed, 0)"))
    wmax = max(params.windows_days)
    specs += [
        Feature("days_since_last_activity", BEHAVIOR, NUMERIC, "last active {value} days ago",
                "round((epoch(s.as_of) - epoch(b.last_ts)) / 86400.0, 3)"),
        Feature("days_since_first_touch", BEHAVIOR, NUMERIC, "first touch {value} days ago",
                "round((epoch(s.as_of) - epoch(b.first_ts)) / 86400.0, 3)"),
        Feature("days_first_touch_to_late_funnel", BEHAVIOR, NUMERIC,
                "reached pricing, demo or quote {value} days after the first touch",
                "round((epoch(b.first_late_ts) - epoch(b.first_ts)) / 86400.0, 3)"),
        Feature(f"active_days_{wmax}d", BEHAVIOR, NUMERIC, f"active on {{value}} different days in the last {wmax} days",
                "coalesce(" + " + ".join(f"bit_count(b.day_mask_{i})" for i in range(_n_masks(wmax))) + ", 0)"),
        Feature("furthest_funnel_stage", BEHAVIOR, NUMERIC, "furthest funnel stage reached: {value}",
                "coalesce(b.furthest_stage, 0)", FUNNEL_STAGE_LABELS),
        Feature("content_value", BEHAVIOR, NUMERIC, "downloaded content worth {value} value points",
                "coalesce(b.content_value, 0)"),
        Feature("webinar_watched_pct", BEHAVIOR, NUMERIC, "watched {value}% of webinars on average",
                "round(b.watched_sum / nullif(b.watched_n, 0), 6)"),
        Feature(f"account_engaged_stakeholders_{params.stakeholder_window_days}d", ACCOUNT, NUMERIC,
                f"{{value}} other people from the same company engaged in the last "
                f"{params.stakeholder_window_days} days", "coalesce(a.engaged_stakeholders, 0)"),
        Feature("account_known_leads", ACCOUNT, NUMERIC, "{value} other leads from the same company known",
                "coalesce(a.known_leads, 0)"),
        Feature("is_priority_account", ACCOUNT, NUMERIC, "{value}", "CAST(s.is_priority AS INTEGER)",
                {0: "not a priority account", 1: "a priority (target) account"}),
    ]
    return specs + extra_specs(extra)


def _n_masks(days: int) -> int:
    return max(1, math.ceil(days / 64))


def feature_metadata(params: FeatureParams, extra: list[dict] | None = None) -> list[dict]:
    """Name, group, kind and sentence template of every feature (no SQL)."""
    return [{k: v for k, v in asdict(f).items() if k != "sql"} for f in feature_specs(params, extra)]


# ----------------------------------------------------------------------------- SQL
def _snapshot_sql(params: FeatureParams, as_of: pd.Timestamp | None, export_at: pd.Timestamp) -> str:
    """One row per lead: its as_of, label (training) and, if it has no honest row, why not."""
    exp = f"TIMESTAMP '{export_at.isoformat(sep=' ')}'"
    if as_of is None:
        as_of_sql = f"l.created_at + INTERVAL '{params.snapshot_days} days'"
        horizon = f"INTERVAL '{params.label_horizon_days} days'"
        exclusion = f"""CASE
            WHEN {as_of_sql} >= {exp} THEN 'younger than snapshot_days at export time: not yet scoreable'
            WHEN l.outcome IN ('won', 'lost') AND l.outcome_at <= {as_of_sql}
                THEN 'outcome decided at or before the snapshot: no honest example'
            WHEN l.outcome = 'open' AND {as_of_sql} + {horizon} > {exp}
                THEN 'still open and the label window is not over yet'
            END"""
        label = f"CAST(l.outcome = 'won' AND l.outcome_at < {as_of_sql} + {horizon} AS INTEGER)"
    else:
        as_of_sql = f"TIMESTAMP '{as_of.isoformat(sep=' ')}'"
        exclusion = f"CASE WHEN l.created_at >= {as_of_sql} THEN 'created at or after as_of' END"
        label = "CAST(NULL AS INTEGER)"
    return f"""
        SELECT l.lead_id, {as_of_sql} AS as_of, {label} AS label, {exclusion} AS excluded_because,
               coalesce(l.account_id, CASE WHEN {domain_type_sql('l.email_domain', params.competitor_domains)}
                        = 'corporate' THEN l.email_domain END) AS account_key,
               l.created_at,
               coalesce(l.account_id IN (SELECT account_id FROM _priority WHERE account_id IS NOT NULL)
                        OR l.email_domain IN (SELECT domain FROM _priority WHERE domain IS NOT NULL), false)
                   AS is_priority
        FROM _leads l"""


def _content_value_sql(params: FeatureParams) -> str:
    if not params.content_value:
        return "CAST(1 AS DOUBLE)"
    whens = " ".join(f"WHEN contains(lower(e.asset), '{k.lower()}') THEN CAST({float(v)} AS DOUBLE)"
                     for k, v in params.content_value.items())
    return f"CASE {whens} ELSE CAST(1 AS DOUBLE) END"


def _behavior_sql(params: FeatureParams) -> str:
    """Two passes: events → (lead, event type) aggregates → one row per lead."""
    wmax = max(params.windows_days)
    decay = math.log(2) / params.half_life_days
    age_days = "(epoch(s.as_of) - epoch(e.timestamp)) / 86400.0"
    windowed = ", ".join(f"count(*) FILTER (WHERE timestamp >= as_of - INTERVAL '{w} days') AS n_{w}"
                         for w in params.windows_days)
    masks = []
    for i in range(_n_masks(wmax)):
        lo, hi = 64 * i, min(64 * (i + 1), wmax)
        masks.append(f"bit_or(CASE WHEN day_ago >= {lo} AND day_ago < {hi} "
                     f"THEN (1::UBIGINT) << (day_ago - {lo})::UBIGINT ELSE 0::UBIGINT END) AS day_mask_{i}")
    # An event exactly wmax days old is inside the window (as the counts have it): it falls on the last day.
    day_ago_sql = f"least(CAST(floor({age_days}) AS BIGINT), {wmax - 1})"
    late = _sql_list([e.name for e in FEATURE_EVENT_TYPES if e.stage == LATE_FUNNEL])
    stage_case = "CASE " + " ".join(f"WHEN event_type = '{e.name}' THEN {STAGE_RANK[e.stage]}"
                                    for e in FEATURE_EVENT_TYPES) + " ELSE 0 END"
    pivot = []
    for et in FEATURE_EVENT_TYPES:
        for w in params.windows_days:
            pivot.append(f"sum(n_{w}) FILTER (WHERE event_type = '{et.name}') AS {et.name}_{w}d")
        pivot.append(f"round(sum(decayed) FILTER (WHERE event_type = '{et.name}'), 6) AS {et.name}_decayed")
    return f"""
        WITH ev AS (
            SELECT e.lead_id, e.event_type, e.timestamp, s.as_of, e.asset, e.percent_watched,
                   CASE WHEN e.timestamp >= s.as_of - INTERVAL '{wmax} days' THEN {day_ago_sql} END AS day_ago,
                   {age_days} AS age_days
            FROM _events e JOIN _snap s ON e.lead_id = s.lead_id
            WHERE e.timestamp < s.as_of AND s.excluded_because IS NULL
              AND e.event_type IN ({_sql_list(e.name for e in FEATURE_EVENT_TYPES)})
        ), per_type AS (
            SELECT lead_id, event_type,
                   {windowed},
                   sum(exp(-{decay} * age_days)) AS decayed,
                   min(timestamp) AS first_ts, max(timestamp) AS last_ts,
                   sum(CASE WHEN event_type = 'content_download' THEN {_content_value_sql(params).replace('e.asset', 'asset')} END) AS content_value,
                   sum(percent_watched) FILTER (WHERE event_type = 'webinar_attend') AS watched_sum,
                   count(percent_watched) FILTER (WHERE event_type = 'webinar_attend') AS watched_n,
                   {', '.join(masks)}
            FROM ev GROUP BY lead_id, event_type
        )
        SELECT lead_id, {', '.join(pivot)},
               min(first_ts) AS first_ts, max(last_ts) AS last_ts,
               min(first_ts) FILTER (WHERE event_type IN ({late})) AS first_late_ts,
               max({stage_case}) AS furthest_stage,
               sum(content_value) AS content_value, sum(watched_sum) AS watched_sum, sum(watched_n) AS watched_n,
               {', '.join(f'bit_or(day_mask_{i}) AS day_mask_{i}' for i in range(_n_masks(wmax)))}
        FROM per_type GROUP BY lead_id"""


def _account_sql(params: FeatureParams) -> str:
    """Other people at the same account: known before as_of, and engaged in the window before it.

    A colleague's activity is reduced to weekly (first, last) timestamps; with weeks shorter than the
    window, "some event in [as_of - window, as_of)" is decided exactly from them.
    """
    w = params.stakeholder_window_days
    week = 7 * 86400 if w > 7 else 86400
    return f"""
        WITH multi AS (
            SELECT account_key FROM _snap_all WHERE account_key IS NOT NULL GROUP BY 1 HAVING count(*) > 1
        ), colleague AS (
            SELECT s.lead_id, s.account_key, s.created_at FROM _snap_all s JOIN multi USING (account_key)
        ), activity AS (
            SELECT e.lead_id, c.account_key, c.created_at, min(e.timestamp) AS first_ts, max(e.timestamp) AS last_ts
            FROM _events e JOIN colleague c ON e.lead_id = c.lead_id
            WHERE e.event_type IN ({_sql_list(e.name for e in FEATURE_EVENT_TYPES)})
            GROUP BY e.lead_id, c.account_key, c.created_at, floor(epoch(e.timestamp) / {week})
        ), engaged AS (
            SELECT s.lead_id, count(DISTINCT a.lead_id) AS engaged_stakeholders
            FROM _snap s JOIN activity a ON a.account_key = s.account_key AND a.lead_id <> s.lead_id
            WHERE s.excluded_because IS NULL AND a.created_at < s.as_of  -- a colleague unknown at as_of cannot count
              AND a.first_ts < s.as_of AND a.last_ts >= s.as_of - INTERVAL '{w} days'
            GROUP BY s.lead_id
        ), known AS (
            SELECT s.lead_id, count(*) AS known_leads
            FROM _snap s JOIN colleague c ON c.account_key = s.account_key AND c.lead_id <> s.lead_id
            WHERE s.excluded_because IS NULL AND c.created_at < s.as_of
            GROUP BY s.lead_id
        )
        SELECT k.lead_id, e.engaged_stakeholders, k.known_leads
        FROM known k LEFT JOIN engaged e USING (lead_id)"""


# The export was taken when its newest record was written (when ``features.export_at`` is not set).
EXPORT_AT_SQL = ("SELECT greatest((SELECT max(created_at) FROM _leads), (SELECT max(outcome_at) FROM _leads), "
                 "(SELECT max(timestamp) FROM _events)) + INTERVAL '1 second'")

# Leads without an honest row, with the reason (after the feature steps have run).
EXCLUSIONS_SQL = ("SELECT lead_id, as_of, excluded_because AS reason FROM _snap_all "
                  "WHERE excluded_because IS NOT NULL ORDER BY lead_id")


class SqlStep(NamedTuple):
    name: str  # the temp view/table later steps read it as
    sql: str  # one SELECT over _leads, _events, _priority and the earlier steps
    materialize: bool  # computed once (a table) rather than a view


def input_sql(leads: str, events: str | None, priority: str | None) -> list[SqlStep]:
    """The views ``_leads``, ``_events`` and ``_priority`` the feature SQL reads, over FROM-clause sources
    (DuckDB: ``read_parquet('…')``; Spark: a temp view name). No events or no priority list: empty views."""
    if events is not None:
        ev = f"SELECT lead_id, timestamp, event_type, asset, percent_watched FROM {events}"
    else:  # leads-only exports: no behaviour log
        ev = ("SELECT CAST(NULL AS VARCHAR) AS lead_id, CAST(NULL AS TIMESTAMP) AS timestamp, "
              "CAST(NULL AS VARCHAR) AS event_type, CAST(NULL AS VARCHAR) AS asset, "
              "CAST(NULL AS DOUBLE) AS percent_watched WHERE false")
    if priority is not None:
        pr = f"SELECT CAST(account_id AS VARCHAR) AS account_id, lower(CAST(domain AS VARCHAR)) AS domain FROM {priority}"
    else:
        pr = "SELECT NULL::VARCHAR AS account_id, NULL::VARCHAR AS domain WHERE false"
    return [SqlStep("_leads", f"SELECT * FROM {leads}", False), SqlStep("_events", ev, False),
            SqlStep("_priority", pr, False)]


def feature_sql(params: FeatureParams, as_of: pd.Timestamp | None, export_at: pd.Timestamp,
                extra: list[dict] | None = None) -> list[SqlStep]:
    """The statements that build the feature table, in order; the last one (``_features``) is the table.

    They read the inputs as views ``_leads``, ``_events`` and ``_priority``. :func:`build_features` runs
    them in DuckDB; :mod:`leadscore.spark` transpiles the same statements to Spark SQL, so they stick to
    constructs both engines evaluate identically.
    """
    select = ",\n".join(f"{f.sql} AS {f.name}" for f in feature_specs(params, extra))
    final = f"""
            SELECT s.lead_id, s.as_of, s.label, {select}
            FROM _snap s JOIN _leads l ON l.lead_id = s.lead_id
            LEFT JOIN _behavior b ON b.lead_id = s.lead_id
            LEFT JOIN _account a ON a.lead_id = s.lead_id
            WHERE s.excluded_because IS NULL
            ORDER BY s.lead_id"""
    return [SqlStep("_snap_all", _snapshot_sql(params, as_of, export_at), True),
            SqlStep("_snap", "SELECT * FROM _snap_all", False),
            SqlStep("_behavior", _behavior_sql(params), True),
            SqlStep("_account", _account_sql(params), True),
            SqlStep("_features", final, False)]


@dataclass
class FeatureBuild:
    features: Path
    exclusions: Path
    metadata: Path
    leads_in: int
    rows: int
    excluded: int
    export_at: pd.Timestamp


def to_utc_naive(value) -> pd.Timestamp:
    """A moment as naive UTC (the data's convention); an offset such as +02:00 is honoured."""
    ts = pd.Timestamp(value)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


DEFAULT_MEMORY_LIMIT = "4GB"  # DuckDB spills to disk past this: memory stays bounded on any export


def connect(threads: int | None = None, memory_limit: str | None = DEFAULT_MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    return con


def _source(path) -> str:
    p = str(path).replace("'", "''")
    return f"read_parquet('{p}')" if str(path).lower().endswith((".parquet", ".pq")) else f"read_csv('{p}')"


def build_features(leads_path, events_path, out_dir, params: FeatureParams, priority_path=None,
                   as_of: str | pd.Timestamp | None = None, con: duckdb.DuckDBPyConnection | None = None,
                   extra: list[dict] | None = None, declared_after_contact: list[str] | None = None) -> FeatureBuild:
    """Write ``features.parquet`` (lead_id, as_of, label, features), ``exclusions.csv`` and
    ``feature_metadata.json`` to ``out_dir``. Inputs are validated leads/events (CSV or Parquet)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    con = con or connect()
    con.execute("SET preserve_insertion_order = false")  # aggregates: row order is irrelevant, and costs
    for step in input_sql(_source(leads_path), None if events_path is None else _source(events_path),
                          None if priority_path is None else _source(priority_path)):
        con.execute(f"CREATE OR REPLACE TEMP VIEW {step.name} AS {step.sql}")

    if params.export_at:
        export_at = to_utc_naive(params.export_at)
    else:  # the export was taken when its newest record was written
        export_at = pd.Timestamp(con.sql(EXPORT_AT_SQL).fetchall()[0][0])
    as_of_ts = to_utc_naive(as_of) if as_of is not None else None
    steps = feature_sql(params, as_of_ts, export_at, extra)
    for step in steps[:-1]:
        con.execute(f"CREATE OR REPLACE TEMP {'TABLE' if step.materialize else 'VIEW'} {step.name} AS {step.sql}")

    features_path = out_dir / "features.parquet"
    fp = str(features_path).replace("'", "''")
    con.execute(f"COPY ({steps[-1].sql}\n) TO '{fp}' (FORMAT parquet, COMPRESSION zstd)")
    exclusions = con.sql(EXCLUSIONS_SQL).df()
    exclusions_path = out_dir / "exclusions.csv"
    exclusions.to_csv(exclusions_path, index=False)
    metadata_path = out_dir / "feature_metadata.json"
    metadata_path.write_text(json.dumps({"export_at": export_at.isoformat(), "as_of": None if as_of_ts is None
                                         else as_of_ts.isoformat(), "features": feature_metadata(params, extra),
                                         "declared_after_contact": list(declared_after_contact or [])}, indent=2))
    leads_in = con.sql("SELECT count(*) FROM _snap_all").fetchall()[0][0]
    rows = con.sql(f"SELECT count(*) FROM read_parquet('{fp}')").fetchall()[0][0]
    for t in ("_behavior", "_account", "_snap_all"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    build = FeatureBuild(features_path, exclusions_path, metadata_path, leads_in, rows, len(exclusions), export_at)
    if build.rows + build.excluded != build.leads_in:
        raise AssertionError(f"feature rows {build.rows} + excluded {build.excluded} != leads {build.leads_in}")
    return build


def load_feature_table(path) -> tuple[pd.DataFrame, list[dict]]:
    """The feature table with categorical columns as pandas categories (what models consume)."""
    df = pd.read_parquet(path)
    meta = json.loads((Path(path).parent / "feature_metadata.json").read_text())["features"]
    for m in meta:
        if m["kind"] == CATEGORICAL:
            df[m["name"]] = df[m["name"]].astype("category")
    return df, meta
