"""The `leadscore` command: what users, schedulers and DVC stages call.

Exit codes: 0 success, 2 bad usage, 3 input breaks the data contract, 4 scoring refused (model schema
mismatch, too many rejected leads, data the model was not made for, a model file the registry does not
know), 5 the operating system refused a file operation (read-only or missing folder, full disk, a folder
where a file should be) or memory ran out under the job's DuckDB limit, 6 another job is writing the same output or history, 130 interrupted (SIGINT or
SIGTERM). On every non-zero exit the previous output, rejects and history are as they were. A user mistake (an
unreadable or ambiguous --as-of, a bad option value, an unknown model or alias) exits 2 before anything is
read or written, and before the model loads where possible.
"""

from __future__ import annotations

import warnings
from pathlib import Path

# pandera imports pyspark.pandas whenever pyspark (the optional `spark` extra) is installed, and
# pyspark warns about pandas 3 on import; leadscore's Spark path was checked against pandas 3.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)

import typer  # noqa: E402
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from leadscore.config import load_params

app = typer.Typer(help="leadscore: predictive lead scoring from CRM and marketing-automation exports.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)


def _width_off_terminal() -> int | None:
    """Columns for output that is not a terminal (a pipe, a file, a scheduler's or CI's log): rich would
    break every line at 80 columns, cutting paths and ids in two (they can then be neither copied nor
    searched) and squeezing the help. Such output gets 160 columns, and messages are never broken (soft
    wrap). A terminal keeps its width; COLUMNS or TERMINAL_WIDTH, when set, win."""
    import os
    import sys

    if os.environ.get("COLUMNS") or os.environ.get("TERMINAL_WIDTH") or sys.stderr.isatty() or sys.stdout.isatty():
        return None
    return 160


_WIDTH = _width_off_terminal()
if _WIDTH:
    import typer.rich_utils

    typer.rich_utils.MAX_WIDTH = _WIDTH  # the help, as typer's TERMINAL_WIDTH would set it
console = Console(stderr=True, soft_wrap=True, width=_WIDTH)
EXIT_USAGE = 2
EXIT_CONTRACT = 3
EXIT_BATCH = 4
OUTPUT_SUFFIXES = (".csv", ".parquet")
SHAP_ENGINES = ("fast", "lightgbm")
EXIT_IO = 5
EXIT_BUSY = 6
EXIT_INTERRUPTED = 130

ParamsOpt = typer.Option(Path("params.yaml"), "--params", "-p", help="params.yaml to read.", exists=True,
                         dir_okay=False)


def _usage_error(message: str) -> typer.Exit:
    console.print(f"[red]{message}[/red]", highlight=False)
    return typer.Exit(EXIT_USAGE)


def _as_of(value: str | None):
    """``--as-of`` by the data's one timestamp grammar (:func:`leadscore.contract.parse_moment`), or exit 2
    with the accepted forms, before any work is done."""
    if value is None:
        return None
    from leadscore.contract import parse_moment

    try:
        return parse_moment(value, "time")
    except ValueError as exc:
        raise _usage_error(f"--as-of: {exc}") from None


def _check_memory_limit(value: str | None) -> None:
    import re

    if value is not None and not re.fullmatch(r"\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*", value.upper()):
        raise _usage_error(f"--memory-limit {value!r}: give an amount with a unit, e.g. 768MB or 2GB")


def _load_model(model: str, trust_model: bool = False):
    """The scorer for ``--model``, or exit 2 with what is wrong and what exists (aliases, versions).
    A local file the registry does not know raises BatchError (exit 4) unless ``trust_model``."""
    from leadscore.batch import load_scorer

    if model.endswith(".joblib") and not Path(model).is_file():
        raise _usage_error(f"--model {model}: no such file")
    if not model.endswith(".joblib") and "://" not in model and ":/" not in model and not Path(model).exists():
        raise _usage_error(f"--model {model}: no such model folder; give models:/NAME@ALIAS, models:/NAME/VERSION, "
                           f"an MLflow model folder or a scorer.joblib")
    try:
        return load_scorer(model, trust_file=trust_model)
    except Exception as exc:  # noqa: BLE001 - MLflow raises its own types for an unknown name, alias or run
        from mlflow.exceptions import MlflowException

        if not isinstance(exc, (MlflowException, OSError)):
            raise
        raise _usage_error(f"--model {model}: cannot load it: {_first_line(exc)}{_known_models(model)}") from None


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def _known_models(model: str) -> str:
    """What the registry does hold for the name in ``models:/NAME@ALIAS`` (best effort)."""
    if not model.startswith("models:/"):
        return ""
    name = model[len("models:/"):].split("@", 1)[0].split("/", 1)[0]
    import mlflow

    try:
        client = mlflow.MlflowClient()
        registered = client.get_registered_model(name)
        aliases = ", ".join(f"@{a} (version {v})" for a, v in sorted(registered.aliases.items())) or "none"
        versions = sorted((int(v.version) for v in client.search_model_versions(f"name = '{name}'")), reverse=True)
        return f". Registered model {name!r}: aliases {aliases}; versions {', '.join(map(str, versions[:10])) or 'none'}"
    except Exception:  # noqa: BLE001 - no registry, or no such name: the first message says enough
        try:
            names = sorted(m.name for m in mlflow.MlflowClient().search_registered_models(max_results=20))
        except Exception:  # noqa: BLE001
            return ""
        return f". Registered models: {', '.join(names) or 'none'}"


def _progress() -> Progress:
    """A progress bar on a terminal; none in a log (a scheduler's, CI's, a pipe), where it is only noise."""
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False, disable=not console.is_terminal)


@app.command()
def synth(
    params_file: Path = ParamsOpt,
    out: Path = typer.Option(Path("data/raw"), help="Folder for leads, events and priority accounts."),
    truth_out: Path = typer.Option(Path("data/truth"), help="Folder for the true probabilities (never features)."),
    n_leads: int = typer.Option(None, help="Override synth.n_leads."),
    events_per_lead: float = typer.Option(None, help="Override synth.events_per_lead."),
) -> None:
    """Write the built-in synthetic B2B funnel (sizes and seed from params.yaml)."""
    from leadscore.pipeline import run_synth

    params = load_params(params_file)
    overrides = {k: v for k, v in (("n_leads", n_leads), ("events_per_lead", events_per_lead)) if v is not None}
    if overrides:
        params = params.model_copy(update={"synth": params.synth.model_copy(update=overrides)})
    with _progress() as progress:
        task = progress.add_task("synthesizing leads", total=params.synth.n_leads)
        paths = run_synth(params, out, truth_out, progress=lambda n: progress.advance(task, n))
    console.print(f"wrote {paths.leads}, {paths.events}, {paths.priority_accounts}; truth in {paths.truth}")


@app.command()
def validate(
    params_file: Path = ParamsOpt,
    out: Path = typer.Option(Path("data/validated"), help="Folder for validated data, rejects.csv, report.json."),
) -> None:
    """Check leads, events and priority accounts against the data contract; reconcile row counts."""
    from leadscore.contract import ContractError
    from leadscore.pipeline import run_validate

    params = load_params(params_file)
    try:
        with console.status("validating"):
            reports = run_validate(params, out)
    except ContractError as exc:
        console.print(f"[red]input breaks the data contract[/red]\n{exc}", highlight=False)
        raise typer.Exit(EXIT_CONTRACT) from exc
    table = Table("file", "read as", "rows in", "valid", "rejected", "warnings", title="validation")
    table.columns[0].overflow = "fold"  # a long path is folded whole, never cut to "…" (two files told apart)
    for r in reports:
        warn = "; ".join(r.warning_lines()) or "-"
        table.add_row(r.file, r.read.get("described", ""), f"{r.rows_in:,}", f"{r.rows_valid:,}",
                      f"{r.rows_rejected:,}", warn)
    if (out / "mapping.txt").exists():
        console.print("[bold]what the mapping did[/bold]\n" + (out / "mapping.txt").read_text(), highlight=False)
    console.print(table)
    console.print(f"rejected rows with reasons: {out / 'rejects.csv'}")


@app.command()
def features(
    params_file: Path = ParamsOpt,
    validated: Path = typer.Option(Path("data/validated"), "--in", help="Folder written by `leadscore validate`."),
    out: Path = typer.Option(Path("data/features"), help="Folder for features.parquet and its metadata."),
    as_of: str = typer.Option(None, help="Score every lead as of this time (ISO 8601) instead of "
                                          "training snapshots."),
) -> None:
    """Build point-in-time fit, behavior and account features."""
    from leadscore.pipeline import run_features

    moment = _as_of(as_of)
    as_of = None if moment is None else moment.isoformat()
    params = load_params(params_file)
    with console.status("building features in DuckDB"):
        build = run_features(params, validated, out, as_of=as_of)
    console.print(f"{build.leads_in:,} leads: {build.rows:,} feature rows of {build.leads_with_rows:,} leads, "
                  f"{build.excluded:,} leads without a row (reasons in {build.exclusions}); export taken at "
                  f"{build.export_at} ({build.export.how if build.export else 'params'})")
    future = {k: v for k, v in (build.records_after_export or {}).items() if v}
    if future:
        console.print(f"[yellow]warning:[/] records dated after the export moment, set aside: "
                      + ", ".join(f"{v:,} {k}" for k, v in future.items())
                      + " — set features.export_at if the export was taken later")


@app.command()
def train(
    params_file: Path = ParamsOpt,
    features_dir: Path = typer.Option(Path("data/features"), "--features", help="Folder written by `leadscore features`."),
    models: Path = typer.Option(Path("models"), help="Folder for the fitted model and baseline."),
    reports: Path = typer.Option(Path("reports"), help="Folder for metrics.json, plots, figures and tables."),
    outputs: Path = typer.Option(Path("outputs"), help="Folder for the marketers' report (report.html)."),
    mlflow: bool = typer.Option(True, help="Log the run to MLflow and register the model as challenger."),
) -> None:
    """Train the calibrated LightGBM model and the rule baseline on time-based splits; evaluate both."""
    from leadscore.pipeline import run_train

    params = load_params(params_file)
    try:
        with console.status("training, calibrating, scoring and explaining"):
            result = run_train(params, features_dir, models, reports, outputs, log_to_mlflow=mlflow)
    except ValueError as exc:  # not enough history for the time split, and the like: the data's problem
        console.print(f"[red]cannot train on this data[/red]\n{exc}", highlight=False)
        raise typer.Exit(EXIT_CONTRACT) from exc
    m = result["metrics"]
    labels = m.get("labels", {})
    console.print(f"labels complete until {labels.get('labels_complete_until', '?')[:10]} (the label horizon before the "
                  f"export): {labels.get('labelled', 0):,} labelled snapshot rows; {labels.get('censored', 0):,} newer "
                  f"rows are censored (their window has not ended) and are not trained or tested on")
    table = Table("scorer", "ROC AUC", "PR AUC", "log loss", "Brier", "ECE", "wins in top 20%",
                  title=(f"replay of the nightly job on the test period ({m['split']['n_test']:,} snapshots of "
                         f"{m['split']['leads_test']:,} open leads, every age)"))
    for name in ("model", "baseline", "truth"):
        if name in m:
            r = m[name]
            table.add_row(name, f"{r['roc_auc']:.3f}", f"{r['pr_auc']:.3f}", f"{r['log_loss']:.4f}",
                          f"{r['brier']:.4f}", f"{r['ece']:.4f}", f"{r['wins_captured_top20']:.1%}")
    console.print(table)
    console.print(f"calibration: {result['summary']['calibration_method']}; metrics in {reports / 'metrics.json'}")
    for bucket, r in m.get("calibration_by_age", {}).items():
        console.print(f"  lead age {bucket}: predicted {r['model_predicted']:.1%}, observed {r['observed']:.1%} "
                      f"({r['rows']:,} snapshots)")
    mql = m.get("mql", {})
    if mql:
        from leadscore.scoring import _rate

        console.print(f"new MQLs a week in the replay: {mql['model_new_mqls_per_week']:.1f} ({_rate(mql['model_win_rate'])} "
                      f"won); rule baseline at the same volume wins {_rate(mql['baseline_same_volume_win_rate'])}")
    console.print(f"MQL threshold {result['summary']['mql_threshold']:.0f} points: {result['summary']['mql_threshold_reason']}")
    console.print(f"report: {result['report']}")
    if "mlflow" in result:
        logged = result["mlflow"]
        console.print(f"MLflow run {logged['run_id']}; registered {logged['model_uri']} (version {logged['version']})")
        verdict = "[green]passed the gate[/green]" if logged["passed_gate"] else "[red]refused by the gate[/red]"
        console.print(f"{verdict}: " + "; ".join(logged["promotion_reasons"]))
        console.print(logged["promotion_action"], highlight=False)
    else:
        gate = result["summary"]["gate"]
        verdict = "[green]passes the gate[/green]" if gate["passed"] else "[red]would be refused by the gate[/red]"
        console.print(f"{verdict}: " + "; ".join(gate["checks"]))
    for warning in m["training_notes"]["warnings"]:
        console.print(f"[yellow]warning[/yellow]: {warning}", highlight=False)
    console.print(m["training_notes"]["time_cv"], highlight=False)
    console.print(f"model card: {result['model_card']}")


@app.command()
def score(
    model: str = typer.Option("models:/leadscore@champion", help="models:/NAME@ALIAS, models:/NAME/VERSION, an MLflow "
                                                                  "model folder, or a scorer.joblib."),
    leads: Path = typer.Option(..., help="Leads export (CSV or Parquet) per the data contract.", exists=True),
    events: Path = typer.Option(None, help="Event log (CSV or Parquet); omit for a leads-only export.", exists=True),
    priority_accounts: Path = typer.Option(None, help="Priority account list (CSV or Parquet).", exists=True),
    as_of: str = typer.Option(None, help="Score as of this moment (ISO 8601); default now."),
    out: Path = typer.Option(..., help="Output file: .parquet or .csv. Rejects go beside it (*.rejects.csv)."),
    chunk_size: int = typer.Option(100_000, min=1, help="Leads scored per chunk (bounds memory)."),
    explain: str = typer.Option("all", help="Reasons for: all | mql (at or near the threshold) | changed (only leads "
                                            "whose features changed since the last run; needs --history) | none."),
    history: Path = typer.Option(None, help="Record this run in a history folder (partitioned by as_of date) and report "
                                            "changes since the run of the latest earlier as_of."),
    lock_wait: float = typer.Option(0.0, help="Seconds to wait when another job is writing the same --out or --history "
                                              "(default: refuse at once, exit 6)."),
    trust_model: bool = typer.Option(False, help="Load a local model file the registry does not know. A model file is "
                                                 "code: only for files you made yourself."),
    allow_unfit: bool = typer.Option(False, help="Score an export the model was not made for (its custom columns absent, "
                                                 "or no events while behaviour carried most of its signal) with a "
                                                 "warning instead of exit 4."),
    max_reject_share: float = typer.Option(0.05, min=0.0, max=1.0, help="Fail (exit 4) when a larger share of the leads, or of the events, than this breaks the contract."),
    shap_engine: str = typer.Option(None, help="Override the model's explanation engine: fast | lightgbm (same values)."),
    memory_limit: str = typer.Option(None, help="DuckDB memory limit for validation and features, e.g. 2GB (default "
                                                "768MB; it spills past it; more is faster on large exports)."),
    engine: str = typer.Option("local", help="local (DuckDB + pandas in chunks) | spark (features with Spark SQL "
                                             "from the same definitions, scoring with mapInPandas)."),
    spark_master: str = typer.Option("local[*]", help="With --engine spark: the Spark master URL "
                                                      "(local[*], yarn, spark://host:7077, ...)."),
    spark_workdir: Path = typer.Option(None, help="With --engine spark: where the validated Parquet goes for Spark "
                                                  "to read (on a cluster: a path the executors can read)."),
    sep: str = typer.Option(None, help="CSV separator of the inputs (, ; tab |); default: detected."),
    encoding: str = typer.Option(None, help="CSV encoding of the inputs (utf-8, utf-16, windows-1252); default: detected."),
    decimal: str = typer.Option(None, help="Decimal separator of the inputs' numbers (. or ,); default: detected."),
    keep: list[str] = typer.Option(None, help="Export columns to copy into the output as text (name, company, owner, "
                                              "...): repeat it or give a comma-separated list; `leadscore report` "
                                              "shows them."),
) -> None:
    """Score every open lead of an export with a registered model: points, band, grades, MQL flag, reasons."""
    import signal

    from leadscore.batch import (EXPLAIN_MODES, SCORING_MEMORY_LIMIT, BatchError, JobBusy, JobIOError,
                                 check_keep_columns, score_leads)
    from leadscore.contract import ContractError

    # Every option checked before anything is read, written or loaded: a mistake leaves the previous output.
    moment = _as_of(as_of)
    as_of = None if moment is None else moment.isoformat()
    from leadscore.reader import ReadOptions

    try:
        read_options = ReadOptions(sep, encoding, decimal)
    except ValueError as exc:
        raise _usage_error(str(exc)) from None
    if engine not in ("local", "spark"):
        raise _usage_error(f"--engine must be local or spark, not {engine!r}")
    try:
        keep = check_keep_columns(keep)
    except ValueError as exc:
        raise _usage_error(str(exc)) from None
    if explain not in EXPLAIN_MODES:
        raise _usage_error(f"--explain must be one of {', '.join(EXPLAIN_MODES)}, not {explain!r}")
    if explain == "changed" and history is None:
        raise _usage_error("--explain changed reuses the last run's reasons: give --history FOLDER")
    if shap_engine is not None and shap_engine not in SHAP_ENGINES:
        raise _usage_error(f"--shap-engine must be one of {', '.join(SHAP_ENGINES)}, not {shap_engine!r}")
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        what = repr(out.suffix) if out.suffix else "a name without an extension"
        raise _usage_error(f"--out {out}: the job writes .csv or .parquet, not {what}; end the name in .csv or .parquet")
    if out.is_dir() and engine == "local":
        raise _usage_error(f"--out {out} is a folder: give a file name ending in .csv or .parquet")
    _check_memory_limit(memory_limit)
    memory_limit = memory_limit or SCORING_MEMORY_LIMIT
    if engine == "spark":
        # The Spark job explains every lead and writes a Parquet folder; the rest is the local job's.
        problems = [msg for bad, msg in (
            (explain != "all", f"--explain {explain} (the Spark job explains every lead: use --explain all)"),
            (history is not None, "--history (use the local engine for score history)"),
            (bool(keep), "--keep (use the local engine to pass export columns through)"),
            (out.suffix.lower() != ".parquet", f"--out {out} (the Spark job writes a Parquet folder: end it in .parquet)"),
        ) if bad]
        if problems:
            console.print("[red]not available with --engine spark:[/red] " + "; ".join(problems), highlight=False)
            raise typer.Exit(EXIT_USAGE)

    def interrupted(signum, frame):  # SIGTERM unwinds like Ctrl-C: temporary files and work folder removed
        raise KeyboardInterrupt

    previous_handler = signal.signal(signal.SIGTERM, interrupted)
    try:
        try:
            scorer, name, version = _load_model(model, trust_model)
        except BatchError as exc:
            console.print(f"[red]scoring refused[/red]\n{exc}", highlight=False)
            raise typer.Exit(EXIT_BATCH) from exc
        try:  # score_leads keeps the libraries and the model out of its garbage collections (memory.job_heap)
            if engine == "spark":
                run = _score_on_spark(scorer, name, version, leads, events, out, as_of, priority_accounts,
                                      max_reject_share, shap_engine, spark_master, spark_workdir, memory_limit)
            else:
                with _progress() as progress:
                    task = progress.add_task("scoring leads", total=None)
                    run = score_leads(scorer, leads, events, out, as_of=as_of, priority_path=priority_accounts,
                                      model_name=name, model_version=version, chunk_size=chunk_size, explain=explain,
                                      history_dir=history, max_reject_share=max_reject_share, engine=shap_engine,
                                      memory_limit=memory_limit, progress=lambda n: progress.advance(task, n),
                                      lock_wait=lock_wait, allow_unfit=allow_unfit, read_options=read_options,
                                      keep=keep)
        except ContractError as exc:
            console.print(f"[red]input breaks the data contract[/red]\n{exc}", highlight=False)
            raise typer.Exit(EXIT_CONTRACT) from exc
        except BatchError as exc:
            console.print(f"[red]scoring refused[/red]\n{exc}", highlight=False)
            raise typer.Exit(EXIT_BATCH) from exc
        except JobIOError as exc:
            console.print(f"[red]scoring failed[/red]: {exc}", highlight=False)
            raise typer.Exit(EXIT_IO) from exc
        except (MemoryError, _duckdb_out_of_memory()) as exc:
            limit = f"DuckDB's limit {memory_limit}" if memory_limit else "DuckDB's default limit for the job (768MB)"
            console.print(f"[red]scoring failed[/red]: out of memory under {limit} "
                          f"({(str(exc).strip().splitlines() or [''])[0]}). Nothing was replaced. Give the job more memory "
                          f"(--memory-limit 1GB; 1M leads need about 0.5GB for the feature table's last step) or score "
                          f"the export in parts.", highlight=False)
            raise typer.Exit(EXIT_IO) from exc
        except JobBusy as exc:
            console.print(f"[red]scoring refused[/red]: {exc}", highlight=False)
            raise typer.Exit(EXIT_BUSY) from exc
        except KeyboardInterrupt as exc:
            console.print("[red]interrupted[/red]: nothing was replaced; the previous output, rejects and history are "
                          "as they were.", highlight=False)
            raise typer.Exit(EXIT_INTERRUPTED) from exc
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    for note in getattr(run, "recovered", []):
        console.print(f"recovered after an earlier killed job: {note}", highlight=False)
    table = Table("leads in", "scored", "not scored", "explained", "reused", title=f"{name} v{version} as of {run.as_of}")
    table.add_row(f"{run.leads_in:,}", f"{run.scored:,}", f"{run.rejected:,}", f"{run.explained:,}", f"{run.reused:,}")
    console.print(table)
    for reason, n in run.rejected_by_reason.items():
        console.print(f"  not scored: {reason}: {n:,}")
    for file, how in getattr(run, "inputs", {}).items():
        console.print(f"read {file}: {how}", highlight=False)
    if getattr(run, "events_in", 0):
        valid = run.events_in - run.events_rejected
        late = getattr(run, "events_late", 0)
        console.print(f"events: {run.events_in:,} in, {valid:,} valid, {run.events_rejected:,} rejected"
                      + (f"; {late:,} of the valid at or after as_of: not used" if late else ""), highlight=False)
        for reason, n in run.event_rejected_by_reason.items():
            console.print(f"  event rejected: {reason}: {n:,}", highlight=False)
    for w in getattr(run, "warnings", []):
        loud = w.startswith("scored anyway")  # data the model was not made for: said loudly
        console.print(f"[bold red]WARNING[/bold red] {w}" if loud else f"[yellow]warning[/yellow] {w}", highlight=False)
    if run.newly_mql is not None:
        console.print(f"{run.newly_mql:,} leads newly crossed MQL since the run as of {run.previous_as_of}")
    console.print(f"wrote {run.output}; not scored, with reasons: {run.rejects}"
                  + (f"; run {run.run_id}" if getattr(run, "run_id", "") else ""))


def _duckdb_out_of_memory() -> type:
    import duckdb

    return duckdb.OutOfMemoryException


@app.command()
def report(
    scores: Path = typer.Option(..., help="A `leadscore score` output (.parquet, or .csv).", exists=True, dir_okay=False),
    history: Path = typer.Option(None, help="The score history folder of `score --history`: newly-MQL and score "
                                            "trends.", exists=True, file_okay=False),
    out: Path = typer.Option(None, help="The page to write (default: beside the scores, <scores name>.html)."),
    training_report: Path = typer.Option(None, help="The model's training report (outputs/report.html), linked "
                                                    "from the page."),
    metrics: Path = typer.Option(None, help="The training's reports/metrics.json: AUC and calibration for the "
                                            "analysts' section.", exists=True, dir_okay=False),
) -> None:
    """Today's leads for marketers: one self-contained HTML page of a scoring run (sort, filter, search, score
    trends, reasons)."""
    from leadscore.today import ReportError, build

    out = out or scores.with_suffix(".html")
    if out.suffix.lower() not in (".html", ".htm"):
        raise _usage_error(f"--out {out}: the page is HTML; end the name in .html")
    try:
        data = build(scores, out, history, training_report, metrics)
    except ReportError as exc:
        raise _usage_error(str(exc)) from None
    except OSError as exc:
        from leadscore.runstore import os_error_sentence

        console.print(f"[red]report failed[/red]: {os_error_sentence(exc, str(out))}", highlight=False)
        raise typer.Exit(EXIT_IO) from exc
    m = data.meta
    since = f" since {m['previous_as_of']}" if m.get("previous_as_of") else " (no earlier run to compare with)"
    new = f", {m['newly_mql']:,} newly MQL{since}" if m["newly_mql"] is not None else ""
    console.print(f"wrote {out}: {m['leads']:,} leads, {m['mql']:,} MQLs{new}", highlight=False)


def _score_on_spark(scorer, name, version, leads, events, out, as_of, priority_accounts, max_reject_share,
                    shap_engine, spark_master, workdir, memory_limit):
    try:
        from leadscore import spark as spark_job
    except ImportError as exc:
        console.print(f"[red]--engine spark needs the spark extra[/red] (pip install 'leadscore[spark]'): {exc}")
        raise typer.Exit(2) from exc
    from pyspark.sql import SparkSession

    owned = SparkSession.getActiveSession() is None  # in a notebook or a test: reuse, and leave it running
    session = spark_job.session(spark_master, "leadscore-score")
    session.sparkContext.setLogLevel("ERROR")
    try:
        with console.status(f"scoring leads on Spark ({spark_master})"):
            return spark_job.score_leads_spark(session, scorer, leads, events, out, as_of=as_of,
                                               priority_path=priority_accounts, model_name=name, model_version=version,
                                               max_reject_share=max_reject_share, engine=shap_engine,
                                               workdir=workdir, memory_limit=memory_limit)
    finally:
        if owned:
            session.stop()


@app.command()
def promote(
    version: str = typer.Argument(..., help="Model version to make champion."),
    name: str = typer.Option("leadscore", help="Registered model name."),
    reason: str = typer.Option(..., help="Why (recorded on the version)."),
) -> None:
    """Make a registered version the champion, by hand (the gate's decision is overridden and recorded)."""
    from leadscore.tracking import promote as do_promote

    before = do_promote(name, version, f"by hand: {reason}")
    console.print(f"{name}: champion is now version {version} (was {before or 'none'})")


@app.command()
def rollback(name: str = typer.Option("leadscore", help="Registered model name."),
             reason: str = typer.Option("rollback", help="Why (recorded on the version).")) -> None:
    """Move the champion back to the previous champion."""
    from leadscore.tracking import rollback as do_rollback

    try:
        version = do_rollback(name, reason)
    except ValueError as exc:
        console.print(f"[red]cannot roll back[/red]: {exc}")
        raise typer.Exit(1) from exc
    console.print(f"{name}: champion rolled back to version {version}")


def main() -> None:  # pragma: no cover
    app()


@app.command()
def figures(
    readme: Path = typer.Option(Path("README.md"), help="The README whose figures block is generated."),
    metrics: Path = typer.Option(Path("reports/metrics.json"), help="The train stage's metrics."),
    bench: Path = typer.Option(Path("benchmarks/results"), help="The benchmarks' JSON figures."),
    write: bool = typer.Option(False, "--write", help="Rewrite the blocks (otherwise only check them, exit 1 if stale)."),
) -> None:
    """README figures from the run and the benchmarks, never typed: check (or --write) the generated blocks."""
    from leadscore.figures import update_readme

    if update_readme(readme, metrics, write, bench_dir=bench if bench.is_dir() else None):
        console.print(f"{readme}: figures match {metrics}")
    elif write:
        console.print(f"{readme}: figures rewritten from {metrics}")
    else:
        console.print(f"[red]{readme}: figures differ from {metrics}[/red]: run `make figures`")
        raise typer.Exit(1)
