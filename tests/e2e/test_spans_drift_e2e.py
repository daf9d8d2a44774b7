"""Spans and the drift gate on real taxi rows: a shifted span stops the run unless drift is accepted."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.data import bundled_taxi_data
from pipeline.run_summary import summarize
from tests.conftest import E2E_TRAIN_STEPS, ROOT, pushed_versions, run_local

pytestmark = pytest.mark.e2e


def _spans(tmp_path: Path) -> Path:
    with open(Path(bundled_taxi_data()) / "data.csv") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    root = tmp_path / "spans"
    # span-2: the same kind of trips, but nearly every one paid by credit card.
    shifted = [{**r, "payment_type": "Credit Card"} if i % 10 else r for i, r in enumerate(rows[6000:12000])]
    for number, part in ((1, rows[:6000]), (2, shifted)):
        (root / f"span-{number}").mkdir(parents=True)
        with open(root / f"span-{number}" / "data.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(part)
    return root


def test_drifted_span_is_stopped_then_accepted(tmp_path):
    data, output = _spans(tmp_path), tmp_path / "out"
    stopped = run_local(output, "--data", str(data), "--no-report")
    assert stopped.returncode == 2, stopped.stdout + stopped.stderr[-2000:]
    assert "span 2, drift vs span 1" in stopped.stdout
    assert "[drift] payment_type" in stopped.stderr and "--accept-drift" in stopped.stderr
    assert pushed_versions(output) == []

    # Cron's trigger does not start the same stop every hour (exit 2 each time), until drift is accepted.
    def trigger_says(*runner_flags: str) -> str:
        done = subprocess.run([sys.executable, "-m", "monitoring", "trigger", "--output", str(output), "--data",
                               str(data), "--dry-run", "--", "--train-steps", E2E_TRAIN_STEPS, "--no-report",
                               *runner_flags], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert re.fullmatch(r"trigger: no retraining: span 2 was stopped by the data gate at [-\d]+ [:\d]+: drift above "
                        r"threshold in \d+ features? \(--accept-drift to train anyway\); not retrying until the data or "
                        r"the pipeline changes\n", trigger_says()), trigger_says()
    assert trigger_says("--accept-drift").startswith("trigger: retraining: no model is pushed yet")

    # With 90% card payments span 2 teaches little (AUC 0.63, removes 0.4% of the base rate's errors): low bars,
    # so that this run pushes and its lineage can be read below. Training is seeded, so the figures repeat.
    accepted = run_local(output, "--data", str(data), "--accept-drift", "--no-report", "--auc-threshold", "0.55",
                         "--min-error-reduction", "0.0001")
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    assert "(drift accepted)" in accepted.stdout
    summary = summarize(str(output / "metadata.sqlite"))
    states = {c.name: c.state for c in summary.components}
    # The statistics of both spans were computed by the stopped run and reused (span 1's through an import).
    assert states["StatisticsGen"] == "cached" and states["PreviousSpanStatistics"] == "cached"
    assert "PreviousSpanExampleGen" not in states and "PreviousSpanStatisticsGen" not in states
    assert states["Trainer"] == "ran"

    from report.build import write_report

    html = write_report(str(output)).read_text()
    assert "Drift against the previous span" in html
    assert "payment_type" in html and "accepted by --accept-drift" in html

    # The lineage of the pushed model names the gate that let it through, not the one that stopped the first run.
    from report import mlmd

    steps = mlmd.lineage(mlmd.open_store(str(output)), str(pushed_versions(output)[-1]))
    gates = [s for s in steps if s.node == "DataGate"]
    assert len(gates) == 1 and bool(gates[0].properties.get("accept_drift")) and gates[0].state != "failed", gates
    assert len({s.node for s in steps}) == len(steps)  # one execution per component

    # Skew on served traffic while the model in service already learned the newest span: a retrain would fit
    # span 2 again (seeded: the same model) and push it as a new canary, every hour a cron job sees the skew.
    from monitoring.skew import FeatureResult, SkewReport

    report = tmp_path / "skew.json"
    over = FeatureResult("payment_type", "skew", "l_infty", 0.3, 0.04, "over threshold")
    report.write_text(json.dumps(SkewReport("taxi", int(pushed_versions(output)[-1]), 2, {}, 600, [over]).as_json()))
    trigger = subprocess.run([sys.executable, "-m", "monitoring", "trigger", "--output", str(output), "--data", str(data),
                              "--skew-report", str(report), "--dry-run"], capture_output=True, text=True, cwd=ROOT,
                             timeout=300)
    assert trigger.returncode == 0, trigger.stdout + trigger.stderr
    assert trigger.stdout.startswith("trigger: no retraining: skew over threshold in payment_type"), trigger.stdout
    assert "span 2" in trigger.stdout
    decision = json.loads((output / "monitoring" / "decisions.jsonl").read_text().splitlines()[-1])
    assert decision["decision"] == "no-retrain"


def _drift_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "[drift]" in line]


def test_a_new_span_reads_the_previous_span_the_last_run_ingested_instead_of_ingesting_it_again(tmp_path):
    """Span N+1's run needs span N's Examples and statistics for the drift gate. The run on span N made them
    as CsvExampleGen and StatisticsGen; TFX's cache key holds the node id, so PreviousSpanExampleGen and
    PreviousSpanStatisticsGen read and described span N again (3.8 s of 26 s on the taxi spans). Now they are
    imported: the same artifacts, the same drift verdict. Changed data is ingested again."""
    data, output = _spans(tmp_path), tmp_path / "out"
    first = run_local(output, "--data", str(data), "--span", "1", "--no-report")
    assert first.returncode == 0, first.stdout + first.stderr[-2000:]
    first_run = summarize(str(output / "metadata.sqlite")).run_id

    second = run_local(output, "--data", str(data), "--no-report")  # span 2, drift vs span 1: stops
    assert second.returncode == 2 and "[drift] payment_type" in second.stderr, second.stdout + second.stderr[-2000:]
    states = {c.name: c.state for c in summarize(str(output / "metadata.sqlite")).components}
    assert states["PreviousSpanExamples"] == states["PreviousSpanStatistics"] == "cached", states
    assert "PreviousSpanExampleGen" not in states and states["CsvExampleGen"] == "ran", states
    from report import mlmd

    def outputs(run_id: str) -> dict:
        return {e.node: e.outputs for e in mlmd.run_executions(mlmd.open_store(str(output)), run_id)}

    made, imported = outputs(first_run), outputs(summarize(str(output / "metadata.sqlite")).run_id)
    assert imported["PreviousSpanExamples"]["result"][0].id == made["CsvExampleGen"]["examples"][0].id
    assert imported["PreviousSpanStatistics"]["result"][0].id == made["StatisticsGen"]["statistics"][0].id

    # The same verdict as from a run that ingests span 1 itself (a new output folder, nothing to import).
    fresh = run_local(tmp_path / "fresh", "--data", str(data), "--no-report")
    assert fresh.returncode == 2 and _drift_lines(fresh.stderr) == _drift_lines(second.stderr), fresh.stderr[-2000:]

    # Not for --no-cache (every component runs), nor across pipelines (TFX's cache is per pipeline too).
    for flags in (["--no-cache"], ["--pipeline-name", "other-pipeline"]):
        again = run_local(output, "--data", str(data), "--no-report", *flags)
        assert again.returncode == 2 and _drift_lines(again.stderr) == _drift_lines(second.stderr), again.stderr
        states = {c.name: c.state for c in summarize(str(output / "metadata.sqlite")).components}
        assert states["PreviousSpanExampleGen"] == "ran" and "PreviousSpanExamples" not in states, (flags, states)

    # Span 1 edited since it was ingested: read again, not imported.
    span_1_file = data / "span-1" / "data.csv"
    span_1_file.write_text("".join(span_1_file.read_text().splitlines(keepends=True)[:-1]))
    third = run_local(output, "--data", str(data), "--no-report")
    assert third.returncode == 2, third.stdout + third.stderr[-2000:]
    states = {c.name: c.state for c in summarize(str(output / "metadata.sqlite")).components}
    assert states["PreviousSpanExampleGen"] == states["PreviousSpanStatisticsGen"] == "ran", states
    assert "PreviousSpanExamples" not in states


def test_a_span_after_one_the_gate_stopped_is_compared_with_the_last_span_that_passed(tmp_path):
    """Span 2 (90% card payments) stopped for drift; span 3, a fixed export like span 1, was compared with
    span 2 and stopped too, so the only way on was --accept-drift, which turns the check off."""
    data, output = _spans(tmp_path), tmp_path / "out"
    first = run_local(output, "--data", str(data), "--span", "1", "--no-report")
    assert first.returncode == 0, first.stderr[-2000:]
    stopped = run_local(output, "--data", str(data), "--no-report")
    assert stopped.returncode == 2 and "[drift] payment_type" in stopped.stderr, stopped.stderr[-2000:]
    (data / "span-3").mkdir()
    (data / "span-3" / "data.csv").write_bytes((data / "span-1" / "data.csv").read_bytes())
    fixed = run_local(output, "--data", str(data), "--no-report")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr[-2000:]
    assert "span 3, drift vs span 1" in fixed.stdout
