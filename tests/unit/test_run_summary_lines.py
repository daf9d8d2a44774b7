"""The end-of-run summary and --json output with metrics a weak model really produces (NaN precision)."""
from __future__ import annotations

import json
import math

import pytest

from cli.common import emit_json
from pipeline.run_summary import ComponentRun, RunSummary


def _refuse_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def test_a_model_that_never_says_yes_is_summarised_not_crashed() -> None:
    """--train-steps 10 gives precision NaN (no positive predictions); the summary used int() on it."""
    summary = RunSummary("r1", [ComponentRun("Evaluator", "ran", 5.7)],
                         {"auc": 0.5, "precision": math.nan, "calibration": math.inf, "example_count": 4966.0},
                         ["AUC >= 0.90"], False, ["AUC 0.5000 < required 0.90"], None, None)
    lines = summary.lines()
    assert "  auc 0.5000  precision nan  calibration inf  example_count 4966" in lines
    assert "model: NOT blessed: AUC 0.5000 < required 0.90" in lines


def test_json_output_writes_non_finite_numbers_as_null(capsys: pytest.CaptureFixture) -> None:
    emit_json({"metrics": {"precision": math.nan, "auc": 0.5, "lift": [-math.inf, 1.0]}})
    line = capsys.readouterr().out
    assert json.loads(line, parse_constant=_refuse_constants) == {
        "metrics": {"precision": None, "auc": 0.5, "lift": [None, 1.0]}}
