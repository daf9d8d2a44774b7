"""Versions load on their own threads, one at a time, as in TF Serving's manager: a long load (a large model)
holds up neither config re-reads nor requests, and no superseded version is loaded or kept."""
from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import httpx
import pytest

from monitoring.canary import wait_for_label
from serving import registry
from serving.config import ModelSpec, VersionPolicy, render_model_config
from serving.server import ServerOptions, ServingServer
from serving.testing import eventually, push_toy

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


def _gated(monkeypatch: pytest.MonkeyPatch, slow: set[int]) -> tuple[threading.Event, list[int]]:
    """Versions in `slow` load once the event is set; returns it and the versions loads were started for."""
    release, started = threading.Event(), []
    warm_up = registry.Servable.warm_up

    def gated(self: registry.Servable) -> None:
        started.append(self.version)
        if self.version in slow:
            release.wait(60)
        warm_up(self)

    monkeypatch.setattr(registry.Servable, "warm_up", gated)
    return release, started


@contextlib.contextmanager
def _loading_version_2(base: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN202
    """A registry polling `base` (version 1 loaded), with version 2 pushed and its load held until released."""
    push_toy(base, 1)
    release, started = _gated(monkeypatch, {2})
    models = registry.Registry([ModelSpec("toy", str(base))], poll_seconds=0.1)
    models.start()
    try:
        push_toy(base, 2, scale=2.0)
        assert eventually(lambda: started[-1:] == [2])
        yield models, release, started
    finally:
        release.set()
        models.stop()


def test_a_burst_of_pushes_loads_only_the_newest_and_keeps_one_version_meanwhile(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Each push started its own load: versions 1-6 were loaded at once (memory, with real models) and five of
    the loads were of versions already superseded."""
    base = tmp_path / "toy"
    with _loading_version_2(base, monkeypatch) as (models, release, started):
        for v in (3, 4, 5):
            push_toy(base, v, scale=float(v))
        time.sleep(0.5)
        release.set()
        assert eventually(lambda: models.model("toy").available_versions() == [5])
        assert started == [1, 2, 5]


def test_a_model_back_at_another_base_while_its_old_version_loads_serves_the_new_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    second = tmp_path / "b"
    with _loading_version_2(tmp_path / "a", monkeypatch) as (models, release, _started):
        models.reload([])  # the model leaves the config while a's version 2 loads
        push_toy(second, 2, scale=20.0)
        models.reload([ModelSpec("toy", str(second))])
        release.set()
        assert eventually(lambda: models.model("toy").available_versions() == [2])
        time.sleep(0.5)
        assert models.model("toy").resolve(2).path == second / "2"
