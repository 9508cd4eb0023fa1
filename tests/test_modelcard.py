"""Model card: every section from a full dict, gaps as "not available", and HTML that escapes its text."""

import re

import pandas as pd
import pytest

from leadscore.modelcard import NOT_AVAILABLE, SECTIONS, render_model_card, to_html
from leadscore.registry import compare

CHAMP = {"roc_auc": 0.9230, "log_loss": 0.1907, "ece": 0.012, "mql_win_rate": 0.477, "mql_per_week": 19.7,
         "baseline_roc_auc": 0.85, "holdout": "1190:ab12"}


def _full() -> dict:
    drift = pd.DataFrame({"column": [f"f{i:02d}" for i in range(12)], "psi": [0.01 * i for i in range(12)],
                          "status": ["stable"] * 10 + ["warn", "alert"]})
    return {
        "model": {"name": "leadscore", "version": "7", "description": "calibrated LightGBM", "run_id": "abc123"},
        "data_window": {"train": {"from": "2024-01-01", "to": "2025-03-31", "rows": 6400},
                        "calibration": {"from": "2025-04-01", "to": "2025-06-30", "rows": 1150},
                        "test": {"from": "2025-07-01", "to": "2025-09-30", "rows": 1190}},
        "features": [{"name": "seniority", "group": "fit"}, {"name": "x_city", "group": "fit"},
                     {"name": "x_totalvisits", "group": "behavior"}, {"name": "stakeholders_90d", "group": "account"}],
        "metrics": {"model": {"roc_auc": 0.9012, "log_loss": 0.3811, "ece": 0.0143},
                    "baseline": {"roc_auc": 0.8123, "log_loss": 0.4502, "ece": 0.0512}},
        "calibration": {"method": "sigmoid", "ece": 0.0143, "log_loss": 0.3811},
        "leakage": pd.DataFrame([
            {"column": "x_tags", "single_column_auc": 0.9234, "reason": "single-column AUC 0.92 ≥ 0.85", "excluded": True},
            {"column": "x_city", "single_column_auc": 0.6012, "reason": "no rule triggered", "excluded": False}]),
        "drift": {"features": drift, "score_psi": 0.0421},
        "threshold": {"policy": "capacity", "points": 65.0, "reason": "at most 27 MQLs a week", "mql_per_week": 19.7,
                      "win_rate": 0.477},
        "decision": compare(CHAMP, {**CHAMP, "log_loss": 0.2051}),
        "training": {"mode": "standard", "trees": 420, "time_cv": "ROC AUC 0.842 ± 0.011 over 3 rolling-origin time folds",
                     "validation": {"model_auc": 0.83, "baseline_auc": 0.79}, "warnings": ["a test warning"]},
    }


def _section(md: str, title: str) -> str:
    """The text of one ``## title`` section."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", md, flags=re.S | re.M)
    assert m, f"section {title!r} missing"
    return m.group(1)


def test_full_card_has_every_section_with_its_content():
    md = render_model_card(_full())
    assert md.startswith("# Model card: leadscore version 7")
    assert [h[3:] for h in re.findall(r"^## .*$", md, flags=re.M)] == list(SECTIONS)
    assert NOT_AVAILABLE not in md
    assert "| test | 2025-07-01 | 2025-09-30 | 1,190 |" in _section(md, "Data window")
    training = _section(md, "Training")
    assert "0.842 ± 0.011 over 3 rolling-origin" in training and "- **warning**: a test warning" in training
    assert "model ROC AUC 0.83" in training
    features = _section(md, "Features")
    assert "4 features in 3 groups" in features and "**fit** (2): `seniority`, `x_city`" in features
    assert "| roc_auc | 0.9012 | 0.8123 |" in _section(md, "Metrics")
    assert "sigmoid" in _section(md, "Calibration") and "0.0143" in _section(md, "Calibration")
    leakage = _section(md, "Leakage guard")
    assert "2 columns examined, 1 excluded" in leakage and "| x_tags | 0.9234 | yes |" in leakage
    assert "| x_city | 0.6012 | no | no rule triggered |" in leakage


def test_drift_shows_the_largest_shifts_first_and_only_the_top_rows():
    drift = _section(render_model_card(_full()), "Drift")
    assert "score PSI**: 0.0421" in drift and "top 10 of 12" in drift
    rows = re.findall(r"^\| (f\d\d) \|", drift, flags=re.M)
    assert rows == [f"f{i:02d}" for i in range(11, 1, -1)]  # f11 (0.11, alert) first, f00/f01 cut
    assert "| f11 | 0.1100 | alert |" in drift


def test_threshold_and_decision_sections_give_the_reasons():
    md = render_model_card(_full())
    threshold = _section(md, "MQL threshold")
    assert "capacity" in threshold and "65.0 points" in threshold and "47.7%" in threshold
    assert "at most 27 MQLs a week" in threshold
    decision = _section(md, "Champion / challenger")
    assert "keep the champion" in decision
    assert "log loss 0.2051 vs champion 0.1907: +0.0144 > allowed +0.005" in decision
    assert "| log_loss | 0.1907 | 0.2051 | 0.0144 |" in decision


def test_minimal_dicts_still_render():
    for info in ({}, None, {"model": {"name": "leadscore"}}):
        md = render_model_card(info)
        assert md.count(NOT_AVAILABLE) == len(SECTIONS)
        assert all(f"## {s}" in md for s in SECTIONS)
    assert "version not available" in render_model_card({"model": {"name": "leadscore"}})


def test_a_malformed_section_is_not_available_and_the_rest_renders():
    info = _full()
    info["leakage"] = "oops"
    info["metrics"] = {"model": "not a dict"}
    md = render_model_card(info)
    assert _section(md, "Leakage guard").strip() == NOT_AVAILABLE
    assert _section(md, "Metrics").strip() == NOT_AVAILABLE
    assert "| x_totalvisits" not in md and "`x_totalvisits`" in md  # features still there


def test_decision_as_dict_and_time_split_boundaries():
    md = render_model_card({
        "decision": {"promote": True, "reasons": ["no champion yet"]},
        "data_window": {"train_from": "2024-01-01", "valid_from": "2025-02-01", "calibration_from": "2025-04-01",
                        "test_from": "2025-07-01", "test_to": "2025-10-01", "n_train": 5000, "n_valid": 900,
                        "n_calibration": 1100, "n_test": 1200}})
    assert "promote the challenger" in md and "- no champion yet" in md
    window = _section(md, "Data window")
    assert "| train | 2024-01-01 | 2025-02-01 | 5,000 |" in window
    assert "| calibration | 2025-04-01 | 2025-07-01 | 1,100 |" in window


def test_html_escapes_text_and_is_self_contained():
    info = _full()
    info["model"]["name"] = "<script>alert('x')</script>"
    info["leakage"].loc[0, "reason"] = "<img src=x onerror=alert(1)> | pipe"
    page = to_html(render_model_card(info))
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt; | pipe" in page  # the escaped pipe stays inside its cell
    assert not re.search(r"https?://|<link|<script|src=\"", page)
    assert page.startswith("<!DOCTYPE html>") and page.count("<h2>") == len(SECTIONS)


def test_html_renders_tables_lists_and_emphasis():
    page = to_html(render_model_card(_full()))
    leakage = page.split("<h2>Leakage guard</h2>")[1].split("<h2>")[0]
    assert leakage.count("<tr>") == 3 and "<th>single-column AUC</th>" in leakage
    assert all(len(re.findall(r"<t[dh]>", row)) == 4 for row in re.findall(r"<tr>.*?</tr>", leakage))
    assert "<strong>Decision: keep the champion.</strong>" in page
    assert "<code>x_totalvisits</code>" in page
    assert "<em>not available</em>" in to_html(render_model_card({}))


@pytest.mark.parametrize("text", ["plain", "a_b_c and _x_", "**bold** `code` | bar"])
def test_html_never_loses_text(text):
    page = to_html(f"# T\n\n{text}\n")
    visible = re.sub(r"<[^>]+>", "", page.split("<body>")[1])
    assert re.sub(r"[*_`]", "", text) in re.sub(r"[*_`]", "", visible)
