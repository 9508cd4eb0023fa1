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
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from leadscore import contract, features, safecsv
from leadscore.scoring import LeadScorer, reasons_json, sentences

EXPLAIN_MODES = ("all", "mql", "changed", "none")
SCORE_COLUMNS = ["probability", "points", "band", "fit_grade", "engagement_grade", "matrix_cell", "is_mql",
                 "reasons", "pushed_over_mql"]


class BatchError(RuntimeError):
    """The job cannot produce a trustworthy output (schema mismatch, too many rejects)."""


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


# ----------------------------------------------------------------------------- the model
def load_scorer(model: str) -> tuple[LeadScorer, str, str]:
    """A scorer from ``models:/name@alias`` (or ``models:/name/3``, ``runs:/…``), an MLflow model folder,
    or a ``scorer.joblib``. Returns (scorer, model name, version)."""
    if model.endswith(".joblib"):
        import joblib

        return joblib.load(model), Path(model).stem, "local"
    import mlflow

    from leadscore.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    loaded = mlflow.pyfunc.load_model(model)
    scorer = loaded.unwrap_python_model().scorer
    name, version = model, ""
    if model.startswith("models:/"):
        ref = model[len("models:/"):]
        client = mlflow.MlflowClient()
        if "@" in ref:
            name, alias = ref.split("@", 1)
            version = client.get_model_version_by_alias(name, alias).version
        else:
            name, version = ref.rsplit("/", 1)
    return scorer, name, str(version)


def check_schema(scorer: LeadScorer, columns) -> None:
    """Refuse a model whose features the input cannot provide, naming them."""
    have = set(columns)
    missing = [c for c in scorer.model.feature_names if c not in have]
    if missing:
        raise BatchError(f"the model was trained on {len(missing)} feature(s) this input does not produce: "
                         f"{', '.join(missing[:12])}{' …' if len(missing) > 12 else ''}. Score with the feature "
                         f"params the model was trained with, or retrain.")


# ----------------------------------------------------------------------------- helpers
def _atomic_writer_path(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(fd)
    return Path(tmp)


def _reason_text(reasons: pd.Series) -> pd.Series:
    """'Visited the pricing page 3 times… (+14.2); Title seniority is assistant (-8.2)' from the JSON: the
    points after the sentence, so the text never starts with a sign (a spreadsheet would read +14.2 … as a
    formula); JSON escapes decoded, control characters shown as spaces."""
    parts = reasons.astype(str).str.extractall(r'"sentence": "(?P<sentence>(?:[^"\\]|\\.)*)", "points": (?P<points>-?\d+\.\d)')
    if parts.empty:
        return pd.Series("", index=reasons.index, dtype=object)
    sentence = parts["sentence"].astype(object)
    escaped = sentence.str.contains("\\", regex=False).to_numpy(dtype=bool)
    if escaped.any():  # few: quotes, backslashes and control characters in input values
        sentence[escaped] = [json.loads(f'"{t}"') for t in sentence[escaped]]
    sentence = sentence.astype(str).str.replace(r"[\x00-\x1f\x7f]", " ", regex=True)
    sign = np.where(parts["points"].str.startswith("-"), "", "+")
    text = sentence + " (" + sign + parts["points"] + ")"
    return text.groupby(level=0).agg("; ".join).reindex(reasons.index, fill_value="")


def _row_hash(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()


# ----------------------------------------------------------------------------- history
def latest_history(history_dir: Path | None) -> pd.DataFrame | None:
    """The most recent earlier run's rows, one per lead, from the partitioned history."""
    if history_dir is None or not Path(history_dir).exists():
        return None
    files = sorted(Path(history_dir).glob("date=*/run-*.parquet"))
    if not files:
        return None
    return pd.read_parquet(files[-1])


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
    have = [c for c in contrib_cols if c in prev.columns]
    now = current[have].to_numpy(dtype=float)
    before = prev[have].to_numpy(dtype=float)
    delta = np.where(np.isnan(before), 0.0, now - before)
    k = min(2, delta.shape[1])
    idx = np.argpartition(-np.abs(delta), k - 1, axis=1)[:, :k]
    rows = np.arange(len(delta))[:, None]
    idx = idx[rows, np.argsort(-np.abs(delta[rows, idx]), axis=1)]
    moved = delta[rows, idx]
    valid = (np.abs(moved) >= 0.5) & ~np.isnan(prev["points"].to_numpy())[:, None]
    names_all = np.array([c[len("c_"):] for c in have], dtype=object)
    feats = [f for f in scorer.features if f.name in set(names_all)]
    position = {f.name: i for i, f in enumerate(feats)}
    f_idx = pd.Series(names_all[idx].ravel()).map(position).to_numpy().reshape(idx.shape)
    text = sentences(feats, X, np.where(valid, f_idx, -1))
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


def check_inputs(scorer: LeadScorer, leads_path, events_path, priority_path, work: Path, as_of_ts: pd.Timestamp,
                 memory_limit: str | None, read_options=None) -> CheckedInputs:
    """Validate the export (through the model's mapping, if it was trained on one) into ``work``: leads in
    chunks with pandas/pandera, events streamed through DuckDB; every lead and every event valid or rejected
    with a reason. Every file is read by :mod:`leadscore.reader` (``read_options``: sep, encoding, decimal)."""
    leads_source = leads_path
    inputs: dict = {}
    warnings: list[str] = []
    lead_options = read_options
    if getattr(scorer, "mapping", None) is not None:  # the export the model was trained on needed a mapping
        from leadscore import mapping as export_mapping

        table = export_mapping.read_export_table(leads_path, read_options or getattr(scorer.mapping, "read", None))
        inputs[str(leads_path)] = table.dialect.describe()
        mapped, mreport = export_mapping.apply_mapping(table.frame, scorer.mapping, str(leads_path), scoring=True,
                                                       as_of=as_of_ts, bad_rows=table.bad_rows)
        warnings += [f"{leads_path}: {w}" for w in mreport.warnings]
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
    del leads  # from here on only the ids are needed: DuckDB reads the leads from Parquet
    event_rejects = pd.DataFrame(columns=contract.REJECT_COLUMNS)
    events_file, event_report = None, None
    if events_path is not None:
        con = features.connect(memory_limit=memory_limit)
        try:
            event_rejects, event_report = contract.validate_events(events_path, lead_keys[["lead_id"]], lead_rejects,
                                                                   work / "events.parquet", con=con,
                                                                   options=read_options)
            n_late = con.sql(f"SELECT count(*) FROM read_parquet('{work / 'events.parquet'}') "
                             f"WHERE timestamp > TIMESTAMP '{as_of_ts}'").fetchall()[0][0]
        finally:
            con.close()
        events_file = work / "events.parquet"
        inputs[str(events_path)] = event_report.read.get("described", "")
        warnings += [f"{events_path}: {w}" for w in event_report.warning_lines()]
        if n_late:
            warnings.append(f"{events_path}: {n_late:,} events are after as_of ({as_of_ts}): not used")
    release_memory()
    priority_file = None
    if priority_path is not None:
        priority = contract.read_priority_accounts(priority_path, read_options)
        unmatched = contract.unmatched_priority(priority, lead_keys)
        if len(unmatched):
            ex = ", ".join((unmatched["domain"].where(unmatched["domain"].notna(), unmatched["account_id"]))
                           .astype(str).head(5))
            warnings.append(f"{priority_path}: {len(unmatched):,} of {len(priority):,} priority entries match no "
                            f"lead (by account_id or email domain), e.g. {ex}")
        priority.to_parquet(work / "priority.parquet", index=False)
        priority_file = work / "priority.parquet"
    del lead_keys
    return CheckedInputs(work / "leads.parquet", events_file, priority_file, decided, lead_rejects, event_rejects,
                         lead_report.rows_in, event_report, inputs, warnings)


def not_scored(checked: CheckedInputs, excluded: pd.DataFrame, leads_path, as_of_ts: pd.Timestamp) -> pd.DataFrame:
    """Every lead that gets no score, once, with its reason: broke the contract, not yet created at as_of
    (the feature build's exclusions), or already decided."""
    decided = checked.decided
    # Valid leads: one reason each (not yet created wins over decided). The contract's rejects are input
    # rows, kept one per row: two rows without an id, or a duplicate of a decided lead, are two rejects.
    valid_skipped = pd.concat([
        excluded.assign(file=str(leads_path), row=pd.NA, column="created_at", value=str(as_of_ts), stage="features"),
        decided.assign(file=str(leads_path), row=pd.NA, column="outcome", reason="already decided: " + decided["outcome"],
                       value=decided["outcome"], stage="open leads only").drop(columns="outcome"),
    ], ignore_index=True)
    valid_skipped = valid_skipped.drop_duplicates("lead_id", keep="first") if len(valid_skipped) else valid_skipped
    return pd.concat([checked.lead_rejects.assign(stage="validation"), valid_skipped], ignore_index=True)


def reconcile(checked: CheckedInputs, n_scored: int, skipped: pd.DataFrame, rejects_path: Path,
              max_reject_share: float) -> Path:
    """Check that scored + not scored = leads in and that the contract's rejects stay under their share,
    before anything is replaced. Returns the rejects written to a temporary file beside ``rejects_path``
    (renamed in by the caller with the output); on too many rejects they are put in place and it raises."""
    leads_in = checked.leads_in
    if n_scored + len(skipped) != leads_in:
        raise BatchError(f"counts do not reconcile: {leads_in:,} leads in, {n_scored:,} scored, "
                         f"{len(skipped):,} not scored")
    rejects = pd.concat([skipped, checked.event_rejects.assign(stage="validation")], ignore_index=True)
    tmp_rejects = _atomic_writer_path(rejects_path)
    safecsv.to_csv(rejects, tmp_rejects, index=False)
    invalid = len(checked.lead_rejects)
    if leads_in and invalid / leads_in > max_reject_share:
        tmp_rejects.replace(rejects_path)
        raise BatchError(f"{invalid:,} of {leads_in:,} leads ({invalid / leads_in:.1%}) broke the data contract, "
                         f"more than the allowed {max_reject_share:.1%}; see {rejects_path}. The previous output "
                         f"was left untouched.")
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
                "pushed_over_mql": "str", "reasons_text": "str"}
STAMP_TYPES = {"model_name": "str", "model_version": "str", "as_of": "datetime64[us]", "scored_at": "datetime64[us]"}


def empty_output(history: bool = False) -> pd.DataFrame:
    """The output of a run that scored no lead: no rows, the columns and types of one that did."""
    change = {"previous_points": "float64", "points_change": "float64", "newly_mql": "bool",
              "change_reasons": "str"} if history else {}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in {**OUTPUT_TYPES, **change, **STAMP_TYPES}.items()})


def release_memory() -> None:
    """Hand freed heap back to the operating system between chunks and stages.

    Without it glibc keeps the fragmented arenas of every chunk scored so far (measured: 1M leads with
    reasons peaked at 1.52 GiB in the scoring loop against 1.23 GiB for 100k; with it 1.31 GiB), so peak
    memory would creep up with the number of leads. A no-op where there is no glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


def score_leads(scorer: LeadScorer, leads_path, events_path, out_path, *, as_of=None, priority_path=None,
                model_name: str = "", model_version: str = "", chunk_size: int = 100_000, explain: str = "all",
                near_mql_points: float = 10.0, history_dir=None, max_reject_share: float = 0.05,
                feature_params=None, progress=None, workdir=None, engine: str | None = None,
                memory_limit: str = SCORING_MEMORY_LIMIT, read_options=None) -> ScoreRun:
    """Score every open lead of an export; see the module docstring."""
    if explain not in EXPLAIN_MODES:
        raise ValueError(f"explain must be one of {', '.join(EXPLAIN_MODES)}")
    if explain == "changed" and history_dir is None:
        raise ValueError("--explain changed reuses the last run's reasons: give a history folder")
    out_path = Path(out_path)
    fparams = feature_params or scorer.feature_params
    if fparams is None:
        raise BatchError("the model does not record its feature params; pass them explicitly")
    as_of_ts = (contract.parse_moment(as_of, "--as-of") if as_of is not None
                else pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s"))
    scored_at = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    work = Path(workdir or tempfile.mkdtemp(prefix="leadscore-score-"))
    work.mkdir(parents=True, exist_ok=True)
    tmp_out = _atomic_writer_path(out_path)
    rejects_path = out_path.with_name(out_path.stem + ".rejects.csv")
    try:
        # 1. the contract: every lead valid or rejected with its reason
        checked = check_inputs(scorer, leads_path, events_path, priority_path, work, as_of_ts, memory_limit,
                               read_options)

        # 2. features at as_of, with the model's own feature definitions
        extra = [m for m in scorer.model.metadata if m["name"].startswith("x_")]
        # DuckDB spills past memory_limit: the job's memory does not grow with the export.
        con = features.connect(memory_limit=memory_limit)
        try:
            build = features.build_features(checked.leads_file, checked.events_file, work / "features", fparams,
                                            priority_path=checked.priority_file, as_of=as_of_ts, extra=extra, con=con)
        finally:
            con.close()  # its buffers go back before scoring starts
        feature_file = pq.ParquetFile(build.features)
        check_schema(scorer, feature_file.schema_arrow.names)
        decided_ids = set(checked.decided["lead_id"])

        # 3. who is not scored, and why
        skipped = not_scored(checked, pd.read_csv(build.exclusions, dtype={"lead_id": str}), leads_path, as_of_ts)

        previous = latest_history(history_dir)
        contrib_cols = [f"c_{n}" for n in scorer.model.feature_names]
        history_parts = []
        n_scored = n_explained = n_reused = n_new_mql = 0
        writer = None
        sink = open(tmp_out, "wb")
        try:
            for batch in feature_file.iter_batches(batch_size=chunk_size):
                X = batch.to_pandas()
                X = X[~X["lead_id"].isin(decided_ids)].reset_index(drop=True)
                if X.empty:
                    continue
                for c in (m["name"] for m in scorer.model.metadata if m["kind"] == "categorical"):
                    X[c] = X[c].astype("category")
                chunk, contrib, hashes, n_exp, n_reuse = _score_chunk(scorer, X, explain, near_mql_points, previous, engine)
                n_explained += n_exp
                n_reused += n_reuse
                chunk.insert(0, "lead_id", X["lead_id"].to_numpy())
                chunk["reasons_text"] = _reason_text(chunk["reasons"]).to_numpy()
                if history_dir is not None or previous is not None:
                    cur = pd.concat([chunk[["lead_id", "points", "is_mql"]],
                                     pd.DataFrame(contrib, columns=contrib_cols)], axis=1)
                    change = change_since(previous, cur, contrib_cols, scorer, X)
                    chunk = pd.concat([chunk, change.reset_index(drop=True)], axis=1)
                    n_new_mql += int(change["newly_mql"].sum())
                    history_parts.append(pd.concat([chunk[["lead_id"] + SCORE_COLUMNS].reset_index(drop=True),
                                                    pd.DataFrame(contrib, columns=contrib_cols).astype("float32"),
                                                    pd.DataFrame({"feature_hash": hashes})], axis=1))
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
                empty = empty_output(history=history_dir is not None or previous is not None)
                empty.to_parquet(sink, index=False) if out_path.suffix.lower() != ".csv" else safecsv.to_csv(empty, sink, index=False)

        finally:  # on an interrupt too: close what is open; the partial file is removed below
            if isinstance(writer, pq.ParquetWriter) and writer.is_open:
                writer.close()
            sink.close()

        # 4. reconcile before replacing anything
        tmp_rejects = reconcile(checked, n_scored, skipped, rejects_path, max_reject_share)
        os.replace(tmp_out, out_path)
        tmp_rejects.replace(rejects_path)
        if history_dir is not None and history_parts:
            part = Path(history_dir) / f"date={scored_at.date()}"
            part.mkdir(parents=True, exist_ok=True)
            pd.concat(history_parts, ignore_index=True).to_parquet(
                part / f"run-{scored_at.strftime('%Y%m%dT%H%M%S')}.parquet", index=False)
        return ScoreRun(out_path, rejects_path, checked.leads_in, n_scored, len(skipped), n_explained, n_reused,
                        skipped["reason"].value_counts().to_dict() if len(skipped) else {}, model_name, model_version,
                        str(as_of_ts), str(scored_at), n_new_mql if previous is not None else None,
                        *((ev.rows_in, ev.rows_rejected, ev.rejected_by_reason) if (ev := checked.event_report)
                          else (0, 0, {})), checked.inputs, checked.warnings)
    finally:
        if tmp_out.exists():
            tmp_out.unlink()
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def _score_chunk(scorer: LeadScorer, X: pd.DataFrame, explain: str, near: float, previous: pd.DataFrame | None,
                 engine: str | None = None):
    """Scores for one chunk; reasons for the leads the explain mode selects."""
    hashes = _row_hash(X, scorer.model.feature_names)
    n = len(X)
    reuse = np.zeros(n, bool)
    if explain == "changed" and previous is not None and "feature_hash" in previous:
        prev = previous.set_index("lead_id").reindex(X["lead_id"].to_numpy())
        reuse = (prev["feature_hash"].to_numpy() == hashes) & prev["points"].notna().to_numpy()
    if explain == "mql":
        _, points = scorer.points_only(X)
        todo = points >= scorer.mql_threshold - near
    elif explain == "none":
        todo = np.zeros(n, bool)
    else:
        todo = ~reuse
    out = pd.DataFrame(index=range(n), columns=SCORE_COLUMNS, dtype=object)
    contrib = np.full((n, len(scorer.model.feature_names)), np.nan)
    if todo.any():
        sub = X[todo]
        exp = scorer.explain(sub, engine)
        scored = scorer.score(sub, explanation=exp)
        out.loc[np.flatnonzero(todo), SCORE_COLUMNS] = scored[SCORE_COLUMNS].to_numpy()
        contrib[todo] = exp.contributions
    rest = ~todo & ~reuse
    if rest.any():  # scored, not explained: points, band and MQL flag only
        prob, points = scorer.points_only(X[rest])
        from leadscore.scoring import grade

        out.loc[np.flatnonzero(rest), "probability"] = prob
        out.loc[np.flatnonzero(rest), "points"] = points
        out.loc[np.flatnonzero(rest), "band"] = grade(points, scorer.params.bands, "D")
        out.loc[np.flatnonzero(rest), "is_mql"] = points >= scorer.mql_threshold
        out.loc[np.flatnonzero(rest), ["fit_grade", "engagement_grade", "matrix_cell"]] = ""
        out.loc[np.flatnonzero(rest), ["reasons", "pushed_over_mql"]] = ['{"positive": [], "negative": []}', "[]"]
    if reuse.any():
        prev = previous.set_index("lead_id").reindex(X["lead_id"].to_numpy()[reuse])
        out.loc[np.flatnonzero(reuse), SCORE_COLUMNS] = prev[SCORE_COLUMNS].to_numpy()
        cols = [f"c_{c}" for c in scorer.model.feature_names]
        contrib[reuse] = prev[cols].to_numpy(dtype=float)
    out = out.astype({"probability": float, "points": float, "is_mql": bool})
    return out, contrib, hashes, int(todo.sum()), int(reuse.sum())
