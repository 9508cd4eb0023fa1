"""Typed parameters, one model per params.yaml section. Loading has no side effects."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Section):
    leads: str = "data/raw/leads.parquet"
    events: str | None = "data/raw/events.parquet"
    priority_accounts: str | None = "data/raw/priority_accounts.csv"


class SynthParams(_Section):
    n_leads: int = Field(20_000, ge=1)
    events_per_lead: float = Field(70.0, gt=0)
    start: str = "2024-10-01"
    months: int = Field(24, ge=1)
    decision_days: int = Field(30, ge=1)
    chunk_leads: int = Field(50_000, ge=1)


class ValidateParams(_Section):
    max_reject_share: float = Field(0.01, ge=0, le=1)


class FeatureParams(_Section):
    snapshot_days: int = Field(30, ge=0)
    label_horizon_days: int = Field(180, ge=1)
    windows_days: tuple[int, ...] = (7, 30, 90)
    half_life_days: float = Field(14.0, gt=0)
    stakeholder_window_days: int = Field(90, ge=1)
    competitor_domains: tuple[str, ...] = ()
    content_value: dict[str, float] = Field(default_factory=dict)
    export_at: str | None = None

    @field_validator("windows_days")
    @classmethod
    def _positive_sorted(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(w <= 0 for w in v):
            raise ValueError("windows_days must be positive whole days")
        return tuple(sorted(set(v)))


class Params(_Section):
    seed: int = 42
    data: DataParams = DataParams()
    synth: SynthParams = SynthParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    features: FeatureParams = FeatureParams()

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read params.yaml; unknown keys in known sections are an error (typos must not pass)."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return Params.model_validate(raw)
