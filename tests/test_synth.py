import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import log_expit

from leadscore import synth
from leadscore.pipeline import run_synth
from tests.helpers import small_params


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_gives_same_bytes_and_another_seed_differs(tmp_path):
    params = small_params(tmp_path, n_leads=300)
    run_synth(params, tmp_path / "a", tmp_path / "ta")
    run_synth(params, tmp_path / "b", tmp_path / "tb")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "ta") == _digest(tmp_path / "tb")
    run_synth(params.model_copy(update={"seed": params.seed + 1}), tmp_path / "c", tmp_path / "tc")
    assert _digest(tmp_path / "a")["events.parquet"] != _digest(tmp_path / "c")["events.parquet"]


def test_sizes_follow_params(pipeline_data):
    tmp, params = pipeline_data["tmp"], pipeline_data["params"]
    leads = pd.read_parquet(tmp / "raw" / "leads.parquet")
    events = pd.read_parquet(tmp / "raw" / "events.parquet")
    assert len(leads) == params.synth.n_leads
    assert leads["lead_id"].is_unique
    assert 0.6 * params.synth.events_per_lead < len(events) / len(leads) < 1.4 * params.synth.events_per_lead


def test_truth_is_kept_apart_from_the_leads(pipeline_data):
    tmp = pipeline_data["tmp"]
    leads = pd.read_parquet(tmp / "raw" / "leads.parquet")
    truth = pd.read_parquet(tmp / "truth" / "truth.parquet")
    assert not any("prob" in c or "truth" in c for c in leads.columns)
    assert set(truth["lead_id"]) == set(leads["lead_id"])
    assert truth["true_probability"].between(0, 1).all()


def test_outcomes_come_after_creation_and_follow_the_true_probability(pipeline_data):
    tmp = pipeline_data["tmp"]
    leads = pd.read_parquet(tmp / "raw" / "leads.parquet").merge(pd.read_parquet(tmp / "truth" / "truth.parquet"))
    decided = leads[leads["outcome"].isin(["won", "lost"])]
    assert (decided["outcome_at"] > decided["created_at"]).all()
    assert leads.loc[leads["outcome"] == "open", "outcome_at"].isna().all()
    won_p = decided.loc[decided["outcome"] == "won", "true_probability"].mean()
    lost_p = decided.loc[decided["outcome"] == "lost", "true_probability"].mean()
    assert won_p > 2 * lost_p
    assert 0.03 < (decided["outcome"] == "won").mean() < 0.35


def test_some_events_happen_after_the_outcome_so_leaks_are_caught(pipeline_data):
    tmp = pipeline_data["tmp"]
    leads = pd.read_parquet(tmp / "raw" / "leads.parquet")
    events = pd.read_parquet(tmp / "raw" / "events.parquet").merge(leads[["lead_id", "outcome", "outcome_at"]])
    after = events[events["timestamp"] >= events["outcome_at"]]
    assert (after["event_type"] == "onboarding_session").any()
    assert set(after.loc[after["event_type"] == "onboarding_session", "outcome"]) == {"won"}


def test_the_funnel_has_realistic_variety(pipeline_data):
    tmp = pipeline_data["tmp"]
    leads = pd.read_parquet(tmp / "raw" / "leads.parquet")
    events = pd.read_parquet(tmp / "raw" / "events.parquet")
    assert events["event_type"].nunique() >= 14
    attend = events.loc[events["event_type"] == "webinar_attend", "percent_watched"]
    assert attend.notna().all() and attend.between(0, 100).all()
    assert leads["account_id"].value_counts().max() >= 3  # several stakeholders at one account
    assert leads["title"].isna().any() and leads["employees"].isna().any()  # CRM gaps
    assert leads["email_domain"].isin(["gmail.com", "yahoo.com", "hotmail.com", "outlook.com"]).any()


# --- the messy funnel and its exact truth at any snapshot ---

H = 180.0


@pytest.fixture(scope="module")
def funnel(tmp_path_factory):
    """A few thousand leads at the default behaviour volume, and their weekly snapshots."""
    tmp = tmp_path_factory.mktemp("funnel")
    params = small_params(tmp, n_leads=3000, events_per_lead=70.0, chunk_leads=1000)
    paths = run_synth(params, tmp / "raw", tmp / "truth")
    leads = pd.read_parquet(paths.leads)
    return {"tmp": tmp, "params": params, "paths": paths, "leads": leads,
            "truth": pd.read_parquet(paths.truth), "model": json.loads((tmp / "truth" / synth.MODEL_FILE).read_text())}


def _weekly_open_snapshots(leads: pd.DataFrame, export: pd.Timestamp, horizon_days: float) -> pd.DataFrame:
    """(lead_id, as_of) for every lead open at each weekly as_of whose horizon ends before the export."""
    created, outcome_at = leads["created_at"].to_numpy(), leads["outcome_at"].to_numpy()
    grid = pd.date_range(leads["created_at"].min().normalize() + pd.Timedelta(days=7),
                         export - pd.Timedelta(days=horizon_days), freq="7D")
    parts = []
    for as_of in grid:
        a = np.datetime64(as_of)
        m = (created < a) & ~(outcome_at <= a)  # NaT compares False: open leads stay
        parts.append(pd.DataFrame({"row": np.flatnonzero(m), "as_of": as_of}))
    snaps = pd.concat(parts, ignore_index=True)
    lead = leads.iloc[snaps["row"]].reset_index(drop=True)
    snaps["lead_id"] = lead["lead_id"]
    snaps["age_days"] = (snaps["as_of"] - lead["created_at"]).dt.total_seconds() / 86400
    snaps["y"] = ((lead["outcome"] == "won")
                  & (lead["outcome_at"] <= snaps["as_of"] + pd.Timedelta(days=horizon_days))).to_numpy()
    return snaps


def test_truth_is_calibrated_at_weekly_snapshots_overall_and_by_lead_age(funnel):
    """Mean truth = observed rate of 'won within H after as_of' on open leads, overall and per age bucket.

    Rows of one lead are correlated, so the tolerance is 4 lead-clustered standard errors of the mean
    residual (binomial noise summed per lead): an exact truth fails this about once in 10^4 runs."""
    export = pd.Timestamp(funnel["params"].synth.start) + pd.DateOffset(months=funnel["params"].synth.months)
    snaps = _weekly_open_snapshots(funnel["leads"], export, H)
    snaps["p"] = synth.true_probability(funnel["tmp"] / "truth", snaps[["lead_id", "as_of"]], H)
    assert snaps["p"].notna().all() and snaps["p"].between(0, 1).all()
    some = snaps.sample(2000, random_state=1)  # leads taken in blocks (bounded memory): the same numbers
    np.testing.assert_allclose(synth.true_probability(funnel["tmp"] / "truth", some[["lead_id", "as_of"]], H,
                                                      block_rows=333, lead_block=700), some["p"], rtol=1e-9, atol=1e-12)
    assert len(snaps) > 20_000
    snaps["bucket"] = pd.cut(snaps["age_days"], [0, 7, 30, 90, np.inf], labels=["0-7", "8-30", "31-90", "91+"])
    groups = [("all", snaps)] + [(str(b), g) for b, g in snaps.groupby("bucket", observed=True)]
    assert len(groups) == 5
    for name, g in groups:
        resid = (g["y"] - g["p"]).groupby(g["lead_id"]).sum()
        se = np.sqrt((resid**2).sum()) / len(g)
        diff = g["y"].mean() - g["p"].mean()
        assert abs(diff) < 4 * se + 1e-4, (name, len(g), g["p"].mean(), g["y"].mean(), se)
        assert se < 0.2 * max(g["y"].mean(), 0.01) + 0.005  # the check has power
    # The truth ranks: young leads with good fit and engagement are far above the rest.
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(snaps["y"], snaps["p"]) > 0.75


def _stage_and_mark(events: pd.DataFrame):
    stage_of = {name: s for s, st in enumerate(synth.STAGES) for name in synth.STAGE_TYPES[st][0]}
    stage = events["event_type"].map(stage_of).to_numpy()
    attend = (events["event_type"] == "webinar_attend").to_numpy()
    download = (events["event_type"] == "content_download").to_numpy()
    hi_w = attend & (events["percent_watched"].fillna(0) >= 50).to_numpy()
    hi_d = download & events["asset"].isin(synth.ASSETS[synth.HIGH_VALUE_ASSETS:]).to_numpy()
    return stage, attend, download, hi_w, hi_d


def _monte_carlo(model, lead, events, as_of, horizon_days, rng, n=400_000):
    """Brute force: draw z from the prior, weight by the likelihood of the recorded events (each event's
    intensity evaluated directly from the model constants), simulate outcome and decision times from
    their generative distributions, keep draws still undecided at as_of, count wins within the horizon.
    Returns the estimate and its standard error."""
    b = model["behaviour"]
    c, k0, k1 = b["c_days"], b["kappa0"], b["kappa1"]
    rate, beta = np.array(b["rate"]) * b["scale"], np.array(b["beta"])
    z = lead["mu"] + model["sigma_z"] * rng.standard_normal(n)
    mid, half = model["z_sat"]
    zc = mid + half * np.tanh((z - mid) / half)
    kappa = k0 - k1 * zc
    created = lead["created_at"]
    age = (as_of - created).total_seconds() / 86400
    ev = events[(events["timestamp"] < as_of)]
    ev = ev.drop(ev.index[(ev["event_type"] == "form_fill") & (ev["timestamp"] == created)][:1])  # the creation form
    stage, attend, download, hi_w, hi_d = _stage_and_mark(ev)
    assert not np.isnan(stage.astype(float)).any()
    a_i = (ev["timestamp"] - created).dt.total_seconds().to_numpy() / 86400
    ll = np.zeros(n)
    for s_i, ai in zip(stage, a_i):  # log intensity of each event (type shares within a stage are constant)
        ll += np.log(rate[s_i]) + beta[s_i] * zc - kappa * np.log1p(ai / c)
    for s in range(len(rate)):  # minus the compensator: the closed form, checked against quad elsewhere
        ll -= rate[s] * np.exp(beta[s] * zc) * c * np.expm1((1 - kappa) * np.log1p(age / c)) / (1 - kappa)
    ya = model["marks"]["attend"][0] * zc + model["marks"]["attend"][1]
    yd = model["marks"]["download"][0] * zc + model["marks"]["download"][1]
    ll += hi_w.sum() * log_expit(ya) + (attend & ~hi_w).sum() * log_expit(-ya)
    ll += hi_d.sum() * log_expit(yd) + (download & ~hi_d).sum() * log_expit(-yd)
    w = np.exp(ll - ll.max())
    won = rng.random(n) < 1 / (1 + np.exp(-z))
    never = rng.random(n) < model["lost"]["never_closed_share"]
    wm = model["won"]
    d_won = np.exp(wm["log_median_days"] - wm["speed"] * (zc - wm["z_ref"]) + wm["spread"] * rng.standard_normal(n))
    d_lost = np.exp(lead["lost_loc"] + model["lost"]["spread"] * rng.standard_normal(n))
    delay = np.where(won, d_won, np.where(never, np.inf, d_lost))
    keep = delay > age
    y = won & (delay <= age + horizon_days)
    wk = w * keep
    est = (wk * y).sum() / wk.sum()
    se = np.sqrt((wk**2 * (y - est) ** 2).sum()) / wk.sum()
    return est, se


def test_truth_equals_a_brute_force_monte_carlo_for_a_handful_of_snapshots(funnel):
    rng = np.random.default_rng(7)
    leads, truth, model = funnel["leads"], funnel["truth"], funnel["model"]
    events = pd.read_parquet(funnel["paths"].events)
    info = leads.merge(truth[["lead_id", "mu", "lost_loc", "z"]], on="lead_id")
    export = pd.Timestamp(model["export_s"], unit="s")
    # Open leads at snapshots of different ages, the likelier winners first so the check has power.
    picks = []
    for age_days in (3, 20, 60, 200):
        as_of = info["created_at"] + pd.Timedelta(days=age_days)
        open_ = (as_of < export) & ~(info["outcome_at"] <= as_of)
        cand = info[open_].assign(as_of=as_of[open_]).sort_values("mu", ascending=False)
        picks.append(cand.iloc[[0, len(cand) // 3]])
    picks = pd.concat(picks, ignore_index=True)
    exact = synth.true_probability(funnel["tmp"] / "truth", picks[["lead_id", "as_of"]], H)
    for (_, lead), p in zip(picks.iterrows(), exact):
        est, se = _monte_carlo(model, lead, events[events["lead_id"] == lead["lead_id"]], lead["as_of"], H, rng)
        assert abs(est - p) < 4.5 * se + 2e-3, (lead["lead_id"], lead["as_of"], p, est, se)


def test_the_compensator_closed_form_matches_numerical_integration():
    from scipy.integrate import quad

    for kappa in (0.6, 0.95, 1.0, 1.0 + 1e-12, 1.3, 1.8):
        for age in (0.5, 30.0, 400.0):
            num, _ = quad(lambda s: (1 + s / 10.0) ** -kappa, 0, age, epsabs=1e-12, epsrel=1e-12)
            assert synth._cum_shape(np.array(age), np.array(kappa), 10.0) == pytest.approx(num, rel=1e-8)
    # and the inverse used to place events
    frac = np.array([0.0, 0.2, 0.7, 0.999])
    for kappa in (0.6, 1.0, 1.5):
        a = synth._inverse_shape(frac, np.full(4, 300.0), np.full(4, kappa), 10.0)
        ratio = synth._cum_shape(a, np.full(4, kappa), 10.0) / synth._cum_shape(np.array(300.0), np.array(kappa), 10.0)
        np.testing.assert_allclose(ratio, frac, atol=1e-10)


def test_truth_is_nan_where_undefined_and_ignores_row_order(funnel):
    leads, model = funnel["leads"], funnel["model"]
    export = pd.Timestamp(model["export_s"], unit="s")
    decided = leads[leads["outcome"].isin(["won", "lost"])].iloc[0]
    open_ = leads[leads["outcome"] == "open"].iloc[0]
    snaps = pd.DataFrame({
        "lead_id": [open_["lead_id"], open_["lead_id"], decided["lead_id"], "nobody", open_["lead_id"],
                    decided["lead_id"]],
        "as_of": [open_["created_at"], export + pd.Timedelta(days=1), decided["outcome_at"], export,
                  export, decided["outcome_at"] - pd.Timedelta(seconds=1)],
    })
    p = synth.true_probability(funnel["tmp"] / "truth", snaps, H)
    assert np.isnan(p[:4]).all() and (p[4:] >= 0).all() and (p[4:] <= 1).all()
    rev = synth.true_probability(funnel["tmp"] / "truth", snaps.iloc[::-1].reset_index(drop=True), H)
    np.testing.assert_array_equal(rev[::-1], p)
    # tz-aware as_of means the same instants
    aware = snaps.assign(as_of=pd.to_datetime(snaps["as_of"]).dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin"))
    np.testing.assert_array_equal(synth.true_probability(funnel["tmp"] / "truth", aware, H), p)


def test_decisions_spread_some_lost_leads_never_close_and_open_leads_keep_behaving(funnel):
    leads, truth = funnel["leads"], funnel["truth"]
    export = pd.Timestamp(funnel["model"]["export_s"], unit="s")
    # A share of the lost leads is never closed: they stay open for ever.
    lost = truth[~truth["won"]]
    q = funnel["params"].synth.never_closed_share
    assert abs(lost["never_closed"].mean() - q) < 4 * np.sqrt(q * (1 - q) / len(lost))
    assert (leads.set_index("lead_id").loc[lost.loc[lost["never_closed"], "lead_id"], "outcome"] == "open").all()
    # Decision times spread from days to many months, for wins and for losses.
    decided = leads[leads["outcome"].isin(["won", "lost"])]
    days = (decided["outcome_at"] - decided["created_at"]).dt.total_seconds() / 86400
    for outcome in ("won", "lost"):
        d = days[decided["outcome"] == outcome]
        assert d.quantile(0.05) < 21 and d.quantile(0.95) > 150, (outcome, d.describe())
    assert days.max() > 365
    assert 0.08 < (leads["outcome"] == "won").mean() < 0.18
    # Behaviour keeps arriving for leads that stay open: old open leads are still active near the export.
    events = pd.read_parquet(funnel["paths"].events, columns=["lead_id", "timestamp"])
    old_open = leads[(leads["outcome"] == "open") & (leads["created_at"] < export - pd.Timedelta(days=365))]
    recent = events[events["timestamp"] >= export - pd.Timedelta(days=90)]["lead_id"].unique()
    assert len(old_open) > 100 and old_open["lead_id"].isin(recent).mean() > 0.3


def test_post_decision_events_only_follow_their_outcome(funnel):
    leads = funnel["leads"]
    events = pd.read_parquet(funnel["paths"].events).merge(leads[["lead_id", "outcome", "outcome_at", "created_at"]])
    onb = events[events["event_type"] == "onboarding_session"]
    assert len(onb) and (onb["outcome"] == "won").all() and (onb["timestamp"] >= onb["outcome_at"]).all()
    unsub_after = events[(events["event_type"] == "unsubscribe") & (events["timestamp"] >= events["outcome_at"])]
    assert (unsub_after["outcome"] == "lost").any()
    assert (events["timestamp"] >= events["created_at"]).all()
    webinar = events[events["event_type"] == "webinar_attend"]
    assert webinar["percent_watched"].between(0, 100).all() and webinar["percent_watched"].nunique() > 50
