"""Batch-scoring benchmark: end-to-end time, leads per second and peak memory of `leadscore score`.

    python benchmarks/score.py                          # 1,000,000 leads, ~100,000,000 events
    python benchmarks/score.py --leads 100000           # the 100k comparison point for memory
    python benchmarks/score.py --leads 100000 --engine spark   # the same job on Spark local[2]

Synthesizes the funnel (not timed), makes every lead open so every lead is scored, then runs the job
with --explain none (features + points), mql and all, each in a fresh process so peak memory (max RSS,
children included) is the job's own. Also prints the ratio of score+explain to plain prediction on the
same feature rows. Needs a trained scorer (`make run`): models/scorer.joblib.

With --engine spark the job runs on Spark (local[2], 4 GB driver heap; explain all only): the time
includes starting the session; peak memory is that of the Python driver and, once the JVM has exited,
of its children (the JVM and the Python workers).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import joblib
from leadscore.batch import score_leads
args = json.loads(sys.argv[1])
scorer = joblib.load(args["model"])
t = time.perf_counter()
run = score_leads(scorer, args["leads"], args["events"], args["out"], as_of=args["as_of"], explain=args["explain"],
                  chunk_size=args["chunk"], priority_path=args["priority"])
secs = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"seconds": secs, "scored": run.scored, "explained": run.explained, "peak_gib": peak}))
"""

SPARK_CHILD = r"""
import json, resource, sys, time
import joblib
from leadscore import spark as spark_job
args = json.loads(sys.argv[1])
scorer = joblib.load(args["model"])
t = time.perf_counter()
session = spark_job.session("local[2]", "leadscore-bench", conf={"spark.driver.memory": "4g"})
session.sparkContext.setLogLevel("ERROR")
run = spark_job.score_leads_spark(session, scorer, args["leads"], args["events"], args["out"], as_of=args["as_of"],
                                  priority_path=args["priority"])
session.stop()
secs = time.perf_counter() - t
time.sleep(2)  # let the JVM exit so its peak counts among the children
peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 2**20
print(json.dumps({"seconds": secs, "scored": run.scored, "explained": run.explained, "peak_gib": peak}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--events-per-lead", type=float, default=100.0)
    ap.add_argument("--model", default=str(ROOT / "models" / "scorer.joblib"))
    ap.add_argument("--modes", default="none,mql,all")
    ap.add_argument("--chunk", type=int, default=100_000)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--engine", choices=["local", "spark"], default="local")
    args = ap.parse_args()

    import pandas as pd

    from leadscore.config import SynthParams, load_params
    from leadscore.synth import generate

    params = load_params(ROOT / "params.yaml")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="leadscore-score-bench-"))
    leads_open = work / "leads_open.parquet"
    if not leads_open.exists():
        sp = SynthParams(**{**params.synth.model_dump(), "n_leads": args.leads, "events_per_lead": args.events_per_lead,
                            "chunk_leads": 100_000})
        paths = generate(sp, params.seed, work / "raw", work / "truth", competitor_domains=params.features.competitor_domains)
        leads = pd.read_parquet(paths.leads)
        leads[["outcome", "outcome_at"]] = None  # every lead open: every lead is scored
        leads.to_parquet(leads_open, index=False)
    events, priority = work / "raw" / "events.parquet", work / "raw" / "priority_accounts.csv"
    as_of = "2026-10-01T00:00:00"
    print(f"{args.leads:,} leads, events in {events} ({events.stat().st_size / 2**20:,.0f} MiB)")
    modes = ["all"] if args.engine == "spark" else args.modes.split(",")
    for mode in modes:
        spec = {"model": args.model, "leads": str(leads_open), "events": str(events),
                "out": str(work / f"scores_{args.engine}_{mode}.parquet"), "as_of": as_of, "explain": mode,
                "chunk": args.chunk, "priority": str(priority)}
        child = SPARK_CHILD if args.engine == "spark" else CHILD
        done = subprocess.run([sys.executable, "-c", child, json.dumps(spec)], capture_output=True, text=True)
        if done.returncode:
            print(done.stderr[-3000:])
            raise SystemExit(done.returncode)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{args.engine} --explain {mode:5s}: {r['seconds']:7.1f} s end to end, {r['scored'] / r['seconds']:9,.0f} leads/s, "
              f"{r['explained']:,} explained, peak RSS {r['peak_gib']:.2f} GiB", flush=True)

    if args.engine == "spark":
        return
    # score+explain vs plain prediction on the same feature rows
    import joblib

    from leadscore.features import build_features

    scorer = joblib.load(args.model)
    n = min(100_000, args.leads)
    build = build_features(leads_open, events, work / "features_ratio", scorer.feature_params, as_of=as_of)
    X = pd.read_parquet(build.features).head(n)
    for c in (m["name"] for m in scorer.model.metadata if m["kind"] == "categorical"):
        X[c] = X[c].astype("category")
    t = time.perf_counter(); scorer.points_only(X); t_pred = time.perf_counter() - t
    t = time.perf_counter(); scorer.score(X); t_all = time.perf_counter() - t
    print(f"on {n:,} feature rows: plain prediction {t_pred:.2f} s, score+explain {t_all:.2f} s, ratio {t_all / t_pred:.1f}x")


if __name__ == "__main__":
    main()
