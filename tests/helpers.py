from __future__ import annotations

from pathlib import Path

from leadscore.config import Params, load_params

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
