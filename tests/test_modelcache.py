"""The registered-scorer cache: a hit only while the SQLite registry is unchanged and the file has its
sha256; a private folder only."""

import hashlib
import os

import joblib
import pytest

from leadscore import modelcache


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv(modelcache.CACHE_ENV, str(tmp_path / "cache"))
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"registry v1")
    scorer = tmp_path / "scorer.joblib"
    joblib.dump({"a": "scorer"}, scorer)
    digest = hashlib.sha256(scorer.read_bytes()).hexdigest()
    return {"uri": f"sqlite:///{db}", "db": db, "scorer": scorer, "sha": digest}


def _store(r, ref="models:/leadscore@champion"):
    modelcache.store(r["uri"], ref, modelcache.registry_stamp(r["uri"]), "leadscore", "3", r["sha"], r["scorer"])


def test_a_cached_resolution_is_used_while_the_registry_is_unchanged(registry):
    _store(registry)
    assert modelcache.lookup(registry["uri"], "models:/leadscore@champion") == ({"a": "scorer"}, "leadscore", "3")
    assert modelcache.lookup(registry["uri"], "models:/leadscore@challenger") is None
    assert modelcache.lookup("http://server:5000", "models:/leadscore@champion") is None


def test_any_write_to_the_registry_makes_the_cache_stale(registry):
    _store(registry)
    registry["db"].write_bytes(b"registry v2, an alias moved")
    assert modelcache.lookup(registry["uri"], "models:/leadscore@champion") is None
    _store(registry)
    (registry["db"].parent / "mlflow.db-wal").write_bytes(b"a pending write")
    assert modelcache.lookup(registry["uri"], "models:/leadscore@champion") is None


def test_a_cached_scorer_whose_bytes_changed_is_not_loaded(registry):
    _store(registry)
    cached = modelcache.cache_dir() / f"{registry['sha']}.joblib"
    joblib.dump({"evil": True}, cached)
    assert modelcache.lookup(registry["uri"], "models:/leadscore@champion") is None


def test_a_cache_folder_others_can_write_is_not_used(registry):
    _store(registry)
    assert oct(modelcache.cache_dir().stat().st_mode & 0o777) == "0o700"
    os.chmod(modelcache.cache_dir(), 0o777)
    assert modelcache.lookup(registry["uri"], "models:/leadscore@champion") is None
