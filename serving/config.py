"""models.config in TF Serving's ModelServerConfig text format, read and written.

The same file drives the production TF Serving container and the local server,
so labels (stable/canary) and version policies mean the same in both.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from common.text_files import not_utf8

MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")  # TF Serving: word characters


class ConfigError(ValueError):
    """A config file that cannot be served; the message says what to fix."""


@dataclass(frozen=True)
class VersionPolicy:
    """Which on-disk versions to load: latest N, all, or specific ones."""

    kind: str = "latest"  # latest | all | specific
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, candidates: list[int]) -> set[int]:
        """The versions to keep loaded among the loadable ones on disk."""
        if self.kind == "all":
            return set(candidates)
        if self.kind == "specific":
            return set(candidates) & set(self.versions)
        return set(sorted(candidates)[-self.num_versions:]) if self.num_versions > 0 else set()


@dataclass(frozen=True)
class ModelSpec:
    """One served model: where its versions live, what to load, its labels."""

    name: str
    base_path: str
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    labels: dict[str, int] = field(default_factory=dict)


def _policy_from_proto(cfg: model_server_config_pb2.ModelConfig) -> VersionPolicy:
    which = cfg.model_version_policy.WhichOneof("policy_choice")
    if which == "all":
        return VersionPolicy("all")
    if which == "specific":
        versions = tuple(cfg.model_version_policy.specific.versions)
        if not versions:
            raise ConfigError(f"model '{cfg.name}': specific version policy lists no versions")
        return VersionPolicy("specific", versions=versions)
    if which == "latest":
        n = cfg.model_version_policy.latest.num_versions
        return VersionPolicy("latest", num_versions=max(n, 1))
    return VersionPolicy()


def parse_model_config(text: str, source: str = "models.config") -> list[ModelSpec]:
    """ModelServerConfig text -> validated specs; ConfigError names the problem."""
    proto = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        raise ConfigError(f"{source}: not a ModelServerConfig in text format: {exc}") from None
    if proto.WhichOneof("config") != "model_config_list" or not proto.model_config_list.config:
        raise ConfigError(f"{source}: needs a model_config_list with at least one config")
    try:
        return specs_from_proto(proto.model_config_list)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def specs_from_proto(config_list: model_server_config_pb2.ModelConfigList) -> list[ModelSpec]:
    """A ModelConfigList (from a file or a HandleReloadConfigRequest) -> validated specs.

    Checks what TF Serving's ValidateModelConfigList checks (one entry per
    name, absolute base paths or URIs), plus what would fail later there.
    """
    specs, seen = [], set()
    for cfg in config_list.config:
        if not MODEL_NAME_RE.match(cfg.name):
            raise ConfigError(f"invalid model name {cfg.name!r}")
        if cfg.name in seen:
            raise ConfigError(f"Illegal to list model {cfg.name} multiple times in config list")
        seen.add(cfg.name)
        if not cfg.base_path:
            raise ConfigError(f"model '{cfg.name}' has no base_path")
        if not (cfg.base_path.startswith("/") or "://" in cfg.base_path):
            raise ConfigError(f"Expected model {cfg.name} to have an absolute path or URI; "
                              f"got base_path()={cfg.base_path}")
        if cfg.model_platform not in ("", "tensorflow"):
            raise ConfigError(f"model '{cfg.name}': only model_platform 'tensorflow' is served")
        labels = dict(cfg.version_labels)
        for label, version in labels.items():
            if not LABEL_RE.match(label):
                raise ConfigError(f"model '{cfg.name}': invalid label {label!r}")
            if version <= 0:
                raise ConfigError(f"model '{cfg.name}': label '{label}' needs a positive version")
        specs.append(ModelSpec(cfg.name, cfg.base_path, _policy_from_proto(cfg), labels))
    return specs


def local_folder(base_path: str, named: str, local: str = "absolute paths") -> Path:
    """The folder a base path names, a local path or a file:// URI as TF Serving takes; ValueError for
    another file system (gs://), which this server does not read. `named` starts the message."""
    if "://" in base_path and not base_path.startswith("file://"):
        raise ValueError(f"{named} {base_path}: this server reads local folders ({local}, file:// URIs); "
                         "TF Serving reads other file systems")
    return Path(base_path.removeprefix("file://"))


def load_model_config(path: Path) -> list[ModelSpec]:
    """Read and validate a models.config file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read model config {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:  # a comment saved as Latin-1 or UTF-16 by an editor
        raise ConfigError(not_utf8("model config", path, exc)) from None
    return parse_model_config(text, str(path))


def render_model_config(specs: list[ModelSpec]) -> str:
    """Specs -> ModelServerConfig text, the format TF Serving's flag reads."""
    proto = model_server_config_pb2.ModelServerConfig()
    for spec in specs:
        cfg = proto.model_config_list.config.add(name=spec.name, base_path=spec.base_path, model_platform="tensorflow")
        pol = cfg.model_version_policy
        if spec.policy.kind == "all":
            pol.all.SetInParent()
        elif spec.policy.kind == "specific":
            pol.specific.versions.extend(spec.policy.versions)
        else:
            pol.latest.num_versions = spec.policy.num_versions
        for label, version in sorted(spec.labels.items()):
            cfg.version_labels[label] = version
    return text_format.MessageToString(proto)
