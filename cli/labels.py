"""`taxi canary`, `taxi promote`, `taxi rollback`, `taxi labels` (also `python -m monitoring`).

Thin click wrappers over monitoring/labels.py and monitoring/canary.py: they parse, call, and turn the
package's expected errors into one 'error: ...' line with the project's exit codes. The options and the
--output/--config check that `monitor` and `trigger` share with them live here.
"""
from __future__ import annotations

import json

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
    output_option,
    verbosity_options,
)

model_option = click.option("--model", "model_name", default="taxi", show_default=True, help="model name")
config_option = click.option("--config", "config_path", metavar="FILE",
                             help="models.config to edit (default: <output>/serving_model/models.config)")


def _url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from monitoring.server_url import check_url

    try:
        return check_url(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


url_option = click.option("--url", default="http://127.0.0.1:8501", show_default=True, callback=_url,
                          help="model server whose loaded versions are checked (and waited for)")
offline_option = click.option("--offline", is_flag=True,
                              help="do not ask the server whether the version is loaded (server down)")
wait_option = click.option("--wait", type=FiniteFloatRange(0, 600), default=0, show_default=True, metavar="SECONDS",
                           help="wait until the server answers the new stable label")


def check_existing(output: str, config_path: str | None) -> None:
    """A typo in --output or --config must not start a fresh, empty label history elsewhere."""
    import os

    if config_path is not None and not os.path.isfile(config_path):
        raise UsageProblem(f"--config {config_path} does not exist; leave it out to use "
                           f"<output>/serving_model/models.config")
    if config_path is None and not os.path.isdir(output):
        raise UsageProblem(f"output folder {output} does not exist; pass the pipeline's --output")


def _deployment(output: str, model_name: str, config_path: str | None):  # noqa: ANN202 - Deployment
    from monitoring.labels import Deployment

    check_existing(output, config_path)
    return Deployment.for_output(output, model_name, config_path)


def _change(action: str, output: str, model_name: str, config_path: str | None, version: int | None,
            url: str, offline: bool, wait: float, as_json: bool, healthy: callable | None = None) -> int:
    from monitoring import labels
    from monitoring.canary import ModelServer, all_checks, blessed_check, loaded_check, wait_for_label

    deployment = _deployment(output, model_name, config_path)
    label, other = (labels.CANARY, labels.STABLE) if action == "canary" else (labels.STABLE, labels.CANARY)
    try:
        before = deployment.labels() if deployment.config_path.exists() else {}
        if action == "canary":  # pins the version and waits for its load itself, when the label moves
            after = labels.canary(deployment, blessed_check(output), version,
                                  None if offline else ModelServer(url, model_name, wait))
        else:
            check = blessed_check(output) if offline else all_checks(blessed_check(output), loaded_check(url, model_name))
            if healthy is not None:
                check = all_checks(check, healthy)
            after = getattr(labels, action)(deployment, check, version)
    except (labels.NothingToPromoteYet, labels.LabelsBusy) as error:  # not now: cron tries again, not a failure
        raise CliError(f"{action}: {error}; labels unchanged", EXIT_NOT_NOW) from None
    except labels.LabelError as error:
        raise CliError(f"{action}: {error}; labels unchanged") from None
    if as_json:
        emit_json({"action": action, "before": before, "after": after, "config": str(deployment.config_path)})
    elif before.get(label) == after[label]:  # a canary the server had refused, written again in steps
        click.echo(f"{action}: {label} {after[label]} written again, now that the server has loaded it  "
                   f"({deployment.config_path})")
    else:
        click.echo(f"{action}: {label} {before.get(label, '(none)')} -> {after[label]}"
                   + (f", {other} {after[other]}" if other in after else "") + f"  ({deployment.config_path})")
    if wait and not offline and not wait_for_label(url, model_name, label, after[label], wait):
        raise CliError(f"labels written, but the server at {url} did not answer {label}={after[label]} "
                       f"within {wait:.0f} s (is it polling {deployment.config_path}?)")
    return EXIT_OK


@click.command(epilog="Exit codes: 0 promoted; 1 refused (not pushed, not blessed, not loaded, not healthy), nothing "
                      "changed; 3 nothing to promote yet (no canary label, or it is being replaced by a version still "
                      "loading; with --if-healthy, fewer requests than "
                      "--min-requests so far) or another label change holds the lock, nothing changed: a job that "
                      "runs it every few minutes can count 3 as success (systemd: SuccessExitStatus=3).")
@output_option
@model_option
@config_option
@click.option("--version", "version", type=int, help="promote this version instead of the canary")
@url_option
@offline_option
@wait_option
@click.option("--if-healthy", is_flag=True,
              help="promote only if the version has served enough requests with few errors, fast enough "
                   "(the local server's per-version metrics; for a cron job)")
@click.option("--min-requests", type=click.IntRange(1), default=100, show_default=True,
              help="with --if-healthy: requests the version must have served")
@click.option("--max-error-rate", type=FiniteFloatRange(0, 1), default=0.01, show_default=True,
              help="with --if-healthy: largest share of non-OK answers")
@click.option("--max-p95-ms", type=FiniteFloatRange(0, min_open=True), default=250.0, show_default=True,
              help="with --if-healthy: largest 95th-percentile latency (histogram bucket bound)")
@json_option
@verbosity_options
def promote(output: str, model_name: str, config_path: str | None, version: int | None, url: str, offline: bool,
            wait: float, if_healthy: bool, min_requests: int, max_error_rate: float, max_p95_ms: float,
            as_json: bool) -> int:
    """Move the `stable` label to the canary (or --version). The old stable stays loaded for rollback."""
    healthy = None
    if if_healthy:
        if offline:
            raise UsageProblem("--if-healthy reads the server's metrics; it cannot be used with --offline")
        from monitoring.canary import healthy_check

        healthy = healthy_check(url, model_name, min_requests, max_error_rate, max_p95_ms / 1000)
    return _change("promote", output, model_name, config_path, version, url, offline, wait, as_json, healthy)


@click.command(epilog="Exit codes: 0 labelled; 1 refused (not pushed, not blessed, stable, not loaded in time), "
                      "nothing changed but the version's pin; 3 another label change holds the lock, nothing changed.")
@output_option
@model_option
@config_option
@click.option("--version", "version", type=int, help="the version to put under test (default: the newest push)")
@url_option
@offline_option
@click.option("--wait", type=FiniteFloatRange(0, 600), default=150, show_default=True, metavar="SECONDS",
              help="wait this long for the server to load the version before the label moves to it, "
                   "then until it answers the label")
@json_option
@verbosity_options
def canary(output: str, model_name: str, config_path: str | None, version: int | None, url: str, offline: bool,
           wait: float, as_json: bool) -> int:
    """Move the `canary` label to a version (default: the newest push); `stable` stays.

    As TF Serving takes a label moved only to a version it has loaded, the
    version is pinned first and the label moves once the server has loaded it.
    """
    return _change("canary", output, model_name, config_path, version, url, offline, wait, as_json)


@click.command(epilog="Exit codes: 0 rolled back; 1 refused (nothing earlier, not blessed, not loaded), nothing changed; "
                      "3 another label change holds the lock, nothing changed.")
@output_option
@model_option
@config_option
@click.option("--to", "version", type=int, help="roll back to this version (default: the previous stable)")
@url_option
@offline_option
@wait_option
@json_option
@verbosity_options
def rollback(output: str, model_name: str, config_path: str | None, version: int | None, url: str, offline: bool,
             wait: float, as_json: bool) -> int:
    """Move the `stable` label back to the previous stable version (from the label history)."""
    return _change("rollback", output, model_name, config_path, version, url, offline, wait, as_json)


@click.command(epilog="Exit codes: 0 consistent; 1 a label points at a version that is not pushed.")
@output_option
@model_option
@config_option
@json_option
@verbosity_options
def labels(output: str, model_name: str, config_path: str | None, as_json: bool) -> int:
    """Show the labels, the pushed versions and the label history; flag labels on missing versions."""
    from monitoring.labels import LabelError, dangling

    deployment = _deployment(output, model_name, config_path)
    try:
        current, broken = deployment.labels(), dangling(deployment)
    except LabelError as error:
        raise UsageProblem(str(error)) from None
    if as_json:
        emit_json({"labels": current, "pushed": deployment.pushed(), "dangling": broken,
                   "history": deployment.history()[-10:]})
    else:
        click.echo(f"labels: {json.dumps(current) if current else 'none'}  ({deployment.config_path})")
        click.echo(f"pushed: {', '.join(map(str, deployment.pushed())) or 'none'}")
        for entry in deployment.history()[-5:]:
            info(f"  {entry.get('action')}: {entry.get('before')} -> {entry.get('after')}")
    if broken:
        label, version = next(iter(broken.items()))
        raise CliError(f"label '{label}' points at version {version}, which is not in {deployment.push_dir}; "
                       "`rollback --to V` or `promote --version V` moves it to a pushed version", EXIT_FAILED)
    return EXIT_OK
