"""Cold and warm start of explanations in a fresh process: what a nightly job or a Spark worker pays.

    python benchmarks/coldstart.py                       # models/scorer.joblib on data/features, 1,000 leads
    python benchmarks/coldstart.py --rows 1000 --scorer models/scorer.joblib --features data/features/features.parquet
    python benchmarks/coldstart.py --cli --leads data/raw/leads.parquet --events data/raw/events.parquet
    python benchmarks/coldstart.py --cli --model models:/leadscore@champion   # the registry (MLFLOW_TRACKING_URI)

Runs fresh Python processes one after another against one empty numba cache folder (NUMBA_CACHE_DIR):
the first ("cold") compiles the tree-SHAP kernels and writes them to the cache, the next ones ("warm")
load them. Each prints import, load and explain time; explain is ``LeadScorer.score`` with the fast
engine on --rows leads (compile included in the cold run). With --cli it also times the whole
``leadscore score --explain all`` on those leads end to end (warm numba cache), fresh processes one after
another: with ``--model models:/…`` the first finds the model cache (LEADSCORE_MODEL_CACHE, a new empty
folder) empty and asks MLflow, the next ones load the cached scorer (see leadscore.modelcache). The load
average is printed with every figure: on a shared 2-core machine it moves them a lot.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import joblib, pandas as pd
from leadscore import treeshap  # noqa: F401  (numba and the kernels' cache)
t1 = time.perf_counter()
scorer = joblib.load(sys.argv[1])
X = pd.read_parquet(sys.argv[2]).head(int(sys.argv[3])).reset_index(drop=True)
for c in (m["name"] for m in scorer.model.metadata if m["kind"] == "categorical"):
    X[c] = X[c].astype("category")
t2 = time.perf_counter()
out = scorer.score(X, engine="fast")
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "explain_s": t3 - t2, "rows": len(out)}))
"""


def child(scorer: Path, features: Path, rows: int, env: dict) -> dict:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", CHILD, str(scorer), str(features), str(rows)], env=env,
                         capture_output=True, text=True, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scorer", type=Path, default=Path("models/scorer.joblib"))
    ap.add_argument("--features", type=Path, default=Path("data/features/features.parquet"))
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--warm-runs", type=int, default=2)
    ap.add_argument("--cli", action="store_true", help="also time `leadscore score --explain all` end to end")
    ap.add_argument("--leads", type=Path, default=Path("data/raw/leads.parquet"))
    ap.add_argument("--events", type=Path, default=Path("data/raw/events.parquet"))
    ap.add_argument("--model", default=None, help="--model for the CLI run (default: --scorer with --trust-model)")
    ap.add_argument("--cli-runs", type=int, default=3)
    args = ap.parse_args()

    cache = tempfile.mkdtemp(prefix="leadscore-numba-")
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    print(f"numba cache: {cache} (empty); {args.rows:,} leads; scorer {args.scorer}")
    print(f"{'run':<6} {'import s':>9} {'load s':>7} {'explain s':>10} {'process s':>10}")
    for i in range(1 + args.warm_runs):
        r = child(args.scorer, args.features, args.rows, env)
        print(f"{'cold' if i == 0 else 'warm':<6} {r['import_s']:>9.2f} {r['load_s']:>7.2f} {r['explain_s']:>10.2f} "
              f"{r['process_s']:>10.2f}")
    if args.cli:
        import pandas as pd

        with tempfile.TemporaryDirectory() as tmp:
            leads = pd.read_parquet(args.leads)
            open_ids = leads.loc[leads["outcome"].eq("open"), "lead_id"].head(args.rows)
            leads[leads["lead_id"].isin(open_ids)].to_parquet(Path(tmp) / "leads.parquet", index=False)
            ev = pd.read_parquet(args.events)
            ev[ev["lead_id"].isin(open_ids)].to_parquet(Path(tmp) / "events.parquet", index=False)
            model = ["--model", args.model] if args.model else ["--model", str(args.scorer), "--trust-model"]
            cmd = [str(Path(sys.executable).parent / "leadscore"), "score", *model, "--leads", f"{tmp}/leads.parquet", "--events", f"{tmp}/events.parquet",
                   "--out", f"{tmp}/scores.parquet", "--explain", "all"]
            cli_env = {**env, "LEADSCORE_MODEL_CACHE": tempfile.mkdtemp(prefix="leadscore-models-")}
            for i in range(args.cli_runs):
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                subprocess.run(cmd, env=cli_env, check=True, capture_output=True)
                what = "model cache empty" if i == 0 and args.model else "model cache filled" if args.model else "local file"
                print(f"leadscore score --explain all, {len(open_ids):,} open leads, fresh process ({what}, warm numba "
                      f"cache): {time.perf_counter() - t0:.2f} s end to end; load average {load:.1f} on "
                      f"{os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
