"""Feature-build benchmark: synthesize leads/events at scale, then time the point-in-time feature build.

    python benchmarks/features.py                      # 1,000,000 leads, ~100,000,000 events
    python benchmarks/features.py --leads 100000 --events-per-lead 100

Prints synthesis time, feature-build time, events per second and peak memory (RSS of this process and
its children, sampled) for the feature build alone.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import psutil

from leadscore.config import FeatureParams, SynthParams, load_params
from leadscore.features import build_features, connect
from leadscore.synth import generate


class PeakRSS:
    """Samples this process's resident memory every 50 ms."""

    def __enter__(self):
        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.05)

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--events-per-lead", type=float, default=100.0)
    ap.add_argument("--workdir", default=None, help="where to write data (default: a temp folder)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--memory-limit", default="6GB", help="DuckDB memory limit")
    args = ap.parse_args()

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    sp = SynthParams(**{**params.synth.model_dump(), "n_leads": args.leads, "events_per_lead": args.events_per_lead,
                        "chunk_leads": 100_000})
    fp: FeatureParams = params.features
    work = Path(args.workdir or tempfile.mkdtemp(prefix="leadscore-bench-"))
    t0 = time.perf_counter()
    paths = generate(sp, params.seed, work / "raw", work / "truth", competitor_domains=fp.competitor_domains)
    t_synth = time.perf_counter() - t0
    con = connect(threads=args.threads, memory_limit=args.memory_limit)
    n_events = con.sql(f"SELECT count(*) FROM read_parquet('{paths.events}')").fetchall()[0][0]
    size = sum(p.stat().st_size for p in (work / "raw").iterdir())
    print(f"synthesized {args.leads:,} leads, {n_events:,} events in {t_synth:.1f} s "
          f"({size / 2**20:,.0f} MiB on disk)")

    with PeakRSS() as mem:
        t0 = time.perf_counter()
        build = build_features(paths.leads, paths.events, work / "features", fp,
                               priority_path=paths.priority_accounts, con=con)
        t_feat = time.perf_counter() - t0
    print(f"feature build: {t_feat:.1f} s, {n_events / t_feat:,.0f} events/s, "
          f"{build.rows:,} feature rows + {build.excluded:,} excluded, peak RSS {mem.peak / 2**30:.2f} GiB "
          f"({args.threads} threads, DuckDB memory limit {args.memory_limit})")


if __name__ == "__main__":
    main()
