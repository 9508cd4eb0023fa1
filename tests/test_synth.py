import hashlib

import numpy as np
import pandas as pd
import pytest

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
