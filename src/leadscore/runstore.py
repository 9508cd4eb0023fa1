"""What makes ``leadscore score`` safe to schedule: one job per target, all-or-nothing runs, files an
operator expects, and one sentence for every refusal of the operating system.

A run commits its three results together or not at all: the output, the rejects beside it and its
record in the score history. The protocol (each step is a named *phase*, see :data:`PHASES`):

1. ``scored``: the output and the rejects are complete in temporary files beside their targets
   (``.<name>.<run id>.partial``), already with their final permissions.
2. ``history-written``: the run's rows are written to ``<history>/as_of=<date>/run-<run id>.parquet``.
   Readers only see a run through its manifest (``run-<run id>.json``), which does not exist yet.
3. ``journaled``: a journal beside the output (``.<name>.<run id>.journal.json``) lists what is about to
   be replaced; the previous output and rejects are kept as hard links (``.<name>.<run id>.prev``).
4. ``swapped``: output and rejects are renamed into place.
5. ``committed``: the manifest is renamed into place, the commit point (without ``--history``: both
   files swapped is the commit point). Then the backups and the journal are removed.

A job killed anywhere leaves a journal, temporary files or an unreferenced history file. The next job
on the same output or history, holding the locks, first recovers: a journal whose run did not commit is
rolled back (the previous output and rejects are put back), one that committed is finished; then every
leftover of a dead job is removed, work folders in the temporary directory included. So the history
holds exactly the committed runs, and the output is always the one of the last committed run.

Two jobs on the same output, rejects or history would interleave: each takes an exclusive ``flock`` on
a lock file (``.<name>.lock`` beside the output and the rejects, ``.lock`` in the history folder) and
a second job waits up to ``lock_wait`` seconds, then is refused (:class:`JobBusy`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

#: The named phases of a run, in order; ``LEADSCORE_PAUSE_AT=<phase>`` makes the job stop there (tests
#: kill it with SIGKILL at each one). ``LEADSCORE_PAUSE_FILE`` is then written when it gets there.
PHASES = ("started", "scored", "history-written", "journaled", "swapped", "committed")
PAUSE_ENV, PAUSE_FILE_ENV = "LEADSCORE_PAUSE_AT", "LEADSCORE_PAUSE_FILE"
WORK_PREFIX = "leadscore-work-"
OWNER_LOCK = ".owner.lock"


class JobBusy(RuntimeError):
    """Another job holds the lock of a file this job would write."""


class JobIOError(RuntimeError):
    """The operating system refused a file operation; the message is one sentence for the operator."""


def phase(name: str) -> None:
    """A named point of the run; pauses there for ever when ``LEADSCORE_PAUSE_AT`` names it (a test hook)."""
    assert name in PHASES, name
    if os.environ.get(PAUSE_ENV) != name:
        return
    marker = os.environ.get(PAUSE_FILE_ENV)
    if marker:
        Path(marker).write_text(f"{os.getpid()} {name}\n")
    while True:  # until killed
        time.sleep(0.5)


def new_run_id(now: datetime | None = None) -> str:
    """Unique and sortable by start time: UTC to the microsecond and 8 random hex digits."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:8]


# ----------------------------------------------------------------------------- permissions
def umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def target_mode(final: Path) -> int:
    """The previous file's mode, or that of an ordinary new file under the umask (0644 under 022)."""
    try:
        return stat.S_IMODE(os.stat(final).st_mode)
    except FileNotFoundError:
        return 0o666 & ~umask()


def temp_beside(final: Path, run_id: str) -> Path:
    """An empty temporary file beside ``final`` with the mode ``final`` will have (mkstemp's is 0600)."""
    tmp = final.parent / f".{final.name}.{run_id}.partial"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    os.chmod(tmp, target_mode(final))
    return tmp


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, target_mode(path))
    os.replace(tmp, path)
    _fsync_dir(path.parent)


# ----------------------------------------------------------------------------- locks
def file_lock(target: Path) -> Path:
    """The lock file of an output file (beside it); a history folder's is ``<history>/.lock``."""
    return target.parent / f".{target.name}.lock"


@contextmanager
def locked(locks: dict[Path, str], run_id: str, wait: float = 0.0):
    """Exclusive flocks on lock files (lock file → what it protects), taken in one order so two jobs
    cannot deadlock; waits up to ``wait`` seconds for each, then raises :class:`JobBusy` naming the holder."""
    named = {Path(p).resolve(): what for p, what in locks.items()}
    fds: list[int] = []
    try:
        for p in sorted(named, key=str):
            fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o666 & ~umask())
            fds.append(fd)
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                        raise JobBusy(f"another leadscore score job is writing {named[p]} (lock {p} held by "
                                      f"{holder}); waited {wait:g} s. Run the jobs one after the other, or give "
                                      f"--lock-wait SECONDS to queue behind it.") from None
                    time.sleep(0.1)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}, run {run_id}\n".encode(), 0)
        yield
    finally:
        for fd in reversed(fds):
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


# ----------------------------------------------------------------------------- work folders
def make_work_dir() -> tuple[Path, int]:
    """A work folder in TMPDIR that is this process's while it holds the flock of its ``.owner.lock``."""
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
    fd = os.open(work / OWNER_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return work, fd


def remove_work_dir(work: Path, fd: int | None) -> None:
    shutil.rmtree(work, ignore_errors=True)
    if fd is not None:
        os.close(fd)


def sweep_work_dirs(tmp_root: Path | None = None) -> list[Path]:
    """Remove work folders whose owner died (killed jobs): their ``.owner.lock`` is free. Folders of live
    jobs, and folders without an owner lock, are left alone."""
    removed = []
    for d in Path(tmp_root or tempfile.gettempdir()).glob(WORK_PREFIX + "*"):
        lock = d / OWNER_LOCK
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        shutil.rmtree(d, ignore_errors=True)
        os.close(fd)
        removed.append(d)
    return removed


# ----------------------------------------------------------------------------- history
def partition(history_dir: Path, as_of: pd.Timestamp) -> Path:
    return Path(history_dir) / f"as_of={as_of.date()}"


def history_runs(history_dir: Path | None) -> list[dict]:
    """The committed runs of a history (their manifests), oldest as_of first, then in commit order.
    Runs without a manifest (killed, or still being written) do not exist for readers."""
    if history_dir is None or not Path(history_dir).is_dir():
        return []
    runs = []
    for m in Path(history_dir).glob("as_of=*/run-*.json"):
        try:
            manifest = json.loads(m.read_text())
        except (OSError, ValueError):
            continue
        manifest["data_path"] = m.parent / manifest["data"]
        runs.append(manifest)
    return sorted(runs, key=lambda r: (pd.Timestamp(r["as_of"]), r["committed_at"], r["run_id"]))


def previous_run(history_dir: Path | None, as_of: pd.Timestamp) -> dict | None:
    """The run "change since the last run" compares with: the last committed run of the latest as_of
    strictly before this one (a backfill of older dates compares with the dates before them)."""
    earlier = [r for r in history_runs(history_dir) if pd.Timestamp(r["as_of"]) < as_of]
    return earlier[-1] if earlier else None


# ----------------------------------------------------------------------------- the commit
def _identity(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_dev, st.st_ino]


def _backup(final: Path, backup: Path) -> None:
    try:
        os.link(final, backup)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        shutil.copy2(final, backup)


def commit(run_id: str, files: list[tuple[Path, Path]], manifest_path: Path | None = None,
           manifest: dict | None = None, data_path: Path | None = None) -> None:
    """Put ``files`` (temporary → final) in place and commit the run's history record, all or nothing
    (see the module docstring). The temporary files and ``data_path`` (the history rows) are complete."""
    journal = journal_path(files[0][1], run_id)
    entries = []
    for tmp, final in files:
        _fsync_file(tmp)
        entries.append({"final": str(final), "tmp": str(tmp), "new": _identity(tmp),
                        "backup": str(final.parent / f".{final.name}.{run_id}.prev") if final.exists() else None})
    write_json_atomic(journal, {"run_id": run_id, "files": entries,
                                "manifest": str(manifest_path) if manifest_path else None,
                                "data": str(data_path) if data_path else None})
    phase("journaled")
    for e in entries:
        if e["backup"]:
            _backup(Path(e["final"]), Path(e["backup"]))
    for e in entries:
        os.replace(e["tmp"], e["final"])
    for folder in {Path(e["final"]).parent for e in entries}:
        _fsync_dir(folder)
    phase("swapped")
    if manifest_path is not None:
        write_json_atomic(manifest_path, {**manifest, "committed_at": datetime.now(timezone.utc).isoformat()})
    phase("committed")
    _finish(journal, entries)


def journal_path(final: Path, run_id: str) -> Path:
    return final.parent / f".{final.name}.{run_id}.journal.json"


def _finish(journal: Path, entries: list[dict]) -> None:
    for e in entries:
        if e["backup"]:
            Path(e["backup"]).unlink(missing_ok=True)
    journal.unlink(missing_ok=True)


def _same_file(path: Path, identity: list[int]) -> bool:
    try:
        return _identity(path) == list(identity)
    except FileNotFoundError:
        return False


def recover(out: Path, rejects: Path) -> list[str]:
    """Finish or undo the runs a killed job left journaled beside ``out``, then remove every leftover of
    dead jobs beside ``out`` and ``rejects``. Call it holding the locks. Returns what it did."""
    done = []
    for journal in sorted(out.parent.glob(f".{out.name}.*.journal.json")):
        try:
            j = json.loads(journal.read_text())
        except (OSError, ValueError):
            journal.unlink(missing_ok=True)
            continue
        entries = j["files"]
        swapped = [_same_file(Path(e["final"]), e["new"]) for e in entries]
        committed = Path(j["manifest"]).exists() if j.get("manifest") else all(swapped)
        if committed:
            _finish(journal, entries)
            done.append(f"finished committed run {j['run_id']}")
            continue
        for e, was_swapped in zip(entries, swapped):
            final = Path(e["final"])
            if was_swapped:  # put the previous file back (or remove the new one if there was none)
                if e["backup"] and Path(e["backup"]).exists():
                    os.replace(e["backup"], final)
                else:
                    final.unlink(missing_ok=True)
            elif e["backup"]:
                Path(e["backup"]).unlink(missing_ok=True)
            Path(e["tmp"]).unlink(missing_ok=True)
        if j.get("data"):
            Path(j["data"]).unlink(missing_ok=True)
        journal.unlink()
        done.append(f"rolled back run {j['run_id']} (killed before it committed)")
    for target in (out, rejects):
        for pattern in (f".{target.name}.*.partial", f".{target.name}.*.prev", f".{target.name}.*.journal.json.tmp"):
            for leftover in target.parent.glob(pattern):
                leftover.unlink(missing_ok=True)
                done.append(f"removed {leftover.name}")
    return done


def sweep_history(history_dir: Path) -> list[str]:
    """Remove run files without a manifest (killed runs) and temporary manifests. Hold the history lock."""
    done = []
    for part in Path(history_dir).glob("as_of=*"):
        for data in part.glob("run-*.parquet"):
            if not data.with_suffix(".json").exists():
                data.unlink(missing_ok=True)
                done.append(f"removed uncommitted {part.name}/{data.name}")
        for tmp in part.glob("run-*.json.tmp"):
            tmp.unlink(missing_ok=True)
        try:
            part.rmdir()  # only when empty
        except OSError:
            pass
    return done


# ----------------------------------------------------------------------------- one sentence per OS error
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]|errno[ =:]+(\d+)", re.I)


def os_error_sentence(exc: OSError, what: str = "") -> str:
    """One sentence an operator can act on, for an OSError of the job (``what``: the file being written)."""
    code = exc.errno
    if code is None:
        m = _ERRNO_IN_TEXT.search(str(exc))
        code = int(m.group(1) or m.group(2)) if m else None
        if code is None and "no space left" in str(exc).lower():
            code = errno.ENOSPC
    name = exc.filename or what or "a file"
    path = Path(str(name))
    internal = path.name.startswith(".") and path.name.endswith((".lock", ".partial", ".prev", ".json", ".tmp"))
    place = f"the folder {path.parent}" if internal else str(path)
    if code == errno.EROFS:
        text = f"cannot write in {path.parent}: the file system is read-only"
    elif code in (errno.EACCES, errno.EPERM):
        text = f"cannot write {place}: permission denied"
    elif code in (errno.ENOSPC, errno.EDQUOT):
        text = f"no space left on the device of {Path(str(exc.filename or what or '.')).parent} (disk full or quota)"
    elif code == errno.ENOENT:
        text = f"{path} does not exist"
    elif code == errno.EISDIR:
        text = f"{path} is a folder, not a file"
    elif code == errno.ENOTDIR:
        text = f"a part of {path} is a file, not a folder"
    else:
        text = f"{place}: {exc.strerror or exc}"
    return text + "; the previous output was left untouched."
