"""What submit and schedule create print and do around the run itself: the SDK's lines on stderr, a missing
pipeline-root bucket refused (the SDK would create it), Ctrl-C, the SDK's own ValueErrors, the cron as sent.
The SDK is the real one; only the network is fake (tests/unit/test_vertex_jobs.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import vertex_runner
from pipeline.vertex import jobs
from tests.unit.test_vertex_jobs import (  # noqa: F401 - template and vertex are fixtures
    PARENT,
    PROJECT,
    TARGET,
    FakeChannel,
    _default_answer,
    template,
    vertex,
)

ROOT = Path(vertex_runner.__file__).resolve().parent


def _main(argv: list[str]) -> int:
    """vertex_runner.main, with an escaping Ctrl-C a test failure (pytest would end the session on it)."""
    try:
        return vertex_runner.main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped vertex_runner.main as a KeyboardInterrupt (a traceback, death by signal)")


def _http_bucket_status(monkeypatch: pytest.MonkeyPatch, channel: FakeChannel, statuses: dict[str, int]) -> None:
    """The fake GCS answers `status` for a bucket named in `statuses`, 200 with its JSON for any other."""
    import requests
    from google.auth.transport import requests as auth_requests

    def http(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        channel.requests.append(("HTTP " + method, url))
        bucket = url.split("/b/")[-1].split("?")[0].split("/")[0] if "/b/" in url else ""
        response = requests.Response()
        response.request = requests.Request(method, url).prepare()
        response.status_code = statuses.get(bucket, 200)
        body = {"name": bucket, "projectNumber": "123"} if response.status_code == 200 else {
            "error": {"code": response.status_code, "message": "fake GCS says no"}}
        response._content = json.dumps(body).encode()
        response.headers["content-type"] = "application/json"
        return response

    monkeypatch.setattr(auth_requests.AuthorizedSession, "request", http)


def test_a_missing_pipeline_root_bucket_is_refused_not_created(vertex: FakeChannel, template: Path,  # noqa: F811
                                                               monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """PipelineJob.submit creates a pipeline-root bucket it does not find: a typo made a new bucket."""
    _http_bucket_status(monkeypatch, vertex, {"taxi-mll": 404})
    for argv in (["submit", *TARGET, "--template", str(template), "--pipeline-root", "gs://taxi-mll/root"],
                 ["schedule", "create", *TARGET, "--template", str(template), "--pipeline-root", "gs://taxi-mll/root",
                  "--cron", "0 3 * * *"]):
        assert vertex_runner.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["error: pipeline root gs://taxi-mll/root: bucket gs://taxi-mll does not exist; nothing was "
                       "created or submitted: create it (gcloud storage buckets create gs://taxi-mll "
                       "--location=us-central1) or fix --pipeline-root (or the --bucket it was compiled with)"]
    assert [m for m, _ in vertex.requests if m.startswith("HTTP") and m != "HTTP GET"] == []  # no bucket insert
    assert not vertex.named("CreatePipelineJob") and not vertex.named("CreateSchedule")


def test_a_submitter_who_cannot_read_the_bucket_still_submits(vertex: FakeChannel, template: Path,  # noqa: F811
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The README asks no storage role of the submitter: a 403 on the bucket is not a reason to stop."""
    _http_bucket_status(monkeypatch, vertex, {"taxi-ml": 403})
    assert vertex_runner.main(["submit", *TARGET, "--template", str(template)]) == 0
    assert vertex.named("CreatePipelineJob")


def test_ctrl_c_while_following_a_run_says_it_keeps_running(vertex: FakeChannel, template: Path,  # noqa: F811
                                                            capsys) -> None:
    def answer(name: str, request: Any) -> Any:
        if name == "GetPipelineJob":
            raise KeyboardInterrupt
        return _default_answer(name, request)

    vertex.answer = answer
    assert _main(["submit", *TARGET, "--template", str(template), "--wait"]) == 1
    captured = capsys.readouterr()
    (job,) = vertex.named("CreatePipelineJob")
    name = f"{PARENT}/pipelineJobs/{job.pipeline_job_id}"
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith(f"interrupted: stopped following pipeline job {name}; it keeps running on Vertex. "
                           "To cancel it: python -c")
    assert f"aiplatform.PipelineJob.get('{name}').cancel()" in last
    assert "Traceback" not in captured.err
    assert not vertex.named("CancelPipelineJob")


def test_ctrl_c_before_vertex_answers_is_one_line(vertex: FakeChannel, template: Path, capsys) -> None:  # noqa: F811
    def answer(name: str, request: Any) -> Any:
        if name == "CreatePipelineJob":
            raise KeyboardInterrupt
        return _default_answer(name, request)

    vertex.answer = answer
    assert _main(["submit", *TARGET, "--template", str(template)]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("interrupted: submit stopped before Vertex answered")
    assert "Traceback" not in err


def test_ctrl_c_during_compile_keeps_the_previous_json(template: Path, tmp_path: Path,  # noqa: F811
                                                       monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    out = tmp_path / "p.json"
    out.write_text(template.read_text())
    before = out.read_text()

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(kubeflow_v2_dag_runner.KubeflowV2DagRunner, "run", interrupted)
    code = _main(["compile", *TARGET, "--bucket", "gs://taxi-ml", "--output", str(out)])
    assert code == 1
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        f"interrupted: compile stopped; {out} was not written (a pipeline JSON already there is unchanged)"]
    assert captured.out == ""
    assert out.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]  # no staging folder left


def test_the_cron_is_sent_as_checked(vertex: FakeChannel, template: Path) -> None:  # noqa: F811
    """It was checked with its spaces collapsed but sent as typed, tabs and all."""
    args = ["schedule", "create", *TARGET, "--template", str(template), "--cron", " TZ=UTC\t0  3 * *\u00a0* "]
    assert vertex_runner.main(args) == 0
    assert vertex.named("CreateSchedule")[0].schedule.cron == "TZ=UTC 0 3 * * *"


def test_a_value_error_from_the_sdk_is_one_line() -> None:
    """The SDK checks some values itself (display names, job ids, counts) with ValueError: a traceback before."""
    with pytest.raises(jobs.VertexError) as raised, jobs.api_errors("schedule create"):
        raise ValueError("Display name needs to be less than 128 characters.")
    assert str(raised.value) == ("schedule create: the Vertex AI SDK refused it: Display name needs to be less "
                                 "than 128 characters.")


_SUBMIT_IN_A_FRESH_PROCESS = """
import sys
import google.auth, pytest
from google.api_core import grpc_helpers
from google.auth.credentials import AnonymousCredentials
from tests.unit import test_vertex_jobs as t
import vertex_runner

t._default_answer.list_response = t._schedules()
channel = t.FakeChannel(t._default_answer)
mp = pytest.MonkeyPatch()
mp.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), t.PROJECT))
mp.setattr(grpc_helpers, "create_channel", lambda *a, **k: channel)
from google.auth.transport import requests as auth_requests
import json, requests
def http(self, method, url, *args, **kwargs):
    response = requests.Response()
    response.status_code = 200
    response._content = json.dumps({"name": "taxi-ml", "projectNumber": "123"}).encode()
    response.headers["content-type"] = "application/json"
    return response
mp.setattr(auth_requests.AuthorizedSession, "request", http)
sys.exit(vertex_runner.main(["submit", *t.TARGET, "--template", sys.argv[1], "--wait"]))
"""


def test_the_sdks_lines_go_to_stderr_and_stdout_is_the_result(template: Path) -> None:  # noqa: F811
    """"Creating PipelineJob", the console link and each run state were printed on stdout with the job name
    that scripts read from it. A fresh process, as the SDK picks its stream when its modules load."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "CLOUDSDK_", "VERTEX_"))}
    done = subprocess.run([sys.executable, "-c", _SUBMIT_IN_A_FRESH_PROCESS, str(template)], capture_output=True,
                          text=True, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"projects/{PROJECT}/locations/") and "/pipelineJobs/" in lines[0]
    assert "Creating PipelineJob" in done.stderr
    assert "console.cloud.google.com/vertex-ai" in done.stderr


def test_compiling_to_a_symlink_writes_through_to_its_target(template: Path, tmp_path: Path) -> None:  # noqa: F811
    """The link was replaced by a plain file, leaving the file it pointed to as it was."""
    target = tmp_path / "store" / "pipeline.json"
    target.parent.mkdir()
    target.write_text(template.read_text())
    link = tmp_path / "current.json"
    link.symlink_to(target)
    argv = ["compile", *TARGET, "--bucket", "gs://taxi-ml", "--pipeline-name", "taxi-b", "--output", str(link)]
    assert vertex_runner.main(argv) == 0
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert json.loads(target.read_text())["pipelineSpec"]["pipelineInfo"]["name"] == "taxi-b"
    assert sorted(p.name for p in target.parent.iterdir()) == ["pipeline.json"]
