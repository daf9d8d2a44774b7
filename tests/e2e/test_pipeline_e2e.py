"""The real pipeline on the bundled data and on broken copies of it."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitoring.labels import Deployment
from pipeline.data import bundled_taxi_data
from pipeline.run_summary import summarize
from tests.conftest import E2E_TRAIN_STEPS, ROOT, pushed_versions, run_local

pytestmark = pytest.mark.e2e


def _stdout(output: Path) -> str:
    return (output / "first_run_stdout.txt").read_text()


def test_run_is_blessed_pushed_and_summarized(trained_output):
    out = _stdout(trained_output)
    assert "model: BLESSED" in out
    assert "threshold: AUC >= 0.90" in out
    for component in ("CsvExampleGen", "StatisticsGen", "ExampleValidator", "DataGate", "Transform",
                      "Trainer", "Evaluator", "Pusher"):
        assert component in out
    summary = summarize(str(trained_output / "metadata.sqlite"))
    assert summary.blessed and summary.pushed_version
    assert summary.metrics["auc"] >= 0.90, summary.metrics
    assert summary.metrics["example_count"] > 4000
    version_dir = trained_output / "serving_model" / "taxi" / summary.pushed_version
    assert (version_dir / "saved_model.pb").exists() and (version_dir / "variables").is_dir()


def test_the_summary_reads_this_spans_statistics_for_data_warnings(trained_output, monkeypatch):
    """The `data:` lines (values with spaces around them, tests/unit/test_run_summary_lines.py) come from the run's
    own StatisticsGen output; the bundled data has none of them."""
    from pipeline import run_summary

    read = []
    monkeypatch.setattr(run_summary, "padded_strings", lambda uri: read.append(Path(uri)) or [])
    summarize(str(trained_output / "metadata.sqlite"))
    assert len(read) == 1 and read[0].parent.name == "statistics" and read[0].parent.parent.name == "StatisticsGen"
    assert sorted(p.name for p in read[0].iterdir()) == ["Split-eval", "Split-train"]
    assert run_summary.padded_strings(str(read[0])) == [] and "\ndata: " not in _stdout(trained_output)


def test_identical_rerun_pushes_nothing_new(trained_output):
    before = pushed_versions(trained_output)
    fast = run_local(trained_output)
    assert fast.returncode == 0, fast.stderr
    assert "nothing changed since run" in fast.stdout
    # the last run's summary, which says it pushed, is quoted indented: a line `pushed: version` is a push now
    assert "  pushed: " in fast.stdout and not fast.stdout.count("\npushed:"), fast.stdout
    # Let TFX itself decide: everything upstream of the Evaluator is a cache hit,
    # and the model (identical to the pushed one) is not pushed again.
    checked = run_local(trained_output, "--rerun")
    assert checked.returncode == 0, checked.stderr[-2000:]
    # TensorFlow's chatter belongs in the log, also when the Evaluator is a cache hit too (a second --rerun)
    # and the summary is the first to read the evaluation
    again = run_local(trained_output, "--rerun")
    assert again.returncode == 0, again.stderr[-2000:]
    assert fast.stderr == checked.stderr == again.stderr == "", again.stderr
    summary = summarize(str(trained_output / "metadata.sqlite"))
    states = {c.name: c.state for c in summary.components}
    for name in ("CsvExampleGen", "StatisticsGen", "Transform", "Trainer"):
        assert states[name] == "cached", states
    assert summary.pushed_version is None
    assert pushed_versions(trained_output) == before


def test_no_cache_rerun_of_unchanged_data_pushes_nothing_new(trained_output):
    # Everything runs again: tf.Transform's analyzers must give the same constants (same batches every
    # run) and the Pusher must see through TensorFlow's per-process function names.
    before = pushed_versions(trained_output)
    result = run_local(trained_output, "--no-cache")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = summarize(str(trained_output / "metadata.sqlite"))
    states = {c.name: c.state for c in summary.components}
    assert states["Transform"] == states["Trainer"] == "ran", states
    assert summary.blessed and summary.pushed_version is None, result.stdout
    assert "pushed: nothing new (identical to" in result.stdout
    assert pushed_versions(trained_output) == before


def _broken_copy(tmp_path: Path, mutate) -> Path:  # noqa: ANN001
    folder = tmp_path / "data"
    folder.mkdir()
    with open(Path(bundled_taxi_data()) / "data.csv") as handle:
        rows = list(csv.DictReader(handle))[:3000]
    fields = list(rows[0])
    rows, fields = mutate(rows, fields)
    with open(folder / "data.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return folder


def _string_in_numeric(rows, fields):  # noqa: ANN001
    rows[5]["trip_miles"] = "twelve"
    return rows, fields


def _unknown_payment(rows, fields):  # noqa: ANN001
    for row in rows[:50]:
        row["payment_type"] = "Bitcoin"
    return rows, fields


def _missing_column(rows, fields):  # noqa: ANN001
    return rows, [f for f in fields if f != "fare"]


def _nan_fare(rows, fields):  # noqa: ANN001
    rows[7]["fare"] = "nan"  # parses as a float, so only the schema's disallow_nan catches it
    return rows, fields


@pytest.mark.parametrize(
    "mutate, feature",
    [(_string_in_numeric, "trip_miles"), (_unknown_payment, "payment_type"), (_missing_column, "fare"),
     (_nan_fare, "FLOAT_TYPE_HAS_NAN")],
)
def test_data_gate_stops_bad_data(tmp_path, mutate, feature):
    output = tmp_path / "out"
    result = run_local(output, "--data", str(_broken_copy(tmp_path, mutate)))
    assert result.returncode == 2, result.stdout + result.stderr[-2000:]
    assert "stopped by the data gate" in result.stderr
    assert feature in result.stderr
    assert "Traceback" not in result.stderr
    if mutate is _string_in_numeric:  # TFDV says only that the column held a STRING: the run says where
        assert "where in the data:\n  trip_miles: 'twelve' in data.csv line 7 is not a number" in result.stderr
    summary = summarize(str(output / "metadata.sqlite"))
    ran = {c.name for c in summary.components}
    assert "Transform" not in ran and "Trainer" not in ran
    assert pushed_versions(output) == []


def _emptied_columns(rows, fields):  # noqa: ANN001
    for row in rows:  # required columns, INT with a domain and STRING, and one the schema lets be empty
        row["dropoff_community_area"] = row["company"] = row["pickup_census_tract"] = ""
    return rows, fields


def test_a_required_column_with_every_cell_empty_stops_the_run_naming_it(tmp_path):
    """CsvExampleGen writes such a column as empty value lists, which TFDV counts as present: a required column
    without a domain passed the gate, one with a domain stopped it for "Unexpectedly small value: 0"."""
    result = run_local(tmp_path / "out", "--data", str(_broken_copy(tmp_path, _emptied_columns)))
    assert result.returncode == 2, result.stdout + result.stderr[-2000:]
    problems = [line.strip() for line in result.stderr.splitlines() if line.startswith("  [")]
    # Each column named once: TFDV itself names the STRING one, which it sees without a type.
    assert sorted(tuple(p.split(": ")[0:2]) for p in problems) == sorted(
        (f"[{split}] {column}", kind) for split in ("train", "eval")
        for column, kind in (("dropoff_community_area", "NO_VALUES"), ("company", "FEATURE_TYPE_NOT_PRESENT"))), problems
    assert any("dropoff_community_area: NO_VALUES: the column is in the data but every cell of it is empty" in p
               for p in problems), problems


def test_killed_mid_transform_then_rerun_completes(tmp_path):
    output = tmp_path / "out"
    command = [sys.executable, str(ROOT / "local_runner.py"), "--output", str(output), "--train-steps", "300"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if list((output / "pipeline_root" / "Transform").glob("transform_graph/*")):
                break
            time.sleep(0.2)
        assert process.poll() is None, "the run ended before Transform started"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert pushed_versions(output) == []
    result = run_local(output)
    assert result.returncode == 0, result.stderr[-2000:]
    versions = pushed_versions(output)
    assert len(versions) == 1
    assert (output / "serving_model" / "taxi" / versions[0] / "saved_model.pb").exists()


# local_runner.py, SIGKILLed at one point of a run: right after the Pusher copied the model into
# serving_model/ (before MLMD records the push), or right after the run, before the labels are written.
KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {root!r})
import local_runner
from monitoring import push_labels
from pipeline.components import dedup_pusher

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if {at!r} == "pusher":
    push = dedup_pusher.Executor.Do
    dedup_pusher.Executor.Do = lambda self, *args, **kwargs: (push(self, *args, **kwargs), die())
else:
    push_labels.label_push = die
local_runner.main(sys.argv[1:])
"""


@pytest.mark.parametrize("at", ["pusher", "labels"])
def test_killed_after_the_push_then_rerun_labels_the_pushed_version(tmp_path, at):
    """The re-run finds the model identical to the pushed version and pushes nothing: that version must still
    get its label, or models.config never names it (no stable at all after a first run)."""
    output = tmp_path / "out"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN.format(root=str(ROOT), at=at), "--output", str(output),
         "--train-steps", E2E_TRAIN_STEPS, "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    versions = pushed_versions(output)
    assert len(versions) == 1
    result = run_local(output)
    assert result.returncode == 0, result.stderr[-2000:]
    assert pushed_versions(output) == versions
    assert Deployment.for_output(output).labels() == {"stable": int(versions[0])}, result.stdout
    assert f"labels: version {versions[0]} was pushed but never labelled" in result.stdout  # said, not silent
    assert f"stable {versions[0]}" in result.stdout


# Ctrl-C while CsvExampleGen's Beam pipeline runs: Beam re-raises it as a RuntimeError naming the step.
INTERRUPTED_IN_BEAM = """
import os, signal, sys, time
sys.path.insert(0, {root!r})
import local_runner
from pipeline.components import batched_csv_example_gen as gen

def interrupted(self, *args, **kwargs):
    os.kill(os.getpid(), signal.{signal})
    time.sleep(10)
    yield from ()

gen._RowBatchToExamples.process = interrupted
sys.exit(local_runner.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signal", ["SIGINT", "SIGTERM"])  # Ctrl-C; timeout(1), systemd, kill
def test_ctrl_c_inside_a_beam_component_says_interrupted(tmp_path, signal):
    """SIGTERM ended the run with no word (exit -15) where Ctrl-C said what was kept."""
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_IN_BEAM.format(root=str(ROOT), signal=signal),
                           "--no-progress",
                           "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 1, done.stderr
    # (the harness imports TFX before the runner sends library output to the log: its import warnings come first)
    assert done.stderr.strip().splitlines()[-1] == "interrupted: completed components stay cached; run again to resume"
    assert "error:" not in done.stderr and "Traceback" not in done.stderr, done.stderr


# An interrupt that TensorFlow or Keras turns into another error: a bare `except:` swallows it, then a later
# step fails on what it left half-done (seen: "Could not pack sequence", pybind11's "MISMATCH of original and
# normalized active exception types").
INTERRUPT_SWALLOWED = """
import os, signal, sys, time
sys.path.insert(0, {root!r})
import local_runner
from pipeline.components import data_gate

def swallowing(statistics):
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
    except:  # noqa: E722 - as Keras's backend shape() does
        pass
    raise ValueError("Could not pack sequence. Structure had 2 atoms, but flat_sequence had 1 items.")

data_gate.empty_splits = swallowing
sys.exit(local_runner.main(sys.argv[1:]))
"""


def test_an_interrupt_a_library_turns_into_another_error_still_says_interrupted(tmp_path):
    """SIGTERM during the Trainer once printed `error: the pipeline failed in Trainer: Could not pack sequence`,
    and MLMD kept the component FAILED, so `taxi runs` and the report said the run failed there."""
    output = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", INTERRUPT_SWALLOWED.format(root=str(ROOT)), "--no-progress",
                           "--output", str(output)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "interrupted: completed components stay cached; run again to resume"
    runs = subprocess.run([sys.executable, "-m", "cli", "runs", "-o", str(output), "--json", "--no-metrics"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert json.loads(runs.stdout.splitlines()[0])["outcome"] == "incomplete", runs.stdout + runs.stderr


# A component that fails outside Beam: the DataGate raises (as a Trainer, Evaluator or Pusher bug would).
FAILING_COMPONENT = """
import sys
sys.path.insert(0, {root!r})
import local_runner
from pipeline.components import data_gate

def broken(statistics):
    raise ValueError("boom in the gate")

data_gate.empty_splits = broken
sys.exit(local_runner.main(sys.argv[1:]))
"""


def test_a_failed_run_names_a_log_that_holds_the_traceback(tmp_path):
    """The one console line ends '(details: <log>)': the log must hold what failed, where."""
    done = subprocess.run([sys.executable, "-c", FAILING_COMPONENT.format(root=str(ROOT)), "--no-progress",
                           "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the pipeline failed in DataGate: boom in the gate"), last
    log = Path(last.rsplit("(details: ", 1)[1].rstrip(")")).read_text()
    assert "Traceback (most recent call last)" in log and "ValueError: boom in the gate" in log, log[-3000:]


def test_stable_version_deleted_by_hand_then_rerun_leaves_labels_on_pushed_versions(tmp_path):
    """stable V0 and canary V1; V0's folder is deleted by hand: the re-run pushes nothing (the model is V1's),
    and models.config must not go on naming V0 (TF Serving would wait for it for ever)."""
    import shutil

    from monitoring import labels

    output = tmp_path / "out"
    first = run_local(output)
    assert first.returncode == 0, first.stderr[-2000:]
    (v1,) = pushed_versions(output)
    v0 = str(int(v1) - 1)
    shutil.copytree(output / "serving_model" / "taxi" / v1, output / "serving_model" / "taxi" / v0)
    deployment = labels.Deployment.for_output(output)
    labels.rollback(deployment, lambda version: None, int(v0))
    labels.canary(deployment, lambda version: None, int(v1))
    assert deployment.labels() == {"stable": int(v0), "canary": int(v1)}
    shutil.rmtree(output / "serving_model" / "taxi" / v0)
    result = run_local(output)
    assert result.returncode == 0, result.stderr[-2000:]
    assert pushed_versions(output) == [v1]
    assert labels.dangling(deployment) == {}, deployment.config_path.read_text()
    assert deployment.labels() == {"stable": int(v1)}
    assert f"labels: stable version {v0} is no longer in " in result.stdout


def test_a_pushed_model_deleted_by_hand_is_pushed_again_and_a_deleted_store_starts_over(tmp_path):
    """Outputs lost since the last run are made again. The Pusher was a cache hit whatever became of the
    version it pushed: with that folder deleted the run said 'model: BLESSED, pushed: nothing new' and served
    nothing. With metadata.sqlite deleted, the run failed in ImportSchemaGen ('file already exists': MLMD
    numbers executions from 1 again, into the old run's output folders)."""
    import os
    import shutil

    output = tmp_path / "out"
    first = run_local(output, "--no-report")
    assert first.returncode == 0, first.stderr[-2000:]
    (lost,) = pushed_versions(output)
    shutil.rmtree(output / "serving_model" / "taxi" / lost)
    again = run_local(output, "--no-report")
    assert again.returncode == 0, again.stderr[-2000:]
    (pushed,) = pushed_versions(output)
    assert pushed != lost and f"pushed: version {pushed}" in again.stdout, again.stdout
    assert f"{lost}" in again.stdout  # the run says which push it found gone

    os.remove(output / "metadata.sqlite")
    fresh = run_local(output, "--no-report")
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert "pushed: nothing new (identical to" in fresh.stdout, fresh.stdout
    assert pushed_versions(output) == [pushed]


def test_a_reader_that_stops_early_does_not_cut_a_run_short(tmp_path):
    """`taxi run | head -1`: the summary's broken pipe ended the run with exit 1 before it labelled its push and
    recorded itself (the next run did not know it was done)."""
    output = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-m", "cli", "run", "--output", str(output), "--train-steps",
                            E2E_TRAIN_STEPS, "--no-report", "--no-progress", "--serving-url", "http://127.0.0.1:9"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert run.stdout.readline().startswith("running pipeline")
    run.stdout.close()
    assert run.wait(timeout=900) == 0, run.stderr.read()[-2000:]
    assert run.stderr.read() == ""
    [version] = pushed_versions(output)
    assert Deployment.for_output(output, "taxi").labels() == {"stable": int(version)}
    assert (output / "pipeline_root" / "last_completed_run.json").is_file()


def test_a_full_log_disk_is_the_run_s_failure_not_an_output_failure(tmp_path):
    """While a run points fd 1 at its log, a write there that fails is the run's error (the component fails, named):
    the guard on standard output took it for its own, said 'cannot write the output' and left the run incomplete."""
    code = """
import sys
from cli.main import OutputFailed, _GuardedStdout
from common.console import fds_to

sys.stdout = _GuardedStdout(sys.stdout)
try:
    with fds_to("/dev/full"):
        print("x" * 100000)
        sys.stdout.flush()
except OutputFailed:
    print("taken for standard output's", file=sys.stderr)
except OSError as error:
    print(f"the run's: {error.strerror}", file=sys.stderr)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stderr.strip() == "the run's: No space left on device", done.stderr
