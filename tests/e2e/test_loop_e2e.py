"""The continuous-training loop on real taxi data split by year, with a real server and real runs.

span 1 (2013) trained and served -> 2014's rows sent through the server ->
`monitor` finds the shift -> a new span lands and `trigger` retrains on it ->
blessed, pushed, canary -> `promote` -> a degraded run on 2015 is not blessed
and changes nothing -> `rollback` while the server keeps answering.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline import spans
from tests.conftest import E2E_TRAIN_STEPS, ROOT, pushed_versions, run_local

pytestmark = pytest.mark.e2e
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`python -m monitoring ...` as cron or a person runs it."""
    return subprocess.run([sys.executable, "-m", "monitoring", *args], capture_output=True, text=True, cwd=ROOT,
                          env=ENV, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _labels(output: Path) -> dict:
    done = _cli("labels", "--output", str(output), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["labels"]


def _send(url: str, csv_path: Path, label: str = "stable", batch: int = 100) -> int:
    import csv

    from cli.serving import typed
    from serving.client import ServingClient

    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    with ServingClient(url, "taxi", label=label, timeout=30, retries=3) as client:
        rows = typed(rows, client.input_dtypes(), drop_unknown=True)
        for start in range(0, len(rows), batch):
            assert len(client.predict(rows[start:start + batch])) == len(rows[start:start + batch])
    return len(rows)


def _logged_rows(log_dir: Path) -> int:
    total = 0
    for path in log_dir.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            total += len(next(iter(json.loads(line)["inputs"].values())))
    return total


def test_monitor_retrain_canary_promote_degraded_rollback(tmp_path: Path) -> None:
    all_spans, data, output = tmp_path / "all", tmp_path / "data", tmp_path / "out"
    written = spans.split(str(Path(__import__("pipeline.data").data.bundled_taxi_data())), str(all_spans), "year")
    assert [p for p, _ in written.values()][:3] == ["2013", "2014", "2015"]
    data.mkdir()
    shutil.copytree(all_spans / "span-1", data / "span-1")

    first = run_local(output, "--data", str(data), "--no-report")
    assert first.returncode == 0, first.stdout + first.stderr[-2000:]
    [v1] = map(int, pushed_versions(output))
    assert _labels(output) == {"stable": v1}

    port, log_dir = _free_port(), output / "request_log"
    server = subprocess.Popen(
        [sys.executable, "-m", "serving", "--model-name", "taxi", "--model-config-file",
         str(output / "serving_model" / "models.config"), "--model-config-file-poll-wait-seconds", "0.5",
         "--allow-version-labels-for-unavailable-models",
         "--file-system-poll-wait-seconds", "0.5", "--rest-api-port", str(port), "--grpc-port", "-1",
         "--request-log-dir", str(log_dir), "--request-log-sample-rate", "1.0", "--log-level", "WARNING"],
        cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        from monitoring.canary import wait_for_label

        assert wait_for_label(url, "taxi", "stable", v1, seconds=120), "server did not come up"
        # Bad input first: nothing logged yet, so the monitor has nothing to judge.
        early = _cli("monitor", "--output", str(output), "--request-log", str(log_dir))
        assert early.returncode == 2 and early.stderr.strip().splitlines()[-1].startswith("error: "), early.stderr

        sent = _send(url, all_spans / "span-2" / "data.csv")  # 2014's trips hit the 2013 model
        deadline = time.monotonic() + 60
        while _logged_rows(log_dir) < sent and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _logged_rows(log_dir) == sent
        checked = _cli("monitor", "--output", str(output), "--request-log", str(log_dir), "--min-rows", "1000")
        assert checked.returncode == 1, checked.stdout + checked.stderr
        assert "verdict: SKEW in" in checked.stdout and "payment_type" in checked.stdout.split("verdict:")[-1]
        [report_json] = sorted((output / "monitoring").glob("skew-*.json"))
        assert json.loads(report_json.read_text())["verdict"] == "skew"
        assert report_json.with_suffix(".html").is_file()

        # Span 2 lands; the trigger retrains on it (the shift it saw is the reason, so drift is accepted).
        shutil.copytree(all_spans / "span-2", data / "span-2")
        retrain = _cli("trigger", "--output", str(output), "--data", str(data), "--skew-report", str(report_json),
                       "--", "--train-steps", E2E_TRAIN_STEPS, "--accept-drift", "--no-report")
        assert retrain.returncode == 0, retrain.stdout + retrain.stderr[-2000:]
        assert "span 2 landed" in retrain.stdout and "skew over threshold" in retrain.stdout
        assert "model: BLESSED" in retrain.stdout
        v2 = max(map(int, pushed_versions(output)))
        assert v2 > v1 and _labels(output) == {"stable": v1, "canary": v2}
        assert wait_for_label(url, "taxi", "canary", v2, seconds=120)
        # What the canary answers is not the stable model's traffic: the monitor judged every version's rows
        # against the stable version's training data, and 2013 rows sent to the canary diluted 2014's skew.
        to_canary = _send(url, all_spans / "span-1" / "data.csv", label="canary")
        deadline = time.monotonic() + 60
        while _logged_rows(log_dir) < sent + to_canary and time.monotonic() < deadline:
            time.sleep(0.5)
        judged = _cli("monitor", "--output", str(output), "--request-log", str(log_dir), "--min-rows", "1000", "--json")
        report = json.loads(judged.stdout)
        assert (report["version"], report["rows"]) == (v1, sent), judged.stderr
        assert report["window"]["skipped"]["other model or version"] > 0 and judged.returncode == 1
        # The next cron run, before anyone promotes: span 2 is still newer than the stable model's span 1, but the
        # canary has learned it. Retraining would repeat that run (or, with other flags, stop at the drift gate).
        again = _cli("trigger", "--output", str(output), "--data", str(data), "--dry-run")
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.startswith(f"trigger: no retraining: span 2 is already learned by version {v2}"), again.stdout

        promoted = _cli("promote", "--output", str(output), "--url", url, "--wait", "60")
        assert promoted.returncode == 0, promoted.stderr
        assert _labels(output) == {"stable": v2}

        # A degraded training config on the next span: not blessed, nothing pushed, stable unchanged.
        shutil.copytree(all_spans / "span-3", data / "span-3")
        degraded = _cli("trigger", "--output", str(output), "--data", str(data), "--", "--train-steps", "1",
                        "--learning-rate", "0.0000001", "--accept-drift", "--no-report")
        assert degraded.returncode == 0, degraded.stdout + degraded.stderr[-2000:]
        assert "model: NOT blessed" in degraded.stdout
        assert max(map(int, pushed_versions(output))) == v2 and _labels(output) == {"stable": v2}
        nothing = _cli("promote", "--output", str(output), "--url", url)  # no canary: not now, not a refusal
        assert nothing.returncode == 3 and "no canary label" in nothing.stderr

        # Rollback while clients keep calling the stable label: no request fails.
        failures: list[str] = []
        stop = threading.Event()

        def client() -> None:
            import httpx

            row = {"instances": [{"trip_miles": 1.0, "fare": 8.0, "trip_seconds": 400, "pickup_latitude": 41.9,
                                  "pickup_longitude": -87.6, "dropoff_latitude": 41.9, "dropoff_longitude": -87.6,
                                  "trip_start_hour": 9, "trip_start_day": 3, "trip_start_month": 5,
                                  "pickup_community_area": 8, "dropoff_community_area": 32,
                                  "payment_type": "Credit Card", "company": ""}]}
            with httpx.Client(base_url=url, timeout=30) as http:
                for _ in range(2000):
                    if stop.is_set():
                        return
                    answer = http.post("/v1/models/taxi/labels/stable:predict", json=row)
                    if answer.status_code != 200:
                        failures.append(answer.text)

        thread = threading.Thread(target=client)
        thread.start()
        try:
            rolled = _cli("rollback", "--output", str(output), "--url", url, "--wait", "60")
        finally:
            time.sleep(1)
            stop.set()
            thread.join(60)
        assert rolled.returncode == 0, rolled.stderr
        assert _labels(output) == {"stable": v1} and failures == []
        missing = _cli("rollback", "--output", str(output), "--url", url, "--to", "12345")
        assert missing.returncode == 1 and "not in" in missing.stderr and _labels(output) == {"stable": v1}
        decisions = [json.loads(x)["decision"] for x in (output / "monitoring" / "decisions.jsonl").read_text().splitlines()]
        assert decisions == ["retrain", "finished", "no-retrain", "retrain", "finished"]
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
