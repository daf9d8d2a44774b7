"""The server's request log (serving/request_log.py): what `taxi monitor` reads must be whole and accounted for."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from serving.request_log import RequestLogger

INPUTS = {"fare": np.array([1.5]), "company": np.array([b"Flash Cab"], dtype=object)}
OUTPUTS = {"big_tip_probability": np.array([0.25])}


def _logged(directory: Path, records: int = 1, on_drop=None) -> None:
    logger = RequestLogger(directory, 1.0, on_drop=on_drop)
    for _ in range(records):
        logger.log("taxi", 1, "serving_default", "rest", INPUTS, OUTPUTS)
    logger.close()


def _lines(directory: Path) -> list[str]:
    return [line for f in sorted(directory.glob("*.jsonl")) for line in f.read_text().splitlines()]


def test_a_log_folder_removed_while_the_server_runs_is_made_again(tmp_path: Path) -> None:
    """A cleanup or `mv` of the logs: every later record failed to write, was lost, and was not counted."""
    folder = tmp_path / "log"
    logger = RequestLogger(folder, 1.0)
    shutil.rmtree(folder)
    logger.log("taxi", 1, "serving_default", "rest", INPUTS, OUTPUTS)
    logger.close()
    assert [json.loads(line)["inputs"]["fare"] for line in _lines(folder)] == [[1.5]]


def test_a_record_that_cannot_be_written_is_counted_as_dropped(tmp_path: Path) -> None:
    """serving_request_log_dropped_total counted only a writer falling behind, not records a write lost."""
    folder, drops = tmp_path / "log", []
    logger = RequestLogger(folder, 1.0, on_drop=lambda: drops.append(1))
    shutil.rmtree(folder)
    folder.write_text("a file where the folder was")  # the folder cannot be made again: each write fails
    for _ in range(3):
        logger.log("taxi", 1, "serving_default", "rest", INPUTS, OUTPUTS)
    logger.close()
    assert len(drops) == 3


def test_a_line_left_unfinished_by_a_killed_server_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    _logged(folder)
    (day_file,) = folder.glob("*.jsonl")
    with day_file.open("a") as handle:
        handle.write('{"ts": 1.0, "model": "ta')  # killed mid-write
    _logged(folder, records=2)
    lines = _lines(folder)
    assert len(lines) == 4 and lines[1] == '{"ts": 1.0, "model": "ta'
    assert all(json.loads(line)["model"] == "taxi" for line in (lines[0], lines[2], lines[3]))


def test_sigterm_stops_the_server_after_it_flushed_the_request_log(tmp_path: Path) -> None:
    """uvicorn drains REST on SIGTERM, then raises it again: its default action killed the process before the
    server's stop(), so gRPC requests under way were cut and the request log's queued records were lost."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    from serving.testing import push_toy
    from tests.conftest import ROOT

    push_toy(tmp_path / "toy", 1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "serving", "--model-base-path", str(tmp_path / "toy"), "--model-name", "toy",
         "--rest-api-port", str(port), "--grpc-port", "-1", "--request-log-dir", str(tmp_path / "log"),
         "--request-log-sample-rate", "1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models/toy", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, server.stderr.read() if server.stderr else ""
            time.sleep(0.2)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(20):
                assert http.post("/v1/models/toy:predict", json={"instances": [{"x": 1.0, "s": ""}]}).status_code == 200
        os.kill(server.pid, signal.SIGTERM)
        assert server.wait(timeout=60) == 0, server.stderr.read()
        assert len(_lines(tmp_path / "log")) == 20
    finally:
        if server.poll() is None:
            server.kill()
