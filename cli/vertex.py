"""`taxi vertex compile|submit|schedule ...`: vertex_runner.py's parser and code, unchanged."""
from __future__ import annotations

import click

import vertex_runner
from cli.argparse_bridge import bridge
from cli.common import verbosity_options


def _with_verbosity(command: click.Command) -> None:
    verbosity_options(command)
    for child in getattr(command, "commands", {}).values():
        _with_verbosity(child)


vertex = bridge(
    "vertex", vertex_runner.build_parser(), vertex_runner.main,
    "Compile, submit and schedule the pipeline on Vertex AI Pipelines (see the README section 'Run on Vertex AI').",
)
_with_verbosity(vertex)
