"""The batch job as an operator runs it: killed at every phase, two at once, odd file systems, same bytes,
models it should not trust and data it was not made for."""

import contextlib
import errno
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from leadscore import runstore
from leadscore.batch import (BatchError, JobBusy, JobIOError, UntrustedModel, load_scorer, signal_shares,
                             score_leads, unfit_input)
from leadscore.cli import EXIT_BATCH, EXIT_BUSY, EXIT_INTERRUPTED, EXIT_IO, EXIT_USAGE, app
from leadscore.contract import ContractError
from tests.helpers import ROOT

AS_OF = "2026-06-01T00:00:00"
LEADSCORE = str(Path(sys.executable).parent / "leadscore")
runner = CliRunner()


@pytest.fixture(scope="module")
def job(trained, tmp_path_factory):
    """The trained model and a small slice of its export (300 leads and their events): cheap runs."""
    tmp = trained["tmp"]
    small = tmp_path_factory.mktemp("small")
    leads = pd.read_parquet(tmp / "raw" / "leads.parquet").head(300)
    leads.to_parquet(small / "leads.parquet", index=False)
    events = pd.read_parquet(tmp / "raw" / "events.parquet")
    events[events["lead_id"].isin(leads["lead_id"])].to_parquet(small / "events.parquet", index=False)
    return {"tmp": tmp, "model": tmp / "models" / "scorer.joblib", "scorer": joblib.load(tmp / "models" / "scorer.joblib"),
            "leads": small / "leads.parquet", "events": small / "events.parquet",
            "version": trained["result"]["mlflow"]["version"]}


def _run(job, out, **kw):
    return score_leads(job["scorer"], job["leads"], job["events"], out, as_of=kw.pop("as_of", AS_OF), **kw)


def _cli(job, out, *extra):
    return [LEADSCORE, "score", "--model", str(job["model"]), "--trust-model", "--leads", str(job["leads"]),
            "--events", str(job["events"]), "--as-of", AS_OF, "--out", str(out), *extra]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".partial", ".prev", ".journal.json", ".tmp"))
                  or (p.name.startswith("run-") and p.suffix == ".parquet" and not p.with_suffix(".json").exists()))


# ----------------------------------------------------------------------------- 1. transactional runs
def _wait_paused(proc, marker: Path, what: str) -> None:
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if not marker.exists():
        err = proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "timeout"
        raise AssertionError(f"{what}: never paused: {err}")


def test_a_job_killed_at_each_phase_leaves_history_equal_to_the_committed_runs(job, tmp_path):
    """A real SIGKILL at every named phase (the job pauses there via LEADSCORE_PAUSE_AT; one job per phase,
    all at once, each on its own output and history); after the next job's recovery the output is the last
    committed run's, the history holds exactly the committed runs, and no temporary file, backup,
    journal, uncommitted history file or work folder is left. A SIGTERM instead unwinds (exit 130) and
    removes everything itself."""
    cases = [(phase, signal.SIGKILL) for phase in runstore.PHASES] + [("scored", signal.SIGTERM)]
    committed = tmp_path / "committed"  # one committed run: each case starts from a copy of its output and history
    committed.mkdir()
    _run(job, committed / "scores.parquet", history_dir=committed / "history")
    running = []
    for i, (phase, sig) in enumerate(cases):
        folder = tmp_path / f"{i}-{phase}"
        shutil.copytree(committed, folder)
        out, hist, tmpdir, marker = folder / "scores.parquet", folder / "history", folder / "tmpdir", folder / "paused"
        tmpdir.mkdir(parents=True)
        assert len(runstore.history_runs(hist)) == 1
        before = (out.read_bytes(), out.with_name("scores.rejects.csv").read_bytes())
        env = {**os.environ, runstore.PAUSE_ENV: phase, runstore.PAUSE_FILE_ENV: str(marker), "TMPDIR": str(tmpdir)}
        proc = subprocess.Popen(_cli(job, out, "--history", str(hist)), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        running.append((phase, sig, folder, out, hist, tmpdir, marker, before, proc))
    for phase, sig, folder, out, hist, tmpdir, marker, before, proc in running:
        _wait_paused(proc, marker, phase)
        proc.send_signal(sig)
        code = proc.wait(timeout=120)
        proc.stderr.close()
        rejects = out.with_name("scores.rejects.csv")
        if sig == signal.SIGTERM:  # unwound by the job itself: nothing replaced, nothing left
            assert code == EXIT_INTERRUPTED
            assert (out.read_bytes(), rejects.read_bytes()) == before
            assert _leftovers(folder) == [] and list(tmpdir.iterdir()) == []
            assert len(runstore.history_runs(hist)) == 1
            continue
        assert list(tmpdir.glob(runstore.WORK_PREFIX + "*")), phase  # a SIGKILL leaves the work folder...
        # ... and the next job on this output cleans up first, under the locks (the same calls)
        with runstore.locked({runstore.file_lock(out): "out", hist / ".lock": "history"}, "test"):
            runstore.recover(out, rejects)
            runstore.sweep_history(hist)
            runstore.sweep_work_dirs(tmpdir)
        runs = runstore.history_runs(hist)
        if phase == "committed":  # killed after its commit point: the run counts, its output is in place
            assert len(runs) == 2 and (out.read_bytes(), rejects.read_bytes()) != before
        else:
            assert len(runs) == 1, phase
            assert (out.read_bytes(), rejects.read_bytes()) == before, phase
        assert all(r["data_path"].exists() for r in runs)
        assert _leftovers(folder) == [], phase
        assert not list(tmpdir.glob(runstore.WORK_PREFIX + "*")), phase
        final = _run(job, out, history_dir=hist, as_of="2026-06-02T00:00:00")
        runs = runstore.history_runs(hist)
        assert len(runs) == (3 if phase == "committed" else 2) and runs[-1]["run_id"] == final.run_id
        assert len({r["run_id"] for r in runs}) == len(runs)
        assert pd.read_parquet(out)["scored_at"].iloc[0] == pd.Timestamp(final.scored_at)


def test_recovery_rolls_back_a_run_killed_between_the_swap_and_the_commit(job, tmp_path, monkeypatch):
    """In process: the job dies right after the output swap; the next job puts the previous output and
    rejects back before it does anything, and the dead run never appears in the history."""
    out, hist = tmp_path / "scores.csv", tmp_path / "history"
    _run(job, out, history_dir=hist)
    before, before_rejects = out.read_bytes(), out.with_name("scores.rejects.csv").read_bytes()

    def die(name):
        if name == "swapped":
            raise SystemExit("killed")

    monkeypatch.setattr(runstore, "phase", die)
    with pytest.raises(SystemExit):
        _run(job, out, history_dir=hist, as_of="2026-06-02T00:00:00")
    assert out.read_bytes() != before  # swapped, not committed: a journal says so
    monkeypatch.undo()
    nxt = _run(job, out, history_dir=hist, as_of="2026-06-03T00:00:00")
    assert any("rolled back" in r for r in nxt.recovered)
    assert [r["as_of"][:10] for r in runstore.history_runs(hist)] == ["2026-06-01", "2026-06-03"]
    assert nxt.previous_as_of.startswith("2026-06-01")


def test_two_jobs_at_once_history_equals_successful_jobs(job, tmp_path):
    """Three real jobs started together on the same output and history: two queue (--lock-wait), one may
    be refused (exit 6); the history holds exactly one run per job that exited 0."""
    out, hist = tmp_path / "scores.parquet", tmp_path / "history"
    cmds = [_cli(job, out, "--history", str(hist), "--lock-wait", "300"),
            _cli(job, out, "--history", str(hist), "--lock-wait", "300"),
            _cli(job, out, "--history", str(hist))]
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in cmds]
    codes, errs = [], []
    for p in procs:
        _, err = p.communicate(timeout=600)
        codes.append(p.returncode)
        errs.append(err.decode())
    assert codes[0] == codes[1] == 0, errs
    assert codes[2] in (0, EXIT_BUSY), errs[2]
    if codes[2] == EXIT_BUSY:
        assert "another leadscore score job is writing" in errs[2]
    runs = runstore.history_runs(hist)
    assert len(runs) == codes.count(0)
    assert len({r["run_id"] for r in runs}) == len(runs)
    assert _leftovers(tmp_path) == []


def test_a_second_job_on_the_same_output_is_refused_or_waits(job, tmp_path):
    out = tmp_path / "scores.parquet"
    with runstore.locked({runstore.file_lock(out): str(out)}, "other"):
        with pytest.raises(JobBusy, match="another leadscore score job is writing .*scores.parquet"):
            _run(job, out)
        r = runner.invoke(app, ["score", "--model", str(job["model"]), "--trust-model", "--leads", str(job["leads"]),
                                "--events", str(job["events"]), "--as-of", AS_OF, "--out", str(out)])
        assert r.exit_code == EXIT_BUSY, r.output
    assert not out.exists()


def test_run_ids_are_unique_within_a_second():
    ids = {runstore.new_run_id() for _ in range(2000)}
    assert len(ids) == 2000


# ----------------------------------------------------------------------------- 2. files
def test_outputs_have_the_mode_of_a_new_file_or_keep_the_previous_one(job, tmp_path):
    old = os.umask(0o022)
    try:
        out, hist = tmp_path / "scores.parquet", tmp_path / "history"
        run = _run(job, out, history_dir=hist)
        mode = lambda p: os.stat(p).st_mode & 0o777  # noqa: E731
        assert mode(out) == mode(run.rejects) == 0o644
        assert {mode(p) for p in hist.rglob("run-*")} == {0o644}
        os.chmod(out, 0o640)
        _run(job, out, history_dir=hist, as_of="2026-06-02T00:00:00")
        assert mode(out) == 0o640 and mode(run.rejects) == 0o644
        os.umask(0o027)
        out.unlink()
        _run(job, out)
        assert mode(out) == 0o640
    finally:
        os.umask(old)


def test_the_work_folder_is_removed_on_failure_and_interrupt(job, tmp_path, monkeypatch):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    other = job["scorer"].feature_params.model_copy(update={"windows_days": (14,)})
    with pytest.raises(BatchError):
        _run(job, tmp_path / "a.parquet", feature_params=other)

    def boom(n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(job, tmp_path / "b.parquet", chunk_size=50, progress=boom)
    assert list(tmpdir.iterdir()) == [] and _leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- 3. OS-level failures
@contextlib.contextmanager
def _tmpfs(folder: Path, size: str):
    """A tiny tmpfs at ``folder`` (root only); skips the test where the machine does not allow it."""
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _score_cli(job, out, *extra):
    return runner.invoke(app, ["score", "--model", str(job["model"]), "--trust-model", "--leads", str(job["leads"]),
                               "--events", str(job["events"]), "--as-of", AS_OF, "--out", str(out), *extra])


def _one_sentence(output: str) -> str:
    text = " ".join(output.split())
    text = text[text.index("scoring failed: "):]
    assert text.startswith("scoring failed: ") and text.count(". ") == 0 and text.endswith("."), text
    return text


def test_a_read_only_folder_is_one_sentence_and_exit_5(job, tmp_path):
    with _tmpfs(tmp_path / "ro", "8m") as folder:
        out = folder / "scores.parquet"
        assert _score_cli(job, out).exit_code == 0
        before = out.read_bytes()
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        r = _score_cli(job, out)
        assert r.exit_code == EXIT_IO
        assert "read-only" in _one_sentence(r.output)
        assert out.read_bytes() == before


def test_a_full_disk_is_one_sentence_and_exit_5(job, tmp_path):
    with _tmpfs(tmp_path / "tiny", "2m") as folder:
        out = folder / "scores.parquet"
        assert _score_cli(job, out).exit_code == 0
        before = out.read_bytes()
        with contextlib.suppress(OSError), open(folder / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        r = _score_cli(job, out)
        assert r.exit_code == EXIT_IO, r.output
        assert "no space left" in _one_sentence(r.output)
        assert out.read_bytes() == before
        assert _leftovers(folder) == []


def test_a_write_failure_mid_output_keeps_the_previous_output(job, tmp_path, monkeypatch):
    """Where no tmpfs can be mounted: a monkeypatched ENOSPC from the Parquet writer."""
    out = tmp_path / "scores.parquet"
    _run(job, out)
    before = out.read_bytes()

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full)
    with pytest.raises(JobIOError, match="no space left on the device"):
        _run(job, out)
    assert out.read_bytes() == before and _leftovers(tmp_path) == []


def test_a_missing_folder_and_a_folder_for_a_file_are_one_sentence_and_exit_5(job, tmp_path):
    r = _score_cli(job, tmp_path / "nope" / "scores.parquet")
    assert r.exit_code == EXIT_IO and "does not exist" in _one_sentence(r.output)
    (tmp_path / "dir.parquet").mkdir()
    r = _score_cli(job, tmp_path / "dir.parquet")  # a usage mistake, refused before the model loads
    assert r.exit_code == EXIT_USAGE and "is a folder" in " ".join(r.output.split())
    with pytest.raises(JobIOError, match="is a folder, not a file"):  # the library says it as an OS failure
        score_leads(job["scorer"], job["leads"], job["events"], tmp_path / "dir.parquet", as_of=AS_OF)
    (tmp_path / "hist").write_text("a file")
    r = _score_cli(job, tmp_path / "s.parquet", "--history", str(tmp_path / "hist"))
    assert r.exit_code == EXIT_IO and "is a file, not a folder" in _one_sentence(r.output)
    assert not (tmp_path / "s.parquet").exists()


# ----------------------------------------------------------------------------- 4. same seed, same bytes
DETERMINISM_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.helpers import small_params
from leadscore.pipeline import run_synth, run_validate, run_features, run_train
from leadscore.batch import load_scorer, score_leads
p = small_params(Path("."), n_leads=800, events_per_lead=8, chunk_leads=800)
# one LightGBM thread each: the two runs share the machine's cores (OpenMP threads spin against each other);
# one rolling-origin time fold (each fold refits the small-data model: same code, a third of the trees)
p = p.model_copy(update={{"train": p.train.model_copy(update={{"truth": "truth/truth.parquet", "num_threads": 1,
                                                               "cv_folds": 1}})}})
run_synth(p, Path("raw"), Path("truth"))
run_validate(p, Path("validated"))
run_features(p, Path("validated"), Path("features"))
run_train(p, Path("features"), Path("models"), Path("reports"), Path("outputs"), log_to_mlflow=False)
scorer, _, _ = load_scorer("models/scorer.joblib", trust_file=True)
score_leads(scorer, "raw/leads.parquet", "raw/events.parquet", "scores/scores.parquet", as_of="2026-06-01",
            history_dir="scores/history", model_name="m", model_version="1")
"""

#: What may differ between two runs with the same seed, and why.
WALL_CLOCK = {
    "scores/scores.parquet": "the scored_at column (compared without it)",
    "scores/history/as_of=*/run-<run id>.json": "manifest: run id, scored_at, committed_at (compared without them)",
    "scores/history/as_of=*/run-<run id>.parquet": "file name holds the run id (content compared)",
    "scores/*.lock": "lock files hold the pid and run id of the last job",
}


def test_same_seed_same_bytes_across_hash_seeds(tmp_path):
    """Two fresh folders, PYTHONHASHSEED 1 and 2: every file the pipeline writes (data, features, models,
    reports, figures, report.html, model card, scores) is byte-identical, except the WALL_CLOCK list."""
    dirs, procs = [], []
    for seed in ("1", "2"):  # both at once: the wall time of one
        d = tmp_path / f"run{seed}"
        (d / "scores").mkdir(parents=True)
        env = {**os.environ, "PYTHONHASHSEED": seed}
        env.pop("MLFLOW_TRACKING_URI", None)
        procs.append(subprocess.Popen([sys.executable, "-c", DETERMINISM_SCRIPT.format(root=str(ROOT))], cwd=d,
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        dirs.append(d)
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
    a, b = dirs
    listing = [sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and not str(p.relative_to(d)).startswith("scores/"))
               for d in dirs]
    files = listing[0]
    assert files == listing[1]
    checked = 0
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        checked += 1
    assert checked >= 40 and any(f.endswith("scorer.joblib") for f in files) and any(f.endswith("report.html") for f in files)
    sa, sb = (pd.read_parquet(d / "scores" / "scores.parquet") for d in dirs)
    pd.testing.assert_frame_equal(sa.drop(columns="scored_at"), sb.drop(columns="scored_at"))
    assert (a / "scores" / "scores.rejects.csv").read_bytes() == (b / "scores" / "scores.rejects.csv").read_bytes()
    ha, hb = (runstore.history_runs(d / "scores" / "history") for d in dirs)
    assert len(ha) == len(hb) == 1
    pd.testing.assert_frame_equal(pd.read_parquet(ha[0]["data_path"]), pd.read_parquet(hb[0]["data_path"]))
    stamps = ("run_id", "scored_at", "committed_at", "data", "data_path", "output", "rejects")
    assert {k: v for k, v in ha[0].items() if k not in stamps} == {k: v for k, v in hb[0].items() if k not in stamps}


# ----------------------------------------------------------------------------- 5. data the model was not made for
def test_no_events_while_behaviour_carries_the_signal_is_refused_with_the_numbers(job, tmp_path):
    _, groups = signal_shares(job["scorer"])
    assert groups["behavior"] > 0.5  # the synthetic funnel is behaviour-driven
    with pytest.raises(BatchError, match=r"no events, but features from the event log carried \d+% .*--allow-unfit"):
        score_leads(job["scorer"], job["leads"], None, tmp_path / "s.parquet", as_of=AS_OF)
    assert not (tmp_path / "s.parquet").exists()
    empty = pd.read_parquet(job["events"]).head(0)
    empty.to_parquet(tmp_path / "no_events.parquet", index=False)
    with pytest.raises(ContractError, match="no data rows"):  # a header-only event log: said so, exit 3
        score_leads(job["scorer"], job["leads"], tmp_path / "no_events.parquet", tmp_path / "s.parquet", as_of=AS_OF)
    run = score_leads(job["scorer"], job["leads"], None, tmp_path / "s.parquet", as_of=AS_OF, allow_unfit=True)
    assert run.scored > 0 and any("features from the event log carried" in w for w in run.warnings)
    r = runner.invoke(app, ["score", "--model", str(job["model"]), "--trust-model", "--leads", str(job["leads"]),
                            "--as-of", AS_OF, "--out", str(tmp_path / "t.parquet")])
    assert r.exit_code == EXIT_BATCH and "--allow-unfit" in r.output
    r = runner.invoke(app, ["score", "--model", str(job["model"]), "--trust-model", "--leads", str(job["leads"]),
                            "--as-of", AS_OF, "--out", str(tmp_path / "t.parquet"), "--allow-unfit"])
    assert r.exit_code == 0 and "WARNING" in r.output


def test_custom_columns_the_model_uses_absent_or_empty_are_named(job, tmp_path):
    import copy

    scorer = copy.deepcopy(job["scorer"])
    scorer.model.feature_names = [*scorer.model.feature_names, "x_region", "x_seats"]
    leads = pd.read_parquet(job["leads"]).assign(x_seats=None)
    leads.to_parquet(tmp_path / "leads.parquet", index=False)
    problems = unfit_input(scorer, tmp_path / "leads.parquet", job["events"])
    assert len(problems) == 1 and "2 of the model's 2 custom column(s) are absent or empty" in problems[0]
    assert "x_region, x_seats" in problems[0] and "% of its signal" in problems[0]
    leads.assign(x_region="EMEA", x_seats=3.0).to_parquet(tmp_path / "ok.parquet", index=False)
    assert unfit_input(scorer, tmp_path / "ok.parquet", job["events"]) == []


def test_contract_columns_the_model_reads_renamed_in_the_export_are_refused_with_the_header_found(job, tmp_path):
    """A CRM header ('Job Title', 'Email Domain Name', 'No. of Employees') for an optional contract column:
    the column is absent, so every lead would read as 'title not known': refused (exit 5) naming each
    column, the features it feeds, their share of signal and the header cell meant; --allow-unfit scores
    anyway with the warning; a column the model does not read (annual_revenue here, dropped) is no problem."""
    leads = pd.read_parquet(job["leads"])
    renamed = leads.rename(columns={"title": "Job Title", "email_domain": "Email Domain Name",
                                    "employees": "No. of Employees"})
    renamed.to_csv(tmp_path / "renamed.csv", index=False)
    with pytest.raises(BatchError) as err:
        score_leads(job["scorer"], tmp_path / "renamed.csv", job["events"], tmp_path / "s.parquet", as_of=AS_OF)
    msg = str(err.value)
    assert "3 column(s) the model reads are absent from the leads file under the contract's name" in msg
    assert "'title' (read by seniority, job_function:" in msg and "the export has 'Job Title')" in msg
    assert "the export has 'Email Domain Name')" in msg and "the export has 'No. of Employees')" in msg
    assert re.search(r"'employees' \(read by company_size: \d+\.\d% of the model's signal; the export has", msg)
    assert not (tmp_path / "s.parquet").exists()
    r = runner.invoke(app, ["score", "--model", str(job["model"]), "--trust-model", "--leads", str(tmp_path / "renamed.csv"),
                            "--events", str(job["events"]), "--as-of", AS_OF, "--out", str(tmp_path / "t.parquet")])
    assert r.exit_code == EXIT_BATCH and "Job Title" in r.output and "--allow-unfit" in r.output
    run = score_leads(job["scorer"], tmp_path / "renamed.csv", job["events"], tmp_path / "s.parquet", as_of=AS_OF,
                      allow_unfit=True)
    assert run.scored > 0 and any("'title' (read by" in w for w in run.warnings)
    # a header that only looks alike is another column: no refusal (State, Employee ID, Lead Score, Title Notes)
    leads.drop(columns=["title", "employees", "lead_source"]).assign(
        **{"State": "CA", "Employee ID": "E1", "Lead Score": 5, "Title Notes": "x"}).to_csv(tmp_path / "alike.csv",
                                                                                             index=False)
    run = score_leads(job["scorer"], tmp_path / "alike.csv", job["events"], tmp_path / "a.parquet", as_of=AS_OF)
    assert run.scored > 0 and sum("column absent, every lead scored with it not known" in w for w in run.warnings) >= 2
    # a column the export does not hold at all (nothing like it in the header) is scored as not known, and said
    leads.drop(columns=["employees"]).to_csv(tmp_path / "no_size.csv", index=False)
    run = score_leads(job["scorer"], tmp_path / "no_size.csv", job["events"], tmp_path / "n.parquet", as_of=AS_OF)
    assert run.scored > 0 and any("column absent, every lead scored with it not known: 'employees' (read by company_size"
                                  in w for w in run.warnings)


def test_events_at_or_after_as_of_are_counted_as_not_used_and_change_no_score(job, tmp_path):
    """Features count the events strictly before as_of: one event exactly at as_of and one after are
    valid, reported as not used (the CLI line and the warning), and no lead's points move."""
    events = pd.read_parquet(job["events"])
    lead = events["lead_id"].iloc[0]
    extra = events.head(2).assign(lead_id=lead, timestamp=[pd.Timestamp(AS_OF), pd.Timestamp(AS_OF) + pd.Timedelta("1h")],
                                  event_type="pricing_page")
    pd.concat([events, extra], ignore_index=True).to_parquet(tmp_path / "events.parquet", index=False)
    base = score_leads(job["scorer"], job["leads"], job["events"], tmp_path / "a.parquet", as_of=AS_OF, explain="none")
    run = score_leads(job["scorer"], job["leads"], tmp_path / "events.parquet", tmp_path / "b.parquet", as_of=AS_OF,
                      explain="none")
    late = run.events_late
    assert late == base.events_late + 2 and run.events_in == base.events_in + 2
    assert any(f"{late:,} events are at or after as_of" in w and "not used" in w for w in run.warnings)
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    assert a["points"].tolist() == b["points"].tolist()
    r = runner.invoke(app, ["score", "--model", str(job["model"]), "--trust-model", "--leads", str(job["leads"]),
                            "--events", str(tmp_path / "events.parquet"), "--as-of", AS_OF, "--explain", "none",
                            "--out", str(tmp_path / "c.parquet")])
    assert r.exit_code == 0 and f"{late:,} of the valid at or after as_of: not used" in " ".join(r.output.split())


def test_a_lead_created_after_as_of_is_rejected_showing_its_own_created_at(job, tmp_path):
    leads = pd.read_parquet(job["leads"])
    lead = leads["lead_id"].iloc[0]
    at = leads["lead_id"] == lead
    leads.loc[at, "created_at"] = pd.Timestamp("2027-01-01 09:30")
    leads.loc[at, "outcome"], leads.loc[at, "outcome_at"] = None, pd.NaT  # open
    leads.to_parquet(tmp_path / "leads.parquet", index=False)
    run = score_leads(job["scorer"], tmp_path / "leads.parquet", job["events"], tmp_path / "s.parquet", as_of=AS_OF,
                      explain="none")
    rej = pd.read_csv(run.rejects, dtype=str).set_index("lead_id")
    assert rej.loc[lead, "column"] == "created_at" and rej.loc[lead, "reason"] == "created at or after as_of"
    assert rej.loc[lead, "value"] == "2027-01-01 09:30:00"  # the lead's value, not the as_of


def test_a_lead_not_explained_has_no_reason_text_and_no_grades(job, tmp_path):
    """--explain none / mql: a lead without reasons shows none ("All other factors (-33.6)" read like a
    reason in the CRM), and no grades (they are sums of reasons); explained leads have both."""
    run = score_leads(job["scorer"], job["leads"], job["events"], tmp_path / "n.parquet", as_of=AS_OF, explain="none")
    none = pd.read_parquet(run.output)
    assert run.scored > 0 and none["reasons_text"].isna().all()
    assert none[["fit_grade", "engagement_grade", "matrix_cell"]].isna().all().all()
    run = score_leads(job["scorer"], job["leads"], job["events"], tmp_path / "m.parquet", as_of=AS_OF, explain="mql")
    mql = pd.read_parquet(run.output)
    explained = mql["reasons"] != '{"positive": [], "negative": []}'
    assert 0 < explained.sum() < len(mql) == len(none)
    assert mql.loc[explained, "reasons_text"].str.len().gt(0).all() and mql.loc[explained, "fit_grade"].notna().all()
    assert mql.loc[~explained, "reasons_text"].isna().all() and mql.loc[~explained, "matrix_cell"].isna().all()
    assert mql["points"].tolist() == none["points"].tolist()
    schema = pq.read_schema(tmp_path / "n.parquet")  # typed as text though empty: runs of any mode read as one
    assert all(pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type)
               for c in ("fit_grade", "engagement_grade", "matrix_cell", "reasons_text"))
    assert schema == pq.read_schema(tmp_path / "m.parquet")


def test_running_out_of_memory_under_the_limit_is_a_message_and_changes_nothing(job, tmp_path):
    """--memory-limit too small for the job: exit 5 with what to do, not a DuckDB traceback; the previous
    output stays as it was."""
    out = tmp_path / "s.parquet"
    out.write_bytes(b"previous run")
    r = runner.invoke(app, ["score", "--model", str(job["model"]), "--trust-model", "--leads", str(job["leads"]),
                            "--events", str(job["events"]), "--as-of", AS_OF, "--out", str(out),
                            "--memory-limit", "2MB"])
    text = " ".join(r.output.split())
    assert r.exit_code == EXIT_IO, r.output
    assert "out of memory under DuckDB's limit 2MB" in text and "--memory-limit 1GB" in text
    assert out.read_bytes() == b"previous run" and not isinstance(r.exception, MemoryError)


# ----------------------------------------------------------------------------- 6. trusted models
def test_a_local_model_file_must_match_the_registry_checksum(job, tmp_path):
    scorer, name, version = load_scorer(str(job["model"]))
    assert (name, version) == ("leadscore", job["version"])
    tampered = tmp_path / "scorer.joblib"
    tampered.write_bytes(job["model"].read_bytes() + b"\0")
    with pytest.raises(UntrustedModel, match="matches no model version in the registry"):
        load_scorer(str(tampered))
    assert load_scorer(str(tampered), trust_file=True)[2] == "local"


def test_a_local_model_files_checksum_lookup_is_remembered_while_the_registry_is_unchanged(job, tmp_path, monkeypatch):
    """A fresh process scoring from a model file need not start MLflow: the version found for the file's
    sha256 is kept while the SQLite registry is unchanged; any write to it asks MLflow again; a tampered
    file (another sha256) is never found in the cache."""
    import mlflow

    from leadscore import modelcache
    from leadscore.batch import registered_version_of

    monkeypatch.setenv(modelcache.CACHE_ENV, str(tmp_path / "cache"))
    first = registered_version_of(job["model"])  # asks MLflow, remembers the answer
    calls = []

    class Down:  # the registry, unreachable: every question to it is seen
        def search_model_versions(self, **kwargs):
            calls.append(1)
            raise RuntimeError("registry down")

    monkeypatch.setattr(mlflow, "MlflowClient", lambda *a, **k: Down())
    assert registered_version_of(job["model"]) == first and calls == []  # from the cache
    tampered = tmp_path / "scorer.joblib"
    tampered.write_bytes(job["model"].read_bytes() + b"\0")
    with pytest.raises(UntrustedModel):
        registered_version_of(tampered)
    assert calls == [1]  # asked the registry, which is unreachable here: refused
    from leadscore.tracking import tracking_uri

    db = Path(tracking_uri()[len("sqlite:///"):])
    os.utime(db, ns=(db.stat().st_atime_ns, db.stat().st_mtime_ns + 1_000_000))  # the registry changed
    with pytest.raises(UntrustedModel):
        registered_version_of(job["model"])
    assert calls == [1, 1]


def test_a_model_file_checked_where_there_is_no_registry_creates_none(job, tmp_path, monkeypatch):
    from leadscore.batch import registered_version_of

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(UntrustedModel, match="there is no model registry at sqlite:///.*MLFLOW_TRACKING_URI"):
        registered_version_of(job["model"])
    assert not (tmp_path / "mlflow.db").exists()


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.flag}",))


def test_a_crafted_model_file_is_refused_before_it_is_unpickled(job, tmp_path):
    flag = tmp_path / "pwned"
    payload = _Payload()
    payload.flag = flag
    crafted = tmp_path / "evil.joblib"
    crafted.write_bytes(pickle.dumps(payload))
    r = runner.invoke(app, ["score", "--model", str(crafted), "--leads", str(job["leads"]), "--events",
                            str(job["events"]), "--as-of", AS_OF, "--out", str(tmp_path / "s.parquet")])
    assert r.exit_code == EXIT_BATCH and "a model file is code" in " ".join(r.output.split())
    assert not flag.exists()


# ----------------------------------------------------------------------------- issue 15.5: history by as_of
def test_a_backfill_gives_one_partition_per_as_of_and_compares_with_the_previous_as_of(job, tmp_path):
    hist = tmp_path / "history"
    runs = {d: _run(job, tmp_path / f"{d}.parquet", history_dir=hist, as_of=f"{d}T00:00:00")
            for d in ("2026-05-20", "2026-06-01", "2026-05-25")}  # the 25th is backfilled after the 1st
    assert sorted(p.name for p in hist.glob("as_of=*")) == ["as_of=2026-05-20", "as_of=2026-05-25", "as_of=2026-06-01"]
    assert runs["2026-05-20"].previous_as_of is None
    assert runs["2026-05-25"].previous_as_of.startswith("2026-05-20")  # not the run of the 1st, made before it
    rerun = _run(job, tmp_path / "again.parquet", history_dir=hist, as_of="2026-06-01T00:00:00")
    assert rerun.previous_as_of.startswith("2026-05-25")
    prev = pd.read_parquet(runs["2026-05-25"].output).set_index("lead_id")["points"]
    now = pd.read_parquet(rerun.output).set_index("lead_id")
    both = now.index.intersection(prev.index)
    assert len(both) > 0
    assert (now.loc[both, "previous_points"] == prev.loc[both]).all()
    assert len(runstore.history_runs(hist)) == 4 and len(list(hist.glob("as_of=2026-06-01/run-*.json"))) == 2
