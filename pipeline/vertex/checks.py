"""Checks of VertexSettings before any network call or heavy import: every problem is one ConfigError line.

compile, submit and schedule each call theirs (check_compile, check_submit, check_schedule_create) before
TFX or aiplatform is imported; vertex_runner.py prints the error and exits 2.
"""
from __future__ import annotations

import datetime
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.configs import IMAGE_REPO_ROOT, IMAGE_SCHEMA_PATH, INT32_MAX, PROJECT_ROOT, ConfigError, check_beam_args
from pipeline.vertex.cron import check_cron
from pipeline.vertex.settings import VertexSettings, read_text_file

_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
# A container image reference, per the grammar of distribution/reference: [host[:port]/]path[:tag][@digest].
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_RE = re.compile(
    r"^(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?/)?"
    rf"{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,})?$"
)
_LABEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_MACHINE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}\Z")
# A Vertex pipeline job id matches [a-z][-a-z0-9]{0,127}, and the SDK makes it "<pipeline name>-YYYYmmddHHMMSS":
# the name must start with a letter and leave 15 of the 128 characters to the timestamp.
VERTEX_PIPELINE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,112}\Z")
DISPLAY_NAME_MAX = 128  # Vertex's limit on a schedule's display name (the SDK raises ValueError past it)
INT64_MAX = 2**63 - 1  # the Schedule fields are int64: a larger count is a ValueError in the SDK
# A user-managed account (NAME@PROJECT.iam), or one of Google's defaults: Compute Engine's
# (PROJECT_NUMBER-compute@developer) and App Engine's (PROJECT@appspot).
_SERVICE_ACCOUNT_RE = re.compile(
    r"^(?:[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com|[0-9]+-compute@developer\.gserviceaccount\.com"
    r"|[a-z][a-z0-9:.-]*@appspot\.gserviceaccount\.com)\Z"
)


def check_service_account(label: str, email: str) -> None:
    if not _SERVICE_ACCOUNT_RE.match(email):
        raise ConfigError(f"{label} {email!r} must be a service account email: NAME@PROJECT.iam.gserviceaccount.com, "
                          "or a default one (PROJECT_NUMBER-compute@developer.gserviceaccount.com, "
                          "PROJECT@appspot.gserviceaccount.com)")


def check_pipeline_name(name: str) -> None:
    if not VERTEX_PIPELINE_NAME_RE.match(name):
        raise ConfigError(
            f"pipeline name {name!r} must match [a-z][a-z0-9-]{{0,112}} (a lowercase letter, then lowercase "
            "letters, digits, dashes; at most 113 characters): Vertex names each run <name>-YYYYmmddHHMMSS, "
            "a job id of at most 128 characters starting with a letter"
        )


def _check_gs(label: str, value: str) -> None:
    if not re.match(r"^gs://[a-z0-9][a-z0-9._-]{1,221}[a-z0-9](/.*)?$", value):
        raise ConfigError(f"{label} {value!r} must be a gs://bucket[/path] path")


def _check_time(label: str, value: str) -> datetime.datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{label} {value!r} is not an ISO 8601 time such as 2025-01-31T03:00:00Z") from None
    if parsed.tzinfo is None:
        raise ConfigError(f"{label} {value!r} needs a time zone offset, e.g. a trailing Z for UTC")
    return parsed


def check_target(s: VertexSettings) -> None:
    """What every command that talks to Vertex needs: a project and a region."""
    if not s.project:
        raise ConfigError("project is not set: pass --project, or set VERTEX_PROJECT or GOOGLE_CLOUD_PROJECT")
    if not _PROJECT_RE.match(s.project):
        raise ConfigError(f"project {s.project!r} is not a GCP project id (6-30 lowercase letters, digits, dashes)")
    if not s.region:
        raise ConfigError("region is not set: pass --region, or set VERTEX_REGION or GOOGLE_CLOUD_REGION")
    if not _REGION_RE.match(s.region):
        raise ConfigError(f"region {s.region!r} is not a GCP region such as us-central1")
    if s.service_account:
        check_service_account("service account", s.service_account)


def check_compile(s: VertexSettings) -> None:
    check_target(s)
    check_pipeline_name(s.pipeline_name)
    if not s.bucket and not all(getattr(s, n) for n in ("pipeline_root", "data_root", "serving_model_dir", "temp_location")):
        raise ConfigError("bucket is not set: pass --bucket gs://NAME (or set VERTEX_BUCKET) to place pipeline outputs")
    if s.bucket:
        _check_gs("bucket", s.bucket)
    for name in ("pipeline_root", "data_root", "serving_model_dir", "temp_location"):
        _check_gs(name.replace("_", " "), s.path(name))
    if s.beam_code not in ("image", "setup-file"):
        raise ConfigError(f"beam code {s.beam_code!r} must be 'image' or 'setup-file'")
    for name in ("dataflow_max_workers", "serving_min_replicas", "serving_max_replicas"):
        if not 1 <= getattr(s, name) <= INT32_MAX:  # a 23-digit worker count was compiled into every Beam step
            raise ConfigError(f"{name.replace('_', ' ')} must be within [1, {INT32_MAX}], got {getattr(s, name)}")
    for name in ("dataflow_machine_type", "training_machine_type", "serving_machine_type"):
        if not _MACHINE_TYPE_RE.match(getattr(s, name)):  # "" became --machine_type= eleven times
            raise ConfigError(f"{name.replace('_', ' ')} {getattr(s, name)!r} is not a machine type such as "
                              "n1-standard-4")
    check_schema_path(s.schema_path)
    if s.dataflow_service_account:
        check_service_account("dataflow service account", s.dataflow_service_account)
    for arg in s.beam_args:
        if not arg.startswith("--"):
            raise ConfigError(f"beam arg {arg!r} must look like --name=value")
    if s.beam_args:  # the options Beam would drop or refuse on Dataflow; imports Beam (~1 s)
        check_beam_args(s.beam_args, local=False)
        _check_emitted_beam_options(s)
    # The image as composed from image_repository too ('Bad Repo' went into 21 places), and the serving one.
    for name, image in (("image", s.pipeline_image), ("serving_image", s.serving_image)):
        if not _IMAGE_RE.match(image):
            source = " (from image_repository)" if name == "image" and not s.image else ""
            raise ConfigError(f"{name.replace('_', ' ')} {image!r}{source} is not a container image reference "
                              "such as REGION-docker.pkg.dev/PROJECT/REPO/NAME:TAG")
    if s.vertex_serving:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$", s.endpoint):
            raise ConfigError(f"endpoint name {s.endpoint!r} may hold only letters, digits, '_' and '-'")
        if not 1 <= s.serving_min_replicas <= s.serving_max_replicas:
            raise ConfigError(
                f"serving replicas must satisfy 1 <= min ({s.serving_min_replicas}) <= max ({s.serving_max_replicas})"
            )


def check_schema_path(schema_path: str) -> None:
    """gs://, or a path inside the pipeline image. The image holds this checkout at /pipeline/, so a path there
    is this checkout's file (read and pinned at compile, as the default is) and must exist in it. A path elsewhere
    in the image (a derived image's file) cannot be read here; a file at that path on this machine was read and
    pinned as if it were the image's, though the run reads the image's, so it is refused."""
    if schema_path.startswith("gs://"):
        _check_gs("schema path", schema_path)
        return
    if not schema_path.startswith("/"):
        return  # vertex_config refuses it, naming the default
    if ".." in PurePosixPath(schema_path).parts:
        raise ConfigError(f"schema path {schema_path!r} must not hold '..' segments")
    if schema_path.startswith(f"{IMAGE_REPO_ROOT}/"):
        relative = schema_path[len(IMAGE_REPO_ROOT) + 1:]
        if not (PROJECT_ROOT / relative).is_file():
            raise ConfigError(f"schema path {schema_path}: the pipeline image holds this checkout at "
                              f"{IMAGE_REPO_ROOT}/, which has no file {relative}")
    elif Path(schema_path).exists():
        raise ConfigError(f"schema path {schema_path} is a path inside the pipeline image, but names a file on this "
                          f"machine: put the schema in this checkout (the image holds it at {IMAGE_REPO_ROOT}/, "
                          f"e.g. {IMAGE_SCHEMA_PATH}) or in GCS (gs://...)")


def _beam_options(args: tuple[str, ...]) -> dict[str, Any]:
    """What Beam makes of args, as the components will read them (the last of a repeated flag, aliases resolved)."""
    import contextlib
    import io
    import warnings

    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from apache_beam.options.pipeline_options import PipelineOptions

        return PipelineOptions(list(args)).get_all_options()


def _check_emitted_beam_options(s: VertexSettings) -> None:
    """The Beam flags as compiled, --beam-arg ones included, get the checks of the settings they replace:
    --beam-arg=--machine_type= or --region=US compiled into every Beam step before."""
    from pipeline.vertex.compile import dataflow_args

    options = _beam_options(dataflow_args(s))
    runner = str(options.get("runner") or "DataflowRunner")
    kind = runner.lower().removesuffix("runner")  # Beam reads 'dataflow' and 'DataflowRunner' alike
    if kind not in ("dataflow", "direct"):
        raise ConfigError(f"beam arg --runner={runner}: on Vertex the Beam components run on Dataflow (DataflowRunner) "
                          "or in their own container (DirectRunner)")
    if kind == "dataflow":
        for name in ("temp_location", "staging_location"):  # they replace the generated gs:// ones
            if options.get(name) is not None:
                _check_gs(f"beam arg --{name}", options[name])
    checks = {
        "project": (_PROJECT_RE, "a GCP project id (6-30 lowercase letters, digits, dashes)"),
        "region": (_REGION_RE, "a GCP region such as us-central1"),
        "machine_type": (_MACHINE_TYPE_RE, "a machine type such as n1-standard-4"),
        "sdk_container_image": (_IMAGE_RE, "a container image reference such as REGION-docker.pkg.dev/P/REPO/NAME:TAG"),
        "service_account_email": (_SERVICE_ACCOUNT_RE, "a service account email"),
    }
    for name, (pattern, what) in checks.items():
        value = options.get(name)
        if value is not None and not pattern.match(str(value)):
            raise ConfigError(f"beam arg --{name} {value!r} is not {what}")
    workers = options.get("max_num_workers")
    if workers is not None and not 1 <= workers <= INT32_MAX:
        raise ConfigError(f"beam arg --max_num_workers must be within [1, {INT32_MAX}], got {workers}")


def compiled_pipeline(template: str) -> tuple[str, dict[str, Any]]:
    """The compiled JSON's pipeline name ("" if absent) and runtime parameters, read without kfp, so a
    mismatch fails before any call."""
    if not Path(template).exists():
        raise ConfigError(f"pipeline JSON {template} does not exist: compile it first (vertex_runner.py compile, or "
                          "taxi vertex compile)")
    text = read_text_file(template, "pipeline JSON")
    try:
        spec = json.loads(text)["pipelineSpec"]
        parameters = spec["root"].get("inputDefinitions", {}).get("parameters", {})
        return str(spec.get("pipelineInfo", {}).get("name", "")), parameters
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"pipeline JSON {template} is not a compiled Vertex pipeline (no pipelineSpec.root)") from None


def check_submit(s: VertexSettings) -> None:
    check_target(s)
    check_pipeline_name(s.pipeline_name)
    if s.pipeline_root:
        _check_gs("pipeline root", s.pipeline_root)
    compiled_name, known = compiled_pipeline(s.template)
    if compiled_name and compiled_name != s.pipeline_name:  # runs and schedules are named after the pipeline
        raise ConfigError(f"pipeline JSON {s.template} was compiled for pipeline {compiled_name!r}, not "
                          f"{s.pipeline_name!r}: pass --pipeline-name {compiled_name}, or compile it with "
                          f"--pipeline-name {s.pipeline_name}")
    for key, value in s.parameters:
        if key not in known:
            raise ConfigError(
                f"parameter {key!r} is not in {s.template}; it takes: {', '.join(sorted(known)) or 'none'}"
            )
        if key == "data-root":
            _check_gs("parameter data-root", value)
    for key, value in s.labels:
        if not _LABEL_RE.match(key) or not re.match(r"^[a-z0-9_-]{0,63}$", value):
            raise ConfigError(f"label {key}={value} must be lowercase letters, digits, '_' or '-' (key starts with a letter)")


def check_schedule_create(s: VertexSettings) -> None:
    check_target(s)
    if not s.cron:
        raise ConfigError("cron is not set: pass --cron 'TZ=America/Chicago 0 3 * * *' (or set VERTEX_CRON)")
    check_cron(s.cron)
    for label, count in (("max concurrent runs", s.max_concurrent_runs), ("max run count", s.max_run_count)):
        if count is not None and not 1 <= count <= INT64_MAX:
            raise ConfigError(f"{label} must be within [1, {INT64_MAX}], got {count}")
    if len(s.schedule_display_name) > DISPLAY_NAME_MAX:
        source = "--schedule-name" if s.schedule_name else "the default <pipeline name>-schedule"
        raise ConfigError(f"schedule name {s.schedule_display_name!r} ({source}) has {len(s.schedule_display_name)} "
                          f"characters; Vertex takes at most {DISPLAY_NAME_MAX}")
    start = _check_time("start time", s.start_time)
    end = _check_time("end time", s.end_time)
    if start and end and end <= start:
        raise ConfigError(f"end time {s.end_time} is not after start time {s.start_time}")
    check_submit(s)
