"""Time splits, calibration and the trained model."""

from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss

from leadscore.config import SplitParams
from leadscore.evaluate import decile_table, expected_calibration_error, top_share
from leadscore.model import MarginCalibrator, choose_calibration, time_split


def _snapshots(rng, n_leads=300, dates=60):
    """Weekly snapshot rows of leads of random lifetimes, some labels censored (NaN)."""
    start = pd.Timestamp("2024-01-01")
    rows = []
    for i in range(n_leads):
        first = rng.integers(0, dates)
        life = rng.integers(1, 30)
        for k in range(first, min(first + life, dates)):
            rows.append((f"L{i}", start + pd.Timedelta(days=7 * int(k)), float(rng.integers(0, 2))))
    df = pd.DataFrame(rows, columns=["lead_id", "as_of", "label"])
    df.loc[df["as_of"] > start + pd.Timedelta(days=7 * (dates - 8)), "label"] = np.nan
    return df


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), test_days=st.integers(30, 120), cal_days=st.integers(30, 120),
       holdout=st.floats(0.2, 0.8))
def test_splits_are_by_time_and_by_lead_and_use_labelled_rows_only(seed, test_days, cal_days, holdout):
    df = _snapshots(np.random.default_rng(seed))
    params = SplitParams(test_days=test_days, calibration_days=cal_days, validation_share=0.2, holdout_share=holdout)
    try:
        s = time_split(df, params, seed)
    except ValueError:
        return  # too little data in a period: refused, with a message
    assert max(s.train["as_of"].max(), s.valid["as_of"].max()) < s.calibration["as_of"].min()
    assert s.calibration["as_of"].max() < s.test["as_of"].min()
    assert s.test["as_of"].max() - s.test["as_of"].min() < pd.Timedelta(days=test_days)
    training_leads = set(s.train["lead_id"]) | set(s.valid["lead_id"])
    assert not training_leads & (set(s.calibration["lead_id"]) | set(s.test["lead_id"]))
    assert not set(s.train["lead_id"]) & set(s.valid["lead_id"])
    for part in (s.train, s.valid, s.calibration, s.test):
        assert part["label"].notna().all()
    # each lead's training rows weigh 1 in total
    assert np.allclose(s.train.groupby("lead_id")["weight"].sum(), 1.0)
    # the test period is every labelled row of the holdout leads in it: nothing selected by outcome
    newest = df[df["label"].notna() & (df["as_of"] >= s.test["as_of"].min())]
    held = newest[newest["lead_id"].isin(s.test["lead_id"]) | ~newest["lead_id"].isin(training_leads | set(s.calibration["lead_id"]))]
    assert len(s.test) <= len(newest)
    assert set(map(tuple, s.test[["lead_id", "as_of"]].to_numpy())) <= set(map(tuple, held[["lead_id", "as_of"]].to_numpy()))


def test_flipping_labels_changes_no_row_of_any_part():
    df = _snapshots(np.random.default_rng(3))
    flipped = df.assign(label=1 - df["label"])
    a, b = time_split(df, SplitParams(), 0), time_split(flipped, SplitParams(), 0)
    for x, y in ((a.train, b.train), (a.valid, b.valid), (a.calibration, b.calibration), (a.test, b.test)):
        assert x[["lead_id", "as_of"]].equals(y[["lead_id", "as_of"]])


def test_split_refuses_too_little_history_with_a_reason():
    df = pd.DataFrame({"lead_id": ["a", "b"], "as_of": pd.to_datetime(["2025-01-01", "2025-01-02"]), "label": [0, 1]})
    with pytest.raises(ValueError, match="split.test_days"):
        time_split(df, SplitParams())
    with pytest.raises(ValueError, match="label_horizon_days"):
        time_split(df.assign(label=np.nan), SplitParams())


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
    assert expected_calibration_error(y, p) == pytest.approx((2 * 0.05 + 0.05 + 0.45) / 4)  # one row a bin


def test_ece_bins_hold_equal_numbers_of_leads():
    # all predictions under 10%: equal-width bins would put every lead in one bin and see 0.0
    p = np.array([0.02] * 5 + [0.08] * 5)
    y = np.array([0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
    # bin of the five 0.02s: gap |0.10 - 0|; bin of the five 0.08s: |0.40 - 1|
    assert expected_calibration_error(y, p, bins=2) == pytest.approx((0.10 + 0.60) / 10)
    assert expected_calibration_error(y[::-1], p[::-1], bins=2) == pytest.approx((0.10 + 0.60) / 10)


def test_lift_capture_and_deciles():
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    score = np.arange(10)[::-1]  # first lead scores highest
    lift, captured = top_share(y, score, 0.1)
    assert (lift, captured) == (pytest.approx(5.0), pytest.approx(0.5))
    table = decile_table(y, score)
    assert list(table["wins"]) == [1, 0, 0, 0, 1, 0, 0, 0, 0, 0]


def test_usable_cpus_follow_the_container_quota_not_the_host(monkeypatch, tmp_path):
    """A CI container of 2 CPUs on a 64-core host: LightGBM must not start 64 OpenMP threads."""
    import os
    from pathlib import Path as P

    from leadscore import config

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    files = {"/sys/fs/cgroup/cpu.max": "200000 100000\n"}
    real = P.read_text

    def fake(self, *a, **k):
        return files[str(self)] if str(self) in files else real(self, *a, **k)

    monkeypatch.setattr(P, "read_text", fake)
    assert config.usable_cpus() == 2
    files["/sys/fs/cgroup/cpu.max"] = "150000 100000\n"  # 1.5 CPUs: 2 threads
    assert config.usable_cpus() == 2
    files["/sys/fs/cgroup/cpu.max"] = "max 100000\n"  # no quota: the affinity
    assert config.usable_cpus() == 64
    for omp, want in (("8", 8), ("1", 1), ("4,2", 4), ("0", 64), ("", 64), ("many", 64)):  # OpenMP's own setting caps it
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
        assert config.usable_cpus() == want, omp
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert config.usable_cpus() == 1


def _cv_folds(n: int, seed: int, params: dict, n_folds: int = 3):
    """Lead-grouped (fit, held) LightGBM Datasets of a random problem with an init score, as small-data mode has."""
    import lightgbm as lgb
    from sklearn.model_selection import GroupKFold

    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.integers(0, 4, n)})
    y = (rng.random(n) < 1 / (1 + np.exp(-(X["a"] - 1.5 + 0.4 * X["c"] * rng.normal())))).astype(int)
    init, lead = rng.normal(-1.5, 0.3, n), rng.integers(0, max(n_folds, n // 3), n)
    folds = []
    for fit, held in GroupKFold(n_splits=n_folds).split(X, y, lead):
        d_fit = lgb.Dataset(X.iloc[fit], y[fit], init_score=init[fit], categorical_feature=["c"], free_raw_data=False,
                            params=params)
        folds.append((d_fit, lgb.Dataset(X.iloc[held], y[held], init_score=init[held], categorical_feature=["c"],
                                          reference=d_fit, params=params)))
    return folds


@settings(max_examples=8, deadline=None)
@given(n=st.integers(60, 400), seed=st.integers(0, 10**6), max_rounds=st.integers(1, 120),
       patience=st.integers(1, 40), learning_rate=st.sampled_from([0.03, 0.3]))
def test_cv_rounds_is_the_argmin_of_the_full_mean_curve_when_it_stops_early(n, seed, max_rounds, patience,
                                                                              learning_rate):
    """``cv_rounds`` (folds grown together, stopped after ``patience`` rounds without a better mean) picks
    the round of the lowest mean held-out log loss of the rounds it grew, ties to the fewer; and with
    ``patience >= max_rounds`` the argmin of the whole curves (each fold trained alone by ``lgb.train``)."""
    import lightgbm as lgb

    from leadscore.model import cv_rounds

    params = dict(objective="binary", metric="binary_logloss", verbose=-1, seed=seed, deterministic=True,
                  force_row_wise=True, num_threads=1, num_leaves=4, learning_rate=learning_rate, min_child_samples=5)
    curves = []
    for d_fit, d_held in _cv_folds(n, seed, params):
        record: dict = {}
        lgb.train(params, d_fit, max_rounds, valid_sets=[d_held], valid_names=["held"],
                  callbacks=[lgb.record_evaluation(record)])
        curves.append(record["held"]["binary_logloss"])
    mean = np.mean(curves, axis=0)
    assert cv_rounds(params, _cv_folds(n, seed, params), max_rounds, patience=max_rounds) == int(np.argmin(mean)) + 1
    folds, update, updates = _cv_folds(n, seed, params), lgb.Booster.update, []

    def counted(booster, *a, **kw):
        updates.append(1)
        return update(booster, *a, **kw)

    with mock.patch.object(lgb.Booster, "update", counted):
        got = cv_rounds(params, folds, max_rounds, patience)
    # grown until `patience` rounds passed without a better mean (or max_rounds); the best of those rounds
    grown = next((r for r in range(1, max_rounds + 1) if r - int(np.argmin(mean[:r])) - 1 >= patience), max_rounds)
    assert len(updates) == grown * len(folds)
    assert got == int(np.argmin(mean[:grown])) + 1
