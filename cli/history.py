"""`taxi runs`, `taxi report` and `taxi lineage`: what past runs did, read from MLMD."""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import click

from cli.common import (
    EXIT_NOT_NOW,
    EXIT_OK,
    CliError,
    UsageProblem,
    detail,
    emit_json,
    info,
    json_option,
    output_option,
    verbosity,
    verbosity_options,
)
from common.console import silenced

HEADLINE_METRICS = ("auc", "binary_accuracy")


def _store(output: str):  # noqa: ANN202 - MetadataStore
    from pipeline.mlmd_store import StoreLocked
    from report import mlmd

    try:
        return mlmd.open_store(output)
    except StoreLocked as error:  # not now: another process holds it
        raise CliError(str(error), EXIT_NOT_NOW) from None
    except mlmd.StoreError as error:
        raise UsageProblem(str(error)) from None


def _metrics(output: str, row) -> dict[str, float]:  # noqa: ANN001 - report.mlmd.RunRow
    """From the report's JSON sidecar; TFMA (seconds to import) only for runs that have none."""
    from report import mlmd

    saved = mlmd.sidecar_metrics(output, row.run_id)
    if saved is not None or not row.evaluation_uri or not os.path.isdir(row.evaluation_uri):
        return saved or {}
    with silenced():
        from pipeline.run_summary import read_evaluation

        try:
            return read_evaluation(row.evaluation_uri, "")[0]
        except Exception:  # noqa: BLE001 - a damaged evaluation file costs this run's metrics, not the list
            return {}


def _number(value: float | None) -> str:
    """n/a for a metric with no value (AUC when every eval label is the same), as the report says it."""
    return "n/a" if value is None or value != value else f"{value:.4f}"


@click.command(epilog="Exit codes: 0 ok; 2 no MLMD store in --output; 3 another process holds the store locked.")
@output_option
@click.option("-n", "--limit", type=click.IntRange(1), default=20, show_default=True, help="newest N runs")
@click.option("--metrics/--no-metrics", default=True, show_default=True,
              help="include eval metrics (runs without a report need TFMA, a few seconds)")
@json_option
@verbosity_options
def runs(output: str, limit: int, metrics: bool, as_json: bool) -> int:
    """List past runs, newest first: time, outcome, ran/cached, metrics, blessing, pushed version."""
    from report import mlmd

    store = _store(output)
    ids = mlmd.run_ids(store)[-limit:][::-1]
    if not ids:
        info(f"no runs recorded in {output}")
        return EXIT_OK
    for run_id in ids:
        row = mlmd.run_row(store, run_id)
        if metrics:
            row.metrics = _metrics(output, row)
        if as_json:
            emit_json(row.as_json())
            continue
        when = dt.datetime.fromtimestamp(row.started).strftime("%Y-%m-%d %H:%M:%S") if row.started else "?"
        shown = "  ".join(f"{k} {_number(row.metrics[k])}" for k in HEADLINE_METRICS if k in row.metrics)
        blessed = {True: "blessed", False: "not blessed", None: "-"}[row.blessed]
        pushed = f"pushed {row.pushed_version}" if row.pushed_version else "no push"
        click.echo(f"{run_id}  {when}  {row.outcome:<10} {row.seconds:6.1f} s  ran {row.ran:>2} cached {row.cached:>2}  "
                   f"{shown or '-':<34} {blessed:<11}  {pushed}")
    return EXIT_OK


@click.command(epilog="Exit codes: 0 written; 1 the report cannot be written (reports/ is a file, read-only, the disk "
                      "is full); 2 no MLMD store or no such run; 3 another process holds the store locked.")
@output_option
@click.option("--run", "run_id", metavar="RUN_ID", help="the run (default: the latest; `taxi runs` lists ids; the report's file name, ':' as '-', works too)")
@click.option("--all", "all_runs", is_flag=True, help="every run in MLMD")
@verbosity_options
def report(output: str, run_id: str | None, all_runs: bool) -> int:
    """Write <output>/reports/<run_id>.html: data, model, lineage and timing of a run, in one offline file.

    local_runner and `taxi run` write it automatically after a completed or gated run.
    """
    from report import mlmd

    if run_id is not None and all_runs:
        raise UsageProblem("give --run or --all, not both")
    if run_id is not None and not run_id.strip():
        raise UsageProblem("--run is empty; `taxi runs` lists the run ids (leave --run out for the latest)")
    store = _store(output)
    try:  # an unknown run or an empty store: one error line, before any work
        chosen = mlmd.resolve_run_id(store, run_id)  # with --all, run_id is None: the latest
    except mlmd.StoreError as error:
        raise UsageProblem(str(error)) from None
    ids = mlmd.run_ids(store) if all_runs else [chosen]
    info("reading statistics, TFMA and MLMD...")
    for one in ids:
        try:
            with silenced():
                from report.build import write_report

                path = write_report(output, one)
        except mlmd.StoreError as error:
            raise UsageProblem(str(error)) from None
        except OSError as error:  # reports/ is a file, the disk is full, no permission
            reports = Path(output) / "reports"
            reason = error.strerror or str(error)
            if isinstance(error, (FileExistsError, NotADirectoryError)):
                reason = ("it is a symlink to nothing" if reports.is_symlink() and not reports.exists()
                          else "it is a file, not a folder")
            raise CliError(f"cannot write the report in {reports}: {reason}") from None
        click.echo(str(path))
    return EXIT_OK


@click.command(epilog="Exit codes: 0 ok; 2 no MLMD store or no such pushed version; 3 another process holds the "
                      "store locked.")
@click.argument("version")
@output_option
@json_option
@verbosity_options
def lineage(version: str, output: str, as_json: bool) -> int:
    """Show what produced pushed model VERSION: data, statistics, schema, transform, training config, blessing.

    Walks MLMD events back from the PushedModel artifact, so it holds for cached
    components too (they point at the artifacts the original execution wrote).
    """
    from report import mlmd

    store = _store(output)
    try:
        steps = mlmd.lineage(store, version)
    except mlmd.StoreError as error:
        raise UsageProblem(str(error)) from None
    if as_json:
        emit_json({"version": version, "steps": [s.__dict__ for s in steps]})
        return EXIT_OK
    shown = ("input_base", "span", "input_fingerprint", "schema_file", "preprocessing_fn", "run_fn", "train_args",
             "eval_args", "custom_config", "eval_config", "push_destination")
    for step in steps:
        click.echo(f"{step.node}  (execution {step.execution_id}, {step.state}, run {', '.join(step.run_ids)})")
        for key, artifacts in step.inputs.items():
            detail("  in  " + key + ": " + ", ".join(f"{a['type']}#{a['id']}" for a in artifacts))
        for key, artifacts in step.outputs.items():
            for a in artifacts:
                extra = f" version {a['properties'].get('pushed_version')}" if a["type"] == "PushedModel" else ""
                click.echo(f"  out {key}: {a['type']}#{a['id']} {a['uri']}{extra}")
        for key, value in step.properties.items():
            if key in shown or verbosity() > 0:
                text = _compact(value)
                click.echo(f"  {key}: {text if verbosity() > 0 or len(text) < 160 else text[:157] + '...'}")
    return EXIT_OK


def _compact(value: object) -> str:
    """Execution properties are often pretty-printed JSON: one line reads better in a terminal."""
    try:
        return json.dumps(json.loads(str(value)), separators=(",", ":"))
    except ValueError:
        return str(value)
