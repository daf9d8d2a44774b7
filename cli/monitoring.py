"""`taxi monitor`, `taxi trigger` (also `python -m monitoring`); the label commands are in cli/labels.py.

Thin click wrappers over the monitoring package: they parse, call, and turn the
package's expected errors into one 'error: ...' line with the project's exit codes.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click

from cli.common import (
    EXIT_FAILED,
    EXIT_NOT_NOW,
    EXIT_OK,
    CliError,
    FiniteFloatRange,
    UsageProblem,
    emit_json,
    info,
    json_option,
    not_empty,
    output_option,
    verbosity_options,
)
from cli.labels import check_existing, config_option, model_option


class NothingToJudge(UsageProblem):
    """monitor found no traffic to judge (monitor.NoVerdict): exit 2 alone, a warning under --retrain."""


def _window(since: str | None, until: str | None, hours: float) -> tuple[float, float]:
    """--since/--until as unix seconds or ISO times; default the last --window-hours."""
    import datetime as dt
    import math
    import time

    def parse(text: str, flag: str) -> float:
        try:
            seconds = float(text)
        except ValueError:
            pass
        else:
            if not math.isfinite(seconds):
                raise UsageProblem(f"{flag} {text!r} is not a time")
            return seconds
        try:  # Python 3.10's fromisoformat does not read the "Z" that date -u and most logs write
            moment = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise UsageProblem(f"{flag} {text!r} is neither unix seconds nor an ISO time") from None
        return (moment if moment.tzinfo else moment.astimezone()).timestamp()

    end = parse(until, "--until") if until else time.time() + 1
    start = parse(since, "--since") if since else max(end - hours * 3600, 0.0)  # 1e308 hours: all of it, not -inf
    if start >= end:
        raise UsageProblem("--since must be before --until")
    return start, end


def _monitor(output: str, model_name: str, config_path: str | None, request_log: str | None, since: str | None,
             until: str | None, hours: float, version: int | None, schema: str | None, min_rows: int,
             report_dir: str | None, as_json: bool):  # noqa: ANN202 - SkewReport
    import os
    from pathlib import Path

    from common.console import silenced
    from monitoring import report as report_files
    from monitoring.labels import LabelError
    from monitoring.monitor import DEFAULT_SCHEMA, MonitorError, MonitorInput, NoVerdict, run

    check_existing(output, config_path)
    start, end = _window(since, until, hours)
    spec = MonitorInput(output, Path(request_log) if request_log else Path(output) / "request_log", start, end,
                        model_name, version, Path(schema) if schema else DEFAULT_SCHEMA, min_rows, config_path)
    reports = Path(report_dir) if report_dir else Path(output) / "monitoring"
    try:  # before the analysis, not after it
        reports.mkdir(parents=True, exist_ok=True)
        if not os.access(reports, os.W_OK):
            raise PermissionError("not writable")
    except OSError as error:
        raise UsageProblem(f"report folder {reports} cannot be written ({error.strerror or error}); "
                           "pass another --report-dir") from None
    info(f"monitoring {spec.request_log} ...")
    try:
        with silenced():
            result = run(spec)
    except NoVerdict as error:
        raise NothingToJudge(str(error)) from None
    except (MonitorError, LabelError) as error:
        raise UsageProblem(str(error)) from None
    json_path, html_path = report_files.write(result, reports)
    if as_json:
        emit_json({**result.as_json(), "report_json": str(json_path), "report_html": str(html_path)})
    else:
        click.echo("\n".join(report_files.lines(result)))
        click.echo(f"report: {json_path}  {html_path}")
    return result


def monitor_options(func):  # noqa: ANN001, ANN201 - click decorator stack
    for option in reversed([
        output_option, model_option, config_option,
        click.option("--request-log", metavar="DIR|FILE",
                     help="request log folder (the server's --request-log-dir) or one .jsonl file "
                          "(default: <output>/request_log)"),
        click.option("--window-hours", "hours", type=FiniteFloatRange(min=0, min_open=True), default=24.0,
                     show_default=True, help="judge the requests of the last N hours"),
        click.option("--since", help="window start (unix seconds or ISO time); overrides --window-hours"),
        click.option("--until", help="window end (default: now)"),
        click.option("--version", "version", type=int, help="compare with this version's training data "
                     "(default: the stable label, else the latest push)"),
        click.option("--schema", metavar="FILE", help="schema with skew_comparators (default: schema/schema.pbtxt)"),
        click.option("--min-rows", type=click.IntRange(1), default=500, show_default=True,
                     help="fewer logged rows than this is too few to judge"),
        click.option("--report-dir", metavar="DIR", help="where the JSON and HTML reports go (default: <output>/monitoring)"),
    ]):
        func = option(func)
    return func


@click.command(epilog="Exit codes: 0 nothing over threshold; 1 skew or a serving anomaly; "
                      "2 bad input (no/empty/malformed logs, too few rows, no model in service).")
@monitor_options
@click.option("--retrain", is_flag=True, help="then act like `trigger`: retrain when skew is found or a new span landed")
@click.option("--data", metavar="DIR", callback=not_empty, help="with --retrain: the data folder of span-<N>/ folders")
@json_option
@verbosity_options
def monitor(output: str, model_name: str, config_path: str | None, request_log: str | None, hours: float,
            since: str | None, until: str | None, version: int | None, schema: str | None, min_rows: int,
            report_dir: str | None, retrain: bool, data: str | None, as_json: bool) -> int:
    """Skew of served traffic: per feature distance vs threshold, against the model in service's training stats.

    Writes <output>/monitoring/skew-<time>.json and .html.
    """
    if retrain and not data:
        raise UsageProblem("--retrain needs --data (the folder the pipeline trains from)")
    if retrain and as_json:  # the trigger and its pipeline run print to stdout after the report
        raise UsageProblem("--json cannot be combined with --retrain (the trigger and its run print to stdout too); "
                           "the report is in <output>/monitoring/skew-*.json, or use `monitor --json` and then "
                           "`trigger --skew-report`")
    if config_path is not None:  # a typo here is fatal even with --retrain, unlike a window without traffic
        check_existing(output, config_path)
    try:
        result = _monitor(output, model_name, config_path, request_log, since, until, hours, version, schema,
                          min_rows, report_dir, as_json)
    except NothingToJudge as error:
        if not retrain:
            raise
        # No judgeable traffic must not block retraining on a new span: say so and decide without skew.
        # Bad flags (a time, --schema, --version, --report-dir) are other UsageProblems: they end the command.
        click.echo(f"warning: no skew verdict: {error.format_message()}", err=True)
        result = None
    if retrain:
        return _trigger(output, data, model_name, result, None, [], config=config_path)
    if result.over:
        raise CliError(result.what_is_wrong(), EXIT_FAILED)
    return EXIT_OK


def _trigger(output: str, data: str, model_name: str, skew, span: int | None,  # noqa: ANN001 - SkewReport
             runner_args: list[str], dry_run: bool = False, config: str | None = None) -> int:
    from monitoring import trigger as trig

    try:
        try:
            decision = trig.decide(output, data, model_name, skew, span, config, runner_args)
        except trig.TriggerError as error:
            if Path(output).is_dir():  # a mistyped --output is not made to hold the error
                with contextlib.suppress(trig.TriggerError):  # an unwritable log must not hide why
                    trig.log_decision(output, {"decision": "error", "why": str(error)})
            raise
        if not decision.retrain:
            trig.log_decision(output, {"decision": "no-retrain", "reasons": decision.reasons})
            click.echo("trigger: no retraining: " + "; ".join(decision.reasons))
            return EXIT_OK
        click.echo("trigger: retraining: " + "; ".join(decision.reasons))
        if dry_run:
            trig.log_decision(output, {"decision": "dry-run", "reasons": decision.reasons})
            return EXIT_OK
        code = trig.run(decision, output, data, runner_args)
    except trig.TriggerBusy as error:
        raise CliError(str(error), EXIT_NOT_NOW) from None
    except trig.RunTimedOut as error:
        raise CliError(str(error)) from None
    except trig.TriggerError as error:  # bad data folder or span, the model in service, an unwritable lock or log
        raise UsageProblem(str(error)) from None
    if code < 0:  # killed by a signal (the OOM killer, a timeout): a failed run, exit 1 as documented
        import signal

        raise CliError(f"the triggered pipeline run was killed by {signal.Signals(-code).name} (see its output above)")
    if code != 0:
        raise CliError(f"the triggered pipeline run ended with exit code {code} (see its output above)", code)
    return EXIT_OK


@click.command(context_settings={"ignore_unknown_options": True},
               epilog="Exit codes: 0 nothing to do or the run completed; 1 the run failed; 2 bad input or the data "
                      "gate stopped the run; 3 another triggered run is in progress.")
@output_option
@model_option
@click.option("--data", required=True, metavar="DIR", callback=not_empty,
              help="data folder (span-<N>/ folders or CSV files)")
@click.option("--span", type=int, help="train on this span (default: the latest)")
@click.option("--skew-report", metavar="FILE", help="a `monitor` JSON report whose over-threshold features count as a reason")
@click.option("--dry-run", is_flag=True, help="decide and log, start nothing")
@click.argument("runner_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- LOCAL_RUNNER_FLAGS...]")
@verbosity_options
def trigger(output: str, model_name: str, data: str, span: int | None, skew_report: str | None, dry_run: bool,
            runner_args: tuple[str, ...]) -> int:
    """Retrain when a new span landed (or a skew report is over threshold): one local_runner.py run, never two.

    Flags after `--` go to local_runner.py (e.g. -- --accept-drift --train-steps 300).
    Decisions are logged to <output>/monitoring/decisions.jsonl.
    """
    skew = None
    if skew_report:
        from monitoring.skew import FeatureResult, SkewReport

        try:
            raw = json.loads(open(skew_report).read())
            skew = SkewReport(raw["model"], raw["version"], raw.get("span"), raw.get("window", {}), raw["rows"],
                              [FeatureResult(**r) for r in raw["results"]], raw.get("created", 0))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UsageProblem(f"--skew-report {skew_report} is not a monitor JSON report: {error}") from None
        if skew.model != model_name:
            raise UsageProblem(f"--skew-report {skew_report} is about model {skew.model!r}, not --model {model_name!r}")
    from monitoring.trigger import TriggerError, check_runner_args

    try:
        check_runner_args(list(runner_args))
    except TriggerError as error:
        raise UsageProblem(str(error)) from None
    return _trigger(output, data, model_name, skew, span, list(runner_args), dry_run)

