"""Vertex settings from flags, environment and an optional YAML file, checked before any network call.

Precedence: flag > VERTEX_<NAME> environment variable > YAML file > default
(GOOGLE_CLOUD_PROJECT / GOOGLE_CLOUD_REGION are read after VERTEX_PROJECT /
VERTEX_REGION, as gcloud users already export them). Every problem is a
ConfigError with one line; the runner prints it and exits 2.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.text_files import not_utf8
from pipeline.configs import IMAGE_SCHEMA_PATH, ConfigError

ENV_PREFIX = "VERTEX_"
ENV_FALLBACKS = {"project": "GOOGLE_CLOUD_PROJECT", "region": "GOOGLE_CLOUD_REGION"}
# Prebuilt Vertex prediction container that runs TF Serving on the pushed SavedModel. Vertex's
# TensorFlow ones end at 2.15 (there is no tf2-cpu.2-16), one minor version behind the training TF.
DEFAULT_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
# Pipeline-level knobs passed through to PipelineConfig (it validates their values).
PIPELINE_KNOBS = (
    "model_name",
    "train_steps",
    "eval_steps",
    "batch_size",
    "learning_rate",
    "auc_threshold",
    "auc_change_tolerance",
    "min_error_reduction",
    "calibration_tolerance",
)
_FLAG_NAMES = {"parameters": "param", "labels": "label", "beam_args": "beam-arg"}


@dataclasses.dataclass(frozen=True)
class VertexSettings:
    """Everything vertex_runner needs; pipeline fields end up in PipelineConfig."""

    project: str = ""
    region: str = ""
    bucket: str = ""  # gs://name: the default home of every path below
    pipeline_name: str = "taxi-pipeline"
    model_name: str = "taxi"
    pipeline_root: str = ""  # default <bucket>/pipeline_root
    data_root: str = ""  # default <bucket>/data; a runtime parameter ("data-root") as well
    serving_model_dir: str = ""  # default <bucket>/serving_model/<model_name>
    temp_location: str = ""  # default <bucket>/tmp (Dataflow staging and temp)
    schema_path: str = IMAGE_SCHEMA_PATH
    image: str = ""  # default <region>-docker.pkg.dev/<project>/<image_repository>/<pipeline_name>:latest
    image_repository: str = "tfx"
    service_account: str = ""  # the pipeline's run-as account
    # Dataflow
    beam_code: str = "image"  # "image": --sdk_container_image; "setup-file": --setup_file in the image
    dataflow_machine_type: str = "n1-standard-4"
    dataflow_max_workers: int = 4
    dataflow_service_account: str = ""  # default service_account
    beam_args: tuple[str, ...] = ()  # extra Beam flags; they override the generated ones by name
    # Vertex training / serving through TFX's google_cloud_ai_platform extensions
    vertex_training: bool = False
    training_machine_type: str = "n1-standard-4"
    vertex_serving: bool = False
    endpoint_name: str = ""  # default <model_name>-endpoint
    serving_machine_type: str = "n1-standard-2"
    serving_min_replicas: int = 1
    serving_max_replicas: int = 1
    serving_image: str = DEFAULT_SERVING_IMAGE
    # Pipeline knobs
    train_steps: int | None = None
    eval_steps: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    auc_threshold: float | None = None
    auc_change_tolerance: float | None = None
    min_error_reduction: float | None = None
    calibration_tolerance: float | None = None
    enable_cache: bool = True
    # Submit / schedule
    template: str = "build/vertex_pipeline.json"  # compiled pipeline JSON
    enable_caching: bool | None = None  # None: as compiled
    labels: tuple[tuple[str, str], ...] = ()
    parameters: tuple[tuple[str, str], ...] = ()
    schedule_name: str = ""  # default <pipeline_name>-schedule
    cron: str = ""
    max_concurrent_runs: int = 1
    start_time: str = ""
    end_time: str = ""
    max_run_count: int | None = None

    # Derived values: one place decides the defaults.
    def path(self, name: str) -> str:
        value = getattr(self, name)
        if value:
            return value
        suffix = {
            "pipeline_root": "pipeline_root",
            "data_root": "data",
            "serving_model_dir": f"serving_model/{self.model_name}",
            "temp_location": "tmp",
        }[name]
        return f"{self.bucket.rstrip('/')}/{suffix}"

    @property
    def pipeline_image(self) -> str:
        return self.image or (
            f"{self.region}-docker.pkg.dev/{self.project}/{self.image_repository}/{self.pipeline_name}:latest"
        )

    @property
    def endpoint(self) -> str:
        return self.endpoint_name or f"{self.model_name}-endpoint"

    @property
    def schedule_display_name(self) -> str:
        return self.schedule_name or f"{self.pipeline_name}-schedule"

    def knobs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in PIPELINE_KNOBS if getattr(self, k) is not None}


FIELDS = {f.name: f for f in dataclasses.fields(VertexSettings)}


def _coerce(name: str, value: Any, source: str) -> Any:
    """Turn a YAML/env/flag value into the field's type, or say which setting is wrong."""
    kind = str(FIELDS[name].type)
    where = f"setting {name} (from {source})"
    if value is None:  # a YAML key with nothing after it; flags and empty env variables never get here
        raise ConfigError(f"{where} has no value: give one or delete the line")
    try:
        if kind.startswith("bool"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError  # int() would turn True into 1 and cut 2.7 to 2
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("tuple[tuple"):
            return _pairs(value, where)
        if kind.startswith("tuple"):
            if isinstance(value, str):
                return tuple(value.split()) if source.startswith("env") else (value,)
            return tuple(str(v) for v in value)
    except ConfigError:
        raise
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a valid {kind.split(' ')[0]}") from None
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{where}: expected a single value, got {type(value).__name__}")
    return str(value)


def _pairs(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    """key=value pairs from a mapping, a list of 'k=v' or a comma-separated string."""
    if isinstance(value, Mapping):
        return tuple((str(k), str(v)) for k, v in value.items())
    items = value.split(",") if isinstance(value, str) else list(value)
    pairs = []
    for item in items:
        key, eq, val = str(item).partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{where}: {item!r} must be NAME=VALUE")
        pairs.append((key.strip(), val.strip()))
    return tuple(pairs)


def _unique_key_loader():  # noqa: ANN202 - a yaml.SafeLoader subclass
    """yaml's safe loader, refusing a key set twice in one mapping (PyYAML keeps the last one in silence)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep: bool = False):  # noqa: ANN001, ANN202 - PyYAML's signature
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"{key!r} is set twice", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def read_text_file(path: str, what: str) -> str:
    """A UTF-8 text file's contents (a byte-order mark dropped), or a ConfigError naming `what` and why not."""
    if not Path(path).is_file():
        problem = "is a folder, not a file" if Path(path).is_dir() else "does not exist"
        raise ConfigError(f"{what} {path} {problem}")
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(not_utf8(what, path, error)) from None
    except OSError as error:
        raise ConfigError(f"{what} {path} cannot be read: {error.strerror or error}") from None


def read_yaml(path: str) -> dict[str, Any]:
    text = read_text_file(path, "config file")
    import yaml  # imported only when a file is given

    try:
        data = yaml.load(text, Loader=_unique_key_loader()) or {}  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or ""
        detail = f": {problem}" if "set twice" in problem else ""
        raise ConfigError(f"config file {path} is not valid YAML{line}{detail}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of setting: value")
    settings: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in data.items():  # pipeline-name and pipeline_name are one setting: both given is a key set twice
        name = str(key).replace("-", "_")
        if name in settings:
            raise ConfigError(f"config file {path}: {spelled[name]!r} and {key!r} are the same setting ({name}); "
                              "keep one")
        settings[name], spelled[name] = value, str(key)
    return settings


def load_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> VertexSettings:
    """Merge the three sources (flags win) into VertexSettings; unknown names are errors."""
    env = os.environ if env is None else env
    config_file = config_file or env.get(f"{ENV_PREFIX}CONFIG") or None
    values: dict[str, Any] = {}
    if config_file:
        for name, value in read_yaml(config_file).items():
            if name not in FIELDS:
                raise ConfigError(f"config file {config_file}: unknown setting {name!r}")
            values[name] = _coerce(name, value, f"file {config_file}")
    for name in FIELDS:
        for var in (f"{ENV_PREFIX}{name.upper()}", ENV_FALLBACKS.get(name)):
            if var and env.get(var, "") != "":
                values[name] = _coerce(name, env[var], f"env {var}")
                break
    for name, value in flags.items():
        if value is None or value == ():
            continue
        if name not in FIELDS:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = _coerce(name, value, f"flag --{_FLAG_NAMES.get(name, name.replace('_', '-'))}")
    return VertexSettings(**values)
