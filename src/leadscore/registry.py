"""Champion / challenger: should a newly trained model replace the one sales is using?

Each training run registers its model as the ``challenger``. :func:`compare` decides, from metrics of
both models computed on the **same holdout** (different holdouts make any comparison meaningless), whether
it may become ``champion``. The gate (:class:`PromotionGate`) is deliberately not "higher AUC wins":

* **ranking** must not get worse by more than a little (``min_auc_delta``): AUC differences of a few
  thousandths are noise on a quarter of leads;
* **probabilities** must not get worse (``max_log_loss_increase``) and must stay calibrated in absolute
  terms (``max_ece``): sales reads "30 %" as 30 %, and points, bands and the MQL threshold sit on them;
* **the MQL list** must convert at least as well (``require_mql_win_rate_not_worse``): it is what
  sales actually works. Compare at similar MQL volumes; the weekly volumes are shown for that reason.

Every check is written out with its numbers, so the decision can be read, not just trusted. The
MLflow side is a few small functions taking an ``mlflow.MlflowClient``: the alias ``champion`` is moved,
the reason is kept as a tag of the promoted version, and a registered-model tag keeps the earlier
champions so :func:`rollback` can move the alias back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

CHAMPION, CHALLENGER = "champion", "challenger"
#: Registered-model tags: the version that was champion before the current one, and the whole stack.
PREVIOUS_TAG, HISTORY_TAG = "previous_champion", "champion_history"
#: Model-version tags written on promotion / rollback.
REASON_TAG, PROMOTED_AT_TAG, REPLACED_TAG = "champion_reason", "champion_since", "replaced_champion"
MAX_HISTORY = 50  # earlier champions remembered (tag values are bounded in size)

#: Metrics of the comparison table, in order, with how each is read.
METRICS = {"roc_auc": "higher is better", "baseline_roc_auc": "the rule baseline on the same rows",
           "log_loss": "lower is better", "ece": "lower is better",
           "mql_win_rate": "higher is better", "mql_per_week": "volume, for context"}


class PromotionGate(BaseModel):
    """How much worse than the champion a challenger may be on each check, and an absolute ECE cap."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Absolute checks, every model (the first included), on the holdout:
    min_auc_over_baseline: float = Field(0.01, ge=0)  # ROC AUC at least the rule baseline's + this
    min_auc_over_random: float = Field(0.05, ge=0, lt=0.5)  # ROC AUC at least 0.5 + this
    # Who moves the champion alias: False (default) = nobody but `leadscore promote`; a scheduled retrain
    # sets True so a challenger that passes the gate becomes champion on its own.
    auto_promote: bool = False
    # Checks against the champion, on the very same holdout rows:
    max_log_loss_increase: float = Field(0.005, ge=0)
    max_ece: float = Field(0.03, gt=0, le=1)
    min_auc_delta: float = Field(-0.005, le=0)  # challenger AUC may be at most this much lower
    require_mql_win_rate_not_worse: bool = True
    mql_win_rate_tolerance: float = Field(0.0, ge=0, le=1)  # allowed drop, as a share (0.01 = 1 point)


@dataclass
class Decision:
    """Whether to promote, each check in plain English, and the metrics side by side."""

    promote: bool  # the gate passed (the alias moves only with auto_promote or `leadscore promote`)
    reasons: list[str] = field(default_factory=list)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    action: str = ""  # what was done with the alias

    def to_dict(self) -> dict:
        """JSON-ready: passed, each check with its numbers, the metrics table, the action taken."""
        table = self.table.astype(object).where(self.table.notna(), None).to_dict("records") if len(self.table) else []
        return {"passed": int(bool(self.promote)), "checks": list(self.reasons), "table": table,
                "action": self.action, "champion_version": getattr(self, "champion_version", None)}

    def summary(self) -> str:
        """One line, e.g. for the champion's reason tag."""
        return ("promote: " if self.promote else "keep champion: ") + "; ".join(self.reasons)


def _value(metrics: dict | None, key: str) -> float | None:
    if not metrics or metrics.get(key) is None:
        return None
    try:
        v = float(metrics[key])
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def holdout_fingerprint(X: pd.DataFrame, y) -> str:
    """A short hash of the holdout rows (lead, snapshot date, label when present): two metric dicts with
    the same fingerprint were computed on the very same rows."""
    import hashlib

    import numpy as np

    cols = [c for c in ("lead_id", "as_of") if c in X.columns]
    frame = X[cols].astype(str) if cols else pd.DataFrame({"row": np.arange(len(X)).astype(str)})
    frame = frame.assign(label=np.asarray(y).astype(int).astype(str))
    h = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return f"{len(X)}:{hashlib.sha256(h.tobytes()).hexdigest()[:16]}"


def absolute_checks(challenger_metrics: dict, gate: PromotionGate) -> list[tuple[bool, str]]:
    """Checks every model must pass, the first included: beats the rule baseline on the holdout by a
    margin, ranks better than chance by a margin, is calibrated (ECE under the bound)."""
    checks: list[tuple[bool, str]] = []
    n, b = _value(challenger_metrics, "roc_auc"), _value(challenger_metrics, "baseline_roc_auc")
    if n is None or b is None:
        checks.append((False, "ROC AUC of the challenger or of the rule baseline on the holdout not available"))
    else:
        ok = n - b >= gate.min_auc_over_baseline - 1e-12
        checks.append((ok, f"ROC AUC {n:.4f} vs rule baseline {b:.4f} on the same holdout: {n - b:+.4f} "
                           f"{'≥' if ok else '<'} required {gate.min_auc_over_baseline:+g}"))
    if n is None:
        checks.append((False, "ROC AUC of the challenger not available: cannot check it against chance"))
    else:
        floor = 0.5 + gate.min_auc_over_random
        ok = n >= floor - 1e-12
        checks.append((ok, f"ROC AUC {n:.4f} {'≥' if ok else '<'} {floor:.2f} (chance 0.5 + margin "
                           f"{gate.min_auc_over_random:g})"))
    return checks


def compare(champion_metrics: dict | None, challenger_metrics: dict, gate: PromotionGate | None = None) -> Decision:
    """Decide whether the challenger may become champion.

    ``challenger_metrics`` holds ``roc_auc``, ``log_loss``, ``ece``, ``mql_win_rate``, ``mql_per_week``
    and ``baseline_roc_auc`` (the rule baseline on the same holdout), and ``holdout`` (the fingerprint
    of the rows, :func:`holdout_fingerprint`). Every challenger must pass :func:`absolute_checks` and
    the ECE bound; with a champion, its metrics must come from the very same rows (``holdout`` is
    required on both and must match: a ValueError otherwise) and the challenger must not be worse by
    more than the gate allows. A metric that is missing or not a number fails its check: a model is
    never promoted on a check that could not be made.
    """
    gate = gate or PromotionGate()
    checks = absolute_checks(challenger_metrics, gate)
    if not champion_metrics:
        ece = _value(challenger_metrics, "ece")
        if ece is None:
            checks.append((False, "ECE of the challenger not available: cannot check calibration"))
        else:
            ok = ece <= gate.max_ece + 1e-12
            checks.append((ok, f"ECE {ece:.4f} {'≤' if ok else '>'} maximum {gate.max_ece:g}"))
        checks.append((True, "no champion yet: nothing to compare with"))
        promote = all(ok for ok, _ in checks)
        return Decision(promote, [("ok: " if ok else "fails: ") + t for ok, t in checks],
                        _table(None, challenger_metrics))
    h_champ, h_chall = champion_metrics.get("holdout"), challenger_metrics.get("holdout")
    if h_champ is None or h_chall is None or str(h_champ) != str(h_chall):
        raise ValueError(f"the metrics come from different holdouts (champion {h_champ}, challenger {h_chall}); "
                         f"score both models on the very same rows")
    checks.append((True, f"champion and challenger scored on the very same holdout rows ({h_chall})"))

    c, n = _value(champion_metrics, "roc_auc"), _value(challenger_metrics, "roc_auc")
    if c is None or n is None:
        checks.append((False, "ROC AUC not available for both models: cannot compare"))
    else:
        d = n - c
        ok = d >= gate.min_auc_delta - 1e-12
        checks.append((ok, f"ROC AUC {n:.4f} vs champion {c:.4f}: {d:+.4f} "
                           f"{'≥' if ok else '<'} allowed {gate.min_auc_delta:+g}"))

    c, n = _value(champion_metrics, "log_loss"), _value(challenger_metrics, "log_loss")
    if c is None or n is None:
        checks.append((False, "log loss not available for both models: cannot compare"))
    else:
        d = n - c
        ok = d <= gate.max_log_loss_increase + 1e-12
        checks.append((ok, f"log loss {n:.4f} vs champion {c:.4f}: {d:+.4f} "
                           f"{'≤' if ok else '>'} allowed {gate.max_log_loss_increase:+g}"))

    n = _value(challenger_metrics, "ece")
    if n is None:
        checks.append((False, "ECE of the challenger not available: cannot check calibration"))
    else:
        c = _value(champion_metrics, "ece")
        ok = n <= gate.max_ece + 1e-12
        vs = "" if c is None else f" (champion {c:.4f})"
        checks.append((ok, f"ECE {n:.4f}{vs} {'≤' if ok else '>'} maximum {gate.max_ece:g}"))

    if gate.require_mql_win_rate_not_worse:
        c, n = _value(champion_metrics, "mql_win_rate"), _value(challenger_metrics, "mql_win_rate")
        if c is None or n is None:
            checks.append((False, "MQL win rate not available for both models: cannot compare"))
        else:
            d = n - c
            ok = d >= -gate.mql_win_rate_tolerance - 1e-12
            vol_c, vol_n = _value(champion_metrics, "mql_per_week"), _value(challenger_metrics, "mql_per_week")
            vol = "" if vol_c is None or vol_n is None else f" at {vol_n:.1f} vs {vol_c:.1f} MQLs a week"
            checks.append((ok, f"MQL win rate {n:.1%} vs champion {c:.1%}{vol}: {100 * d:+.1f} points "
                               f"{'≥' if ok else '<'} allowed {(-100 * gate.mql_win_rate_tolerance) or 0.0:+.1f}"))

    promote = all(ok for ok, _ in checks)
    reasons = [("ok: " if ok else "fails: ") + text for ok, text in checks]
    return Decision(promote, reasons, _table(champion_metrics, challenger_metrics))


def _table(champion: dict | None, challenger: dict) -> pd.DataFrame:
    rows = []
    for key, reading in METRICS.items():
        c, n = _value(champion, key), _value(challenger, key)
        rows.append({"metric": key, "champion": c, "challenger": n,
                     "delta": None if c is None or n is None else n - c, "reading": reading})
    return pd.DataFrame(rows).astype({"champion": float, "challenger": float, "delta": float})


# --------------------------------------------------------------------------------------------- MLflow

def get_alias_version(client, name: str, alias: str) -> str | None:
    """The version of ``name`` carrying ``alias``, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def _history(client, name: str) -> list[str]:
    tags = client.get_registered_model(name).tags or {}
    try:
        return [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]
    except (TypeError, ValueError):
        return []


def _write_history(client, name: str, history: list[str]) -> None:
    history = history[-MAX_HISTORY:]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    if history:
        client.set_registered_model_tag(name, PREVIOUS_TAG, history[-1])
    elif PREVIOUS_TAG in (client.get_registered_model(name).tags or {}):
        client.delete_registered_model_tag(name, PREVIOUS_TAG)


def set_champion(client, name: str, version: str | int, reason: str) -> str | None:
    """Move the ``champion`` alias to ``version``; returns the version it replaced (None if none).

    The replaced champion is pushed on the registered-model tag ``champion_history`` (its top is also in
    ``previous_champion``) so :func:`rollback` can restore it; the reason and the time go on the new
    champion's version tags. Promoting the current champion again only updates its reason.
    """
    version = str(version)
    client.get_model_version(name, version)  # a clear MLflow error if the version does not exist
    previous = get_alias_version(client, name, CHAMPION)
    if previous is not None and previous != version:
        _write_history(client, name, [*_history(client, name), previous])
        client.set_model_version_tag(name, version, REPLACED_TAG, previous)
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, REASON_TAG, reason)
    client.set_model_version_tag(name, version, PROMOTED_AT_TAG, datetime.now(timezone.utc).isoformat())
    return None if previous == version else previous


def rollback(client, name: str, reason: str = "rollback") -> str:
    """Move ``champion`` back to the previous champion and return its version.

    Raises ValueError when no earlier champion is recorded (nothing to go back to) or when the recorded
    version no longer exists in the registry.
    """
    from mlflow.exceptions import MlflowException

    history = _history(client, name)
    current = get_alias_version(client, name, CHAMPION)
    if not history:
        raise ValueError(f"registered model '{name}': no previous champion recorded, nothing to roll back to "
                         f"(current champion: {current or 'none'})")
    target = history[-1]
    try:
        client.get_model_version(name, target)
    except MlflowException as exc:
        raise ValueError(f"registered model '{name}': the previous champion, version {target}, no longer "
                         f"exists; set a champion explicitly with set_champion") from exc
    client.set_registered_model_alias(name, CHAMPION, target)
    client.set_model_version_tag(name, target, REASON_TAG, f"{reason} (from version {current})")
    client.set_model_version_tag(name, target, PROMOTED_AT_TAG, datetime.now(timezone.utc).isoformat())
    _write_history(client, name, history[:-1])
    return target
