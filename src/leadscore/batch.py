"""Batch scoring: every open lead scored, explained and written for the CRM to import.

The job validates the export against the contract, builds features point in time at ``as_of`` with the
feature definitions the model was trained with, then streams the feature table through the scorer in
chunks (memory bounded by the chunk size, not the number of leads) into a temporary file that replaces
the output only when everything succeeded: a crash or Ctrl-C leaves the previous output intact. Every
input lead ends up in the output or in the rejects file with its reason, and the counts are reconciled.

``explain`` chooses who gets reasons, the costly part: ``all``; ``mql`` (leads at or near the MQL
threshold, within ``near_mql_points``); ``changed`` (leads whose features did not change since the last
run in the history reuse that run's scores and reasons; needs ``history_dir``); ``none`` (points, band
and MQL flag only: one plain prediction per lead).

What makes it safe to schedule (locks, all-or-nothing runs with the history, recovery after a kill,
file modes, one sentence per OS error) is :mod:`leadscore.runstore`. The history is partitioned by
``as_of`` date and "change since the last run" compares with the run of the latest earlier ``as_of``.
"""

from __future__ import annotations

import hashlib
import json
import re
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from leadscore import contract, features, runstore, safecsv
from leadscore.memory import job_heap, release_memory
from leadscore.reader import empty_records_note, parquet_rows, parquet_sql
from leadscore.stages import Stages
from leadscore.runstore import JobBusy, JobIOError  # noqa: F401 (re-exported for the CLI)
from leadscore.reasons import group_layout, group_matrix, group_sentences
from leadscore.scoring import CONTROL, LeadScorer, reason_text, reasons_json

EXPLAIN_MODES = ("all", "mql", "changed", "none")
SCORE_COLUMNS = ["probability", "points", "band", "fit_grade", "engagement_grade", "matrix_cell", "is_mql",
                 "reasons", "pushed_over_mql", "base_points", "other_points", "capped_points"]


class BatchError(RuntimeError):
    """The job cannot produce a trustworthy output (schema mismatch, too many rejects)."""


class UntrustedModel(BatchError):
    """A local model file the registry does not know: unpickling it would run whatever code it holds."""


#: Share of the model's signal (LightGBM gain) above which an input without events is refused.
BEHAVIOR_SIGNAL_LIMIT = 0.5


@dataclass
class ScoreRun:
    output: Path
    rejects: Path
    leads_in: int
    scored: int
    rejected: int
    explained: int
    reused: int
    rejected_by_reason: dict = field(default_factory=dict)
    model_name: str = ""
    model_version: str = ""
    as_of: str = ""
    scored_at: str = ""
    newly_mql: int | None = None
    events_in: int = 0
    events_rejected: int = 0
    event_rejected_by_reason: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)  # file → how it was read (separator, encoding, decimal, ...)
    warnings: list = field(default_factory=list)  # values set to missing, priority entries matching no lead, ...
    run_id: str = ""
    recovered: list = field(default_factory=list)
    previous_as_of: str | None = None
    stages: list = field(default_factory=list)  # per stage: seconds and peak memory (Stages.table())
    events_late: int = 0  # valid events at or after as_of: not used (features count events before as_of)


# ----------------------------------------------------------------------------- the model
SCORER_SHA256_TAG = "scorer_sha256"  # model-version tag: the sha256 of the registered scorer.joblib


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def registered_version_of(path) -> tuple[str, str, str]:
    """(name, version, sha256) of the registered model version whose scorer has the bytes of ``path``,
    looked up in the project's registry by the checksum recorded when it was registered. The file is
    only read, never unpickled. Raises :class:`UntrustedModel` when no version matches."""
    digest = file_sha256(path)
    from leadscore import modelcache
    from leadscore.tracking import tracking_uri

    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):].split("?", 1)[0]).exists():
        # (asking MLflow would create an empty registry database in the current folder)
        raise UntrustedModel(f"{path}: there is no model registry at {uri} to check this model file against (set "
                             f"MLFLOW_TRACKING_URI to the project's registry); a model file is code: score a "
                             f"registered model (models:/NAME@ALIAS), or pass --trust-model if you made this file "
                             f"yourself.")
    # a SQLite registry unchanged since this checksum was last looked up gives the same answer (no MLflow)
    stamp = modelcache.registry_stamp(uri)
    if stamp is not None and (hit := modelcache.lookup_version(uri, f"sha256:{digest}")) is not None:
        return hit[0], hit[1], digest
    import mlflow

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    try:
        versions, token = [], None
        while True:
            page = client.search_model_versions(max_results=200, page_token=token)
            versions += list(page)
            token = page.token
            if not token:
                break
    except Exception as exc:  # no registry there (a new database, another server down): nothing to trust
        raise UntrustedModel(f"{path}: cannot check this model file against the registry at {uri} ({exc}); a model "
                             f"file is code: score a registered model (models:/NAME@ALIAS), or pass --trust-model if "
                             f"you made this file yourself.") from exc
    for v in versions:
        if (v.tags or {}).get(SCORER_SHA256_TAG) == digest:
            modelcache.store(uri, f"sha256:{digest}", stamp, v.name, str(v.version), digest)
            return v.name, str(v.version), digest
    raise UntrustedModel(f"{path} (sha256 {digest[:12]}…) matches no model version in the registry at {uri}; a model "
                         f"file is code and loading it runs it: score a registered model (models:/NAME@ALIAS), or "
                         f"pass --trust-model if you made this file yourself.")


def load_scorer(model: str, trust_file: bool = False) -> tuple[LeadScorer, str, str]:
    """A scorer from ``models:/name@alias`` (or ``models:/name/3``, ``runs:/…``), an MLflow model folder,
    or a ``scorer.joblib``. Returns (scorer, model name, version).

    A pickle runs code when loaded: a local ``.joblib`` is loaded only when its sha256 equals the one the
    registry recorded for a version when it was registered (name and version are then that version's),
    or when ``trust_file`` (``--trust-model``) says the caller made it.

    A registered version (``models:/``) is loaded by its scorer file alone (:func:`_registered_scorer`:
    one file downloaded and checked against the sha256 recorded at registration) rather than through
    MLflow's pyfunc loader, which re-imports the package copy logged beside the model and checks the
    environment (seconds in a fresh process); a version without that checksum is loaded by the pyfunc.
    With a SQLite registry the resolution is cached (:mod:`leadscore.modelcache`): while the registry's
    database is unchanged, a fresh process loads the cached, checksum-verified scorer without MLflow."""
    if model.endswith(".joblib"):
        import joblib

        if trust_file:
            return joblib.load(model), Path(model).stem, "local"
        name, version, _ = registered_version_of(model)
        return joblib.load(model), name, version
    from leadscore import modelcache
    from leadscore.tracking import tracking_uri

    uri = tracking_uri()
    stamp = modelcache.registry_stamp(uri) if model.startswith("models:/") else None
    if stamp is not None and (hit := modelcache.lookup(uri, model)) is not None:
        return hit
    import mlflow

    mlflow.set_tracking_uri(uri)
    if model.startswith("models:/"):
        ref = model[len("models:/"):]
        client = mlflow.MlflowClient()
        if "@" in ref:
            name, alias = ref.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, number = ref.rsplit("/", 1)
            mv = client.get_model_version(name, number)
        import tempfile

        with tempfile.TemporaryDirectory(prefix="leadscore-model-") as tmp:
            found = _registered_scorer(client, mv, Path(tmp))
            if found is not None:
                scorer, path, digest = found
                modelcache.store(uri, model, stamp, name, str(mv.version), digest, path)
                return scorer, name, str(mv.version)
        return mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}").unwrap_python_model().scorer, name, str(mv.version)
    loaded = mlflow.pyfunc.load_model(model)
    return loaded.unwrap_python_model().scorer, model, ""


def _registered_scorer(client, mv, tmp: Path) -> tuple[LeadScorer, Path, str] | None:
    """The registered version's ``scorer.joblib`` (the pyfunc's one artifact), downloaded alone into
    ``tmp`` and unpickled only when its sha256 is the one recorded on the version at registration (tag
    ``scorer_sha256``): (scorer, the downloaded file, sha256). None when the version has
    no such tag or no such file (older registrations)."""
    import joblib
    import mlflow

    digest = (mv.tags or {}).get(SCORER_SHA256_TAG)
    if not digest:
        return None
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per download: noise in logs
    source = client.get_model_version_download_uri(mv.name, mv.version).rstrip("/")
    try:
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"{source}/artifacts/scorer.joblib", dst_path=str(tmp))
    except Exception:  # noqa: BLE001 - another layout (no such file): the pyfunc loader decides
        return None
    if file_sha256(path) != digest:
        raise UntrustedModel(f"models:/{mv.name}/{mv.version}: its scorer file does not have the sha256 recorded "
                             f"when it was registered ({digest[:12]}…): refusing to load it")
    return joblib.load(path), Path(path), digest


def check_schema(scorer: LeadScorer, columns) -> None:
    """Refuse a model whose features the input cannot provide, naming them."""
    have = set(columns)
    missing = [c for c in scorer.model.feature_names if c not in have]
    if missing:
        raise BatchError(f"the model was trained on {len(missing)} feature(s) this input does not produce: "
                         f"{', '.join(missing[:12])}{' …' if len(missing) > 12 else ''}. Score with the feature "
                         f"params the model was trained with, or retrain.")


def signal_shares(scorer: LeadScorer) -> tuple[dict[str, float], dict[str, float]]:
    """Each feature's and each group's (fit / behavior / account) share of the model's total gain."""
    gain = scorer.model.gain_importance()
    total = sum(gain.values()) or 1.0
    per_feature = {name: value / total for name, value in gain.items()}
    groups: dict[str, float] = {}
    for m in scorer.model.metadata:
        groups[m["group"]] = groups.get(m["group"], 0.0) + float(per_feature.get(m["name"], 0.0))
    return per_feature, groups


def absent_columns(scorer: LeadScorer, fparams, absent, header) -> tuple[list[str], list[str]]:
    """Contract columns of the leads table that this export lacks and the model reads (a feature built from
    them carried signal), one line each with the features and their share of the model's signal, split in
    (renamed, missing): renamed when a header cell is like it ('title' absent, 'Job Title' present: every
    lead would be scored as if its title were not known, though the export has it), else missing (the
    export does not hold it: the leads are scored with it not known, and a warning says so)."""
    per_feature, _ = signal_shares(scorer)
    reads = {f.name: set(re.findall(r"\bl\.(\w+)", f.sql)) for f in features.feature_specs(fparams)}
    renamed, missing = [], []
    for col in absent:
        used = [n for n, cols in reads.items() if col in cols and per_feature.get(n, 0.0) > 0]
        if not used:
            continue
        close = contract.closest_column(col, header)
        share = f"read by {', '.join(used)}: {sum(per_feature[n] for n in used):.1%} of the model's signal"
        (renamed if close else missing).append(f"'{col}' ({share}; the export has {close!r})" if close
                                               else f"'{col}' ({share})")
    return renamed, missing


def unfit_input(scorer: LeadScorer, leads_file: Path, events_file: Path | None, absent: list[str] = ()) -> list[str]:
    """Why this input is not data the model was made for, with the numbers (empty when it is): contract
    columns the model reads that are absent (``absent``, see :func:`absent_columns`), custom (mapped)
    columns the model uses that are absent or empty, or no events while behaviour features carried most of
    the model's signal."""
    per_feature, groups = signal_shares(scorer)
    problems = []
    if absent:
        problems.append(f"{len(absent)} column(s) the model reads are absent from the leads file under the "
                        f"contract's name: {'; '.join(absent)}. Rename them (README: data contract), or map the export")
    custom = [c for c in scorer.model.feature_names if c.startswith("x_")]
    if custom:
        have = set(pq.read_schema(leads_file).names)
        table = pq.read_table(leads_file, columns=[c for c in custom if c in have])
        absent = [c for c in custom if c not in have or table[c].null_count == table.num_rows]
        if absent:
            share = sum(per_feature.get(c, 0.0) for c in absent)
            problems.append(f"{len(absent)} of the model's {len(custom)} custom column(s) are absent or empty in this "
                            f"export ({', '.join(absent[:8])}{' …' if len(absent) > 8 else ''}); they carried "
                            f"{share:.0%} of its signal")
    n_events = 0 if events_file is None else parquet_rows(events_file)
    # Behaviour built from the event log (not mapped export columns, not the lead's age).
    from_events = {m["name"] for m in scorer.model.metadata
                   if m["group"] == "behavior" and not m["name"].startswith("x_") and m["name"] != "lead_age_days"}
    behavior = sum(v for k, v in per_feature.items() if k in from_events)
    if n_events == 0 and behavior > BEHAVIOR_SIGNAL_LIMIT:
        problems.append(f"the export has no events, but features from the event log carried {behavior:.0%} of the model's "
                        f"signal (more than {BEHAVIOR_SIGNAL_LIMIT:.0%}): every lead would be scored as if it had "
                        f"never engaged")
    return problems


# ----------------------------------------------------------------------------- pass-through columns
def check_keep_columns(names) -> list[str]:
    """``--keep`` names, split on commas and de-duplicated in order; raises ``ValueError`` for a name that is
    empty or is an output column (``points``, ``reasons``, ...: the output would hold two)."""
    out: list[str] = []
    for item in names or ():
        for name in str(item).split(","):
            name = name.strip()
            if not name:
                raise ValueError("--keep: a column name is empty")
            canonical = contract._canonical(name)  # 'Lead ID' is lead_id, as the contract matches headers
            if canonical in ("lead_id", *OUTPUT_TYPES, *STAMP_TYPES, *CHANGE_TYPES):
                raise ValueError(f"--keep {name}: the output already has a column {canonical!r}; "
                                 "keep another column")
            if name not in out:
                out.append(name)
    return out


def export_columns(leads_path, names: list[str], scorer: LeadScorer | None = None, read_options=None) -> pd.DataFrame:
    """The export's columns ``names`` (name, company, owner, ...) as text, one row per lead id, to pass
    through to the scores output unchanged (index: the lead id as the contract normalises it; the first row
    of a duplicated id, as the contract keeps). Names match the export's headers exactly, else ignoring case
    and punctuation (``Lead Owner`` for ``lead_owner``). With a mapping, ids come from its ``id_column``.
    Raises :class:`BatchError` naming a column the export does not have, with the ones it has."""
    from leadscore.contract import _canonical, normalise_ids
    from leadscore.reader import read_table

    mapping = getattr(scorer, "mapping", None)
    options = read_options or (getattr(mapping, "read", None) if mapping is not None else None)
    path = Path(leads_path)
    parquet = path.suffix.lower() in (".parquet", ".pq")
    frame = None if parquet else read_table(path, options).frame  # CSV: the reader reads the table whole
    columns = pq.read_schema(path).names if parquet else frame.columns.tolist()
    by_canon = {}
    for c in columns:
        by_canon.setdefault(_canonical(c), c)

    def find(name):
        return name if name in columns else by_canon.get(_canonical(name))

    missing = [n for n in names if find(n) is None]
    if missing:
        raise BatchError(f"--keep: {leads_path} has no column {', '.join(map(repr, missing))}; its columns are "
                         f"{', '.join(map(str, columns[:30]))}{' …' if len(columns) > 30 else ''}")
    id_col = mapping.id_column if mapping is not None else "lead_id"
    wanted = list(dict.fromkeys([find(n) for n in names] + ([find(id_col)] if find(id_col) else [])))
    if parquet:  # only the kept columns and the id
        frame = pd.read_parquet(path, columns=wanted)
    if id_col == "@row":  # the mapping's row number (1-based data row)
        ids = pd.Series(np.arange(1, len(frame) + 1), index=frame.index).astype("string")
    else:
        found = find(id_col)
        if found is None:
            raise BatchError(f"--keep: {leads_path} has no lead id column {id_col!r}")
        ids, _ = normalise_ids(frame[found])
    kept = pd.DataFrame({n: frame[find(n)].astype("string").str.strip().replace("", pd.NA) for n in names})
    kept.index = ids.to_numpy()
    kept = kept[kept.index.notna()]
    return kept[~kept.index.duplicated(keep="first")]


# ----------------------------------------------------------------------------- helpers
def _atomic_writer_path(out: Path) -> Path:
    """An empty temporary file beside ``out`` with the mode ``out`` will have; removed by the next run
    on ``out`` if this one dies."""
    return runstore.temp_beside(out, uuid.uuid4().hex[:12])


_REASON = re.compile(r'"sentence": "((?:[^"\\]|\\.)*)", "points": (-?\d+\.\d)')


def _reason_line(reasons_json: str) -> str:
    """One lead's listed reasons as 'sentence (+points); …' (JSON escapes decoded, controls as spaces)."""
    parts = []
    for sentence, points in _REASON.findall(reasons_json):
        if "\\" in sentence:  # few: quotes, backslashes and control characters in input values
            sentence = json.loads(f'"{sentence}"')
        parts.append(f"{CONTROL.sub(' ', sentence)} ({'' if points.startswith('-') else '+'}{points})")
    return "; ".join(parts)


def _reason_text(reasons: pd.Series, other=None) -> pd.Series:
    """'Pricing page: visited 3 times in the last 7 days (+14.2); Seniority: assistant (-8.2); all other
    factors (+1.1)' from the JSON (and ``other``, the points of the reasons not listed): the points after
    the sentence, so the text never starts with a sign (a spreadsheet would read +14.2 … as a formula);
    JSON escapes decoded, control characters shown as spaces. For reasons read back (a reused run's JSON);
    freshly scored leads get the same text from :meth:`LeadScorer.score` (``text=True``)."""
    joined = pd.Series([_reason_line(r) if isinstance(r, str) else "" for r in reasons], index=reasons.index,
                       dtype=object)
    return reason_text(joined, other).set_axis(reasons.index)


def _row_hash(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()


def _key_int(scorer: LeadScorer) -> np.uint64:
    """The scorer's :meth:`~leadscore.scoring.LeadScorer.scoring_key` as 64 bits, mixed into every row hash."""
    return np.uint64(int(scorer.scoring_key()[:16], 16))


# ----------------------------------------------------------------------------- history
def latest_history(history_dir: Path | None, as_of=None) -> pd.DataFrame | None:
    """The rows (one per lead) of the run to compare with: the last committed run of the latest as_of
    before ``as_of`` (default: the latest committed run). Runs without a manifest do not count."""
    if as_of is None:
        runs = runstore.history_runs(history_dir)
        run = runs[-1] if runs else None
    else:
        run = runstore.previous_run(history_dir, features.to_utc_naive(as_of))
    return None if run is None else pd.read_parquet(run["data_path"])


def change_since(previous: pd.DataFrame | None, current: pd.DataFrame, contrib_cols: list[str],
                 scorer: LeadScorer, X: pd.DataFrame) -> pd.DataFrame:
    """Per lead: points change since the last run, whether it newly crossed MQL, and the reasons that
    moved most (largest change of a feature's points), as sentences with the change."""
    out = pd.DataFrame(index=current.index)
    if previous is None:
        out["previous_points"] = np.nan
        out["points_change"] = np.nan
        out["newly_mql"] = current["is_mql"].to_numpy()
        out["change_reasons"] = "[]"
        return out
    prev = previous.set_index("lead_id").reindex(current["lead_id"].to_numpy())
    out["previous_points"] = prev["points"].to_numpy()
    out["points_change"] = np.round(current["points"].to_numpy() - prev["points"].to_numpy(), 1)
    out["newly_mql"] = current["is_mql"].to_numpy() & ~prev["is_mql"].fillna(False).astype(bool).to_numpy()
    # By reason group, as the reasons read: a feature column the previous run lacks counts as unchanged.
    names = [c[len("c_"):] for c in contrib_cols]
    now = current[contrib_cols].to_numpy(dtype=float)
    before = np.column_stack([prev[c].to_numpy(dtype=float) if c in prev.columns else now[:, j]
                              for j, c in enumerate(contrib_cols)]) if contrib_cols else now
    before = np.where(np.isnan(before), now, before)
    position = {f.name: f for f in scorer.features}
    feats = [position[n] for n in names if n in position]
    keys, member = group_layout(feats)
    cols = [j for j, n in enumerate(names) if n in position]
    delta = group_matrix(np.nan_to_num(now[:, cols] - before[:, cols]), member, len(keys))
    k = min(2, delta.shape[1])
    idx = np.argpartition(-np.abs(delta), k - 1, axis=1)[:, :k]
    rows = np.arange(len(delta))[:, None]
    idx = idx[rows, np.argsort(-np.abs(delta[rows, idx]), axis=1)]
    moved = np.round(delta[rows, idx], 1)
    valid = (np.abs(moved) >= 0.5) & ~np.isnan(prev["points"].to_numpy())[:, None]
    names_all = np.array(keys, dtype=object)
    text = group_sentences(feats, X, np.where(valid, idx, -1))
    out["change_reasons"] = reasons_json(names_all[idx], text, moved, valid)
    return out


# ----------------------------------------------------------------------------- the job
# DuckDB's limit for validation and features in a scoring job (it spills to disk past it). Measured on
# 1M leads / 100M events: 768MB keeps peak memory within 1.5x that of 100k leads at ~20 s more than 1GB.
SCORING_MEMORY_LIMIT = "768MB"


@dataclass
class CheckedInputs:
    """The inputs of a scoring run after the contract: validated Parquet in the work folder, and who is out."""
    leads_file: Path
    events_file: Path | None
    priority_file: Path | None
    decided: pd.DataFrame  # lead_id, outcome: decided at or before as_of, so not scored
    lead_rejects: pd.DataFrame
    event_rejects: pd.DataFrame
    leads_in: int
    event_report: contract.FileReport | None = None
    inputs: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    lead_report: contract.FileReport | None = None
    events_late: int = 0


@job_heap()  # also when called on its own (the Spark job): its collections scan only what it makes
def check_inputs(scorer: LeadScorer, leads_path, events_path, priority_path, work: Path, as_of_ts: pd.Timestamp,
                 memory_limit: str | None, read_options=None, stages: Stages | None = None) -> CheckedInputs:
    """Validate the export (through the model's mapping, if it was trained on one) into ``work``: leads in
    chunks with pandas/pandera, events streamed through DuckDB; every lead and every event valid or rejected
    with a reason. Every file is read by :mod:`leadscore.reader` (``read_options``: sep, encoding, decimal)."""
    stages = stages or Stages()
    inputs: dict = {}
    warnings: list[str] = []
    with stages("read + validate leads"):
        lead_keys, decided, lead_rejects, lead_report = _check_leads(scorer, leads_path, work, as_of_ts, read_options,
                                                                     inputs, warnings)
    event_rejects = pd.DataFrame(columns=contract.REJECT_COLUMNS)
    events_file, event_report, n_late = None, None, 0
    if events_path is not None:
        with stages("validate events"):
            event_rejects, event_report, n_late = _check_events(events_path, lead_keys, lead_rejects, work, as_of_ts,
                                                        memory_limit, read_options, inputs, warnings)
            events_file = work / "events.parquet"
    release_memory()
    priority_file = None
    if priority_path is not None:
        with stages("priority list"):
            priority = contract.read_priority_accounts(priority_path, read_options)
            if note := empty_records_note(priority.attrs.get("empty_rows")):
                warnings.append(f"{priority_path}: {note}")
            if refused := priority.attrs.get("refused"):
                warnings.append(f"{priority_path}: {len(refused):,} row(s) could not be read and are not priority "
                                f"entries: " + "; ".join(f"row {r}: {why}" for r, why, _ in refused[:10]))
            unmatched = contract.unmatched_priority(priority, lead_keys)
            if len(unmatched):
                ex = ", ".join((unmatched["domain"].where(unmatched["domain"].notna(), unmatched["account_id"]))
                               .astype(str).head(5))
                warnings.append(f"{priority_path}: {len(unmatched):,} of {len(priority):,} priority entries match no "
                                f"lead (by account_id or email domain), e.g. {ex}")
            priority.attrs = {}  # (reported above)
            priority.to_parquet(work / "priority.parquet", index=False)
            priority_file = work / "priority.parquet"
    del lead_keys
    release_memory()  # the leads' ids and the priority list's frames (1M leads: ~0.15 GiB kept otherwise)
    return CheckedInputs(work / "leads.parquet", events_file, priority_file, decided, lead_rejects, event_rejects,
                         lead_report.rows_in, event_report, inputs, warnings, lead_report, n_late)


def _check_leads(scorer: LeadScorer, leads_path, work: Path, as_of_ts: pd.Timestamp, read_options, inputs: dict,
                 warnings: list):
    """The leads table through the contract into ``work/leads.parquet``: (lead keys, decided, rejects, report)."""
    leads_source = leads_path
    lead_options = read_options
    if getattr(scorer, "mapping", None) is not None:  # the export the model was trained on needed a mapping
        from leadscore import mapping as export_mapping

        table = export_mapping.read_export_table(leads_path, read_options or getattr(scorer.mapping, "read", None))
        inputs[str(leads_path)] = table.dialect.describe()
        mapped, mreport = export_mapping.apply_mapping(table.frame, scorer.mapping, str(leads_path), scoring=True,
                                                       as_of=as_of_ts, bad_rows=table.bad_rows)
        warnings += [f"{leads_path}: {w}" for w in [*mreport.warnings, empty_records_note(table.empty_rows)] if w]
        leads_source = work / "mapped_leads.parquet"
        mapped.to_parquet(leads_source, index=False)
        lead_options = None
        del mapped
    leads, lead_rejects, lead_report = contract.validate_leads(leads_source, require_outcome=False, options=lead_options)
    if str(leads_path) not in inputs:
        inputs[str(leads_path)] = lead_report.read.get("described", "")
    warnings += [f"{leads_path}: {w}" for w in lead_report.warning_lines()]
    used = set(scorer.model.feature_names)  # an export's other x_ columns (any type) are not the model's business
    leads = leads.drop(columns=[c for c in leads.columns if str(c).startswith("x_") and c not in used])
    leads.to_parquet(work / "leads.parquet", index=False)
    # Open at as_of: a lead decided later was still open then (scoring a past moment).
    decided = leads.loc[leads["outcome"].isin(["won", "lost"]) & (leads["outcome_at"] <= as_of_ts),
                        ["lead_id", "outcome"]]
    lead_keys = leads[["lead_id", "account_id", "email_domain"]]
    assert len(leads) + len(lead_rejects) == lead_report.rows_in
    # from here on only the ids are needed: DuckDB reads the leads from Parquet
    return lead_keys, decided, lead_rejects, lead_report


def _check_events(events_path, lead_keys: pd.DataFrame, lead_rejects: pd.DataFrame, work: Path,
                  as_of_ts: pd.Timestamp, memory_limit: str | None, read_options, inputs: dict, warnings: list):
    """The event log streamed through the contract into ``work/events.parquet``: (rejects, report, number of
    valid events at or after as_of)."""
    con = features.connect(memory_limit=memory_limit)
    try:
        event_rejects, event_report = contract.validate_events(events_path, lead_keys[["lead_id"]], lead_rejects,
                                                               work / "events.parquet", con=con, options=read_options,
                                                               keep_order=False)
        n_late = con.sql(f"SELECT count(*) FROM {parquet_sql(work / 'events.parquet')} "
                         f"WHERE timestamp >= TIMESTAMP '{as_of_ts}'").fetchall()[0][0]
    finally:
        con.close()
    inputs[str(events_path)] = event_report.read.get("described", "")
    warnings += [f"{events_path}: {w}" for w in event_report.warning_lines()]
    if n_late:
        warnings.append(f"{events_path}: {n_late:,} events are at or after as_of ({as_of_ts}): valid, but not used "
                        f"(features count the events before as_of)")
    return event_rejects, event_report, n_late


def not_scored(checked: CheckedInputs, excluded: pd.DataFrame, leads_path, as_of_ts: pd.Timestamp) -> pd.DataFrame:
    """Every lead that gets no score, once, with its reason: broke the contract, not yet created at as_of
    (the feature build's exclusions), or already decided."""
    decided = checked.decided
    # Valid leads: one reason each (not yet created wins over decided). The contract's rejects are input
    # rows, kept one per row: two rows without an id, or a duplicate of a decided lead, are two rejects.
    # the value shown is the lead's own created_at (the reason names as_of)
    shown = []
    if len(excluded):
        # only the excluded leads' rows go to pandas, not every lead's id
        table = pq.read_table(checked.leads_file, columns=["lead_id", "created_at"])
        table = table.filter(pc.is_in(table["lead_id"], value_set=pa.array(excluded["lead_id"].astype(str))))
        created = table.to_pandas().set_index("lead_id")
        shown = created["created_at"].reindex(excluded["lead_id"].to_numpy())
    valid_skipped = pd.concat([
        excluded.assign(file=str(leads_path), row=pd.NA, column="created_at", stage="features",
                        value=[None if pd.isna(t) else str(t) for t in shown]),
        decided.assign(file=str(leads_path), row=pd.NA, column="outcome", reason="already decided: " + decided["outcome"],
                       value=decided["outcome"], stage="open leads only").drop(columns="outcome"),
    ], ignore_index=True)
    valid_skipped = valid_skipped.drop_duplicates("lead_id", keep="first") if len(valid_skipped) else valid_skipped
    return pd.concat([checked.lead_rejects.assign(stage="validation"), valid_skipped], ignore_index=True)


def _write_rejects(checked: CheckedInputs, skipped: pd.DataFrame, rejects_path: Path) -> Path:
    """The leads not scored and the contract's event rejects, in a temporary file beside ``rejects_path``."""
    rejects = pd.concat([skipped, checked.event_rejects.assign(stage="validation")], ignore_index=True)
    tmp_rejects = _atomic_writer_path(rejects_path)
    safecsv.to_csv(rejects, tmp_rejects, index=False)
    return tmp_rejects


def refuse_broken_export(checked: CheckedInputs, skipped: pd.DataFrame | None, leads_path, as_of_ts: pd.Timestamp,
                         rejects_path: Path, max_reject_share: float) -> None:
    """When more than ``max_reject_share`` of the leads broke the data contract: put the rejects in place and
    raise BatchError (how many, where their reasons are, how to allow more). Called right after validation
    (``skipped`` None: the contract's rejects only), before the fit check and the feature build, so that an
    export whose every lead was rejected is refused with its rejects, not with what is then missing
    downstream (no events, no timestamps)."""
    leads_in, invalid = checked.leads_in, len(checked.lead_rejects)
    if not leads_in or invalid / leads_in <= max_reject_share:
        return
    if skipped is None:
        no_exclusions = pd.DataFrame({"lead_id": pd.Series(dtype="str"), "reason": pd.Series(dtype="str")})
        skipped = not_scored(checked, no_exclusions, leads_path, as_of_ts)
    _write_rejects(checked, skipped, rejects_path).replace(rejects_path)
    raise BatchError(f"{invalid:,} of {leads_in:,} leads ({invalid / leads_in:.1%}) broke the data contract, "
                     f"more than the allowed {max_reject_share:.1%}; see {rejects_path} (--max-reject-share "
                     f"allows more). The previous output was left untouched.")


def reconcile(checked: CheckedInputs, n_scored: int, skipped: pd.DataFrame, rejects_path: Path,
              max_reject_share: float) -> Path:
    """Check that scored + not scored = leads in and that the contract's rejects stay under their share,
    before anything is replaced. Returns the rejects written to a temporary file beside ``rejects_path``
    (renamed in by the caller with the output); on too many rejects they are put in place and it raises."""
    leads_in = checked.leads_in
    if n_scored + len(skipped) != leads_in:
        raise BatchError(f"counts do not reconcile: {leads_in:,} leads in, {n_scored:,} scored, "
                         f"{len(skipped):,} not scored")
    refuse_broken_export(checked, skipped, None, None, rejects_path, max_reject_share)
    tmp_rejects = _write_rejects(checked, skipped, rejects_path)
    ev = checked.event_report
    if ev is not None:
        if ev.rows_in != ev.rows_valid + len(checked.event_rejects):
            raise BatchError(f"event counts do not reconcile: {ev.rows_in:,} in, {ev.rows_valid:,} valid, "
                             f"{len(checked.event_rejects):,} rejected")
        if ev.rows_in and ev.rows_rejected / ev.rows_in > max_reject_share:
            tmp_rejects.replace(rejects_path)
            top = "; ".join(f"{r}: {n:,}" for r, n in list(ev.rejected_by_reason.items())[:5])
            raise BatchError(f"{ev.rows_rejected:,} of {ev.rows_in:,} events ({ev.rows_rejected / ev.rows_in:.1%}) "
                             f"were rejected, more than the allowed {max_reject_share:.1%} ({top}); see "
                             f"{rejects_path}. The previous output was left untouched.")
    return tmp_rejects


# The output's columns and types (the change columns come with a score history).
OUTPUT_TYPES = {"lead_id": "str", "probability": "float64", "points": "float64", "band": "str", "fit_grade": "str",
                "engagement_grade": "str", "matrix_cell": "str", "is_mql": "bool", "reasons": "str",
                "pushed_over_mql": "str", "base_points": "float64", "other_points": "float64",
                "capped_points": "float64", "reasons_text": "str"}
STAMP_TYPES = {"model_name": "str", "model_version": "str", "as_of": "datetime64[us]", "scored_at": "datetime64[us]"}


CHANGE_TYPES = {"previous_points": "float64", "points_change": "float64", "newly_mql": "bool", "change_reasons": "str"}


def empty_output(history: bool = False, keep=()) -> pd.DataFrame:
    """The output of a run that scored no lead: no rows, the columns and types of one that did."""
    change = CHANGE_TYPES if history else {}
    kept = {c: "str" for c in keep}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in {**OUTPUT_TYPES, **change, **kept, **STAMP_TYPES}.items()})


def _check_paths(out_path: Path, history_dir: Path | None) -> None:
    """Refuse, before any work, paths the job cannot write (one sentence each)."""
    def refuse(code, path):
        raise JobIOError(runstore.os_error_sentence(OSError(code, os.strerror(code), str(path))))

    import errno

    if not out_path.parent.is_dir():
        refuse(errno.ENOENT if not out_path.parent.exists() else errno.ENOTDIR, out_path.parent)
    if out_path.is_dir():
        refuse(errno.EISDIR, out_path)
    if history_dir is not None:
        if history_dir.exists() and not history_dir.is_dir():
            refuse(errno.ENOTDIR, history_dir)
        if not history_dir.parent.is_dir():
            refuse(errno.ENOENT, history_dir.parent)


def score_leads(scorer: LeadScorer, leads_path, events_path, out_path, *, as_of=None, priority_path=None,
                model_name: str = "", model_version: str = "", chunk_size: int = 100_000, explain: str = "all",
                near_mql_points: float = 10.0, history_dir=None, max_reject_share: float = 0.05,
                feature_params=None, progress=None, workdir=None, engine: str | None = None,
                memory_limit: str = SCORING_MEMORY_LIMIT, read_options=None, lock_wait: float = 0.0,
                allow_unfit: bool = False, keep=None, stages: Stages | None = None) -> ScoreRun:
    """Score every open lead of an export; see the module docstring.

    ``keep``: export columns (name, company, owner, ...) copied as text into the output after the score
    columns, under their names (see :func:`export_columns`); a CSV output neutralises formula-like cells
    in them as in every column (:mod:`leadscore.safecsv`). ``ValueError`` for a name that is an output column.

    ``stages`` (:class:`leadscore.stages.Stages`) collects the time and peak memory of each stage of the
    job; the run returns them in ``ScoreRun.stages`` either way.

    Raises :class:`BatchError` (refused: exit 4), :class:`JobBusy` (another job writes the same output
    or history) and :class:`JobIOError` (the operating system refused a file operation); in every case
    the previous output, rejects and history are as they were."""
    if explain not in EXPLAIN_MODES:
        raise ValueError(f"explain must be one of {', '.join(EXPLAIN_MODES)}")
    if explain == "changed" and history_dir is None:
        raise ValueError("--explain changed reuses the last run's reasons: give a history folder")
    keep = check_keep_columns(keep)
    out_path = Path(out_path)
    history_dir = Path(history_dir) if history_dir is not None else None
    fparams = feature_params or scorer.feature_params
    if fparams is None:
        raise BatchError("the model does not record its feature params; pass them explicitly")
    as_of_ts = (contract.parse_moment(as_of, "--as-of") if as_of is not None
                else pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s"))
    rejects_path = out_path.with_name(out_path.stem + ".rejects.csv")
    run_id = runstore.new_run_id()
    try:
        _check_paths(out_path, history_dir)
        if history_dir is not None:
            history_dir.mkdir(exist_ok=True)
        locks = {runstore.file_lock(out_path): str(out_path), runstore.file_lock(rejects_path): str(rejects_path)}
        if history_dir is not None:
            locks[history_dir / ".lock"] = f"the history {history_dir}"
        with runstore.locked(locks, run_id, lock_wait):
            recovered = runstore.recover(out_path, rejects_path)
            if history_dir is not None:
                recovered += runstore.sweep_history(history_dir)
            runstore.sweep_work_dirs()
            run = _score_locked(scorer, leads_path, events_path, out_path, rejects_path, run_id, as_of_ts,
                                priority_path, model_name, model_version, chunk_size, explain, near_mql_points,
                                history_dir, max_reject_share, fparams, progress, workdir, engine, memory_limit,
                                allow_unfit, read_options, keep, stages or Stages())
            run.recovered = recovered
            return run
    except OSError as exc:
        raise JobIOError(runstore.os_error_sentence(exc, str(out_path))) from exc


@job_heap()  # the collections between chunks scan only what the job makes
def _score_locked(scorer, leads_path, events_path, out_path, rejects_path, run_id, as_of_ts, priority_path,
                  model_name, model_version, chunk_size, explain, near_mql_points, history_dir, max_reject_share,
                  fparams, progress, workdir, engine, memory_limit, allow_unfit, read_options=None,
                  keep=(), stages: Stages | None = None) -> ScoreRun:
    """The job, holding the locks of its output, rejects and history."""
    stages = stages or Stages()
    scored_at = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    if workdir is None:
        work, owner_fd = runstore.make_work_dir()
    else:
        work, owner_fd = Path(workdir), None
        work.mkdir(parents=True, exist_ok=True)
    tmp_out = tmp_rejects = None
    try:
        runstore.phase("started")
        tmp_out = runstore.temp_beside(out_path, run_id)
        # 1. the contract: every lead valid or rejected with its reason
        checked = check_inputs(scorer, leads_path, events_path, priority_path, work, as_of_ts, memory_limit,
                               read_options, stages)
        refuse_broken_export(checked, None, leads_path, as_of_ts, rejects_path, max_reject_share)
        with stages("model fit check"):
            report = checked.lead_report
            renamed, missing = absent_columns(scorer, fparams, report.columns_added, report.columns) if report else ([], [])
            unfit = unfit_input(scorer, checked.leads_file, checked.events_file, renamed)
            checked.warnings += [f"{leads_path}: column absent, every lead scored with it not known: {m}" for m in missing]
        if unfit and not allow_unfit:
            raise BatchError("this export is not data the model was made for: " + "; ".join(unfit)
                             + ". Score with a model trained on such data, or pass --allow-unfit to score anyway.")

        # 2. features at as_of, with the model's own feature definitions
        extra = [m for m in scorer.model.metadata if m["name"].startswith("x_")]
        # DuckDB spills past memory_limit: the job's memory does not grow with the export.
        with stages("feature build"):
            con = features.connect(memory_limit=memory_limit)
            try:
                build = features.build_features(checked.leads_file, checked.events_file, work / "features", fparams,
                                                priority_path=checked.priority_file, as_of=as_of_ts, extra=extra,
                                                con=con)
            finally:
                con.close()  # its buffers go back before scoring starts
                release_memory()
        feature_file = pq.ParquetFile(build.features)
        check_schema(scorer, feature_file.schema_arrow.names)
        decided_ids = set(checked.decided["lead_id"])
        kept = export_columns(leads_path, list(keep), scorer, read_options) if keep else None

        # 3. who is not scored, and why
        with stages("rejects + commit"):
            skipped = not_scored(checked, pd.read_csv(build.exclusions, dtype={"lead_id": str}), leads_path, as_of_ts)

        previous_run = runstore.previous_run(history_dir, as_of_ts)
        previous = pd.read_parquet(previous_run["data_path"]) if previous_run else None
        contrib_cols = [f"c_{n}" for n in scorer.model.feature_names]
        history_parts = []
        n_scored = n_explained = n_reused = n_new_mql = 0
        writer = None
        sink = open(tmp_out, "wb")
        try:
            for batch in feature_file.iter_batches(batch_size=chunk_size):
                with stages("model input preparation"):
                    X = batch.to_pandas()
                    X = X[~X["lead_id"].isin(decided_ids)].reset_index(drop=True)
                    for c in (m["name"] for m in scorer.model.metadata if m["kind"] == "categorical"):
                        X[c] = X[c].astype("category")
                if X.empty:
                    continue
                chunk, contrib, hashes, n_exp, n_reuse = _score_chunk(scorer, X, explain, near_mql_points, previous,
                                                                      engine, stages)
                n_explained += n_exp
                n_reused += n_reuse
                chunk.insert(0, "lead_id", X["lead_id"].to_numpy())
                if history_dir is not None or previous is not None:
                    cur = pd.concat([chunk[["lead_id", "points", "is_mql"]],
                                     pd.DataFrame(contrib, columns=contrib_cols)], axis=1)
                    change = change_since(previous, cur, contrib_cols, scorer, X)
                    chunk = pd.concat([chunk, change.reset_index(drop=True)], axis=1)
                    n_new_mql += int(change["newly_mql"].sum())
                    history_parts.append(pd.concat([chunk[["lead_id"] + SCORE_COLUMNS].reset_index(drop=True),
                                                    pd.DataFrame(contrib, columns=contrib_cols).astype("float32"),
                                                    pd.DataFrame({"feature_hash": hashes})], axis=1))
                if kept is not None:
                    values = kept.reindex(chunk["lead_id"].to_numpy())
                    for c in keep:
                        chunk[c] = values[c].astype(object).where(values[c].notna(), None).to_numpy()
                with stages("output write"):
                    chunk["model_name"], chunk["model_version"] = model_name, model_version
                    chunk["as_of"], chunk["scored_at"] = as_of_ts, scored_at
                    table = pa.Table.from_pandas(chunk, preserve_index=False)
                    if out_path.suffix.lower() == ".csv":
                        safecsv.to_csv(chunk, sink, index=False, header=writer is None)
                        writer = writer or True
                    else:
                        writer = writer or pq.ParquetWriter(sink, table.schema, compression="zstd")
                        writer.write_table(table.cast(writer.schema))
                n_scored += len(chunk)
                if progress:
                    progress(len(chunk))
                del X, chunk, contrib, table
                release_memory()
            if isinstance(writer, pq.ParquetWriter):
                writer.close()
            elif writer is None:  # nothing to score: still a valid output, with every column
                empty = empty_output(history=history_dir is not None or previous is not None, keep=keep)
                empty.to_parquet(sink, index=False) if out_path.suffix.lower() != ".csv" else safecsv.to_csv(empty, sink, index=False)

        finally:  # on an interrupt too: close what is open; the partial file is removed below
            if isinstance(writer, pq.ParquetWriter) and writer.is_open:
                writer.close()
            sink.close()

        with stages("rejects + commit"):
            # 4. reconcile before replacing anything
            tmp_rejects = reconcile(checked, n_scored, skipped, rejects_path, max_reject_share)
            runstore.phase("scored")

            # 5. commit output, rejects and the history record together (runstore's protocol)
            manifest_path = data_path = manifest = None
            if history_dir is not None:
                part = runstore.partition(history_dir, as_of_ts)
                part.mkdir(exist_ok=True)
                data_path = part / f"run-{run_id}.parquet"
                rows = (pd.concat(history_parts, ignore_index=True) if history_parts
                        else pd.DataFrame(columns=["lead_id"] + SCORE_COLUMNS + contrib_cols + ["feature_hash"]))
                rows.to_parquet(data_path, index=False)
                manifest_path = data_path.with_suffix(".json")
                manifest = {"run_id": run_id, "as_of": as_of_ts.isoformat(), "scored_at": scored_at.isoformat(),
                            "data": data_path.name, "rows": len(rows), "model_name": model_name,
                            "model_version": model_version, "output": str(out_path), "rejects": str(rejects_path),
                            "previous_run": previous_run["run_id"] if previous_run else None}
                runstore.phase("history-written")
            runstore.commit(run_id, [(tmp_out, out_path), (tmp_rejects, rejects_path)], manifest_path, manifest, data_path)
        return ScoreRun(out_path, rejects_path, checked.leads_in, n_scored, len(skipped), n_explained, n_reused,
                        skipped["reason"].value_counts().to_dict() if len(skipped) else {}, model_name, model_version,
                        str(as_of_ts), str(scored_at), n_new_mql if previous is not None else None,
                        *((ev.rows_in, ev.rows_rejected, ev.rejected_by_reason) if (ev := checked.event_report)
                          else (0, 0, {})), checked.inputs,
                        [*checked.warnings, *(f"scored anyway (--allow-unfit): {u}" for u in unfit)],
                        run_id=run_id, previous_as_of=previous_run["as_of"] if previous_run else None,
                        stages=stages.table(), events_late=checked.events_late)
    finally:
        for tmp in (tmp_out, tmp_rejects):
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
        if workdir is None:
            runstore.remove_work_dir(work, owner_fd)


def _score_chunk(scorer: LeadScorer, X: pd.DataFrame, explain: str, near: float, previous: pd.DataFrame | None,
                 engine: str | None = None, stages: Stages | None = None):
    """Scores for one chunk; reasons for the leads the explain mode selects."""
    stages = stages or Stages()
    # The reuse key: the lead's features and everything else that decides its row (model, points scale,
    # bands, reasons, MQL threshold: LeadScorer.scoring_key); a change to any of them recomputes.
    with stages("model input preparation"):
        hashes = _row_hash(X, scorer.model.feature_names) ^ _key_int(scorer)
    n = len(X)
    reuse = np.zeros(n, bool)
    if explain == "changed" and previous is not None and "feature_hash" in previous:
        prev = previous.set_index("lead_id").reindex(X["lead_id"].to_numpy())
        reuse = (prev["feature_hash"].to_numpy() == hashes) & prev["points"].notna().to_numpy()
    if explain == "mql":
        with stages("prediction"):
            _, points = scorer.points_only(X)
        todo = points >= scorer.mql_threshold - near
    elif explain == "none":
        todo = np.zeros(n, bool)
    else:
        todo = ~reuse
    out = pd.DataFrame(index=range(n), columns=SCORE_COLUMNS + ["reasons_text"], dtype=object)
    contrib = np.full((n, len(scorer.model.feature_names)), np.nan)
    if todo.any():
        sub = X[todo]
        with stages("SHAP"):
            exp = scorer.explain(sub, engine)
        with stages("reason text"):
            scored = scorer.score(sub, explanation=exp, text=True)
            out.loc[np.flatnonzero(todo), SCORE_COLUMNS + ["reasons_text"]] = \
                scored[SCORE_COLUMNS + ["reasons_text"]].to_numpy()
        contrib[todo] = exp.contributions
    rest = ~todo & ~reuse
    if rest.any():  # scored, not explained: points, band and MQL flag only
        with stages("prediction"):
            prob, points, raw = scorer.points_detail(X[rest])
            from leadscore.scoring import grade

            out.loc[np.flatnonzero(rest), "probability"] = prob
            out.loc[np.flatnonzero(rest), "points"] = points
            base, capped = round(scorer.base_points(), 1), np.round(points - raw, 1) + 0.0
            out.loc[np.flatnonzero(rest), "base_points"] = base
            out.loc[np.flatnonzero(rest), "capped_points"] = capped
            out.loc[np.flatnonzero(rest), "other_points"] = np.round(points - base - capped, 1) + 0.0
            out.loc[np.flatnonzero(rest), "band"] = grade(points, scorer.params.bands, "D")
            out.loc[np.flatnonzero(rest), "is_mql"] = points >= scorer.mql_threshold
            # grades are sums of reasons: not known without them; no reason text (not "All other factors")
            out.loc[np.flatnonzero(rest), ["fit_grade", "engagement_grade", "matrix_cell", "reasons_text"]] = None
            out.loc[np.flatnonzero(rest), ["reasons", "pushed_over_mql"]] = ['{"positive": [], "negative": []}', "[]"]
    if reuse.any():
        prev = previous.set_index("lead_id").reindex(X["lead_id"].to_numpy()[reuse])
        out.loc[np.flatnonzero(reuse), SCORE_COLUMNS] = prev[SCORE_COLUMNS].to_numpy()
        with stages("reason text"):  # the text of the reasons read back
            out.loc[np.flatnonzero(reuse), "reasons_text"] = _reason_text(prev["reasons"], prev["other_points"]).to_numpy()
        cols = [f"c_{c}" for c in scorer.model.feature_names]
        contrib[reuse] = prev[cols].to_numpy(dtype=float)
    # text columns typed as text whatever a chunk holds (a chunk with no grades would be Arrow's null type, and
    # a history of an --explain none run then an all run could not be read as one dataset)
    out = out.astype({"probability": float, "points": float, "is_mql": bool, "base_points": float,
                      "other_points": float, "capped_points": float,
                      **{c: "str" for c in ("band", "fit_grade", "engagement_grade", "matrix_cell", "reasons",
                                            "pushed_over_mql", "reasons_text")}})
    return out, contrib, hashes, int(todo.sum()), int(reuse.sum())
