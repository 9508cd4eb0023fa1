"""Drift monitoring: PSI by hand and by property, the per-feature table, calibration per period."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.drift import EPSILON, calibration_by_period, feature_drift, psi

RNG = np.random.default_rng(0)
NORMAL_A = RNG.normal(size=5000)
NORMAL_B = RNG.normal(size=5000)


def _psi_by_hand(e_shares, a_shares) -> float:
    e, a = np.maximum(e_shares, EPSILON), np.maximum(a_shares, EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


# --------------------------------------------------------------------------------------------- psi

def test_identical_samples_give_zero():
    assert psi(NORMAL_A, NORMAL_A) == 0.0
    assert psi(["a", "b", None, "b"], ["a", "b", None, "b"]) == 0.0
    assert psi([1.0, np.nan, 3.0], [1.0, np.nan, 3.0]) == 0.0


def test_two_samples_of_one_distribution_are_stable():
    assert psi(NORMAL_A, NORMAL_B) < 0.02
    assert psi(NORMAL_A, NORMAL_B + 0.05) < 0.1


@pytest.mark.parametrize("shift", [1.0, -1.0])
def test_a_shifted_normal_is_a_major_shift_in_either_direction(shift):
    value = psi(NORMAL_A, NORMAL_B + shift)
    assert value > 0.25
    # Symmetric-ish: shifting up or down by the same amount gives a similar index.
    assert value == pytest.approx(psi(NORMAL_A, NORMAL_B - shift), rel=0.25)


def test_categorical_psi_matches_the_formula_and_counts_an_unseen_category():
    expected = ["a"] * 50 + ["b"] * 50
    actual = ["a"] * 40 + ["b"] * 40 + ["new"] * 20
    assert psi(expected, actual) == pytest.approx(_psi_by_hand([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]))
    # The unseen value is what makes the difference: without its bin the index would be 0.
    assert psi(expected, ["a"] * 40 + ["b"] * 40) == 0.0
    assert psi(expected, actual) > 0.25


def test_each_unseen_category_gets_its_own_bin():
    expected = ["a"] * 100
    assert psi(expected, ["a"] * 80 + ["x"] * 10 + ["y"] * 10) == pytest.approx(
        _psi_by_hand([1.0, 0.0, 0.0], [0.8, 0.1, 0.1]))


def test_missing_values_are_their_own_bin():
    expected = [1.0, 2.0, 3.0, 4.0] * 25
    actual = [1.0, 2.0, np.nan, np.nan] * 25
    # Inner quartile edges 1, 2, 3: bins (-inf,1], (1,2], (2,3], (3,inf) and NaN.
    assert psi(expected, actual, bins=4) == pytest.approx(
        _psi_by_hand([0.25, 0.25, 0.25, 0.25, 0.0], [0.25, 0.25, 0.0, 0.0, 0.5]))
    # None, NaN and pd.NA are one and the same missing bin, in text columns too.
    assert psi(["a", None, "b"], pd.Series(["a", pd.NA, "b"], dtype="string")) == 0.0
    assert psi(["a", "b"] * 10, ["a", None] * 10) > 0.25
    assert psi([1.0, 2.0] * 10, [None] * 20) > 0.25  # a feature that went missing


def test_values_outside_the_reference_range_go_to_the_edge_bins():
    expected = np.arange(100.0)
    e_shares = [0.1] * 10 + [0.0]  # ten decile bins and the (empty) NaN bin
    far_above = _psi_by_hand(e_shares, [0.0] * 9 + [1.0, 0.0])
    assert psi(expected, np.full(50, 1e6)) == pytest.approx(far_above)
    assert psi(expected, np.full(50, 99.5)) == pytest.approx(far_above)
    assert psi(expected, np.full(50, -1e6)) == pytest.approx(_psi_by_hand(e_shares, [1.0] + [0.0] * 10))
    assert math.isfinite(psi(expected, [np.inf, -np.inf]))


def test_tied_values_are_one_bin_not_many_empty_ones():
    expected = np.r_[np.zeros(60), np.arange(1.0, 41.0)]  # 60 % zeros: six decile edges coincide
    # One bin for the zeros, then the 40 other values in four bins of 10: (0,10], (10,20], (20,30], (30,40].
    more_zeros = np.r_[np.zeros(80), np.arange(1.0, 21.0)]
    assert psi(expected, more_zeros) == pytest.approx(
        _psi_by_hand([0.6, 0.1, 0.1, 0.1, 0.1, 0.0], [0.8, 0.1, 0.1, 0.0, 0.0, 0.0]))
    assert psi(expected, expected[::-1]) == 0.0


def test_integers_and_floats_of_the_same_values_agree():
    assert psi([1, 2, 3, 3], [1.0, 2.0, 3.0, 3.0]) == 0.0
    assert psi(pd.Categorical(["x", "y"]), ["x", "y"]) == 0.0
    assert psi([True, False], [True, True]) == pytest.approx(_psi_by_hand([0.5, 0.5], [0.0, 1.0]))


def test_datetimes_are_binned_like_numbers():
    reference = pd.Series(pd.date_range("2025-01-01", periods=300, freq="D"))
    assert psi(reference, reference.sample(frac=1, random_state=0)) == 0.0
    assert psi(reference, reference + pd.Timedelta(days=365)) > 0.25


def test_psi_refuses_empty_samples():
    with pytest.raises(ValueError):
        psi([], [1.0])
    with pytest.raises(ValueError):
        psi([1.0], [])


numbers = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from([float("nan"), float("inf"), float("-inf")]))
categories = st.sampled_from(["a", "b", "c", "d", None])


@settings(max_examples=150, deadline=None)
@given(expected=st.lists(numbers, min_size=1, max_size=60), actual=st.lists(numbers, min_size=1, max_size=60),
       bins=st.integers(1, 12))
def test_numeric_psi_is_never_negative(expected, actual, bins):
    value = psi(expected, actual, bins=bins)
    assert math.isfinite(value) and value >= 0.0


@settings(max_examples=100, deadline=None)
@given(expected=st.lists(categories, min_size=1, max_size=60), actual=st.lists(categories, min_size=1, max_size=60))
def test_categorical_psi_is_never_negative(expected, actual):
    value = psi(expected, actual)
    assert math.isfinite(value) and value >= 0.0


@settings(max_examples=100, deadline=None)
@given(expected=st.lists(numbers, min_size=1, max_size=60), actual=st.lists(numbers, min_size=1, max_size=60),
       seed=st.integers(0, 2**32 - 1))
def test_numeric_psi_ignores_row_order(expected, actual, seed):
    rng = np.random.default_rng(seed)
    assert psi(rng.permutation(expected), rng.permutation(actual)) == psi(expected, actual)


@settings(max_examples=100, deadline=None)
@given(expected=st.lists(categories, min_size=1, max_size=60), actual=st.lists(categories, min_size=1, max_size=60),
       seed=st.integers(0, 2**32 - 1))
def test_categorical_psi_ignores_row_order(expected, actual, seed):
    rng = np.random.default_rng(seed)
    shuffle = lambda xs: [xs[i] for i in rng.permutation(len(xs))]  # noqa: E731
    assert psi(shuffle(expected), shuffle(actual)) == psi(expected, actual)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(numbers, min_size=1, max_size=60))
def test_a_sample_against_itself_is_zero(values):
    assert psi(values, values) == 0.0


# --------------------------------------------------------------------------------------------- feature_drift

def test_feature_drift_labels_and_sorts_columns():
    n = 4000
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"steady": rng.normal(size=n), "nudged": rng.normal(size=n),
                              "moved": rng.normal(size=n), "source": rng.choice(["ads", "seo"], size=n)})
    current = pd.DataFrame({"steady": rng.normal(size=n), "nudged": rng.normal(0.35, 1, size=n),
                            "moved": rng.normal(1.5, 1, size=n), "source": rng.choice(["ads", "seo", "tv"], size=n)})
    table = feature_drift(reference, current, ["steady", "nudged", "moved", "source"])
    assert list(table.columns) == ["column", "psi", "status"]
    assert table["psi"].is_monotonic_decreasing
    status = dict(zip(table["column"], table["status"]))
    assert status == {"moved": "alert", "source": "alert", "nudged": "warn", "steady": "stable"}
    assert table.loc[table["column"] == "steady", "psi"].item() == pytest.approx(
        psi(reference["steady"], current["steady"]))


def test_feature_drift_thresholds_are_inclusive_and_configurable():
    reference = pd.DataFrame({"x": ["a"] * 50 + ["b"] * 50})
    current = pd.DataFrame({"x": ["a"] * 60 + ["b"] * 40})
    value = psi(reference["x"], current["x"])
    assert feature_drift(reference, current, ["x"], warn=value, alert=1.0)["status"].item() == "warn"
    assert feature_drift(reference, current, ["x"], warn=0.0, alert=value)["status"].item() == "alert"
    assert feature_drift(reference, current, ["x"])["status"].item() == "stable"
    with pytest.raises(ValueError):
        feature_drift(reference, current, ["x"], warn=0.3, alert=0.2)
    with pytest.raises(KeyError):
        feature_drift(reference, current, ["y"])


def test_feature_drift_orders_ties_by_name():
    frame = pd.DataFrame({"b": [1.0, 2.0], "a": [1.0, 2.0]})
    assert feature_drift(frame, frame, ["b", "a"])["column"].tolist() == ["a", "b"]


# --------------------------------------------------------------------------------------------- calibration

def test_calibration_by_quarter_by_hand():
    as_of = pd.Series(pd.to_datetime(["2025-01-05", "2025-02-10", "2025-03-31", "2025-04-01", "2025-10-15", None]))
    y = [1, 0, 0, 1, 1, 0]
    p = [0.5, 0.2, 0.2, 0.4, 0.9, 0.5]
    table = calibration_by_period(as_of, y, p)
    assert list(table.columns) == ["period", "leads", "wins", "mean_predicted", "observed_win_rate", "gap"]
    # Q3 has no leads and is left out; the lead without a date is left out.
    assert table["period"].tolist() == [pd.Timestamp("2025-01-01"), pd.Timestamp("2025-04-01"), pd.Timestamp("2025-10-01")]
    assert table["leads"].tolist() == [3, 1, 1]
    assert table["wins"].tolist() == [1, 1, 1]
    assert table["mean_predicted"].tolist() == pytest.approx([0.3, 0.4, 0.9])
    assert table["observed_win_rate"].tolist() == pytest.approx([1 / 3, 1.0, 1.0])
    assert table["gap"].tolist() == pytest.approx([0.3 - 1 / 3, -0.6, -0.1])  # predicted − observed


def test_calibration_by_month_sees_a_drifting_win_rate():
    rng = np.random.default_rng(2)
    as_of = pd.Series(pd.date_range("2025-01-01", "2025-06-30", periods=6000))
    p = np.full(len(as_of), 0.3)
    true_rate = np.where(as_of.dt.month <= 3, 0.3, 0.15)  # the market cooled in Q2, the model did not notice
    y = (rng.uniform(size=len(as_of)) < true_rate).astype(int)
    table = calibration_by_period(as_of, y, p, freq="MS")
    assert len(table) == 6 and table["leads"].sum() == len(as_of)
    assert (table["gap"].iloc[:3].abs() < 0.05).all()
    assert (table["gap"].iloc[3:] > 0.1).all()


def test_calibration_by_period_checks_its_inputs():
    as_of = pd.Series(pd.to_datetime(["2025-01-05", "2025-02-10"]))
    with pytest.raises(ValueError, match="same length"):
        calibration_by_period(as_of, [1], [0.5, 0.5])
    with pytest.raises(ValueError, match="0/1"):
        calibration_by_period(as_of, [1, 2], [0.5, 0.5])
    with pytest.raises(ValueError, match="probabilities"):
        calibration_by_period(as_of, [1, 0], [0.5, 1.5])
