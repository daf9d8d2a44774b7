"""The real pipeline on data folders laid out as users keep them: the same rows give the same model."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from pipeline.data import bundled_taxi_data
from pipeline.run_summary import summarize
from tests.conftest import run_local

pytestmark = pytest.mark.e2e


def _eval_metrics(output: Path) -> dict[str, float]:
    summary = summarize(str(output / "metadata.sqlite"))
    assert summary is not None and summary.metrics, summary
    return summary.metrics


def _same_metrics(output: Path, trained_output: Path) -> None:
    """The same model as the bundled folder's, measured the same: every metric to 7 significant digits (the run
    summary shows 4). Calibration, a float sum over the eval predictions, differs from run to run in its 10th."""
    assert _eval_metrics(output) == pytest.approx(_eval_metrics(trained_output), rel=1e-7, abs=0)


def test_hidden_files_beside_the_csv_are_left_out(trained_output, tmp_path):
    """A folder copied from a Mac holds .DS_Store and an AppleDouble ._data.csv (binary, neither of them CSV):
    the run was refused ('not .csv'), and CsvExampleGen's `*` would have read them. Now they are not data."""
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(Path(bundled_taxi_data()) / "data.csv", folder / "data.csv")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1\0" + bytes(range(256)) * 8)
    (folder / "._data.csv").write_bytes(b"\0\5\x16\7\0\2\0\0Mac OS X        " + bytes(range(256)))
    output = tmp_path / "out"
    result = run_local(output, "--data", str(folder), "--no-report")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    _same_metrics(output, trained_output)

    # The CSV opened in LibreOffice leaves a lock file beside it: not a change to the data, so nothing retrains,
    # neither by the up-to-date check before TensorFlow starts nor by TFX's own cache when asked to look.
    (folder / ".~lock.data.csv#").write_text("Jane Doe,jane,laptop,23.11.2026 09:00,file:///home/jane;\n")
    again = run_local(output, "--data", str(folder), "--no-report")
    assert again.returncode == 0 and "nothing changed since run" in again.stdout, again.stdout + again.stderr[-2000:]
    rerun = run_local(output, "--data", str(folder), "--no-report", "--rerun")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr[-2000:]
    states = {c.name: c.state for c in summarize(str(output / "metadata.sqlite")).components}
    assert states["CsvExampleGen"] == states["Transform"] == states["Trainer"] == "cached", states


def test_a_gzipped_copy_of_the_csv_gives_the_same_model(trained_output, tmp_path):
    """`data.csv.gz` was refused ('not .csv'); read decompressed, it is the same rows and the same model."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "data.csv.gz").write_bytes(gzip.compress((Path(bundled_taxi_data()) / "data.csv").read_bytes()))
    output = tmp_path / "out"
    result = run_local(output, "--data", str(folder), "--no-report")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    _same_metrics(output, trained_output)
