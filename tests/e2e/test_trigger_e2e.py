"""The retraining trigger on real pipeline runs: what it decides after a run it started, as cron sees it."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import spans
from pipeline.data import bundled_taxi_data
from tests.conftest import E2E_TRAIN_STEPS, ROOT, pushed_versions

pytestmark = pytest.mark.e2e
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _trigger(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`python -m monitoring trigger ...` as cron or a person runs it."""
    return subprocess.run([sys.executable, "-m", "monitoring", "trigger", *args], capture_output=True, text=True,
                          cwd=ROOT, env=ENV, timeout=timeout)


def _decisions(output: Path) -> list[dict]:
    return [json.loads(x) for x in (output / "monitoring" / "decisions.jsonl").read_text().splitlines()]


def test_a_span_retrained_and_not_blessed_is_not_retried_until_something_changes(tmp_path: Path) -> None:
    """Every cron run after a refused model decided 'retraining' on the same span again; each started the pipeline,
    which found nothing changed, and the log and the exit said it had retrained."""
    all_spans, data, output = tmp_path / "all", tmp_path / "data", tmp_path / "out"
    spans.split(bundled_taxi_data(), str(all_spans), "year")
    data.mkdir()
    shutil.copytree(all_spans / "span-1", data / "span-1")
    # A bar no model here reaches (AUC ~0.93 on 2013's eval split): the Evaluator refuses it.
    flags = ("--", "--train-steps", E2E_TRAIN_STEPS, "--auc-threshold", "0.99", "--no-report")

    first = _trigger("--output", str(output), "--data", str(data), *flags)
    assert first.returncode == 0, first.stdout + first.stderr[-2000:]
    assert first.stdout.startswith("trigger: retraining: no model is pushed yet"), first.stdout
    refusal = re.search(r"^model: NOT blessed: (.+)$", first.stdout, re.MULTILINE)
    assert refusal and "< required 0.99" in refusal[1], first.stdout
    assert pushed_versions(output) == []

    again = _trigger("--output", str(output), "--data", str(data), *flags)
    assert again.returncode == 0, again.stdout + again.stderr[-2000:]
    said = again.stdout.strip().splitlines()
    assert len(said) == 1, said  # one line, and no pipeline run behind it
    assert re.fullmatch(r"trigger: no retraining: span 1 was retrained at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d and not "
                        rf"blessed: {re.escape(refusal[1])}; not retrying until the data or the pipeline changes",
                        said[0]), said[0]
    assert [d["decision"] for d in _decisions(output)] == ["retrain", "finished", "no-retrain"]
    assert _decisions(output)[-1]["reasons"] == [said[0].removeprefix("trigger: no retraining: ")]

    # Anything the refused run did not see is worth a run: another pipeline config, the span's data, a new span.
    def decided(*extra: str) -> str:
        done = _trigger("--output", str(output), "--data", str(data), "--dry-run", *extra)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert decided(*flags).startswith("trigger: no retraining: span 1 was retrained at")
    assert decided("--", "--train-steps", E2E_TRAIN_STEPS, "--auc-threshold", "0.9", "--no-report").startswith(
        "trigger: retraining: no model is pushed yet")
    assert decided(*flags, "--rerun").startswith("trigger: retraining: no model is pushed yet")
    csv_file = data / "span-1" / "data.csv"
    original = csv_file.read_bytes()
    csv_file.write_bytes(original[:original.rindex(b"\n", 0, -1) + 1])  # the span's last row withdrawn
    assert decided(*flags).startswith("trigger: retraining: no model is pushed yet")
    csv_file.write_bytes(original)
    assert decided(*flags).startswith("trigger: no retraining: span 1 was retrained at")
    shutil.copytree(all_spans / "span-2", data / "span-2")
    assert decided(*flags).startswith("trigger: retraining: no model is pushed yet")


def test_skew_on_an_unchanged_flat_data_folder_does_not_rerun_the_pipeline(trained_output: Path,
                                                                           tmp_path: Path) -> None:
    """A flat data folder is retrained when its files change (the trigger compares them with the fingerprint
    ExampleGen recorded); skew alone, on the files the model in service learned, would fit the same rows again,
    as with spans, whatever the flags after --. Before, every hourly decision said 'retraining' and the run
    repeated the last one exactly."""
    from monitoring.skew import FeatureResult, SkewReport

    version = int(pushed_versions(trained_output)[-1])
    report = tmp_path / "skew.json"
    over = FeatureResult("fare", "skew", "jensen_shannon_divergence", 0.5, 0.02, "over threshold")
    report.write_text(json.dumps(SkewReport("taxi", version, None, {}, 900, [over]).as_json()))
    data = bundled_taxi_data()  # what the session's run trained on, with --train-steps E2E_TRAIN_STEPS
    flags = ("--output", str(trained_output), "--data", data, "--skew-report", str(report), "--dry-run")

    for steps in (E2E_TRAIN_STEPS, str(int(E2E_TRAIN_STEPS) + 1)):
        same = _trigger(*flags, "--", "--train-steps", steps)
        assert same.returncode == 0, same.stdout + same.stderr
        assert same.stdout == (f"trigger: no retraining: skew over threshold in fare (report on version {version}), "
                               f"but the model in service (version {version}) already learned the data in {data}: "
                               "retraining would fit the same rows again; waiting for new data\n"), same.stdout
