from __future__ import annotations

import fcntl
import os
import pickle
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest


def _share_the_cores_between_xdist_workers() -> None:
    """Under pytest-xdist (``-n 2``, the default: pyproject.toml), each worker gets its share of the CPUs.

    OpenMP threads spin while they wait: two workers each running LightGBM on every core slow each other
    down many times over (100 boosting rounds: 1 s alone, 100 s against another such process). So each
    worker caps OpenMP at ``usable CPUs // workers`` (at least 1) before lightgbm is imported; the project
    reads OMP_NUM_THREADS (``leadscore.config.usable_cpus``) and the subprocesses the tests start (the CLI,
    ``dvc repro``, Spark's Python workers) inherit it. An OMP_NUM_THREADS set by the caller is kept. Tests
    about thread counts set their own (DuckDB's ``connect(threads=...)``, ``usable_cpus`` with the
    variable removed)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if not os.environ.get("PYTEST_XDIST_WORKER") or workers < 2 or os.environ.get("OMP_NUM_THREADS"):
        return
    from leadscore.config import usable_cpus  # pydantic and yaml only: no OpenMP runtime loaded yet

    os.environ["OMP_NUM_THREADS"] = str(max(1, usable_cpus() // workers))


_share_the_cores_between_xdist_workers()


@pytest.fixture(scope="session")
def pipeline_data(tmp_path_factory):
    """A small synthetic funnel run through synth → validate → features, shared by many tests."""
    from leadscore.pipeline import run_features, run_synth, run_validate  # here: the xdist controller never needs them
    from tests.helpers import small_params

    tmp = tmp_path_factory.mktemp("pipeline")
    params = small_params(tmp)
    run_synth(params, tmp / "raw", tmp / "truth")
    run_validate(params, tmp / "validated")
    build = run_features(params, tmp / "validated", tmp / "features")
    return {"tmp": tmp, "params": params, "build": build}


def _train(tmp: Path):
    """synth → validate → features → train a 4,000-lead funnel into ``tmp``, registered in ``tmp / 'mlflow.db'``."""
    from leadscore.pipeline import run_features, run_synth, run_train, run_validate
    from tests.helpers import small_params

    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    try:
        params = small_params(tmp, n_leads=4000, events_per_lead=20, chunk_leads=2000)
        # One rolling-origin time fold, not three: the folds refit the model (small-data mode here, with its
        # own 5-fold CV) only to report a mean ± spread; that report is tested on its own with folds=3
        # (test_training_robustness).
        params = params.model_copy(update={"train": params.train.model_copy(update={
            "truth": str(tmp / "truth" / "truth.parquet"), "cv_folds": 1})})
        run_synth(params, tmp / "raw", tmp / "truth")
        run_validate(params, tmp / "validated")
        run_features(params, tmp / "validated", tmp / "features")
        result = run_train(params, tmp / "features", tmp / "models", tmp / "reports", tmp / "outputs")
    finally:
        mp.undo()
    return params, result


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A model trained on a 4,000-lead funnel and registered, for many modules.

    Trained once per test run: under pytest-xdist the first worker to ask trains it in a folder the workers
    share (under a file lock: the other worker, if it asks meanwhile, waits) and pickles the result; the
    data, model and report files there are only read by the tests. Each worker then works on its own copy
    of the registry as training left it (SQLite's backup; the runs' artifacts stay where training wrote
    them), so the registry changes one worker's tests make (register, promote, roll back) are never seen by
    the other's."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        tmp = tmp_path_factory.getbasetemp().parent / "trained"  # the run's folder, above the workers' own
        done = tmp / "trained.pickle"
        with open(str(tmp) + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not done.exists():
                tmp.mkdir(exist_ok=True)
                done.with_suffix(".partial").write_bytes(pickle.dumps(_train(tmp)))
                done.with_suffix(".partial").rename(done)
        params, result = pickle.loads(done.read_bytes())
        registry = tmp_path_factory.mktemp("registry") / "mlflow.db"
        with closing(sqlite3.connect(tmp / "mlflow.db")) as src, closing(sqlite3.connect(registry)) as dst:
            src.backup(dst)
    else:
        tmp = tmp_path_factory.mktemp("train")
        params, result = _train(tmp)
        registry = tmp / "mlflow.db"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{registry}")
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{registry}")  # training set the shared store as MLflow's current one
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


@pytest.fixture(scope="session", autouse=True)
def _session_tracking_store(tmp_path_factory):
    """MLflow calls made before a test asks for ``trained`` (which points the session at its own store) go
    to a store in the session's folder, not the checkout's mlflow.db: under pytest-xdist two workers would
    otherwise create and migrate that one SQLite file at the same moment."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path_factory.mktemp('tracking') / 'mlflow.db'}")
    yield
    mp.undo()


# ----------------------------------------------------------------------------- pytest-xdist scheduling
#: Modules that run whole on one worker (``--dist loadgroup``), in this order after XDIST_FIRST: one Spark
#: session per run (a new JVM spends its first minute warming up: a Spark job of 300 leads took 43 s in a new
#: session, 15 s in the next), one browser, and the retraining tests move the registry's aliases of
#: ``trained`` in order (promote, then roll back).
XDIST_GROUPS = {"test_spark.py": "spark", "test_report.py": "report", "test_retrain.py": "retrain"}
#: The longest single tests start first, then the grouped modules, so that none of them is still running
#: alone at the end (each worker runs its tests in this order, in each module in the file's order).
#: xdist hands them out in turn (gw0: 1st and 3rd, gw1: 2nd and 4th): gw0 trains ``trained`` for the 1st
#: while gw1 runs tests without it, so neither waits for the other's training; gw1 starts the DVC pipeline
#: (its own processes) only after a test without Numba, when gw0 has compiled and cached the kernels.
XDIST_FIRST = (
    "tests/test_batch_operator.py::test_a_job_killed_at_each_phase_leaves_history_equal_to_the_committed_runs",
    "tests/test_contract.py::test_every_row_is_either_valid_or_rejected_with_a_reason",
    "tests/test_batch_operator.py::test_same_seed_same_bytes_across_hash_seeds",
    "tests/test_cli.py::test_dvc_repro_on_a_fresh_clone_then_nothing_to_do",
)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # a plain `pytest -n 0` keeps the files' order
    for item in items:
        group = XDIST_GROUPS.get(item.path.name)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    first = {nodeid: i for i, nodeid in enumerate(XDIST_FIRST)}
    groups = {name: i for i, name in enumerate(XDIST_GROUPS)}

    def rank(item):  # the longest tests, then the grouped modules, then the rest; the sort is stable
        if item.nodeid in first:
            return (0, first[item.nodeid])
        return (1, groups[item.path.name]) if item.path.name in groups else (2, 0)

    items.sort(key=rank)
    # xdist (3.8) tells the controller an item's group by a suffix of its node id ("…::test@spark"), set on
    # `item._nodeid`, which pytest 9.2 no longer reads (node ids live in `item._id`): set it where it is read,
    # or the groups are silently ignored (the grouped modules then ran on both workers).
    if config.getvalue("loadgroup") and all(hasattr(item, "_id") for item in items):
        from _pytest.nodeid import NodeId

        for item in items:
            group = XDIST_GROUPS.get(item.path.name)
            if group and not item.nodeid.endswith(f"@{group}"):
                item._id = NodeId.parse(f"{item.nodeid}@{group}")
