"""Shared fixtures: one real pipeline run per test session, reused by e2e and contract tests."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Small but real: enough steps for a model well above the base rate.
E2E_TRAIN_STEPS = "300"


@dataclasses.dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str


def run_local(output: Path, *args: str, timeout: float = 900) -> RunResult:
    """local_runner.py as a user runs it, in its own process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "local_runner.py"), "--output", str(output), "--train-steps", E2E_TRAIN_STEPS, *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )
    return RunResult(done.returncode, done.stdout, done.stderr)


def pushed_versions(output: Path, model: str = "taxi") -> list[str]:
    base = output / "serving_model" / model
    return sorted(p.name for p in base.iterdir() if (p / "saved_model.pb").exists()) if base.is_dir() else []


@pytest.fixture(scope="session")
def trained_output(tmp_path_factory) -> Path:
    """An output folder holding one completed, blessed and pushed run on the bundled data."""
    output = tmp_path_factory.mktemp("pipeline") / "tfx_output"
    result = run_local(output)
    assert result.returncode == 0, f"pipeline run failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    (output / "first_run_stdout.txt").write_text(result.stdout)
    return output


@pytest.fixture(scope="session")
def pushed_model_base(trained_output: Path) -> Path:
    """<output>/serving_model/taxi with at least one pushed version."""
    base = trained_output / "serving_model" / "taxi"
    assert pushed_versions(trained_output), "the session pipeline run pushed no model"
    return base
