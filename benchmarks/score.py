"""Batch-scoring benchmark: end-to-end time, leads per second and peak memory of `leadscore score`.

    python benchmarks/score.py                          # 1,000,000 leads, ~100,000,000 events
    python benchmarks/score.py --leads 100000           # the 100k comparison point for memory
    python benchmarks/score.py --leads 100000 --engine spark   # the same job on Spark local[2]

Synthesizes the funnel (not timed), makes every lead open so every lead is scored, then runs the job
with --explain none (features + points), mql and all, each in a fresh process so peak memory (max RSS,
children included) is the job's own. Also prints the ratio of score+explain to plain prediction on the
same feature rows. Needs a trained scorer (`make run`): models/scorer.joblib.

Each mode prints the job's per-stage breakdown (time and the stage's own peak memory, from
:class:`leadscore.stages.Stages`), and everything is written as JSON to
``benchmarks/results/score_<leads>.json`` (``--results`` to change it), with the load average and the
settings (``--chunk``, ``--memory-limit``) it was measured with.

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
t0 = time.perf_counter()
import joblib
from leadscore.batch import score_leads
try:  # a version of the package before the stage timer (to compare with) runs without it
    from leadscore.stages import Stages
    stages = Stages(own_peaks=True)
    kw = {"stages": stages}
except ImportError:
    stages, kw = None, {}
args = json.loads(sys.argv[1])
scorer = joblib.load(args["model"])
t_load = time.perf_counter() - t0
if args["memory_limit"]:
    kw["memory_limit"] = args["memory_limit"]
t = time.perf_counter()
run = score_leads(scorer, args["leads"], args["events"], args["out"], as_of=args["as_of"], explain=args["explain"],
                  chunk_size=args["chunk"], priority_path=args["priority"], **kw)
secs = time.perf_counter() - t
# the stages reset the kernel's high-water mark as they start: the job's peak is the largest stage peak
peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
           ((stages.peak_bytes() if stages else 0) or 0) / 2**30)
print(json.dumps({"seconds": secs, "scored": run.scored, "explained": run.explained, "peak_gib": peak,
                  "import_and_model_load_s": t_load, "stages": getattr(run, "stages", [])}))
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
    ap.add_argument("--memory-limit", default=None, help="DuckDB memory limit of the job (default: the job's own)")
    ap.add_argument("--no-ratio", action="store_true", help="skip the score+explain / plain prediction ratio")
    ap.add_argument("--results", default=None, help="JSON file for the figures (default benchmarks/results/score_<leads>.json)")
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
    import os

    results = {"leads": args.leads, "events_file_mib": round(events.stat().st_size / 2**20, 1), "engine": args.engine,
               "chunk": args.chunk, "memory_limit": args.memory_limit, "cpus": os.cpu_count(), "modes": {}}
    out_json = Path(args.results) if args.results else ROOT / "benchmarks" / "results" / f"score_{args.leads}.json"
    for mode in modes:
        load_before = os.getloadavg()[0]
        spec = {"model": args.model, "leads": str(leads_open), "events": str(events),
                "out": str(work / f"scores_{args.engine}_{mode}.parquet"), "as_of": as_of, "explain": mode,
                "chunk": args.chunk, "priority": str(priority), "memory_limit": args.memory_limit}
        child = SPARK_CHILD if args.engine == "spark" else CHILD
        done = subprocess.run([sys.executable, "-c", child, json.dumps(spec)], capture_output=True, text=True)
        if done.returncode:
            print(done.stderr[-3000:])
            raise SystemExit(done.returncode)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        r["load_avg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # before and after the run
        print(f"{args.engine} --explain {mode:5s}: {r['seconds']:7.1f} s end to end, {r['scored'] / r['seconds']:9,.0f} leads/s, "
              f"{r['explained']:,} explained, peak RSS {r['peak_gib']:.2f} GiB (load {r['load_avg_1min'][0]:.1f}"
              f"->{r['load_avg_1min'][1]:.1f})", flush=True)
        for st in r.get("stages", []):
            print(f"    {st['stage']:26s} {st['seconds']:8.2f} s  peak {st['peak_gib'] if st['peak_gib'] is not None else float('nan'):5.2f} GiB"
                  f"  ({st['entered']}x)", flush=True)
        results["modes"][mode] = r
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(results, indent=2) + "\n")

    if args.engine == "spark" or args.no_ratio:
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
    results["ratio"] = {"rows": n, "plain_prediction_s": t_pred, "score_explain_s": t_all, "ratio": t_all / t_pred}
    out_json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
