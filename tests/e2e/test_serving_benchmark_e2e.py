"""The serving benchmark on the session run's pushed model: stopping it stops the servers it started.

CI jobs and `timeout` end a benchmark with SIGTERM; a model server left behind
holds its ports and a core of a shared machine.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def _servers(bench: subprocess.Popen) -> list[psutil.Process]:
    try:
        children = psutil.Process(bench.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if "serving" in " ".join(c.cmdline())]


def test_sigterm_stops_the_server_it_started(pushed_model_base, tmp_path) -> None:
    bench = subprocess.Popen(
        [sys.executable, "benchmarks/serving_benchmark.py", "--model-base-path", str(pushed_model_base),
         "--seconds", "2", "--clients", "1", "--servers", "plain", "--out", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    servers, deadline = [], time.monotonic() + 240
    try:
        while not servers and bench.poll() is None and time.monotonic() < deadline:
            servers = _servers(bench)
            time.sleep(0.2)
        assert servers, f"no server started; exit {bench.poll()}"
        time.sleep(1)
        bench.send_signal(signal.SIGTERM)
        bench.wait(timeout=60)
        _, alive = psutil.wait_procs(servers, timeout=30)
        assert not alive, f"server still running after the benchmark was stopped: {[p.pid for p in alive]}"
        assert bench.returncode != 0 and not (tmp_path / "serving_benchmark.json").exists()
    finally:
        for process in [*_servers(bench), *servers]:
            if process.is_running():
                process.kill()
        if bench.poll() is None:
            bench.kill()
