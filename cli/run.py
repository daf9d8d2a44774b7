"""`taxi run`: local_runner.py's flags, parsed by click, run by local_runner itself."""
from __future__ import annotations

import click

import local_runner
from cli.argparse_bridge import bridge
from cli.common import verbosity, verbosity_options


def _quiet_means_no_progress(ctx: click.Context, argv: list[str]) -> list[str]:
    if verbosity() < 0 and "--no-progress" not in argv:
        argv.append("--no-progress")
    return argv


run = verbosity_options(bridge(
    "run", local_runner.build_parser(), local_runner.main,
    "Run the pipeline locally on Beam's DirectRunner, with live progress and an HTML report.\n\n"
    "Same flags, defaults and exit codes as local_runner.py (they are read from its parser).",
    extra=_quiet_means_no_progress,
))
