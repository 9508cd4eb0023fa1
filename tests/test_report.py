"""The marketers' report in a real headless browser: it loads cleanly, search finds a lead, and the
lead's reasons appear and add up to its score; lead ids and text holding HTML, script tags and control
characters neither break the page nor empty the lead list."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module (Playwright's sync API allows one running instance)."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run must install it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


def _open(browser, path):
    pg = browser.new_page()
    errors = []
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(path.resolve().as_uri())
    pg.wait_for_load_state("load")
    return pg, errors


@pytest.fixture(scope="module")
def page(trained, browser):
    pg, errors = _open(browser, trained["tmp"] / "outputs" / "report.html")
    yield pg, errors
    pg.close()


def test_report_loads_without_errors_and_shows_every_section(page):
    pg, errors = page
    assert errors == []
    text = pg.inner_text("body")
    for heading in ("Score distribution", "Conversion by band", "Fit × engagement matrix", "MQL threshold",
                    "What drives scores", "Leads"):
        assert heading in text
    images = pg.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
    assert len(images) >= 3 and all(w > 100 for w in images)
    assert pg.locator("#leads tbody tr").count() > 10


def test_search_finds_a_lead_and_its_reasons_add_up_to_its_score(page, trained):
    pg, errors = page
    scored = pd.read_parquet(trained["tmp"] / "reports" / "explanations.parquet")
    scored = scored[scored["as_of"] == scored["as_of"].max()]  # the report lists the newest replay date's leads
    lead = scored.sort_values("points", ascending=False).iloc[3]
    pg.fill("#search", lead["lead_id"][-5:])
    rows = pg.locator("#leads tbody tr")
    assert 1 <= rows.count() <= 50
    pg.locator(f'#leads tbody tr[data-id="{lead["lead_id"]}"]').click()
    assert pg.inner_text("#detail-id") == lead["lead_id"]
    steps = [float(x) for x in pg.eval_on_selector_all("#waterfall .step", "els => els.map(e => e.dataset.points)")]
    shown = float(pg.inner_text("#detail-points"))
    assert shown == pytest.approx(lead["points"], abs=0.05)
    assert sum(steps) == pytest.approx(shown, abs=1.0)
    reasons = json.loads(lead["reasons"])
    detail = pg.inner_text("#detail")
    assert reasons["positive"][0]["sentence"] in detail
    if lead["is_mql"] and json.loads(lead["pushed_over_mql"]):
        assert "pushed it over MQL" in detail
    assert errors == []


def test_search_with_no_match_shows_nothing(page):
    pg, _ = page
    pg.fill("#search", "no-such-lead-xyz")
    assert pg.locator("#leads tbody tr").count() == 0
    pg.fill("#search", "")
    assert pg.locator("#leads tbody tr").count() > 0


# ----------------------------------------------------------------------------- hostile input
HOSTILE_IDS = ["<!--<script>", "</script><script>window.pwned=1</script>", "a&b<c>d", "L\u2028x"]


@pytest.fixture(scope="module")
def hostile_page(trained, browser, tmp_path_factory):
    """A report rendered from leads whose ids and text fields hold HTML, script tags and control characters."""
    import joblib
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from leadscore.report import lead_payload, png_bytes, render_report
    from leadscore.scoring import threshold_table

    scorer = joblib.load(trained["tmp"] / "models" / "scorer.joblib")
    X = pd.read_parquet(trained["tmp"] / "features" / "features.parquet").head(60).reset_index(drop=True)
    X.loc[: len(HOSTILE_IDS) - 1, "lead_id"] = HOSTILE_IDS
    for c in (m["name"] for m in scorer.model.metadata if m["kind"] == "categorical"):
        X[c] = X[c].astype(object)
    X.loc[:9, "industry"] = "soft\x01ware <b>&amp;</b>\x0b\x1b \"q\" \\ </script>"
    X.loc[:9, "country"] = "ger\tmany\r\n<!--"
    exp = scorer.explain(X)
    scored = scorer.score(X, explanation=exp)
    for r in scored["reasons"]:
        json.loads(r)
    fig_a, fig_b = plt.figure(), plt.figure()
    page_html = render_report(
        subtitle="<hostile> & test", points=exp.points, threshold=scorer.mql_threshold, threshold_reason="t < 1 & 2",
        bands_cfg=scorer.params.bands, band_table=pd.DataFrame({"band": ["A"], "leads": [len(X)]}),
        matrix=scored.assign(win_rate=0.5, leads=1)[["fit_grade", "engagement_grade", "win_rate", "leads"]]
        .drop_duplicates(["fit_grade", "engagement_grade"]),
        threshold_tbl=threshold_table(exp.points, exp.probability, weeks=1.0),
        mql_compare=pd.DataFrame({"scorer": ["model"], "mqls_per_week": [1.0]}), shares={"fit": 0.5, "behavior": 0.5},
        figure_png={"drivers_bar": png_bytes(fig_a), "beeswarm": png_bytes(fig_b)}, leads_json=lead_payload(X["lead_id"], scored, exp))
    path = tmp_path_factory.mktemp("hostile") / "report.html"
    path.write_text(page_html, encoding="utf-8")
    pg, errors = _open(browser, path)
    yield pg, errors, X, scored
    pg.close()


def test_hostile_ids_and_text_do_not_break_the_page_and_every_lead_is_listed(hostile_page):
    pg, errors, X, _ = hostile_page
    assert errors == []
    assert pg.evaluate("typeof LEADS") == "object" and pg.evaluate("LEADS.length") == len(X)
    assert pg.evaluate("window.pwned") is None
    assert pg.eval_on_selector_all("script", "els => els.length") == 2  # the data and the page's own code
    assert pg.locator("#leads tbody tr").count() == len(X)
    ids = pg.eval_on_selector_all("#leads tbody tr", "els => els.map(e => e.dataset.id)")
    assert set(HOSTILE_IDS) <= set(ids)


def test_a_hostile_lead_shows_its_reasons_with_the_text_as_text(hostile_page):
    pg, errors, X, scored = hostile_page
    pg.fill("#search", "")
    row = pg.locator("#leads tbody tr").filter(has_text="<!--<script>").first
    row.click()
    assert pg.inner_text("#detail-id") == "<!--<script>"
    reasons = json.loads(scored["reasons"].iloc[0])
    detail = pg.inner_text("#detail")
    for r in reasons["positive"][:1]:
        assert r["sentence"].split()[0] in detail
    bold = pg.eval_on_selector_all("#detail b", "els => els.map(e => e.textContent)")
    assert set(bold) <= {"Score", "MQL", "What pushed it over MQL:"}  # no markup from the data, only the page's
    assert errors == []


# ----------------------------------------------------------------------------- today's report (leadscore report)
from leadscore import today  # noqa: E402

NASTY = ["<!--<script>", "=cmd|' /C calc'!A0", "</script><script>window.pwned=1</script>"]


def _reasons(*items):
    pos = [{"feature": f, "sentence": s, "points": p} for f, s, p in items if p >= 0]
    neg = [{"feature": f, "sentence": s, "points": p} for f, s, p in items if p < 0]
    return json.dumps({"positive": pos, "negative": neg})


def _scores(ids, points, mql, as_of="2026-06-08", **extra):
    n = len(ids)
    reasons = [_reasons(("pricing_page", "Pricing page: visited 3 times in the last 7 days", 14.2),
                        ("seniority", "Seniority: assistant", -8.2)) for _ in range(n)]
    base = 40.0
    points = [float(p) for p in points]
    capped = [min(0.0, 100.0 - (base + 6.0 + 60)) if p == 100 else 0.0 for p in points]
    other = [round(p - base - 6.0 - c, 1) for p, c in zip(points, capped)]
    return pd.DataFrame({"lead_id": ids, "probability": [0.1] * n, "points": points,
                         "band": ["A" if p >= 70 else "C" for p in points], "fit_grade": ["A"] * n,
                         "engagement_grade": ["1"] * n, "matrix_cell": ["A1"] * n, "is_mql": mql,
                         "reasons": reasons, "pushed_over_mql": ["[]"] * n, "base_points": [base] * n,
                         "other_points": other, "capped_points": capped, "reasons_text": [""] * n,
                         **extra, "model_name": ["leadscore"] * n, "model_version": ["7"] * n,
                         "as_of": pd.Timestamp(as_of), "scored_at": pd.Timestamp(as_of)})


def _history(folder, as_of, frame, run_id):
    """A committed history run as `leadscore score --history` writes it (manifest = commit point)."""
    part = folder / f"as_of={as_of}"
    part.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(part / f"run-{run_id}.parquet", index=False)
    (part / f"run-{run_id}.json").write_text(json.dumps({
        "run_id": run_id, "as_of": f"{as_of}T00:00:00", "data": f"run-{run_id}.parquet",
        "committed_at": f"{as_of}T01:00:00+00:00", "model_name": "leadscore", "model_version": "7"}))


def test_today_newly_mql_is_mql_now_and_not_in_the_previous_run(tmp_path):
    _history(tmp_path, "2026-06-01", pd.DataFrame({"lead_id": ["a", "b"], "points": [80.0, 10.0],
                                                   "is_mql": [True, False]}), "1")
    scores = _scores(["a", "b", "c", "d"], [85, 75, 72, 20], [True, True, True, False])
    history = today.history_points(tmp_path, today._as_of(scores))
    data = today.prepare(scores, history)
    # a was MQL already; b crossed; c is new to the history and MQL (counted as the batch job counts it); d not MQL
    assert data.leads["newly_mql"].tolist() == [False, True, True, False]
    assert data.meta["newly_mql"] == 2 and data.meta["previous_as_of"] == "2026-06-01"


def test_today_newly_mql_is_unknown_without_a_previous_run_and_the_scores_column_wins(tmp_path):
    scores = _scores(["a", "b"], [85, 20], [True, False])
    assert today.prepare(scores, []).leads["newly_mql"].isna().all()
    assert today.prepare(scores, []).meta["newly_mql"] is None
    written = scores.assign(newly_mql=[False, False])  # `score --history` decided it against its own previous run
    assert today.prepare(written, []).leads["newly_mql"].tolist() == [False, False]


def test_today_trend_is_the_last_run_of_each_earlier_date_then_today(tmp_path):
    _history(tmp_path, "2026-05-25", pd.DataFrame({"lead_id": ["a"], "points": [30.0], "is_mql": [False]}), "1")
    _history(tmp_path, "2026-06-01", pd.DataFrame({"lead_id": ["a", "b"], "points": [50.0, 5.0],
                                                   "is_mql": [False, False]}), "2")
    _history(tmp_path, "2026-06-01", pd.DataFrame({"lead_id": ["a", "b"], "points": [55.0, 6.0],
                                                   "is_mql": [False, False]}), "3")  # a re-run of that day wins
    _history(tmp_path, "2026-06-08", pd.DataFrame({"lead_id": ["a"], "points": [1.0], "is_mql": [False]}), "4")
    scores = _scores(["a", "b"], [72, 20], [True, False])
    data = today.prepare(scores, today.history_points(tmp_path, today._as_of(scores)))
    assert data.trend_dates == ["2026-05-25", "2026-06-01", "2026-06-08"]  # today's own date from the scores
    assert data.trend[0].tolist() == [30.0, 55.0, 72.0]
    assert np.isnan(data.trend[1][0]) and data.trend[1][1:].tolist() == [6.0, 20.0]


def test_today_waterfall_base_reasons_other_and_cap_add_up_to_the_points():
    scores = _scores(["a", "b", "c"], [100, 55.3, 0], [True, False, False])
    data = today.prepare(scores, [])
    for i in range(len(scores)):
        listed = sum(data.reasons[i][1::2])
        total = data.leads["base"][i] + listed + data.leads["other"][i] + data.leads["cap"][i]
        assert total == pytest.approx(data.leads["points"][i], abs=0.05 * (len(data.reasons[i]) // 2 + 3))
        assert [data.sentences[k] for k in data.reasons[i][::2]] == [
            "Pricing page: visited 3 times in the last 7 days", "Seniority: assistant"]
    assert data.drivers["label"].tolist()[:2] == ["Pricing page", "Seniority"]


def test_today_pass_through_columns_are_the_ones_the_score_output_does_not_own():
    scores = _scores(["a"], [50], [False], name=["Ann"], owner=["Bo"])
    assert today.prepare(scores, []).passthrough == ["name", "owner"]


def test_today_page_escapes_hostile_ids_and_text():
    scores = _scores(NASTY, [90, 50, 10], [True, False, False], name=NASTY[::-1])
    page = today.render(today.prepare(scores, []), scores)
    data_part = page.split('<script id="lead-data" type="application/json">')[1].split("</script>")[0]
    assert "<" not in data_part and ">" not in data_part and "&" not in data_part
    assert page.count("<script") == 3  # the lead data, the pass-through data and the page's code
    assert json.loads(data_part)["id"] == NASTY
    assert "'=cmd" not in page  # JSON keeps the value as it is; only CSV cells are neutralised


def test_today_reads_reasons_with_quotes_backslashes_and_unicode_as_json_does():
    odd = 'Industry: "soft\\ware" <b>ü</b>\n\u2028 =1+1'
    scores = _scores(["a", "b"], [50, 50], [False, False])
    scores.loc[1, "reasons"] = _reasons(("industry", odd, 3.0), ("seniority", "Seniority: vp", -1.5))
    data = today.prepare(scores, [])
    assert [data.sentences[k] for k in data.reasons[1][::2]] == [odd, "Seniority: vp"]
    assert data.reasons[1][1::2] == [3.0, -1.5]


@pytest.fixture(scope="module")
def today_run(trained, tmp_path_factory):
    """Two weekly `leadscore score --history --keep name,company,owner` runs on a small export whose names
    hold HTML and a spreadsheet formula, and today's page for the second one."""
    import joblib

    from leadscore.batch import score_leads

    tmp = tmp_path_factory.mktemp("today")
    src = trained["tmp"] / "raw"
    leads = pd.read_parquet(src / "leads.parquet")
    as_of = leads["created_at"].quantile(0.85).floor("D")
    open_then = leads["outcome"].eq("open") | (leads["outcome_at"] > as_of)  # scored by both runs
    leads = leads[(leads["created_at"] < as_of - pd.Timedelta(days=30)) & open_then].tail(250).reset_index(drop=True)
    leads["name"] = "Person " + leads.index.astype(str)
    leads.loc[:2, "name"] = NASTY
    leads["company"] = np.where(leads.index % 2 == 0, "Acme", "Globex")
    leads["owner"] = np.where(leads.index % 3 == 0, "ana", "ben")
    leads.to_parquet(tmp / "leads.parquet", index=False)
    events = pd.read_parquet(src / "events.parquet")
    events[events["lead_id"].isin(leads["lead_id"])].to_parquet(tmp / "events.parquet", index=False)
    scorer = joblib.load(trained["tmp"] / "models" / "scorer.joblib")
    runs = []
    for k, when in enumerate((as_of - pd.Timedelta(days=7), as_of)):
        runs.append(score_leads(scorer, tmp / "leads.parquet", tmp / "events.parquet", tmp / f"scores{k}.parquet",
                                as_of=when.isoformat(), history_dir=tmp / "history", keep=["name", "company", "owner"],
                                model_name="leadscore", model_version="3", max_reject_share=1.0))
    page = tmp / "today.html"
    data = today.build(runs[-1].output, page, tmp / "history", trained["tmp"] / "outputs" / "report.html",
                       trained["tmp"] / "reports" / "metrics.json")
    return {"tmp": tmp, "page": page, "data": data, "scores": pd.read_parquet(runs[-1].output), "runs": runs,
            "leads": leads, "scorer": scorer}


def test_score_keep_passes_export_columns_through_and_csv_neutralises_formulas(today_run, tmp_path):
    from leadscore.batch import score_leads

    scores = today_run["scores"]
    named = scores.set_index("lead_id")["name"]
    leads = today_run["leads"].set_index("lead_id")
    assert (named == leads.loc[named.index, "name"]).all()
    run = score_leads(today_run["scorer"], today_run["tmp"] / "leads.parquet", today_run["tmp"] / "events.parquet",
                      tmp_path / "s.csv", as_of=str(today_run["runs"][-1].as_of), keep=["Name"], max_reject_share=1.0)
    text = (tmp_path / "s.csv").read_text()
    assert "'=cmd|' /C calc'!A0" in text and ",=cmd" not in text
    assert run.scored == len(scores)


def test_today_data_from_a_real_run_agrees_with_the_scoring_job(today_run):
    data, scores = today_run["data"], today_run["scores"]
    assert data.passthrough == ["name", "company", "owner"]
    assert data.leads["newly_mql"].tolist() == scores["newly_mql"].tolist()
    assert len(data.trend_dates) == 2 and np.isfinite(data.trend).all()
    assert (data.trend[:, 0] == np.round(scores["previous_points"], 1)).all()
    for i in range(len(scores)):
        total = data.leads["base"][i] + sum(data.reasons[i][1::2]) + data.leads["other"][i] + data.leads["cap"][i]
        assert total == pytest.approx(scores["points"][i], abs=0.05 * (len(data.reasons[i]) // 2 + 3))


def test_today_page_lists_filters_searches_and_shows_a_waterfall(today_run, browser):
    data, scores = today_run["data"], today_run["scores"]
    pg, errors = _open(browser, today_run["page"])
    pg.wait_for_selector("body[data-ready='1']")
    assert errors == [] and pg.evaluate("window.pwned") is None
    assert pg.evaluate("D.id.length") == len(scores)
    assert pg.locator("#viewport .row").count() > 5
    assert pg.inner_text("#count").startswith(f"{len(scores):,} of")
    assert "leadscore version 3" in pg.inner_text(".sub")
    assert pg.get_attribute("#training-link", "href").endswith("report.html")
    # filter by band: every row drawn is of that band, and the count is the band's
    band = scores["band"].value_counts().index[0]
    pg.select_option("#band", band)
    n_band = int((scores["band"] == band).sum())
    assert pg.inner_text("#count").startswith(f"{n_band:,} of")
    col = pg.evaluate("COLS.findIndex(c => c.key === 'band')")
    bands = pg.eval_on_selector_all("#viewport .row", f"rows => rows.map(r => r.children[{col}].textContent)")
    assert bands and set(bands) == {band}
    pg.select_option("#band", "")
    # search by a pass-through text (a hostile name, shown as text) and open its waterfall
    pg.fill("#q", "<!--<script>")
    assert pg.inner_text("#count").startswith("1 of")
    pg.locator("#viewport .row").first.click()
    lead = scores.set_index("name").loc["<!--<script>"]
    assert pg.inner_text("#detail-id") == lead["lead_id"]
    steps = [float(x) for x in pg.eval_on_selector_all("#waterfall .step", "els => els.map(e => e.dataset.points)")]
    assert float(pg.inner_text("#detail-points")) == pytest.approx(lead["points"], abs=0.05)
    assert sum(steps) == pytest.approx(lead["points"], abs=0.05 * (len(steps) + 1))
    assert pg.locator("#trend circle").count() == 2
    # newly-MQL filter and search by reason text
    pg.fill("#q", "")
    pg.select_option("#mql", "new")
    assert pg.inner_text("#count").startswith(f"{int(scores['newly_mql'].sum()):,} of")
    pg.select_option("#mql", "")
    word = data.sentences[data.reasons[0][0]]
    pg.fill("#q", word.lower())
    assert 1 <= int(pg.inner_text("#count").split(" of")[0].replace(",", "")) <= len(scores)
    assert pg.locator("#analysts summary").inner_text() == "For analysts"
    analysts = pg.text_content("#analysts")  # folded: in the page, not shown until opened
    assert "ROC AUC" in analysts and "Calibration error" in analysts and "Score PSI against the previous run" in analysts
    assert errors == []
    pg.close()


def test_today_reads_reasons_json_in_another_layout_lead_by_lead():
    scores = _scores(["a"], [50], [False])
    scores.loc[0, "reasons"] = json.dumps({"negative": [{"points": -1.5, "sentence": "Seniority: vp", "feature": "s"}],
                                           "positive": [{"sentence": "Pricing page: \"x\"", "points": 3.0}]}, indent=1)
    data = today.prepare(scores, [])
    assert [data.sentences[k] for k in data.reasons[0][::2]] == ['Pricing page: "x"', "Seniority: vp"]


def test_today_page_escapes_the_model_name_and_fills_each_slot_once():
    scores = _scores(["a"], [50], [False]).assign(model_name="<b>%DATA%</b>", model_version="%PASS%")
    page = today.render(today.prepare(scores, []), scores)
    assert "&lt;b&gt;%DATA%&lt;/b&gt; version %PASS%" in page
    assert page.count('<script id="lead-data"') == 1
