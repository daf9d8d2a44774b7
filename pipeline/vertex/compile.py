"""Compile the one pipeline for Vertex AI Pipelines: settings -> PipelineConfig -> pipeline JSON.

TFX, TensorFlow and the Vertex extensions are imported inside the functions
that need them, so `vertex_runner.py --help` and config errors stay instant.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

from pipeline.configs import IMAGE_REPO_ROOT, ConfigError, PipelineConfig, vertex_config
from pipeline.vertex.settings import VertexSettings

DATA_ROOT_PARAMETER = "data-root"


def _flag_name(arg: str) -> str:
    return arg.split("=", 1)[0]


def dataflow_args(s: VertexSettings) -> tuple[str, ...]:
    """Beam flags that put every Beam component on Dataflow; --beam-arg overrides by flag name."""
    args = [
        "--runner=DataflowRunner",
        f"--project={s.project}",
        f"--region={s.region}",
        f"--temp_location={s.path('temp_location')}",
        f"--staging_location={s.path('temp_location')}/staging",
        f"--machine_type={s.dataflow_machine_type}",
        f"--max_num_workers={s.dataflow_max_workers}",
        "--experiments=use_runner_v2",
        # Workers need models/ (preprocessing_fn) and pipeline/: either run them
        # in the pipeline image itself or let Beam build and ship the package.
        f"--sdk_container_image={s.pipeline_image}"
        if s.beam_code == "image"
        else f"--setup_file={IMAGE_REPO_ROOT}/setup.py",
    ]
    # Workers run as the pipeline's run-as account unless Dataflow gets one of its own; with
    # neither, Dataflow would use the project's Compute Engine default service account.
    worker_account = s.dataflow_service_account or s.service_account
    if worker_account:
        args.append(f"--service_account_email={worker_account}")
    overridden = {_flag_name(a) for a in s.beam_args}
    return tuple(a for a in args if _flag_name(a) not in overridden) + tuple(s.beam_args)


def training_args(s: VertexSettings) -> dict | None:
    """Vertex custom job spec for the extension Trainer: same image, so run_fn is importable."""
    if not s.vertex_training:
        return None
    return {
        "project": s.project,
        "region": s.region,
        "job_spec": {
            "worker_pool_specs": [
                {
                    "machine_spec": {"machine_type": s.training_machine_type},
                    "replica_count": 1,
                    "container_spec": {"image_uri": s.pipeline_image},
                }
            ],
            **({"service_account": s.service_account} if s.service_account else {}),
        },
    }


def serving_args(s: VertexSettings) -> dict | None:
    """Model Registry upload + Endpoint deploy with the prebuilt TF serving container."""
    if not s.vertex_serving:
        return None
    return {
        "project": s.project,
        "region": s.region,
        "container_image_uri": s.serving_image,
        "endpoint_name": s.endpoint,
        "machine_type": s.serving_machine_type,
        "min_replica_count": s.serving_min_replicas,
        "max_replica_count": s.serving_max_replicas,
    }


def build_config(s: VertexSettings) -> PipelineConfig:
    """The PipelineConfig a Vertex run uses (plain strings; the data root becomes a parameter later)."""
    return vertex_config(
        pipeline_name=s.pipeline_name,
        pipeline_root=s.path("pipeline_root"),
        data_root=s.path("data_root"),
        serving_model_dir=s.path("serving_model_dir"),
        beam_pipeline_args=dataflow_args(s),
        schema_path=s.schema_path,
        vertex_training_args=training_args(s),
        vertex_serving_args=serving_args(s),
        enable_cache=s.enable_cache,
        **s.knobs(),
    )


def _is_compiled_pipeline(path: Path) -> bool:
    try:
        return "pipelineSpec" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):  # TypeError: `in` on a JSON list or number
        return False


def check_output(output: str) -> Path:
    """The JSON file to write, or a ConfigError before anything is compiled. An existing file is replaced only
    when it is a compiled pipeline (a recompile): --output schema/schema.pbtxt or the --config file replaced them."""
    if not output.strip():
        raise ConfigError("--output is empty: give the path of the pipeline JSON to write")
    # A symlink is written through: its target is the file replaced (the new JSON took the link's place before).
    out = Path(os.path.realpath(output)) if Path(output).is_symlink() else Path(output)
    if out.is_dir():
        raise ConfigError(f"--output {output} is a folder: give the path of the JSON file to write in it")
    if out.suffix.lower() != ".json":  # KFP writes YAML for a .yaml name, which submit does not take
        raise ConfigError(f"--output {output}: the compiled pipeline is JSON; give a path ending in .json")
    if out.exists() and not _is_compiled_pipeline(out):
        raise ConfigError(f"--output {output} exists and is not a compiled pipeline JSON: it is kept; give "
                          "another path (or move it aside)")
    existing = next(parent for parent in out.absolute().parents if parent.exists())
    if not existing.is_dir():
        raise ConfigError(f"--output {output}: {existing} is a file, not a folder")
    try:  # a folder made and removed: os.access says yes to root in /proc, /sys or on a read-only mount
        os.rmdir(tempfile.mkdtemp(prefix=".compile-check.", dir=existing))
    except OSError as error:
        raise ConfigError(f"--output {output}: {existing} cannot be written ({error.strerror or error})") from None
    return out


def compile_pipeline(s: VertexSettings, output: str) -> Path:
    """Write the pipeline JSON; the data root is a runtime parameter so a run can point at a new span."""
    out = check_output(output)  # before TFX is imported
    config = build_config(s)
    from tfx.orchestration import data_types
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    from pipeline.pipeline import create_pipeline

    data_root = data_types.RuntimeParameter(name=DATA_ROOT_PARAMETER, ptype=str, default=config.data_root)
    pipeline = create_pipeline(dataclasses.replace(config, data_root=data_root))
    # The runner refuses to overwrite a file: it writes into a fresh folder beside the JSON, which then
    # replaces the old one whole, so a compile that fails part-way leaves the previous JSON as it was.
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as error:  # /proc, /sys, a read-only mount: os.access says yes to root there
        raise ConfigError(f"--output {out}: cannot write in {out.parent}: {error.strerror or error}") from None
    try:
        runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
            config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
                default_image=s.pipeline_image,
                display_name=s.pipeline_name,
                # Schema 2.1 carries typed parameter values, which PipelineJob expects.
                use_pipeline_spec_2_1=True,
            ),
            output_dir=str(staging),
            output_filename=out.name,
        )
        # Default for the runtime parameter lands in runtimeConfig.parameterValues.
        runner.run(pipeline, parameter_values={DATA_ROOT_PARAMETER: config.data_root}, write_out=True)
        os.replace(staging / out.name, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
