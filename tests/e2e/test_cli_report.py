"""The report, runs and lineage on a real pipeline run, and the report as a real browser renders it.

Needs the session pipeline run (`trained_output`), hence the e2e marker. The
browser check needs Debian's `chromium` (CI installs it); without it that one
test is skipped with the reason.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from pipeline.run_summary import summarize
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def taxi(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_the_run_wrote_its_report_automatically(trained_output) -> None:
    run_id = summarize(str(trained_output / "metadata.sqlite")).run_id
    stdout = (trained_output / "first_run_stdout.txt").read_text()
    assert "report: " in stdout
    html = list((trained_output / "reports").glob("*.html"))
    assert [p.stem for p in html] == [run_id.replace(":", "-")]
    text = html[0].read_text()
    assert "<script" not in text and "<link" not in text and "http://" not in text.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert "CsvExampleGen" in stdout  # live progress lines (no TTY in tests: plain lines)


def test_runs_and_lineage(trained_output) -> None:
    summary = summarize(str(trained_output / "metadata.sqlite"))
    runs = taxi("runs", "-o", str(trained_output), "--json")
    assert runs.returncode == 0, runs.stderr
    rows = [json.loads(line) for line in runs.stdout.splitlines()]
    first = [r for r in rows if r["pushed_version"] == summary.pushed_version][0]
    assert first["outcome"] == "completed" and first["blessed"] is True
    assert first["metrics"]["auc"] == pytest.approx(summary.metrics["auc"])
    lineage = taxi("lineage", summary.pushed_version, "-o", str(trained_output), "--json")
    assert lineage.returncode == 0, lineage.stderr
    steps = json.loads(lineage.stdout)["steps"]
    nodes = [s["node"] for s in steps]
    for node in ("CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "Transform", "Trainer", "Evaluator", "Pusher"):
        assert node in nodes
    gen = steps[nodes.index("CsvExampleGen")]
    assert gen["properties"]["input_base"].endswith("data/simple")
    assert taxi("lineage", "42", "-o", str(trained_output)).returncode == 2


def test_report_where_reports_is_a_file_is_one_line(trained_output, tmp_path) -> None:
    (tmp_path / "metadata.sqlite").symlink_to(trained_output / "metadata.sqlite")  # artifact URIs are absolute
    (tmp_path / "reports").write_text("kept")
    made = taxi("report", "-o", str(tmp_path), "-q")
    assert made.returncode == 1
    assert made.stderr.strip().splitlines() == [
        f"error: cannot write the report in {tmp_path / 'reports'}: it is a file, not a folder"]
    assert (tmp_path / "reports").read_text() == "kept"
    (tmp_path / "reports").unlink()
    (tmp_path / "reports").symlink_to(tmp_path / "gone")  # a link left after its target was deleted
    made = taxi("report", "-o", str(tmp_path), "-q")
    assert made.returncode == 1 and made.stderr.strip().splitlines() == [
        f"error: cannot write the report in {tmp_path / 'reports'}: it is a symlink to nothing"]


def test_outputs_gone_or_damaged_cost_their_section_not_the_report(trained_output, tmp_path) -> None:
    """A truncated FeatureStats.pb (DecodeError) or metrics file (DataLossError) made `taxi report` and `taxi runs`
    end in a traceback, and one such run hid the whole list."""
    (tmp_path / "metadata.sqlite").symlink_to(trained_output / "metadata.sqlite")  # artifact URIs are absolute
    root = trained_output / "pipeline_root"
    damaged = [next(root.glob("StatisticsGen/statistics/*/Split-train/FeatureStats.pb")),
               next(root.glob("Evaluator/evaluation/*/metrics-*"))]
    kept = {path: path.read_bytes() for path in damaged}
    try:
        for path, data in kept.items():
            path.write_bytes(data[: len(data) // 2])
        made = taxi("report", "-o", str(tmp_path), "-q")
        assert made.returncode == 0, made.stderr
        html = (tmp_path / "reports").glob("*.html").__next__().read_text()
        assert 'id="unreadable"' in html and "the data statistics and anomalies: DecodeError" in html
        assert "the evaluation" in html.split('id="unreadable"')[1].split("</div>")[0]
        (tmp_path / "reports").rename(tmp_path / "reports.kept")  # no sidecar: runs reads the evaluation itself
        runs = taxi("runs", "-o", str(tmp_path), "--json")
        assert runs.returncode == 0, runs.stderr
        assert [json.loads(line)["metrics"] for line in runs.stdout.splitlines()][-1] == {}
    finally:
        for path, data in kept.items():
            path.write_bytes(data)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it: apt-get install -y chromium)")
def test_report_renders_in_chromium(trained_output, tmp_path) -> None:
    made = taxi("report", "-o", str(trained_output))
    assert made.returncode == 0, made.stderr
    page = made.stdout.strip().splitlines()[-1]
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", f"file://{page}"], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    summary = summarize(str(trained_output / "metadata.sqlite"))
    rendered = dom.stdout
    assert f"Model BLESSED; pushed as version {summary.pushed_version}" in rendered
    assert f"{summary.metrics['auc']:.4f}" in rendered and "AUC by payment_type" in rendered
    for name in ("CsvExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator", "Pusher"):
        assert name in rendered
    assert "Feature statistics, split train" in rendered and "<svg" in rendered
    shot = tmp_path / "report.png"
    subprocess.run([*flags, "--window-size=1280,2000", f"--screenshot={shot}", f"file://{page}"],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 20_000  # a real rendering, not a blank page


def test_report_run_ids_unknown_and_as_in_the_report_file_name(trained_output) -> None:
    unknown = taxi("report", "-o", str(trained_output), "--run", "2020-01-01T00:00:00")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "error: no run '2020-01-01T00:00:00' in MLMD; `taxi runs` lists the run ids"]
    run_id = summarize(str(trained_output / "metadata.sqlite")).run_id
    by_file_name = taxi("report", "-o", str(trained_output), "--run", run_id.replace(":", "-"), "-q")
    assert by_file_name.returncode == 0, by_file_name.stderr
    assert by_file_name.stdout.strip() == str(trained_output / "reports" / f"{run_id.replace(':', '-')}.html")


def test_a_report_write_that_fails_keeps_the_old_report_and_leaves_no_partial_file(trained_output, tmp_path) -> None:
    (tmp_path / "metadata.sqlite").symlink_to(trained_output / "metadata.sqlite")  # artifact URIs are absolute
    first = taxi("report", "-o", str(tmp_path), "-q")
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in (tmp_path / "reports").iterdir()}
    # A full disk, as RLIMIT_FSIZE: every file write past 4 kB fails with EFBIG.
    limited = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
               "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
               f"sys.argv = ['taxi', 'report', '-o', {str(tmp_path)!r}, '-q']; runpy.run_module('cli', run_name='__main__')")
    failed = subprocess.run([sys.executable, "-c", limited], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        f"error: cannot write the report in {tmp_path / 'reports'}: File too large"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "reports").iterdir()} == before


def test_report_of_a_run_whose_evaluation_was_deleted_from_disk(trained_output, tmp_path) -> None:
    """MLMD outlives pruned artifacts: the report says what is gone instead of a TFMA traceback."""
    import sqlite3

    shutil.copy(trained_output / "metadata.sqlite", tmp_path / "metadata.sqlite")
    with sqlite3.connect(tmp_path / "metadata.sqlite") as db:  # as if <pipeline_root>/Evaluator had been deleted
        db.execute("UPDATE Artifact SET uri = uri || '-deleted' WHERE type_id IN "
                   "(SELECT id FROM Type WHERE name = 'ModelEvaluation')")
    made = taxi("report", "-o", str(tmp_path), "-q")
    assert made.returncode == 0, made.stderr
    html = (tmp_path / "reports" / made.stdout.strip().rsplit("/", 1)[-1]).read_text()
    assert "Model BLESSED" in html and "no longer on disk" in html
