"""Event-validation benchmark: time and peak memory of the contract's streaming event check.

    python benchmarks/validate.py                               # 1,000,000 leads, ~100,000,000 events
    python benchmarks/validate.py --leads 100000                # ~10M events
    python benchmarks/validate.py --leads 100000 --formats csv  # the CSV reader only

Synthesizes the funnel once (not timed; kept in --workdir), writes the event log also as CSV, then runs
``contract.validate_events`` on each format in a fresh process (DuckDB memory limit 768MB, as in a scoring
job), printing seconds, events per second and peak RSS, and adding them to
``benchmarks/results/validate_<leads>.json`` (``--label`` names the version timed). ``--order``: ``keep``
writes the valid events in the file's order (the pipeline's validate stage: same input, same bytes),
``free`` lets every thread write (a batch job's working copy); ``both`` (default) runs each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import inspect, json, resource, sys, time
import pandas as pd
from leadscore import contract, features
args = json.loads(sys.argv[1])
leads = pd.read_parquet(args["leads"], columns=["lead_id"])
con = features.connect(memory_limit="768MB")
# (an older version of the package, timed for comparison, may not have keep_order)
kw = {"keep_order": args["keep_order"]} if "keep_order" in inspect.signature(contract.validate_events).parameters else {}
t = time.perf_counter()
rejects, report = contract.validate_events(args["events"], leads, leads.iloc[:0], args["out"], con=con, **kw)
secs = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"seconds": secs, "rows": report.rows_in, "rejected": report.rows_rejected, "peak_gib": peak}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--events-per-lead", type=float, default=100.0)
    ap.add_argument("--formats", default="parquet,csv")
    ap.add_argument("--order", choices=["keep", "free", "both"], default="both")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--label", default="this commit", help="name of the version timed (with PYTHONPATH: another one)")
    ap.add_argument("--results", default=None,
                    help="JSON file the figures are added to (default benchmarks/results/validate_<leads>.json)")
    args = ap.parse_args()

    import duckdb

    work = Path(args.workdir or tempfile.mkdtemp(prefix="leadscore-validate-bench-"))
    events = work / "raw" / "events.parquet"
    if not events.exists():  # (only then the package's params: the timed child may be another version)
        from leadscore.config import SynthParams, load_params
        from leadscore.synth import generate

        params = load_params(ROOT / "params.yaml")
        sp = SynthParams(**{**params.synth.model_dump(), "n_leads": args.leads, "events_per_lead": args.events_per_lead,
                            "chunk_leads": 100_000})
        generate(sp, params.seed, work / "raw", work / "truth", competitor_domains=params.features.competitor_domains)
    csv = work / "raw" / "events.csv"
    if "csv" in args.formats and not csv.exists():
        duckdb.sql(f"COPY (SELECT * FROM read_parquet('{events}')) TO '{csv}' (HEADER, DELIMITER ',')")
    leads = next((work / "raw").glob("leads.*"))
    orders = ["keep", "free"] if args.order == "both" else [args.order]
    import os

    out_json = Path(args.results) if args.results else ROOT / "benchmarks" / "results" / f"validate_{args.leads}.json"
    results = json.loads(out_json.read_text()) if out_json.exists() else {"leads": args.leads, "runs": []}
    for fmt in args.formats.split(","):
        for order in orders:
            src = events if fmt == "parquet" else csv
            spec = {"leads": str(leads), "events": str(src), "out": str(work / f"valid_{fmt}.parquet"),
                    "keep_order": order == "keep"}
            done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True)
            if done.returncode:
                print(done.stderr[-3000:])
                raise SystemExit(done.returncode)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            r.update(format=fmt, order=order, version=args.label, cpus=os.cpu_count(),
                     load_avg_1min=round(os.getloadavg()[0], 2))
            # one figure per (version, format, order): a new run replaces the one before
            results["runs"] = [x for x in results["runs"] if (x["version"], x["format"], x["order"]) !=
                               (args.label, fmt, order)] + [r]
            results["events"] = r["rows"]
            out_json.parent.mkdir(parents=True, exist_ok=True)
            out_json.write_text(json.dumps(results, indent=2) + "\n")
            print(f"{fmt:8s} {order}-order: {r['rows']:,} events validated in {r['seconds']:.1f} s "
                  f"({r['rows'] / r['seconds']:,.0f}/s), {r['rejected']:,} rejected, peak RSS {r['peak_gib']:.2f} GiB",
                  flush=True)


if __name__ == "__main__":
    main()
