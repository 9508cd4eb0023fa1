"""Registered scorers cached on disk, so a fresh ``leadscore score`` need not start MLflow to find its model.

Resolving ``models:/NAME@ALIAS`` needs the registry, and in a fresh process MLflow's client costs seconds
(importing ``mlflow`` and its SQL store, then connecting): most of a 1,000-lead run. With a SQLite registry
(the project's default) the answer can only change when the database changes, so a resolution is kept
with the identity of the database file and of its ``-wal`` / ``-journal`` files (device, inode, size,
modification time in ns) and SQLite's file change counter: while all are unchanged the cached scorer is the one the registry would give;
any write to the registry (an alias moved, a version added, a run logged) makes the next run ask MLflow
again. Other registries (a tracking server) are not cached.

The cache is a folder of the user's (``LEADSCORE_MODEL_CACHE``, default ``$XDG_CACHE_HOME/leadscore/models``
or ``~/.cache/leadscore/models``), created 0700 and not used when another user could write it. It holds
the scorer files named by sha256 and one small JSON entry per (registry, model reference); a cached scorer
is unpickled only when its bytes still have the sha256 recorded on the version at registration.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

CACHE_ENV = "LEADSCORE_MODEL_CACHE"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "leadscore" / "models"


def _private_dir(create: bool) -> Path | None:
    """The cache folder when it is the user's alone (created 0700 when ``create``), else None."""
    folder = cache_dir()
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = folder.stat()
    except OSError:
        return None
    if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return folder


def registry_stamp(uri: str) -> list | None:
    """The identity of a SQLite registry's files (None for another kind of registry or a missing file)."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):].split("?", 1)[0])
    stamp = []
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-journal")):
        try:
            st = path.stat()
        except FileNotFoundError:
            if path == db:
                return None
            stamp.append(None)
            continue
        except OSError:
            return None
        stamp.append([st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns])
    try:  # SQLite's file change counter (header bytes 24-27), bumped by every commit in rollback mode
        with open(db, "rb") as f:
            counter = f.read(100)[24:28].hex()
    except OSError:
        return None
    return [str(db.resolve()), counter, *stamp]


def _entry_path(folder: Path, uri: str, ref: str) -> Path:
    key = hashlib.sha256(f"{uri}\n{ref}".encode()).hexdigest()[:32]
    return folder / f"{key}.json"


def _current_entry(uri: str, ref: str) -> tuple[dict, Path] | None:
    """(the entry kept for ``ref``, the cache folder) while the registry is as it was when it was kept;
    None otherwise (never an error: a miss asks MLflow)."""
    stamp = registry_stamp(uri)
    folder = _private_dir(create=False)
    if stamp is None or folder is None:
        return None
    try:
        entry = json.loads(_entry_path(folder, uri, ref).read_text())
        if entry["stamp"] != stamp or entry["uri"] != uri or entry["ref"] != ref:
            return None
        return entry, folder
    except (OSError, ValueError, KeyError, TypeError):
        return None


def lookup_version(uri: str, ref: str) -> tuple[str, str] | None:
    """(name, version) remembered for ``ref`` while the registry is unchanged (a local model file is
    ``sha256:<digest>``: the version whose recorded checksum it has); None otherwise."""
    found = _current_entry(uri, ref)
    if found is None:
        return None
    entry = found[0]
    return (entry["name"], entry["version"]) if "name" in entry and "version" in entry else None


def lookup(uri: str, ref: str):
    """(scorer, name, version) for ``ref`` (``models:/…``) when the cache holds it for the registry as it
    is now; None otherwise (never an error: a miss asks MLflow)."""
    found = _current_entry(uri, ref)
    if found is None:
        return None
    entry, folder = found
    try:
        path = folder / f"{entry['sha256']}.joblib"
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != entry["sha256"]:
            return None
        import joblib

        return joblib.load(path), entry["name"], entry["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(uri: str, ref: str, stamp: list | None, name: str, version: str, sha256: str, scorer_file=None) -> None:
    """Remember that ``ref`` resolved to this version and scorer file when the registry was ``stamp``
    (taken before resolving, so a write during the resolution makes the entry stale); without
    ``scorer_file``, the version only (a local file checked by its checksum). Best effort."""
    if stamp is None:
        return
    folder = _private_dir(create=True)
    if folder is None:
        return
    try:
        target = folder / f"{sha256}.joblib"
        if scorer_file is not None and not target.exists():
            tmp = folder / f".{sha256}.{os.getpid()}.tmp"
            shutil.copyfile(scorer_file, tmp)
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        entry = _entry_path(folder, uri, ref)
        tmp = entry.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"uri": uri, "ref": ref, "stamp": stamp, "name": name, "version": version,
                                   "sha256": sha256}))
        os.replace(tmp, entry)
    except OSError:
        pass
