"""Inputs the Vertex checks let through before, each of which crashed in the SDK or did the wrong thing:
every one is now one 'error: ...' line and exit 2 before any network call, or is accepted as it should be."""
from __future__ import annotations

from pathlib import Path

import pytest

import vertex_runner
from pipeline.configs import ConfigError
from pipeline.vertex import checks
from pipeline.vertex.cron import check_cron
from pipeline.vertex.settings import load_settings
from tests.unit.vertex_env import COMPILE, OK, clean_env  # noqa: F401 - clean_env: an autouse fixture


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "p.json"
    path.write_text('{"pipelineSpec": {"pipelineInfo": {"name": "taxi-pipeline"}, '
                    '"root": {"inputDefinitions": {"parameters": {"data-root": {}}}}}}')
    return path


def _error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    code = vertex_runner.main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert captured.out == ""
    return lines[0]


def _settings(**flags: object) -> object:
    return load_settings({"project": "my-proj-1", "region": "us-central1", "bucket": "gs://taxi-ml", **flags}, env={})


@pytest.mark.parametrize("name", ["1taxi", "-taxi", "t" * 114])
def test_pipeline_names_vertex_cannot_run_are_refused(capsys: pytest.CaptureFixture, template: Path,
                                                      name: str) -> None:
    """The SDK's job id '<name>-YYYYmmddHHMMSS' must match [a-z][-a-z0-9]{0,127}: a ValueError traceback before."""
    assert "must match [a-z][a-z0-9-]{0,112}" in _error(capsys, [*COMPILE, f"--pipeline-name={name}"])
    assert "must match [a-z][a-z0-9-]{0,112}" in _error(
        capsys, ["submit", *OK, "--template", str(template), f"--pipeline-name={name}"])
    assert "must match [a-z][a-z0-9-]{0,112}" in _error(
        capsys, ["schedule", "create", *OK, "--cron", "0 3 * * *", "--template", str(template),
                 f"--pipeline-name={name}"])


def test_the_pipeline_name_rule_is_the_sdks_job_id_rule() -> None:
    from google.cloud.aiplatform.constants.pipeline import _VALID_NAME_PATTERN

    timestamp = "-20260101000000"  # what PipelineJob appends
    for name in ("t" * 113, "a", "taxi-pipeline", "a1-"):
        checks.check_pipeline_name(name)
        assert _VALID_NAME_PATTERN.match(name + timestamp)
    for name in ("t" * 114, "1taxi"):
        with pytest.raises(ConfigError):
            checks.check_pipeline_name(name)
        assert not _VALID_NAME_PATTERN.match(name + timestamp)


def test_a_schedule_name_over_128_characters_is_refused(capsys: pytest.CaptureFixture, template: Path) -> None:
    argv = ["schedule", "create", *OK, "--cron", "0 3 * * *", "--template", str(template)]
    assert "has 129 characters; Vertex takes at most 128" in _error(capsys, [*argv, "--schedule-name", "s" * 129])
    checks.check_schedule_create(load_settings(
        {"project": "my-proj-1", "region": "us-central1", "cron": "0 3 * * *", "template": str(template),
         "schedule_name": "s" * 128}, env={}))


@pytest.mark.parametrize("flag", ["--max-run-count", "--max-concurrent-runs"])
def test_counts_beyond_int64_are_refused(capsys: pytest.CaptureFixture, template: Path, flag: str) -> None:
    argv = ["schedule", "create", *OK, "--cron", "0 3 * * *", "--template", str(template)]
    assert f"must be within [1, {2**63 - 1}], got 100000000000000000000000" in _error(
        capsys, [*argv, flag, "100000000000000000000000"])
    assert "must be within [1," in _error(capsys, [*argv, flag, "0"])


@pytest.mark.parametrize("cron", ["0 \u00b3 * * *", "0 \u0663 * * *", "*/\u0663 3 * * *", "0 3 \uff11 * *"])
def test_cron_numbers_are_ascii_digits(capsys: pytest.CaptureFixture, template: Path, cron: str) -> None:
    """'³' was a ValueError traceback from int(); the Arabic-Indic '٣' was read as 3 and sent to Vertex as is."""
    with pytest.raises(ConfigError, match="cron"):
        check_cron(cron)
    assert "cron" in _error(capsys, ["schedule", "create", *OK, "--cron", cron, "--template", str(template)])


def test_a_yaml_setting_spelt_both_ways_is_refused(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """pipeline-name and pipeline_name are one setting: the last one was taken in silence."""
    cfg = tmp_path / "vertex.yaml"
    cfg.write_text("pipeline-name: taxi-a\nproject: my-proj-1\npipeline_name: taxi-b\n")
    assert _error(capsys, ["compile", "--config", str(cfg)]) == (
        f"error: config file {cfg}: 'pipeline-name' and 'pipeline_name' are the same setting (pipeline_name); keep one")
    cfg.write_text("pipeline-name: taxi-a\n")
    assert load_settings({}, env={}, config_file=str(cfg)).pipeline_name == "taxi-a"


@pytest.mark.parametrize("account", ["123456789012-compute@developer.gserviceaccount.com",
                                     "my-proj-1@appspot.gserviceaccount.com",
                                     "pipelines@my-proj-1.iam.gserviceaccount.com"])
def test_googles_default_service_accounts_are_accepted(account: str) -> None:
    checks.check_compile(_settings(service_account=account))
    checks.check_compile(_settings(dataflow_service_account=account))


@pytest.mark.parametrize("account", ["me@gmail.com", "compute@developer.gserviceaccount.com",
                                     "x-compute@developer.gserviceaccount.com", "a@b.iam.gserviceaccount.com\n"])
def test_other_accounts_are_still_refused(account: str) -> None:
    for flag in ("service_account", "dataflow_service_account"):
        with pytest.raises(ConfigError, match="must be a service account email"):
            checks.check_compile(_settings(**{flag: account}))


@pytest.mark.parametrize(("beam_arg", "expected"), [
    ("--machine_type=", "beam arg --machine_type '' is not a machine type"),
    ("--worker_machine_type=n1 standard", "beam arg --machine_type 'n1 standard' is not a machine type"),  # alias
    ("--region=US", "beam arg --region 'US' is not a GCP region"),
    ("--project=X", "beam arg --project 'X' is not a GCP project id"),
    ("--sdk_container_image=bad::img", "beam arg --sdk_container_image 'bad::img' is not a container image"),
    ("--runner=FlinkRunner", "beam arg --runner=FlinkRunner: on Vertex the Beam components run on Dataflow"),
    ("--service_account_email=bad", "beam arg --service_account_email 'bad' is not a service account email"),
    ("--max_num_workers=0", "beam arg --max_num_workers must be within [1, 2147483647], got 0"),
])
def test_beam_args_get_the_checks_of_the_settings_they_replace(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                               beam_arg: str, expected: str) -> None:
    """Each compiled with exit 0 into every Beam step, to fail on Dataflow."""
    out = tmp_path / "p.json"
    assert expected in _error(capsys, [*COMPILE, f"--beam-arg={beam_arg}", "--output", str(out)])
    assert not out.exists()


def test_a_lowercase_dataflow_runner_is_dataflow(capsys: pytest.CaptureFixture) -> None:
    """Beam reads --runner=dataflow as DataflowRunner: its temp location must be on GCS all the same."""
    assert "beam arg --temp_location '/tmp/beam' must be a gs://" in _error(
        capsys, [*COMPILE, "--beam-arg=--runner=dataflow", "--beam-arg=--temp_location=/tmp/beam"])
    checks.check_compile(_settings(beam_args=("--runner=dataflow", "--temp_location=gs://taxi-ml/t2")))
    # in the component's own container, a local temp location is fine
    checks.check_compile(_settings(beam_args=("--runner=DirectRunner", "--temp_location=/tmp/beam")))
    checks.check_compile(_settings(beam_args=("--machine_type=n2-highmem-8", "--region=europe-west4",
                                              "--service_account_email=123-compute@developer.gserviceaccount.com")))


def test_a_schema_path_names_a_file_in_the_image_never_one_on_this_machine(capsys: pytest.CaptureFixture,
                                                                           tmp_path: Path) -> None:
    """A local absolute path was read here and its hash pinned, though the run reads that path in the image; an
    image path under /pipeline/ other than the default was not read here at all, so it ran unpinned."""
    local = tmp_path / "schema.pbtxt"
    local.write_text("feature {}\n")
    assert f"schema path {local} is a path inside the pipeline image, but names a file on this machine" in _error(
        capsys, [*COMPILE, "--schema-path", str(local)])
    assert _error(capsys, [*COMPILE, "--schema-path", "/pipeline/schema/v2.pbtxt"]) == (
        "error: schema path /pipeline/schema/v2.pbtxt: the pipeline image holds this checkout at /pipeline/, "
        "which has no file schema/v2.pbtxt")
    assert "must not hold '..' segments" in _error(
        capsys, [*COMPILE, "--schema-path", "/pipeline/../pipeline/schema/schema.pbtxt"])
    for fine in ("/pipeline/schema/schema.pbtxt", "/opt/schemas/taxi.pbtxt", "gs://taxi-ml/schema.pbtxt"):
        checks.check_compile(_settings(schema_path=fine))


def test_an_image_path_under_pipeline_is_read_from_this_checkout(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """What compile reads and pins for /pipeline/X is this checkout's X, which the image is built from."""
    from pipeline import pipeline as pp

    (tmp_path / "schema").mkdir()
    (tmp_path / "schema" / "v2.pbtxt").write_text("feature {}\n")
    monkeypatch.setattr(pp, "PROJECT_ROOT", tmp_path)
    assert pp._readable_schema("/pipeline/schema/v2.pbtxt") == str(tmp_path / "schema" / "v2.pbtxt")
    assert pp._readable_schema("/pipeline/schema/none.pbtxt") is None
    assert pp._readable_schema("gs://taxi-ml/schema.pbtxt") is None


def test_usage_errors_under_taxi_vertex_name_its_help(capsys: pytest.CaptureFixture) -> None:
    """They pointed to 'vertex_runner.py --help', a command the user of taxi did not type."""
    from cli.main import main

    assert main(["vertex", "schedule", "pause", *OK, "--", "-weird"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: unrecognized arguments: -weird (see 'taxi vertex schedule pause --help')"]
    assert vertex_runner.main(["schedule", "pause", *OK, "-weird"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: unrecognized arguments: -weird (see 'vertex_runner.py schedule pause --help')"]
