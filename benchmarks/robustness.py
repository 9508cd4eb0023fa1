"""Robustness of training (issue 13): a drifting export, and small data.

    python benchmarks/robustness.py drift  --params P --features DIR
    python benchmarks/robustness.py small  --params P --features DIR [--sizes 200 500 1000 2000] [--repeats 3]

``drift``: on a feature table (e.g. a synthetic export made with ``synth.intent_trend: 3.0``, a six-fold
rise in conversion), the pipeline's model (early stopping with ``train.min_boost_rounds``, small-data mode
when it applies) against a plain LightGBM (library defaults, same training rows and weights) and the rule
baseline, by ROC AUC over the test period's snapshot rows (every open lead), plus the rolling-origin time CV.

``small``: training leads subsampled to N labelled leads (the calibration and test periods unchanged, so
every N is scored on the same rows), repeated with different samples: ROC AUC on the test period of the
rule baseline, a plain LightGBM (the pipeline's standard path: early stopping on validation leads, minimum
rounds; and library defaults for reference), small-data mode, and the model the pipeline chooses at that
size (``train.small_data_leads``). Prints one line per N with means over the repeats and the checks of
issue 13: chosen ≥ max(baseline, plain) - 0.01, and chosen > both at 500.
"""

from __future__ import annotations

import argparse
import time
import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from leadscore import pipeline
from leadscore.baseline import RuleBaseline
from leadscore.config import load_params
from leadscore.model import (LeadScoreModel, TimeSplit, categorical_features, describe_cv, fit_booster, lead_hash,
                             small_data_reason, time_cv, time_split, train_model)

warnings.filterwarnings("ignore")


def _prepare(args):
    params = load_params(args.params)
    data = pipeline.load_training_data(args.features)
    split = time_split(data.table, params.split, params.seed)
    leakage = pipeline.guard_leakage(split, data.meta, params.train, data.declared_after_contact)
    excluded = set(leakage.loc[leakage["excluded"], "column"]) if len(leakage) else set()
    meta = [m for m in data.meta if m["name"] not in excluded]
    baseline = RuleBaseline(params.baseline).fit(split.calibration, split.calibration["label"])
    return params, split, meta, baseline


def plain_lightgbm(split: TimeSplit, meta: list[dict], seed: int) -> np.ndarray:
    """LightGBM with the library's defaults on the same training rows and weights: test-period margins."""
    skeleton = LeadScoreModel(None, None, [m["name"] for m in meta],
                              {c: sorted(split.train[c].dropna().astype(str).unique()) for c in categorical_features(meta)},
                              meta)
    clf = lgb.LGBMClassifier(random_state=seed, verbose=-1, n_jobs=2)
    clf.fit(skeleton.prepare(split.train), split.train["label"], sample_weight=split.train["weight"],
            categorical_feature=categorical_features(meta))
    return clf.predict(skeleton.prepare(split.test), raw_score=True)


def auc(split: TimeSplit, score) -> float:
    return float(roc_auc_score(split.test["label"], score))


def drift(args) -> None:
    params, split, meta, baseline = _prepare(args)
    b = split.boundaries
    from leadscore.leakage import per_lead

    leads = per_lead(pd.concat([split.train, split.valid, split.calibration, split.test]))
    by_quarter = leads.groupby(leads["as_of"].dt.to_period("Q"))["label"].mean()
    print(f"leads won within the label horizon, by quarter of their first snapshot: "
          f"{', '.join(f'{v:.1%}' for v in by_quarter)}; snapshot rows: training {b['win_rate_train']:.1%}, "
          f"test {b['win_rate_test']:.1%}")
    t = time.time()
    model = train_model(split, meta, params.train, params.seed, baseline)
    cv = time_cv(split, model, params.train, params.seed, baseline)
    print(f"pipeline model: {model.info['mode']}, early stopping at {model.info.get('early_stopping_iteration')}, "
          f"{model.info['best_iteration']} trees ({time.time() - t:.0f} s)")
    print(f"  validation: {model.info['validation']}")
    m_auc, p_auc, b_auc = auc(split, model.raw_margin(split.test)), auc(split, plain_lightgbm(split, meta, params.seed)), \
        auc(split, baseline.points(split.test))
    print(f"test ROC AUC: pipeline model {m_auc:.4f}, plain LightGBM {p_auc:.4f}, rule baseline {b_auc:.4f}")
    print(f"  within 0.02 of plain: {abs(m_auc - p_auc) <= 0.02} ({m_auc - p_auc:+.4f}); above baseline: {m_auc > b_auc}")
    print(f"time CV: {describe_cv(cv)}")


def subsample(split: TimeSplit, n_leads: int, seed: int, validation_share: float) -> TimeSplit:
    """``n_leads`` labelled training-period leads (train and validation), split again by lead."""
    rows = pd.concat([split.train, split.valid], ignore_index=True).drop(columns="weight")
    leads = rows["lead_id"].drop_duplicates()
    pick = set(leads.sample(n=min(n_leads, len(leads)), random_state=seed))
    rows = rows[rows["lead_id"].isin(pick)]
    valid = lead_hash(rows["lead_id"], seed + 101) < validation_share
    train = rows[~valid].copy()
    train["weight"] = 1.0 / train.groupby("lead_id", observed=True)["lead_id"].transform("size").to_numpy()
    return TimeSplit(train, rows[valid], split.calibration, split.test, split.boundaries, split.population_scale)


def small(args) -> None:
    params, split, meta, baseline = _prepare(args)
    b_auc = auc(split, baseline.points(split.test))
    standard = params.train.model_copy(update={"small_data_leads": 0, "small_data_wins": 0})
    forced = params.train.model_copy(update={"small_data_leads": 10 ** 9})
    print(f"{args.features}: test period {len(split.test):,} snapshot rows of {split.test['lead_id'].nunique():,} leads; "
          f"rule baseline ROC AUC {b_auc:.4f}; small-data mode below {params.train.small_data_leads:,} training leads "
          f"or {params.train.small_data_wins:,} winning leads")
    print(f"{'N':>6} {'wins':>5} {'baseline':>9} {'plain':>7} {'lgb-dflt':>9} {'small':>7} {'chosen':>7} "
          f"{'chosen-best':>12}  ok")
    for n in args.sizes:
        res = []
        for r in range(args.repeats):
            sub = subsample(split, n, params.seed + r, params.split.validation_share)
            wins = pd.concat([sub.train, sub.valid]).query("label == 1")["lead_id"].nunique()
            plain = fit_booster(sub.train, sub.valid, meta, standard, params.seed, baseline)
            sm = fit_booster(sub.train, sub.valid, meta, forced, params.seed, baseline)
            chosen = sm if small_data_reason(pd.concat([sub.train, sub.valid]), params.train) else plain
            res.append((wins, auc(sub, plain.raw_margin(split.test)), auc(sub, plain_lightgbm(sub, meta, params.seed)),
                        auc(sub, sm.raw_margin(split.test)), auc(sub, chosen.raw_margin(split.test))))
        wins, p, d, s, c = np.mean(res, axis=0)
        best = max(b_auc, p)
        ok = c >= best - 0.01 and (n != 500 or (c > b_auc and c > p))
        print(f"{n:>6} {wins:>5.0f} {b_auc:>9.4f} {p:>7.4f} {d:>9.4f} {s:>7.4f} {c:>7.4f} {c - best:>+12.4f}  {ok}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["drift", "small"])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--features", default="data/features")
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 500, 1000, 2000])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    drift(args) if args.what == "drift" else small(args)


if __name__ == "__main__":
    main()
