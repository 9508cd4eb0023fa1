"""The only module that talks to MLflow: one run per pipeline run, the model registered as a pyfunc.

Tracking goes to ``sqlite:///<project>/mlflow.db`` unless ``MLFLOW_TRACKING_URI`` says otherwise. The
path is absolute, and inside a ``dvc exp run --temp`` workspace (``.dvc/tmp/exps/…``) it points back at
the project, so experiments run in a temporary copy still land in the project's database.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path

import pandas as pd
import yaml

SERVING_REQUIREMENTS = ("lightgbm", "scikit-learn", "pandas", "numpy", "pyarrow", "joblib", "pydantic", "pyyaml",
                        "mlflow")


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
    """Feature columns only, typed as in features.parquet (categories as text): the serving schema."""
    ex = features[feature_names].head(rows).copy()
    for c in ex.columns:
        if isinstance(ex[c].dtype, pd.CategoricalDtype):
            ex[c] = ex[c].astype(str)
    return ex.reset_index(drop=True)


def model_signature(example: pd.DataFrame, output: pd.DataFrame):
    """The inferred signature with every input column optional: a missing value is a valid input."""
    from mlflow.models import infer_signature
    from mlflow.types.schema import ColSpec, Schema

    sig = infer_signature(example, output)
    sig.inputs = Schema([ColSpec(c.type, c.name, required=False) for c in sig.inputs.inputs])
    return sig


def log_training_run(*, params: dict, metrics: dict, scorer_path: Path, input_example: pd.DataFrame,
                     figures: dict, artifacts: dict[Path, str], tags: dict[str, str], experiment: str,
                     registered_model: str, alias: str = "challenger") -> dict:
    """Log params, metrics, figures, artifacts (path → artifact folder) and the pyfunc scorer; register
    it with ``alias``."""
    import mlflow
    import leadscore
    from leadscore.pyfunc import LeadScorePyfunc

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"train {tags.get('git_commit', '')[:8]}") as run:
        # MLflow keys allow only some characters ("5000+" is a company-size band): replace the others.
        flat_params = {re.sub(r"[^\w\-. :/]", "_", k): (json.dumps(v) if isinstance(v, (list, dict)) else v)
                       for k, v in _flatten(params).items()}
        mlflow.log_params(flat_params)
        mlflow.log_metrics({k: float(v) for k, v in _flatten(metrics).items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlflow.set_tags(tags)
        mlflow.log_dict(metrics, "metrics.json")
        for name, fig in figures.items():
            mlflow.log_figure(fig, f"plots/{name}.png")
        for path, dest in artifacts.items():
            mlflow.log_artifact(str(path), dest)
        import joblib

        output = joblib.load(scorer_path).score(input_example).reset_index(drop=True)
        info = mlflow.pyfunc.log_model(
            name="model", python_model=LeadScorePyfunc(), artifacts={"scorer": str(scorer_path)},
            code_paths=[str(Path(leadscore.__file__).parent)], signature=model_signature(input_example, output),
            input_example=input_example, pip_requirements=_requirements(), registered_model_name=registered_model,
        )
        version = str(info.registered_model_version)
        mlflow.MlflowClient().set_registered_model_alias(registered_model, alias, version)
        mlflow.set_tag("registered_model_version", version)
        return {"run_id": run.info.run_id, "model_uri": f"models:/{registered_model}@{alias}", "version": version,
                "model_info_uri": info.model_uri}


def load_registered(model_uri: str):
    """Load a registered pyfunc (``models:/leadscore@challenger``) from this project's tracking store."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow.pyfunc.load_model(model_uri)
