"""Where the contract suite points: any TF Serving REST URL, or a local server.

    pytest tests/contract --serving-url=http://host:8501 [--serving-model-dir DIR]

Without --serving-url, the local server (`python -m serving`) is started as a
subprocess on the model the session's pipeline run pushed, with a models.config
labelling its newest version "stable".
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("serving contract")
    group.addoption("--serving-url", default=os.environ.get("SERVING_URL"),
                    help="base URL of a TF Serving REST API (default: start the local server)")
    group.addoption("--serving-model", default="taxi", help="model name to test")
    group.addoption("--serving-model-dir", default=None,
                    help="SavedModel dir of the served version, to compare answers in process")
    group.addoption("--serving-label", default=None, help="a version label the server has (e.g. stable)")


@dataclass(frozen=True)
class Target:
    """The server under test and what the suite knows about it."""

    url: str
    model: str
    model_dir: Path | None  # the SavedModel the default version serves, if known
    label: str | None


def _opt(config: pytest.Config, name: str) -> str | None:
    return config.getoption(name, default=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_available(url: str, model: str, proc: subprocess.Popen | None, timeout: float = 180.0,
                    log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-2000:] if log else ""
            raise RuntimeError(f"local server exited with {proc.returncode}: {tail}")
        try:
            states = httpx.get(f"{url}/v1/models/{model}", timeout=2).json().get("model_version_status", [])
            if any(s["state"] == "AVAILABLE" for s in states):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} has no AVAILABLE version of {model} after {timeout:.0f}s")


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    config = request.config
    model = _opt(config, "--serving-model") or "taxi"
    url = _opt(config, "--serving-url")
    if url:
        url = url.rstrip("/")
        _wait_available(url, model, None, timeout=30)
        model_dir = _opt(config, "--serving-model-dir")
        yield Target(url, model, Path(model_dir) if model_dir else None, _opt(config, "--serving-label"))
        return
    base: Path = request.getfixturevalue("pushed_model_base")
    from serving.config import ModelSpec, VersionPolicy, render_model_config

    versions = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit() and (p / "saved_model.pb").exists())
    cfg = tmp_path_factory.mktemp("contract") / "models.config"
    cfg.write_text(render_model_config([ModelSpec(model, str(base), VersionPolicy(), {"stable": versions[-1]})]))
    port = _free_port()
    log = tmp_path_factory.getbasetemp() / "contract-server.log"
    with open(log, "w") as log_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "--model-config-file", str(cfg), "--host", "127.0.0.1",
             "--allow-version-labels-for-unavailable-models", "--rest-api-port", str(port), "--grpc-port", "-1", "--file-system-poll-wait-seconds", "0",
             "--log-level", "WARNING"],
            cwd=REPO, stdout=log_fh, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_available(url, model, proc, log=log)
        yield Target(url, model, base / str(versions[-1]), "stable")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def http(target: Target):
    with httpx.Client(base_url=target.url, timeout=30) as client:
        yield client
