"""The quality yardstick script: its label is the pipeline's label, and a missing run is one clear error."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import tensorflow as tf

from benchmarks import quality_reference
from models import preprocessing


def test_label_matches_the_preprocessing_label():
    fare = [10.0, 10.0, 0.0, 4.0, None, 10.0]
    tips = [3.0, 2.0, 5.0, 0.0, 1.0, None]
    frame = pd.DataFrame({"fare": fare, "tips": tips, "payment_type": ["Cash", "Credit Card", None, "", "Cash", "Cash"]})
    x, y = quality_reference.design(frame)
    present = lambda v: [[v]] if v is not None else [[math.nan]]  # noqa: E731
    expected = [
        int(preprocessing.big_tipper(tf.constant(present(t)), tf.constant(present(f))).numpy()[0])
        for t, f in zip(tips, fare, strict=True)
    ]
    assert y.tolist() == expected == [1, 0, 0, 0, 0, 0]
    assert "tips" not in x.columns and str(x["payment_type"].dtype) == "category"


def test_no_run_yet_is_one_clear_error_and_exit_2(tmp_path, capsys):
    """Bad input, as `taxi runs` says it: exit 2 (it was 1, which reads as a failed measurement)."""
    with pytest.raises(SystemExit) as stopped:
        quality_reference.main(["--output", str(tmp_path)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: no CsvExampleGen output in {tmp_path}"), err


def test_examples_gone_from_disk_is_one_clear_error(tmp_path, monkeypatch):
    """MLMD names the Examples by absolute path: after the output folder was moved (or pipeline_root pruned)
    the script read zero rows and died in pandas with a traceback (KeyError: 'fare')."""
    gone = tmp_path / "pipeline_root" / "CsvExampleGen" / "examples" / "1"
    monkeypatch.setattr(quality_reference, "latest_examples", lambda output: gone)
    with pytest.raises(SystemExit, match=r"^error: .*Split-train.*") as raised:
        quality_reference.main(["--output", str(tmp_path), "--thirds", "1"])
    assert "\n" not in str(raised.value) and str(gone) in str(raised.value)


def test_empty_output_is_refused(tmp_path, monkeypatch, capsys):
    """--output "" became Path("") == ".", so a metadata.sqlite in the current folder was read as the run."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as raised:
        quality_reference.main(["--output", ""])
    assert raised.value.code == 2 and "--output is empty" in capsys.readouterr().err
