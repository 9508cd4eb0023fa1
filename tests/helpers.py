from __future__ import annotations

import copy
from pathlib import Path

from leadscore.config import Params, load_params
from leadscore.scoring import LeadScorer

ROOT = Path(__file__).resolve().parents[1]


def small_params(tmp: Path, n_leads: int = 400, events_per_lead: float = 25.0, **synth) -> Params:
    """The project's params with small sizes and data paths inside ``tmp``."""
    base = load_params(ROOT / "params.yaml")
    raw = tmp / "raw"
    return base.model_copy(update={
        "synth": base.synth.model_copy(update={"n_leads": n_leads, "events_per_lead": events_per_lead,
                                               "chunk_leads": 150, **synth}),
        "data": base.data.model_copy(update={"leads": str(raw / "leads.parquet"),
                                             "events": str(raw / "events.parquet"),
                                             "priority_accounts": str(raw / "priority_accounts.csv")}),
    })



class CountingScorer(LeadScorer):
    """A scorer that appends the number of rows of every ``score`` call to the file ``count_log`` (a file,
    so calls made in Spark's Python workers count too; they import this module from the repo root)."""

    count_log: str

    def score(self, X, *args, **kwargs):
        with open(self.count_log, "a") as f:
            f.write(f"{len(X)}\n")
        return super().score(X, *args, **kwargs)


def counting(scorer: LeadScorer, log: Path) -> CountingScorer:
    counted = copy.copy(scorer)
    counted.__class__ = CountingScorer
    counted.count_log = str(log)
    return counted
