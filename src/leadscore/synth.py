"""A realistic synthetic B2B funnel with a known truth.

Each lead gets fit attributes (title, company, industry, country, source, email domain) and a
timestamped event log. Sales "decides" on a lead ``decision_days`` after it was created; the chance
of a win is a hidden, known function of the lead's fit and of the behaviour seen *before* that
decision (recency, velocity from first touch to late funnel, stakeholders at the account, ...). The
outcome date comes after the decision, and some events happen after it (late-funnel activity of
buyers, post-sale onboarding, unsubscribes of lost leads), so a pipeline that reads the future
scores suspiciously well. The true probability is written separately and is never a feature.

Everything is vectorised with NumPy and generated in chunks of leads, so 1,000,000 leads and
100,000,000 events fit in a few GiB. Same seed and sizes: the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from leadscore.config import SynthParams
from leadscore.vocabulary import (
    EVENT_TYPE_NAMES,
    FIRST_TOUCH,
    FREE_MAIL_DOMAINS,
    LATE_FUNNEL,
    MID_FUNNEL,
    NEGATIVE,
)

DAY = 86_400  # seconds

SENIORITIES = ("c_level", "vp", "director", "manager", "individual_contributor", "assistant", "student")
SENIORITY_P = (0.05, 0.07, 0.11, 0.22, 0.31, 0.10, 0.14)
SENIORITY_W = (0.9, 1.0, 0.8, 0.45, 0.0, -0.7, -1.8)

FUNCTIONS = ("Marketing", "Sales", "IT", "Engineering", "Finance", "Operations", "HR")
FUNCTION_P = (0.26, 0.20, 0.12, 0.12, 0.10, 0.12, 0.08)
FUNCTION_W = (0.5, 0.4, 0.1, -0.1, 0.1, 0.2, -0.3)

INDUSTRIES = ("Software", "Financial Services", "Professional Services", "Media", "Telecommunications",
              "Manufacturing", "Healthcare", "Retail", "Education", "Government")
INDUSTRY_P = (0.2, 0.12, 0.12, 0.06, 0.05, 0.12, 0.1, 0.09, 0.08, 0.06)
INDUSTRY_W = (0.5, 0.3, 0.2, 0.1, 0.1, 0.0, -0.1, -0.1, -0.5, -0.6)

COUNTRIES = ("United States", "United Kingdom", "Germany", "France", "Canada", "India", "Brazil",
             "Australia", "Netherlands", "Singapore", "Spain", "Mexico")
COUNTRY_P = (0.38, 0.1, 0.08, 0.06, 0.06, 0.1, 0.05, 0.05, 0.04, 0.03, 0.03, 0.02)
COUNTRY_W = (0.2, 0.15, 0.05, 0.0, 0.1, -0.4, -0.3, 0.05, 0.05, 0.0, -0.1, -0.2)

SOURCES = ("organic_search", "paid_search", "webinar", "content_syndication", "referral", "events",
           "social", "direct", "partner")
SOURCE_P = (0.22, 0.15, 0.1, 0.1, 0.08, 0.07, 0.12, 0.11, 0.05)
SOURCE_W = (0.1, 0.0, 0.2, -0.4, 0.6, 0.2, -0.2, 0.1, 0.4)

# Company size: employee cut points and the weight of each band (mid-market buys most).
SIZE_CUTS = (10, 50, 200, 1000, 5000)
SIZE_W = (-0.8, -0.2, 0.3, 0.5, 0.4, 0.1)

TITLE_FORMS = {
    "c_level": ("Chief {f} Officer", "CEO", "Founder & CEO", "CFO", "COO", "Owner", "President"),
    "vp": ("VP {f}", "Vice President of {f}", "Head of {f}", "SVP, {f}"),
    "director": ("Director of {f}", "{f} Director", "Senior Director, {f}"),
    "manager": ("{f} Manager", "Senior {f} Manager", "{f} Team Lead"),
    "individual_contributor": ("{f} Specialist", "{f} Analyst", "Senior {f} Analyst", "{f} Consultant"),
    "assistant": ("{f} Assistant", "{f} Coordinator", "Executive Assistant"),
    "student": ("Student", "MBA Candidate", "Graduate Student", "Intern", "{f} Intern"),
}

# Event types per stage, with how often each is chosen within its stage.
STAGE_TYPES = {
    FIRST_TOUCH: (("email_open", "email_click", "web_visit", "newsletter_signup", "social_follow"),
                  (0.42, 0.2, 0.32, 0.03, 0.03)),
    MID_FUNNEL: (("webinar_register", "webinar_attend", "content_download", "form_fill"),
                 (0.25, 0.2, 0.4, 0.15)),
    LATE_FUNNEL: (("pricing_page", "demo_request", "quote_form"), (0.6, 0.25, 0.15)),
    NEGATIVE: (("careers_page", "unsubscribe"), (0.7, 0.3)),
}
TYPE_CODE = {name: i for i, name in enumerate(EVENT_TYPE_NAMES)}

ASSETS = ("blog:marketing-trends", "blog:email-tips", "ebook:lead-scoring-101",
          "whitepaper:revops-benchmark", "report:state-of-b2b-2026", "case-study:acme-pipeline",
          "roi:calculator", "pricing:buyers-guide")
ASSET_VALUE = np.array([1, 1, 2, 2, 2, 3, 3, 3], dtype=float)  # mirrors features.content_value

BASE_LOGIT = -6.8  # sets the overall win rate near 12%


@dataclass(frozen=True)
class SynthPaths:
    leads: Path
    events: Path
    priority_accounts: Path
    truth: Path


def _choice(rng: np.random.Generator, n: int, p) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


def _period(params: SynthParams) -> tuple[int, int]:
    start = pd.Timestamp(params.start)
    end = start + pd.DateOffset(months=params.months)
    return int(start.timestamp()), int(end.timestamp())


def _leads(params: SynthParams, rng: np.random.Generator, competitor_domains) -> dict[str, np.ndarray]:
    """Accounts and leads with fit attributes, latent intent and the decision time."""
    n = params.n_leads
    start_s, export_s = _period(params)
    n_acc = max(1, n // 3)

    # Accounts: size, revenue, industry, country, a domain, account-level intent, priority flag.
    acc_emp = np.maximum(1, np.round(np.exp(rng.normal(5.0, 1.6, n_acc)))).astype(np.int64)
    acc_rev = np.round(acc_emp * 150_000 * np.exp(rng.normal(0, 0.5, n_acc)), -3)
    acc_ind = _choice(rng, n_acc, INDUSTRY_P)
    acc_cty = _choice(rng, n_acc, COUNTRY_P)
    acc_priority = rng.random(n_acc) < 0.06 * np.sqrt(acc_emp / np.median(acc_emp)).clip(0.2, 3)
    acc_intent = rng.normal(0, 0.7, n_acc) + 0.4 * acc_priority
    acc_center = rng.uniform(start_s, export_s, n_acc)  # the account's buying moment
    syll = np.array(["ac", "be", "cor", "dyn", "ex", "flo", "gen", "hy", "in", "jo", "ko", "lu",
                     "me", "no", "om", "pra", "qua", "ro", "sy", "te", "ul", "ve", "wa", "zen"])
    acc_domain = np.char.add(np.char.add(syll[rng.integers(0, 24, n_acc)], syll[rng.integers(0, 24, n_acc)]),
                             np.char.add(np.arange(n_acc).astype(str), ".com"))

    # Leads: the domain type first (free-mail leads belong to no account).
    dom_type = _choice(rng, n, (0.76, 0.22, 0.02))  # corporate, free mail, competitor
    acc_weight = np.exp(rng.normal(0, 1.1, n_acc))
    acc = _choice(rng, n, acc_weight)
    corporate = dom_type == 0
    acc = np.where(corporate, acc, -1)

    # Corporate leads cluster around their account's buying moment: several stakeholders at once.
    clustered = corporate & (rng.random(n) < 0.6)
    created = rng.uniform(start_s, export_s, n)
    created = np.where(clustered, acc_center[np.maximum(acc, 0)] + rng.normal(0, 40 * DAY, n), created)
    created = np.clip(created, start_s, export_s - 1).astype(np.int64)

    sen = _choice(rng, n, SENIORITY_P)
    sen = np.where((dom_type == 1) & (rng.random(n) < 0.25), SENIORITIES.index("student"), sen)
    fun = _choice(rng, n, FUNCTION_P)
    src = _choice(rng, n, SOURCE_P)
    a = np.maximum(acc, 0)
    employees = np.where(corporate, acc_emp[a], np.maximum(1, np.round(np.exp(rng.normal(2.5, 1.5, n)))))
    revenue = np.where(corporate, acc_rev[a], np.round(employees * 120_000 * np.exp(rng.normal(0, 0.6, n)), -3))
    ind = np.where(corporate, acc_ind[a], _choice(rng, n, INDUSTRY_P))
    cty = np.where(corporate & (rng.random(n) < 0.9), acc_cty[a], _choice(rng, n, COUNTRY_P))

    size_band = np.searchsorted(np.array(SIZE_CUTS), employees, side="left")
    fit_logit = (np.array(SENIORITY_W)[sen] + np.array(FUNCTION_W)[fun] + np.array(SIZE_W)[size_band]
                 + np.array(INDUSTRY_W)[ind] + np.array(COUNTRY_W)[cty] + np.array(SOURCE_W)[src]
                 + np.select([dom_type == 1, dom_type == 2], [-0.7, -3.0], 0.0))
    intent = (0.6 * np.where(corporate, acc_intent[a], 0.0) + rng.normal(0, 0.8, n)
              + 0.3 * fit_logit - 0.6 * (sen == SENIORITIES.index("student")))
    priority = corporate & acc_priority[a]

    # Stakeholders the truth counts: other leads of the account created in the 90 days before the
    # decision (each lead is created by a form fill, so they are engaged by then).
    decision = created + params.decision_days * DAY
    key_base = np.int64(4 * (export_s + 400 * DAY))
    order = np.lexsort((created, acc))
    keys = np.where(acc >= 0, acc.astype(np.int64) * key_base + created, -1)[order]
    lo = np.searchsorted(keys, acc.astype(np.int64) * key_base + decision - 90 * DAY, side="left")
    hi = np.searchsorted(keys, acc.astype(np.int64) * key_base + decision, side="left")
    stakeholders = np.where(corporate, np.maximum(hi - lo - 1, 0), 0)

    # Fit attributes as they appear in a CRM: gaps from incomplete forms and enrichment.
    f_names = np.array(FUNCTIONS, dtype=object)
    title = np.empty(n, dtype=object)
    form_pick = rng.integers(0, 100, n)
    for si, s in enumerate(SENIORITIES):
        forms = TITLE_FORMS[s]
        m = sen == si
        chosen = np.array(forms, dtype=object)[form_pick[m] % len(forms)]
        title[m] = [t.format(f=f) for t, f in zip(chosen, f_names[fun[m]])]
    case_noise = rng.random(n)
    title = np.where(case_noise < 0.05, np.char.lower(title.astype(str)).astype(object), title)
    title = np.where(rng.random(n) < 0.06, None, title)

    free = np.array(FREE_MAIL_DOMAINS[:12], dtype=object)
    email_domain = np.where(dom_type == 0, acc_domain[a].astype(object),
                            np.where(dom_type == 1, free[rng.integers(0, len(free), n)],
                                     np.array(competitor_domains or ["competitor.example"], dtype=object)[
                                         rng.integers(0, max(1, len(competitor_domains)), n)]))
    gap_emp = rng.random(n) < np.where(corporate, 0.12, 0.55)
    gap_ind = rng.random(n) < np.where(corporate, 0.08, 0.45)
    return dict(
        n=n, start_s=start_s, export_s=export_s, created=created, decision=decision, intent=intent,
        fit_logit=fit_logit, sen=sen, src=src, dom_type=dom_type, priority=priority,
        stakeholders=stakeholders,
        account_id=np.where(corporate, np.char.add("A", np.char.zfill(a.astype(str), 7)).astype(object), None),
        email_domain=email_domain, title=title,
        industry=np.where(gap_ind, None, np.array(INDUSTRIES, dtype=object)[ind]),
        employees=np.where(gap_emp, np.nan, employees).astype(float),
        annual_revenue=np.where(gap_emp | (rng.random(n) < 0.1), np.nan, revenue).astype(float),
        country=np.where(rng.random(n) < 0.03, None, np.array(COUNTRIES, dtype=object)[cty]),
        lead_source=np.array(SOURCES, dtype=object)[src],
        acc_priority_ids=np.flatnonzero(acc_priority), acc_domain=acc_domain,
    )


def _pick_types(rng, stage_codes: np.ndarray) -> np.ndarray:
    """Event type code per event, given its stage (0 first touch, 1 mid, 2 late, 3 negative)."""
    out = np.empty(stage_codes.shape, dtype=np.int16)
    r = rng.random(stage_codes.shape)
    for code, stage in enumerate((FIRST_TOUCH, MID_FUNNEL, LATE_FUNNEL, NEGATIVE)):
        names, w = STAGE_TYPES[stage]
        m = stage_codes == code
        cum = np.cumsum(w) / np.sum(w)
        idx = np.minimum(np.searchsorted(cum, r[m], side="right"), len(names) - 1)
        out[m] = np.array([TYPE_CODE[x] for x in names], dtype=np.int16)[idx]
    return out


def _chunk(L: dict, lo: int, hi: int, params: SynthParams, mean_pre: float, rng: np.random.Generator):
    """Events, outcomes and true probabilities for leads lo..hi."""
    n = hi - lo
    created, decision = L["created"][lo:hi], L["decision"][lo:hi]
    z = L["intent"][lo:hi]
    export_s = L["export_s"]
    student = L["sen"][lo:hi] == SENIORITIES.index("student")

    # --- behaviour before the decision: more and later (more recent) for high intent ---
    lam = np.minimum(mean_pre * np.exp(0.75 * z) / L["_norm"], 8 * mean_pre)  # no bots
    n_pre = rng.poisson(lam)
    rep = np.repeat(np.arange(n), n_pre)
    pre_days = np.where(rng.random(n) < 0.3, rng.uniform(1, 30, n), 0.0) * DAY
    dormant = rng.random(n) < 1 / (1 + np.exp(1.0 + 1.2 * z))  # long inactive gap before the decision
    gap = np.where(dormant, rng.uniform(0.3, 0.95, n), rng.uniform(0.0, 0.1, n)) * (decision - created)
    s, e = created - pre_days, decision - gap
    k = np.clip(z, 0, 3)
    pos = rng.random(rep.size) ** (1.0 / (1.0 + k[rep]))
    t = s[rep] + (e - s)[rep] * pos
    zr = z[rep]
    logits = np.stack([
        np.zeros_like(zr),
        -1.3 + 0.5 * zr + 0.3 * pos,
        -4.0 + 1.1 * zr + 1.6 * pos,
        -3.6 - 0.7 * zr + 1.8 * student[rep],
    ], axis=1)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    stage = (rng.random(rep.size)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1).clip(0, 3)
    etype = _pick_types(rng, stage)
    # Every lead was created by a form fill.
    rep = np.concatenate([rep, np.arange(n)])
    t = np.concatenate([t, created.astype(float)])
    etype = np.concatenate([etype, np.full(n, TYPE_CODE["form_fill"], dtype=np.int16)])
    stage = np.concatenate([stage, np.full(n, 1)])

    # Webinar attendance and content: engaged leads watch more and read the high-value assets.
    sig = 1 / (1 + np.exp(-z))
    attend = etype == TYPE_CODE["webinar_attend"]
    pct = np.full(rep.size, np.nan)
    pct[attend] = np.round(100 * rng.beta(1 + 4 * sig[rep[attend]], 2.0), 1)
    download = etype == TYPE_CODE["content_download"]
    asset = np.full(rep.size, -1, dtype=np.int16)
    hi_value = rng.random(download.sum()) < 0.15 + 0.6 * sig[rep[download]]
    asset[download] = np.where(hi_value, rng.integers(5, 8, download.sum()), rng.integers(0, 5, download.sum()))

    # --- the hidden truth: fit plus behaviour strictly before the decision ---
    before = t < decision[rep]
    in30 = before & (t >= decision[rep] - 30 * DAY)
    late30 = np.bincount(rep, weights=in30 & (stage == 2), minlength=n)
    mid30 = np.bincount(rep, weights=in30 & (stage == 1), minlength=n)
    first30 = np.bincount(rep, weights=in30 & (stage == 0), minlength=n)
    last_t = np.full(n, -np.inf)
    np.maximum.at(last_t, rep[before], t[before])
    recency_days = np.minimum((decision - last_t) / DAY, 60)
    first_t = np.full(n, np.inf)
    np.minimum.at(first_t, rep[before], t[before])
    late_mask = before & (stage == 2)
    first_late = np.full(n, np.inf)
    np.minimum.at(first_late, rep[late_mask], t[late_mask])
    fast = (first_late - first_t) <= 14 * DAY
    n_att = np.bincount(rep, weights=attend & before, minlength=n)
    watched = np.bincount(rep, weights=np.where(attend & before, np.nan_to_num(pct), 0), minlength=n)
    watched = np.where(n_att > 0, watched / np.maximum(n_att, 1) / 100, 0)
    value = np.bincount(rep, weights=np.where((asset >= 0) & before, ASSET_VALUE[asset.clip(0)], 0), minlength=n)
    unsub = np.bincount(rep, weights=before & (etype == TYPE_CODE["unsubscribe"]), minlength=n) > 0
    careers = np.bincount(rep, weights=before & (etype == TYPE_CODE["careers_page"]), minlength=n) > 0
    logit = (BASE_LOGIT + L["fit_logit"][lo:hi] + 0.85 * np.log1p(late30) + 0.35 * np.log1p(mid30)
             + 0.1 * np.log1p(first30) - 0.035 * recency_days + 0.5 * fast + 0.6 * watched
             + 0.15 * np.log1p(value) - 1.2 * unsub - 0.6 * careers
             + 0.45 * np.log1p(L["stakeholders"][lo:hi]) + 0.4 * L["priority"][lo:hi])
    p_true = 1 / (1 + np.exp(-logit))
    won = rng.random(n) < p_true
    delay = np.where(won, 7 + rng.gamma(2.0, 18.0, n), 3 + rng.gamma(1.5, 22.0, n)).clip(1, 170) * DAY
    outcome_at = decision + delay.astype(np.int64)

    # --- after the decision: buyers keep going and onboard; lost leads drift away ---
    n_late = np.where(won, rng.poisson(3.0, n), rng.poisson(0.3, n))
    n_onb = np.where(won, rng.poisson(4.0, n), 0)
    n_after = rng.poisson(0.35 * mean_pre * np.exp(0.3 * z) / L["_norm"] ** 0.4)
    n_unsub = (~won & (rng.random(n) < 0.25)).astype(np.int64)
    r_late, r_onb, r_aft, r_uns = (np.repeat(np.arange(n), c) for c in (n_late, n_onb, n_after, n_unsub))
    t_late = decision[r_late] + rng.random(r_late.size) * (outcome_at - decision)[r_late]
    t_onb = outcome_at[r_onb] + rng.uniform(1, 60, r_onb.size) * DAY
    t_aft = decision[r_aft] + rng.uniform(0, 240, r_aft.size) * DAY
    t_uns = outcome_at[r_uns] + rng.uniform(0, 30, r_uns.size) * DAY
    e_late = np.array([TYPE_CODE[x] for x in ("pricing_page", "demo_request", "quote_form")],
                      dtype=np.int16)[rng.integers(0, 3, r_late.size)]
    e_aft = np.array([TYPE_CODE[x] for x in ("email_open", "email_click", "web_visit")],
                     dtype=np.int16)[rng.integers(0, 3, r_aft.size)]
    rep = np.concatenate([rep, r_late, r_onb, r_aft, r_uns])
    t = np.concatenate([t, t_late, t_onb, t_aft, t_uns])
    etype = np.concatenate([etype, e_late, np.full(r_onb.size, TYPE_CODE["onboarding_session"], np.int16),
                            e_aft, np.full(r_uns.size, TYPE_CODE["unsubscribe"], np.int16)])
    extra = r_late.size + r_onb.size + r_aft.size + r_uns.size
    pct = np.concatenate([pct, np.full(extra, np.nan)])
    asset = np.concatenate([asset, np.full(extra, -1, np.int16)])

    # The export only holds what happened before it was taken.
    keep = t < export_s
    rep, t, etype, pct, asset = rep[keep], np.floor(t[keep]).astype(np.int64), etype[keep], pct[keep], asset[keep]
    order = np.lexsort((t, rep))
    rep, t, etype, pct, asset = rep[order], t[order], etype[order], pct[order], asset[order]

    decided = outcome_at < export_s
    outcome = np.where(decided, np.where(won, "won", "lost"), "open").astype(object)
    return dict(rep=rep, t=t, etype=etype, pct=pct, asset=asset, outcome=outcome,
                outcome_at=np.where(decided, outcome_at, -1), p_true=p_true)


def _lead_ids(n: int) -> np.ndarray:
    width = max(7, len(str(n)))
    return np.char.add("L", np.char.zfill(np.arange(1, n + 1).astype(str), width)).astype(object)


EVENT_SCHEMA = pa.schema([
    ("lead_id", pa.string()), ("timestamp", pa.timestamp("s")), ("event_type", pa.string()),
    ("asset", pa.string()), ("percent_watched", pa.float64()),
])


def _asset_column(etype: np.ndarray, asset: np.ndarray) -> pa.Array:
    """Asset per event as a dictionary-decoded string column (no Python string per row)."""
    page = {"pricing_page": "/pricing", "careers_page": "/careers", "webinar_register": "webinar:pipeline-masterclass",
            "webinar_attend": "webinar:pipeline-masterclass", "demo_request": "form:demo", "quote_form": "form:quote"}
    dictionary = list(ASSETS) + list(page.values())
    code = asset.astype(np.int32)
    for i, (name, _) in enumerate(page.items()):
        code = np.where(etype == TYPE_CODE[name], len(ASSETS) + i, code)
    arr = pa.DictionaryArray.from_arrays(pa.array(code, mask=code < 0), pa.array(dictionary))
    return arr.cast(pa.string())


def generate(params: SynthParams, seed: int, out_dir: str | Path, truth_dir: str | Path | None = None,
             competitor_domains=(), progress=None) -> SynthPaths:
    """Write leads.parquet, events.parquet, priority_accounts.csv and (separately) truth.parquet.

    ``progress`` is an optional callable taking the number of leads just finished.
    """
    out_dir, truth_dir = Path(out_dir), Path(truth_dir or out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    paths = SynthPaths(out_dir / "leads.parquet", out_dir / "events.parquet",
                       out_dir / "priority_accounts.csv", truth_dir / "truth.parquet")
    root = np.random.SeedSequence(seed)
    lead_seq, *chunk_seqs = root.spawn(1 + -(-params.n_leads // params.chunk_leads))
    L = _leads(params, np.random.default_rng(lead_seq), list(competitor_domains))
    L["_norm"] = float(np.mean(np.exp(0.75 * L["intent"])))
    mean_pre = params.events_per_lead * 0.78
    ids = _lead_ids(L["n"])
    type_names = pa.array(EVENT_TYPE_NAMES)

    outcome = np.empty(L["n"], dtype=object)
    outcome_at = np.empty(L["n"], dtype=np.int64)
    p_true = np.empty(L["n"])
    with pq.ParquetWriter(paths.events, EVENT_SCHEMA, compression="zstd") as writer:
        for c, lo in enumerate(range(0, L["n"], params.chunk_leads)):
            hi = min(lo + params.chunk_leads, L["n"])
            C = _chunk(L, lo, hi, params, mean_pre, np.random.default_rng(chunk_seqs[c]))
            outcome[lo:hi], outcome_at[lo:hi], p_true[lo:hi] = C["outcome"], C["outcome_at"], C["p_true"]
            lead_col = pa.DictionaryArray.from_arrays(pa.array(C["rep"].astype(np.int32)),
                                                      pa.array(ids[lo:hi].astype(str))).cast(pa.string())
            type_col = pa.DictionaryArray.from_arrays(pa.array(C["etype"].astype(np.int32)), type_names).cast(pa.string())
            pct = C["pct"]
            writer.write_table(pa.table({
                "lead_id": lead_col,
                "timestamp": pa.array(C["t"], type=pa.timestamp("s")),
                "event_type": type_col,
                "asset": _asset_column(C["etype"], C["asset"]),
                "percent_watched": pa.array(pct, mask=np.isnan(pct)),
            }, schema=EVENT_SCHEMA))
            if progress:
                progress(hi - lo)

    to_ts = lambda s: pd.to_datetime(s, unit="s")  # noqa: E731
    leads = pd.DataFrame({
        "lead_id": ids.astype(str),
        "created_at": to_ts(L["created"]),
        "account_id": pd.array(L["account_id"], dtype="string"),
        "email_domain": pd.array(L["email_domain"], dtype="string"),
        "title": pd.array(L["title"], dtype="string"),
        "industry": pd.array(L["industry"], dtype="string"),
        "employees": pd.array(L["employees"], dtype="Float64").astype("Int64"),
        "annual_revenue": L["annual_revenue"],
        "country": pd.array(L["country"], dtype="string"),
        "lead_source": pd.array(L["lead_source"], dtype="string"),
        "outcome": pd.array(outcome, dtype="string"),
        "outcome_at": pd.Series(to_ts(np.where(outcome_at < 0, 0, outcome_at))).where(outcome_at >= 0),
    })
    leads.to_parquet(paths.leads, index=False, compression="zstd")
    acc_ids = L["acc_priority_ids"]
    pd.DataFrame({
        "account_id": np.char.add("A", np.char.zfill(acc_ids.astype(str), 7)),
        "domain": L["acc_domain"][acc_ids],
    }).to_csv(paths.priority_accounts, index=False)
    pd.DataFrame({"lead_id": ids.astype(str), "true_probability": p_true}).to_parquet(
        paths.truth, index=False, compression="zstd")
    return paths
