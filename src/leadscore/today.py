"""Today's report: the marketer's page for one scoring run (``leadscore report``).

One self-contained HTML file (no server, no internet, no CDN): every scored lead of a ``leadscore score``
output with the export columns it passed through (``--keep``), sortable and filterable by band, cell, MQL
and newly-MQL, searchable by any text, with per lead a score trend from the score history and a waterfall
of its reasons (base, reasons, all other factors, the 0–100 cap). The data is embedded as escaped JSON
(:func:`leadscore.report.script_json`) and rendered by plain JavaScript that only draws the rows in view,
so 100,000 leads stay responsive (``benchmarks/report.py`` measures it).

:func:`prepare` makes the data (pure, tested on its own); :func:`render` makes the page; :func:`build`
reads the files and writes the page.
"""

from __future__ import annotations

import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore import runstore
from leadscore.report import script_json

#: Columns of a scores output that are not pass-through export columns.
SCORE_OUTPUT_COLUMNS = {
    "lead_id", "probability", "points", "band", "fit_grade", "engagement_grade", "matrix_cell", "is_mql", "reasons",
    "pushed_over_mql", "base_points", "other_points", "capped_points", "reasons_text", "previous_points",
    "points_change", "newly_mql", "change_reasons", "model_name", "model_version", "as_of", "scored_at"}
#: Score history dates kept in a lead's trend (the newest ones).
TREND_RUNS = 12


class ReportError(ValueError):
    """The scores file is not the output of ``leadscore score`` (a required column is missing)."""


@dataclass
class TodayData:
    """Everything the page shows, columnar (one entry per lead, in the scores' order)."""

    leads: pd.DataFrame  # id, points, band, cell, mql, newly_mql (bool, or NA: no previous run), p, base, other, cap
    passthrough: list[str]  # export columns kept by `score --keep`, in the output's order
    sentences: list[str]  # every distinct reason sentence; reasons refer to them by position
    reasons: list[list]  # per lead: [sentence index, points, sentence index, points, ...] positive then negative
    pushed: list[list]  # per lead: the reasons that pushed it over MQL, same layout
    trend_dates: list[str]  # as_of dates of the trend, oldest first; the last is this run's
    trend: np.ndarray  # (leads, dates) points, NaN where the lead was not scored that day
    drivers: pd.DataFrame  # label, leads (how many leads list it), mean_points, of today's reasons
    meta: dict = field(default_factory=dict)  # model, as_of, previous run, analyst figures


def read_scores(path) -> pd.DataFrame:
    """A ``leadscore score`` output (Parquet, or CSV: formula-neutralised cells keep their leading ``'``).
    Raises :class:`ReportError` naming the missing columns."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, dtype={"lead_id": str}, keep_default_na=False, na_values=[""])
        else:
            frame = pd.read_parquet(path)
    except (ValueError, OSError, ImportError) as exc:  # pyarrow's errors are ValueError / OSError subclasses
        raise ReportError(f"{path} is not a `leadscore score` output (.parquet or .csv): "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    need = ["lead_id", "points", "band", "is_mql", "reasons", "base_points", "other_points", "capped_points"]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ReportError(f"{path} is not a `leadscore score` output: no column {', '.join(missing)}")
    return frame


def _as_of(scores: pd.DataFrame) -> pd.Timestamp | None:
    if "as_of" not in scores or scores.empty:
        return None
    return pd.Timestamp(pd.to_datetime(scores["as_of"]).max())


def history_points(history_dir, as_of: pd.Timestamp | None) -> list[tuple[str, pd.DataFrame]]:
    """(as_of date, rows lead_id/points/is_mql) of the committed history runs before ``as_of``: the last run
    of each date (a re-run replaces that day's scores), oldest first, at most ``TREND_RUNS - 1`` dates."""
    by_date: dict[str, dict] = {}
    for run in runstore.history_runs(history_dir):
        when = pd.Timestamp(run["as_of"])
        if as_of is not None and when >= as_of:
            continue
        by_date[str(when.date())] = run  # runs come oldest first: the last one of a date wins
    dates = sorted(by_date)[-(TREND_RUNS - 1):]
    return [(d, pd.read_parquet(by_date[d]["data_path"], columns=["lead_id", "points", "is_mql"])) for d in dates]


def newly_mql(scores: pd.DataFrame, previous: pd.DataFrame | None) -> pd.Series:
    """Per lead: MQL now and not in the previous run (a lead the previous run did not score counts as not
    MQL then, as ``leadscore score --history`` counts it). All NA when there is no previous run."""
    if previous is None:
        return pd.Series(pd.NA, index=scores.index, dtype="boolean")
    was = (previous.drop_duplicates("lead_id", keep="last").set_index("lead_id")["is_mql"]
           .reindex(scores["lead_id"].to_numpy()).fillna(False).astype(bool).to_numpy())
    return pd.Series(scores["is_mql"].astype(bool).to_numpy() & ~was, index=scores.index, dtype="boolean")


_STR = r'([^"\\]*(?:\\.[^"\\]*)*)'  # a JSON string's content (the unrolled loop: no backtracking)
_REASON = '"feature": "' + _STR + '", "sentence": "' + _STR + r'", "points": (-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)'


_REASON_RE = re.compile(_REASON)
_REASON_KEY = '"sentence": "'  # inside a JSON string a quote is escaped: this text only starts a reason


def _parse_reasons(texts: pd.Series) -> pd.DataFrame:
    """One row per listed reason: lead (position), feature, sentence, points, in listing order (positive
    then negative, as the JSON lists them). Vectorised: the JSON ``score`` writes is read by one pattern
    over all leads at once, and only the few strings holding escapes are decoded one by one; JSON in
    another layout is read with ``json.loads`` lead by lead."""
    texts = texts.fillna("").astype(str).reset_index(drop=True)
    counts = texts.str.count(re.escape(_REASON_KEY)).to_numpy()
    found = _REASON_RE.findall("\n".join(texts.tolist()))
    if len(found) == counts.sum():
        feature, sentence, points = zip(*found) if found else ((), (), ())
        out = pd.DataFrame({"lead": np.repeat(np.arange(len(texts)), counts),
                            "feature": np.array(feature, dtype=object), "sentence": np.array(sentence, dtype=object),
                            "points": np.array(points, dtype=float)})
    else:
        out = _parse_reasons_json(texts)
    for c in ("feature", "sentence"):
        escaped = out[c].str.contains("\\", regex=False).to_numpy(dtype=bool)
        if escaped.any():
            out.loc[escaped, c] = [json.loads(f'"{t}"') for t in out.loc[escaped, c]]
    return out


def _parse_reasons_json(texts: pd.Series) -> pd.DataFrame:
    rows = []
    for pos, text in enumerate(texts.to_numpy()):
        try:
            data = json.loads(text) if text else []
        except ValueError:
            continue
        items = data if isinstance(data, list) else [x for k in ("positive", "negative") for x in data.get(k, [])]
        rows += [(pos, json.dumps(str(x.get("feature", "")))[1:-1], json.dumps(str(x.get("sentence", "")))[1:-1],
                  float(x.get("points", 0.0))) for x in items]
    return pd.DataFrame(rows, columns=["lead", "feature", "sentence", "points"]).astype({"lead": "int64"})


def _packed(parts: pd.DataFrame, codes: np.ndarray, n: int) -> list[list]:
    """Per lead the flat list [sentence code, points, ...] in listing order."""
    out: list[list] = [[] for _ in range(n)]
    leads = parts["lead"].to_numpy()
    pts = np.round(parts["points"].to_numpy(dtype=float), 1).tolist()
    for lead, code, p in zip(leads.tolist(), np.asarray(codes).tolist(), pts):
        out[lead] += (code, p)
    return out


def drivers(parts: pd.DataFrame) -> pd.DataFrame:
    """Today's drivers in plain words: each reason group (the label before ``:`` in its sentences, e.g.
    "Pricing page") with how many leads list it and its mean points there, most listed first."""
    if parts.empty:
        return pd.DataFrame(columns=["label", "leads", "mean_points"])
    table = (parts.groupby("feature")
             .agg(sentence=("sentence", lambda s: s.value_counts().index[0]), leads=("lead", "nunique"),
                  mean_points=("points", "mean")).reset_index())
    # Named by the label before ":" of its most frequent sentence; "Based in Germany" by its group.
    label = table["sentence"].str.split(":", n=1).str[0].str.strip()
    plain = table["feature"].str.replace("_", " ").str.capitalize()
    table["label"] = label.where(table["sentence"].str.contains(":", regex=False), plain)
    table = table[["label", "leads", "mean_points"]]
    return table.sort_values(["leads", "label"], ascending=[False, True]).reset_index(drop=True)


def prepare(scores: pd.DataFrame, history: list[tuple[str, pd.DataFrame]] | None = None,
            metrics: dict | None = None) -> TodayData:
    """The page's data from a scores output and the history runs before it (:func:`history_points`).

    Newly-MQL: the scores' ``newly_mql`` column when ``score --history`` wrote it, else against the last
    history run, else unknown (NA). Trend: the history's points per date, then today's. Waterfall per lead:
    ``base + listed reasons + other + cap == points`` (to the rounding of each, 0.1). ``metrics``: the
    training's ``metrics.json`` for the analysts' section (optional)."""
    history = history or []
    n = len(scores)
    as_of = _as_of(scores)
    previous = history[-1][1] if history else None
    if "newly_mql" in scores.columns and scores["newly_mql"].notna().all() and n:
        new = scores["newly_mql"].astype("boolean").reset_index(drop=True)
    else:
        new = newly_mql(scores.reset_index(drop=True), previous)
    leads = pd.DataFrame({
        "id": scores["lead_id"].astype(str).to_numpy(),
        "points": np.round(scores["points"].to_numpy(dtype=float), 1),
        "band": scores["band"].fillna("").astype(str).to_numpy(),
        "cell": (scores["matrix_cell"].fillna("").astype(str).to_numpy() if "matrix_cell" in scores else ""),
        "mql": scores["is_mql"].astype(bool).to_numpy(),
        "newly_mql": new.to_numpy(),
        "p": (np.round(scores["probability"].to_numpy(dtype=float), 4) if "probability" in scores else np.nan),
        "base": np.round(scores["base_points"].to_numpy(dtype=float), 1),
        "other": np.round(scores["other_points"].to_numpy(dtype=float), 1),
        "cap": np.round(scores["capped_points"].to_numpy(dtype=float), 1),
    })
    passthrough = [c for c in scores.columns if c not in SCORE_OUTPUT_COLUMNS and not str(c).startswith("c_")]
    reasons = _parse_reasons(scores["reasons"])
    pushed = (_parse_reasons(scores["pushed_over_mql"])
              if "pushed_over_mql" in scores else reasons.iloc[:0])
    codes, sentences = pd.factorize(np.concatenate([reasons["sentence"].to_numpy(dtype=object),
                                                    pushed["sentence"].to_numpy(dtype=object)]))
    trend = np.full((n, len(history) + 1), np.nan)
    ids = leads["id"].to_numpy()
    for j, (_, rows) in enumerate(history):
        trend[:, j] = (rows.drop_duplicates("lead_id", keep="last").set_index("lead_id")["points"]
                       .reindex(ids).to_numpy(dtype=float))
    trend[:, -1] = leads["points"].to_numpy()
    meta = {
        "leads": n, "mql": int(leads["mql"].sum()),
        "newly_mql": None if new.isna().any() else int(new.sum()),
        "model_name": str(scores["model_name"].iloc[0]) if "model_name" in scores and n else "",
        "model_version": str(scores["model_version"].iloc[0]) if "model_version" in scores and n else "",
        "as_of": str(as_of) if as_of is not None else "",
        "scored_at": str(pd.to_datetime(scores["scored_at"]).max()) if "scored_at" in scores and n else "",
        "previous_as_of": history[-1][0] if history else None,
        "lowest_mql_points": float(leads.loc[leads["mql"], "points"].min()) if leads["mql"].any() else None,
        "bands": leads["band"].value_counts().sort_index().to_dict(),
    }
    meta["analyst"] = analyst_figures(leads["points"].to_numpy(), previous, metrics)
    return TodayData(leads=leads, passthrough=passthrough, sentences=[str(s) for s in sentences],
                     reasons=_packed(reasons, codes[:len(reasons)], n), pushed=_packed(pushed, codes[len(reasons):], n),
                     trend_dates=[d for d, _ in history] + [str(as_of.date()) if as_of is not None else "today"],
                     trend=trend, drivers=drivers(reasons), meta=meta)


def analyst_figures(points: np.ndarray, previous: pd.DataFrame | None, metrics: dict | None) -> list[dict]:
    """The "For analysts" lines: (name, value, one-line explanation); only what is known."""
    out = []
    if previous is not None and len(previous) and len(points):
        from leadscore.drift import psi

        value = psi(previous["points"].to_numpy(dtype=float), points)
        status = "stable" if value < 0.1 else "a moderate shift" if value < 0.25 else "a major shift"
        out.append({"name": "Score PSI against the previous run", "value": f"{value:.3f} ({status})",
                    "explain": "How much the spread of scores moved since the last run: below 0.1 is stable, "
                               "above 0.25 a major shift worth a look."})
    m = metrics or {}
    model, drift = m.get("model") or {}, m.get("drift") or {}
    for value, name, explain in (
            (model.get("roc_auc"), "ROC AUC on the test quarter",
             "How often a lead that was won scored above one that was lost (0.5 is a coin toss, 1 is perfect)."),
            (model.get("brier"), "Brier score", "Mean squared gap between the predicted chance and what happened; "
                                                "lower is better."),
            (model.get("ece"), "Calibration error (ECE)", "How far the predicted chances of a win are from the "
                                                          "observed win rates, on average; 0.02 is two percentage points."),
            (drift.get("score_psi"), "Score PSI, training against the test quarter",
             "How much the spread of scores moved between training and the test quarter (above 0.25: a major shift).")):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append({"name": name, "value": f"{float(value):.3f}", "explain": explain})
    return out


def payload(data: TodayData) -> str:
    """The page's data as one JSON document (columnar; numbers rounded to what is shown)."""
    leads = data.leads

    def col(values, digits=None):
        arr = np.asarray(values, dtype=float)
        out = (np.round(arr, digits) if digits is not None else arr).astype(object)
        out[~np.isfinite(arr)] = None
        return out.tolist()

    new = leads["newly_mql"]
    trend = np.round(data.trend, 1).astype(object)
    trend[~np.isfinite(data.trend)] = None
    trend = trend.tolist()
    doc = {
        "meta": data.meta, "columns": data.passthrough, "sentences": data.sentences,
        "id": leads["id"].tolist(), "points": col(leads["points"], 1), "band": leads["band"].tolist(),
        "cell": leads["cell"].tolist(), "mql": leads["mql"].astype(int).tolist(),
        "new": [None if pd.isna(v) else int(bool(v)) for v in new],
        "p": col(leads["p"], 4), "base": col(leads["base"], 1), "other": col(leads["other"], 1),
        "cap": col(leads["cap"], 1), "reasons": data.reasons, "pushed": data.pushed,
        "trend_dates": data.trend_dates, "trend": trend,
        "drivers": data.drivers.assign(mean_points=data.drivers["mean_points"].round(1)).to_dict(orient="records"),
    }
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_plain)


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return str(value)


def passthrough_payload(scores: pd.DataFrame, columns: list[str]) -> str:
    """The pass-through columns as JSON ``{column: [text or null, ...]}``."""
    doc = {}
    for c in columns:
        values = scores[c].astype("string")
        doc[c] = values.astype(object).where(values.notna(), None).tolist()
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def render(data: TodayData, scores: pd.DataFrame, training_report: str | None = None) -> str:
    """The HTML page. ``training_report``: a link (relative to the page) to the training report."""
    m = data.meta
    e = html.escape
    model = f"{e(m['model_name'])} version {e(m['model_version'])}" if m["model_name"] else "model not recorded"
    link = (f' · <a id="training-link" href="{e(training_report, quote=True)}">training report of the '
            f'model</a>' if training_report else "")
    subtitle = (f"{m['leads']:,} leads scored as of {e(m['as_of']) or 'an unrecorded date'} by {model}{link}. "
                + (f"Compared with the run as of {e(str(m['previous_as_of']))}." if m["previous_as_of"] else
                   "No earlier run in the history: newly-MQL and trends start with the next run."))
    analyst = "".join(f"<li><b>{e(a['name'])}: {e(a['value'])}</b>. {e(a['explain'])}</li>"
                      for a in m["analyst"]) or "<li>No analyst figures for this run (give --history and --metrics).</li>"
    parts = {"SUBTITLE": subtitle, "ANALYST": analyst, "DATA": script_json(payload(data)),
             "PASS": script_json(passthrough_payload(scores, data.passthrough))}
    # One pass: text put in one slot is never searched for the next slot's marker.
    return re.sub(r"%(SUBTITLE|ANALYST|DATA|PASS)%", lambda mt: parts[mt.group(1)], PAGE)


def build(scores_path, out_path, history_dir=None, training_report=None, metrics_path=None) -> TodayData:
    """Read a scores output (and its history and training metrics), write the page to ``out_path``
    atomically. ``training_report`` is linked relative to the page's folder. Raises :class:`ReportError`
    for a file that is not a scores output, ``OSError`` when a file cannot be read or written."""
    scores = read_scores(scores_path).reset_index(drop=True)
    history = history_points(history_dir, _as_of(scores)) if history_dir is not None else []
    metrics = json.loads(Path(metrics_path).read_text()) if metrics_path is not None else None
    data = prepare(scores, history, metrics)
    out_path = Path(out_path)
    link = None
    if training_report is not None:
        link = os.path.relpath(Path(training_report).resolve(), out_path.resolve().parent)
    page = render(data, scores, link)
    tmp = runstore.temp_beside(out_path, runstore.new_run_id())
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return data


PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Today's leads</title>
<style>
body { font-family: system-ui, sans-serif; margin: 20px; color: #222; }
h1 { margin: 0; } .sub { color: #555; margin: 4px 0 14px; }
.bar { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; margin: 8px 0; }
.bar input, .bar select { font-size: 14px; padding: 4px 6px; } #q { width: 300px; }
.note { color: #666; font-size: 13px; }
.main { display: flex; gap: 18px; align-items: flex-start; }
#list { flex: 3; min-width: 520px; }
#head, .row { display: grid; grid-template-columns: var(--cols); font-size: 13px; }
#head div { font-weight: 600; background: #f2f2f2; padding: 5px 6px; cursor: pointer; user-select: none; white-space: nowrap; overflow: hidden; }
#viewport { height: 560px; overflow-y: auto; position: relative; border: 1px solid #ddd; }
#spacer { position: relative; }
.row { position: absolute; left: 0; right: 0; height: 26px; line-height: 26px; cursor: pointer; border-bottom: 1px solid #f0f0f0; }
.row div { padding: 0 6px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.row:hover { background: #eef4ff; } .row.sel { background: #dce8ff; }
.num { text-align: right; }
.tag { display: inline-block; padding: 0 5px; border-radius: 3px; font-size: 11px; line-height: 16px; }
.tag.mql { background: #dff0d8; } .tag.new { background: #fde9b6; }
#detail { flex: 2; border: 1px solid #ccc; padding: 10px 14px; min-width: 420px; }
.wf-row { display: flex; align-items: center; margin: 2px 0; font-size: 13px; }
.wf-label { width: 300px; } .wf-track { position: relative; width: 220px; height: 14px; background: #fafafa; }
.wf-bar { position: absolute; height: 14px; } .wf-pts { width: 60px; text-align: right; }
.pos { background: #55A868; } .neg { background: #C44E52; } .base { background: #8c8c8c; } .total { background: #4C72B0; }
table.facts td { padding: 2px 8px 2px 0; font-size: 13px; vertical-align: top; }
table.drivers { border-collapse: collapse; font-size: 13px; } table.drivers td, table.drivers th { border: 1px solid #ddd; padding: 3px 8px; }
details { margin: 18px 0; } summary { cursor: pointer; font-weight: 600; }
</style></head><body>
<h1>Today's leads</h1>
<p class="sub">%SUBTITLE%</p>
<div class="bar" id="summary"></div>
<div class="bar">
<input id="q" placeholder="search name, company, reason, id…" autocomplete="off">
<label>band <select id="band"><option value="">all</option></select></label>
<label>cell <select id="cell"><option value="">all</option></select></label>
<label>MQL <select id="mql"><option value="">all leads</option><option value="mql">MQLs</option><option value="new">newly MQL this run</option><option value="not">not MQL</option></select></label>
<span id="count" class="note"></span>
</div>
<div class="main">
<div id="list"><div id="head"></div><div id="viewport"><div id="spacer"></div></div>
<p class="note">Click a column to sort (again to reverse); click a lead for why it scored what it did.</p></div>
<div id="detail"><p class="note">Click a lead to see its reasons and its score over time.</p></div>
</div>
<section><h2>What moves today's scores</h2><p class="note">How many of today's leads list each reason among their strongest, and its average points there.</p><div id="drivers"></div></section>
<details id="analysts"><summary>For analysts</summary><ul>%ANALYST%</ul>
<p class="note">Points: every lead starts at the base score; each reason adds or removes points; "all other factors" is what the reasons not listed add up to; the score is capped to 0–100.</p></details>
<script id="lead-data" type="application/json">%DATA%</script>
<script id="pass-data" type="application/json">%PASS%</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById('lead-data').textContent);
const PASS = JSON.parse(document.getElementById('pass-data').textContent);
const N = D.id.length, ROW = 26;
const $ = id => document.getElementById(id);
function esc(s) { return String(s == null ? '' : s).replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'})[c]); }
function fmt(v) { return v == null ? '' : v.toFixed(1); }
function signed(v) { return (v >= 0 ? '+' : '') + v.toFixed(1); }
const COLS = [{key: 'id', label: 'lead', get: i => D.id[i], w: '1.2fr'}]
  .concat(D.columns.map(c => ({key: 'x:' + c, label: c, get: i => PASS[c][i], w: '1.2fr'})))
  .concat([{key: 'points', label: 'points', get: i => D.points[i], w: '70px', num: true},
           {key: 'band', label: 'band', get: i => D.band[i], w: '50px'},
           {key: 'cell', label: 'cell', get: i => D.cell[i], w: '50px'},
           {key: 'mql', label: 'MQL', get: i => D.mql[i] * 2 + (D.new[i] || 0), w: '110px'},
           {key: 'trend', label: 'since last run', get: i => change(i), w: '100px', num: true}]);
document.documentElement.style.setProperty('--cols', COLS.map(c => c.w).join(' '));
function change(i) { const t = D.trend[i]; const a = t.length > 1 ? t[t.length - 2] : null; return a == null ? null : t[t.length - 1] - a; }
let order = new Int32Array(N), shown = order, sortKey = 'points', sortDir = -1, selected = -1, hay = null;
for (let i = 0; i < N; i++) order[i] = i;
function sortBy(key, dir) {
  const col = COLS.find(c => c.key === key), vals = new Array(N);
  for (let i = 0; i < N; i++) vals[i] = col.get(i);
  const idx = Array.from(order);
  idx.sort((a, b) => { const x = vals[a], y = vals[b];
    if (x == null && y == null) return a - b; if (x == null) return 1; if (y == null) return -1;
    return (x < y ? -1 : x > y ? 1 : a - b) * dir; });
  order = Int32Array.from(idx); sortKey = key; sortDir = dir;
}
function haystack() {
  if (hay) return hay;
  hay = new Array(N);
  for (let i = 0; i < N; i++) {
    let s = D.id[i] + '\u0001' + D.band[i] + '\u0001' + D.cell[i];
    for (const c of D.columns) if (PASS[c][i] != null) s += '\u0001' + PASS[c][i];
    const r = D.reasons[i]; for (let k = 0; k < r.length; k += 2) s += '\u0001' + D.sentences[r[k]];
    hay[i] = s.toLowerCase();
  }
  return hay;
}
function apply() {
  const q = $('q').value.trim().toLowerCase(), band = $('band').value, cell = $('cell').value, m = $('mql').value;
  const h = q ? haystack() : null, out = new Int32Array(N); let n = 0;
  for (let k = 0; k < N; k++) { const i = order[k];
    if (band && D.band[i] !== band) continue;
    if (cell && D.cell[i] !== cell) continue;
    if (m === 'mql' && !D.mql[i]) continue; if (m === 'not' && D.mql[i]) continue;
    if (m === 'new' && D.new[i] !== 1) continue;
    if (h && h[i].indexOf(q) < 0) continue;
    out[n++] = i; }
  shown = out.subarray(0, n);
  $('count').textContent = n.toLocaleString('en') + ' of ' + N.toLocaleString('en') + ' leads';
  $('spacer').style.height = (n * ROW) + 'px';
  $('viewport').scrollTop = 0; draw();
}
function cellHtml(c, i) {
  const v = c.get(i);
  if (c.key === 'points') return '<div class="num">' + fmt(v) + '</div>';
  if (c.key === 'mql') return '<div>' + (D.mql[i] ? '<span class="tag mql">MQL</span> ' : '') + (D.new[i] === 1 ? '<span class="tag new">new</span>' : '') + '</div>';
  if (c.key === 'trend') return '<div class="num">' + (v == null ? '' : signed(v)) + '</div>';
  return '<div title="' + esc(v) + '">' + esc(v) + '</div>';
}
function draw() {
  const vp = $('viewport'), first = Math.max(0, Math.floor(vp.scrollTop / ROW) - 5);
  const last = Math.min(shown.length, first + Math.ceil(vp.clientHeight / ROW) + 10);
  let s = '';
  for (let k = first; k < last; k++) { const i = shown[k];
    s += '<div class="row' + (i === selected ? ' sel' : '') + '" data-i="' + i + '" style="top:' + (k * ROW) + 'px">' + COLS.map(c => cellHtml(c, i)).join('') + '</div>'; }
  $('spacer').innerHTML = s;
}
function head() {
  $('head').innerHTML = COLS.map(c => '<div data-key="' + esc(c.key) + '"' + (c.num ? ' class="num"' : '') + '>' + esc(c.label) + (c.key === sortKey ? (sortDir < 0 ? ' ▼' : ' ▲') : '') + '</div>').join('');
}
function sparkline(i) {
  const t = D.trend[i], dates = D.trend_dates, W = 300, H = 70, pts = [];
  t.forEach((v, k) => { if (v != null) pts.push([k, v]); });
  if (pts.length < 2) return '<p class="note" id="trend">Score over time: ' + (pts.length ? fmt(pts[0][1]) + ' today; ' : '') + 'no earlier run in the history for this lead.</p>';
  const x = k => 10 + (W - 20) * k / Math.max(1, dates.length - 1), y = v => H - 8 - (H - 16) * v / 100;
  const line = pts.map(p => x(p[0]).toFixed(1) + ',' + y(p[1]).toFixed(1)).join(' ');
  const dots = pts.map(p => '<circle cx="' + x(p[0]).toFixed(1) + '" cy="' + y(p[1]).toFixed(1) + '" r="3"><title>' + esc(dates[p[0]]) + ': ' + fmt(p[1]) + '</title></circle>').join('');
  return '<div id="trend"><b>Score over time</b> <span class="note">' + esc(dates[pts[0][0]]) + ' → ' + esc(dates[pts[pts.length - 1][0]]) + ': ' + pts.map(p => fmt(p[1])).join(' → ') + '</span><br><svg width="' + W + '" height="' + H + '" style="background:#fafafa"><polyline fill="none" stroke="#4C72B0" stroke-width="2" points="' + line + '"/>' + dots + '</svg></div>';
}
function steps(i) {
  const st = [{label: 'Base score (every lead starts here)', points: D.base[i], kind: 'base'}], r = D.reasons[i];
  for (let k = 0; k < r.length; k += 2) st.push({label: D.sentences[r[k]], points: r[k + 1], kind: r[k + 1] >= 0 ? 'pos' : 'neg'});
  if (Math.abs(D.other[i]) >= 0.05) st.push({label: 'All other factors', points: D.other[i], kind: D.other[i] >= 0 ? 'pos' : 'neg'});
  if (Math.abs(D.cap[i]) >= 0.05) st.push({label: 'Capped to the 0–100 scale', points: D.cap[i], kind: D.cap[i] >= 0 ? 'pos' : 'neg'});
  return st;
}
function show(i) {
  selected = i; draw();
  const st = steps(i); let run = 0; const ends = st.map(s => (run += s.points));
  const lo = Math.min(0, ...ends), hi = Math.max(100, ...ends), sc = v => 220 * (v - lo) / (hi - lo);
  run = 0;
  const bars = st.map(s => { const a = run, b = run + s.points; run = b;
    return '<div class="wf-row step" data-points="' + s.points + '"><span class="wf-label">' + esc(s.label) + '</span><span class="wf-track"><span class="wf-bar ' + s.kind + '" style="left:' + sc(Math.min(a, b)) + 'px;width:' + Math.max(1, Math.abs(sc(b) - sc(a))) + 'px"></span></span><span class="wf-pts">' + (s.kind === 'base' ? s.points.toFixed(1) : signed(s.points)) + '</span></div>'; }).join('');
  const total = '<div class="wf-row"><span class="wf-label"><b>Score</b></span><span class="wf-track"><span class="wf-bar total" style="left:' + sc(0) + 'px;width:' + Math.max(1, sc(D.points[i]) - sc(0)) + 'px"></span></span><span class="wf-pts" id="detail-points">' + fmt(D.points[i]) + '</span></div>';
  const facts = D.columns.map(c => '<tr><td class="note">' + esc(c) + '</td><td>' + esc(PASS[c][i]) + '</td></tr>').join('');
  const p = D.pushed[i];
  let push = '';
  if (D.mql[i] && p.length) { const parts = []; for (let k = 0; k < p.length; k += 2) parts.push(esc(D.sentences[p[k]]) + ' (' + signed(p[k + 1]) + ')'); push = '<p><b>What pushed it over MQL:</b> ' + parts.join('; ') + '</p>'; }
  const chance = D.p[i] == null ? '' : ' · ' + (100 * D.p[i]).toFixed(1) + '% chance of a win';
  $('detail').innerHTML = '<h3 id="detail-id">' + esc(D.id[i]) + '</h3><table class="facts">' + facts + '</table>'
    + '<p>' + fmt(D.points[i]) + ' points · band ' + esc(D.band[i]) + (D.cell[i] ? ' · cell ' + esc(D.cell[i]) : '') + chance
    + (D.mql[i] ? ' · <b>MQL</b>' : '') + (D.new[i] === 1 ? ' (new this run)' : '') + '</p>'
    + sparkline(i) + '<h4>Why</h4><div id="waterfall">' + bars + total + '</div>' + push;
}
function summary() {
  const m = D.meta, b = m.bands, parts = ['<b>' + m.mql.toLocaleString('en') + '</b> MQLs'];
  if (m.newly_mql != null) parts.push('<b>' + m.newly_mql.toLocaleString('en') + '</b> newly MQL since ' + esc(m.previous_as_of));
  Object.keys(b).forEach(k => parts.push('band ' + esc(k) + ': ' + b[k].toLocaleString('en')));
  $('summary').innerHTML = parts.join(' · ');
  const bands = [...new Set(D.band)].sort(), cells = [...new Set(D.cell)].filter(c => c).sort();
  $('band').insertAdjacentHTML('beforeend', bands.map(v => '<option>' + esc(v) + '</option>').join(''));
  $('cell').insertAdjacentHTML('beforeend', cells.map(v => '<option>' + esc(v) + '</option>').join(''));
  if (m.newly_mql == null) $('mql').querySelector('option[value="new"]').disabled = true;
  $('drivers').innerHTML = '<table class="drivers"><tr><th>reason</th><th>leads listing it</th><th>average points</th></tr>' + D.drivers.slice(0, 15).map(d => '<tr><td>' + esc(d.label) + '</td><td class="num">' + d.leads.toLocaleString('en') + '</td><td class="num">' + signed(d.mean_points) + '</td></tr>').join('') + '</table>';
}
$('q').addEventListener('input', apply);
['band', 'cell', 'mql'].forEach(id => $(id).addEventListener('change', apply));
$('viewport').addEventListener('scroll', () => requestAnimationFrame(draw));
$('head').addEventListener('click', e => { const h = e.target.closest('[data-key]'); if (!h) return;
  const k = h.dataset.key; sortBy(k, k === sortKey ? -sortDir : (k === 'points' || k === 'mql' || k === 'trend' ? -1 : 1)); head(); apply(); });
$('spacer').addEventListener('click', e => { const r = e.target.closest('.row'); if (r) show(+r.dataset.i); });
summary(); sortBy('points', -1); head(); apply();
document.body.dataset.ready = '1';
</script></body></html>
"""
