"""common.console: the run's output redirected into its log, also when the log cannot take it."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

# /dev/full refuses every write with ENOSPC, as the log's disk does when it is full.
FULL_LOG = """
import sys
from common.console import fds_to

with fds_to("/dev/full") as console:
    sys.stdout.write("a library's chatter, still in the buffer when the block ends")
    print("the run's own line", file=console)
print("after")
"""


def test_a_log_on_a_full_disk_loses_its_lines_not_the_run(tmp_path) -> None:
    """A run failing on a full disk printed ~60 lines of tracebacks on the console: flushing the redirected
    streams into the full log raised, and what they held spilled onto the terminal once it was back."""
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a run's stdout is
    done = subprocess.run([sys.executable, "-c", FULL_LOG], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env=buffered)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "the run's own line\nafter\n" and done.stderr == ""
