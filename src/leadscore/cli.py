"""The `leadscore` command: what users, schedulers and DVC stages call.

Exit codes: 0 success, 2 bad usage, 3 input breaks the data contract, 4 scoring refused (model schema
mismatch, too many rejected leads).
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
console = Console(stderr=True)
EXIT_CONTRACT = 3
EXIT_BATCH = 4

ParamsOpt = typer.Option(Path("params.yaml"), "--params", "-p", help="params.yaml to read.", exists=True,
                         dir_okay=False)


def _moment_or_exit(value: str) -> str:
    """--as-of by the data's timestamp grammar (ISO 8601); anything else exits 2 before any work is done."""
    from leadscore.contract import parse_moment

    try:
        return parse_moment(value, "--as-of").isoformat()
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from exc


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


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

    params = load_params(params_file)
    if as_of is not None:
        as_of = _moment_or_exit(as_of)
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
    table = Table("scorer", "ROC AUC", "PR AUC", "log loss", "Brier", "ECE", "wins in top 20%",
                  title=f"test quarter ({m['split']['n_test']:,} leads)")
    for name in ("model", "baseline", "truth"):
        if name in m:
            r = m[name]
            table.add_row(name, f"{r['roc_auc']:.3f}", f"{r['pr_auc']:.3f}", f"{r['log_loss']:.4f}",
                          f"{r['brier']:.4f}", f"{r['ece']:.4f}", f"{r['wins_captured_top20']:.1%}")
    console.print(table)
    console.print(f"calibration: {result['summary']['calibration_method']}; metrics in {reports / 'metrics.json'}")
    console.print(f"MQL threshold {result['summary']['mql_threshold']:.0f} points: {result['summary']['mql_threshold_reason']}")
    console.print(f"report: {result['report']}")
    if "mlflow" in result:
        logged = result["mlflow"]
        console.print(f"MLflow run {logged['run_id']}; registered {logged['model_uri']} (version {logged['version']})")
        verdict = "[green]passed the gate[/green]" if logged["passed_gate"] else "[red]refused by the gate[/red]"
        console.print(f"{verdict}: " + "; ".join(logged["promotion_reasons"]))
        console.print(logged["promotion_action"], highlight=False)
    else:
        gate = m["gate"]
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
    chunk_size: int = typer.Option(100_000, help="Leads scored per chunk (bounds memory)."),
    explain: str = typer.Option("all", help="Reasons for: all | mql (at or near the threshold) | changed (only leads "
                                            "whose features changed since the last run; needs --history) | none."),
    history: Path = typer.Option(None, help="Append this run to a history folder and report changes since the last run."),
    max_reject_share: float = typer.Option(0.05, help="Fail (exit 4) when more leads than this break the contract."),
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
) -> None:
    """Score every open lead of an export with a registered model: points, band, grades, MQL flag, reasons."""
    from leadscore.batch import SCORING_MEMORY_LIMIT, BatchError, load_scorer, score_leads
    from leadscore.contract import ContractError

    memory_limit = memory_limit or SCORING_MEMORY_LIMIT
    if as_of is not None:
        as_of = _moment_or_exit(as_of)
    from leadscore.reader import ReadOptions

    try:
        read_options = ReadOptions(sep, encoding, decimal)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from exc

    if engine not in ("local", "spark"):
        console.print(f"[red]--engine must be local or spark, not {engine!r}[/red]")
        raise typer.Exit(2)
    if engine == "spark":
        # The Spark job explains every lead and writes a Parquet folder; the rest is the local job's.
        problems = [msg for bad, msg in (
            (explain != "all", f"--explain {explain} (the Spark job explains every lead: use --explain all)"),
            (history is not None, "--history (use the local engine for score history)"),
            (out.suffix.lower() != ".parquet", f"--out {out} (the Spark job writes a Parquet folder: end it in .parquet)"),
        ) if bad]
        if problems:
            console.print("[red]not available with --engine spark:[/red] " + "; ".join(problems), highlight=False)
            raise typer.Exit(2)
    scorer, name, version = load_scorer(model)
    try:
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
                                  read_options=read_options)
    except ContractError as exc:
        console.print(f"[red]input breaks the data contract[/red]\n{exc}", highlight=False)
        raise typer.Exit(EXIT_CONTRACT) from exc
    except BatchError as exc:
        console.print(f"[red]scoring refused[/red]\n{exc}", highlight=False)
        raise typer.Exit(EXIT_BATCH) from exc
    table = Table("leads in", "scored", "not scored", "explained", "reused", title=f"{name} v{version} as of {run.as_of}")
    table.add_row(f"{run.leads_in:,}", f"{run.scored:,}", f"{run.rejected:,}", f"{run.explained:,}", f"{run.reused:,}")
    console.print(table)
    for reason, n in run.rejected_by_reason.items():
        console.print(f"  not scored: {reason}: {n:,}")
    for file, how in getattr(run, "inputs", {}).items():
        console.print(f"read {file}: {how}", highlight=False)
    if getattr(run, "events_in", 0):
        console.print(f"events: {run.events_in:,} in, {run.events_in - run.events_rejected:,} used, "
                      f"{run.events_rejected:,} rejected", highlight=False)
        for reason, n in run.event_rejected_by_reason.items():
            console.print(f"  event rejected: {reason}: {n:,}", highlight=False)
    for w in getattr(run, "warnings", []):
        console.print(f"[yellow]warning[/yellow] {w}", highlight=False)
    if run.newly_mql is not None:
        console.print(f"{run.newly_mql:,} leads newly crossed MQL since the last run")
    console.print(f"wrote {run.output}; not scored, with reasons: {run.rejects}")


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
