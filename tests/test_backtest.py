"""The replay of the nightly job: new MQLs per week, calibration by lead age, and that the replay's
rows are what `leadscore score` computes at the same moment."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.backtest import age_bucket, calibration_by_age, ece_noise, new_mqls

D = lambda k: pd.Timestamp("2025-01-06") + pd.Timedelta(days=7 * k)  # noqa: E731


def test_new_mqls_by_hand():
    rows = pd.DataFrame([
        ("a", D(0), 80, 1), ("a", D(1), 85, 1),  # over 70 at the warm-up date: routed before, not new
        ("b", D(0), 40, 0), ("b", D(1), 75, 0), ("b", D(2), 90, 0),  # crosses 70 in week 1, 80 in week 2
        ("c", D(1), 72, 1), ("c", D(2), 60, 1), ("c", D(3), 75, 1),  # new at D1; falls back, not new again
    ], columns=["lead_id", "as_of", "points", "label"])
    t = new_mqls(rows["lead_id"], rows["as_of"], rows["points"], rows["label"], [70, 80], population_scale=2.0)
    t = t.set_index("threshold")
    assert t.loc[70, "new_mqls"] == 2 and t.loc[70, "wins"] == 1  # b (lost) and c (won)
    assert t.loc[80, "new_mqls"] == 1 and t.loc[80, "wins"] == 0  # a was at 80 at the warm-up; b at D2
    assert t.loc[70, "weeks"] == 3 and t.loc[70, "mqls_per_week"] == pytest.approx(2 * 2 / 3)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 60))
def test_new_mqls_equals_a_lead_by_lead_count(seed, n):
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({"lead_id": rng.integers(0, 12, n).astype(str), "as_of": [D(int(k)) for k in rng.integers(0, 6, n)],
                         "points": np.round(rng.uniform(0, 100, n), 1), "label": rng.integers(0, 2, n)})
    rows = rows.drop_duplicates(["lead_id", "as_of"])
    thresholds = np.arange(0, 101, 5)
    got = new_mqls(rows["lead_id"], rows["as_of"], rows["points"], rows["label"], thresholds).set_index("threshold")
    first_date = rows["as_of"].min()
    for t in thresholds:
        new = wins = 0
        for _, g in rows.sort_values("as_of").groupby("lead_id"):
            over = g[g["points"] >= t]
            if len(over) and over["as_of"].iloc[0] != first_date:
                new += 1
                wins += over["label"].iloc[0]
        assert got.loc[t, "new_mqls"] == new and got.loc[t, "wins"] == wins


def test_age_buckets_and_calibration_by_age():
    assert list(age_bucket([0, 7.9, 8, 30.5, 31, 90.99, 91, 400])) == [
        "0-7 days", "0-7 days", "8-30 days", "8-30 days", "31-90 days", "31-90 days", "91 days or more", "91 days or more"]
    table = calibration_by_age([1, 2, 40, 41], [1, 0, 0, 0], {"model": [0.5, 0.3, 0.1, 0.2]})
    assert list(table["age_bucket"]) == ["0-7 days", "31-90 days"]
    assert table["observed"].tolist() == [0.5, 0.0]
    assert table["model_gap"].tolist() == pytest.approx([-0.1, 0.15])


def test_ece_noise_of_a_calibrated_model_shrinks_with_rows():
    p = np.random.default_rng(0).uniform(0.0, 0.4, 20_000)
    small, large = ece_noise(p[:500], seed=1), ece_noise(p, seed=1)
    assert large["mean"] < small["mean"] and large["mean"] < large["p95"] < 0.02


def test_the_replay_is_what_leadscore_score_computes_at_the_same_moment(trained, tmp_path):
    """A replay row (lead, as_of) of the test period has the features, probability, points and MQL flag
    that the batch job gives the same lead when run at that as_of on the raw export."""
    import joblib

    from leadscore.batch import score_leads

    tmp = trained["tmp"]
    replay = trained["result"]["replay"].rows
    as_of = replay["as_of"].max()
    rows = replay[replay["as_of"] == as_of].set_index("lead_id")
    scorer = joblib.load(tmp / "models" / "scorer.joblib")
    run = score_leads(scorer, tmp / "raw" / "leads.parquet", tmp / "raw" / "events.parquet", tmp_path / "s.parquet",
                      as_of=as_of, priority_path=tmp / "raw" / "priority_accounts.csv", explain="none")
    job = pd.read_parquet(run.output).set_index("lead_id")
    assert len(rows) > 20 and set(rows.index) <= set(job.index)  # every open holdout lead was scored by the job
    job = job.loc[rows.index]
    np.testing.assert_allclose(job["probability"], rows["model_probability"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(job["points"], rows["model_points"])
    assert (job["is_mql"] == (rows["model_points"] >= scorer.mql_threshold)).all()
    # and the job scores exactly the leads open then (the replay sees the holdout share of them)
    leads = pd.read_parquet(tmp / "raw" / "leads.parquet").set_index("lead_id")
    open_then = (leads["created_at"] < as_of) & ~(leads["outcome"].isin(["won", "lost"]) & (leads["outcome_at"] <= as_of))
    assert set(pd.read_parquet(run.output)["lead_id"]) == set(leads.index[open_then])


def test_train_reports_calibration_by_age_and_replayed_mqls(trained):
    m = trained["result"]["metrics"]
    assert set(m["calibration_by_age"]) == {"0-7 days", "8-30 days", "31-90 days", "91 days or more"} or len(m["calibration_by_age"]) >= 3
    for bucket in m["calibration_by_age"].values():
        assert bucket["rows"] > 0 and 0 <= bucket["observed"] <= 1
    assert m["mql"]["model_new_mqls_per_week"] >= 0
    assert (trained["tmp"] / "reports" / "calibration_by_age.csv").exists()
    assert (trained["tmp"] / "reports" / "figures" / "calibration_by_age.png").stat().st_size > 5000
    table = pd.read_csv(trained["tmp"] / "reports" / "threshold_table.csv")
    assert {"threshold", "new_mqls", "mqls_per_week", "observed_win_rate"} <= set(table.columns)
