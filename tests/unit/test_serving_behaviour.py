"""Version switching under load, corrupt and half-written versions, config reload."""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from serving.batching import BatchingParameters
from serving.config import ConfigError, ModelSpec, VersionPolicy, render_model_config
from serving.server import ServerOptions, ServingServer
from serving.testing import eventually, push, push_toy

ROW = {"instances": [{"x": 1.0, "s": ""}]}


def _server(base: Path, **kw: object) -> ServingServer:
    opts = {"models": [ModelSpec("toy", str(base))], "rest_port": 0, "grpc_port": None,
            "file_system_poll_wait_seconds": 0.2, **kw}
    return ServingServer(ServerOptions(**opts)).start()


def _states(http: httpx.Client, model: str = "toy") -> dict[str, tuple[str, str]]:
    return {s["version"]: (s["state"], s["status"]["error_code"])
            for s in http.get(f"/v1/models/{model}").json()["model_version_status"]}


@pytest.mark.parametrize("batching", [None, BatchingParameters(max_batch_size=16)])
def test_new_version_switches_without_failed_requests(tmp_path: Path, batching: BatchingParameters | None) -> None:
    push_toy(tmp_path, 100, scale=1.0)
    server = _server(tmp_path, batching=batching)
    results: list[object] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            deadline = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < deadline and len(results) < 20_000:
                resp = http.post("/v1/models/toy:predict", json=ROW)
                results.append(resp.json()["predictions"][0]["y"] if resp.status_code == 200 else resp.status_code)

    threads = [threading.Thread(target=client) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        assert eventually(lambda: len(results) > 20)
        pushed_at = time.monotonic()
        push_toy(tmp_path, 200, scale=2.0)
        assert eventually(lambda: 2.0 in results[-5:], seconds=10), "new version not served"
        switch_s = time.monotonic() - pushed_at
        count = len(results)
        assert eventually(lambda: len(results) > count + 20)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
        http = httpx.Client(base_url=server.url)
        states = _states(http)
        server.stop()
    failures = [r for r in results if r not in (1.0, 2.0)]
    assert not failures, f"{len(failures)} failed requests, e.g. {failures[:3]}"
    assert switch_s < 5.0
    first_new = results.index(2.0)
    assert 1.0 not in results[first_new + 30:], "old version still answering after the switch"
    assert states == {"200": ("AVAILABLE", "OK"), "100": ("END", "OK")}


def test_corrupt_and_half_written_versions_are_never_served(tmp_path: Path) -> None:
    push_toy(tmp_path, 1, scale=1.0)
    server = _server(tmp_path)
    try:
        http = httpx.Client(base_url=server.url, timeout=10)
        # half-written: the Pusher has not copied saved_model.pb yet
        push_toy(tmp_path, 3, scale=3.0)
        (tmp_path / "3" / "saved_model.pb").unlink()
        # corrupt: saved_model.pb present but garbage
        corrupt = push_toy(tmp_path, 2, scale=2.0)
        (corrupt / "saved_model.pb").write_bytes(b"not a protobuf at all")
        assert eventually(lambda: _states(http).get("2", ("", ""))[1] != "OK" and "2" in _states(http))
        time.sleep(0.5)  # a few more polls: must not flap
        states = _states(http)
        assert states["2"][0] == "END" and states["2"][1] == "UNKNOWN"
        assert "3" not in states and states["1"] == ("AVAILABLE", "OK")
        err = http.get("/v1/models/toy/versions/2").json()["model_version_status"][0]["status"]["error_message"]
        assert "failed to load" in err
        assert http.post("/v1/models/toy:predict", json=ROW).json()["predictions"][0]["y"] == 1.0
        assert http.post("/v1/models/toy/versions/2:predict", json=ROW).status_code == 404
        # the Pusher finishes version 3: it becomes the latest and replaces 1
        shutil.rmtree(tmp_path / "3")
        push_toy(tmp_path, 3, scale=3.0)
        assert eventually(lambda: http.post("/v1/models/toy:predict", json=ROW).json()["predictions"][0]["y"] == 3.0)
        assert eventually(lambda: _states(http)["1"][0] == "END")
        # repairing the corrupt dir clears its error (latest-1 policy keeps it unloaded)
        shutil.rmtree(corrupt)
        push_toy(tmp_path, 2, scale=2.0)
        assert eventually(lambda: "2" not in _states(http))
    finally:
        server.stop()


def test_config_reloads_follow_tf_servings_label_rules(tmp_path: Path) -> None:
    """A label moves only to a loaded version, so a label move takes two configs, as in TF Serving."""
    base = tmp_path / "toy"
    base.mkdir()
    for v in (1, 2, 3):
        push_toy(base, v, scale=float(v))
    config = tmp_path / "models.config"

    def write(versions: tuple[int, ...], labels: dict[str, int], extra: list[ModelSpec] = ()) -> None:
        tmp = tmp_path / "models.config.tmp"
        tmp.write_text(render_model_config(
            [ModelSpec("toy", str(base), VersionPolicy("specific", versions=versions), labels), *extra]))
        tmp.replace(config)

    def stable() -> float | None:
        answer = http.post("/v1/models/toy/labels/stable:predict", json=ROW)
        return answer.json()["predictions"][0]["y"] if answer.status_code == 200 else None

    write((1,), {"stable": 1})
    with pytest.raises(ConfigError, match="Request to assign label to version 1 of model toy, which is not "
                                          "currently available for inference .*--allow-version-labels"):
        _server(tmp_path, models=[], model_config_file=config)  # at start nothing is loaded, as in TF Serving
    server = _server(tmp_path, models=[], model_config_file=config, model_config_file_poll_wait_seconds=0.2,
                     allow_version_labels_for_unavailable_models=True)
    try:
        http = httpx.Client(base_url=server.url, timeout=10)
        assert _states(http) == {"1": ("AVAILABLE", "OK")} and stable() == 1.0
        assert http.post("/v1/models/toy/labels/canary:predict", json=ROW).status_code == 400  # unknown label
        write((1, 2), {"stable": 2})  # in one step: 2 is not loaded yet, so the whole config is refused
        time.sleep(1.0)
        assert _states(http) == {"1": ("AVAILABLE", "OK")} and stable() == 1.0
        write((1, 2, 3), {"stable": 1, "canary": 3})  # step 1: load 2 and 3; a new label may name a loading one
        assert eventually(lambda: _states(http).get("2") == ("AVAILABLE", "OK"))
        assert eventually(lambda: http.post("/v1/models/toy/labels/canary:predict", json=ROW).status_code == 200)
        write((2, 3), {"stable": 2, "canary": 3})  # step 2: 2 is loaded, the label may move
        assert eventually(lambda: stable() == 2.0)
        assert eventually(lambda: _states(http).get("1", ("", ""))[0] == "END")
        config.write_text("this is { not valid")  # a broken edit keeps the previous config
        time.sleep(0.6)
        assert stable() == 2.0
        write((2,), {"stable": 2}, [ModelSpec("other", str(base))])
        assert eventually(lambda: http.post("/v1/models/other:predict", json=ROW).status_code == 200)
        write((2,), {"stable": 2})  # a model left out of the config is unloaded, as TF Serving tears it down
        assert eventually(lambda: http.post("/v1/models/other:predict", json=ROW).status_code == 404)
        assert _states(http, "other") == {"3": ("END", "OK")}
    finally:
        server.stop()


def test_version_pushed_with_pusher_copy_order_is_loaded(tmp_path: Path) -> None:
    """push() copies variables first: a poll in between must see nothing."""
    src = push_toy(tmp_path / "staging", 1, scale=5.0)
    base = tmp_path / "toy"
    base.mkdir()
    push_toy(base, 1)
    server = _server(base)
    try:
        http = httpx.Client(base_url=server.url, timeout=10)
        push(src, base, 9, write_pb=False)
        time.sleep(0.5)
        assert "9" not in _states(http)
        shutil.copyfile(src / "saved_model.pb", base / "9" / "saved_model.pb")
        assert eventually(lambda: http.post("/v1/models/toy:predict", json=ROW).json()["predictions"][0]["y"] == 5.0)
    finally:
        server.stop()


@pytest.mark.e2e
def test_pushed_taxi_model_switches_under_load(pushed_model_base: Path, tmp_path: Path) -> None:
    """The same switch with the real model, whose load and warm-up take seconds."""
    src = max((p for p in pushed_model_base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    base = tmp_path / "taxi"
    base.mkdir()
    push(src, base, 1000)
    server = _server(base, models=[ModelSpec("taxi", str(base))])
    row = {"instances": [{"trip_miles": 2.0, "fare": 10.0, "trip_seconds": 500.0, "pickup_latitude": 41.9,
                          "pickup_longitude": -87.6, "dropoff_latitude": 41.9, "dropoff_longitude": -87.6,
                          "trip_start_hour": 9.0, "trip_start_day": 2.0, "trip_start_month": 4.0,
                          "pickup_community_area": 8.0, "dropoff_community_area": 8.0,
                          "payment_type": "Credit Card", "company": ""}]}
    statuses: list[int] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline and len(statuses) < 20_000:
                statuses.append(http.post("/v1/models/taxi:predict", json=row).status_code)

    thread = threading.Thread(target=client)
    try:
        thread.start()
        assert eventually(lambda: len(statuses) > 10)
        pushed_at = time.monotonic()
        push(src, base, 2000)
        http = httpx.Client(base_url=server.url, timeout=10)
        assert eventually(lambda: _states(http, "taxi").get("1000", ("",))[0] == "END", seconds=30)
        switch_s = time.monotonic() - pushed_at
        count = len(statuses)
        assert eventually(lambda: len(statuses) > count + 10)
    finally:
        stop.set()
        thread.join(timeout=30)
        server.stop()
    assert set(statuses) == {200}, f"{sum(s != 200 for s in statuses)} failed requests"
    assert switch_s < 15.0


def test_the_config_file_is_reread_with_disk_polling_off(tmp_path: Path) -> None:
    """--file-system-poll-wait-seconds 0 stops disk polls, not config re-reads (separate timers in TF Serving)."""
    base = tmp_path / "toy"
    for v in (1, 2):
        push_toy(base, v, scale=float(v))
    config = tmp_path / "models.config"
    config.write_text(render_model_config([ModelSpec("toy", str(base), VersionPolicy("specific", versions=(1,)))]))
    server = _server(tmp_path, models=[], model_config_file=config, model_config_file_poll_wait_seconds=0.2,
                     file_system_poll_wait_seconds=0)
    try:
        http = httpx.Client(base_url=server.url, timeout=10)
        assert _states(http) == {"1": ("AVAILABLE", "OK")}
        config.write_text(render_model_config([ModelSpec("toy", str(base), VersionPolicy("specific", versions=(2,)))]))
        assert eventually(lambda: _states(http) == {"2": ("AVAILABLE", "OK"), "1": ("END", "OK")})
    finally:
        server.stop()
