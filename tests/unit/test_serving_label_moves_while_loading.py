"""A version that takes long to load (a large model) does not hold up the server's config re-reads."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from monitoring.canary import wait_for_label
from serving import registry
from serving.config import ModelSpec, VersionPolicy, render_model_config
from serving.server import ServerOptions, ServingServer
from serving.testing import push_toy

ROW = {"instances": [{"x": 1.0, "s": ""}]}


def test_a_rollback_written_while_a_version_loads_takes_effect_at_once(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The poller loaded versions itself, so a label change (a rollback in an incident) waited for the whole
    load of a canary's version; TF Serving's manager loads apart from its config poll."""
    base = tmp_path / "toy"
    for v in (1, 2, 3):
        push_toy(base, v, scale=float(v))
    release = threading.Event()
    warm_up = registry.Servable.warm_up

    def slow_for_3(self: registry.Servable) -> None:
        if self.version == 3:
            release.wait(60)
        warm_up(self)

    monkeypatch.setattr(registry.Servable, "warm_up", slow_for_3)
    config = tmp_path / "models.config"

    def write(versions: tuple[int, ...], labels: dict[str, int]) -> None:
        spec = ModelSpec("toy", str(base), VersionPolicy("specific", versions=versions), labels)
        config.write_text(render_model_config([spec]))

    write((1, 2), {"stable": 2})
    options = ServerOptions(models=[], rest_port=0, grpc_port=None, file_system_poll_wait_seconds=0.2,
                            model_config_file=config, model_config_file_poll_wait_seconds=0.2,
                            allow_version_labels_for_unavailable_models=True)
    try:
        with ServingServer(options) as server:
            assert wait_for_label(server.url, "toy", "stable", 2, seconds=15)
            write((1, 2, 3), {"stable": 2})  # a canary's version pinned: its load starts and hangs
            time.sleep(1)
            started = time.monotonic()
            write((1, 2, 3), {"stable": 1})  # the rollback
            assert wait_for_label(server.url, "toy", "stable", 1, seconds=10)
            assert time.monotonic() - started < 5
            with httpx.Client(base_url=server.url, timeout=10) as http:
                assert http.get("/v1/models/toy/versions/3").json()["model_version_status"][0]["state"] == "LOADING"
            release.set()
            assert wait_for_label(server.url, "toy", "stable", 1, seconds=10)
    finally:
        release.set()
