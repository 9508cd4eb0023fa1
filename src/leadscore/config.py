"""Typed parameters, one model per params.yaml section. Loading has no side effects."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def usable_cpus() -> int:
    """CPUs this process may really use: its CPU affinity, capped by a cgroup CPU quota (containers, CI).

    ``os.cpu_count()`` reports the host's cores; in a container limited to 2 CPUs on a 64-core host,
    OpenMP (LightGBM) would start 64 spinning threads per process and run many times slower. A positive
    ``OMP_NUM_THREADS`` (the standard OpenMP setting, e.g. for several jobs sharing a machine) caps it.
    """
    import math
    import os

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    for path in ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
        try:
            text = Path(path).read_text().split()
            if path.endswith("cpu.max"):
                quota, period = text[0], float(text[1])
            else:
                quota, period = text[0], float(Path(path).with_name("cpu.cfs_period_us").read_text())
            if quota not in ("max", "-1") and period > 0:
                n = min(n, max(1, math.ceil(float(quota) / period)))
            break
        except (OSError, ValueError, IndexError):
            continue
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isdigit() and int(omp) > 0:
        n = min(n, int(omp))
    return max(1, n)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadParams(_Section):
    """How to read the CSV inputs where detection is not wanted (see leadscore.reader): None = detect."""

    sep: str | None = None  # , ; tab |
    encoding: str | None = None  # utf-8, utf-16, windows-1252
    decimal: Literal[".", ","] | None = None

    @model_validator(mode="after")
    def _valid(self):
        from leadscore.reader import ReadOptions

        ReadOptions(self.sep, self.encoding, self.decimal)
        return self


class DataParams(_Section):
    leads: str = "data/raw/leads.parquet"
    events: str | None = "data/raw/events.parquet"
    priority_accounts: str | None = "data/raw/priority_accounts.csv"
    mapping: str | None = None  # an export mapping (mappings/*.yaml) applied to the leads file first
    read: ReadParams = Field(default_factory=ReadParams)


class SynthParams(_Section):
    n_leads: int = Field(20_000, ge=1)
    events_per_lead: float = Field(70.0, gt=0)
    start: str = "2024-10-01"
    months: int = Field(24, ge=1)
    won_median_days: float = Field(50.0, gt=0)  # median days from creation to a win (typical buyer)
    lost_median_days: float = Field(60.0, gt=0)  # median days until a lost lead is closed (typical fit)
    never_closed_share: float = Field(0.35, ge=0, lt=1)  # share of lost leads nobody ever closes
    activity_decay_days: float = Field(10.0, gt=0)  # time scale of the power-law decay of behaviour
    chunk_leads: int = Field(50_000, ge=1)
    intent_trend: float = 0.0  # drift: intent mean shifts by this (log-odds) from the first to the last creation date, centred (3.0: ~6x win rate)


class ValidateParams(_Section):
    max_reject_share: float = Field(0.01, ge=0, le=1)


class FeatureParams(_Section):
    snapshot_every_days: int = Field(7, ge=1)  # training snapshots: a calendar date every N days
    max_age_days: int = Field(365, ge=1)  # leads older than this at a snapshot date give no training row
    label_horizon_days: int = Field(180, ge=1)
    windows_days: tuple[int, ...] = (7, 30, 90)
    half_life_days: float = Field(14.0, gt=0)
    stakeholder_window_days: int = Field(90, ge=1)
    competitor_domains: tuple[str, ...] = ()
    content_value: dict[str, float] = Field(default_factory=dict)
    export_at: str | None = None

    @field_validator("export_at", mode="before")
    @classmethod
    def _one_grammar(cls, v):
        if v is None:
            return None
        from leadscore.contract import parse_moment

        text = v.isoformat() if hasattr(v, "isoformat") else str(v)
        parse_moment(text, "features.export_at")  # the data's timestamp grammar: ISO 8601, never a guess
        return text

    @field_validator("windows_days")
    @classmethod
    def _positive_sorted(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(w <= 0 for w in v):
            raise ValueError("windows_days must be positive whole days")
        return tuple(sorted(set(v)))


class SplitParams(_Section):
    test_days: int = Field(91, ge=1)
    calibration_days: int = Field(91, ge=1)
    validation_share: float = Field(0.15, gt=0, lt=1)
    holdout_share: float = Field(0.5, gt=0, lt=1)


class TrainParams(_Section):
    learning_rate: float = Field(0.03, gt=0)
    n_estimators: int = Field(2000, ge=1)
    early_stopping_rounds: int = Field(100, ge=1)
    num_leaves: int = Field(15, ge=2)
    max_depth: int = -1
    min_child_samples: int = Field(40, ge=1)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    num_threads: int = Field(0, ge=0)  # LightGBM threads; 0: the CPUs this process may use (usable_cpus)
    calibration: Literal["auto", "isotonic", "sigmoid", "none"] = "auto"
    min_boost_rounds: int = Field(50, ge=0)  # early stopping may not stop before this many trees
    cv_folds: int = Field(3, ge=0)  # rolling-origin time folds over the training period (0: off)
    small_data_leads: int = Field(1500, ge=0)  # fewer training leads than this: small-data mode
    small_data_wins: int = Field(100, ge=0)  # or fewer winning training leads than this
    truth: str | None = None
    leakage_guard: bool = True
    leakage_auc_threshold: float = Field(0.85, gt=0.5, le=1)
    after_sales_contact: tuple[str, ...] = ()  # columns known to be filled in after sales contact: excluded
    leakage_keep: tuple[str, ...] = ()  # override: keep these even when flagged
    drift_warn_psi: float = Field(0.1, gt=0)
    drift_alert_psi: float = Field(0.25, gt=0)


class BehaviorRule(_Section):
    points: float
    cap: float


class BaselineParams(_Section):
    mql_threshold: float = Field(50, gt=0)
    behavior_window_days: int = Field(90, ge=1)
    inactivity_half_life_days: float = Field(30, gt=0)
    fit: dict[str, dict[str, float]] = Field(default_factory=dict)
    behavior: dict[str, BehaviorRule] = Field(default_factory=dict)

    @field_validator("fit", mode="before")
    @classmethod
    def _values_as_text(cls, v):  # YAML reads `1: 10` with an integer key; feature values compare as text
        return {attr: {str(k): pts for k, pts in (values or {}).items()} for attr, values in (v or {}).items()}

    @model_validator(mode="after")
    def _caps_bound_single_rules(self):
        half = self.mql_threshold / 2
        for name, rule in self.behavior.items():
            if (rule.points > 0) != (rule.cap > 0):
                raise ValueError(f"baseline.behavior.{name}: points and cap must have the same sign")
            if rule.cap > half:
                raise ValueError(f"baseline.behavior.{name}: cap {rule.cap:g} is more than half the MQL "
                                 f"threshold ({half:g}); no single action may qualify a lead on its own")
        for attr, values in self.fit.items():
            for value, pts in values.items():
                if pts > half:
                    raise ValueError(f"baseline.fit.{attr}.{value}: {pts:g} points is more than half the MQL "
                                     f"threshold ({half:g})")
        return self


class ScoringParams(_Section):
    base_points: float = 50
    base_probability: float = Field(0.05, gt=0, lt=1)
    points_to_double_odds: float = Field(8, gt=0)
    bands: dict[str, float] = Field(default_factory=lambda: {"A": 75, "B": 60, "C": 45})
    fit_grades: dict[str, float] = Field(default_factory=lambda: {"A": 8, "B": 0, "C": -8})
    engagement_grades: dict[str, float] = Field(default_factory=lambda: {"1": 15, "2": 0, "3": -15})
    mql_policy: Literal["capacity", "min_conversion", "expected_value"] = "capacity"
    capacity_per_week: float = Field(30, gt=0)
    capacity_headroom: float = Field(0.9, gt=0, le=1)
    min_conversion: float = Field(0.35, gt=0, lt=1)
    deal_value: float = Field(20000, gt=0)
    touch_cost: float = Field(400, gt=0)
    top_reasons: int = Field(5, ge=1, le=10)
    explain_engine: Literal["fast", "lightgbm"] = "fast"  # exact tree SHAP: leadscore.treeshap or LightGBM's own

    @field_validator("fit_grades", "engagement_grades", "bands", mode="before")
    @classmethod
    def _keys_as_text(cls, v):
        return {str(k): float(x) for k, x in (v or {}).items()}


class MlflowParams(_Section):
    experiment: str = "leadscore"
    registered_model: str = "leadscore"


class Params(_Section):
    seed: int = 42
    data: DataParams = DataParams()
    synth: SynthParams = SynthParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    features: FeatureParams = FeatureParams()
    split: SplitParams = SplitParams()
    train: TrainParams = TrainParams()
    baseline: BaselineParams = BaselineParams()
    scoring: ScoringParams = ScoringParams()
    promotion: dict = Field(default_factory=dict)  # leadscore.registry.PromotionGate fields
    mlflow: MlflowParams = MlflowParams()

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read params.yaml; unknown keys in known sections are an error (typos must not pass)."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return Params.model_validate(raw)
