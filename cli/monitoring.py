"""`taxi monitor`, `taxi trigger`, `taxi promote`, `taxi rollback`, `taxi labels` (also `python -m monitoring`).

Thin click wrappers over the monitoring package: they parse, call, and turn the
package's expected errors into one 'error: ...' line with the project's exit codes.
"""
from __future__ import annotations

import json

import click

from cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    UsageProblem,
    emit_json,
    info,
    json_option,
    output_option,
    verbosity_options,
)

EXIT_BUSY = 3
model_option = click.option("--model", "model_name", default="taxi", show_default=True, help="model name")
config_option = click.option("--config", "config_path", metavar="FILE",
                             help="models.config to edit (default: <output>/serving_model/models.config)")
url_option = click.option("--url", default="http://127.0.0.1:8501", show_default=True,
                          help="model server whose loaded versions are checked (and waited for)")
offline_option = click.option("--offline", is_flag=True,
                              help="do not ask the server whether the version is loaded (server down)")
wait_option = click.option("--wait", type=click.FloatRange(0, 600), default=0, show_default=True, metavar="SECONDS",
                           help="wait until the server answers the new stable label")


def _deployment(output: str, model_name: str, config_path: str | None):  # noqa: ANN202 - Deployment
    from monitoring.labels import Deployment

    return Deployment.for_output(output, model_name, config_path)


def _change(action: str, output: str, model_name: str, config_path: str | None, version: int | None,
            url: str, offline: bool, wait: float, as_json: bool) -> int:
    from monitoring import labels
    from monitoring.canary import all_checks, blessed_check, loaded_check, wait_for_label

    deployment = _deployment(output, model_name, config_path)
    check = blessed_check(output) if offline else all_checks(blessed_check(output), loaded_check(url, model_name))
    before = deployment.labels() if deployment.config_path.exists() else {}
    try:
        after = getattr(labels, action)(deployment, check, version)
    except labels.LabelError as error:
        raise CliError(f"{action}: {error}; labels unchanged") from None
    if as_json:
        emit_json({"action": action, "before": before, "after": after, "config": str(deployment.config_path)})
    else:
        click.echo(f"{action}: stable {before.get('stable')} -> {after['stable']}"
                   + (f", canary {after['canary']}" if "canary" in after else "") + f"  ({deployment.config_path})")
    if wait and not offline and not wait_for_label(url, model_name, "stable", after["stable"], wait):
        raise CliError(f"labels written, but the server at {url} did not answer stable={after['stable']} "
                       f"within {wait:.0f} s (is it polling {deployment.config_path}?)")
    return EXIT_OK


@click.command(epilog="Exit codes: 0 promoted; 1 refused (not pushed, not blessed, not loaded), nothing changed.")
@output_option
@model_option
@config_option
@click.option("--version", "version", type=int, help="promote this version instead of the canary")
@url_option
@offline_option
@wait_option
@json_option
@verbosity_options
def promote(output: str, model_name: str, config_path: str | None, version: int | None, url: str, offline: bool,
            wait: float, as_json: bool) -> int:
    """Move the `stable` label to the canary (or --version). The old stable stays loaded for rollback."""
    return _change("promote", output, model_name, config_path, version, url, offline, wait, as_json)


@click.command(epilog="Exit codes: 0 rolled back; 1 refused (nothing earlier, not blessed, not loaded), nothing changed.")
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
