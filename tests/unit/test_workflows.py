"""The GitHub workflows parse, and everything their jobs run exists in the repo.

A renamed make target, script, flag or test folder breaks CI only after a push;
these checks move that failure to `make test`.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

import vertex_runner

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+):(?!=)", text, flags=re.M))


def _commands(path: Path) -> list[tuple[str, str]]:
    """(job, one shell command) for every `run:` line, with continuations joined."""
    out = []
    for job_name, job in _load(path)["jobs"].items():
        for step in job["steps"]:
            script = step.get("run", "")
            for line in script.replace("\\\n", " ").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append((job_name, line))
    return out


def _placeholders(command: str) -> str:
    command = re.sub(r"\$\{\{[^}]*\}\}", "X", command)
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_:]*\}?", "X", command)


def test_there_are_workflows() -> None:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "cd.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_shape(path: Path) -> None:
    data = _load(path)
    assert data["name"] and data["on"] and data["jobs"]
    for name, job in data["jobs"].items():
        assert job.get("runs-on"), name
        assert job.get("timeout-minutes"), f"{name}: a hung job should not burn 6 hours"
        for step in job["steps"]:
            assert ("run" in step) != ("uses" in step), (name, step)
            if "uses" in step:
                assert re.match(r"^[\w.-]+/[\w./-]+@v\d+$", step["uses"]), step["uses"]
            if step.get("with", {}).get("python-version-file"):
                assert (ROOT / step["with"]["python-version-file"]).is_file()


def test_ci_has_the_jobs_a_team_needs() -> None:
    jobs = _load(ROOT / ".github/workflows/ci.yml")["jobs"]
    assert {"lint", "unit", "e2e", "contract", "vertex-compile"} <= set(jobs)
    runs = " ".join(c for _, c in _commands(ROOT / ".github/workflows/ci.yml"))
    assert "make lint" in runs and "make test-unit" in runs and "make test-e2e" in runs
    # The contract job serves a model that `make run` produced before serving starts.
    contract = [c for j, c in _commands(ROOT / ".github/workflows/ci.yml") if j == "contract"]
    order = [next(i for i, c in enumerate(contract) if key in c) for key in ("make run", "compose", "tests/contract")]
    assert order == sorted(order)
    upload = [s for s in jobs["vertex-compile"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert upload and upload[0]["with"]["path"] == "build/vertex_pipeline.json"


def test_cd_deploys_only_pushes_to_this_repository_main() -> None:
    """workflow_run's `branches` filter matches the head branch *name*: a pull request from a fork whose
    branch is called main passes CI and would trigger CD, which builds and schedules the fork's commit
    with this repository's cloud credentials."""
    data = _load(ROOT / ".github/workflows/cd.yml")
    assert set(data["on"]) <= {"workflow_run", "workflow_dispatch"}
    condition = " ".join(data["jobs"]["deploy"]["if"].split())
    run_part = condition.split("||", 1)[1] if condition.startswith("github.event_name == 'workflow_dispatch'") else condition
    for required in ("github.event.workflow_run.conclusion == 'success'",
                     "github.event.workflow_run.event == 'push'",
                     "github.event.workflow_run.head_repository.full_name == github.repository"):
        assert required in run_part, required
    assert "||" not in run_part, "every workflow_run condition must hold"


def test_cd_names_the_commit_it_checked_out() -> None:
    """Under workflow_run, GITHUB_SHA is the newest commit on main, not the CI run's commit that CD checks
    out and builds: a push landing while CI ran would label the schedule with a commit it does not run."""
    for job, command in _commands(ROOT / ".github/workflows/cd.yml"):
        assert "GITHUB_SHA" not in command and "github.sha" not in command, (job, command)


def test_cd_is_gated_on_secrets() -> None:
    job = _load(ROOT / ".github/workflows/cd.yml")["jobs"]["deploy"]
    gated = [s for s in job["steps"] if s.get("id") != "gate"]
    assert all("steps.gate.outputs.enabled == 'true'" in s.get("if", "") for s in gated)
    assert "secrets.GCP_WORKLOAD_IDENTITY_PROVIDER" in job["env"]["HAS_SECRETS"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_commands_exist(path: Path) -> None:
    targets = _make_targets()
    for job, command in _commands(path):
        words = shlex.split(_placeholders(command))
        if words[:1] == ["make"]:
            target = words[1]
            assert target in targets, f"{path.name}/{job}: make {target} is not a Makefile target"
        for i, word in enumerate(words):
            if word == "-f" and i + 1 < len(words):
                assert (ROOT / words[i + 1]).is_file(), f"{path.name}/{job}: {words[i + 1]} missing"
            if word.endswith(".py") and "/" not in word.lstrip("./") and not word.startswith("-"):
                assert (ROOT / word).is_file(), f"{path.name}/{job}: {word} missing"
            if word.startswith("tests/"):
                assert (ROOT / word).exists(), f"{path.name}/{job}: {word} missing"
        if "vertex_runner.py" in words:
            args = words[words.index("vertex_runner.py") + 1 :]
            # Flags must be ones the runner accepts (parsing only; nothing runs).
            vertex_runner.build_parser().parse_args(args)
