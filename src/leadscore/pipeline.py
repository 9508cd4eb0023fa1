"""The pipeline stages as functions: read params, call the library, write files. The CLI (and so DVC)
calls these; they know nothing of the command line."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from leadscore import contract, features, synth
from leadscore.config import Params


def run_synth(params: Params, out_dir: str | Path, truth_dir: str | Path, progress=None) -> synth.SynthPaths:
    return synth.generate(params.synth, params.seed, out_dir, truth_dir,
                          competitor_domains=params.features.competitor_domains, progress=progress)


def run_validate(params: Params, out_dir: str | Path) -> list[contract.FileReport]:
    """Validate the configured inputs into ``out_dir``: valid leads/events, rejects.csv, report.json.

    Raises :class:`contract.ContractError` when a file breaks the contract or loses too many rows;
    rejects.csv and report.json are written first so the user can see every rejected row.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rejects_path, report_path = out / "rejects.csv", out / "report.json"
    leads, lead_rejects, lead_report = contract.validate_leads(params.data.leads)
    leads.to_parquet(out / "leads.parquet", index=False, compression="zstd")
    reports, rejects = [lead_report], [lead_rejects]
    if params.data.events:
        ev_rejects, ev_report = contract.validate_events(params.data.events, leads, lead_rejects, out / "events.parquet")
        reports.append(ev_report)
        rejects.append(ev_rejects)
    else:
        (out / "events.parquet").unlink(missing_ok=True)
    priority = contract.read_priority_accounts(params.data.priority_accounts)
    priority.to_parquet(out / "priority_accounts.parquet", index=False)

    all_rejects = pd.concat([r for r in rejects if len(r)] or [rejects[0]], ignore_index=True)
    all_rejects.to_csv(rejects_path, index=False)
    report_path.write_text(json.dumps({"files": [asdict(r) for r in reports],
                                       "priority_accounts": len(priority)}, indent=2, default=str))
    for r in reports:
        contract.enforce_reject_share(all_rejects, r, params.validate_.max_reject_share, rejects_path)
    return reports


def run_features(params: Params, validated_dir: str | Path, out_dir: str | Path,
                 as_of: str | None = None) -> features.FeatureBuild:
    v = Path(validated_dir)
    events = v / "events.parquet"
    return features.build_features(v / "leads.parquet", events if events.exists() else None, out_dir,
                                   params.features, priority_path=v / "priority_accounts.parquet", as_of=as_of)
