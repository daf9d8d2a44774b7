"""The production TF Serving files: generated, parseable, consistent with the Pusher layout."""
from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving import deployment
from serving.server import parse_batching_parameters
from serving.testing import push_toy

DEPLOY = deployment.DEPLOY_DIR


def test_committed_files_match_the_generator() -> None:
    assert deployment.check(DEPLOY) == []


def test_compose_runs_the_tf_serving_image_matching_tensorflow() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    svc = compose["services"]["tf-serving"]
    image, tag = svc["image"].split(":")
    assert image == "tensorflow/serving"
    assert tag.split(".")[:2] == tf.__version__.split(".")[:2]
    assert {p.rsplit(":", 2)[-1] for p in svc["ports"]} == {"8500", "8501"}
    mounts = {v.rsplit(":", 2)[1]: v.rsplit(":", 2)[0] for v in svc["volumes"]}  # target -> source
    assert mounts[deployment.CONTAINER_MODELS].startswith("${SERVING_MODEL_DIR")
    flags = dict(f.lstrip("-").split("=", 1) for f in svc["command"])
    for flag in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        assert flags[flag] in mounts, f"{flag} points at an unmounted file"
        assert (DEPLOY / Path(mounts[flags[flag]]).name).is_file()
    assert flags["enable_batching"] == "true" and int(flags["model_config_file_poll_wait_seconds"]) > 0
    # else a restart with the labels that promote/rollback write fails (tensorflow/serving#1230, #1608)
    assert flags["allow_version_labels_for_unavailable_models"] == "true"
    assert 'path: "/monitoring/prometheus/metrics"' in (DEPLOY / "monitoring.config").read_text()
    params = parse_batching_parameters((DEPLOY / "batching_parameters.txt").read_text())
    assert params.max_batch_size >= 32 and params.num_batch_threads >= 1


def test_models_config_labels_pushed_versions(tmp_path: Path) -> None:
    push_dir = tmp_path / "serving_model"
    for version in (1700000000, 1700000500):
        push_toy(push_dir / "taxi", version)
    (push_dir / "taxi" / "1700000900").mkdir()  # half-written push: not a version yet
    out = tmp_path / "models.config"
    assert deployment.main(["models-config", "--push-dir", str(push_dir), "--stable", "1700000000",
                            "--canary", "1700000500", "--out", str(out)]) == 0
    proto = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(out.read_text(), proto)
    (cfg,) = proto.model_config_list.config
    assert cfg.name == "taxi" and cfg.base_path == "/models/taxi" and cfg.model_platform == "tensorflow"
    assert dict(cfg.version_labels) == {"stable": 1700000000, "canary": 1700000500}
    assert sorted(cfg.model_version_policy.specific.versions) == [1700000000, 1700000500]
    for version in cfg.version_labels.values():  # labels point at complete Pusher dirs
        assert (push_dir / cfg.name / str(version) / "saved_model.pb").is_file()
    deploy = tmp_path / "deploy"
    assert deployment.main(["write", "--dir", str(deploy)]) == 0
    out.replace(deploy / "models.config")
    assert deployment.check(deploy, push_dir) == []
    assert deployment.check(deploy, tmp_path / "no-such-output") == [
        f"--push-dir {tmp_path / 'no-such-output'} is not a folder (give <pipeline output>/serving_model)"]
    assert deployment.main(["models-config", "--push-dir", str(push_dir), "--stable", "1700000900",
                            "--out", str(out)]) == 2
    for bad_out in (tmp_path / "nodir" / "models.config", tmp_path):  # one error line, no traceback
        assert deployment.main(["models-config", "--push-dir", str(push_dir), "--stable", "1700000000",
                                "--out", str(bad_out)]) == 2


def test_committed_models_config_parses_with_tf_serving_proto() -> None:
    proto = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((DEPLOY / "models.config").read_text(), proto)
    (cfg,) = proto.model_config_list.config
    assert cfg.name == deployment.MODEL_NAME and cfg.base_path == f"/models/{cfg.name}"


def test_model_base_path_overrides_the_production_configs_model(tmp_path: Path) -> None:
    # README: python -m serving --model-config-file serving/deploy/models.config --model-base-path <push dir>
    from serving.__main__ import build_parser, options_from_args

    args = build_parser().parse_args(["--model-config-file", str(DEPLOY / "models.config"),
                                      "--model-base-path", str(tmp_path)])
    assert options_from_args(args).base_path_override == {deployment.MODEL_NAME: str(tmp_path.resolve())}
    two = tmp_path / "two.config"
    two.write_text("model_config_list { config { name: 'a' base_path: '/a' model_platform: 'tensorflow' } "
                   "config { name: 'b' base_path: '/b' model_platform: 'tensorflow' } }")
    args = build_parser().parse_args(["--model-config-file", str(two), "--model-base-path", str(tmp_path)])
    with pytest.raises(ValueError, match="serves 2 models; say whose base path"):
        options_from_args(args)
