"""Today's report (``leadscore report``) for a large run: build time, file size, and in headless Chromium the
time to open (first rows drawn) and to filter by band, by MQL and to search.

    python benchmarks/report.py                  # 100,000 leads, 6 earlier runs in the history
    python benchmarks/report.py --leads 20000 --runs 3 --keep-page /tmp/today.html

The scores are synthetic in the shape ``leadscore score --history --keep name,company,title,owner`` writes
(reasons JSON with grouped sentences, base/other/capped points, newly_mql), so only the report is timed.
Browser times are measured inside the page (``performance.now()``) around the work and the next paint;
"open" is from navigation start to the first rows in the DOM. Say the machine's load with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

GROUPS = [("pricing_page", "Pricing page: visited {k} times in the last 7 days", 4.0),
          ("webinar", "Webinars: attended {k} in the last 30 days", 3.0),
          ("email", "Emails: opened {k} in the last 30 days", 1.0),
          ("seniority", "Seniority: {s}", -2.0), ("industry", "Industry: {i}", 1.5),
          ("employees", "Company size: {k}0 employees", 0.5), ("country", "Based in {c}", 0.3),
          ("demo", "Demo request: {k} in the last 90 days", 6.0), ("unsubscribed", "Unsubscribed from emails", -7.0)]
WORDS = ["assistant", "manager", "director", "intern", "vp"]
INDUSTRIES = ["Software", "Manufacturing", "Financial Services", "Retail", "Healthcare"]
COUNTRIES = ["Germany", "Canada", "France", "Brazil", "Japan"]


def synthetic_scores(n: int, as_of: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = 35.0
    pick = np.argsort(rng.random((n, len(GROUPS))), axis=1)[:, :5]
    pts = np.round(rng.normal(0, 6, (n, 5)) + np.array([g[2] for g in GROUPS])[pick], 1)
    k = rng.integers(1, 9, (n, 5))
    reasons = []
    for i in range(n):
        pos, neg = [], []
        for j in range(5):
            g, tmpl, _ = GROUPS[pick[i, j]]
            s = tmpl.format(k=k[i, j], s=WORDS[k[i, j] % 5], i=INDUSTRIES[k[i, j] % 5], c=COUNTRIES[k[i, j] % 5])
            (pos if pts[i, j] >= 0 else neg).append({"feature": g, "sentence": s, "points": float(pts[i, j])})
        reasons.append(json.dumps({"positive": pos, "negative": neg}))
    other = np.round(rng.normal(0, 8, n), 1)
    raw = base + pts.sum(axis=1) + other
    points = np.round(np.clip(raw, 0, 100), 1)
    capped = np.round(points - raw, 1)
    other = np.round(points - base - pts.sum(axis=1) - capped, 1)
    band = np.select([points >= 70, points >= 50, points >= 30], ["A", "B", "C"], "D")
    ids = np.char.add("L", np.char.zfill(np.arange(n).astype(str), 7))
    return pd.DataFrame({
        "lead_id": ids, "probability": np.round(1 / (1 + np.exp(-(points - 50) / 10)), 4), "points": points,
        "band": band, "fit_grade": "B", "engagement_grade": "2", "matrix_cell": np.char.add(band, "2"),
        "is_mql": points >= 60, "reasons": reasons, "pushed_over_mql": "[]", "base_points": base,
        "other_points": other, "capped_points": capped, "reasons_text": "",
        "name": np.char.add("Person ", np.arange(n).astype(str)),
        "company": np.char.add(np.array(["Acme ", "Globex ", "Initech ", "Umbrella "])[np.arange(n) % 4],
                               (np.arange(n) % 997).astype(str)),
        "title": np.array(["Head of Marketing", "CFO", "Analyst", "Intern"])[np.arange(n) % 4],
        "owner": np.array(["ana", "ben", "cho"])[np.arange(n) % 3],
        "model_name": "leadscore", "model_version": "7", "as_of": pd.Timestamp(as_of), "scored_at": pd.Timestamp(as_of)})


def write_history(folder: Path, n: int, runs: int, last: pd.Timestamp) -> None:
    for r in range(runs, 0, -1):
        as_of = (last - pd.Timedelta(days=7 * r)).date()
        rng = np.random.default_rng(r)
        part = folder / f"as_of={as_of}"
        part.mkdir(parents=True)
        pts = np.round(rng.uniform(0, 100, n), 1)
        pd.DataFrame({"lead_id": np.char.add("L", np.char.zfill(np.arange(n).astype(str), 7)), "points": pts,
                      "is_mql": pts >= 60}).to_parquet(part / f"run-{r}.parquet", index=False)
        (part / f"run-{r}.json").write_text(json.dumps({"run_id": str(r), "as_of": f"{as_of}T00:00:00",
                                                        "data": f"run-{r}.parquet",
                                                        "committed_at": f"{as_of}T01:00:00+00:00"}))


MEASURE = """async (what) => {
  const paint = () => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
  const t0 = performance.now();
  if (what === 'band') { const s = document.getElementById('band'); s.value = 'A'; s.dispatchEvent(new Event('change')); }
  if (what === 'new') { const s = document.getElementById('mql'); s.value = 'new'; s.dispatchEvent(new Event('change')); }
  if (what === 'reset') { for (const id of ['band', 'mql']) { const s = document.getElementById(id); s.value = ''; s.dispatchEvent(new Event('change')); } }
  if (what.startsWith('q:')) { const q = document.getElementById('q'); q.value = what.slice(2); q.dispatchEvent(new Event('input')); }
  if (what === 'sort') document.querySelector('#head [data-key="x:company"]').click();
  await paint();
  return [performance.now() - t0, document.getElementById('count').textContent, document.querySelectorAll('.row').length];
}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=6, help="earlier runs in the history (trend points)")
    ap.add_argument("--keep-page", type=Path, default=None, help="copy the page here")
    args = ap.parse_args()
    from leadscore.today import build

    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min) on "
          f"{os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        scores = synthetic_scores(args.leads, "2026-06-08", 0)
        scores.to_parquet(tmp / "scores.parquet", index=False)
        write_history(tmp / "history", args.leads, args.runs, pd.Timestamp("2026-06-08"))
        print(f"synthetic run of {args.leads:,} leads and {args.runs} earlier runs: {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        build(tmp / "scores.parquet", tmp / "today.html", tmp / "history")
        size = (tmp / "today.html").stat().st_size
        print(f"leadscore report (python: read, prepare, write): {time.perf_counter() - t0:.1f} s; page {size / 1e6:.1f} MB")
        if args.keep_page:
            shutil.copy(tmp / "today.html", args.keep_page)
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            print("no chromium: browser timings skipped")
            return
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            for attempt in range(2):
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                errors = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                t0 = time.perf_counter()
                page.goto((tmp / "today.html").as_uri())
                page.wait_for_selector(".row")
                wall = time.perf_counter() - t0
                opened = page.evaluate("performance.now()")
                print(f"open #{attempt + 1}: first rows drawn {opened / 1000:.2f} s after navigation start "
                      f"(wall clock incl. browser round trip {wall:.2f} s); errors: {errors or 'none'}")
                for what in ("band", "new", "reset", "q:acme 12", "q:pricing page: visited 3", "q:", "sort"):
                    ms, count, rows = page.evaluate(MEASURE, what)
                    print(f"  {what:<28} {ms / 1000:6.3f} s  → {count} ({rows} rows in the DOM)")
                page.close()
            browser.close()


if __name__ == "__main__":
    main()
