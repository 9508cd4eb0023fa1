"""Model card: one page that says what a model is, what it was trained on, how good it is and why it
was (or was not) promoted — for the reviewer who must sign off a model without opening a notebook.

:func:`render_model_card` turns a plain dict into Markdown (readable in a merge request and in MLflow);
:func:`to_html` turns that Markdown into one self-contained HTML page (no external CSS or JavaScript,
every text escaped). A section whose information is missing says "not available" instead of failing:
a card with a gap is more useful than no card.

The ``info`` dict (every key optional)::

    model:       {name, version, description, created, run_id}
    data_window: {train|calibration|test: {from, to, rows}}  — or a time split's boundaries
                 (train_from, calibration_from, test_from, test_to, n_train, n_calibration, n_test)
    features:    {group: [names]}  — or the feature metadata list [{name, group, ...}]
    metrics:     {scorer: {metric: value}}  e.g. {"model": {...}, "baseline": {...}}
    calibration: {method, ece, log_loss}
    leakage:     rows (list of dicts or DataFrame) with column, single_column_auc, reason, excluded
    drift:       {features: rows with column, psi, status; score_psi: float; top: int (default 10)}
    threshold:   {policy, points, reason, mql_per_week, win_rate}
    decision:    registry.Decision or {promote, reasons, table}
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping

import pandas as pd

NOT_AVAILABLE = "_not available_"
#: Section titles, in order (tests and readers rely on them).
SECTIONS = ("Data window", "Features", "Metrics", "Training", "Calibration", "Leakage guard", "Drift",
            "MQL threshold", "Champion / challenger")
DRIFT_TOP = 10


# --------------------------------------------------------------------------------------------- markdown

def render_model_card(info: dict) -> str:
    """The model card as Markdown; missing or malformed sections read "not available"."""
    info = info or {}
    model = info.get("model") or {}
    if not isinstance(model, Mapping):
        model = {}
    name = model.get("name") or "model (name not available)"
    version = f"version {model['version']}" if model.get("version") is not None else "(version not available)"
    out = [f"# Model card: {_inline(name)} {version}", ""]
    facts = [f"- **{key.replace('_', ' ')}**: {_inline(model[key])}"
             for key in ("description", "created", "run_id") if model.get(key)]
    out += facts + ([""] if facts else [])
    builders = [_data_window, _features, _metrics, _training, _calibration, _leakage, _drift, _threshold, _decision]
    keys = ["data_window", "features", "metrics", "training", "calibration", "leakage", "drift", "threshold", "decision"]
    for section, key, build in zip(SECTIONS, keys, builders):
        out += [f"## {section}", ""]
        value = info.get(key)
        try:
            body = build(value) if _present(value) else []
        except (KeyError, TypeError, ValueError, AttributeError):
            body = []  # malformed: say so rather than crash the whole card
        out += (body or [NOT_AVAILABLE]) + [""]
    return "\n".join(out).rstrip() + "\n"


def _present(value) -> bool:
    if value is None:
        return False
    if isinstance(value, pd.DataFrame):
        return not value.empty
    if isinstance(value, (Mapping, list, tuple)):
        return len(value) > 0
    return True


def _rows(value) -> list[dict]:
    if isinstance(value, pd.DataFrame):
        return value.to_dict("records")
    return [dict(r) for r in value]


def _fmt(value, digits: int = 4) -> str:
    if hasattr(value, "item") and not isinstance(value, (str, pd.Timestamp)):
        try:
            value = value.item()  # numpy scalars as Python numbers
        except (ValueError, TypeError):
            pass
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) < 1e6 else f"{value:,.0f}"
    try:
        if pd.isna(value):
            return "–"
    except (TypeError, ValueError):
        pass
    return str(value)


def _inline(value) -> str:
    """Text on one line, with Markdown table separators escaped."""
    return re.sub(r"\s+", " ", str(value)).strip().replace("|", "\\|")


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(_inline(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_inline(_fmt(v)) for v in row) + " |" for row in rows]
    return lines


def _data_window(w: Mapping) -> list[str]:
    if any(k.endswith(("_from", "_to")) for k in w):  # a time split's boundaries
        w = {"train": {"from": w.get("train_from"), "to": w.get("valid_from") or w.get("calibration_from"),
                       "rows": w.get("n_train")},
             "validation (early stopping)": {"from": w.get("valid_from"), "to": w.get("calibration_from"),
                                             "rows": w.get("n_valid")},
             "calibration": {"from": w.get("calibration_from"), "to": w.get("test_from"),
                             "rows": w.get("n_calibration")},
             "test": {"from": w.get("test_from"), "to": w.get("test_to"), "rows": w.get("n_test")}}
        w = {k: v for k, v in w.items() if v["from"] is not None or v["rows"] is not None}
    rows = [[period, p.get("from"), p.get("to"), p.get("rows")] for period, p in w.items() if isinstance(p, Mapping)]
    return _table(["period", "from", "to", "leads"], rows) if rows else []


def _features(f) -> list[str]:
    if isinstance(f, Mapping):
        groups = {str(g): [str(n) for n in names] for g, names in f.items()}
    else:
        groups = {}
        for m in _rows(f):
            groups.setdefault(str(m.get("group", "other")), []).append(str(m["name"]))
    total = sum(len(v) for v in groups.values())
    lines = [f"{total} features in {len(groups)} groups.", ""]
    for g, names in groups.items():
        lines.append(f"- **{_inline(g)}** ({len(names)}): " + (", ".join(f"`{_inline(n)}`" for n in names) or "none"))
    return lines


def _metrics(m: Mapping) -> list[str]:
    scorers = [s for s, v in m.items() if isinstance(v, Mapping)]
    names = list(dict.fromkeys(k for s in scorers for k, v in m[s].items()
                               if isinstance(v, (int, float)) and not isinstance(v, bool)))
    if not names:
        return []
    return _table(["metric", *scorers], [[n, *(m[s].get(n) for s in scorers)] for n in names])


def _calibration(c: Mapping) -> list[str]:
    return [f"- **method**: {_inline(c.get('method', 'not available'))}",
            f"- **expected calibration error (ECE)**: {_fmt(c.get('ece'))}",
            f"- **log loss**: {_fmt(c.get('log_loss'))}"]


def _leakage(rows) -> list[str]:
    rows = _rows(rows)
    excluded = [r for r in rows if r.get("excluded")]
    lines = [f"{len(rows)} columns examined, {len(excluded)} excluded from training.", ""]
    return lines + _table(["column", "single-column AUC", "excluded", "reason"],
                          [[r.get("column"), r.get("single_column_auc"), bool(r.get("excluded")), r.get("reason")]
                           for r in rows])


def _drift(d: Mapping) -> list[str]:
    lines = []
    if d.get("score_psi") is not None:
        lines += [f"- **score PSI**: {_fmt(d['score_psi'])} (< 0.1 stable, 0.1–0.25 look, > 0.25 act)", ""]
    if _present(d.get("features")):
        top = int(d.get("top", DRIFT_TOP))
        rows = sorted(_rows(d["features"]), key=lambda r: -float(r.get("psi") or 0))
        lines.append(f"Largest feature shifts (top {min(top, len(rows))} of {len(rows)}):")
        lines.append("")
        lines += _table(["feature", "PSI", "status"], [[r.get("column"), r.get("psi"), r.get("status")]
                                                       for r in rows[:top]])
    return lines


def _threshold(t: Mapping) -> list[str]:
    lines = [f"- **policy**: {_inline(t.get('policy', 'not available'))}",
             f"- **MQL threshold**: {_fmt(t.get('points'), 1)} points"]
    if t.get("mql_per_week") is not None:
        lines.append(f"- **MQLs per week**: {_fmt(t['mql_per_week'], 1)}")
    if t.get("win_rate") is not None:
        lines.append(f"- **MQL win rate**: {float(t['win_rate']):.1%}")
    lines.append(f"- **why**: {_inline(t.get('reason', 'not available'))}")
    return lines


def _training(t) -> list[str]:
    lines = [f"- **mode**: {_inline(t.get('mode', 'standard'))}, {_inline(t.get('trees'))} trees"]
    if t.get("small_data_reason"):
        lines.append(f"- **why**: {_inline(t['small_data_reason'])}")
    if t.get("time_cv"):
        lines.append(f"- **rolling-origin time CV**: {_inline(t['time_cv'])}")
    v = t.get("validation") or {}
    if "model_auc" in v and "baseline_auc" in v:
        lines.append(f"- **validation leads**: model ROC AUC {_fmt(v['model_auc'])}, rule baseline {_fmt(v['baseline_auc'])}")
    lines += [f"- **warning**: {_inline(w)}" for w in t.get("warnings") or []]
    return lines


def _decision(d) -> list[str]:
    get = d.get if isinstance(d, Mapping) else lambda k, default=None: getattr(d, k, default)
    promote = get("promote")
    verdict = "not available" if promote is None else ("promote the challenger" if promote else "keep the champion")
    lines = [f"**Decision: {verdict}.**", ""]
    if get("action", None):
        lines += [f"_{_inline(get('action'))}_", ""]
    lines += [f"- {_inline(r)}" for r in get("reasons", None) or []]
    table = get("table", None)
    if _present(table):
        rows = _rows(table)
        cols = list(rows[0])
        lines += ["", *_table(cols, [[r.get(c) for c in cols] for r in rows])]
    return lines


# --------------------------------------------------------------------------------------------- HTML

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#1f2328;line-height:1.5}
h1{border-bottom:2px solid #d0d7de;padding-bottom:.3rem}h2{margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5rem 0;font-size:.92rem}th,td{border:1px solid #d0d7de;padding:.25rem .6rem;
text-align:left;vertical-align:top}th{background:#f6f8fa}code{background:#f6f8fa;padding:0 .2rem;border-radius:3px}
em{color:#6e7781}
""".strip()


def to_html(markdown_text: str, title: str | None = None) -> str:
    """A self-contained HTML page from the Markdown subset :func:`render_model_card` writes: headings,
    tables, bullet lists, paragraphs, ``**bold**``, ``_italic_`` and ``code``. All text is escaped."""
    lines = markdown_text.splitlines()
    body: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif m := re.match(r"^(#{1,6})\s+(.*)$", line):
            level = len(m.group(1))
            body.append(f"<h{level}>{_inline_html(m.group(2))}</h{level}>")
            title = title or (m.group(2) if level == 1 else None)
            i += 1
        elif line.lstrip().startswith("|"):
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            body.append(_table_html(block))
        elif re.match(r"^\s*[-*]\s+", line):
            items = []
            while i < len(lines) and re.match(r"^\s*[-*]\s+", lines[i]):
                items.append(re.sub(r"^\s*[-*]\s+", "", lines[i]))
                i += 1
            body.append("<ul>" + "".join(f"<li>{_inline_html(x)}</li>" for x in items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#|\s*\||\s*[-*]\s)", lines[i]):
                para.append(lines[i].strip())
                i += 1
            body.append(f"<p>{_inline_html(' '.join(para))}</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(_plain(title or 'Model card'))}</title><style>{_STYLE}</style></head>\n"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")


def _plain(text: str) -> str:
    return re.sub(r"[*_`]|\\(?=\|)", "", text)


def _inline_html(text: str) -> str:
    """Escape first, then turn the few Markdown marks into tags (escaping leaves * _ ` untouched)."""
    out = html.escape(text.replace("\\|", "|"), quote=True)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w\\])_(?=\S)(.+?)(?<=\S)_(?!\w)", r"<em>\1</em>", out)
    return out


def _table_html(block: list[str]) -> str:
    def cells(row: str) -> list[str]:
        row = row.strip()
        row = row[1:] if row.startswith("|") else row
        row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
        return [c.strip() for c in re.split(r"(?<!\\)\|", row)]

    rows = [cells(r) for r in block]
    header, rest = rows[0], rows[1:]
    if rest and all(re.fullmatch(r":?-{3,}:?", c) for c in rest[0] if c):
        rest = rest[1:]
    head = "".join(f"<th>{_inline_html(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in r) + "</tr>" for r in rest)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
