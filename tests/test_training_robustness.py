"""Issue 13: training that does not collapse, small-data mode, rolling-origin time CV, the synth drift knob."""

import joblib
import numpy as np
import pandas as pd
import pytest

from leadscore.baseline import RuleBaseline
from leadscore.features import load_feature_table
from leadscore.model import describe_cv, time_cv, time_split, train_model, training_notes, validation_check
from leadscore.scoring import LeadScorer


@pytest.fixture(scope="module")
def parts(trained):
    params = trained["params"]
    table, meta = load_feature_table(trained["tmp"] / "features" / "features.parquet")
    split = time_split(table, params.split, params.seed)
    baseline = RuleBaseline(params.baseline).fit(split.calibration, split.calibration["label"])
    return params, split, meta, baseline


def test_early_stopping_cannot_stop_at_a_handful_of_trees(parts):
    params, split, meta, _ = parts
    noisy = split.valid.assign(label=np.random.default_rng(0).permutation(split.valid["label"].to_numpy()))
    starved = type(split)(split.train, noisy, split.calibration, split.test, split.boundaries, split.population_scale)
    tp = params.train.model_copy(update={"early_stopping_rounds": 1, "min_boost_rounds": 60, "small_data_leads": 0,
                                         "small_data_wins": 0})
    model = train_model(starved, meta, tp, params.seed)
    assert model.info["mode"] == "standard" and model.booster.current_iteration() == 60
    assert model.info["early_stopping_iteration"] < 60
    assert "trained the minimum of 60" in model.info["min_boost_rounds_applied"]
    assert any("minimum of 60" in w for w in training_notes(model)["warnings"])


def test_small_data_mode_starts_from_the_rule_baseline_and_explains_additively(parts, trained):
    """The shared fixture's model: its 4,000-lead funnel has fewer winning training leads than
    train.small_data_wins, so ``train`` trained it in small-data mode, from this split and baseline."""
    params, split, meta, baseline = parts
    model = joblib.load(trained["tmp"] / "models" / "scorer.joblib").model
    assert model.info["mode"] == "small_data" and "small-data mode" in model.info["small_data_reason"]
    assert model.prior is not None and model.prior.b > 0  # more rule points, higher odds
    # the prior is part of the margin: the trees alone differ from the model's margin by the prior
    rows = split.test.head(300)
    trees = model.booster.predict(model.prepare(rows), raw_score=True)
    assert np.allclose(model.raw_margin(rows), trees + model.prior.margin(rows))
    scorer = LeadScorer(model, params.scoring, 60, feature_params=params.features)
    exp = scorer.explain(rows)
    _, points = scorer.points_only(rows)
    assert np.allclose(exp.base_points + exp.contributions.sum(axis=1) + exp.cap, exp.points, atol=1e-6)
    assert np.allclose(exp.points, points, atol=0.051)  # points_only rounds to 0.1
    # without the baseline there is no prior: the standard path
    tp = params.train.model_copy(update={"small_data_leads": 10 ** 9})
    assert train_model(split, meta, tp, params.seed).info["mode"] == "standard"


def test_the_size_rule_picks_the_mode(parts):
    params, split, meta, baseline = parts
    leads = pd.concat([split.train, split.valid])["lead_id"].nunique()
    below = params.train.model_copy(update={"small_data_leads": leads + 1, "small_data_wins": 0})
    above = params.train.model_copy(update={"small_data_leads": leads, "small_data_wins": 0})
    from leadscore.model import small_data_reason

    rows = pd.concat([split.train, split.valid])
    assert small_data_reason(rows, below) and f"{leads:,} training leads" in small_data_reason(rows, below)
    assert small_data_reason(rows, above) is None


def test_rolling_origin_time_cv_reports_mean_and_spread(parts):
    params, split, meta, baseline = parts
    tp = params.train.model_copy(update={"small_data_leads": 0, "small_data_wins": 0})
    model = train_model(split, meta, tp, params.seed, baseline)
    cv = time_cv(split, model, tp, params.seed, baseline, folds=3)
    assert 1 <= cv["folds"] <= 3 and len(cv["per_fold"]) == cv["folds"]
    starts = [f["from"] for f in cv["per_fold"]]
    assert starts == sorted(starts)
    assert 0.5 < cv["model_auc_mean"] < 1 and cv["model_auc_std"] >= 0
    assert "±" in describe_cv(cv) and "rule baseline" in describe_cv(cv)
    assert time_cv(split, model, tp, params.seed, baseline, folds=0)["folds"] == 0


def test_a_model_that_does_not_beat_the_baseline_on_validation_warns(parts):
    _, split, _, baseline = parts

    class Backwards:
        def raw_margin(self, X):
            return -baseline.points(X)

    with pytest.warns(UserWarning, match="does not beat the rule baseline"):
        out = validation_check(Backwards(), split.valid, baseline)
    assert out["model_auc"] < out["baseline_auc"] and "warning" in out


def test_synth_intent_trend_shifts_intent_by_creation_date_and_keeps_the_truth_inputs():
    from leadscore import synth
    from leadscore.config import SynthParams

    flat = synth._leads(SynthParams(n_leads=3000), np.random.default_rng(0), ["x.io"])
    drift = synth._leads(SynthParams(n_leads=3000, intent_trend=3.0), np.random.default_rng(0), ["x.io"])
    frac = (flat["created"] - flat["start_s"]) / (flat["export_s"] - flat["start_s"])
    assert np.allclose(drift["mu"] - flat["mu"], 3.0 * (frac - 0.5))  # observable, stored in truth.parquet
    p = lambda mu, sel: (1 / (1 + np.exp(-mu[sel]))).mean()  # noqa: E731
    assert p(drift["mu"], frac > 0.875) / p(drift["mu"], frac < 0.125) > 4
