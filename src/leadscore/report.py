"""The marketers' report: one self-contained HTML page (no server, no internet) with the score
distribution, conversion by band and matrix cell, the threshold table, global drivers, and a searchable
lead list where clicking a lead shows its score, band, cell and a waterfall of its reasons."""

from __future__ import annotations

import base64
import html
import io
import json

import numpy as np
import pandas as pd

MAX_LEADS = 5000


def png_bytes(fig) -> bytes:
    """A matplotlib figure as the PNG file ``fig.savefig(path.png, bbox_inches="tight")`` writes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _png(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _table(df: pd.DataFrame, highlight=None, fmt: dict | None = None) -> str:
    fmt = fmt or {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for i, r in enumerate(df.itertuples(index=False)):  # summary tables: a few dozen rows
        cls = ' class="hl"' if highlight is not None and highlight(i, r) else ""
        cells = "".join(f"<td>{html.escape(fmt.get(c, '{}').format(v))}</td>" for c, v in zip(df.columns, r))
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def score_histogram(points: np.ndarray, threshold: float, bands: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    ax.hist(points, bins=np.arange(0, 102, 2), color="#4C72B0")
    ax.axvline(threshold, color="#C44E52", lw=2, label=f"MQL threshold {threshold:.0f}")
    for name, cut in bands.items():
        ax.axvline(cut, color="grey", ls=":", lw=1)
        ax.text(cut + 0.5, ax.get_ylim()[1] * 0.9, name, color="grey")
    ax.set(xlabel="points", ylabel="leads", title="Score distribution (test quarter)")
    ax.legend()
    fig.tight_layout()
    return fig


def matrix_html(matrix: pd.DataFrame) -> str:
    """Fit grade rows × engagement grade columns: win rate and lead count, shaded by win rate."""
    fits = sorted(matrix["fit_grade"].unique())
    engs = sorted(matrix["engagement_grade"].unique())
    cell = matrix.set_index(["fit_grade", "engagement_grade"])
    top = max(float(matrix["win_rate"].max()), 1e-9)
    head = "".join(f"<th>engagement {e}</th>" for e in engs)
    body = []
    for f in fits:
        tds = []
        for e in engs:
            if (f, e) in cell.index:
                r = cell.loc[(f, e)]
                alpha = 0.1 + 0.8 * r["win_rate"] / top
                tds.append(f'<td style="background: rgba(85,168,104,{alpha:.2f})"><b>{f}{e}</b><br>'
                           f'{r["win_rate"]:.0%} win<br>{int(r["leads"]):,} leads</td>')
            else:
                tds.append("<td>–</td>")
        body.append(f"<tr><th>fit {f}</th>{''.join(tds)}</tr>")
    return f'<table class="matrix"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def lead_payload(lead_ids, scores: pd.DataFrame, exp, limit: int = MAX_LEADS) -> str:
    """The lead list as JSON records: everything the detail panel and its waterfall need."""
    # The waterfall shows the top reasons; the rest of the contributions become "all other factors".
    shown = (scores["reasons"].str.findall(r'"points": (-?\d+\.\d+)').explode().astype(float)
             .groupby(level=0).sum().reindex(scores.index, fill_value=0.0))
    df = pd.DataFrame({
        "id": pd.Series(lead_ids).astype(str).to_numpy(),
        "points": scores["points"].to_numpy(), "band": scores["band"].to_numpy(),
        "cell": scores["matrix_cell"].to_numpy(), "p": np.round(scores["probability"].to_numpy(), 4),
        "mql": scores["is_mql"].to_numpy(), "base": np.round(exp.base_points, 1),
        "cap": np.round(exp.cap, 1),
        "other": np.round(exp.points - exp.cap - exp.base_points - shown.to_numpy(), 1),
        "reasons": scores["reasons"].to_numpy(), "pushed": scores["pushed_over_mql"].to_numpy(),
    })
    df = df.sort_values("points", ascending=False, kind="stable").head(limit)
    return df.to_json(orient="records")


def script_json(text: str) -> str:
    """JSON safe to embed in a ``<script>`` element: ``<``, ``>`` and ``&`` as ``\\u003c``, ``\\u003e``,
    ``\\u0026`` (the same JSON, but no ``</script>`` or ``<!--`` the HTML parser could see in a lead id or a
    reason), and U+2028/U+2029 escaped too."""
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>leadscore report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }}
h1 {{ margin-bottom: 0; }} .sub {{ color: #666; margin-top: 4px; }}
section {{ margin: 28px 0; }} img {{ max-width: 100%; }}
table {{ border-collapse: collapse; font-size: 13px; }} th, td {{ border: 1px solid #ddd; padding: 4px 8px; text-align: right; }}
th {{ background: #f4f4f4; }} tr.hl td {{ background: #fff3c4; font-weight: bold; }}
.matrix td {{ text-align: center; min-width: 90px; }}
.cols {{ display: flex; gap: 24px; flex-wrap: wrap; }}
#leads {{ max-height: 420px; overflow-y: auto; display: block; }} #leads tr {{ cursor: pointer; }}
#leads tr:hover td {{ background: #eef4ff; }}
#search {{ font-size: 15px; padding: 6px; width: 280px; }}
#detail {{ border: 1px solid #ccc; padding: 12px 16px; min-width: 460px; flex: 1; }}
.wf-row {{ display: flex; align-items: center; margin: 2px 0; font-size: 13px; }}
.wf-label {{ width: 330px; }} .wf-track {{ position: relative; width: 260px; height: 14px; background: #fafafa; }}
.wf-bar {{ position: absolute; height: 14px; }} .wf-pts {{ width: 60px; text-align: right; }}
.pos {{ background: #55A868; }} .neg {{ background: #C44E52; }} .base {{ background: #8c8c8c; }} .total {{ background: #4C72B0; }}
.note {{ color: #666; font-size: 13px; }}
</style></head><body>
<h1>Lead scoring report</h1>
<p class="sub">{subtitle}</p>

{quality}

<section><h2>Score distribution</h2><img alt="score distribution" src="{hist}"></section>

<section class="cols"><div><h2>Conversion by band</h2>{bands}</div>
<div><h2>Fit × engagement matrix</h2>{matrix}
<p class="note">Fit grade (A best) sums the points from who the lead is; engagement grade (1 best) sums the points from what they did.</p></div></section>

<section><h2>MQL threshold</h2><p><b>{threshold:.0f} points.</b> {threshold_reason}</p>{mql_compare}
<details><summary>Threshold table (test quarter)</summary>{threshold_table}</details></section>

<section><h2>What drives scores</h2><p>{shares}</p>
<div class="cols"><img alt="global drivers" src="{drivers}"><img alt="beeswarm" src="{beeswarm}"></div></section>

<section><h2>Drift and leakage</h2>
<p>Score PSI between the training period and the test quarter: <b>{score_psi:.3f}</b> ({score_status}).
PSI below 0.1 is stable, 0.1–0.25 a moderate shift, above 0.25 a major one.</p>
<div class="cols"><div><h3>Features that moved most</h3>{drift}</div>
<div><h3>Calibration by quarter</h3>{calibration}</div></div>
<h3>Leakage guard</h3>{leakage}</section>

<section><h2>Leads</h2>
<input id="search" placeholder="search lead id…" autocomplete="off"> <span id="count" class="note"></span>
<div class="cols"><table id="leads"><thead><tr><th>lead</th><th>points</th><th>band</th><th>cell</th><th>MQL</th></tr></thead><tbody></tbody></table>
<div id="detail"><p class="note">Click a lead to see why it scored what it did.</p></div></div></section>

<script id="lead-data" type="application/json">{leads_json}</script>
<script>
const LEADS = JSON.parse(document.getElementById('lead-data').textContent);
const tbody = document.querySelector('#leads tbody');
function esc(s) {{ return String(s).replace(/[&<>"]/g, c => ({{'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}})[c]); }}
function render(filter) {{
  const f = (filter || '').trim().toLowerCase();
  const rows = LEADS.filter(l => !f || l.id.toLowerCase().includes(f)).slice(0, 500);
  tbody.innerHTML = rows.map(l => `<tr data-id="${{esc(l.id)}}"><td>${{esc(l.id)}}</td><td>${{l.points.toFixed(1)}}</td><td>${{l.band}}</td><td>${{l.cell}}</td><td>${{l.mql ? 'yes' : ''}}</td></tr>`).join('');
  document.getElementById('count').textContent = `${{rows.length}} shown of ${{LEADS.length}}`;
}}
function show(id) {{
  const l = LEADS.find(x => x.id === id);
  const r = JSON.parse(l.reasons), pushed = JSON.parse(l.pushed);
  const steps = [{{label: 'Base score', points: l.base, kind: 'base'}}]
    .concat(r.positive.map(x => ({{label: x.sentence, points: x.points, kind: 'pos'}})))
    .concat(r.negative.map(x => ({{label: x.sentence, points: x.points, kind: 'neg'}})));
  if (Math.abs(l.other) >= 0.05) steps.push({{label: 'All other factors', points: l.other, kind: l.other >= 0 ? 'pos' : 'neg'}});
  if (Math.abs(l.cap) >= 0.05) steps.push({{label: 'Score capped to the 0–100 scale', points: l.cap, kind: l.cap >= 0 ? 'pos' : 'neg'}});
  const lo = Math.min(0, ...steps.map((s, i) => steps.slice(0, i + 1).reduce((a, b) => a + b.points, 0)));
  const hi = Math.max(100, ...steps.map((s, i) => steps.slice(0, i + 1).reduce((a, b) => a + b.points, 0)));
  const scale = v => 260 * (v - lo) / (hi - lo);
  let run = 0;
  const bars = steps.map(s => {{
    const a = run, b = run + s.points; run = b;
    const left = scale(Math.min(a, b)), width = Math.max(1, Math.abs(scale(b) - scale(a)));
    return `<div class="wf-row step" data-points="${{s.points}}"><span class="wf-label">${{esc(s.label)}}</span><span class="wf-track"><span class="wf-bar ${{s.kind}}" style="left:${{left}}px;width:${{width}}px"></span></span><span class="wf-pts">${{s.points >= 0 && s.kind !== 'base' ? '+' : ''}}${{s.points.toFixed(1)}}</span></div>`;
  }}).join('');
  const total = `<div class="wf-row"><span class="wf-label"><b>Score</b></span><span class="wf-track"><span class="wf-bar total" style="left:${{scale(Math.min(0, l.points))}}px;width:${{Math.max(1, scale(l.points) - scale(0))}}px"></span></span><span class="wf-pts" id="detail-points">${{l.points.toFixed(1)}}</span></div>`;
  const push = l.mql && pushed.length ? `<p><b>What pushed it over MQL:</b> ${{pushed.map(x => esc(x.sentence) + ' (+' + x.points.toFixed(1) + ')').join('; ')}}</p>` : '';
  document.getElementById('detail').innerHTML = `<h3 id="detail-id">${{esc(l.id)}}</h3>
    <p>${{l.points.toFixed(1)}} points · band ${{l.band}} · cell ${{l.cell}} · ${{(100 * l.p).toFixed(1)}}% chance of a win${{l.mql ? ' · <b>MQL</b>' : ''}}</p>
    <div id="waterfall">${{bars}}${{total}}</div>${{push}}`;
}}
document.getElementById('search').addEventListener('input', e => render(e.target.value));
tbody.addEventListener('click', e => {{ const tr = e.target.closest('tr'); if (tr) show(tr.dataset.id); }});
render('');
</script></body></html>
"""


def render_report(*, subtitle: str, points: np.ndarray, threshold: float, threshold_reason: str, bands_cfg: dict,
                  band_table: pd.DataFrame, matrix: pd.DataFrame, threshold_tbl: pd.DataFrame, mql_compare: pd.DataFrame,
                  shares: dict, figure_png: dict[str, bytes], leads_json: str, drift_table: pd.DataFrame | None = None,
                  score_psi: float = float("nan"), calibration_periods: pd.DataFrame | None = None,
                  leakage: pd.DataFrame | None = None, quality: str = "") -> str:
    import matplotlib.pyplot as plt

    hist = score_histogram(points, threshold, bands_cfg)
    tt = threshold_tbl[threshold_tbl["threshold"] % 5 == 0].copy()
    cols = [c for c in ("threshold", "mqls_per_week", "expected_win_rate", "observed_win_rate", "share_of_wins") if c in tt]
    page = PAGE.format(
        subtitle=html.escape(subtitle), hist=_png(png_bytes(hist)),
        bands=_table(band_table, fmt={"win_rate": "{:.1%}", "leads": "{:,}", "wins": "{:,}", "mean_probability": "{:.1%}"}),
        matrix=matrix_html(matrix), threshold=threshold, threshold_reason=html.escape(threshold_reason),
        mql_compare=_table(mql_compare, fmt={"win_rate": "{:.1%}", "mqls_per_week": "{:.1f}"}),
        threshold_table=_table(tt[cols], highlight=lambda i, r: r[0] == int(round(threshold)),
                               fmt={"mqls_per_week": "{:.1f}", "expected_win_rate": "{:.1%}",
                                    "observed_win_rate": "{:.1%}", "share_of_wins": "{:.1%}"}),
        shares=html.escape(", ".join(f"{g}: {s:.0%}" for g, s in sorted(shares.items(), key=lambda kv: -kv[1]))
                           + " of all score movement"),
        drivers=_png(figure_png["drivers_bar"]), beeswarm=_png(figure_png["beeswarm"]),
        leads_json=script_json(leads_json),
        score_psi=score_psi,
        score_status="stable" if score_psi < 0.1 else "moderate shift" if score_psi < 0.25 else "major shift",
        drift=_table(drift_table.head(8), fmt={"psi": "{:.3f}"}) if drift_table is not None else "not available",
        calibration=(_table(calibration_periods.assign(period=calibration_periods["period"].astype(str)),
                            fmt={"mean_predicted": "{:.1%}", "observed_win_rate": "{:.1%}", "gap": "{:+.1%}"})
                     if calibration_periods is not None else "not available"),
        quality=quality,
        leakage=(_table(leakage[["column", "single_column_auc", "flagged", "excluded", "reason"]].head(12),
                        fmt={"single_column_auc": "{:.3f}"})
                 if leakage is not None and len(leakage) else "<p>No snapshot attribute examined.</p>"),
    )
    plt.close(hist)
    return page


def quality_section(notes: dict, decision) -> str:
    """The "Training and promotion gate" section: how the model was trained (mode, trees, time CV,
    warnings) and the gate's decision with each check's numbers."""
    items = [f"Mode: <b>{html.escape(str(notes.get('mode', 'standard')))}</b>, {notes.get('trees')} trees."]
    if notes.get("small_data_reason"):
        items.append(html.escape(notes["small_data_reason"]))
    items.append(html.escape(notes.get("time_cv", "")))
    v = notes.get("validation", {})
    if "baseline_auc" in v:
        items.append(f"Validation leads: model ROC AUC {v['model_auc']:.3f}, rule baseline {v['baseline_auc']:.3f}.")
    warnings = "".join(f'<li class="warn"><b>Warning:</b> {html.escape(w)}</li>' for w in notes.get("warnings", []))
    if decision is None:
        gate = "<p>Gate not run.</p>"
    else:
        verdict = "passed" if decision.promote else "REFUSED"
        checks = "".join(f"<li>{html.escape(r)}</li>" for r in decision.reasons)
        action = getattr(decision, "action", "") or ("not registered (no MLflow run): the gate's verdict only")
        gate = f"<p>Promotion gate: <b>{verdict}</b>. {html.escape(action)}</p><ul>{checks}</ul>"
    return (f"<section><h2>Training and promotion gate</h2><ul>{''.join(f'<li>{i}</li>' for i in items)}"
            f"{warnings}</ul>{gate}</section>")

