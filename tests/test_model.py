"""Time splits, calibration and the trained model."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss

from leadscore.config import SplitParams
from leadscore.evaluate import decile_table, expected_calibration_error, top_share
from leadscore.model import MarginCalibrator, choose_calibration, time_split


@settings(max_examples=30, deadline=None)
@given(days=st.lists(st.integers(0, 900), min_size=200, max_size=400), seed=st.integers(0, 1000),
       test_days=st.integers(30, 120), cal_days=st.integers(30, 120))
def test_splits_never_put_a_later_snapshot_before_an_earlier_one(days, seed, test_days, cal_days):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"lead_id": [f"L{i}" for i in range(len(days))],
                       "as_of": pd.Timestamp("2024-01-01") + pd.to_timedelta(days, unit="D"),
                       "label": rng.integers(0, 2, len(days))})
    try:
        s = time_split(df, SplitParams(test_days=test_days, calibration_days=cal_days, validation_share=0.2))
    except ValueError:
        return  # too little data in a period: refused, with a message
    assert s.train["as_of"].max() <= s.valid["as_of"].min()
    assert s.valid["as_of"].max() < s.calibration["as_of"].min()
    assert s.calibration["as_of"].max() < s.test["as_of"].min()
    assert len(s.train) + len(s.valid) + len(s.calibration) + len(s.test) == len(df)
    assert s.test["as_of"].max() - s.test["as_of"].min() < pd.Timedelta(days=test_days)


def test_split_refuses_too_little_history_with_a_reason():
    df = pd.DataFrame({"lead_id": ["a", "b"], "as_of": pd.to_datetime(["2025-01-01", "2025-01-02"]), "label": [0, 1]})
    with pytest.raises(ValueError, match="split.test_days"):
        time_split(df, SplitParams())


def _miscalibrated(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    true_margin = rng.normal(-2, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-true_margin))).astype(int)
    return 3 * true_margin + 2, y  # overconfident and shifted


def test_calibration_fixes_a_miscalibrated_margin():
    margin, y = _miscalibrated()
    cal, report = choose_calibration(margin[:3000], y[:3000], "auto")
    raw = 1 / (1 + np.exp(-margin[3000:]))
    assert log_loss(y[3000:], cal.predict(margin[3000:])) < 0.8 * log_loss(y[3000:], raw)
    assert report["method"] in ("isotonic", "sigmoid")
    assert report[f"log_loss_cv_{report['method']}"] <= report["log_loss_uncalibrated"]


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibration_keeps_log_loss_of_a_calibrated_margin(method):
    rng = np.random.default_rng(1)
    margin = rng.normal(-2, 1.5, 8000)
    y = (rng.random(8000) < 1 / (1 + np.exp(-margin))).astype(int)
    cal = MarginCalibrator(method).fit(margin[:4000], y[:4000])
    held = log_loss(y[4000:], cal.predict(margin[4000:]))
    assert held <= log_loss(y[4000:], 1 / (1 + np.exp(-margin[4000:]))) + 0.005


def test_sigmoid_calibration_is_a_straight_line_in_log_odds():
    margin, y = _miscalibrated()
    cal = MarginCalibrator("sigmoid").fit(margin, y)
    m = np.linspace(-6, 4, 11)
    slopes = np.diff(cal.calibrated_margin(m)) / np.diff(m)
    assert np.allclose(slopes, slopes[0], rtol=1e-4) and 0 < slopes[0] < 1


def test_expected_calibration_error_by_hand():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.05, 0.05, 0.95, 0.55])  # bins 0, 0, 9, 5
    assert expected_calibration_error(y, p) == pytest.approx((2 * 0.05 + 0.05 + 0.45) / 4)


def test_lift_capture_and_deciles():
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    score = np.arange(10)[::-1]  # first lead scores highest
    lift, captured = top_share(y, score, 0.1)
    assert (lift, captured) == (pytest.approx(5.0), pytest.approx(0.5))
    table = decile_table(y, score)
    assert list(table["wins"]) == [1, 0, 0, 0, 1, 0, 0, 0, 0, 0]
