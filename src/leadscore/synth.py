"""A messy synthetic B2B funnel with an EXACT truth at any snapshot.

The data look like a real CRM export: fit attributes with gaps, several stakeholders per account,
decisions that come days to many months after creation, lost leads that nobody ever closes, and
behaviour that keeps arriving for open leads. Because the generative model is simple where it
matters, the true probability that a lead still open at ``as_of`` is won within ``H`` days after
``as_of``, given everything observable at ``as_of``, is computed exactly (to quadrature precision) by
:func:`true_probability`, for any lead and any ``as_of``.

Generative model (all times in days since the lead's creation, its *age* ``a``)
--------------------------------------------------------------------------------
1. **Fit** (observable): title (seniority, job function), company size, industry, country, lead
   source, email domain type (corporate / free mail / competitor), priority account (in
   priority_accounts.csv) and ``colleagues`` = other leads of the same account created in the 90 days
   before this lead was created. CRM gaps hide some attributes; the fit score ``fit(x)`` uses only the
   *recorded* values (a missing attribute contributes 0), so it is a function of what the export shows.
2. **Latent intent** ``z ~ Normal(mu, SIGMA_Z**2)``, ``mu = BASE_Z + fit(x) + 0.5 priority + 0.45
   log1p(colleagues) + intent_trend ((created - start) / (export - start) - 1/2)``, drawn independently per lead
   given the observables (there is no hidden
   account-level intent, so colleagues' events carry no information about this lead's ``z``).
   ``zc = -0.5 + 5 tanh((z + 0.5) / 5)`` (z in the middle, saturating smoothly) drives behaviour and
   speed (no bots). ``intent_trend`` (params, default 0) makes conversion drift over time (3.0 raises the
   win rate of the newest quarter's leads about six-fold over the oldest's, 4% to 27%); the creation date is observable and
   ``mu`` is stored per lead, so the truth stays exact.
3. **Outcome**: ``won ~ Bernoulli(sigmoid(z))`` (about 12% overall).
   * won: decided after ``D_w ~ LogNormal(log(won_median_days) - WON_SPEED (zc - Z_REF), WON_SPREAD)``
     (engaged leads close faster);
   * lost: with probability ``never_closed_share`` never closed (the outcome stays ``open`` for ever);
     otherwise closed after ``D_l ~ LogNormal(lost_loc, LOST_SPREAD)``, ``lost_loc = log(lost_median_days)
     + LOST_FIT (mu - MU_REF)`` (poor fit is disqualified sooner).
   So ``P(undecided at a | z) = p S_w(a|z) + (1-p) (q + (1-q) S_l(a))`` with lognormal survival
   functions ``S`` in closed form.
4. **Behaviour while undecided**: for each funnel stage ``s`` (first touch, mid funnel, late funnel,
   negative) an inhomogeneous Poisson process in age with intensity
   ``lambda_s(a | z) = scale R_s exp(beta_s zc) (1 + a / c) ** -kappa(zc)``,
   ``kappa(zc) = kappa0 - kappa1 zc`` and ``c = activity_decay_days``: activity decays after
   creation as a power law (it never stops: open leads keep producing events), slower for engaged
   leads, so recency is informative. The event type within a stage is drawn with fixed shares.
   Marks: a webinar attendance watched >= 50% with probability ``sigmoid(0.8 zc + 0.3)``; a content
   download is a high-value asset (case study, ROI, pricing) with probability ``sigmoid(0.8 zc - 0.3)``.
   The process runs until the decision (or for ever for never-closed leads); given ``z`` it is
   independent of the outcome and of the decision time. Each lead also has a form fill at creation.
5. **After a decision** (a pipeline that reads the future must be caught): wins bring late-funnel
   events and onboarding sessions; closed lost leads unsubscribe (30%) and drift (opens, visits).
6. The export keeps what happened before ``start + months``.

The exact truth
---------------
For a lead undecided at age ``a`` with pre-decision events ``(a_i, s_i)`` strictly before ``as_of``,
the log likelihood of the events given ``z`` is, up to terms free of ``z``,
``zc * Q - (sum_s scale R_s exp(beta_s zc)) c expm1((1 - kappa) log1p(a/c)) / (1 - kappa)`` plus the
mark terms, with the per-row sufficient statistic ``Q = sum_i beta_{s_i} + kappa1 log1p(a_i / c)``
and four mark counts. Then
``P(won in (a, a+H] | obs) = E[p(z) (S_w(a|z) - S_w(a+H|z))] / E[P(undecided at a | z)]`` where ``E`` is
over ``prior(z) * likelihood(events | z)``: a 1-D integral done by the trapezoid rule on the lattice
``z = k * 0.1`` over ``mu +- 6 SIGMA_Z`` (spectrally accurate for these smooth, Gaussian-like integrands:
the error is of order ``exp(-2 pi^2 (sd / step)^2)`` for a posterior of width ``sd``; the step is halved
for active leads whose observed information says their posterior is narrower than 0.14). The lattice is
shared, so functions of ``z`` alone are computed once per group of rows. Event times are whole seconds in the export and in the truth
alike (the likelihood uses the recorded second).

``generate`` writes next to ``truth.parquet`` (in ``truth_dir``, never in the leads/events files):
``truth_model.json`` (every constant of the model) and ``truth_events.parquet`` (the pre-decision events:
lead index, time, stage, mark). Everything is vectorised with NumPy and generated in chunks of leads,
so 1,000,000 leads fit in a few GiB. Same seed and sizes: the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.special import log_expit, ndtr
from threadpoolctl import threadpool_limits

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
DOMAIN_W = (0.0, -0.7, -3.0)  # corporate, free mail, competitor

TITLE_FORMS = {
    "c_level": ("Chief {f} Officer", "CEO", "Founder & CEO", "CFO", "COO", "Owner", "President"),
    "vp": ("VP {f}", "Vice President of {f}", "Head of {f}", "SVP, {f}"),
    "director": ("Director of {f}", "{f} Director", "Senior Director, {f}"),
    "manager": ("{f} Manager", "Senior {f} Manager", "{f} Team Lead"),
    "individual_contributor": ("{f} Specialist", "{f} Analyst", "Senior {f} Analyst", "{f} Consultant"),
    "assistant": ("{f} Assistant", "{f} Coordinator", "Executive Assistant"),
    "student": ("Student", "MBA Candidate", "Graduate Student", "Intern", "{f} Intern"),
}

# Event types per stage, with how often each is chosen within its stage (fixed: the type within a
# stage carries no information about intent; the stage and the timing do).
STAGES = (FIRST_TOUCH, MID_FUNNEL, LATE_FUNNEL, NEGATIVE)
STAGE_TYPES = {
    FIRST_TOUCH: (("email_open", "email_click", "web_visit", "newsletter_signup", "social_follow"),
                  (0.42, 0.2, 0.32, 0.03, 0.03)),
    MID_FUNNEL: (("webinar_register", "webinar_attend", "content_download", "form_fill"),
                 (0.25, 0.2, 0.4, 0.15)),
    LATE_FUNNEL: (("pricing_page", "demo_request", "quote_form"), (0.6, 0.25, 0.15)),
    NEGATIVE: (("careers_page", "unsubscribe"), (0.8, 0.2)),
}
TYPE_CODE = {name: i for i, name in enumerate(EVENT_TYPE_NAMES)}

ASSETS = ("blog:marketing-trends", "blog:email-tips", "ebook:lead-scoring-101",
          "whitepaper:revops-benchmark", "report:state-of-b2b-2026", "case-study:acme-pipeline",
          "roi:calculator", "pricing:buyers-guide")
HIGH_VALUE_ASSETS = 5  # ASSETS[5:] are high value (mirrors features.content_value: 3 points)

# --- the latent model: its constants are copied into truth_model.json by `generate` ---
BASE_Z = -3.3          # sets the overall win rate near 12%
SIGMA_Z = 1.3           # spread of intent among leads with the same observables
PRIORITY_Z = 0.5
COLLEAGUE_Z = 0.45      # per log1p(colleagues created in the 90 days before the lead)
COLLEAGUE_WINDOW_DAYS = 90
Z_SAT = (-0.5, 5.0)     # behaviour and decision speed use zc = mid + half tanh((z - mid) / half): smooth saturation
WON_SPEED, WON_SPREAD, Z_REF = 0.3, 0.7, -1.0
LOST_FIT, LOST_SPREAD, MU_REF = 0.3, 1.1, -3.0
# Per stage: base rate R (events/day at creation, before `scale`), beta (intent slope of the log rate),
# and the power-law decay exponent kappa = KAPPA0 - KAPPA1 zc shared by all stages.
STAGE_RATE = (1.0, 0.25, 0.05, 0.015)
STAGE_BETA = (0.3, 0.6, 1.0, -0.3)
KAPPA0, KAPPA1 = 1.08, 0.15
MARK_ATTEND = (0.8, 0.3)     # P(watched >= 50%) = sigmoid(0.8 zc + 0.3)
MARK_DOWNLOAD = (0.8, -0.3)  # P(high-value asset) = sigmoid(0.8 zc - 0.3)
# After a decision: onboarding sessions and late-funnel events of buyers, unsubscribes and drift of lost leads.
POST_ONBOARDING, POST_LATE, POST_UNSUB_SHARE, POST_DRIFT = 4.0, 1.5, 0.3, 2.0
Z_STEP, Z_SPAN = 0.1, 6.0  # quadrature: uniform lattice z = k * 0.1 covering mu +- 6 sigma

MODEL_FILE, EVENTS_FILE = "truth_model.json", "truth_events.parquet"
MARK_NONE, MARK_ATTEND_HI, MARK_ATTEND_LO, MARK_DOWNLOAD_HI, MARK_DOWNLOAD_LO = range(5)


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


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _colleagues(acc: np.ndarray, created: np.ndarray, window_s: int) -> np.ndarray:
    """Other leads of the same account created in [created - window, created) (0 without an account)."""
    base = np.int64(4) * np.int64(max(int(created.max()), 1) + window_s + 1)
    keys = np.where(acc >= 0, acc.astype(np.int64) * base + created, -1)
    sk = np.sort(keys)
    lo = np.searchsorted(sk, keys - window_s, side="left")
    hi = np.searchsorted(sk, keys, side="left")
    return np.where(acc >= 0, hi - lo, 0)


def _leads(params: SynthParams, rng: np.random.Generator, competitor_domains) -> dict[str, np.ndarray]:
    """Accounts and leads with fit attributes as recorded, and the prior mean ``mu`` of their intent."""
    n = params.n_leads
    start_s, export_s = _period(params)
    n_acc = max(1, n // 3)

    # Accounts: size, revenue, industry, country, a domain, priority flag, a buying moment.
    acc_emp = np.maximum(1, np.round(np.exp(rng.normal(5.0, 1.6, n_acc)))).astype(np.int64)
    acc_rev = np.round(acc_emp * 150_000 * np.exp(rng.normal(0, 0.5, n_acc)), -3)
    acc_ind = _choice(rng, n_acc, INDUSTRY_P)
    acc_cty = _choice(rng, n_acc, COUNTRY_P)
    acc_priority = rng.random(n_acc) < 0.06 * np.sqrt(acc_emp / np.median(acc_emp)).clip(0.2, 3)
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
    created = np.clip(created, start_s, export_s - DAY).astype(np.int64)

    sen = _choice(rng, n, SENIORITY_P)
    sen = np.where((dom_type == 1) & (rng.random(n) < 0.25), SENIORITIES.index("student"), sen)
    fun = _choice(rng, n, FUNCTION_P)
    src = _choice(rng, n, SOURCE_P)
    a = np.maximum(acc, 0)
    employees = np.where(corporate, acc_emp[a], np.maximum(1, np.round(np.exp(rng.normal(2.5, 1.5, n)))))
    revenue = np.where(corporate, acc_rev[a], np.round(employees * 120_000 * np.exp(rng.normal(0, 0.6, n)), -3))
    ind = np.where(corporate, acc_ind[a], _choice(rng, n, INDUSTRY_P))
    cty = np.where(corporate & (rng.random(n) < 0.9), acc_cty[a], _choice(rng, n, COUNTRY_P))
    priority = corporate & acc_priority[a]

    # Fit attributes as they appear in a CRM: gaps from incomplete forms and enrichment.
    f_names = np.array(FUNCTIONS, dtype=object)
    title = np.empty(n, dtype=object)
    has_function = np.zeros(n, dtype=bool)  # the title names the job function
    form_pick = rng.integers(0, 100, n)
    for si, s in enumerate(SENIORITIES):
        forms = TITLE_FORMS[s]
        m = sen == si
        chosen = np.array(forms, dtype=object)[form_pick[m] % len(forms)]
        title[m] = [t.format(f=f) for t, f in zip(chosen, f_names[fun[m]])]
        has_function[m] = np.array(["{f}" in t for t in forms])[form_pick[m] % len(forms)]
    case_noise = rng.random(n)
    title = np.where(case_noise < 0.05, np.char.lower(title.astype(str)).astype(object), title)
    gap_title = rng.random(n) < 0.06
    title = np.where(gap_title, None, title)

    free = np.array(FREE_MAIL_DOMAINS[:12], dtype=object)
    email_domain = np.where(dom_type == 0, acc_domain[a].astype(object),
                            np.where(dom_type == 1, free[rng.integers(0, len(free), n)],
                                     np.array(competitor_domains or ["competitor.example"], dtype=object)[
                                         rng.integers(0, max(1, len(competitor_domains)), n)]))
    gap_emp = rng.random(n) < np.where(corporate, 0.12, 0.55)
    gap_ind = rng.random(n) < np.where(corporate, 0.08, 0.45)
    gap_rev = gap_emp | (rng.random(n) < 0.1)
    gap_cty = rng.random(n) < 0.03

    # The fit score from what the export shows: a missing attribute contributes nothing.
    size_band = np.searchsorted(np.array(SIZE_CUTS), employees, side="left")
    fit = (np.where(gap_title, 0.0, np.array(SENIORITY_W)[sen] + has_function * np.array(FUNCTION_W)[fun])
           + np.where(gap_emp, 0.0, np.array(SIZE_W)[size_band])
           + np.where(gap_ind, 0.0, np.array(INDUSTRY_W)[ind])
           + np.where(gap_cty, 0.0, np.array(COUNTRY_W)[cty])
           + np.array(SOURCE_W)[src] + np.array(DOMAIN_W)[dom_type])
    colleagues = _colleagues(acc, created, COLLEAGUE_WINDOW_DAYS * DAY)
    mu = BASE_Z + fit + PRIORITY_Z * priority + COLLEAGUE_Z * np.log1p(colleagues)
    if params.intent_trend:  # a market that warms up (or cools down): intent rises with the creation date
        mu = mu + params.intent_trend * ((created - start_s) / (export_s - start_s) - 0.5)
    return dict(
        n=n, start_s=start_s, export_s=export_s, created=created, mu=mu, colleagues=colleagues,
        account_id=np.where(corporate, np.char.add("A", np.char.zfill(a.astype(str), 7)).astype(object), None),
        email_domain=email_domain, title=title,
        industry=np.where(gap_ind, None, np.array(INDUSTRIES, dtype=object)[ind]),
        employees=np.where(gap_emp, np.nan, employees).astype(float),
        annual_revenue=np.where(gap_rev, np.nan, revenue).astype(float),
        country=np.where(gap_cty, None, np.array(COUNTRIES, dtype=object)[cty]),
        lead_source=np.array(SOURCES, dtype=object)[src],
        acc_priority_ids=np.flatnonzero(acc_priority), acc_domain=acc_domain,
    )


def _model(params: SynthParams, export_s: int) -> dict:
    """Every constant of the latent model (``scale`` is filled in by ``generate``)."""
    return {
        "version": 2, "export_s": export_s, "sigma_z": SIGMA_Z, "z_sat": list(Z_SAT),
        "won": {"log_median_days": float(np.log(params.won_median_days)), "speed": WON_SPEED,
                "z_ref": Z_REF, "spread": WON_SPREAD},
        "lost": {"log_median_days": float(np.log(params.lost_median_days)), "fit": LOST_FIT, "mu_ref": MU_REF,
                 "spread": LOST_SPREAD, "never_closed_share": params.never_closed_share},
        "behaviour": {"c_days": params.activity_decay_days, "scale": None, "stages": list(STAGES),
                      "rate": list(STAGE_RATE), "beta": list(STAGE_BETA), "kappa0": KAPPA0,
                      "kappa1": KAPPA1},
        "marks": {"attend": list(MARK_ATTEND), "download": list(MARK_DOWNLOAD)},
        "quadrature": {"step": Z_STEP, "span_sigma": Z_SPAN},
    }


def _saturate(z, M: dict):
    """The intent that drives behaviour and decision speed: z near the middle, saturating smoothly
    (no bots, no instant deals); analytic, so the quadrature stays spectrally accurate."""
    mid, half = M["z_sat"]
    return mid + half * np.tanh((z - mid) / half)


def _lost_loc(mu: np.ndarray, M: dict) -> np.ndarray:
    lo = M["lost"]
    return lo["log_median_days"] + lo["fit"] * (mu - lo["mu_ref"])


def _won_loc(zc: np.ndarray, M: dict) -> np.ndarray:
    w = M["won"]
    return w["log_median_days"] - w["speed"] * (zc - w["z_ref"])


def _latent(mu: np.ndarray, M: dict, rng: np.random.Generator):
    """Intent z, the ultimate outcome and the decision delay in days (inf: never closed)."""
    n = mu.size
    z = mu + M["sigma_z"] * rng.standard_normal(n)
    zc = _saturate(z, M)
    won = rng.random(n) < _sigmoid(z)
    never = ~won & (rng.random(n) < M["lost"]["never_closed_share"])
    d_won = np.exp(_won_loc(zc, M) + M["won"]["spread"] * rng.standard_normal(n))
    d_lost = np.exp(_lost_loc(mu, M) + M["lost"]["spread"] * rng.standard_normal(n))
    delay = np.where(won, d_won, np.where(never, np.inf, d_lost))
    return z, won, never, delay


def _cum_shape(age_days, kappa, c, log_age=False):
    """Integral over [0, age] of (1 + s/c)^-kappa, in days (kappa = 1 handled by its limit).
    With ``log_age`` the first argument is already ``log1p(age / c)``."""
    g = age_days if log_age else np.log1p(age_days / c)
    e = 1.0 - kappa
    small = np.abs(e) < 1e-9
    e_safe = np.where(small, 1.0, e)
    return c * np.where(small, g, np.expm1(e_safe * g) / e_safe)


def _inverse_shape(frac, age_end, kappa, c):
    """Age at which the cumulative shape reaches ``frac`` of its value at ``age_end``."""
    g_end = np.log1p(age_end / c)
    e = 1.0 - kappa
    small = np.abs(e) < 1e-9
    e_safe = np.where(small, 1.0, e)
    g = np.where(small, frac * g_end, np.log1p(frac * np.expm1(e_safe * g_end)) / e_safe)
    return c * np.expm1(g)


def _stage_arrays(M: dict):
    b = M["behaviour"]
    return np.array(b["rate"]) * b["scale"], np.array(b["beta"]), b["kappa0"], b["kappa1"], b["c_days"]


def _expected_pre(zc, age_end, M, scale=1.0):
    """Expected number of pre-decision events per lead over [0, age_end], per stage (n, 4)."""
    rate, beta, k0, k1, c = _stage_arrays({**M, "behaviour": {**M["behaviour"], "scale": scale}})
    kap = (k0 - k1 * zc)[:, None]
    return rate[None, :] * np.exp(beta[None, :] * zc[:, None]) * _cum_shape(age_end[:, None], kap, c)


def _pick_types(rng, stage_codes: np.ndarray) -> np.ndarray:
    """Event type code per event, given its stage (0 first touch, 1 mid, 2 late, 3 negative)."""
    out = np.empty(stage_codes.shape, dtype=np.int16)
    r = rng.random(stage_codes.shape)
    for code, stage in enumerate(STAGES):
        names, w = STAGE_TYPES[stage]
        m = stage_codes == code
        cum = np.cumsum(w) / np.sum(w)
        idx = np.minimum(np.searchsorted(cum, r[m], side="right"), len(names) - 1)
        out[m] = np.array([TYPE_CODE[x] for x in names], dtype=np.int16)[idx]
    return out


def _chunk(L: dict, lo: int, hi: int, M: dict, rng: np.random.Generator):
    """Events and outcomes of leads lo..hi, and the truth's copy of their pre-decision events."""
    n = hi - lo
    created, z, won, delay = L["created"][lo:hi], L["z"][lo:hi], L["won"][lo:hi], L["delay"][lo:hi]
    export_s = L["export_s"]
    zc = _saturate(z, M)

    # --- behaviour while undecided: one power-law Poisson process per stage, until decision or export ---
    age_end = np.minimum(delay, (export_s - created) / DAY)
    rate, beta, k0, k1, c = _stage_arrays(M)
    kap = k0 - k1 * zc
    counts = rng.poisson(rate[None, :] * np.exp(beta[None, :] * zc[:, None])
                         * _cum_shape(age_end[:, None], kap[:, None], c)).ravel()
    rep = np.repeat(np.repeat(np.arange(n), len(STAGES)), counts)
    stage = np.repeat(np.tile(np.arange(len(STAGES), dtype=np.int8), n), counts)
    age = _inverse_shape(rng.random(rep.size), age_end[rep], kap[rep], c)
    t = np.minimum(np.floor(created[rep] + age * DAY), export_s - 1).astype(np.int64)
    etype = _pick_types(rng, stage)
    mark = np.full(rep.size, MARK_NONE, dtype=np.int8)
    pct = np.full(rep.size, np.nan)
    asset = np.full(rep.size, -1, dtype=np.int16)
    attend = etype == TYPE_CODE["webinar_attend"]
    hi_w = rng.random(attend.sum()) < _sigmoid(MARK_ATTEND[0] * zc[rep[attend]] + MARK_ATTEND[1])
    mark[attend] = np.where(hi_w, MARK_ATTEND_HI, MARK_ATTEND_LO)
    k = attend.sum()
    pct[attend] = np.where(hi_w, rng.integers(500, 1001, k), rng.integers(0, 500, k)) / 10.0  # >= 50% iff hi
    download = etype == TYPE_CODE["content_download"]
    hi_d = rng.random(download.sum()) < _sigmoid(MARK_DOWNLOAD[0] * zc[rep[download]] + MARK_DOWNLOAD[1])
    mark[download] = np.where(hi_d, MARK_DOWNLOAD_HI, MARK_DOWNLOAD_LO)
    asset[download] = np.where(hi_d, rng.integers(HIGH_VALUE_ASSETS, len(ASSETS), download.sum()),
                               rng.integers(0, HIGH_VALUE_ASSETS, download.sum()))
    order = np.lexsort((t, rep))
    truth_events = dict(lead=(lo + rep[order]).astype(np.int32), t=t[order], stage=stage[order], mark=mark[order])

    # Every lead was created by a form fill.
    rep = np.concatenate([rep, np.arange(n)])
    t = np.concatenate([t, created])
    etype = np.concatenate([etype, np.full(n, TYPE_CODE["form_fill"], dtype=np.int16)])

    # --- after the decision: buyers keep going and onboard; closed lost leads drift away ---
    decided = np.isfinite(delay)
    outcome_at = np.where(decided, np.floor(created + np.where(decided, delay, 0) * DAY), -1).astype(np.int64)
    lost = decided & ~won
    n_onb = np.where(won, rng.poisson(POST_ONBOARDING, n), 0)
    n_late = np.where(won, rng.poisson(POST_LATE, n), 0)
    n_unsub = (lost & (rng.random(n) < POST_UNSUB_SHARE)).astype(np.int64)
    n_drift = np.where(lost, rng.poisson(POST_DRIFT, n), 0)
    r_onb, r_late, r_uns, r_dr = (np.repeat(np.arange(n), k) for k in (n_onb, n_late, n_unsub, n_drift))
    t_post = np.concatenate([outcome_at[r_onb] + rng.uniform(1, 60, r_onb.size) * DAY,
                             outcome_at[r_late] + rng.uniform(0, 20, r_late.size) * DAY,
                             outcome_at[r_uns] + rng.uniform(0, 30, r_uns.size) * DAY,
                             outcome_at[r_dr] + rng.uniform(0, 240, r_dr.size) * DAY])
    late_types = np.array([TYPE_CODE[x] for x in ("pricing_page", "demo_request", "quote_form")], np.int16)
    drift_types = np.array([TYPE_CODE[x] for x in ("email_open", "email_click", "web_visit")], np.int16)
    e_post = np.concatenate([np.full(r_onb.size, TYPE_CODE["onboarding_session"], np.int16),
                             late_types[rng.integers(0, 3, r_late.size)],
                             np.full(r_uns.size, TYPE_CODE["unsubscribe"], np.int16),
                             drift_types[rng.integers(0, 3, r_dr.size)]])
    rep = np.concatenate([rep, r_onb, r_late, r_uns, r_dr])
    t = np.concatenate([t, np.floor(t_post).astype(np.int64)])
    etype = np.concatenate([etype, e_post])
    extra = t.size - pct.size
    pct = np.concatenate([pct, np.full(extra, np.nan)])
    asset = np.concatenate([asset, np.full(extra, -1, np.int16)])

    # The export only holds what happened before it was taken.
    keep = t < export_s
    rep, t, etype, pct, asset = rep[keep], t[keep], etype[keep], pct[keep], asset[keep]
    order = np.lexsort((t, rep))
    rep, t, etype, pct, asset = rep[order], t[order], etype[order], pct[order], asset[order]

    shown = decided & (outcome_at < export_s)
    outcome = np.where(shown, np.where(won, "won", "lost"), "open").astype(object)
    return dict(rep=rep, t=t, etype=etype, pct=pct, asset=asset, outcome=outcome,
                outcome_at=np.where(shown, outcome_at, -1), truth_events=truth_events)


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



TRUTH_EVENT_SCHEMA = pa.schema([("lead", pa.int32()), ("t", pa.int64()), ("stage", pa.int8()), ("mark", pa.int8())])


def generate(params: SynthParams, seed: int, out_dir: str | Path, truth_dir: str | Path | None = None,
             competitor_domains=(), progress=None) -> SynthPaths:
    """Write leads.parquet, events.parquet, priority_accounts.csv and (separately, in ``truth_dir``)
    truth.parquet, truth_model.json and truth_events.parquet.

    truth.parquet: one row per lead: ``lead_id``, ``true_probability`` (sigmoid(z): the probability of
    eventually winning given the lead's intent), ``created_at``, ``mu``, ``lost_loc`` (log days),
    ``z``, ``won``, ``never_closed``, ``decision_at`` (may lie after the export; null if never closed).
    ``progress`` is an optional callable taking the number of leads just finished.
    """
    out_dir, truth_dir = Path(out_dir), Path(truth_dir or out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    paths = SynthPaths(out_dir / "leads.parquet", out_dir / "events.parquet",
                       out_dir / "priority_accounts.csv", truth_dir / "truth.parquet")
    root = np.random.SeedSequence(seed)
    lead_seq, latent_seq, pilot_seq, *chunk_seqs = root.spawn(3 + -(-params.n_leads // params.chunk_leads))
    L = _leads(params, np.random.default_rng(lead_seq), list(competitor_domains))
    M = _model(params, L["export_s"])

    # The rate scale that gives about `events_per_lead` events per lead, fixed from a pilot draw that
    # is independent of the leads' actual intents (so the scale is a constant of the model, not data).
    zp, wonp, _, delayp = _latent(L["mu"], M, np.random.default_rng(pilot_seq))
    to_export = (L["export_s"] - L["created"]) / DAY
    pre = _expected_pre(_saturate(zp, M), np.minimum(delayp, to_export), M).sum(axis=1).mean()
    seen = delayp < to_export
    post = np.mean(seen * np.where(wonp, POST_ONBOARDING + POST_LATE, POST_UNSUB_SHARE + POST_DRIFT))
    M["behaviour"]["scale"] = float(max(params.events_per_lead - 1.0 - post, 0.1 * params.events_per_lead) / pre)

    L["z"], L["won"], never, L["delay"] = _latent(L["mu"], M, np.random.default_rng(latent_seq))
    ids = _lead_ids(L["n"])
    type_names = pa.array(EVENT_TYPE_NAMES)

    outcome = np.empty(L["n"], dtype=object)
    outcome_at = np.empty(L["n"], dtype=np.int64)
    with pq.ParquetWriter(paths.events, EVENT_SCHEMA, compression="zstd") as writer, \
            pq.ParquetWriter(truth_dir / EVENTS_FILE, TRUTH_EVENT_SCHEMA, compression="zstd") as twriter:
        for c, lo in enumerate(range(0, L["n"], params.chunk_leads)):
            hi = min(lo + params.chunk_leads, L["n"])
            C = _chunk(L, lo, hi, M, np.random.default_rng(chunk_seqs[c]))
            outcome[lo:hi], outcome_at[lo:hi] = C["outcome"], C["outcome_at"]
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
            twriter.write_table(pa.table(C["truth_events"], schema=TRUTH_EVENT_SCHEMA))
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
    decided = np.isfinite(L["delay"])
    decision_s = np.floor(L["created"] + np.where(decided, L["delay"], 0) * DAY).astype(np.int64)
    pd.DataFrame({
        "lead_id": ids.astype(str),
        "true_probability": _sigmoid(L["z"]),
        "created_at": to_ts(L["created"]),
        "mu": L["mu"],
        "lost_loc": _lost_loc(L["mu"], M),
        "z": L["z"],
        "won": L["won"],
        "never_closed": never,
        "decision_at": pd.Series(to_ts(np.where(decided, decision_s, 0))).where(decided),
    }).to_parquet(paths.truth, index=False, compression="zstd")
    (truth_dir / MODEL_FILE).write_text(json.dumps(M, indent=1, sort_keys=True) + "\n")
    return paths


def _seconds(values) -> np.ndarray:
    """Timestamps (naive = UTC, or tz-aware) as whole epoch seconds, int64."""
    ts = pd.to_datetime(pd.Series(values).reset_index(drop=True))
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return ts.to_numpy(dtype="datetime64[s]").astype(np.int64)


def _row_statistics(events_path: Path, lo: int, hi: int, lead: np.ndarray, as_of: np.ndarray,
                    created: np.ndarray, M: dict) -> np.ndarray:
    """Sufficient statistics (Q, four mark counts, and Q2 = the sum of squared event scores, which sizes
    the posterior; shape (rows, 6)) of each row's events: those of its
    lead (index in [lo, hi)) strictly before its as_of, from cumulative sums over the leads' time-ordered
    pre-decision events."""
    _, beta, _, k1, c = _stage_arrays(M)
    E = pq.read_table(events_path, filters=[("lead", ">=", lo), ("lead", "<", hi)])
    need = np.zeros(hi - lo, dtype=bool)
    need[lead - lo] = True
    ev_lead = E.column("lead").to_numpy().astype(np.int64)
    keep = need[ev_lead - lo]
    ev_lead, ev_t = ev_lead[keep], E.column("t").to_numpy()[keep]
    stage, mark = E.column("stage").to_numpy()[keep].astype(np.int64), E.column("mark").to_numpy()[keep]
    del E
    stats = np.zeros((ev_lead.size + 1, 6))
    ev_age = (ev_t - created[ev_lead]) / DAY
    stats[1:, 0] = beta[stage] + k1 * np.log1p(ev_age / c)  # Q: multiplies zc in the log likelihood
    stats[1:, 5] = stats[1:, 0] ** 2
    for j, m in enumerate((MARK_ATTEND_HI, MARK_ATTEND_LO, MARK_DOWNLOAD_HI, MARK_DOWNLOAD_LO)):
        stats[1:, 1 + j] = mark == m
    np.cumsum(stats, axis=0, out=stats)
    shift = np.int64(1) << np.int64(33)
    keys = ev_lead * shift + ev_t  # sorted: events are stored by (lead, t)
    start = np.searchsorted(keys, lead * shift, side="left")
    end = np.searchsorted(keys, lead * shift + as_of, side="left")
    return stats[end] - stats[start]


def true_probability(truth_dir: str | Path, snapshots: pd.DataFrame, horizon_days: float,
                     block_rows: int = 4096, lead_block: int = 200_000) -> np.ndarray:
    """The exact probability that each snapshot's lead is won within ``horizon_days`` after its ``as_of``.

    ``snapshots``: a DataFrame with ``lead_id`` (str) and ``as_of`` (timestamps, naive UTC or tz-aware),
    any number of rows in any order. ``horizon_days``: the label horizon H in days (float).
    Returns a float64 array of shape ``(len(snapshots),)``: for each row,
    ``P(won in (as_of, as_of + H] | fit, account observables, this lead's events strictly before as_of,
    lead undecided at as_of)``, computed by quadrature over the lead's latent intent (see the module
    docstring). NaN where it is undefined: unknown lead, lead created at or after ``as_of``, lead already
    decided at ``as_of`` (its ``outcome_at <= as_of``), or ``as_of`` after the export (events unknown).
    Reads truth.parquet, truth_model.json and truth_events.parquet written by :func:`generate`.
    """
    truth_dir = Path(truth_dir)
    M = json.loads((truth_dir / MODEL_FILE).read_text())
    T = pd.read_parquet(truth_dir / "truth.parquet", columns=["lead_id", "created_at", "mu", "lost_loc", "decision_at"])
    out = np.full(len(snapshots), np.nan)
    if not len(snapshots):
        return out
    idx = pd.Index(T["lead_id"].astype(str)).get_indexer(snapshots["lead_id"].astype(str).to_numpy())
    as_of = _seconds(snapshots["as_of"])
    created = _seconds(T["created_at"])
    dec = T["decision_at"]
    decision = np.where(dec.notna(), _seconds(dec.fillna(pd.Timestamp(0))), np.iinfo(np.int64).max)
    i = np.maximum(idx, 0)
    valid = (idx >= 0) & (created[i] < as_of) & (as_of <= M["export_s"]) & (decision[i] > as_of)
    rows = np.flatnonzero(valid)
    if not rows.size:
        return out
    lead, as_of = i[rows], as_of[rows]

    rate, beta, k0, k1, c = _stage_arrays(M)
    S = np.empty((rows.size, 6))
    for lo in range(0, len(T), lead_block):  # bounded memory: the events of one block of leads at a time
        in_block = (lead >= lo) & (lead < lo + lead_block)
        if in_block.any():
            S[in_block] = _row_statistics(truth_dir / EVENTS_FILE, lo, lo + lead_block, lead[in_block],
                                          as_of[in_block], created, M)
    age = (as_of - created[lead]) / DAY
    mu, lost_loc = T["mu"].to_numpy()[lead], T["lost_loc"].to_numpy()[lead]
    sigma = M["sigma_z"]
    h, span = M["quadrature"]["step"], M["quadrature"]["span_sigma"]
    q, w_spread = M["lost"]["never_closed_share"], M["won"]["spread"]
    att, dl = M["marks"]["attend"], M["marks"]["download"]
    log_age, log_h = np.log(age), np.log(age + horizon_days)
    # P(a lost lead is still undecided at this age): never closed, or closed later.
    still_lost = q + (1 - q) * ndtr(-(log_age - lost_loc) / M["lost"]["spread"])
    g = np.log1p(age / c)

    # Quadrature on a lattice z = k h_r covering mu +- span sigma. The step h_r = h / 2^level is fine
    # enough for the row's posterior: its width is at least 1 / sqrt(1/sigma^2 + Q2) (Q2: the observed
    # information of the events), and the step is at most 0.7 of that, so the trapezoid error,
    # ~exp(-2 pi^2 (sd / step)^2), stays below 1e-15 relative. Rows sharing (level, first lattice point)
    # share every function of z alone (computed once per group).
    sd = 1.0 / np.sqrt(1.0 / sigma**2 + S[:, 5])
    level = np.clip(np.ceil(np.log2(h / (0.7 * sd))), 0, 8).astype(np.int64)
    step = h / 2.0**level
    k_first = np.floor((mu - span * sigma) / step).astype(np.int64)
    order = np.lexsort((k_first, level))
    key = np.stack([level[order], k_first[order]])
    cuts = np.flatnonzero((np.diff(key, axis=1) != 0).any(axis=0)) + 1
    res = np.empty(rows.size)
    with threadpool_limits(1):  # small matrix products: BLAS threads would only contend
        for grp in np.split(order, cuts):
            n_z = int(np.ceil(2 * span * sigma / step[grp[0]])) + 2
            z = (k_first[grp[0]] + np.arange(n_z)) * step[grp[0]]
            zc = _saturate(z, M)
            e = 1.0 - (k0 - k1 * zc)  # 1 - kappa(zc)
            e = np.where(np.abs(e) < 1e-9, 1e-9, e)
            comp = (rate[:, None] * np.exp(beta[:, None] * zc[None, :])).sum(axis=0) * c / e
            ya, yd = att[0] * zc + att[1], dl[0] * zc + dl[1]
            la, ld = log_expit(ya), log_expit(yd)
            # Terms linear in the row statistics: one matrix product. The prior's -mu^2 / (2 sigma^2) is
            # constant per row and cancels.
            table = np.stack([zc, la, la - ya, ld, ld - yd, z / sigma**2, -0.5 * (z / sigma) ** 2])
            p, loc = _sigmoid(z), _won_loc(zc, M)
            for b in range(0, grp.size, block_rows):
                r = grp[b:b + block_rows]
                X = np.column_stack([S[r, :5], mu[r], np.ones(r.size)])
                ll = X @ table - comp * np.expm1(e * g[r, None])
                ll -= ll.max(axis=1, keepdims=True)
                w = np.exp(ll, out=ll)
                wp = w * p
                s_now = ndtr((loc - log_age[r, None]) / w_spread)
                s_then = ndtr((loc - log_h[r, None]) / w_spread)
                won_now = np.einsum("ij,ij->i", wp, s_now)
                num = won_now - np.einsum("ij,ij->i", wp, s_then)
                den = won_now + still_lost[r] * (w @ (1 - p))
                res[r] = num / den
    out[rows] = res
    return out
