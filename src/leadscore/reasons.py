"""Reasons at the level people think in: one reason per behaviour or attribute, in plain words.

A model sees the pricing page through four features (visits in the last 7, 30 and 90 days and a
recency-weighted count); a marketer sees one behaviour. :attr:`leadscore.features.Feature.reason_group`
(defined once, beside each feature in :func:`leadscore.features.feature_specs`) puts such features in
one group; a group's points are the sum of its features' points (SHAP values add), so grouped reasons
still add up to the score exactly. Mapped export columns (``x_…``) are each their own group.

This module turns a group and a lead's feature values into one sentence:

* behaviour: "Pricing page: visited 3 times in the last 7 days, 5 in the last 90 days";
  absence: "No pricing-page visit in the last 90 days";
* attributes: "Industry: software", "Company size: 51-200 employees"; unknowns: "Company size not known";
* activity, age, funnel and colleagues: "Last active 2 days ago, on 4 different days in the last 90 days",
  "Lead created 1 day ago", "Reached the late funnel (pricing, demo or quote) 12 days after the first touch".

Singular and plural are chosen per lead; no internal term (feature names, "time-weighted", "half-life",
"unknown" as a value) reaches a sentence. Everything is vectorised over the leads of a group.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from leadscore.vocabulary import BY_NAME, NEGATIVE

#: Words that must never reach a reader (a test greps every sentence for them).
INTERNAL_TERMS = ("time-weighted", "half-life", "decayed", "unknown", "nan", "none", "_", "{", "}")


# ----------------------------------------------------------------------------- grouping
def group_layout(features) -> tuple[list[str], np.ndarray]:
    """(group keys in first-seen order, group position of every feature)."""
    keys: list[str] = []
    pos: dict[str, int] = {}
    member = np.empty(len(features), dtype=np.int64)
    for j, f in enumerate(features):
        k = getattr(f, "reason_key", None) or f.name
        if k not in pos:
            pos[k] = len(keys)
            keys.append(k)
        member[j] = pos[k]
    return keys, member


def group_matrix(contributions: np.ndarray, member: np.ndarray, n_groups: int) -> np.ndarray:
    """(n, groups): each group's points, the sum of its features' points."""
    onehot = np.zeros((len(member), n_groups))
    onehot[np.arange(len(member)), member] = 1.0
    return np.asarray(contributions, float) @ onehot


# ----------------------------------------------------------------------------- words
def _num(values) -> np.ndarray:
    values = np.asarray(values) if not isinstance(values, pd.Series) else values.to_numpy()
    if values.dtype.kind in "biuf":
        return values.astype(float)
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _per_int(d: np.ndarray, render) -> np.ndarray:
    """``render(k)`` (a str) of each whole number in ``d``, computed once per distinct value."""
    u, inverse = np.unique(d, return_inverse=True)
    return np.array([render(int(k)) for k in u] or [""], dtype=object)[inverse.ravel()] if len(d) else \
        np.empty(0, dtype=object)


def _int_text(v: np.ndarray) -> np.ndarray:
    return _per_int(np.round(np.nan_to_num(v)).astype(np.int64), str)


def _ago(days: np.ndarray) -> np.ndarray:
    d = np.floor(np.nan_to_num(days)).astype(np.int64)
    return _per_int(d, lambda k: "today" if k < 1 else "1 day ago" if k == 1 else f"{k} days ago")


def _days(days: np.ndarray) -> np.ndarray:
    d = np.floor(np.nan_to_num(days)).astype(np.int64)
    return _per_int(d, lambda k: "1 day" if k == 1 else f"{k} days")


def _plural(n: np.ndarray, one: str, many: str) -> np.ndarray:
    n = np.round(np.nan_to_num(n)).astype(np.int64)
    return _per_int(n, lambda k: one if k == 1 else many.replace("{n}", str(k)))


def _cap_first(text: np.ndarray) -> np.ndarray:
    s = _as_text(text)
    return (s.str[:1].str.upper() + s.str[1:]).to_numpy(dtype=object, copy=True)


def _as_text(values) -> pd.Series:
    """Values as text, a missing value as "" (pandas 3's ``astype(str)`` keeps NaN as NaN, which then breaks
    string concatenation with a TypeError)."""
    return pd.Series(values, dtype=object).astype(str).fillna("").astype(object)


def _missing(values) -> np.ndarray:
    s = pd.Series(values, dtype=object)
    txt = _as_text(values).str.strip().str.lower()
    return (s.isna() | txt.isin(["unknown", "", "nan", "none", "<na>"])).to_numpy(dtype=bool)


def _text(values) -> np.ndarray:
    return _as_text(values).str.replace("_", " ").to_numpy(dtype=object, copy=True)


_WINDOW = re.compile(r"^(?P<event>.+)_(?P<days>\d+)d$")

SENIORITY = {"c_level": "C-level", "vp": "VP", "director": "director", "manager": "manager",
             "individual_contributor": "individual contributor", "assistant": "assistant", "student": "student"}
FUNCTION = {"it": "IT", "hr": "HR", "general_management": "general management", "other": "other"}
DOMAIN = {"corporate": "Email from a company domain", "free_mail": "Email from a free-mail address",
          "competitor": "Email from a competitor's domain"}
STAGE = {0: "No marketing activity yet", 1: "Reached the first touch (emails, website) only",
         2: "Reached the mid funnel (forms, webinars, content)", 3: "Reached the late funnel (pricing, demo or quote)"}
# Attributes: (sentence with {value}, sentence when not known, readable values).
ATTRIBUTES = {
    "seniority": ("Seniority: {value}", "Seniority not known (no job title)", SENIORITY),
    "job_function": ("Job function: {value}", "Job function not known (no job title)", FUNCTION),
    "company_size": ("Company size: {value} employees", "Company size not known", None),
    "revenue_band": ("Company revenue: {value}", "Company revenue not known", None),
    "industry": ("Industry: {value}", "Industry not known", None),
    "country": ("Based in {value}", "Country not known", "title"),
    "lead_source": ("Lead source: {value}", "Lead source not known", None),
}


def _attribute(template: str, unknown: str, labels, values) -> np.ndarray:
    missing = _missing(values)
    s = _as_text(values)
    if labels == "title":
        shown = s.str.title().to_numpy(dtype=object, copy=True)
    elif isinstance(labels, dict):
        shown = s.map(lambda v: labels.get(v, v.replace("_", " "))).to_numpy(dtype=object, copy=True)
    else:
        shown = _text(values)
    prefix, _, suffix = template.partition("{value}")
    out = (prefix + pd.Series(shown, dtype=object) + suffix).to_numpy(dtype=object, copy=True)
    out[missing] = unknown
    return out


def _template_sentence(feature, values) -> np.ndarray:
    """A single feature by its own template; a missing value says the attribute is not known."""
    template = feature.description
    prefix, _, suffix = template.partition("{value}")
    missing = _missing(values)
    if feature.value_labels:
        labels = {str(k): v for k, v in feature.value_labels.items()}
        s = pd.Series(values, dtype=object)
        keys = s.map(lambda v: str(int(v)) if isinstance(v, float) and v == v and v == int(v) else str(v))
        shown = keys.map(labels).fillna(_as_text(values)).to_numpy(dtype=object, copy=True)
    elif feature.kind == "numeric":
        v = _num(values)
        r = np.round(np.nan_to_num(v))
        whole = np.abs(np.nan_to_num(v) - r) < 0.05
        shown = np.where(whole, r.astype(np.int64).astype(str), np.char.mod("%.1f", np.nan_to_num(v))).astype(object)
    else:
        shown = _text(values)
    out = (prefix + pd.Series(shown, dtype=object) + suffix).str.strip().to_numpy(dtype=object, copy=True)
    label = prefix.strip().removesuffix(" is").removesuffix(":").strip() or feature.name.removeprefix("x_").replace("_", " ")
    out[missing] = label + " not known"
    return _cap_first(out)


def _event_phrase(et, members: dict, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, int]:
    """(phrase without the label, rows with none of it, the longest window): "visited 3 times in the last
    7 days, 5 in the last 90 days"."""
    windows = sorted((int(m.group("days")), name) for name in members
                     if (m := _WINDOW.match(name)) and m.group("event") == et.name)
    n = len(X)
    if not windows:  # only the recency-weighted count
        return np.full(n, "recent activity", dtype=object), np.zeros(n, bool), 0
    counts = np.round(np.column_stack([np.nan_to_num(_num(X[name].to_numpy())) for _, name in windows]))
    text = np.full(n, "", dtype=object)
    shown = np.zeros(n)
    for i, (w, _) in enumerate(windows):
        c = counts[:, i]
        first = (shown == 0) & (c > 0)
        more = (shown > 0) & (c > shown)
        if first.any():
            text[first] = _plural(c[first], et.one, et.many) + f" in the last {w} days"
        if more.any():
            text[more] = text[more] + ", " + _int_text(c[more]) + f" in the last {w} days"
        shown = np.where(first | more, c, shown)
    none = shown == 0
    if et.name == "webinar_attend" and "webinar_watched_pct" in members:
        pct = _num(X["webinar_watched_pct"].to_numpy())
        has = ~none & ~np.isnan(pct)
        if has.any():
            text[has] = text[has] + ", watched " + _int_text(pct[has]) + "% on average"
    return text, none, windows[-1][0]


def _event_sentence(et, members: dict, X: pd.DataFrame) -> np.ndarray:
    text, none, w = _event_phrase(et, members, X)
    out = (et.label + ": " + pd.Series(text, dtype=object)).to_numpy(dtype=object, copy=True)
    out[none] = f"{et.absent} in the last {w} days"
    return out


# Groups of several behaviours read as one: (label, sentence when none happened; {w} the longest window).
MULTI_EVENT = {"emails": ("Marketing emails", "No marketing email opened or clicked in the last {w} days"),
               "webinars": ("Webinars", "No webinar registration or attendance in the last {w} days")}


def _multi_event_sentence(key: str, members: dict, X: pd.DataFrame) -> np.ndarray | None:
    matched = [_WINDOW.match(name) for name in members]
    events = [BY_NAME[e] for e in dict.fromkeys(m.group("event") for m in matched if m) if e in BY_NAME]
    if not events:
        return None
    label, absent = MULTI_EVENT.get(key, (key.replace("_", " ").capitalize(), "Nothing in the last {w} days"))
    n = len(X)
    text = np.full(n, "", dtype=object)
    none_all = np.ones(n, bool)
    longest = 0
    for et in events:
        phrase, none, w = _event_phrase(et, members, X)
        longest = max(longest, w)
        some = ~none
        text[some & ~none_all] = text[some & ~none_all] + "; " + phrase[some & ~none_all]
        text[some & none_all] = phrase[some & none_all]
        none_all &= none
    out = (label + ": " + pd.Series(text, dtype=object)).to_numpy(dtype=object, copy=True)
    out[none_all] = absent.format(w=longest)
    return out


def _title_sentence(members: dict, X: pd.DataFrame) -> np.ndarray:
    n = len(X)
    sen = X["seniority"].to_numpy() if "seniority" in members else np.full(n, "unknown", dtype=object)
    fun = X["job_function"].to_numpy() if "job_function" in members else np.full(n, "unknown", dtype=object)
    s_txt = _as_text(sen).map(lambda v: SENIORITY.get(v, v.replace("_", " ")))
    f_txt = _as_text(fun).map(lambda v: FUNCTION.get(v, v.replace("_", " ")))
    s_miss, f_miss = _missing(sen), _missing(fun) | (_as_text(fun) == "other").to_numpy()
    out = np.where(f_miss, "Job title: " + s_txt, "Job title: " + s_txt + " in " + f_txt).astype(object)
    only_f = s_miss & ~f_miss
    out[only_f] = "Job title: works in " + f_txt.to_numpy(dtype=object)[only_f]
    out[s_miss & f_miss] = "Job title not known"
    return out


EMAIL_DOMAIN = {"corporate": "company email", "free_mail": "personal (free-mail) email",
                "competitor": "email at a competitor"}


def _company_sentence(members: dict, X: pd.DataFrame) -> np.ndarray:
    """"Company: software, 51-200 employees, $10M-100M revenue, in United States, company email address";
    what is missing: "…; revenue not known"."""
    n = len(X)
    parts = []  # (known text, missing mask, what is not known)
    for col, fmt, what in (("industry", lambda v: _text(v), "industry"),
                           ("company_size", lambda v: _text(v) + " employees", "size"),
                           ("revenue_band", lambda v: _text(v) + " revenue", "revenue"),
                           ("country", lambda v: "in " + _as_text(v).str.title()
                            .to_numpy(dtype=object, copy=True), "country"),
                           ("email_domain_type", lambda v: _as_text(v).map(EMAIL_DOMAIN)
                            .fillna("").to_numpy(dtype=object, copy=True), "email domain")):
        if col in members:
            v = X[col].to_numpy()
            text = fmt(v)
            missing = _missing(v) | (_as_text(text) == "").to_numpy()
            parts.append((text, missing, what))
    if not parts:
        return np.full(n, "Company", dtype=object)
    known = np.column_stack([np.where(m, "", t) for t, m, _ in parts]).astype(object)
    unknown = np.column_stack([np.where(m, w, "") for _, m, w in parts]).astype(object)
    join = lambda a: np.array([", ".join(x for x in r if x) for r in a], dtype=object)  # noqa: E731
    and_last = lambda a: pd.Series(a, dtype=object).str.replace(r", (?=[^,]*$)", " and ", regex=True) \
        .to_numpy(dtype=object, copy=True)  # noqa: E731
    k, u = join(known), and_last(join(unknown))
    out = np.where(k == "", "Company " + u + " not known", "Company: " + k).astype(object)
    partial = (k != "") & (u != "")
    out[partial] = out[partial] + "; " + u[partial] + " not known"
    return out


def _activity_sentence(members: dict, X: pd.DataFrame) -> np.ndarray:
    n = len(X)
    last = _num(X["days_since_last_activity"].to_numpy()) if "days_since_last_activity" in members else np.full(n, np.nan)
    active_col = next((c for c in members if c.startswith("active_days_")), None)
    out = np.where(np.isnan(last), "No activity recorded yet", "Last active " + _ago(last)).astype(object)
    if "lead_age_days" in members:  # age and recency read together: "Lead created 40 days ago, last active today"
        age = "Lead created " + _ago(_num(X["lead_age_days"].to_numpy()))
        out = np.where(np.isnan(last), age + ", no activity recorded yet", age + ", last active " + _ago(last)).astype(object)
    if active_col is not None:
        w = active_col.removeprefix("active_days_").removesuffix("d")
        k = np.nan_to_num(_num(X[active_col].to_numpy()))
        seen = ~np.isnan(last)
        on = seen & (k > 0)
        off = seen & (k == 0)
        if on.any():
            out[on] = out[on] + ", active on " + _plural(k[on], "1 day", "{n} different days") + f" in the last {w} days"
        if off.any():
            out[off] = out[off] + f", no activity in the last {w} days"
    elif "days_since_first_touch" in members:
        first = _num(X["days_since_first_touch"].to_numpy())
        has = ~np.isnan(first)
        out[has] = out[has] + ", first seen " + _ago(first[has])
    if "furthest_funnel_stage" in members:  # how far the lead went: "…; reached the late funnel (pricing, …)"
        stage = np.nan_to_num(_num(X["furthest_funnel_stage"].to_numpy()))
        funnel = _funnel_sentence(members, X)
        went = stage > 0
        if went.any():
            out[went] = out[went] + "; " + pd.Series(funnel[went], dtype=object).map(
                lambda t: t[:1].lower() + t[1:]).to_numpy(dtype=object, copy=True)
    return out


def _funnel_sentence(members: dict, X: pd.DataFrame) -> np.ndarray:
    n = len(X)
    stage = (np.nan_to_num(_num(X["furthest_funnel_stage"].to_numpy())).astype(np.int64)
             if "furthest_funnel_stage" in members else np.zeros(n, np.int64))
    out = pd.Series(stage).map(lambda s: STAGE.get(int(s), STAGE[0])).to_numpy(dtype=object, copy=True)
    if "days_first_touch_to_late_funnel" in members:
        d = _num(X["days_first_touch_to_late_funnel"].to_numpy())
        late = (stage == 3) & ~np.isnan(d)
        quick = late & (np.floor(d) < 1)
        slow = late & ~quick
        if quick.any():
            out[quick] = out[quick] + ", on the day of the first touch"
        if slow.any():
            out[slow] = out[slow] + " " + _days(d[slow]) + " after the first touch"
    return out


def _colleagues_sentence(members: dict, X: pd.DataFrame) -> np.ndarray:
    n = len(X)
    known = np.nan_to_num(_num(X["account_known_leads"].to_numpy())) if "account_known_leads" in members else np.zeros(n)
    eng_col = next((c for c in members if c.startswith("account_engaged_stakeholders_")), None)
    engaged = np.nan_to_num(_num(X[eng_col].to_numpy())) if eng_col else np.zeros(n)
    w = eng_col.removeprefix("account_engaged_stakeholders_").removesuffix("d") if eng_col else ""
    out = np.where(known > 0, "Same company: " + _plural(known, "1 other lead known", "{n} other leads known"),
                   "No other leads from the same company").astype(object)
    if eng_col:
        some = (known > 0) & (engaged > 0)
        none = (known > 0) & (engaged == 0)
        if some.any():
            out[some] = out[some] + ", " + _plural(engaged[some], "1 of them", "{n} of them") + f" active in the last {w} days"
        if none.any():
            out[none] = out[none] + f", none active in the last {w} days"
    return out


def _lead_age_sentence(members: dict, X: pd.DataFrame) -> np.ndarray:
    return "Lead created " + _ago(_num(X["lead_age_days"].to_numpy()))


def _priority_sentence(members: dict, X: pd.DataFrame) -> np.ndarray:
    v = _num(X["is_priority_account"].to_numpy())
    return np.where(np.isnan(v), "Priority-account status not known",
                    np.where(v > 0, "A priority (target) account", "Not a priority account")).astype(object)


SPECIAL = {"activity": _activity_sentence, "funnel": _funnel_sentence, "colleagues": _colleagues_sentence,
           "lead_age": _lead_age_sentence, "is_priority_account": _priority_sentence, "title": _title_sentence,
           "company": _company_sentence}


def _reads_windows_only(key: str, by_name: dict, X: pd.DataFrame) -> bool:
    """Whether group ``key`` reads as a behaviour (see :func:`group_sentence`'s order): its sentence then
    reads the window counts (and the webinar watched share) only."""
    if key in BY_NAME and BY_NAME[key].label:
        return True
    if (key in SPECIAL and all(name in X for name in by_name)) or key in by_name:
        return False
    return any((m := _WINDOW.match(name)) and m.group("event") in BY_NAME for name in by_name)


def group_sentence(key: str, members: list, X: pd.DataFrame) -> np.ndarray:
    """The sentence of group ``key`` (its features ``members``) for every row of ``X``."""
    by_name = {f.name: f for f in members}
    if key in BY_NAME and BY_NAME[key].label:
        return _event_sentence(BY_NAME[key], by_name, X)
    if key in SPECIAL and all(name in X for name in by_name):
        return SPECIAL[key](by_name, X)
    if key not in by_name and (multi := _multi_event_sentence(key, by_name, X)) is not None:
        return multi
    if key in ATTRIBUTES and key in by_name:
        return _attribute(*ATTRIBUTES[key], X[key].to_numpy())
    if key == "email_domain_type" and key in by_name:  # (read with the company by default)
        v = X[key].to_numpy()
        out = _as_text(v).map(DOMAIN).to_numpy(dtype=object, copy=True)
        out[_missing(v) | pd.isna(out)] = "Email domain not known"
        return out
    if len(members) == 1:
        return _template_sentence(members[0], X[members[0].name].to_numpy())
    # A group this module has no words for: its features' own sentences, joined.
    parts = [_template_sentence(f, X[f.name].to_numpy()) for f in members]
    return pd.Series(parts[0], dtype=object).str.cat([pd.Series(p, dtype=object) for p in parts[1:]], sep="; ").to_numpy(dtype=object, copy=True)


def group_sentences(features, X: pd.DataFrame, index: np.ndarray) -> np.ndarray:
    """Sentence per (lead, chosen group): ``index`` is (n, k) group positions (from :func:`group_layout`),
    -1 for none ("" in the result)."""
    codes, table, _ = group_sentence_codes(features, X, index)
    out = table[codes] if len(table) else np.full(index.shape, "", dtype=object)
    out[np.asarray(index) < 0] = ""
    return out


def group_sentence_codes(features, X: pd.DataFrame, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes (n, k), sentences, the group position of each sentence): the sentence of lead i's chosen
    group in slot j is ``sentences[codes[i, j]]`` (code 0 where ``index`` is -1). Each group's sentence is
    written once per distinct combination of the values it reads (:func:`_sentence_key`), however many
    leads share it."""
    keys, member = group_layout(features)
    index = np.asarray(index)
    codes = np.zeros(index.shape, np.int64)
    tables: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    offset = 0
    for g, key in enumerate(keys):
        rows, slots = np.nonzero(index == g)
        if not len(rows):
            continue
        members = [features[j] for j in np.flatnonzero(member == g)]
        once = np.unique(rows)  # a lead's sentence is written once, however many of its slots show the group
        combo, table = _sentences_of_rows(key, members, X, once)
        codes[rows, slots] = offset + combo[np.searchsorted(once, rows)]
        tables.append(table)
        groups.append(np.full(len(table), g))
        offset += len(table)
    if not tables:
        return codes, np.empty(0, dtype=object), np.empty(0, np.int64)
    return codes, np.concatenate(tables), np.concatenate(groups)


#: Said of a behaviour that counts against a lead although it happened ("opened 1 email … (−8.8)"): the
#: lead did less of it than a typical lead (its points are below the base's). Put after the behaviour's
#: label, so it reads as about the behaviour, not its last detail ("…, watched 40% on average").
BELOW_TYPICAL = " (less than a typical lead)"


def below_typical_sentence(sentences: np.ndarray) -> np.ndarray:
    """'Marketing emails: opened 1 email …' → 'Marketing emails (less than a typical lead): opened 1 email …'."""
    return np.array([s.replace(": ", BELOW_TYPICAL + ": ", 1) if ": " in s else s + BELOW_TYPICAL
                     for s in map(str, sentences)], dtype=object)


def engagement_groups(features) -> np.ndarray:
    """Per reason group: whether it is a behaviour a lead does more of as it gets interested (emails, web,
    forms, webinars, pricing …: not the careers page or an unsubscribe)."""
    keys, member = group_layout(features)
    out = np.zeros(len(keys), bool)
    for g, key in enumerate(keys):
        events = {m.group("event") for j in np.flatnonzero(member == g) if (m := _WINDOW.match(features[j].name))}
        types = [BY_NAME[e] for e in events if e in BY_NAME]
        out[g] = bool(types) and all(t.stage != NEGATIVE for t in types)
    return out


def below_typical(sentences: np.ndarray, sentence_group: np.ndarray, engaged: np.ndarray) -> np.ndarray:
    """Which sentences read as activity of an engagement behaviour (not its absence, "No …"): shown with
    :data:`BELOW_TYPICAL` where their points are negative."""
    starts_no = np.array([str(t).startswith("No ") for t in sentences], dtype=bool)
    return engaged[sentence_group] & ~starts_no if len(sentences) else np.zeros(0, bool)


def _floor(v) -> np.ndarray:
    return np.floor(_num(v))


# How a sentence reads a column, where it reads less than the exact value (anything else: the exact value).
# Day counts are shown as whole days (floor, see _ago and _days) and the watched share as a whole percent.
_READ_AS = {"lead_age_days": _floor, "days_since_last_activity": _floor, "days_since_first_touch": _floor,
            "days_first_touch_to_late_funnel": _floor, "webinar_watched_pct": lambda v: np.round(_num(v))}


def _sentence_key(key: str, members: list, part: pd.DataFrame) -> pd.DataFrame:
    """The values group ``key``'s sentence reads, one column each: rows equal here get the same sentence.
    A behaviour's sentence reads its window counts (and the webinar watched share), never its
    recency-weighted count or content value."""
    names = [f.name for f in members if f.name in part]
    if _reads_windows_only(key, {f.name: f for f in members}, part):
        names = [c for c in names if _WINDOW.match(c) or c == "webinar_watched_pct"]
    cols = {}
    for c in names:
        col = part[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            cols[c] = col.cat.codes.to_numpy(np.int64)
        elif c in _READ_AS:
            cols[c] = _READ_AS[c](col.to_numpy())
        else:
            cols[c] = col.to_numpy()
    return pd.DataFrame(cols, index=pd.RangeIndex(len(part)))


def _sentences_of_rows(key: str, members: list, X: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(combination of each of ``rows``, the sentence of each combination): group_sentence written once per
    distinct combination of the values the sentence reads, from the group's own columns (a pricing-page
    sentence per distinct set of window counts, not per lead)."""
    cols = [f.name for f in members if f.name in X]
    part = X[cols].iloc[rows] if cols else X.iloc[rows]
    keyed = _sentence_key(key, members, part)
    if keyed.shape[1] == 0:
        combo = np.zeros(len(part), np.int64)
    else:
        combo = keyed.groupby(list(keyed.columns), sort=False, dropna=False).ngroup().to_numpy(np.int64)
    _, first = np.unique(combo, return_index=True)
    return combo, group_sentence(key, members, part.iloc[first])


def all_group_sentences(features, X: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every group's sentence for every row (for tests and the vocabulary check)."""
    keys, member = group_layout(features)
    return {key: group_sentence(key, [features[j] for j in np.flatnonzero(member == g)], X)
            for g, key in enumerate(keys)}
