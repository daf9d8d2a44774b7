"""Submit the compiled pipeline and manage its schedules through google-cloud-aiplatform.

aiplatform is imported inside each function (about 4 s here), so the CLI's
help and config errors never pay for it. Expected cloud failures (API errors,
missing credentials, a failed run) become VertexError with one line.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from typing import Any

from pipeline.configs import ConfigError
from pipeline.vertex import cron
from pipeline.vertex.settings import VertexSettings

_SCHEDULE_NAME_RE = re.compile(r"^projects/[^/]+/locations/[^/]+/schedules/[^/]+$")


class VertexError(RuntimeError):
    """Vertex refused a request or a run failed; the message is one line."""


class Interrupted(Exception):  # noqa: N818 - what the runner prints: "interrupted: ..."
    """Ctrl-C while following a run: the message says the run goes on and how to cancel it."""


# Google's libraries warn at import about Python and package versions, once per library: 26 lines before the
# one-line error of a submit without credentials. They are the pinned environment's, not the user's to act on.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")

CREDENTIALS_VARIABLE = "GOOGLE_APPLICATION_CREDENTIALS"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def api_errors(action: str) -> Iterator[None]:
    """Translate SDK/transport exceptions into VertexError naming the action."""
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    named = os.environ.get(CREDENTIALS_VARIABLE)
    try:
        yield
    except auth_exceptions.DefaultCredentialsError as err:
        if named:  # the file it names is the problem, not a missing login
            raise VertexError(f"{action}: {CREDENTIALS_VARIABLE}={named}: {_one_line(err)}") from None
        raise VertexError(
            f"{action}: no Google credentials found; run 'gcloud auth application-default login' "
            f"or set {CREDENTIALS_VARIABLE}"
        ) from None
    except (IsADirectoryError, PermissionError) as err:  # google.auth opening the credentials file
        where = f"{CREDENTIALS_VARIABLE}={named}: " if named else ""
        raise VertexError(f"{action}: {where}{err.strerror or err}: {err.filename}") from None
    except api_exceptions.GoogleAPICallError as err:
        # gRPC status names (PERMISSION_DENIED) say more than the HTTP ones (FORBIDDEN).
        code = getattr(err, "grpc_status_code", None) or getattr(err, "code", None)
        code_name = getattr(code, "name", None) or str(code or "error")
        raise VertexError(f"{action}: Vertex AI answered {code_name}: {_one_line(err.message)}") from None
    except api_exceptions.GoogleAPIError as err:
        raise VertexError(f"{action}: {_one_line(err)}") from None
    except ConfigError:  # a ValueError too: ours, already one line, exit 2
        raise
    except ValueError as err:  # the SDK's own checks (a display name, an id, a count): a traceback before
        raise VertexError(f"{action}: the Vertex AI SDK refused it: {_one_line(err)}") from None


_SDK_LOGGER = "google.cloud.aiplatform"


class _StderrHandler(logging.StreamHandler):
    """The SDK's progress lines ("Creating PipelineJob", the console link, each "current state") on stderr: stdout
    holds only the result the runner prints. The stream is looked up at each line, so a redirected stderr is used."""

    def __init__(self) -> None:
        super().__init__()
        self.setLevel(logging.INFO)  # on the handler: PipelineJob.submit sets its logger's level back to INFO

    @property
    def stream(self) -> Any:  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:  # the SDK logs a bucket check's failure with its
            text += f": {_one_line(record.exc_info[1])}"  # traceback, though it goes on to submit
        return text


def route_sdk_logs() -> None:
    """Every aiplatform logger to _StderrHandler. Each SDK module adds a handler on sys.stdout to its logger unless
    one of its parents already has a stream handler: called before the SDK is imported, the parent has ours;
    called after, the stdout handlers of modules imported earlier are removed."""
    parent = logging.getLogger(_SDK_LOGGER)
    if not any(isinstance(h, _StderrHandler) for h in parent.handlers):
        parent.addHandler(_StderrHandler())
    parent.propagate = False  # a root handler would print each line a second time
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith(f"{_SDK_LOGGER}.") and isinstance(logger, logging.Logger):
            for handler in list(logger.handlers):
                if type(handler) is logging.StreamHandler:
                    logger.removeHandler(handler)


def _init(s: VertexSettings) -> Any:
    route_sdk_logs()
    from google.cloud import aiplatform

    route_sdk_logs()
    aiplatform.init(project=s.project, location=s.region)
    return aiplatform


def _time(value: str) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def build_job(s: VertexSettings) -> Any:
    """A PipelineJob for the compiled template with this run's parameters, caching and labels."""
    aiplatform = _init(s)
    return aiplatform.PipelineJob(
        display_name=s.pipeline_name,
        template_path=s.template,
        pipeline_root=s.pipeline_root or None,
        parameter_values=dict(s.parameters),
        enable_caching=s.enable_caching,
        labels=dict(s.labels) or None,
        project=s.project,
        location=s.region,
    )


def submit(s: VertexSettings, wait: bool = False) -> str:
    """Start one run; with wait, block until it ends and fail unless it SUCCEEDED."""
    with api_errors("submit"):
        job = build_job(s)
        require_bucket(s, job)
        job.submit(service_account=s.service_account or None)
        name = job.resource_name
        print(f"submitted {name}", file=sys.stderr)
        if wait:
            try:
                job.wait()
            except RuntimeError as err:  # the SDK's signal for FAILED / CANCELLED
                raise VertexError(f"pipeline job {name} did not succeed: {_one_line(err)}") from None
            except KeyboardInterrupt:
                raise Interrupted(
                    f"stopped following pipeline job {name}; it keeps running on Vertex. To cancel it: "
                    f"python -c \"from google.cloud import aiplatform; aiplatform.PipelineJob.get('{name}').cancel()\" "
                    "(or Stop in the console: Vertex AI > Pipelines > Runs)") from None
            print(f"pipeline job {name} succeeded", file=sys.stderr)
    return name


def require_bucket(s: VertexSettings, job: Any) -> None:
    """ConfigError unless the run's pipeline-root bucket exists. PipelineJob.submit creates a missing one (and
    grants the run-as account on it): a typo in --pipeline-root or --bucket would make a new bucket."""
    from google.api_core import exceptions as api_exceptions
    from google.cloud import storage

    # What submit reads (gca_resource refuses to answer before the job exists): --pipeline-root or as compiled.
    root = job._gca_resource.runtime_config.gcs_output_directory
    bucket = root[len("gs://"):].split("/", 1)[0] if root.startswith("gs://") else ""
    if not bucket:
        return
    try:
        exists = storage.Client(project=s.project, credentials=job.credentials).bucket(bucket).exists()
    except api_exceptions.Forbidden:  # a submitter without storage.buckets.get (the README asks for none) cannot
        return  # create buckets either: the SDK's own attempt fails too, and it goes on to submit
    if not exists:
        raise ConfigError(f"pipeline root {root}: bucket gs://{bucket} does not exist; nothing was created or "
                          f"submitted: create it (gcloud storage buckets create gs://{bucket} --location={s.region}) "
                          "or fix --pipeline-root (or the --bucket it was compiled with)")


def create_schedule(s: VertexSettings, replace: bool = False) -> str:
    """Create the schedule; with replace, then delete older schedules of the same display name.

    Create first, delete after: a failed create leaves the old schedule running.
    """
    with api_errors("schedule create"):
        old = _find(s, s.schedule_display_name) if replace else []
        job = build_job(s)
        require_bucket(s, job)  # each run would fail on it
        schedule = job.create_schedule(
            cron=cron.normalized(s.cron),  # the form check_cron read, not tabs or a line break Vertex may not
            display_name=s.schedule_display_name,
            start_time=_time(s.start_time),
            end_time=_time(s.end_time),
            max_run_count=s.max_run_count,
            max_concurrent_run_count=s.max_concurrent_runs,
            # The line above only limits the run *requests* being started; this one the runs in progress.
            max_concurrent_active_run_count=s.max_concurrent_runs,
            service_account=s.service_account or None,
        )
        for previous in old:
            previous.delete()
            print(f"deleted replaced schedule {previous.resource_name}", file=sys.stderr)
        return schedule.resource_name


def _find(s: VertexSettings, display_name: str) -> list[Any]:
    aiplatform = _init(s)
    return list(
        aiplatform.PipelineJobSchedule.list(
            filter=f'display_name="{display_name}"', project=s.project, location=s.region
        )
    )


def _resolve(s: VertexSettings, name: str) -> Any:
    """A schedule by resource name, numeric id or display name (which must be unique)."""
    aiplatform = _init(s)
    if _SCHEDULE_NAME_RE.match(name) or name.isdigit():
        return aiplatform.PipelineJobSchedule.get(name, project=s.project, location=s.region)
    found = _find(s, name)
    if len(found) != 1:
        hint = "none" if not found else ", ".join(f.resource_name for f in found)
        raise VertexError(f"schedule {name!r}: expected one schedule with that display name, found {hint}")
    return found[0]


def list_schedules(s: VertexSettings) -> list[dict[str, str]]:
    """Every pipeline schedule in the project and region: other pipelines' too, so nothing hides."""
    with api_errors("schedule list"):
        aiplatform = _init(s)
        rows = []
        for item in aiplatform.PipelineJobSchedule.list(project=s.project, location=s.region):
            res = item.gca_resource
            rows.append(
                {
                    "name": res.name,
                    "display_name": res.display_name,
                    "state": res.state.name,
                    "cron": res.cron,
                    "next_run_time": res.next_run_time.isoformat() if res.next_run_time else "",
                }
            )
        return rows


def change_schedule(s: VertexSettings, name: str, action: str) -> str:
    """pause, resume or delete one schedule; returns its resource name."""
    with api_errors(f"schedule {action}"):
        schedule = _resolve(s, name or s.schedule_display_name)
        getattr(schedule, action)()
        return schedule.resource_name
