"""Point-in-time fit, behavior and account features, built in DuckDB.

Each lead is described *as of* a moment: only events strictly before ``as_of`` enter its features,
and the outcome never does. Two ways to choose ``as_of``:

* **training snapshots** (``as_of=None``): one calendar of snapshot dates, every ``snapshot_every_days``
  back from the export day; at each date every lead created before it and not yet decided gets a row,
  whatever its age (up to ``max_age_days``) — the nightly job, replayed. The dates depend on the export
  moment only, never on an outcome. Label: won within ``label_horizon_days`` after the date, known only
  when that window ended before the export (else NULL: censored, kept but never trained on). Leads with
  no row at all are listed with the reason.
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
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from leadscore import behavior
from leadscore.config import FeatureParams
from leadscore.memory import job_heap, release_memory
from leadscore.reader import parquet_sql
from leadscore.vocabulary import FEATURE_EVENT_TYPES, FREE_MAIL_DOMAINS, LATE_FUNNEL, STAGE_RANK

FIT, BEHAVIOR, ACCOUNT = "fit", "behavior", "account"
CATEGORICAL, NUMERIC = "categorical", "numeric"
KEY_COLUMNS = ["lead_id", "as_of", "label"]

FUNNEL_STAGE_LABELS = {0: "none", 1: "first touch", 2: "mid funnel", 3: "late funnel"}
# Behaviours read as one reason with another (see Feature.reason_group): email opens and clicks are
# "Marketing emails", webinar sign-ups and attendance "Webinars". Other event types are a reason each.
REASON_GROUP = {"email_open": "emails", "email_click": "emails", "webinar_register": "webinars",
                "webinar_attend": "webinars"}


@dataclass(frozen=True)
class Feature:
    name: str
    group: str  # fit | behavior | account
    kind: str  # categorical | numeric
    description: str  # sentence template; {value} is the lead's value
    sql: str  # expression over the final join (see _final_select)
    value_labels: dict | None = None  # readable names for coded values
    # The reason a marketer reads this feature under (see :mod:`leadscore.reasons`): every feature of one
    # behaviour or attribute shares one group (pricing_page_7d/30d/90d/decayed -> "pricing_page"), whose
    # points are the sum of its features' and whose sentence reads them together. Empty: its own group.
    reason_group: str = ""

    @property
    def reason_key(self) -> str:
        return self.reason_group or self.name

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


# Title rules: a CASE over the trimmed, lower-cased title; the FIRST rule whose RE2 pattern matches
# wins, so the order below is the precedence. ``\b`` is an ASCII word boundary (the Spark job rewrites it
# into ASCII lookarounds, see :mod:`leadscore.spark`); RE2 has no lookarounds, so exceptions are rules of
# their own placed before the rule they except. Seniority, in this order:
#  1. student: student, intern, trainee, apprentice, MBA/PhD candidate.
#  2. assistant *to* someone (executive/personal/administrative assistant, "assistant to the CFO",
#     secretary, receptionist): before C-level, so "Executive Assistant to the CEO" is an assistant;
#     then "chief of staff" (to the CEO): a director.
#  3. C-level by its own words: chief … officer, CEO/CFO/CTO/…, founder, managing partner/director, chair,
#     board member, Geschäftsführer, PDG, directeur général.
#  4. vp: vice president (also executive/senior/assistant/associate), VP/SVP/EVP/AVP, head of: after 3 so
#     "SVP and Chief Marketing Officer" is C-level, before 6 so "Vice President of Sales" is not.
#  5. individual contributor for owner/partner roles that are not ownership: product/process/data owner,
#     business partner ("HR Business Partner").
#  6. C-level by president, owner, or partner as a rank ("Partner", "Partner, Audit", "Senior Partner"),
#     never partner as a modifier ("Partner Marketing Manager", "Channel Partner Manager").
#  7. director (also general manager, chief of staff, directeur/direktor), 8. manager (also team lead,
#     "… lead" as the last word, supervisor, gerente, leiter; never "Lead Generation …"), 9. assistant
#     (assistant, coordinator, clerk: after 7-8, so "Assistant Director" is a director), else
#     individual_contributor ("Account Executive", "Product Owner", "Lead Generation Specialist").
_PARTNER_RANK = r"(^|[,&/(|-] *|\b(managing|senior|founding|equity|general|name|salary) )partner *($|[,&/()|-])|^partner (at|with|@)"
_ASSISTANT_TO = (r"\b(assistant|secretary|aide) to\b|\b(executive|personal|administrative|admin|office|virtual) "
                 r"assistant\b|\b(receptionist|secretary)\b")
SENIORITY_RULES = [
    ("student", r"\b(student|intern|internship|trainee|apprentice|werkstudent|praktikant)\b|\b(mba|phd) "
                r"(candidate|student)\b|\bgraduate (student|assistant)\b|\brecent graduate\b"),
    ("assistant", _ASSISTANT_TO),
    ("director", r"\bchief of staff\b"),
    ("c_level", r"\bchief\b.*\bofficer\b|\bchief executive\b|\b(ceo|cfo|cto|cmo|coo|cio|cro|cso|ciso|cpo|cdo|cco|cxo)\b"
                r"|\b(co-?founder|founder|managing partner|founding partner|managing director|chairman|chairwoman"
                r"|chairperson|chair|board member|geschäftsführer|pdg)\b|\bdirect(eur|rice) g[ée]n[ée]ral"),
    ("vp", r"\b(vice[ -]president|vp|svp|evp|avp|v\.p\.|head of)\b"),
    ("individual_contributor", r"\b(product|process|service|data|content|system|systems|application|technical"
                               r"|solution|platform) owner\b|\bbusiness partner\b"),
    ("c_level", r"\b(president|owner|proprietor)\b|" + _PARTNER_RANK),
    ("director", r"\b(director|directeur|directrice|directora|direktor|general manager|chief of staff)\b"),
    ("manager", r"\b(manager|mgr|supervisor|team lead|team leader|leader|gerente|leiter|leiterin)\b"
                r"|\blead *($|[,&/()|-])"),
    ("assistant", r"\b(assistant|coordinator|clerk)\b"),
]
# Job function, first match wins: whom someone assists never sets their function (an assistant *to* the
# CFO works in administration), then marketing before sales ("Sales & Marketing Director" is marketing,
# "Partner Marketing Manager" too), sales (with channel and partner roles), IT, engineering, product,
# finance, operations, HR, general management (CEO, founder, owner, president: after the functions, so
# "Vice President of Sales" is sales), administration.
FUNCTION_RULES = [
    ("administration", _ASSISTANT_TO + r"|\boffice manager\b"),
    ("marketing", r"\bmarket(ing|er|ers)?\b|\b(growth|brand|branding|demand|content|seo|sem|communications?|pr"
                  r"|public relations|social media|campaigns?|cmo)\b|\blead gen(eration)?\b"),
    ("sales", r"\b(sales|selling|presales|pre-sales|bdr|sdr|bdm|cro|commercial|channels?|alliances?|partnerships?)\b"
              r"|\baccount (executive|manager|management|director|lead)\b|\bkey account|\bbusiness development\b"
              r"|\bchief revenue\b|\brevenue officer\b|\bpartner (manager|account|sales|development|programs?"
              r"|success|relations)\b|\bcustomer success\b"),
    ("it", r"\b(it|cio|ciso|infosec|cybersecurity|security|network|networks|infrastructure|helpdesk|devops|dba"
           r"|sysadmin)\b|\binformation (technology|security|systems|officer)\b|\btechnology\b|\bcto\b"
           r"|\bsystems? (admin|administrator|engineer|analyst)\b|\bhelp desk\b|\bchief technical\b"),
    ("engineering", r"\b(engineer|engineering|developer|software|architect|programmer|data|scientist|qa"
                    r"|r&d|research and development|machine learning)\b"),
    ("product", r"\bproduct\b|\bcpo\b"),
    ("finance", r"\b(finance|financial|cfo|accounting|accountant|controller|comptroller|treasurer|treasury"
                r"|audit|auditor|tax|bookkeeper|payroll|fp&a)\b|\baccounts (payable|receivable)\b"),
    ("operations", r"\b(operations|operational|operation|ops|coo|supply chain|logistics|procurement|purchasing"
                   r"|buyer|facilities|facility|warehouse|production)\b"),
    ("hr", r"\b(hr|hrbp|human resources|people|talent|recruiter|recruiting|recruitment|personnel"
           r"|compensation|benefits)\b"),
    ("general_management", r"\b(ceo|chief executive|founder|co-?founder|owner|proprietor|president|general manager"
                           r"|managing director|managing partner|partner|chairman|chairwoman|chair|board member"
                           r"|executive director|chief of staff|geschäftsführer|pdg)\b"),
    ("administration", r"\b(assistant|secretary|receptionist|administrative|administrator|clerk)\b"),
]


def _title_sql(rules: list[tuple[str, str]], otherwise: str) -> str:
    """A CASE over the title: 'unknown' when blank, the first rule whose pattern matches, else ``otherwise``."""
    whens = "".join(f"\n        WHEN regexp_matches(lower(trim(l.title)), '{pattern}') THEN '{label}'"
                    for label, pattern in rules)
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
                _title_sql(SENIORITY_RULES, "individual_contributor"), reason_group="title"),
        Feature("job_function", FIT, CATEGORICAL, "works in {value}", _title_sql(FUNCTION_RULES, "other"),
                reason_group="title"),
        Feature("company_size", FIT, CATEGORICAL, "company has {value} employees",
                _band_sql("l.employees", [(10, "1-10"), (50, "11-50"), (200, "51-200"), (1000, "201-1000"),
                                          (5000, "1001-5000")], "5000+"), reason_group="company"),
        Feature("revenue_band", FIT, CATEGORICAL, "company revenue is {value}",
                _band_sql("l.annual_revenue", [(1e6, "under $1M"), (1e7, "$1M-10M"), (1e8, "$10M-100M"),
                                               (1e9, "$100M-1B")], "over $1B"), reason_group="company"),
        Feature("industry", FIT, CATEGORICAL, "industry is {value}", cat("industry"), reason_group="company"),
        Feature("country", FIT, CATEGORICAL, "based in {value}", cat("country"), reason_group="company"),
        Feature("email_domain_type", FIT, CATEGORICAL, "email domain is {value}",
                domain_type_sql("l.email_domain", params.competitor_domains),
                {"corporate": "a company domain", "free_mail": "a free-mail address",
                 "competitor": "a competitor's", "unknown": "not known"}, "company"),
        Feature("lead_source", FIT, CATEGORICAL, "came in through {value}", cat("lead_source")),
    ]
    for et in FEATURE_EVENT_TYPES:
        for w in params.windows_days:
            specs.append(Feature(f"{et.name}_{w}d", BEHAVIOR, NUMERIC,
                                 et.phrase.replace("{n}", "{value}") + f" in the last {w} days",
                                 f"coalesce(b.{et.name}_{w}d, 0)", reason_group=REASON_GROUP.get(et.name, et.name)))
    for et in FEATURE_EVENT_TYPES:  # recency-weighted count (half-life params.half_life_days): read with its counts
        specs.append(Feature(f"{et.name}_decayed", BEHAVIOR, NUMERIC, f"how recent the {et.noun} were",
                             f"coalesce(b.{et.name}_decayed, 0)", reason_group=REASON_GROUP.get(et.name, et.name)))
    wmax = max(params.windows_days)
    specs += [
        Feature("lead_age_days", BEHAVIOR, NUMERIC, "lead created {value} days ago",
                "round((epoch(s.as_of) - epoch(s.created_at)) / 86400.0, 3)", reason_group="activity"),
        Feature("days_since_last_activity", BEHAVIOR, NUMERIC, "last active {value} days ago",
                "round((epoch(s.as_of) - epoch(b.last_ts)) / 86400.0, 3)", reason_group="activity"),
        Feature("days_since_first_touch", BEHAVIOR, NUMERIC, "first touch {value} days ago",
                "round((epoch(s.as_of) - epoch(b.first_ts)) / 86400.0, 3)", reason_group="activity"),
        Feature("days_first_touch_to_late_funnel", BEHAVIOR, NUMERIC,
                "reached pricing, demo or quote {value} days after the first touch",
                "round((epoch(b.first_late_ts) - epoch(b.first_ts)) / 86400.0, 3)", reason_group="activity"),
        Feature(f"active_days_{wmax}d", BEHAVIOR, NUMERIC, f"active on {{value}} different days in the last {wmax} days",
                "coalesce(" + " + ".join(f"bit_count(b.day_mask_{i})" for i in range(_n_masks(wmax))) + ", 0)",
                reason_group="activity"),
        Feature("furthest_funnel_stage", BEHAVIOR, NUMERIC, "furthest funnel stage reached: {value}",
                "coalesce(b.furthest_stage, 0)", FUNNEL_STAGE_LABELS, "activity"),
        Feature("content_value", BEHAVIOR, NUMERIC, "downloaded content worth {value} value points",
                "coalesce(b.content_value, 0)", reason_group="content_download"),
        Feature("webinar_watched_pct", BEHAVIOR, NUMERIC, "watched {value}% of webinars on average",
                "round(b.watched_sum / nullif(b.watched_n, 0), 6)", reason_group="webinars"),
        Feature(f"account_engaged_stakeholders_{params.stakeholder_window_days}d", ACCOUNT, NUMERIC,
                f"{{value}} other people from the same company engaged in the last "
                f"{params.stakeholder_window_days} days", "coalesce(a.engaged_stakeholders, 0)", reason_group="colleagues"),
        Feature("account_known_leads", ACCOUNT, NUMERIC, "{value} other leads from the same company known",
                "coalesce(a.known_leads, 0)", reason_group="colleagues"),
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
def snapshot_grid(params: FeatureParams, export_at: pd.Timestamp, first_created: pd.Timestamp) -> list[pd.Timestamp]:
    """The calendar of training snapshots: every ``snapshot_every_days`` back from the start of the export
    day (UTC midnight at or before ``export_at``) to the first lead's creation, oldest first.

    One calendar for every lead, the way the nightly job sees them: at each date every lead open then
    gets a row, whatever its age. The dates depend on the export moment only, never on an outcome.
    """
    step = pd.Timedelta(days=params.snapshot_every_days)
    newest = pd.Timestamp(export_at).floor("D")
    if newest >= export_at:  # export taken exactly at midnight: that moment is not yet "after" anything
        newest -= step
    n = max(0, int((newest - pd.Timestamp(first_created)) // step) + 1)
    return [newest - k * step for k in range(n)][::-1]


def _ts(value: pd.Timestamp) -> str:
    return f"TIMESTAMP '{pd.Timestamp(value).isoformat(sep=' ')}'"


def _lead_keys_sql(params: FeatureParams) -> str:
    """One row per lead: the account it belongs to, when it was created, whether it is a priority account."""
    return f"""
        SELECT l.lead_id,
               coalesce(l.account_id, CASE WHEN {domain_type_sql('l.email_domain', params.competitor_domains)}
                        = 'corporate' THEN l.email_domain END) AS account_key,
               l.created_at,
               coalesce(l.account_id IN (SELECT account_id FROM _priority WHERE account_id IS NOT NULL)
                        OR l.email_domain IN (SELECT domain FROM _priority WHERE domain IS NOT NULL), false)
                   AS is_priority
        FROM _leads l"""


def _snapshot_sql(params: FeatureParams, as_of: pd.Timestamp | None, export_at: pd.Timestamp,
                  grid: list[pd.Timestamp] | None) -> str:
    """The rows of the feature table, (lead_id, as_of, label).

    Training (``as_of`` None): for every date of ``grid``, every lead created before it, not yet decided
    at it, and at most ``max_age_days`` old. Label: won within ``label_horizon_days`` after the date,
    known only when the whole window lies before the export (else NULL: censored; never decided by the
    outcome). Scoring: one row per lead created strictly before ``as_of``, no label.
    """
    if as_of is None:
        dates = ", ".join(f"({_ts(t)})" for t in grid) or f"({_ts(export_at)})"
        horizon = f"INTERVAL '{params.label_horizon_days} days'"
        known = f"g.as_of + {horizon} <= {_ts(export_at)}"
        return f"""
        SELECT k.lead_id, g.as_of,
               CASE WHEN {known} THEN CAST(l.outcome = 'won' AND l.outcome_at <= g.as_of + {horizon} AS INTEGER)
               END AS label,
               k.account_key, k.created_at, k.is_priority
        FROM _lead_keys k JOIN _leads l ON l.lead_id = k.lead_id
        JOIN (SELECT * FROM (VALUES {dates}) AS grid(as_of)) g
          ON g.as_of > k.created_at AND g.as_of <= k.created_at + INTERVAL '{params.max_age_days} days'
        WHERE {'false' if not grid else 'true'}
          AND NOT (l.outcome IN ('won', 'lost') AND l.outcome_at <= g.as_of)"""
    return f"""
        SELECT k.lead_id, {_ts(as_of)} AS as_of, CAST(NULL AS INTEGER) AS label,
               k.account_key, k.created_at, k.is_priority
        FROM _lead_keys k WHERE k.created_at < {_ts(as_of)}"""


def _exclusions_sql(as_of: pd.Timestamp | None, export_at: pd.Timestamp, grid: list[pd.Timestamp] | None) -> str:
    """Leads without any row in the feature table, with the reason in words."""
    if as_of is not None:
        reason = "'created at or after as_of'"
        moment = _ts(as_of)
    else:
        newest = _ts(grid[-1]) if grid else _ts(export_at)
        reason = f"""CASE
            WHEN k.created_at >= {_ts(export_at)} THEN 'created at or after the export moment'
            WHEN k.created_at >= {newest} THEN 'created after the newest snapshot date: not yet in a snapshot'
            WHEN l.outcome IN ('won', 'lost') THEN 'decided before its first snapshot date: never open at one'
            ELSE 'older than max_age_days at every snapshot date' END"""
        moment = "CAST(NULL AS TIMESTAMP)"
    return f"""
        SELECT k.lead_id, {moment} AS as_of, {reason} AS reason
        FROM _lead_keys k JOIN _leads l ON l.lead_id = k.lead_id
        WHERE k.lead_id NOT IN (SELECT lead_id FROM _snap)"""


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
    # One row per (lead, as_of, event type) reaches the pivot, so each FILTER picks at most one value: max()
    # picks it with a smaller state than sum() (a 128-bit integer for counts), which decides whether a
    # million leads' pivot fits DuckDB's memory limit or spills (1M leads / 98M events: 46 s -> ~20 s).
    pivot = []
    for et in FEATURE_EVENT_TYPES:
        for w in params.windows_days:
            pivot.append(f"CAST(max(n_{w}) FILTER (WHERE event_type = '{et.name}') AS DOUBLE) AS {et.name}_{w}d")
        pivot.append(f"round(max(decayed) FILTER (WHERE event_type = '{et.name}'), 6) AS {et.name}_decayed")
    return f"""
        WITH ev AS (
            SELECT e.lead_id, e.event_type, e.timestamp, s.as_of, e.asset, e.percent_watched,
                   CASE WHEN e.timestamp >= s.as_of - INTERVAL '{wmax} days' THEN {day_ago_sql} END AS day_ago,
                   {age_days} AS age_days
            FROM _events e JOIN _snap s ON e.lead_id = s.lead_id
            WHERE e.timestamp < s.as_of
              AND e.event_type IN ({_sql_list(e.name for e in FEATURE_EVENT_TYPES)})
        ), per_type AS (
            SELECT lead_id, as_of, event_type,
                   {windowed},
                   sum(exp(-{decay} * age_days)) AS decayed,
                   min(timestamp) AS first_ts, max(timestamp) AS last_ts,
                   sum(CASE WHEN event_type = 'content_download' THEN {_content_value_sql(params).replace('e.asset', 'asset')} END) AS content_value,
                   sum(percent_watched) FILTER (WHERE event_type = 'webinar_attend') AS watched_sum,
                   count(percent_watched) FILTER (WHERE event_type = 'webinar_attend') AS watched_n,
                   {', '.join(masks)}
            FROM ev GROUP BY lead_id, as_of, event_type
        )
        SELECT lead_id, as_of, {', '.join(pivot)},
               min(first_ts) AS first_ts, max(last_ts) AS last_ts,
               min(first_ts) FILTER (WHERE event_type IN ({late})) AS first_late_ts,
               max({stage_case}) AS furthest_stage,
               sum(content_value) AS content_value, sum(watched_sum) AS watched_sum, sum(watched_n) AS watched_n,
               {', '.join(f'bit_or(day_mask_{i}) AS day_mask_{i}' for i in range(_n_masks(wmax)))}
        FROM per_type GROUP BY lead_id, as_of"""


def _account_sql(params: FeatureParams) -> str:
    """Other people at the same account: known before as_of, and engaged in the window before it.

    A colleague's activity is reduced to weekly (first, last) timestamps; with weeks shorter than the
    window, "some event in [as_of - window, as_of)" is decided exactly from them.
    """
    w = params.stakeholder_window_days
    week = 7 * 86400 if w > 7 else 86400
    return f"""
        WITH multi AS (
            SELECT account_key FROM _lead_keys WHERE account_key IS NOT NULL GROUP BY 1 HAVING count(*) > 1
        ), colleague AS (
            SELECT s.lead_id, s.account_key, s.created_at FROM _lead_keys s JOIN multi USING (account_key)
        ), activity AS (
            SELECT e.lead_id, c.account_key, c.created_at, min(e.timestamp) AS first_ts, max(e.timestamp) AS last_ts
            FROM _events e JOIN colleague c ON e.lead_id = c.lead_id
            WHERE e.event_type IN ({_sql_list(e.name for e in FEATURE_EVENT_TYPES)})
            GROUP BY e.lead_id, c.account_key, c.created_at, floor(epoch(e.timestamp) / {week})
        ), engaged AS (
            SELECT s.lead_id, s.as_of, count(DISTINCT a.lead_id) AS engaged_stakeholders
            FROM _snap s JOIN activity a ON a.account_key = s.account_key AND a.lead_id <> s.lead_id
            WHERE a.created_at < s.as_of  -- a colleague unknown at as_of cannot count
              AND a.first_ts < s.as_of AND a.last_ts >= s.as_of - INTERVAL '{w} days'
            GROUP BY s.lead_id, s.as_of
        ), known AS (
            SELECT s.lead_id, s.as_of, count(*) AS known_leads
            FROM _snap s JOIN colleague c ON c.account_key = s.account_key AND c.lead_id <> s.lead_id
            WHERE c.created_at < s.as_of
            GROUP BY s.lead_id, s.as_of
        )
        SELECT k.lead_id, k.as_of, e.engaged_stakeholders, k.known_leads
        FROM known k LEFT JOIN engaged e ON e.lead_id = k.lead_id AND e.as_of = k.as_of"""


def _account_at_sql(params: FeatureParams) -> str:
    """:func:`_account_sql` for a scoring run (one ``as_of`` for every row), read from ``_behavior`` rather
    than from the events: every lead created before as_of has a row, and a colleague engaged in the window
    before as_of is one whose last event before as_of lies in it (the same leads and counts as the weekly
    (first, last) test; 1M leads / 98M events: 0.4 s instead of 14 s)."""
    w = params.stakeholder_window_days
    return f"""
        WITH multi AS (
            SELECT account_key FROM _snap WHERE account_key IS NOT NULL GROUP BY 1 HAVING count(*) > 1
        ), colleague AS (
            SELECT s.lead_id, s.as_of, s.account_key,
                   coalesce(b.last_ts >= s.as_of - INTERVAL '{w} days', false) AS engaged
            FROM _snap s JOIN multi m ON m.account_key = s.account_key
            LEFT JOIN _behavior b ON b.lead_id = s.lead_id AND b.as_of = s.as_of
        ), per_account AS (
            SELECT account_key, as_of, count(*) AS leads, count(*) FILTER (WHERE engaged) AS engaged_leads
            FROM colleague GROUP BY account_key, as_of
        )
        SELECT c.lead_id, c.as_of, p.engaged_leads - CAST(c.engaged AS BIGINT) AS engaged_stakeholders,
               p.leads - 1 AS known_leads
        FROM colleague c JOIN per_account p ON p.account_key = c.account_key AND p.as_of = c.as_of"""


# Every record's day: leads created, outcomes, events (what the export moment is read from).
DAILY_RECORDS_SQL = """
        WITH t AS (
            SELECT created_at AS ts FROM _leads
            UNION ALL SELECT outcome_at AS ts FROM _leads WHERE outcome_at IS NOT NULL
            UNION ALL SELECT timestamp AS ts FROM _events)
        SELECT CAST(date_trunc('day', ts) AS VARCHAR) AS day, count(*) AS n, CAST(max(ts) AS VARCHAR) AS newest
        FROM t WHERE ts IS NOT NULL GROUP BY date_trunc('day', ts) ORDER BY 1"""

# Records dated after the export moment, per kind (reported: they cannot have happened yet).
# One row, one column per kind of record: a UNION ALL of three counts comes back in thread order, which
# made feature_metadata.json differ between two runs of the same export.
FUTURE_RECORDS_SQL = """
        SELECT (SELECT count(*) FROM _leads WHERE created_at > {t}) AS "leads.created_at",
               (SELECT count(*) FROM _leads WHERE outcome_at > {t}) AS "leads.outcome_at",
               (SELECT count(*) FROM _events WHERE timestamp > {t}) AS "events.timestamp"
"""


OUTLIER_MAX_SHARE = 0.01  # a newest cluster of records holding less than this share can be stray …
OUTLIER_MIN_GAP_DAYS = 30  # … when a gap of at least this (and 10× the typical gap between record days) precedes it


@dataclass(frozen=True)
class ExportMoment:
    """When the export was taken, and how that was decided."""

    at: pd.Timestamp
    how: str  # 'params' | 'newest record' | 'newest record before a gap (N stray records after it)'
    stray_records: int  # records dated after ``at`` that were set aside to find it


def export_moment(daily: pd.DataFrame, configured: str | None = None, as_of: pd.Timestamp | None = None) -> ExportMoment:
    """The export moment from the per-day record counts (``day``, ``n``, ``newest``; :data:`DAILY_RECORDS_SQL`).

    ``features.export_at`` when set. Otherwise one second after the newest record — unless the newest
    records form a small cluster (under 1% of all records) cut off from the rest by a gap of at least
    30 days and 10× the median gap between days with records: such stray timestamps (a mistyped year,
    a test event dated next year) are set aside and reported, so one bad row cannot move the moment
    every label is read at. With no records at all, a scoring build (``as_of`` given) takes ``as_of``: it
    has no row to build (an export whose every lead broke the contract); a training build raises ValueError.
    """
    if configured:
        return ExportMoment(to_utc_naive(configured), "params", 0)
    if daily.empty:
        if as_of is not None:
            return ExportMoment(to_utc_naive(as_of), "as_of (no records to read it from)", 0)
        raise ValueError("no timestamps in the leads or events: set features.export_at")
    days = pd.to_datetime(daily["day"], format="ISO8601").to_numpy()
    n = daily["n"].to_numpy(dtype=float)
    newest = pd.to_datetime(daily["newest"], format="ISO8601")
    total = n.sum()
    gaps = np.diff(days).astype("timedelta64[s]").astype(float) / 86400.0
    typical = float(np.median(gaps)) if len(gaps) else 0.0
    tail = np.cumsum(n[::-1])[::-1]  # records on day i and later
    for i in range(1, len(days)):  # the earliest split that leaves a small cluster behind a large gap
        if tail[i] < OUTLIER_MAX_SHARE * total and gaps[i - 1] >= max(OUTLIER_MIN_GAP_DAYS, 10 * typical):
            return ExportMoment(newest.iloc[i - 1] + pd.Timedelta(seconds=1),
                                f"newest record before a gap of {gaps[i - 1]:.0f} days "
                                f"({int(tail[i])} stray records after it)", int(tail[i]))
    return ExportMoment(newest.iloc[-1] + pd.Timedelta(seconds=1), "newest record", 0)


FIRST_CREATED_SQL = "SELECT CAST(min(created_at) AS VARCHAR) FROM _leads"

# Leads without any row, with the reason (after the feature steps have run).
EXCLUSIONS_SQL = "SELECT lead_id, as_of, reason FROM _exclusions ORDER BY lead_id"
SNAPSHOT_COUNTS_SQL = ("SELECT count(*) AS rows, count(label) AS labelled, count(DISTINCT lead_id) AS leads "
                       "FROM _snap")

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
                extra: list[dict] | None = None, grid: list[pd.Timestamp] | None = None) -> list[SqlStep]:
    """The statements that build the feature table, in order; the last one (``_features``) is the table.

    They read the inputs as views ``_leads``, ``_events`` and ``_priority``. :func:`build_features` runs
    them in DuckDB; :mod:`leadscore.spark` transpiles the same statements to Spark SQL, so they stick to
    constructs both engines evaluate identically.
    """
    select = ",\n".join(f"{f.sql} AS {f.name}" for f in feature_specs(params, extra))
    final = f"""
            SELECT s.lead_id, s.as_of, s.label, {select}
            FROM _snap s JOIN _leads l ON l.lead_id = s.lead_id
            LEFT JOIN _behavior b ON b.lead_id = s.lead_id AND b.as_of = s.as_of
            LEFT JOIN _account a ON a.lead_id = s.lead_id AND a.as_of = s.as_of
            ORDER BY s.lead_id, s.as_of"""
    return [SqlStep("_lead_keys", _lead_keys_sql(params), True),
            SqlStep("_snap", _snapshot_sql(params, as_of, export_at, grid), True),
            SqlStep("_exclusions", _exclusions_sql(as_of, export_at, grid), True),
            SqlStep("_behavior", _behavior_sql(params), True),
            SqlStep("_account", _account_sql(params) if as_of is None else _account_at_sql(params), True),
            SqlStep("_features", final, False)]


@dataclass
class FeatureBuild:
    features: Path
    exclusions: Path
    metadata: Path
    leads_in: int
    rows: int  # feature rows: one per lead and snapshot date (training) or per lead (scoring)
    excluded: int  # leads without any row (exclusions.csv says why)
    export_at: pd.Timestamp
    leads_with_rows: int = 0
    export: ExportMoment | None = None
    records_after_export: dict | None = None


def to_utc_naive(value) -> pd.Timestamp:
    """A moment as naive UTC (the data's convention); an offset such as +02:00 is honoured."""
    ts = pd.Timestamp(value)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


DEFAULT_MEMORY_LIMIT = "4GB"  # DuckDB spills to disk past this: memory stays bounded on any export


def connect(threads: int | None = None, memory_limit: str | None = DEFAULT_MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # DuckDB's own progress bar writes to stdout mid-line (it broke a benchmark's JSON line); the jobs
    # report their own progress and stage times
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    return con


def _source(path) -> str:
    """A Parquet file, a folder of Parquet parts (what ``validate`` writes for events), or a CSV file."""
    if Path(path).is_dir() or str(path).lower().endswith((".parquet", ".pq")):
        return parquet_sql(path)
    p = str(path).replace("'", "''")
    return f"read_csv('{p}')"


@job_heap()  # the collections between parts scan only what the build makes
def build_features(leads_path, events_path, out_dir, params: FeatureParams, priority_path=None,
                   as_of: str | pd.Timestamp | None = None, con: duckdb.DuckDBPyConnection | None = None,
                   extra: list[dict] | None = None, declared_after_contact: list[str] | None = None,
                   part_rows: int | None = None) -> FeatureBuild:
    """Write ``features.parquet`` (lead_id, as_of, label, features; one row per lead and snapshot date
    when training, one per lead when scoring), ``exclusions.csv`` (leads without a row, with the reason)
    and ``feature_metadata.json`` to ``out_dir``. Inputs are validated leads/events (CSV or Parquet).

    Memory: the behaviour aggregate is computed, and a scoring run's table written, in parts of
    ``part_rows`` feature rows (defaults :data:`leadscore.behavior.PART_ROWS`, :data:`WRITE_PART_ROWS`), each
    a range of leads; the parts' rows are those of one statement, in the same order.

    Raises AssertionError when the leads with rows and the excluded leads do not add up to the input."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    con = con or connect()
    con.execute("SET preserve_insertion_order = false")  # aggregates: row order is irrelevant, and costs
    for step in input_sql(_source(leads_path), None if events_path is None else _source(events_path),
                          None if priority_path is None else _source(priority_path)):
        con.execute(f"CREATE OR REPLACE TEMP VIEW {step.name} AS {step.sql}")

    as_of_ts = to_utc_naive(as_of) if as_of is not None else None
    moment = export_moment(con.sql(DAILY_RECORDS_SQL).df(), params.export_at, as_of_ts)
    export_at = moment.at
    grid = None
    if as_of_ts is None:
        first = con.sql(FIRST_CREATED_SQL).fetchall()[0][0]
        grid = snapshot_grid(params, export_at, pd.Timestamp(first)) if first is not None else []
    steps = feature_sql(params, as_of_ts, export_at, extra, grid)
    features_path = out_dir / "features.parquet"
    try:
        for step in steps[:-1]:
            if step.name == "_behavior":  # what its SQL computes, by a kernel (leadscore.behavior: 3-5x faster)
                behavior.create_behavior_view(con, params, out_dir, part_rows=part_rows)
            else:
                con.execute(f"CREATE OR REPLACE TEMP {'TABLE' if step.materialize else 'VIEW'} {step.name} AS "
                            f"{step.sql}")
        if as_of_ts is None:  # training: one statement (the pipeline's DVC output, byte for byte)
            fp = str(features_path).replace("'", "''")
            con.execute(f"COPY ({steps[-1].sql}\n) TO '{fp}' (FORMAT parquet, COMPRESSION zstd)")
        else:
            write_in_parts(con, steps[-1].sql, features_path, part_rows)
        return _finish_build(con, params, out_dir, features_path, moment, as_of_ts, grid, extra,
                             declared_after_contact)
    finally:
        try:
            for t in ("_account", "_exclusions", "_snap", "_lead_keys"):
                con.execute(f"DROP TABLE IF EXISTS {t}")
            behavior.drop(con, out_dir)
        except duckdb.Error:  # a connection the failure broke: the caller's error is the one to see
            (out_dir / "behavior.parquet").unlink(missing_ok=True)


#: Rows per Parquet row group of a feature table written in parts (DuckDB's COPY writes 122,880).
ROW_GROUP_ROWS = 122_880
#: Feature rows per part of a scoring run's feature table (each part a statement of its own: joins, sort,
#: Arrow batches). 1M leads: 250k-row parts peaked at 1.08-1.13 GiB, 100k-row parts at 0.87-0.89 GiB (the
#: job's baseline ~0.55 GiB); each part costs a scan of the leads and behaviour files (~0.3 s at 1M).
WRITE_PART_ROWS = 100_000


def write_in_parts(con: duckdb.DuckDBPyConnection, final_sql: str, path: Path, part_rows: int | None = None) -> None:
    """Write the feature table (``final_sql``, ordered by lead_id and as_of) to ``path`` one range of leads
    at a time, each range sorted on its own: the sort, and the rows it holds, no longer grow with the leads
    (1M leads: the one statement peaked at ~0.6 GiB above the job's baseline). The ranges are those of
    ``_snap_rows`` (numbered in (lead_id, as_of) order) cut in parts of ``part_rows`` (default
    :data:`WRITE_PART_ROWS`); the file holds the rows of ``final_sql`` in its order, written by pyarrow
    (zstd) from DuckDB's Arrow batches.

    Raises ValueError when ``final_sql`` does not end in ``ORDER BY s.lead_id, s.as_of``."""
    n = con.sql("SELECT count(*) FROM _snap_rows").fetchall()[0][0]
    ranges = behavior.parts(n, part_rows or WRITE_PART_ROWS)
    starts = [lo for lo, _ in ranges[1:]]
    bounds = [r[0] for r in con.execute("SELECT lead_id FROM _snap_rows WHERE list_contains(?, rn) ORDER BY rn",
                                        [starts]).fetchall()] if starts else []
    body, order = final_sql.rsplit("ORDER BY", 1)
    if order.split() != ["s.lead_id,", "s.as_of"]:
        raise ValueError(f"the feature table's order is not (lead_id, as_of): {order.strip()}")
    # DuckDB streams an ORDER BY's rows in order only while it preserves insertion order (COPY writes them
    # in order either way): on for these statements, as it was before them
    keep = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
    con.execute("SET preserve_insertion_order = true")
    writer = None
    try:
        for lo, hi in zip([None] + bounds, bounds + [None]):
            where = " AND ".join(w for w, b in (("f.lead_id >= $lo", lo), ("f.lead_id < $hi", hi)) if b is not None)
            sql = f"SELECT * FROM ({body}) f{' WHERE ' + where if where else ''} ORDER BY f.lead_id, f.as_of"
            args = {k: v for k, v in (("lo", lo), ("hi", hi)) if v is not None}
            reader = con.sql(sql, params=args or None).to_arrow_reader(ROW_GROUP_ROWS)
            writer = writer or pq.ParquetWriter(path, reader.schema, compression="zstd")
            for batch in reader:
                writer.write_batch(batch, row_group_size=ROW_GROUP_ROWS)
            reader = batch = None
            release_memory()  # the part's Arrow batches, before the next part's sort
    finally:
        if writer is not None:
            writer.close()
        con.execute(f"SET preserve_insertion_order = {str(keep).lower()}")


def _finish_build(con: duckdb.DuckDBPyConnection, params: FeatureParams, out_dir: Path, features_path: Path,
                  moment: ExportMoment, as_of_ts: pd.Timestamp | None, grid, extra,
                  declared_after_contact) -> FeatureBuild:
    """Exclusions, metadata and counts of a feature table just written."""
    export_at = moment.at
    exclusions = con.sql(EXCLUSIONS_SQL).df()
    exclusions_path = out_dir / "exclusions.csv"
    exclusions.to_csv(exclusions_path, index=False)
    future = {what: int(n) for what, n in con.sql(FUTURE_RECORDS_SQL.format(t=_ts(export_at))).df().iloc[0].items()}
    counts = con.sql(SNAPSHOT_COUNTS_SQL).df().iloc[0]
    metadata_path = out_dir / "feature_metadata.json"
    metadata_path.write_text(json.dumps({
        "export_at": export_at.isoformat(), "export_at_how": moment.how,
        "records_after_export": future,
        "as_of": None if as_of_ts is None else as_of_ts.isoformat(),
        "snapshot_dates": None if grid is None else {"first": grid[0].isoformat() if grid else None,
                                                     "last": grid[-1].isoformat() if grid else None,
                                                     "every_days": params.snapshot_every_days, "n": len(grid)},
        "rows": {"total": int(counts["rows"]), "labelled": int(counts["labelled"]),
                 "censored": int(counts["rows"] - counts["labelled"]), "leads": int(counts["leads"])},
        "features": feature_metadata(params, extra),
        "declared_after_contact": list(declared_after_contact or [])}, indent=2))
    leads_in = con.sql("SELECT count(*) FROM _lead_keys").fetchall()[0][0]
    build = FeatureBuild(features_path, exclusions_path, metadata_path, leads_in, int(counts["rows"]),
                         len(exclusions), export_at, int(counts["leads"]), moment,
                         future)
    if build.leads_with_rows + build.excluded != build.leads_in:
        raise AssertionError(f"leads with feature rows {build.leads_with_rows} + excluded {build.excluded} "
                             f"!= leads {build.leads_in}")
    return build


def load_feature_table(path) -> tuple[pd.DataFrame, list[dict]]:
    """The feature table with categorical columns as pandas categories (what models consume)."""
    df = pd.read_parquet(path)
    meta = json.loads((Path(path).parent / "feature_metadata.json").read_text())["features"]
    for m in meta:
        if m["kind"] == CATEGORICAL:
            df[m["name"]] = df[m["name"]].astype("category")
    return df, meta
