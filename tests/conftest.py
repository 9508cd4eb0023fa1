from __future__ import annotations

from pathlib import Path

import pytest

from leadscore.pipeline import run_features, run_synth, run_validate

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
