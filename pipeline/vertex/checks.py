"""Checks of VertexSettings before any network call or heavy import: every problem is one ConfigError line.

compile, submit and schedule each call theirs (check_compile, check_submit, check_schedule_create) before
TFX or aiplatform is imported; vertex_runner.py prints the error and exits 2.
"""
from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

from pipeline.configs import INT32_MAX, PIPELINE_NAME_RE, ConfigError, check_beam_args
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
    if s.service_account and not re.match(r"^[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com$", s.service_account):
        raise ConfigError(f"service account {s.service_account!r} must be an email ending in .iam.gserviceaccount.com")


def check_compile(s: VertexSettings) -> None:
    check_target(s)
    if not PIPELINE_NAME_RE.match(s.pipeline_name):
        raise ConfigError(
            f"pipeline name {s.pipeline_name!r} must match [a-z0-9][a-z0-9-]{{0,127}} "
            "(lowercase letters, digits, dashes)"
        )
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
        if not re.match(r"^[a-z][a-z0-9-]{0,62}$", getattr(s, name)):  # "" became --machine_type= eleven times
            raise ConfigError(f"{name.replace('_', ' ')} {getattr(s, name)!r} is not a machine type such as "
                              "n1-standard-4")
    if s.schema_path.startswith("gs://"):
        _check_gs("schema path", s.schema_path)
    if s.dataflow_service_account and not s.dataflow_service_account.endswith(".iam.gserviceaccount.com"):
        raise ConfigError(f"dataflow service account {s.dataflow_service_account!r} must be a service account email")
    flags = dict(arg.partition("=")[::2] for arg in s.beam_args)
    for arg in s.beam_args:
        if not arg.startswith("--"):
            raise ConfigError(f"beam arg {arg!r} must look like --name=value")
    if flags.get("--runner", "DataflowRunner") == "DataflowRunner":
        for name in ("--temp_location", "--staging_location"):  # they replace the generated gs:// ones
            if name in flags:
                _check_gs(f"beam arg {name}", flags[name])
    if s.beam_args:  # the options Beam would drop or refuse on Dataflow; imports Beam (~1 s)
        check_beam_args(s.beam_args, local=False)
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


def compiled_pipeline(template: str) -> tuple[str, dict[str, Any]]:
    """The compiled JSON's pipeline name ("" if absent) and runtime parameters, read without kfp, so a
    mismatch fails before any call."""
    if not Path(template).exists():
        raise ConfigError(f"pipeline JSON {template} does not exist: run 'vertex_runner.py compile' first")
    text = read_text_file(template, "pipeline JSON")
    try:
        spec = json.loads(text)["pipelineSpec"]
        parameters = spec["root"].get("inputDefinitions", {}).get("parameters", {})
        return str(spec.get("pipelineInfo", {}).get("name", "")), parameters
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"pipeline JSON {template} is not a compiled Vertex pipeline (no pipelineSpec.root)") from None


def check_submit(s: VertexSettings) -> None:
    check_target(s)
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
    if s.max_concurrent_runs < 1:
        raise ConfigError(f"max concurrent runs must be at least 1, got {s.max_concurrent_runs}")
    if s.max_run_count is not None and s.max_run_count < 1:
        raise ConfigError(f"max run count must be at least 1, got {s.max_run_count}")
    start = _check_time("start time", s.start_time)
    end = _check_time("end time", s.end_time)
    if start and end and end <= start:
        raise ConfigError(f"end time {s.end_time} is not after start time {s.start_time}")
    check_submit(s)
