"""Vertex settings: every bad value is one 'error: ...' line and exit 2, before any SDK import."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import vertex_runner
from pipeline.configs import ConfigError
from pipeline.vertex.cron import check_cron
from pipeline.vertex.settings import load_settings
from tests.unit.vertex_env import COMPILE, OK, clean_env  # noqa: F401 - clean_env: an autouse fixture

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """A minimal compiled-pipeline shape: enough for the parameter checks."""
    path = tmp_path / "p.json"
    path.write_text('{"pipelineSpec": {"root": {"inputDefinitions": {"parameters": {"data-root": {}}}}}}')
    return path


def _error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    code = vertex_runner.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["compile", "--region", "us-central1", "--bucket", "gs://b1"], "project is not set"),
        (["compile", "--project", "My_Proj", "--region", "us-central1", "--bucket", "gs://b1"], "is not a GCP project id"),
        (["compile", "--project", "my-proj-1", "--bucket", "gs://b1"], "region is not set"),
        (["compile", "--project", "my-proj-1", "--region", "us central", "--bucket", "gs://b1"], "is not a GCP region"),
        (["compile", *OK], "bucket is not set"),
        (["compile", *OK, "--bucket", "taxi-ml"], "bucket 'taxi-ml' must be a gs://bucket[/path] path"),
        ([*COMPILE, "--pipeline-name", "Taxi_Pipeline"], "pipeline name 'Taxi_Pipeline' must match [a-z][a-z0-9-]{0,112}"),
        ([*COMPILE, "--pipeline-name", "x" * 129], "must match [a-z][a-z0-9-]{0,112}"),
        ([*COMPILE, "--data-root", "/tmp/data"], "data root '/tmp/data' must be a gs://"),
        ([*COMPILE, "--serving-model-dir", "s3://m"], "serving model dir 's3://m' must be a gs://"),
        ([*COMPILE, "--schema-path", "schema/schema.pbtxt"], "schema path 'schema/schema.pbtxt' must be gs:// or an absolute path"),
        ([*COMPILE, "--service-account", "me@gmail.com"], "'me@gmail.com' must be a service account email"),
        ([*COMPILE, "--beam-arg", "machine_type=n2"], "beam arg 'machine_type=n2' must look like --name=value"),
        ([*COMPILE, "--beam-arg=--foo_bar=1"], "--beam-args: Beam has no option --foo_bar"),
        # Dataflow refuses a temp or staging location outside GCS, but only once a run reaches CsvExampleGen.
        ([*COMPILE, "--beam-arg=--temp_location=/tmp/beam"], "beam arg --temp_location '/tmp/beam' must be a gs://"),
        ([*COMPILE, "--beam-arg=--staging_location=s3://x/s"], "beam arg --staging_location 's3://x/s' must be a gs://"),
        ([*COMPILE, "--beam-arg=--max_num_workers=many"], "--beam-args: argument --max_num_workers: invalid int value"),
        ([*COMPILE, "--image", "bad image"], "image 'bad image' is not a container image reference"),
        ([*COMPILE, "--serving-image", "Upper/Case:1"], "serving image 'Upper/Case:1' is not a container image"),
        ([*COMPILE, "--dataflow-max-workers", "0"], "dataflow max workers must be within [1, 2147483647], got 0"),
        # compiled into every Beam step before: a count Dataflow refuses, an empty --machine_type=, a repository
        # name with a space in 21 image references, a bucket-less gs://
        ([*COMPILE, "--dataflow-max-workers", "9" * 23], "dataflow max workers must be within [1, 2147483647]"),
        ([*COMPILE, "--dataflow-machine-type", ""], "dataflow machine type '' is not a machine type"),
        ([*COMPILE, "--training-machine-type", "n1 standard"], "training machine type 'n1 standard' is not a machine"),
        ([*COMPILE, "--schema-path", "gs://"], "schema path 'gs://' must be a gs://bucket[/path] path"),
        ([*COMPILE, "--train-steps", "0"], "train steps must be within [1, 2147483647]"),
        ([*COMPILE, "--train-steps", "many"], "argument --train-steps: invalid int value"),
        ([*COMPILE, "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["deploy"], "invalid choice: 'deploy'"),
        (["submit", *OK, "--template", "missing.json"], "pipeline JSON missing.json does not exist"),
        (["schedule", "create", *OK], "cron is not set"),
        (["schedule", "create", *OK, "--cron", "0 3 * *"], "needs 5 fields"),
        (["schedule", "create", *OK, "--cron", "61 3 * * *"], "cron minute field: 61 is outside 0-59"),
        (["schedule", "create", *OK, "--cron", "0 3 * * funday"], "cron day of week field: 'funday' is not a number"),
        (["schedule", "create", *OK, "--cron", "*/ 3 * * *"], "cron minute field: step '' must be a positive number"),
        (["schedule", "create", *OK, "--cron", "0 3 1-10/ * *"], "cron day of month field: step '' must be a positive number"),
        (["schedule", "create", *OK, "--cron", "TZ=Mars/Olympus 0 3 * * *"], "cron time zone 'Mars/Olympus' is not an IANA name"),
        (["schedule", "create", *OK, "--cron", "0 3 * * *", "--max-concurrent-runs", "0"], "max concurrent runs must be within [1, 9223372036854775807], got 0"),
        (["schedule", "create", *OK, "--cron", "0 3 * * *", "--start-time", "tomorrow"], "start time 'tomorrow' is not an ISO 8601 time"),
        (["schedule", "create", *OK, "--cron", "0 3 * * *", "--start-time", "2030-01-02T00:00:00"], "needs a time zone offset"),
        (
            ["schedule", "create", *OK, "--cron", "0 3 * * *", "--start-time", "2030-01-02T00:00:00Z", "--end-time", "2030-01-01T00:00:00Z"],
            "end time 2030-01-01T00:00:00Z is not after start time",
        ),
        (["schedule", "pause", "--project", "my-proj-1"], "region is not set"),
    ],
)
def test_bad_config_is_one_line(capsys: pytest.CaptureFixture, argv: list[str], expected: str) -> None:
    assert expected in _error(capsys, argv)


def test_parameters_and_labels_checked_against_the_template(capsys: pytest.CaptureFixture, template: Path) -> None:
    base = ["submit", *OK, "--template", str(template)]
    assert "parameter 'train-steps' is not in" in _error(capsys, [*base, "--param", "train-steps=5"])
    assert "it takes: data-root" in _error(capsys, [*base, "--param", "train-steps=5"])
    assert "parameter data-root '/local' must be a gs://" in _error(capsys, [*base, "--param", "data-root=/local"])
    assert "(from flag --param): 'data-root' must be NAME=VALUE" in _error(capsys, [*base, "--param", "data-root"])
    assert "label Team=ML must be lowercase" in _error(capsys, [*base, "--label", "Team=ML"])


def test_not_a_compiled_pipeline(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert "is not a compiled Vertex pipeline" in _error(capsys, ["submit", *OK, "--template", str(bad)])


def test_yaml_file_errors(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    cfg = tmp_path / "vertex.yaml"
    cfg.write_text("project: my-proj-1\nregoin: us-central1\n")
    assert "unknown setting 'regoin'" in _error(capsys, ["compile", "--config", str(cfg)])
    cfg.write_text("project: [unclosed\n")
    assert "is not valid YAML at line" in _error(capsys, ["compile", "--config", str(cfg)])
    cfg.write_text("- a\n- b\n")
    assert "must hold a mapping" in _error(capsys, ["compile", "--config", str(cfg)])
    cfg.write_text("dataflow_max_workers: lots\n")
    assert "setting dataflow_max_workers (from file" in _error(capsys, ["compile", "--config", str(cfg)])
    assert "config file nope.yaml does not exist" in _error(capsys, ["compile", "--config", "nope.yaml"])
    # PyYAML keeps the last of two values in silence: the run went to the second project
    cfg.write_text("project: my-proj-1\nregion: us-central1\nproject: other-proj\n")
    assert _error(capsys, ["compile", "--config", str(cfg)]) == (
        f"error: config file {cfg} is not valid YAML at line 3: 'project' is set twice")
    cfg.write_bytes(b"project: my-proj-1\nmodel_name: caf\xe9\n")  # a Latin-1 editor: a traceback
    assert _error(capsys, ["compile", "--config", str(cfg)]) == (
        f"error: config file {cfg} is not UTF-8 text: byte 0xe9 at offset 34; save it as UTF-8")
    assert _error(capsys, ["compile", "--config", str(tmp_path)]) == f"error: config file {tmp_path} is a folder, not a file"
    assert _error(capsys, ["submit", *OK, "--template", str(tmp_path)]) == (
        f"error: pipeline JSON {tmp_path} is a folder, not a file")


def test_an_image_composed_from_a_bad_repository_name_is_refused(capsys: pytest.CaptureFixture,
                                                                   tmp_path: Path) -> None:
    cfg = tmp_path / "vertex.yaml"
    cfg.write_text("image_repository: Bad Repo\n")
    assert "image 'us-central1-docker.pkg.dev/my-proj-1/Bad Repo/taxi-pipeline:latest' (from image_repository) is " \
           "not a container image reference" in _error(capsys, [*COMPILE, "--config", str(cfg)])
    cfg.write_text("serving_image: ''\nvertex_serving: true\n")
    assert "serving image '' is not a container image reference" in _error(capsys, [*COMPILE, "--config", str(cfg)])


def test_compile_never_overwrites_a_file_that_is_not_a_compiled_pipeline(capsys: pytest.CaptureFixture,
                                                                         tmp_path: Path, template: Path) -> None:
    """--output schema/schema.pbtxt, or the --config file itself, was replaced by the pipeline JSON."""
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    for output, expected in (
            (tmp_path / "schema.pbtxt", "the compiled pipeline is JSON; give a path ending in .json"),
            (tmp_path / "p.yaml", "the compiled pipeline is JSON; give a path ending in .json"),  # KFP wrote YAML
            (notes, "exists and is not a compiled pipeline JSON: it is kept; give another path (or move it aside)"),
            (Path("/proc/none/p.json"), "/proc cannot be written")):
        assert expected in _error(capsys, [*COMPILE, "--output", str(output)])
    assert notes.read_text() == '{"mine": true}'
    from pipeline.vertex.compile import check_output

    assert check_output(str(template)) == template  # a recompile replaces its own JSON


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("dataflow_max_workers:", "setting dataflow_max_workers (from file {cfg}) has no value"),
        ("serving_min_replicas: ~", "setting serving_min_replicas (from file {cfg}) has no value"),
        ("enable_cache:", "setting enable_cache (from file {cfg}) has no value"),
        # A fraction is not a count: 2.7 workers or 1.9 steps were silently cut to 2 and 1.
        ("dataflow_max_workers: 2.7", "setting dataflow_max_workers (from file {cfg}): 2.7 is not a valid int"),
        ("train_steps: 1.9", "setting train_steps (from file {cfg}): 1.9 is not a valid int"),
    ],
)
def test_yaml_values_of_the_wrong_kind(capsys: pytest.CaptureFixture, tmp_path: Path, line: str,
                                       expected: str) -> None:
    cfg = tmp_path / "vertex.yaml"
    cfg.write_text(f"project: my-proj-1\nregion: us-central1\nbucket: gs://taxi-ml\nvertex_serving: true\n{line}\n")
    out = tmp_path / "p.json"
    out.write_text("compiled before")
    assert expected.format(cfg=cfg) in _error(capsys, ["compile", "--config", str(cfg), "--output", str(out)])
    assert out.read_text() == "compiled before"


def test_schedule_yaml_without_a_value(capsys: pytest.CaptureFixture, tmp_path: Path, template: Path) -> None:
    cfg = tmp_path / "vertex.yaml"
    cfg.write_text("cron: '0 3 * * *'\nmax_concurrent_runs:\n")
    argv = ["schedule", "create", *OK, "--config", str(cfg), "--template", str(template)]
    assert "setting max_concurrent_runs (from file" in _error(capsys, argv)


def test_env_errors(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERTEX_VERTEX_TRAINING", "maybe")
    assert "setting vertex_training (from env VERTEX_VERTEX_TRAINING): 'maybe' is not a valid bool" in _error(
        capsys, COMPILE
    )


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "vertex.yaml"
    cfg.write_text(
        "project: from-file-1\nregion: europe-west4\nbucket: gs://file-bucket\n"
        "labels: {team: ml}\nbeam_args: ['--max_num_workers=9']\nvertex_serving: true\n"
    )
    env = {"VERTEX_REGION": "us-east1", "GOOGLE_CLOUD_PROJECT": "from-gcloud-1", "VERTEX_CONFIG": str(cfg)}
    s = load_settings({"region": "us-central1", "pipeline_name": None}, env=env)
    assert (s.project, s.region, s.bucket) == ("from-gcloud-1", "us-central1", "gs://file-bucket")
    assert s.labels == (("team", "ml"),) and s.beam_args == ("--max_num_workers=9",) and s.vertex_serving
    assert s.path("serving_model_dir") == "gs://file-bucket/serving_model/taxi"
    assert s.pipeline_image == "us-central1-docker.pkg.dev/from-gcloud-1/tfx/taxi-pipeline:latest"


@pytest.mark.parametrize(
    "cron",
    ["0 3 * * *", "TZ=America/Chicago 0 3 * * *", "CRON_TZ=UTC */15 0-6 1,15 jan-jun mon-fri", "0 0 * * 7"],
)
def test_valid_crons(cron: str) -> None:
    check_cron(cron)


def test_backwards_range() -> None:
    with pytest.raises(ConfigError, match="runs backwards"):
        check_cron("0 9-5 * * *")


def test_help_and_errors_do_not_import_the_sdks() -> None:
    """--help and config errors must stay instant: no aiplatform, kfp, tfx or TensorFlow."""
    probe = (
        "import sys, vertex_runner\n"
        "for argv in (['--help'], ['compile', '--help'], ['compile'], ['schedule', 'create', '--project', 'my-proj-1',"
        " '--region', 'us-central1', '--cron', 'bad']):\n"
        "    try:\n"
        "        code = vertex_runner.main(argv)\n"
        "    except SystemExit as exit:\n"
        "        code = exit.code\n"
        "    assert code in (0, 2), (argv, code)\n"
        "heavy = [m for m in ('google.cloud.aiplatform', 'kfp', 'tfx', 'tensorflow', 'apache_beam') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stderr
    assert "Traceback" not in done.stderr
