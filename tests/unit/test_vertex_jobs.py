"""submit and schedule drive the real google-cloud-aiplatform SDK; only the network is fake.

The gRPC channel the GAPIC transports open is replaced by one that records each
request proto and answers with canned protos; the GCS bucket check (HTTP) gets
canned JSON. Everything between the CLI and the wire is the SDK's own code.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

import vertex_runner

PROJECT, REGION = "my-proj-1", "us-central1"
SA = "pipelines@my-proj-1.iam.gserviceaccount.com"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
TARGET = ["--project", PROJECT, "--region", REGION]


class FakeRpcError(grpc.RpcError, grpc.Call):
    """What a gRPC call raises when the server answers with an error status."""

    def __init__(self, code: grpc.StatusCode, details: str):
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return ()

    def initial_metadata(self) -> tuple:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable) -> bool:
        return False

    def result(self, timeout: float | None = None) -> None:
        raise self  # like grpc's own inactive-call error, which is also its future


class _Call:
    def result(self) -> None:
        return None


class _MultiCallable:
    def __init__(self, channel: FakeChannel, method: str, serializer: Callable, deserializer: Callable):
        self.channel, self.method = channel, method
        self.serializer, self.deserializer = serializer, deserializer

    def with_call(self, request: Any, **_: Any) -> tuple[Any, _Call]:
        # Round-trip through bytes, exactly as the wire would.
        wire = self.serializer(request)
        self.channel.requests.append((self.method, type(request).deserialize(wire) if hasattr(type(request), "deserialize") else request))
        answer = self.channel.answer(self.method.rsplit("/", 1)[-1], request)
        if isinstance(answer, Exception):
            raise answer
        raw = type(answer).serialize(answer) if hasattr(type(answer), "serialize") else answer.SerializeToString()
        return self.deserializer(raw), _Call()

    def __call__(self, request: Any, **kwargs: Any) -> Any:
        return self.with_call(request, **kwargs)[0]


class FakeChannel:
    """A grpc channel that never leaves the process."""

    def __init__(self, answer: Callable[[str, Any], Any]):
        self.answer, self.requests = answer, []

    def unary_unary(self, method: str, request_serializer: Callable, response_deserializer: Callable, *_: Any, **__: Any):
        return _MultiCallable(self, method, request_serializer, response_deserializer)

    def close(self) -> None:
        pass

    def named(self, name: str) -> list[Any]:
        return [req for method, req in self.requests if method.endswith(f"/{name}")]


def _default_answer(name: str, request: Any) -> Any:
    from google.cloud.aiplatform_v1.types import pipeline_job, pipeline_state, schedule
    from google.longrunning import operations_pb2
    from google.protobuf import empty_pb2

    if name == "GetProject":  # the SDK's bucket-ownership check: bucket JSON says project 123
        from google.cloud import resourcemanager_v3

        return resourcemanager_v3.Project(name="projects/123", project_id=PROJECT)
    if name == "CreatePipelineJob":
        job = type(request.pipeline_job)(request.pipeline_job)
        job.name = f"{PARENT}/pipelineJobs/{request.pipeline_job_id or 'run-1'}"
        job.state = pipeline_state.PipelineState.PIPELINE_STATE_PENDING
        return job
    if name == "GetPipelineJob":
        return pipeline_job.PipelineJob(name=request.name, state=pipeline_state.PipelineState.PIPELINE_STATE_SUCCEEDED)
    if name == "CreateSchedule":
        made = type(request.schedule)(request.schedule)
        made.name = f"{PARENT}/schedules/42"
        made.state = schedule.Schedule.State.ACTIVE
        return made
    if name == "ListSchedules":
        return type(_default_answer.list_response)(_default_answer.list_response)
    if name == "GetSchedule":
        return schedule.Schedule(name=request.name, display_name="taxi-pipeline-schedule", cron="0 3 * * *")
    if name in ("PauseSchedule", "ResumeSchedule"):
        return empty_pb2.Empty()
    if name == "DeleteSchedule":
        done = operations_pb2.Operation(name=f"{request.name}/operations/1", done=True)
        done.response.Pack(empty_pb2.Empty())
        return done
    return FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, f"fake server has no {name}")


def _schedules(*names: str) -> Any:
    from google.cloud.aiplatform_v1.types import schedule, schedule_service

    return schedule_service.ListSchedulesResponse(
        schedules=[
            schedule.Schedule(name=f"{PARENT}/schedules/{i}", display_name=n, cron="0 3 * * *",
                              state=schedule.Schedule.State.ACTIVE)
            for i, n in enumerate(names, start=7)
        ]
    )


@pytest.fixture
def vertex(monkeypatch: pytest.MonkeyPatch) -> FakeChannel:
    """Anonymous credentials, a fake gRPC channel, and canned HTTP for the GCS bucket check."""
    import google.auth
    import requests
    from google.api_core import grpc_helpers
    from google.auth.credentials import AnonymousCredentials
    from google.auth.transport import requests as auth_requests
    from google.cloud import aiplatform

    _default_answer.list_response = _schedules()
    channel = FakeChannel(lambda name, req: _default_answer(name, req))
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), PROJECT))
    monkeypatch.setattr(grpc_helpers, "create_channel", lambda *a, **k: channel)

    def http(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        bucket = url.split("/b/")[-1].split("?")[0].split("/")[0]
        response._content = json.dumps({"name": bucket, "projectNumber": "123"}).encode()
        response.headers["content-type"] = "application/json"
        channel.requests.append(("HTTP " + method, url))
        return response

    monkeypatch.setattr(auth_requests.AuthorizedSession, "request", http)
    yield channel
    aiplatform.initializer.global_config._project = None  # the SDK keeps init() in a global, credentials too
    aiplatform.initializer.global_config._credentials = None


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compiled pipeline JSON (the compile tests check its content)."""
    out = tmp_path_factory.mktemp("vertex") / "pipeline.json"
    args = ["compile", *TARGET, "--bucket", "gs://taxi-ml", "--output", str(out)]
    assert vertex_runner.main(args) == 0
    return out


def test_submit_sends_template_parameters_and_service_account(vertex: FakeChannel, template: Path, capsys) -> None:
    code = vertex_runner.main([
        "submit", *TARGET, "--template", str(template), "--service-account", SA,
        "--param", "data-root=gs://taxi-ml/data/2024-06", "--label", "team=ml", "--no-enable-caching", "--wait",
    ])
    assert code == 0, capsys.readouterr().err
    (request,) = vertex.named("CreatePipelineJob")
    assert request.parent == PARENT
    job = request.pipeline_job
    assert job.service_account == SA
    assert job.display_name == "taxi-pipeline"
    assert job.labels["team"] == "ml"
    assert job.runtime_config.gcs_output_directory == "gs://taxi-ml/pipeline_root"
    assert job.runtime_config.parameter_values["data-root"] == "gs://taxi-ml/data/2024-06"
    # The template itself travels in the request: same tasks as the compiled file.
    sent_tasks = set(job.pipeline_spec["root"]["dag"]["tasks"])
    assert sent_tasks == set(json.loads(template.read_text())["pipelineSpec"]["root"]["dag"]["tasks"])
    assert all(not t["cachingOptions"].get("enableCache", False) for t in job.pipeline_spec["root"]["dag"]["tasks"].values())
    assert vertex.named("GetPipelineJob"), "--wait did not follow the run"
    # The SDK's pre-submit bucket check went through the fake HTTP and gRPC too.
    assert any(m == "HTTP GET" and "/b/taxi-ml" in url for m, url in vertex.requests)
    assert vertex.named("GetProject")
    assert capsys.readouterr().out.strip().endswith("/pipelineJobs/" + request.pipeline_job_id)


def test_failed_run_with_wait_exits_nonzero(vertex: FakeChannel, template: Path, capsys) -> None:
    from google.cloud.aiplatform_v1.types import pipeline_job, pipeline_state

    def answer(name: str, request: Any) -> Any:
        if name == "GetPipelineJob":
            return pipeline_job.PipelineJob(name=request.name, state=pipeline_state.PipelineState.PIPELINE_STATE_FAILED)
        return _default_answer(name, request)

    vertex.answer = answer
    assert vertex_runner.main(["submit", *TARGET, "--template", str(template), "--wait"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: pipeline job projects/") and "did not succeed" in err


def test_api_error_is_one_line_and_exit_1(vertex: FakeChannel, template: Path, capsys) -> None:
    def answer(name: str, request: Any) -> Any:
        if name == "CreatePipelineJob":
            return FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, "Permission 'aiplatform.pipelineJobs.create' denied")
        return _default_answer(name, request)

    vertex.answer = answer
    assert vertex_runner.main(["submit", *TARGET, "--template", str(template)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "error: submit: Vertex AI answered PERMISSION_DENIED: Permission 'aiplatform.pipelineJobs.create' denied"


def test_schedule_create_sends_cron_and_limits(vertex: FakeChannel, template: Path, capsys) -> None:
    code = vertex_runner.main([
        "schedule", "create", *TARGET, "--template", str(template), "--service-account", SA,
        "--cron", "TZ=America/Chicago 0 3 * * *", "--max-concurrent-runs", "2",
        "--start-time", "2030-01-01T00:00:00Z", "--end-time", "2031-01-01T00:00:00Z",
    ])
    assert code == 0, capsys.readouterr().err
    (request,) = vertex.named("CreateSchedule")
    sched = request.schedule
    assert request.parent == PARENT
    assert sched.cron == "TZ=America/Chicago 0 3 * * *"
    assert sched.display_name == "taxi-pipeline-schedule"
    assert sched.max_concurrent_run_count == 2
    # max_concurrent_run_count only limits the CreatePipelineJob requests being started, which take
    # seconds; the runs themselves (hours) are limited by the active-run count, or they overlap.
    assert sched.max_concurrent_active_run_count == 2
    assert not sched.allow_queueing  # a run due while the limit is reached is skipped, not piled up
    assert sched.start_time.year == 2030 and sched.end_time.year == 2031
    job = sched.create_pipeline_job_request.pipeline_job
    assert job.service_account == SA
    assert job.runtime_config.parameter_values["data-root"] == "gs://taxi-ml/data"
    assert capsys.readouterr().out.strip() == f"{PARENT}/schedules/42"


def test_schedule_create_replace_deletes_the_old_one_after(vertex: FakeChannel, template: Path) -> None:
    _default_answer.list_response = _schedules("taxi-pipeline-schedule")
    args = ["schedule", "create", *TARGET, "--template", str(template), "--cron", "0 3 * * *", "--replace"]
    assert vertex_runner.main(args) == 0
    order = [m.rsplit("/", 1)[-1] for m, _ in vertex.requests if not m.startswith("HTTP")]
    assert order.index("CreateSchedule") < order.index("DeleteSchedule")
    assert vertex.named("DeleteSchedule")[0].name == f"{PARENT}/schedules/7"
    assert 'display_name="taxi-pipeline-schedule"' in vertex.named("ListSchedules")[0].filter


def test_a_template_compiled_for_another_pipeline_is_refused(vertex: FakeChannel, template: Path, capsys) -> None:
    """The JSON says which pipeline it is; runs and schedules named after another one would mislabel it in
    the console and, with --replace, swap that other pipeline's schedule for this one."""
    _default_answer.list_response = _schedules("taxi-staging-schedule")
    args = ["schedule", "create", *TARGET, "--template", str(template), "--cron", "0 3 * * *", "--replace",
            "--pipeline-name", "taxi-staging"]
    assert vertex_runner.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: pipeline JSON {template} was compiled for pipeline 'taxi-pipeline', not 'taxi-staging': "
                   "pass --pipeline-name taxi-pipeline, or compile it with --pipeline-name taxi-staging"]
    assert vertex.requests == []
    assert vertex_runner.main(["submit", *TARGET, "--template", str(template), "--pipeline-name", "taxi-staging"]) == 2


def test_schedule_list_pause_resume_delete(vertex: FakeChannel, capsys) -> None:
    _default_answer.list_response = _schedules("taxi-pipeline-schedule", "other")
    assert vertex_runner.main(["schedule", "list", *TARGET]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["display_name"] for r in rows] == ["taxi-pipeline-schedule", "other"]
    assert rows[0]["state"] == "ACTIVE" and rows[0]["cron"] == "0 3 * * *"

    _default_answer.list_response = _schedules("taxi-pipeline-schedule")
    assert vertex_runner.main(["schedule", "pause", *TARGET]) == 0
    assert vertex.named("PauseSchedule")[0].name == f"{PARENT}/schedules/7"
    assert vertex_runner.main(["schedule", "resume", *TARGET, f"{PARENT}/schedules/9"]) == 0
    assert vertex.named("ResumeSchedule")[0].name == f"{PARENT}/schedules/9"
    assert vertex_runner.main(["schedule", "delete", *TARGET, "9"]) == 0
    assert vertex.named("DeleteSchedule")[0].name.endswith("/schedules/9")


def test_unknown_schedule_name_is_one_line(vertex: FakeChannel, capsys) -> None:
    assert vertex_runner.main(["schedule", "pause", *TARGET, "nightly"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: schedule 'nightly': expected one schedule with that display name, found none"


@pytest.mark.parametrize("credentials, expected", [
    (None, "error: submit: no Google credentials found; run 'gcloud auth application-default login' or set "
           "GOOGLE_APPLICATION_CREDENTIALS"),
    ("{folder}", "error: submit: GOOGLE_APPLICATION_CREDENTIALS={folder}: Is a directory: {folder}"),  # a traceback
    ("{folder}/none.json", "error: submit: GOOGLE_APPLICATION_CREDENTIALS={folder}/none.json: File {folder}/none.json "
                           "was not found."),  # it said "no Google credentials found"
])
def test_offline_submit_is_one_line_naming_the_credentials_problem(template: Path, tmp_path: Path, capsys,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   credentials: str | None, expected: str) -> None:
    """Google's libraries also printed 26 FutureWarning lines (Python and package versions) above the error."""
    monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud application-default login
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("CLOUDSDK_CONFIG", raising=False)
    if credentials is not None:
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", credentials.format(folder=tmp_path))
    monkeypatch.setattr("google.auth._default._get_gce_credentials", lambda *args, **kwargs: (None, None))
    assert vertex_runner.main(["submit", *TARGET, "--template", str(template)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [expected.format(folder=tmp_path)]


def test_offline_submit_prints_only_its_error_line(template: Path, tmp_path: Path) -> None:
    """Google's libraries printed 26 FutureWarning lines (Python and package versions) above the one error line."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "CLOUDSDK_", "VERTEX_"))}
    env.update(HOME=str(tmp_path), NO_GCE_CHECK="True")  # no gcloud login, and not on Google Cloud
    done = subprocess.run([sys.executable, str(Path(vertex_runner.__file__)), "submit", *TARGET, "--template",
                           str(template)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["error: submit: no Google credentials found; run 'gcloud auth "
                                        "application-default login' or set GOOGLE_APPLICATION_CREDENTIALS"]
