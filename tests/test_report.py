"""The marketers' report in a real headless browser: it loads cleanly, search finds a lead, and the
lead's reasons appear and add up to its score."""

import json
import os
import shutil

import pandas as pd
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def page(trained):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run must install it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        pg = browser.new_page()
        errors = []
        pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto((trained["tmp"] / "outputs" / "report.html").resolve().as_uri())
        pg.wait_for_load_state("load")
        yield pg, errors
        browser.close()


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
