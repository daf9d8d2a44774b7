"""What every subcommand shares: exit codes, the error line, verbosity, --output, --json."""
from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_NOT_NOW = 3  # nothing failed, try again later: another run holds the output, nothing to promote yet
EXIT_CODES_HELP = ("Exit codes: 0 ok; 1 failed (the run, the server, a request, Vertex); "
                   "2 bad usage or config, or the data gate stopped the run; "
                   "3 not now: the output folder or its metadata store is busy with another process (run, trigger, "
                   "runs), promote has nothing to promote yet, or another label change holds the labels' lock.")
DEFAULT_OUTPUT = "tfx_output"

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """An expected failure: printed as one 'error: ...' line, with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageProblem(CliError):
    """Bad input the user can fix (a missing file, an unknown run): exit 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange, which lets nan through (every comparison with it is false) and, without a max, inf
    and 1e400 (a timeout of inf is an OverflowError deep in the socket code)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number != number:
            self.fail(f"{value!r} is not a number.", param, ctx)
        if math.isinf(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        root = ctx.find_root()
        root.meta["verbosity"] = -1 if param.name == "quiet" else 1


def verbosity_options(func: F) -> F:
    """-q/--quiet and -v/--verbose, accepted on the group and on every subcommand."""
    func = click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_set_verbosity,
                        help="more detail")(func)
    return click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_set_verbosity,
                        help="only results and errors")(func)


def verbosity() -> int:
    """-1 quiet, 0 normal, 1 verbose."""
    ctx = click.get_current_context(silent=True)
    return ctx.find_root().meta.get("verbosity", 0) if ctx else 0


def not_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:  # noqa: ARG001 - click's
    """A folder flag given as "": that would be the current folder (its metadata.sqlite read as the output, its
    subfolders as data), so it is refused."""
    if value is not None and not value.strip():
        default = f" (or leave the flag out for {param.default})" if isinstance(param.default, str) else ""
        raise click.BadParameter(f"empty: give a folder{default}")
    return value


def output_option(func: F) -> F:
    return click.option("-o", "--output", default=DEFAULT_OUTPUT, show_default=True, metavar="DIR", callback=not_empty,
                        help="the run's output folder (metadata.sqlite, pipeline_root/, serving_model/, reports/)")(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="print JSON (one object per line) for scripts")(func)


def info(message: str) -> None:
    """Progress and context: hidden by --quiet, on stderr so stdout stays the result."""
    if verbosity() >= 0:
        click.echo(message, err=True)


def detail(message: str) -> None:
    if verbosity() > 0:
        click.echo(message, err=True)


def _strict(value: Any) -> Any:
    """NaN and infinities as null: JSON has no such numbers, and strict parsers refuse Python's NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(_strict(obj), default=str, sort_keys=False, allow_nan=False) + "\n")
