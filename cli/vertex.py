"""`taxi vertex compile|submit|schedule ...`: vertex_runner.py's parser and code, errors naming `taxi vertex`."""
from __future__ import annotations

import click

import vertex_runner
from cli.argparse_bridge import bridge
from cli.common import verbosity_options


def _with_verbosity(command: click.Command) -> None:
    verbosity_options(command)
    for child in getattr(command, "commands", {}).values():
        _with_verbosity(child)


def _delegate(argv: list[str]) -> int:
    return vertex_runner.main(argv, prog="taxi vertex")  # so a usage error names 'taxi vertex CMD --help'


vertex = bridge(
    "vertex", vertex_runner.build_parser("taxi vertex"), _delegate,
    "Compile, submit and schedule the pipeline on Vertex AI Pipelines (see the README section 'Run on Vertex AI').",
)
_with_verbosity(vertex)
