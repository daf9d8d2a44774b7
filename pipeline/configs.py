"""The one typed config object. Runners build it; nothing deeper reads env or flags."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path

from common.atomic_files import replace_whole
from pipeline import fingerprints

PROJECT_ROOT = fingerprints.PROJECT_ROOT
DEFAULT_SCHEMA = PROJECT_ROOT / "schema" / "schema.pbtxt"

# Vertex and KFP names: lowercase letters, digits and dashes, at most 128.
PIPELINE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}\Z")  # \Z: $ would also match before a final newline

# 15k rows fit in memory many times over: one in-process Beam worker avoids
# spawning Python workers that each re-import TensorFlow (seconds apiece), which
# is what dominates the DirectRunner's multi_processing mode at this size.
DEFAULT_LOCAL_BEAM_ARGS = (
    "--direct_running_mode=in_memory",
    "--direct_num_workers=1",
)

# Any of these tells TFX the Beam workers already have their Python dependencies.
DEPENDENCY_FLAGS = ("--extra_package", "--extra_packages", "--setup_file", "--requirements_file",
                    "--worker_harness_container_image", "--sdk_container_image")


def with_dependency_flag(beam_args: tuple[str, ...]) -> tuple[str, ...]:
    """The args plus --setup_file=<repo>/setup.py, unless they already name a dependency.

    Without one, TFX's Beam executors copy the whole installed `tfx` package and
    run `setup.py sdist` on it once per Beam component (ExampleGen,
    StatisticsGen, Transform, Evaluator), for remote workers a local run does
    not have. This project's setup.py is what Dataflow workers need anyway.
    """
    if any(arg.split("=", 1)[0] in DEPENDENCY_FLAGS for arg in beam_args):
        return beam_args
    return (*beam_args, f"--setup_file={PROJECT_ROOT / 'setup.py'}")


class ConfigError(ValueError):
    """A setting is wrong; the message says which and what to do."""


class StoreBusy(ConfigError):
    """Not a wrong setting: another process holds the MLMD store; try again (exit 3, not now)."""


# TensorFlow's and Beam's globs read these as pattern syntax: a path holding one no longer matches itself,
# and '*' or '?' match other paths too. CsvExampleGen globs its input; Beam globs the files it writes.
GLOB_SYNTAX, WILDCARDS = "[\\", "*?"


def glob_char_in(path: str, chars: str = GLOB_SYNTAX) -> str | None:
    """The first of `chars` in the absolute path, or None."""
    absolute = os.path.abspath(path)
    return next((char for char in chars if char in absolute), None)


INT32_MAX = 2**31 - 1
MAX_BATCH_SIZE = 65_536


def parse_schema_text(path: str | Path) -> object:
    """The TFMD Schema in a local text file, or a ConfigError saying why not (the caller names the file)."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    try:
        # utf-8-sig: Notepad's byte-order mark is not text (the copy ImportSchemaGen reads is written without it)
        return text_format.Parse(Path(path).read_text(encoding="utf-8-sig"), schema_pb2.Schema())
    except (text_format.ParseError, UnicodeDecodeError) as error:
        raise ConfigError(f"is not a TFMD Schema in text format: {error}") from None
    except OSError as error:
        raise ConfigError(f"cannot be read: {error.strerror or error}") from None


def read_schema(path: str) -> object:
    """The TFMD Schema in a local text file; ConfigError unless it is one, with features (else ImportSchemaGen
    fails mid-run, or an empty file passes as a schema and the gate reports every column as new), and sound
    (pipeline/schema_check.py)."""
    if not os.path.isfile(path):
        problem = ("is a folder, not a file" if os.path.isdir(path) else
                   "is not a regular file (a broken or looping symlink, a pipe or a device)" if os.path.lexists(path)
                   else "does not exist")
        raise ConfigError(f"schema file {path} {problem}")
    try:
        schema = parse_schema_text(path)
    except ConfigError as error:
        raise ConfigError(f"schema file {path} {error}") from None
    if not schema.feature:
        raise ConfigError(f"schema file {path} declares no features; `make schema` drafts one from the data")
    from pipeline.schema_check import schema_problems

    problems = schema_problems(schema)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(f"schema file {path}: {problems[0]}{more}")
    return schema


def column_types(schema) -> dict[str, str]:  # noqa: ANN001 - schema_pb2.Schema
    """{column: INT, FLOAT or BYTES} as the schema declares them."""
    from pipeline.schema_check import type_name

    return {feature.name: type_name(feature) for feature in schema.feature}


def check_metadata_file(path: str) -> None:
    """ConfigError when an existing MLMD file is not SQLite: MLMD would fail on it mid-run, and it
    is the output's whole run history, so it is never overwritten."""
    from pipeline.mlmd_store import StoreLocked, sqlite_problem

    try:
        problem = sqlite_problem(path)
    except StoreLocked as locked:
        raise StoreBusy(str(locked)) from None
    if problem:
        raise ConfigError(f"{problem}; move it aside to start a new run history in this output folder")


def check_store_writable(path: str | None) -> None:
    """StoreBusy when a run's first write to the store would fail: another process holds a pending write on it
    (readers, and a run that ends in "nothing changed", never write, so only a run that goes to TFX asks)."""
    from pipeline.mlmd_store import StoreLocked, check_writable_now

    try:
        check_writable_now(path or "")
    except StoreLocked as locked:
        raise StoreBusy(str(locked)) from None


def check_beam_args(beam_args: tuple[str, ...], local: bool = True) -> None:
    """ConfigError for Beam args Beam would refuse mid-run or silently drop; for a local run
    (`local`), also for a runner that does not run in this process.

    Unchecked, a bad value (`--direct_num_workers=abc`) exits from inside the
    first Beam component with argparse's message in the log, an unknown runner
    fails that component, and an unknown or misspelt option is dropped with a
    warning in the log while the run goes on without it.
    """
    import contextlib
    import io
    import warnings

    usage = io.StringIO()  # argparse's usage and Beam's import-time warnings stay off the console
    with contextlib.redirect_stderr(usage), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from apache_beam.options.pipeline_options import PipelineOptions
        from apache_beam.runners.runner import create_runner

        try:
            options = PipelineOptions(list(beam_args))
            known = options.get_all_options()
            given = options.get_all_options(retain_unknown_options=True)
        except SystemExit:  # argparse's way of refusing a value
            reason = (usage.getvalue().strip().splitlines() or ["they do not parse"])[-1]
            raise ConfigError(f"--beam-args: {reason.split('error: ', 1)[-1]}") from None
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ConfigError(f"--beam-args: Beam has no option --{unknown[0]}")
        workers = known.get("direct_num_workers")
        if workers is not None and workers < 0:  # Beam parses it; its DirectRunner then fails: list index out of range
            raise ConfigError(f"--beam-args: --direct_num_workers={workers}: Beam's DirectRunner needs 0 "
                              "(one per CPU core) or more workers")
        stray = _stray_token(beam_args, known)
        if stray is not None:
            raise ConfigError(f"--beam-args: {stray!r} is not an option or an option's value "
                              "(Beam would drop it); write --name=value")
        try:
            runner = create_runner(known["runner"]) if known.get("runner") else None
        except ValueError as error:
            raise ConfigError(f"--beam-args: {str(error).split('. Valid values', 1)[0]}") from None
        if local and runner is not None and not type(runner).__module__.startswith("apache_beam.runners.direct."):
            raise ConfigError(f"--beam-args: a local run executes Beam in this process (DirectRunner); "
                              f"--runner={known['runner']} needs a cluster or a cloud: Dataflow runs through "
                              "vertex_runner.py")


def _stray_token(beam_args: tuple[str, ...], known: dict) -> str | None:
    """The first arg that is neither an option nor the value after one: Beam drops it without a word.

    Beam's own single-dash flags are dropped too ("single dash flags are not allowed").
    """
    expects_value = False
    for token in beam_args:
        if expects_value:
            expects_value = False
        elif token.startswith("--") and len(token) > 2:
            name = token[2:].split("=", 1)[0]
            expects_value = "=" not in token and not isinstance(known.get(name), bool)
        else:
            return token
    return None


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    pipeline_name: str
    pipeline_root: str
    data_root: str
    serving_model_dir: str
    metadata_path: str | None = None  # SQLite file; None when the runner brings its own MLMD
    schema_path: str = str(DEFAULT_SCHEMA)
    # Transform's and the Trainer's schema: a copy without what only the gate reads (local_runner writes it);
    # None: schema_path, which TrainingSchemaImporter reads the same way where it runs (Vertex).
    training_schema_path: str | None = None
    model_name: str = "taxi"
    train_steps: int = 600
    eval_steps: int | None = None  # None: the whole eval split
    batch_size: int = 256
    learning_rate: float = 0.003
    auc_threshold: float = 0.90
    auc_change_tolerance: float = 0.0
    # Share of the base rate's errors (always answering the majority class) a blessed model must remove.
    min_error_reduction: float = 0.10
    # Calibration (sum of predictions / sum of labels) a blessed model must keep within [1/(1+t), 1+t].
    calibration_tolerance: float = 0.25
    beam_pipeline_args: tuple[str, ...] = DEFAULT_LOCAL_BEAM_ARGS
    enable_cache: bool = True
    # The interpreter and installed packages (fingerprints.environment()), in every component's cache key;
    # "" on Vertex, where the pipeline image a task runs in is part of its cache key.
    environment: str = ""
    # Spans: data_root holds span-<N>/ folders; train on `span`, compare its
    # statistics with `previous_span` (None: a flat folder, or the first span).
    span: int | None = None
    previous_span: int | None = None
    accept_drift: bool = False
    # False: the Evaluator does not compare with the latest blessed model (local_runner's --without-baseline,
    # for the one run after a schema type change that model cannot read; pipeline/baseline_types.py).
    compare_with_baseline: bool = True
    # Vertex only: when set, the Trainer runs as a Vertex custom job and the
    # Pusher uploads to Model Registry / deploys to an Endpoint (TFX's
    # google_cloud_ai_platform extensions, which take these dicts as they are).
    vertex_training_args: dict | None = None
    vertex_serving_args: dict | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not PIPELINE_NAME_RE.match(self.pipeline_name):
            raise ConfigError(
                f"pipeline name {self.pipeline_name!r} must match [a-z0-9][a-z0-9-]{{0,127}} "
                "(lowercase letters, digits, dashes)"
            )
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z", self.model_name):
            raise ConfigError(f"model name {self.model_name!r} may hold only letters, digits, '_', '.', '-' "
                              "and be at most 128 characters long (as models.config allows)")
        # TrainArgs/EvalArgs hold int32 step counts: more fails mid-run in the Trainer ("Value out of range").
        if not 1 <= self.train_steps <= INT32_MAX:
            raise ConfigError(f"train steps must be within [1, {INT32_MAX}], got {self.train_steps}")
        if self.eval_steps is not None and not 1 <= self.eval_steps <= INT32_MAX:
            raise ConfigError(f"eval steps must be within [1, {INT32_MAX}], got {self.eval_steps}")
        # A batch is built in memory; beyond this a typo (1e8) ran for ever on a 100-row split.
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ConfigError(f"batch size must be within [1, {MAX_BATCH_SIZE}], got {self.batch_size}")
        if not 0.0 < self.learning_rate < 1.0:
            raise ConfigError(f"learning rate must be in (0, 1), got {self.learning_rate}")
        if not 0.5 <= self.auc_threshold <= 1.0:
            raise ConfigError(
                f"AUC threshold must be in [0.5, 1]; got {self.auc_threshold} "
                "(below 0.5 a model no better than chance could be blessed)"
            )
        if not 0.0 < self.min_error_reduction <= 1.0:
            raise ConfigError(f"min error reduction must be in (0, 1], got {self.min_error_reduction} "
                              "(at 0 a model no better than always answering 'no' could be blessed)")
        if not 0.0 < self.calibration_tolerance <= 10.0:
            raise ConfigError(f"calibration tolerance must be in (0, 10], got {self.calibration_tolerance} "
                              "(calibration must lie within [1/(1+X), 1+X]: 0.25 allows 0.80 to 1.25)")
        if not 0.0 <= self.auc_change_tolerance < 0.5:
            raise ConfigError(f"AUC change tolerance must be in [0, 0.5), got {self.auc_change_tolerance}")


def content_addressed_schemas(schema, output_dir: str, write: bool = True) -> tuple[str, str]:  # noqa: ANN001 - Schema
    """Copies of a parsed schema under folders named by their hash (write=False: only their paths): the schema
    for ImportSchemaGen, and the one for TrainingSchemaImporter, without what only the gate reads.

    ImportSchemaGen's cache key is the schema *path*: an edited schema.pbtxt at
    the same path would be a cache hit and the old contract would be used.
    A copy is the schema as the parser reads it, without the file's comments
    and layout, which no component sees: editing those alone keeps the copy.
    """
    from google.protobuf import text_format

    from pipeline.training_schema import training_schema_text

    def copy(content: bytes) -> str:
        target = Path(output_dir) / "schemas" / hashlib.sha256(content).hexdigest()[:16] / "schema.pbtxt"
        if write and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            replace_whole(target, content)
        return str(target)

    return copy(text_format.MessageToString(schema).encode()), copy(training_schema_text(schema))


def local_config(
    data_root: str,
    output_dir: str,
    **overrides: object,
) -> PipelineConfig:
    """The config for a local run: everything lives under one output folder."""
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", output_dir)
    if scheme:
        raise ConfigError(f"--output {output_dir}: a local run writes to a folder on this machine (its MLMD store is "
                          "a SQLite file), not a URI; " + ("give the path without file://" if scheme[1] == "file" else
                          "to write to Cloud Storage run on Vertex AI (vertex_runner.py)"))
    output = os.path.abspath(output_dir)
    char = glob_char_in(output, GLOB_SYNTAX + WILDCARDS)
    if char:
        raise ConfigError(f"--output {output_dir} has {char!r} in its path, which Beam reads as a file pattern when "
                          "it looks for the files it wrote (the run would fail in CsvExampleGen): pick a path without one")
    data = os.path.realpath(data_root)
    if os.path.commonpath([data, os.path.realpath(output)]) == data:
        raise ConfigError(f"--output {output_dir} is the data folder or inside it: CsvExampleGen reads every file "
                          "there, the run's own included; pick an output folder outside the data")
    beam_args = tuple(overrides.pop("beam_pipeline_args", DEFAULT_LOCAL_BEAM_ARGS))  # type: ignore[arg-type]
    if beam_args != DEFAULT_LOCAL_BEAM_ARGS:  # the defaults are known good; checking imports Beam (~1 s)
        check_beam_args(beam_args)
    return PipelineConfig(
        pipeline_name=str(overrides.pop("pipeline_name", "taxi-pipeline")),
        pipeline_root=os.path.join(output, "pipeline_root"),
        data_root=os.path.abspath(data_root),
        serving_model_dir=os.path.join(output, "serving_model", str(overrides.get("model_name", "taxi"))),
        metadata_path=os.path.join(output, "metadata.sqlite"),
        environment=fingerprints.environment(),
        beam_pipeline_args=with_dependency_flag(beam_args),
        **overrides,  # type: ignore[arg-type]
    )


# Where the pipeline image (Dockerfile) holds the repository; ImportSchemaGen
# reads the reviewed schema from there unless a gs:// copy is configured.
IMAGE_REPO_ROOT = "/pipeline"
IMAGE_SCHEMA_PATH = f"{IMAGE_REPO_ROOT}/schema/schema.pbtxt"


def vertex_config(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    serving_model_dir: str,
    beam_pipeline_args: tuple[str, ...],
    schema_path: str = IMAGE_SCHEMA_PATH,
    vertex_training_args: dict | None = None,
    vertex_serving_args: dict | None = None,
    **overrides: object,
) -> PipelineConfig:
    """The config for Vertex AI Pipelines: outputs on GCS, MLMD run by Vertex (no SQLite path)."""
    for label, value in (
        ("pipeline root", pipeline_root),
        ("data root", data_root),
        ("serving model dir", serving_model_dir),
    ):
        if not str(value).startswith("gs://") or len(str(value)) <= len("gs://"):
            raise ConfigError(f"{label} {value!r} must be a gs:// path: Vertex workers cannot see local files")
    if not (schema_path.startswith("gs://") or schema_path.startswith("/")):
        raise ConfigError(
            f"schema path {schema_path!r} must be gs:// or an absolute path inside the pipeline image "
            f"(default {IMAGE_SCHEMA_PATH})"
        )
    return PipelineConfig(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        data_root=data_root,
        serving_model_dir=serving_model_dir,
        metadata_path=None,
        schema_path=schema_path,
        beam_pipeline_args=tuple(beam_pipeline_args),
        vertex_training_args=vertex_training_args,
        vertex_serving_args=vertex_serving_args,
        **overrides,  # type: ignore[arg-type]
    )
