"""vertex_runner.py compile: the JSON Vertex would run, checked task by task (no cloud needed).

Compiling imports TFX once (~10 s); each variant is compiled once per module.
"""
from __future__ import annotations

import importlib.metadata
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import vertex_runner
from pipeline.configs import IMAGE_REPO_ROOT, PROJECT_ROOT
from pipeline.vertex import settings as vs
from pipeline.vertex.compile import build_config

PROJECT, REGION, BUCKET = "my-proj-1", "us-central1", "gs://taxi-ml"
IMAGE = "us-central1-docker.pkg.dev/my-proj-1/tfx/taxi-pipeline:abc123"
SA = "pipelines@my-proj-1.iam.gserviceaccount.com"
BASE = ["--project", PROJECT, "--region", REGION, "--bucket", BUCKET]
BEAM_COMPONENTS = ("CsvExampleGen", "StatisticsGen", "ExampleValidator", "Transform", "Evaluator")


def _compile(tmp_path_factory: pytest.TempPathFactory, *extra: str) -> dict:
    out = tmp_path_factory.mktemp("vertex") / "pipeline.json"
    assert vertex_runner.main(["compile", *BASE, "--output", str(out), *extra]) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _compile(tmp_path_factory, "--image", IMAGE, "--beam-arg=--machine_type=n2-standard-8",
                    "--service-account", SA)


@pytest.fixture(scope="module")
def compiled_vertex(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _compile(tmp_path_factory, "--vertex-training", "--vertex-serving", "--beam-code", "setup-file")


def _tasks(job: dict) -> dict:
    return job["pipelineSpec"]["root"]["dag"]["tasks"]


def _params(job: dict, task: str) -> dict:
    return _tasks(job)[task]["inputs"]["parameters"]


def _constant(job: dict, task: str, name: str) -> str:
    return _params(job, task)[name]["runtimeValue"]["constant"]


def _container(job: dict, task: str) -> dict:
    return job["pipelineSpec"]["deploymentSpec"]["executors"][f"{task}_executor"]["container"]


def test_every_pipeline_component_is_a_task(compiled: dict) -> None:
    from pipeline.pipeline import create_pipeline

    s = vs.load_settings({"project": PROJECT, "region": REGION, "bucket": BUCKET}, env={})
    ids = {c.id for c in create_pipeline(build_config(s)).components}
    tasks = set(_tasks(compiled))
    assert len(ids) == 11
    for node_id in ids:
        # The blessed-model Resolver compiles to two resolver tasks named after it.
        assert node_id in tasks or any(t.startswith(f"{node_id}-") for t in tasks), node_id
    assert compiled["displayName"] == "taxi-pipeline"


def test_every_container_runs_the_pipeline_image(compiled: dict) -> None:
    executors = compiled["pipelineSpec"]["deploymentSpec"]["executors"]
    images = {name: spec["container"]["image"] for name, spec in executors.items() if "container" in spec}
    assert len(images) == 10
    assert set(images.values()) == {IMAGE}


def test_beam_components_get_dataflow_args(compiled: dict) -> None:
    for task in BEAM_COMPONENTS:
        args = _container(compiled, task)["args"]
        assert "--runner=DataflowRunner" in args, task
        assert f"--project={PROJECT}" in args and f"--region={REGION}" in args
        assert f"--temp_location={BUCKET}/tmp" in args
        assert f"--sdk_container_image={IMAGE}" in args
        assert "--experiments=use_runner_v2" in args
        # --beam-arg replaced the generated machine type instead of adding a second one.
        assert [a for a in args if a.startswith("--machine_type=")] == ["--machine_type=n2-standard-8"]
        assert not any(a.startswith("--direct_") for a in args), "local DirectRunner flags leaked"
        # Dataflow workers run as the pipeline's run-as account (the README's IAM setup), not as the
        # project's Compute Engine default account, which Dataflow picks when no account is named.
        assert [a for a in args if a.startswith("--service_account_email")] == [f"--service_account_email={SA}"]


def test_a_dataflow_service_account_of_its_own_wins(tmp_path_factory: pytest.TempPathFactory) -> None:
    own = "dataflow-workers@my-proj-1.iam.gserviceaccount.com"
    job = _compile(tmp_path_factory, "--service-account", SA, "--dataflow-service-account", own)
    args = _container(job, "Transform")["args"]
    assert [a for a in args if a.startswith("--service_account_email")] == [f"--service_account_email={own}"]


def test_runtime_parameter_and_gcs_paths(compiled: dict) -> None:
    spec = compiled["pipelineSpec"]
    assert spec["root"]["inputDefinitions"]["parameters"] == {"data-root": {"parameterType": "STRING"}}
    assert compiled["runtimeConfig"]["parameterValues"] == {"data-root": f"{BUCKET}/data"}
    assert compiled["runtimeConfig"]["gcsOutputDirectory"] == f"{BUCKET}/pipeline_root"
    assert _params(compiled, "CsvExampleGen")["input_base"] == {"componentInputParameter": "data-root"}
    assert _constant(compiled, "ImportSchemaGen", "schema_file") == "/pipeline/schema/schema.pbtxt"
    # The image's schema is this checkout's: its FLOAT columns stay FLOAT in CsvExampleGen on Vertex too.
    from pipeline.components.batched_csv_example_gen import configured_float_columns

    floats = configured_float_columns(_constant(compiled, "CsvExampleGen", "custom_config"))
    assert {"fare", "trip_miles", "pickup_latitude"} <= floats and "trip_start_hour" not in floats
    push = json.loads(_constant(compiled, "Pusher", "push_destination"))
    assert push["filesystem"]["base_directory"] == f"{BUCKET}/serving_model/taxi"
    assert "google_cloud_ai_platform" not in _container(compiled, "Pusher")["args"][1]  # the filesystem Pusher


@pytest.mark.parametrize("schema", [f"{BUCKET}/schemas/schema.pbtxt", "/opt/schemas/taxi.pbtxt"])
def test_a_schema_read_where_csv_example_gen_runs_gives_its_float_columns(tmp_path_factory, schema: str) -> None:
    """A gs:// schema, or a file a derived image adds outside /pipeline, cannot be read at compile time: CsvExampleGen is
    told the file, to read it on Vertex (else FLOAT columns of whole numbers would be typed INT)."""
    job = _compile(tmp_path_factory, "--schema-path", schema)
    assert _constant(job, "ImportSchemaGen", "schema_file") == schema
    custom = json.loads(_constant(job, "CsvExampleGen", "custom_config"))
    assert custom["custom_config"]["value"] == {"schema_file": schema}
    # Nothing to pin it to here: the run takes whatever the file holds, as stock ImportSchemaGen does.
    assert "schema_sha256" not in _params(job, "ImportSchemaGen")


def test_the_image_schema_is_pinned_to_this_checkouts_content(compiled: dict) -> None:
    """The image path is the same in every image: the schema's hash makes an edit a new cache key on Vertex."""
    import hashlib

    from pipeline.configs import DEFAULT_SCHEMA

    pinned = _constant(compiled, "ImportSchemaGen", "schema_sha256")
    assert pinned == hashlib.sha256(DEFAULT_SCHEMA.read_bytes()).hexdigest()


def test_transform_and_the_trainer_read_the_image_schema_without_what_only_the_gate_reads(compiled: dict) -> None:
    """On Vertex TrainingSchemaImporter makes their schema from the image's where it runs, pinned to what this
    checkout makes of it: a drift threshold tuned keeps their cache (no training job) and a domain edit does not."""
    import hashlib

    from pipeline.configs import DEFAULT_SCHEMA, read_schema
    from pipeline.training_schema import training_schema_text

    assert _constant(compiled, "TrainingSchemaImporter", "schema_file") == "/pipeline/schema/schema.pbtxt"
    assert _constant(compiled, "TrainingSchemaImporter", "for_training") in (1, "1")
    pinned = _constant(compiled, "TrainingSchemaImporter", "schema_sha256")
    assert pinned == hashlib.sha256(training_schema_text(read_schema(str(DEFAULT_SCHEMA)))).hexdigest()
    for task in ("Transform", "Trainer"):
        schema_input = compiled["pipelineSpec"]["root"]["dag"]["tasks"][task]["inputs"]["artifacts"]["schema"]
        assert schema_input["taskOutputArtifact"]["producerTask"] == "TrainingSchemaImporter", task


def _thresholds(job: dict) -> dict:
    metrics = json.loads(_constant(job, "Evaluator", "eval_config"))["metrics_specs"][0]["metrics"]
    bounds = {m["class_name"]: m["per_slice_thresholds"][0]["threshold"]["value_threshold"]
              for m in metrics if m.get("per_slice_thresholds")}
    return {name: bound["lower_bound"] if "upper_bound" not in bound else (bound["lower_bound"], bound["upper_bound"])
            for name, bound in bounds.items()}


def test_the_blessing_rules_local_runs_take_are_settings_on_vertex_too(tmp_path_factory) -> None:
    """local_runner.py takes --auc-threshold, --min-error-reduction and --calibration-tolerance; vertex.yaml must
    take them all."""
    cfg = tmp_path_factory.mktemp("cfg") / "vertex.yaml"
    cfg.write_text("auc_threshold: 0.8\nmin_error_reduction: 0.25\ncalibration_tolerance: 1.0\n")
    job = _compile(tmp_path_factory, "--config", str(cfg))
    assert _thresholds(job) == {"HistogramAUC": 0.8, "BaseRateErrorReduction": 0.25,
                                "HistogramCalibration": (0.5, 2.0)}


def test_kfp_sdk_loads_the_pipeline(compiled: dict) -> None:
    from kfp.components import load_component_from_text

    component = load_component_from_text(json.dumps(compiled["pipelineSpec"]))
    assert component.name == "taxi-pipeline"
    assert list(component.component_spec.inputs) == ["data-root"]


def test_vertex_training_and_serving_use_the_extensions(compiled_vertex: dict) -> None:
    image = f"{REGION}-docker.pkg.dev/{PROJECT}/tfx/taxi-pipeline:latest"
    trainer = _container(compiled_vertex, "Trainer")
    assert trainer["args"][1] == "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor"
    train_cfg = json.loads(_constant(compiled_vertex, "Trainer", "custom_config"))
    assert train_cfg["ai_platform_enable_vertex"] is True
    assert train_cfg["ai_platform_vertex_region"] == REGION
    pool = train_cfg["ai_platform_training_args"]["job_spec"]["worker_pool_specs"][0]
    assert pool["container_spec"]["image_uri"] == image  # run_fn must be importable in the job
    assert pool["machine_spec"]["machine_type"] == "n1-standard-4"
    assert train_cfg["ai_platform_training_args"]["project"] == PROJECT

    pusher = _container(compiled_vertex, "Pusher")
    assert pusher["args"][1] == "tfx.extensions.google_cloud_ai_platform.pusher.executor.Executor"
    push_cfg = json.loads(_constant(compiled_vertex, "Pusher", "custom_config"))
    assert push_cfg["ai_platform_vertex_container_image_uri"] == vs.DEFAULT_SERVING_IMAGE
    serving = push_cfg["ai_platform_serving_args"]
    assert serving["endpoint_name"] == "taxi-endpoint" and serving["project"] == PROJECT
    # The extension passes the rest to Model.deploy(**kwargs): only arguments it accepts.
    from google.cloud.aiplatform import Model

    deploy_params = set(inspect.signature(Model.deploy).parameters)
    assert set(serving) - {"endpoint_name", "project", "regions", "labels"} <= deploy_params

    args = _container(compiled_vertex, "Transform")["args"]
    assert "--setup_file=/pipeline/setup.py" in args
    assert not any(a.startswith("--sdk_container_image") for a in args)


# Vertex's prebuilt TensorFlow prediction containers (cloud.google.com/vertex-ai/docs/predictions/pre-built-containers)
# stop at TF 2.15: Model.deploy refuses any other tf2-cpu tag as an "Invalid image ... for deployment".
NEWEST_VERTEX_TF_PREDICTION = 15


def test_the_default_serving_container_is_one_vertex_has(compiled_vertex: dict) -> None:
    image = json.loads(_constant(compiled_vertex, "Pusher", "custom_config"))["ai_platform_vertex_container_image_uri"]
    match = re.fullmatch(r"(us|europe|asia)-docker\.pkg\.dev/vertex-ai/prediction/tf2-cpu\.2-(\d+):latest", image)
    assert match, image
    import tensorflow as tf

    # No newer than Vertex provides, and no newer than the TensorFlow that exports the model.
    assert int(match.group(2)) <= min(NEWEST_VERTEX_TF_PREDICTION, int(tf.__version__.split(".")[1])), image


def test_setup_file_workers_get_the_tfx_the_image_runs(compiled_vertex: dict, tmp_path: Path) -> None:
    """--beam-code setup-file: Dataflow workers start from Beam's stock SDK container, which has no TFX,
    tfx-bsl, TFT, TFDV or TFMA; they get only the package built from --setup_file and what it requires."""
    (setup_arg,) = [a for a in _container(compiled_vertex, "Transform")["args"] if a.startswith("--setup_file=")]
    setup_py = PROJECT_ROOT / Path(setup_arg.split("=", 1)[1]).relative_to(IMAGE_REPO_ROOT)  # the image's /pipeline
    subprocess.run([sys.executable, str(setup_py), "-q", "egg_info", "--egg-base", str(tmp_path)],
                   cwd=setup_py.parent, check=True, capture_output=True)
    (egg,) = tmp_path.glob("*.egg-info")
    requires = importlib.metadata.PathDistribution(egg).requires or []
    tfx_version = importlib.metadata.version("tfx")
    assert f"tfx=={tfx_version}" in requires, requires
    # ... the TFX of the image that launches the Beam jobs (and pickles their code for the workers).
    assert re.search(rf"^FROM tensorflow/tfx:{re.escape(tfx_version)}$", (PROJECT_ROOT / "Dockerfile").read_text(), re.M)


def test_recompile_replaces_the_output(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    out.write_text('{"pipelineSpec": {"pipelineInfo": {"name": "an-older-compile"}}}')
    assert vertex_runner.main(["compile", *BASE, "--output", str(out), "--no-enable-cache"]) == 0
    job = json.loads(out.read_text())
    assert all(not t.get("cachingOptions", {}).get("enableCache") for t in _tasks(job).values())
    # Written beside the old JSON, then swapped in whole: nothing else is left in its folder.
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]


@pytest.mark.parametrize("output, message", [
    ("", "--output is empty"),
    ("{tmp}", "is a folder: give the path of the JSON file"),
    ("{tmp}/a-file/p.json", "a-file is a file, not a folder"),
])
def test_unusable_output_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, output: str,
                                            message: str) -> None:
    (tmp_path / "a-file").write_text("kept")
    assert vertex_runner.main(["compile", *BASE, "--output", output.format(tmp=tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --output ") and message in err and err.count("\n") == 1
    assert (tmp_path / "a-file").read_text() == "kept" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_every_project_package_is_in_the_package_workers_install(tmp_path: Path) -> None:
    """The image and Dataflow workers import the project from the package setup.py builds: a package
    left out of it (a new shared helper, say) is an ImportError on the first remote step, never locally."""
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)],
                   cwd=PROJECT_ROOT, check=True, capture_output=True)
    (egg,) = tmp_path.glob("*.egg-info")
    shipped = set((egg / "top_level.txt").read_text().split())
    packages = {p.parent.name for p in PROJECT_ROOT.glob("*/__init__.py") if p.parent.name != "tests"}
    assert packages <= shipped, sorted(packages - shipped)


def test_a_compile_prints_the_json_path_and_nothing_else(tmp_path: Path) -> None:
    """TensorFlow's CUDA lines and Google's Python-support warnings came out as 18 lines on stderr of a
    compile that worked: a CI step reading its output saw errors ('Unable to register cuDNN factory')."""
    out = tmp_path / "pipeline.json"
    done = subprocess.run([sys.executable, "vertex_runner.py", "compile", *BASE, "--output", str(out)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == (f"{out}\n", "")
    assert json.loads(out.read_text())["displayName"]
