"""Model capacity against explanation cost: test AUC and explain time / predict time per setting.

    python benchmarks/capacity.py            # on data/features (run `make run` first)

For each (num_leaves, max_depth) setting the model is trained as the pipeline trains it (early stopping,
calibration), then plain prediction and exact contributions are timed on 100,000 rows (the test quarter
repeated). Prints one row per setting; the chosen setting keeps explain <= 50x predict within 0.005 AUC of
the best.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from leadscore.config import load_params
from leadscore.features import load_feature_table
from leadscore.model import time_split, train_model

SETTINGS = [(7, 3), (15, 4), (15, 6), (15, -1), (31, 6), (31, -1), (63, -1)]


def _best_of(fn, repeats=3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", default="data/features/features.parquet")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--engines", default="lightgbm", help="comma-separated: lightgbm,fast")
    args = ap.parse_args()
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    table, meta = load_feature_table(args.features)
    split = time_split(table, params.split)
    reps = -(-args.rows // len(split.test))
    rows = pd.concat([split.test] * reps, ignore_index=True).head(args.rows)
    out = []
    for leaves, depth in SETTINGS:
        tp = params.train.model_copy(update={"num_leaves": leaves, "max_depth": depth})
        model = train_model(split, meta, tp, params.seed)
        auc = roc_auc_score(split.test["label"], model.predict_proba(split.test))
        X = model.prepare(rows)
        t_pred = _best_of(lambda: model.booster.predict(X, raw_score=True))
        row = {"num_leaves": leaves, "max_depth": depth, "trees": model.booster.best_iteration or model.booster.current_iteration(),
               "test_auc": round(auc, 4), "predict_s": round(t_pred, 3)}
        for engine in args.engines.split(","):
            if engine == "lightgbm":
                t_exp = _best_of(lambda: model.booster.predict(X, pred_contrib=True), repeats=1)
            else:
                from leadscore.treeshap import contributions

                contributions(model.booster, X.head(1000), engine="fast")  # compile and precompute once
                t_exp = _best_of(lambda: contributions(model.booster, X, engine="fast"), repeats=1)
            row[f"explain_{engine}_s"] = round(t_exp, 2)
            row[f"ratio_{engine}"] = round(t_exp / t_pred, 1)
        out.append(row)
        print(row, flush=True)
    df = pd.DataFrame(out)
    print(df.to_string(index=False))
    best = df["test_auc"].max()
    for engine in args.engines.split(","):
        ok = df[(df["test_auc"] >= best - 0.005) & (df[f"ratio_{engine}"] <= 50)]
        print(f"[{engine}] best AUC {best:.4f}; settings within 0.005 AUC and explain <= 50x predict:")
        print(ok[["num_leaves", "max_depth", "trees", "test_auc", f"ratio_{engine}"]].to_string(index=False) if len(ok) else "  none")


if __name__ == "__main__":
    main()
