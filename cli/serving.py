"""`taxi serve` (the serving package's own entry point) and `taxi predict` (its client)."""
from __future__ import annotations

import csv
import math
import sys
import time
from typing import Any, TextIO

import click

from cli.argparse_bridge import bridge
from cli.common import (
    EXIT_OK,
    CliError,
    FiniteFloatRange,
    UsageProblem,
    detail,
    emit_json,
    info,
    json_option,
    verbosity_options,
)
from cli.rows import check_header, read_rows, typed


def _serve_main(argv: list[str]) -> int:
    from serving.__main__ import main

    return main(argv)


def _serve_command() -> click.Command:
    from serving.__main__ import build_parser  # argparse only: the server itself loads on start

    def log_level(ctx: click.Context, argv: list[str]) -> list[str]:
        from cli.common import verbosity

        given = any(arg == "--log-level" or arg.startswith("--log-level=") for arg in argv)  # the bridge writes
        if not given and verbosity():  # --log-level=VALUE: an explicit level wins over -v / -q
            argv += ["--log-level", "DEBUG" if verbosity() > 0 else "WARNING"]
        return argv

    return verbosity_options(bridge(
        "serve", build_parser(), _serve_main,
        "Start the local TF-Serving-compatible server (REST :8501, gRPC :8500) on pushed models.\n\n"
        "Example: taxi serve --model-name taxi --model-base-path tfx_output/serving_model/taxi\n\n"
        "Flags mirror tensorflow_model_server's; they are read from `python -m serving`'s parser.",
        extra=log_level,
    ))


serve = _serve_command()

MAX_TIMEOUT = 86400.0  # a day per request; larger ones overflow the socket and gRPC deadlines
def _span(first: int, last: int) -> str:
    return f"row {first}" if first == last else f"rows {first}-{last}"


def _unanswered(answered: int, total: int) -> str:
    """Which rows a failure left unpredicted, and which were printed above."""
    return f"{_span(answered, total - 1)} not predicted" + (f"; {_span(0, answered - 1)} above" if answered else "")


def _format(prediction: dict[str, Any]) -> str:
    parts = []
    for key, value in sorted(prediction.items()):  # REST and gRPC order outputs differently
        value = value[0] if isinstance(value, list) and len(value) == 1 else value
        parts.append(f"{key} {value:.4f}" if isinstance(value, float) and not math.isnan(value) else f"{key} {value}")
    return "  ".join(parts)


def _checked_url(_ctx: click.Context, _param: click.Parameter, url: str) -> str:
    """`127.0.0.1:8501`, `ftp://x` or "" were tried as URLs, retried for 1.6 s and ended as 'cannot reach'."""
    from monitoring.server_url import check_url

    try:
        return check_url(url)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command(epilog="Exit codes: 0 ok; 1 the server refused or failed a request; 2 bad input.")
@click.argument("rows_file", metavar="FILE", type=click.File("r"), default="-")
@click.option("--format", "fmt", type=click.Choice(["auto", "csv", "jsonl"]), default="auto", show_default=True,
              help="input format; auto: by extension (.csv, else JSON lines)")
@click.option("--url", default="http://127.0.0.1:8501", show_default=True, callback=_checked_url,
              help="REST base URL (also read for metadata with gRPC)")
@click.option("--model", "model_name", default="taxi", show_default=True, help="model name")
@click.option("--protocol", type=click.Choice(["rest", "grpc"]), default="rest", show_default=True)
@click.option("--grpc-target", default="127.0.0.1:8500", show_default=True, help="host:port for --protocol grpc")
@click.option("--version", "model_version", type=click.IntRange(0, 2**63 - 1), help="a specific model version")
@click.option("--label", help="a version label, e.g. stable or canary")
@click.option("--signature", default="serving_default", show_default=True)
@click.option("--timeout", type=FiniteFloatRange(min=0, max=MAX_TIMEOUT, min_open=True), default=10.0, show_default=True,
              help="seconds per request")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True, help="rows per request")
@click.option("--drop-unknown", is_flag=True, help="ignore columns that are not model inputs (e.g. the label)")
@json_option
@verbosity_options
def predict(rows_file: TextIO, fmt: str, url: str, model_name: str, protocol: str, grpc_target: str,
            model_version: int | None, label: str | None, signature: str, timeout: float, batch_size: int,
            drop_unknown: bool, as_json: bool) -> int:
    """Predict rows from FILE (CSV with a header, or JSON lines; '-' reads stdin).

    Empty CSV cells and missing keys are missing values (NaN for numbers, ''
    for strings, the model's convention). Prints one line per row, in order.
    """
    from serving.client import NOT_SERVING, ServingClient, ServingClientError

    if model_version is not None and label is not None:
        raise UsageProblem("give --version or --label, not both")
    if protocol == "grpc" and not grpc_target.strip():
        raise UsageProblem("--protocol grpc needs --grpc-target, e.g. 127.0.0.1:8500")

    if protocol == "grpc":
        from common.console import silenced

        with silenced():  # TensorFlow's import-time lines are not this command's: its output is one line per row
            import tensorflow_serving.apis.prediction_service_pb2_grpc  # noqa: F401 - what the gRPC client loads

    name = getattr(rows_file, "name", "-")
    guessed = fmt == "auto"
    fmt = fmt if fmt != "auto" else ("csv" if str(name).lower().endswith(".csv") else "jsonl")  # T10.CSV too
    try:
        rows = read_rows(rows_file, fmt, guessed)
    except (csv.Error, UnicodeDecodeError) as error:
        raise UsageProblem(f"cannot read {name}: {error}") from None
    if not rows:
        raise UsageProblem(f"{name} holds no rows")
    started = time.monotonic()
    answered = 0
    try:
        with ServingClient(url, model_name, protocol=protocol, grpc_target=grpc_target, timeout=timeout,
                           version=model_version, label=label, signature=signature) as client:
            dtypes = client.input_dtypes()
            if fmt == "csv":
                check_header(rows[0], dtypes)
            sent = typed(rows, dtypes, drop_unknown)  # every row checked before the first is sent
            for start in range(0, len(sent), batch_size):
                answers = client.predict(sent[start:start + batch_size])
                if client.input_dtypes() != dtypes:  # the client followed a new version with other inputs
                    changed = sorted(set(client.input_dtypes()) ^ set(dtypes)) or sorted(dtypes)
                    raise CliError(f"the served model's inputs changed while predicting (a new version: "
                                   f"{', '.join(map(repr, changed))}); {_unanswered(answered, len(rows))}; run again")
                for prediction in answers:  # printed as answered
                    if as_json:
                        emit_json({"row": answered, **dict(sorted(prediction.items()))})
                    else:
                        click.echo(f"row {answered}: {_format(prediction)}")
                    answered += 1
    except ServingClientError as error:
        error.message = " ".join(error.message.split())  # a server's multi-line message: the error is one line
        if answered:  # the rows printed stand; say which ones were not answered
            error.message = f"{error.message} ({_unanswered(answered, len(rows))})"
        if error.status in ("connection", "timeout", NOT_SERVING):  # no answer at all, or not TF Serving's
            raise CliError(error.message) from None
        if not error.sent:  # the gRPC client checks rows against the signature before sending them
            raise CliError(f"not sent, the signature refuses it ({error.status}): {error.message}") from None
        raise CliError(f"the server answered {error.status}: {error.message}") from None
    except ValueError as error:  # the client's refusal of a row or signature: the input, not the server
        raise UsageProblem(str(error)) from None
    sys.stdout.flush()  # a failed write is said before the count of predictions that were not written
    info(f"{answered} prediction(s) from {model_name} over {protocol}")
    detail(f"{time.monotonic() - started:.2f} s, {math.ceil(len(rows) / batch_size)} request(s)")
    return EXIT_OK
