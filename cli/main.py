"""`taxi`: one command for running, inspecting and serving the pipeline.

Subcommands live in their own modules and are imported only when called, so
`taxi --help` answers in a fraction of a second: nothing here imports
TensorFlow, TFX or Beam. A new subcommand (monitor, promote, rollback) is one
line in COMMANDS.
"""
from __future__ import annotations

import contextlib
import errno
import importlib
import io
import os
import sys

import click

from cli.common import EXIT_CODES_HELP, EXIT_FAILED, EXIT_USAGE, verbosity_options

# name -> (module:attribute, one-line help shown by `taxi --help` without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("cli.run:run", "Run the pipeline locally (same flags as local_runner.py)."),
    "runs": ("cli.history:runs", "List past runs from MLMD: time, outcome, metrics, pushed version."),
    "report": ("cli.history:report", "Write a run's self-contained HTML report."),
    "lineage": ("cli.history:lineage", "Show the data, schema, transform and config behind a pushed version."),
    "serve": ("cli.serving:serve", "Start the local TF-Serving-compatible model server."),
    "predict": ("cli.serving:predict", "Send rows from CSV or JSON lines to the model server."),
    "vertex": ("cli.vertex:vertex", "Compile, submit and schedule the pipeline on Vertex AI."),
    "monitor": ("cli.monitoring:monitor", "Skew of served traffic vs the training statistics of the model in service."),
    "trigger": ("cli.monitoring:trigger", "Retrain when a new span landed or skew is over threshold (one run at a time)."),
    "canary": ("cli.labels:canary", "Move the canary label to a version (default: the newest push)."),
    "promote": ("cli.labels:promote", "Move the stable label to the canary version."),
    "rollback": ("cli.labels:rollback", "Move the stable label back to the previous stable version."),
    "labels": ("cli.labels:labels", "Show stable/canary labels, pushed versions and label history."),
}


class OutputFailed(BaseException):
    """Standard output could not be written. Not an OSError, which click turns into sys.exit(1) itself when it
    is an EPIPE, nor an Exception, which a command's own `except Exception` would take for its failure."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror or str(error))
        self.error = error


class _GuardedStdout(io.TextIOBase):
    """sys.stdout while a command runs: a failed write or flush is told apart from the command's other OSErrors
    (a report's full disk, a socket's broken pipe). `stream` None: fd 1 was closed (`>&-`), where Python sets
    sys.stdout to None, click.echo drops every line and a flush is an AttributeError.

    A reader that went away (`| head -1`) ends nothing: what is printed after it is dropped and the command goes
    on to its end and its own exit code (a pipeline run still moves its labels and records itself). Only while
    fd 1 is the command's standard output: a run points it at its log, whose errors are the run's own."""

    def __init__(self, stream: io.TextIOBase | None) -> None:
        super().__init__()
        self._stream = stream
        self._file = _identity(1) if stream is not None else None

    def _failed(self, error: OSError) -> None:
        """A write or flush failed: the run's own error while fd 1 is its log; nothing when the reader went away
        (what is buffered and all that follows go to /dev/null); else OutputFailed."""
        if _identity(1) != self._file:
            raise error
        if isinstance(error, BrokenPipeError):
            _discard_stdout()
            return
        raise OutputFailed(error) from None

    def _target(self) -> io.TextIOBase:
        if self._stream is None:
            raise OutputFailed(OSError(errno.EBADF, "standard output is closed"))
        return self._stream

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # click asks with b"" whether a stream takes bytes
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        try:
            return self._target().write(text)
        except OSError as error:
            self._failed(error)
            return len(text)

    def flush(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except OSError as error:
            self._failed(error)

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._target().fileno()

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:
        return getattr(self._stream, "errors", None)

    def __getattr__(self, name: str) -> object:
        return getattr(self._target(), name)


def _identity(fd: int) -> tuple[int, int] | None:
    """(device, inode) of the file behind an fd, None if it is closed."""
    try:
        stat = os.fstat(fd)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _discard_stdout() -> None:
    """fd 1 pointed at /dev/null: what stdout still buffers is dropped, and no later flush (entry()'s, the
    interpreter's at exit) fails again with a traceback."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stdout.flush()


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
             epilog=EXIT_CODES_HELP)
@verbosity_options
def cli() -> None:
    """Taxi TFX pipeline: run it, inspect its runs, serve and query its models.

    Every subcommand has --help. Errors end in one 'error: ...' line.
    """


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit code instead of raising, so tests and `python -m cli` agree."""
    real = sys.stdout
    if real is None:  # fd 1 closed: held by /dev/null, so no socket or file opened now becomes "stdout"
        _discard_stdout()
    sys.stdout = _GuardedStdout(real)
    try:
        return _main(argv)
    except OutputFailed as failed:
        if real is not None:
            sys.stdout = real
        return _output_failed(failed.error)
    finally:
        if real is not None:
            sys.stdout = real


def _main(argv: list[str] | None) -> int:
    try:
        code = cli.main(args=argv, prog_name="taxi", standalone_mode=False)
        sys.stdout.flush()  # what is still buffered fails here, not in entry() or at exit
    except click.exceptions.NoArgsIsHelpError as error:
        ctx = error.ctx
        if ctx is not None and ctx.parent is not None and isinstance(ctx.command, click.Group):
            # `taxi vertex schedule` with no action: as vertex_runner.py says it, one line and exit 2
            names = ", ".join(ctx.command.list_commands(ctx))
            click.echo(f"error: {ctx.command_path} needs a command: {names} (see '{ctx.command_path} --help')",
                       err=True)
            return EXIT_USAGE
        click.echo(ctx.get_help() if ctx else str(error))  # `taxi` alone: the overview
        return 0
    except click.UsageError as error:
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
        click.echo(f"error: {error.format_message()}{hint}", err=True)
        return EXIT_USAGE
    except click.ClickException as error:
        click.echo(f"error: {error.format_message()}", err=True)
        return error.exit_code
    except click.Abort:
        click.echo("interrupted", err=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return EXIT_FAILED
    return code if isinstance(code, int) else 0


def _output_failed(error: OSError) -> int:
    """A failed write to standard output (a full disk, a closed stdout) loses results: one line, exit 1. (A reader
    that went away is no failure: _GuardedStdout drops what follows.)"""
    _discard_stdout()
    click.echo(f"error: cannot write the output: {error.strerror or error}", err=True)
    return EXIT_FAILED


def entry() -> None:
    """Console-script target: exit without interpreter teardown after TensorFlow ran (see local_runner)."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
