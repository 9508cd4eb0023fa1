"""The only module that talks to MLflow: one run per pipeline run, the model registered as a pyfunc.

Tracking goes to ``sqlite:///<project>/mlflow.db`` unless ``MLFLOW_TRACKING_URI`` says otherwise. The
path is absolute, and inside a ``dvc exp run --temp`` workspace (``.dvc/tmp/exps/…``) it points back at
the project, so experiments run in a temporary copy still land in the project's database.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path

import pandas as pd
import yaml

# numba: the scorer predicts and explains from its tree arrays (leadscore.treeshap); lightgbm and scikit-learn:
# the booster (explain_engine: lightgbm) and models pickled by earlier versions
SERVING_REQUIREMENTS = ("numba", "lightgbm", "scikit-learn", "pandas", "numpy", "pyarrow", "joblib", "pydantic",
                        "pyyaml", "mlflow")


def project_root(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - 3):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return here


def tracking_uri(start: Path | None = None) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root(start) / 'mlflow.db'}"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def lineage_tags(features_path: Path) -> dict[str, str]:
    """Git commit and the DVC hashes of the data and features this run was trained on."""
    tags = {"git_commit": _git("rev-parse", "HEAD") or "unknown",
            "git_dirty": str(bool(_git("status", "--porcelain", "--untracked-files=no"))).lower(),
            "features_md5": file_md5(features_path)}
    lock = project_root() / "dvc.lock"
    if lock.exists():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for stage in ("synth", "validate", "features"):
            for out in stages.get(stage, {}).get("outs", []):
                tags[f"dvc.{out['path']}"] = out.get("md5", "")
    return tags


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _requirements() -> list[str]:
    reqs = []
    for name in SERVING_REQUIREMENTS:
        try:
            reqs.append(f"{name}=={importlib_metadata.version(name)}")
        except importlib_metadata.PackageNotFoundError:
            pass
    return reqs


def model_input_example(features: pd.DataFrame, feature_names: list[str], rows: int = 5) -> pd.DataFrame:
    """``lead_id`` and the feature columns, typed as in features.parquet (categories as text)."""
    ex = features[(["lead_id"] if "lead_id" in features.columns else []) + list(feature_names)].head(rows).copy()
    for c in ex.columns:
        if isinstance(ex[c].dtype, pd.CategoricalDtype):
            ex[c] = ex[c].astype(str)
    return ex.reset_index(drop=True)


def model_signature(example: pd.DataFrame, output: pd.DataFrame):
    """The inferred signature with every input column optional (a missing value is a valid input) and of
    any type: MLflow would refuse int64 counts for a double column (a table read back from CSV, a hand-built
    frame, a JSON request), while the model converts each column itself (LeadScoreModel.prepare)."""
    from mlflow.models import infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    # The input schema is replaced below; inferring it from floats avoids MLflow's integer-column hint,
    # which users could not act on.
    ints = [c for c in example.columns if pd.api.types.is_integer_dtype(example[c])]
    sig = infer_signature(example.astype({c: "float64" for c in ints}), output)
    sig.inputs = Schema([ColSpec(AnyType(), c.name, required=False) for c in sig.inputs.inputs])
    return sig


def run_name(params: dict, tags: dict[str, str], now=None) -> str:
    """What a run is, at a glance in the MLflow UI: the stage, the DVC experiment's name when ``dvc exp run``
    runs it (``DVC_EXP_NAME``) or else a digest of its params, the commit and the UTC time, e.g.
    ``train exp-3f2a1 · params 9c1e44d0 · 1a2b3c4d · 2026-11-30 07:40``."""
    import hashlib
    import os

    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    when = (now or pd.Timestamp.now(tz="UTC")).strftime("%Y-%m-%d %H:%M")
    parts = ["train", os.environ.get("DVC_EXP_NAME") or "", f"params {digest}", tags.get("git_commit", "")[:8], when]
    return " · ".join(p for p in parts if p)


def log_training_run(*, params: dict, metrics: dict, scorer_path: Path, input_example: pd.DataFrame,
                     figures: dict[str, Path], artifacts: dict[Path, str], tags: dict[str, str], experiment: str,
                     registered_model: str, alias: str = "challenger") -> dict:
    """Log params, metrics, figures (name → PNG file, logged as ``plots/<file name>``), artifacts (path →
    artifact folder) and the pyfunc scorer; register it with ``alias``."""
    import mlflow
    import leadscore

    # Silenced at the source, for what users cannot act on: the artifact progress bar drawn while MLflow
    # checks the input example (noise in logs), and the warning that this uv environment has no pip
    # (the model's requirements are pinned explicitly: _requirements()).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name(params, tags)) as run:
        # MLflow keys allow only some characters ("5000+" is a company-size band): replace the others.
        flat_params = {re.sub(r"[^\w\-. :/]", "_", k): (json.dumps(v) if isinstance(v, (list, dict)) else v)
                       for k, v in _flatten(params).items()}
        mlflow.log_params(flat_params)
        mlflow.log_metrics({k: float(v) for k, v in _flatten(metrics).items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlflow.set_tags(tags)
        mlflow.log_dict(metrics, "metrics.json")
        for path in figures.values():
            mlflow.log_artifact(str(path), "plots")
        for path, dest in artifacts.items():
            mlflow.log_artifact(str(path), dest)
        import joblib

        from leadscore.pyfunc import score_frame

        output = score_frame(joblib.load(scorer_path), input_example)
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(leadscore.__file__).parent / "pyfunc_model.py"),
            artifacts={"scorer": str(scorer_path)},
            code_paths=[str(Path(leadscore.__file__).parent)], signature=model_signature(input_example, output),
            input_example=input_example, pip_requirements=_requirements(), registered_model_name=registered_model,
        )
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(registered_model, alias, version)
        # What `leadscore score --model scorer.joblib` checks a local file against before unpickling it.
        from leadscore.batch import SCORER_SHA256_TAG, file_sha256

        client.set_model_version_tag(registered_model, version, SCORER_SHA256_TAG, file_sha256(scorer_path))
        mlflow.set_tag("registered_model_version", version)
        return {"run_id": run.info.run_id, "model_uri": f"models:/{registered_model}@{alias}", "version": version,
                "model_info_uri": info.model_uri}


def load_registered(model_uri: str):
    """Load a registered pyfunc (``models:/leadscore@challenger``) from this project's tracking store."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow.pyfunc.load_model(model_uri)


def holdout_metrics(scorer, X: pd.DataFrame, y, weeks: float, population_scale: float = 1.0,
                    snapshot_every_days: float = 7.0, baseline=None) -> dict:
    """What the promotion gate compares, for one scorer on the holdout (at its own MQL threshold). When
    ``X`` holds snapshot rows (``lead_id``, ``as_of``), MQLs are the replay's *new* MQLs per week
    (:func:`leadscore.backtest.new_mqls`); otherwise rows over the threshold per ``weeks``."""
    import numpy as np

    from leadscore.evaluate import expected_calibration_error
    from sklearn.metrics import log_loss, roc_auc_score

    y = np.asarray(y)
    p = scorer.model.predict_proba(X)
    _, points = scorer.points_only(X)
    from leadscore.registry import holdout_fingerprint

    out = {"roc_auc": float(roc_auc_score(y, p)), "log_loss": float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
           "ece": expected_calibration_error(y, p), "holdout": holdout_fingerprint(X, y)}
    if baseline is not None:  # the rule baseline ranked on the very same rows
        out["baseline_roc_auc"] = float(roc_auc_score(y, baseline.points(X)))
    if {"lead_id", "as_of"} <= set(X.columns):
        from leadscore.backtest import new_mqls

        row = new_mqls(X["lead_id"].to_numpy(), X["as_of"].to_numpy(), points, y, [scorer.mql_threshold], p,
                       population_scale, snapshot_every_days).iloc[0]
        return {**out, "mql_win_rate": float(row["observed_win_rate"]), "mql_per_week": float(row["mqls_per_week"])}
    mql = points >= scorer.mql_threshold
    return {**out, "mql_win_rate": float(y[mql].mean()) if mql.any() else float("nan"),
            "mql_per_week": float(mql.sum() / weeks)}


def gate_decision(scorer, X: pd.DataFrame, y, weeks: float, gate_params: dict, baseline, population_scale: float = 1.0,
                  snapshot_every_days: float = 7.0, champion_scorer=None):
    """The promotion gate's decision for a challenger (and the champion, when given) scored on the very
    same holdout rows; no registry involved (:func:`champion_challenger` adds the registry)."""
    from leadscore import registry

    gate = registry.PromotionGate(**gate_params)
    challenger = holdout_metrics(scorer, X, y, weeks, population_scale, snapshot_every_days, baseline)
    champion = None if champion_scorer is None else holdout_metrics(
        champion_scorer, X, y, weeks, population_scale, snapshot_every_days, baseline)
    return registry.compare(champion, challenger, gate)


def current_champion(name: str):
    """(version, scorer) of the registered model's champion, or (None, None)."""
    import mlflow

    from leadscore import registry

    mlflow.set_tracking_uri(tracking_uri())
    version = registry.get_alias_version(mlflow.MlflowClient(), name, "champion")
    if version is None:
        return None, None
    return version, mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model().scorer


def decide(name: str | None, scorer, X: pd.DataFrame, y, weeks: float, gate_params: dict, baseline=None,
           population_scale: float = 1.0, snapshot_every_days: float = 7.0):
    """The gate's decision before anything is registered: the absolute checks for every model and, when
    ``name`` has a champion, the comparison on the very same rows. ``decision.champion_version`` says
    which champion was compared (None: none)."""
    from leadscore import registry

    champion_version, champ = current_champion(name) if name else (None, None)
    if champ is not None:
        same_features = (getattr(champ, "feature_params", None) == scorer.feature_params
                         and set(champ.model.feature_names) <= set(X.columns))
        if not same_features:
            decision = registry.Decision(False, [f"champion v{champion_version} was built on other features: it cannot "
                                                 f"be scored on this holdout; compare by hand, then `leadscore promote`"],
                                         pd.DataFrame())
            decision.champion_version = champion_version
            return decision
    decision = gate_decision(scorer, X, y, weeks, gate_params, baseline, population_scale, snapshot_every_days, champ)
    decision.champion_version = champion_version
    return decision


def apply_decision(name: str, version: str, decision, gate_params: dict, run_id: str):
    """Move the champion alias only when the gate passed AND ``promotion.auto_promote`` is on (a
    scheduled retrain); otherwise the version stays ``challenger`` until ``leadscore promote``. Logs the
    decision in the run and sets ``decision.action``."""
    import mlflow

    from leadscore import registry

    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient()
    gate = registry.PromotionGate(**gate_params)
    before = getattr(decision, "champion_version", None)
    champion = f"champion {'v' + before if before else 'none'}"
    if decision.promote and gate.auto_promote:
        registry.set_champion(client, name, version, "; ".join(decision.reasons))
        decision.action = f"version {version} promoted to champion (promotion.auto_promote is on)"
    elif decision.promote:
        decision.action = (f"version {version} passed the gate and is registered as challenger; production "
                           f"({champion}) is unchanged until `leadscore promote {version} --name {name} --reason ...` "
                           f"(or promotion.auto_promote: true in a scheduled retrain)")
    else:
        decision.action = f"version {version} refused by the gate; registered as challenger only ({champion} unchanged)"
    _log_decision(client, run_id, decision, before)
    return decision


def champion_challenger(name: str, version: str, scorer, X: pd.DataFrame, y, weeks: float, gate_params: dict,
                        run_id: str, population_scale: float = 1.0, snapshot_every_days: float = 7.0, baseline=None):
    """:func:`decide` then :func:`apply_decision`. Returns the registry Decision."""
    decision = decide(name, scorer, X, y, weeks, gate_params, baseline, population_scale, snapshot_every_days)
    return apply_decision(name, version, decision, gate_params, run_id)


def _log_decision(client, run_id: str, decision, champion_version) -> None:
    client.set_tag(run_id, "promotion.decision", "passed" if decision.promote else "refused")
    client.set_tag(run_id, "promotion.action", getattr(decision, "action", "")[:5000])
    client.set_tag(run_id, "promotion.reasons", "; ".join(decision.reasons)[:5000])
    client.set_tag(run_id, "promotion.champion_before", str(champion_version))
    if len(decision.table):
        client.log_text(run_id, decision.table.to_csv(index=False), "promotion/decision.csv")


def log_files(run_id: str, files: dict[Path, str]) -> None:
    """Add files to a finished run (path → artifact folder)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient()
    for path, dest in files.items():
        client.log_artifact(run_id, str(path), dest)


def promote(name: str, version: str, reason: str) -> str | None:
    import mlflow

    from leadscore import registry

    mlflow.set_tracking_uri(tracking_uri())
    return registry.set_champion(mlflow.MlflowClient(), name, version, reason)


def rollback(name: str, reason: str = "rollback") -> str:
    import mlflow

    from leadscore import registry

    mlflow.set_tracking_uri(tracking_uri())
    return registry.rollback(mlflow.MlflowClient(), name, reason)
