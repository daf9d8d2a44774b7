"""Audit (session 25): label moves that crash, or leave a running server refusing its config for good.

Each test fails on the audited code (HEAD of audit-session25 at the time of writing).
"""
from __future__ import annotations

import time
import types
from pathlib import Path

import httpx
import pytest

import local_runner
from monitoring import canary as canary_checks
from monitoring import labels
from monitoring.canary import server_loads, wait_for_label
from monitoring.labels import Deployment
from serving.server import ServerOptions, ServingServer
from serving.testing import push_toy

ROW = {"instances": [{"x": 1.0, "s": "a"}]}
MALFORMED = "http://127.0.0.1:x"  # starts with http://, so --serving-url takes it; httpx.InvalidURL is no HTTPError


def _deployment(tmp_path: Path, versions: int = 4) -> Deployment:
    base = tmp_path / "serving_model" / "toy"
    for v in range(1, versions + 1):
        push_toy(base, v, scale=float(v))
    d = Deployment.for_output(tmp_path, "toy")
    labels.label_after_push(d, 1)
    labels.label_after_push(d, 2)  # stable 1, canary 2
    return d


@pytest.fixture()
def deployed(tmp_path: Path):
    d = _deployment(tmp_path)
    options = ServerOptions(models=[], rest_port=0, grpc_port=None, file_system_poll_wait_seconds=0.2,
                            model_config_file=d.config_path, model_config_file_poll_wait_seconds=0.2,
                            allow_version_labels_for_unavailable_models=True)
    with ServingServer(options) as server:
        assert wait_for_label(server.url, "toy", "canary", 2, seconds=15)
        yield d, server


def _canary(url: str) -> float | int:
    answer = httpx.post(f"{url}/v1/models/toy/labels/canary:predict", json=ROW, timeout=10)
    return answer.json()["predictions"][0]["y"] if answer.status_code == 200 else answer.status_code


def test_runner_with_a_malformed_serving_url_does_not_crash_after_the_push(tmp_path: Path) -> None:
    """local_runner.py --serving-url http://127.0.0.1:x: serving_from_args takes it (it only checks the
    scheme), and after a push that replaces a canary _label_canary lets httpx.InvalidURL escape (it catches
    LabelError and OSError only), so a successful pipeline run ends in a traceback, after the pin was written."""
    d = _deployment(tmp_path)
    args = local_runner.build_parser().parse_args(["--serving-url", MALFORMED, "--label-wait", "1"])
    try:
        serving = local_runner.serving_from_args(args)
    except local_runner.ConfigError:
        return  # refused up front, as --label-wait nan is: fine
    config = types.SimpleNamespace(pipeline_root=str(tmp_path / "pipeline_root"), model_name="toy")
    local_runner._label_canary(config, 3, serving)  # the push stands; at worst a warning
    assert d.labels() == {"stable": 1, "canary": 2}


def test_cli_canary_with_a_malformed_url_is_one_error_line_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from cli.main import main

    d = _deployment(tmp_path)
    monkeypatch.setattr(canary_checks, "blessed_check", lambda output: (lambda version: None))  # no MLMD here
    config, history = d.config_path.read_text(), d.history_path.read_text()
    code = main(["canary", "--output", str(tmp_path), "--model", "toy", "--version", "3", "--url", MALFORMED])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("error: canary:") and err.count("\n") == 1, err
    assert d.config_path.read_text() == config and d.history_path.read_text() == history


def test_after_a_move_the_server_refused_the_next_push_still_gets_its_version_loaded(deployed) -> None:
    """The runner treats a --serving-url nobody answers as 'no server' and moves canary 2 -> 3 in one write;
    the server that does read models.config refuses it at every poll (3 is not loaded). From then on the
    file's labels are not the server's: the next push pins 4 *with canary 3 kept*, which is again a move of
    canary the server refuses, so 4 never loads either, and `taxi canary`/`promote` cannot get out of it."""
    d, server = deployed
    config = types.SimpleNamespace(pipeline_root=str(d.push_dir.parent.parent / "pipeline_root"), model_name="toy")
    local_runner._label_canary(config, 3, local_runner.Serving("http://127.0.0.1:1", 5))  # nothing listens there
    time.sleep(1.5)
    assert _canary(server.url) == 2.0  # refused, as TF Serving would
    try:
        labels.label_after_push(d, 4, loaded=server_loads(server.url, "toy", 10))
    except labels.LabelError:
        pass  # said or not, what matters is what the server does with the pin
    status = httpx.get(f"{server.url}/v1/models/toy/versions/4", timeout=10)
    assert status.status_code == 200 and status.json()["model_version_status"][0]["state"] == "AVAILABLE", (
        "the pin config (canary kept at 3) was refused too: the server stays on its old config for good")
