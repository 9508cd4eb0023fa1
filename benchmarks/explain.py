"""Explanation benchmark: exact TreeSHAP of LightGBM binary models, ours vs LightGBM vs shap.

    python benchmarks/explain.py                                  # 100,000 rows, three model sizes
    python benchmarks/explain.py --rows 20000 --ref-rows 500      # quick run
    python benchmarks/explain.py --sizes 300x31 --threads 2

Trains binary LightGBM models (num_threads = --threads) on a synthetic lead-like dataset
(--rows x --numeric numeric features with 5% NaN, plus two pandas categorical columns), then on the
same pandas rows prints rows/s of

  predict      booster.predict(X, raw_score=True)                       all --rows rows
  pred_contrib booster.predict(X, pred_contrib=True)                    the first --ref-rows rows
  shap         shap.TreeExplainer(booster).shap_values(X)               the first --ref-rows rows
  ours         leadscore.treeshap.FastTreeExplainer(booster).contributions(X)   all --rows rows

with our precompute time and memory (kept arrays; peak traced allocation while building, tracemalloc),
the speed-up vs pred_contrib, and the largest |ours - pred_contrib| on the reference rows. numba is
compiled (warmed up) before anything is timed.
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
import warnings

import lightgbm as lgb
import numba
import numpy as np
import pandas as pd

from leadscore.treeshap import FastTreeExplainer


def make_data(n: int, n_numeric: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_numeric))
    X[rng.random(X.shape) < 0.05] = np.nan
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(n_numeric)])
    channel = rng.integers(0, 12, n)
    industry = rng.integers(0, 40, n)
    df["channel"] = pd.Categorical.from_codes(channel, [f"ch{i}" for i in range(12)])
    df["industry"] = pd.Categorical.from_codes(industry, [f"in{i}" for i in range(40)])
    Z = np.nan_to_num(X)
    k = min(n_numeric, 30)
    logit = (Z[:, 0] + 0.8 * Z[:, 1 % n_numeric] * Z[:, 2 % n_numeric] - 0.5 * np.abs(Z[:, 3 % n_numeric])
             + 0.3 * np.sin(3 * Z[:, 4 % n_numeric]) + 0.1 * Z[:, :k] @ rng.normal(size=k)
             + np.where(channel % 3 == 0, 0.7, -0.2) + 0.05 * (industry % 7))
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return df, y


def rate(fn, n: int, min_seconds: float = 0.0) -> float:
    """rows/s of fn() on n rows (repeated until min_seconds, best-of for short calls)."""
    best, spent = float("inf"), 0.0
    while True:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
        if spent >= min_seconds:
            return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000, help="training rows = rows explained by ours/predict")
    ap.add_argument("--ref-rows", type=int, default=2_000, help="rows for the slow pred_contrib and shap")
    ap.add_argument("--numeric", type=int, default=50, help="numeric features (plus 2 categorical)")
    ap.add_argument("--sizes", default="150x15,300x31,500x63", help="comma-separated TREESxLEAVES")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--max-table-depth", type=int, default=16)
    ap.add_argument("--no-shap", action="store_true", help="skip shap.TreeExplainer")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    numba.set_num_threads(args.threads)

    df, y = make_data(args.rows, args.numeric, args.seed)
    ref = df.iloc[: args.ref_rows]
    print(f"data: {len(df):,} rows x {df.shape[1]} features ({args.numeric} numeric + 2 categorical), "
          f"{args.threads} threads (LightGBM num_threads and numba)")

    # numba warm-up (compilation), on a tiny model
    t0 = time.perf_counter()
    tiny = lgb.train(dict(objective="binary", num_leaves=4, verbose=-1, num_threads=args.threads),
                     lgb.Dataset(df.iloc[:2000], y[:2000]), num_boost_round=2)
    FastTreeExplainer(tiny).contributions(df.iloc[:100])
    FastTreeExplainer(tiny, max_table_depth=0).contributions(df.iloc[:100])
    print(f"numba warm-up (compile): {time.perf_counter() - t0:.1f} s\n")

    header = (f"{'model':>9} | {'predict':>9} {'pred_contrib':>12} {'shap':>9} {'ours':>9} rows/s | "
              f"{'x contrib':>9} | {'precompute':>10} {'kept':>8} {'peak':>8} | {'tables/fallback leaves':>22} "
              f"| max|diff|")
    lines = []
    for size in args.sizes.split(","):
        trees, leaves = (int(v) for v in size.lower().split("x"))
        t0 = time.perf_counter()
        params = dict(objective="binary", num_leaves=leaves, learning_rate=0.05, min_child_samples=20,
                      num_threads=args.threads, verbose=-1, seed=args.seed)
        booster = lgb.train(params, lgb.Dataset(df, y), num_boost_round=trees)
        t_train = time.perf_counter() - t0

        t0 = time.perf_counter()
        explainer = FastTreeExplainer(booster, max_table_depth=args.max_table_depth)
        t_pre = time.perf_counter() - t0
        tracemalloc.start()
        FastTreeExplainer(booster, max_table_depth=args.max_table_depth)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

        r_pred = rate(lambda: booster.predict(df, raw_score=True), len(df), 1.0)
        theirs = None

        def run_contrib():
            nonlocal theirs
            theirs = booster.predict(ref, pred_contrib=True)

        r_contrib = rate(run_contrib, len(ref))
        r_shap = float("nan")
        if not args.no_shap:
            import shap

            shap_explainer = shap.TreeExplainer(booster)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r_shap = rate(lambda: shap_explainer.shap_values(ref), len(ref))
        explainer.contributions(df.iloc[:1000])  # warm caches (compiled already)
        ours = None

        def run_ours():
            nonlocal ours
            ours = explainer.contributions(df)

        r_ours = rate(run_ours, len(df))
        diff = np.abs(ours[: len(ref)] - theirs).max()
        line = (f"{trees:>4}x{leaves:<4} | {r_pred:>9,.0f} {r_contrib:>12,.0f} {r_shap:>9,.0f} {r_ours:>9,.0f}        | "
                f"{r_ours / r_contrib:>8.1f}x | {t_pre:>8.2f} s {explainer.nbytes / 2**20:>5.0f} MiB "
                f"{peak / 2**20:>4.0f} MiB | {explainer.n_table_leaves:>11,} / {explainer.n_fallback_leaves:<8,} "
                f"| {diff:.1e}")
        lines.append(line)
        print(f"trained {trees} trees x {leaves} leaves in {t_train:.1f} s; max distinct features on a path "
              f"{explainer._max_d}")
        print(header)
        print(line, flush=True)
        print()

    print("summary (rows/s; 'x contrib' = ours / pred_contrib; precompute time, arrays kept, traced peak):")
    print(header)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
