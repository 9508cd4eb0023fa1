from __future__ import annotations

from pathlib import Path

import pytest

from leadscore.pipeline import run_features, run_synth, run_train, run_validate

from tests.helpers import small_params


@pytest.fixture(scope="session")
def pipeline_data(tmp_path_factory):
    """A small synthetic funnel run through synth → validate → features, shared by many tests."""
    tmp = tmp_path_factory.mktemp("pipeline")
    params = small_params(tmp)
    run_synth(params, tmp / "raw", tmp / "truth")
    run_validate(params, tmp / "validated")
    build = run_features(params, tmp / "validated", tmp / "features")
    return {"tmp": tmp, "params": params, "build": build}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    params = small_params(tmp, n_leads=4000, events_per_lead=20, chunk_leads=2000)
    params = params.model_copy(update={"train": params.train.model_copy(update={"truth": str(tmp / "truth" / "truth.parquet")})})
    run_synth(params, tmp / "raw", tmp / "truth")
    run_validate(params, tmp / "validated")
    run_features(params, tmp / "validated", tmp / "features")
    result = run_train(params, tmp / "features", tmp / "models", tmp / "reports", tmp / "outputs")
    yield {"tmp": tmp, "params": params, "result": result}
    mp.undo()


@pytest.fixture(scope="session", autouse=True)
def _session_model_cache(tmp_path_factory):
    """Registered scorers the tests resolve are cached in the session's folder, not the user's
    (leadscore.modelcache); subprocesses inherit it."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LEADSCORE_MODEL_CACHE", str(tmp_path_factory.mktemp("model-cache")))
    yield
    mp.undo()
