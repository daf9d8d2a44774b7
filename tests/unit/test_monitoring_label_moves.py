"""A label moved to a new version, against a running server that takes configs by TF Serving's rules."""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx
import pytest

import local_runner
from monitoring import canary as canary_checks
from monitoring import labels, push_labels
from monitoring.canary import ModelServer, wait_for_label
from monitoring.labels import Deployment, LabelError
from serving.config import ModelSpec
from serving.server import ServerOptions, ServingServer
from serving.testing import push_toy

ROW = {"instances": [{"x": 1.0, "s": "a"}]}


def _ok(version: int) -> None:
    """Stands in for the MLMD blessing check (covered against a real MLMD store by the e2e loop)."""


@pytest.fixture()
def deployed(tmp_path: Path):
    base = tmp_path / "serving_model" / "toy"
    for v in (1, 2, 3, 4):
        push_toy(base, v, scale=float(v))
    d = Deployment.for_output(tmp_path, "toy")
    labels.label_after_push(d, 1)
    labels.label_after_push(d, 2)  # stable 1, canary 2: new labels, written before any server runs
    options = ServerOptions(models=[], rest_port=0, grpc_port=None, file_system_poll_wait_seconds=0.2,
                            model_config_file=d.config_path, model_config_file_poll_wait_seconds=0.2,
                            allow_version_labels_for_unavailable_models=True)
    with ServingServer(options) as server:
        assert wait_for_label(server.url, "toy", "canary", 2, seconds=15)
        yield d, server


def _canary(http: httpx.Client) -> float | int:
    answer = http.post("/v1/models/toy/labels/canary:predict", json=ROW)
    return answer.json()["predictions"][0]["y"] if answer.status_code == 200 else answer.status_code


def test_a_push_replacing_the_canary_moves_the_label_once_loaded_and_no_canary_request_fails(deployed) -> None:
    d, server = deployed
    answers: list[float | int] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                answers.append(_canary(http))

    thread = threading.Thread(target=client)
    thread.start()
    try:
        after = labels.label_after_push(d, 3, server=ModelServer(server.url, "toy", 15))
        assert after == {"stable": 1, "canary": 3}
        assert wait_for_label(server.url, "toy", "canary", 3, seconds=15)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(30)
    assert set(answers) == {2.0, 3.0} and answers.index(3.0) > 0  # never a failed canary request
    assert answers[answers.index(3.0):] == [3.0] * (len(answers) - answers.index(3.0))
    assert [e["action"] for e in d.history()][-2:] == ["pin", "canary"]
    assert set(d.read()[1].policy.versions) == {1, 3}  # 2 is unpinned once nothing points at it


def test_written_in_one_step_the_move_is_refused_and_the_new_version_never_loads(deployed) -> None:
    """Why the steps: what TF Serving does with such a config (and what the old label writer did)."""
    d, server = deployed
    labels.label_after_push(d, 3)  # no server to wait for: one write, canary 2 -> 3 while 3 is not loaded
    time.sleep(1.5)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert _canary(http) == 2.0
        assert http.get("/v1/models/toy/versions/3").status_code == 404


def test_a_load_not_seen_in_time_leaves_the_label_and_pins_the_version_for_a_later_move(deployed) -> None:
    d, server = deployed
    with pytest.raises(LabelError, match=r"version 3 is pinned, but the server has not loaded it yet, so label "
                                         r"'canary' stays at 2 .*`taxi canary --version 3`"):
        labels.label_after_push(d, 3, server=ModelServer(server.url, "toy", 0))  # no wait: not loaded yet
    assert d.labels() == {"stable": 1, "canary": 2} and 3 in d.read()[1].policy.versions
    with pytest.raises(LabelError, match="already the canary"):
        labels.canary(d, _ok, 2)
    assert labels.canary(d, _ok, 3, server=ModelServer(server.url, "toy", 15)) == {"stable": 1, "canary": 3}
    assert wait_for_label(server.url, "toy", "canary", 3, seconds=15)
    with pytest.raises(LabelError, match="version 1 is stable"):
        labels.canary(d, _ok, 1)


def test_a_version_the_server_fails_to_load_ends_the_wait_at_once_naming_the_error(deployed) -> None:
    """A push the server cannot load (a damaged SavedModel) reaches END with an error; waiting the whole
    --wait for it (minutes) only delayed the same outcome. The labels stay where they were."""
    d, server = deployed
    broken = d.push_dir / "5"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    started = time.monotonic()
    with pytest.raises(LabelError, match=f"the server at {re.escape(server.url)} failed to load version 5: .*5"):
        labels.label_after_push(d, 5, server=ModelServer(server.url, "toy", 60))
    assert time.monotonic() - started < 30
    assert d.labels() == {"stable": 1, "canary": 2}
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert _canary(http) == 2.0


def test_a_new_canary_label_waits_for_its_version_and_is_not_written_when_the_load_fails(deployed) -> None:
    """No canary yet (right after a promote): the new label was written at once onto a version the server then
    failed to load, so canary requests failed (no version for the label) until someone noticed."""
    d, server = deployed
    assert labels.promote(d, _ok) == {"stable": 2}
    assert wait_for_label(server.url, "toy", "stable", 2, seconds=15)
    broken = d.push_dir / "5"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    with pytest.raises(LabelError, match="failed to load version 5"):
        labels.label_after_push(d, 5, server=ModelServer(server.url, "toy", 60))
    assert d.labels() == {"stable": 2}
    assert labels.label_after_push(d, 3, server=ModelServer(server.url, "toy", 30)) == {"stable": 2, "canary": 3}
    assert [e["action"] for e in d.history()][-2:] == ["pin", "canary"]  # pinned, then labelled once loaded


def test_label_changes_made_while_a_canary_loads_go_through_and_the_canary_still_moves(deployed) -> None:
    """The lock was held through the load (minutes, for a large model): a rollback in an incident waited 30 s
    and gave up. Now changes go through at once and stand; the canary moves on the labels as they are then."""
    d, server = deployed
    during: list = []

    def meanwhile(version: int) -> None:  # told before the wait starts, as the CLI prints "waiting"
        started = time.monotonic()
        with pytest.raises(labels.NothingToPromoteYet, match="canary 2 is being replaced by version 3"):
            labels.promote(d, _ok)  # cron's promote --if-healthy: the canary under test is on its way out
        during.append(labels.promote(d, _ok, version=2))  # a person promotes it by name
        assert time.monotonic() - started < 5
        assert 3 in d.read()[1].policy.versions  # still pinned: the server goes on loading it

    after = labels.label_after_push(d, 3, server=ModelServer(server.url, "toy", 15, announce=meanwhile))
    assert during == [{"stable": 2}] and after == d.labels() == {"stable": 2, "canary": 3}
    assert [e["action"] for e in d.history()][-3:] == ["pin", "promote", "canary"]
    assert wait_for_label(server.url, "toy", "canary", 3, seconds=15)
    assert wait_for_label(server.url, "toy", "stable", 2, seconds=15)


def test_a_canary_moved_elsewhere_while_one_loads_is_not_moved_back(deployed) -> None:
    d, server = deployed

    def another_canary(version: int) -> None:
        labels.canary(d, _ok, 4)  # no server: written at once

    with pytest.raises(LabelError, match=r"another label change moved 'canary' to version 4 while the server loaded "
                                         r"version 3 \(canary: canary 2 -> 4\); it stands"):
        labels.label_after_push(d, 3, server=ModelServer(server.url, "toy", 15, announce=another_canary))
    assert d.labels() == {"stable": 1, "canary": 4}


def test_a_server_that_is_down_or_serves_another_model_is_not_waited_for(tmp_path: Path, deployed) -> None:
    _d, server = deployed
    assert not ModelServer("http://127.0.0.1:9", "toy", 60, absent_ok=True).present()  # nothing listens on port 9
    assert not ModelServer(server.url, "no_such_model", 60, absent_ok=True).present()
    with pytest.raises(LabelError, match="cannot reach the model server"):
        ModelServer("http://127.0.0.1:9", "toy", 60).present()  # `taxi canary` without --offline: said, not skipped
    with pytest.raises(LabelError, match="does not serve model 'no_such_model'"):
        ModelServer(server.url, "no_such_model", 60).present()
    with pytest.raises(LabelError, match="cannot reach"):  # a remote host not answering is no proof of no server
        ModelServer("http://nonexistent.invalid:8501", "toy", 60, absent_ok=True).present()


def _stable_1_of_2(tmp_path: Path) -> Deployment:
    """Versions 1 and 2 pushed, 1 stable, no canary."""
    for v in (1, 2):
        push_toy(tmp_path / "serving_model" / "toy", v)
    d = Deployment.for_output(tmp_path, "toy")
    labels.label_after_push(d, 1)
    return d


def test_a_new_canary_label_is_not_written_when_the_server_cannot_be_reached(tmp_path: Path) -> None:
    """No canary yet, so no label moves: the label was written, then the wait for the unreachable server failed
    (exit 1 after --wait), though an unreachable server is refused before anything is written."""
    d = _stable_1_of_2(tmp_path)
    config = d.config_path.read_text()
    with pytest.raises(LabelError, match="cannot reach the model server"):
        labels.canary(d, _ok, 2, server=ModelServer("http://127.0.0.1:9", "toy", 60))
    assert d.config_path.read_text() == config and d.labels() == {"stable": 1}


def test_cli_canary_refuses_in_one_line_and_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from cli.main import main

    d = _stable_1_of_2(tmp_path)
    before = d.config_path.read_text()
    for argv, message in ((["--version", "9"], "error: canary: cannot make version 9 the canary: it is not in"),
                          (["--version", "1"], "error: canary: version 1 is stable"),
                          ([], "error: canary: version 2: no MLMD store")):  # blessing is read from MLMD
        assert main(["canary", "--output", str(tmp_path), "--model", "toy", "--offline", *argv]) == 1
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, err
    assert d.config_path.read_text() == before


MALFORMED = "http://127.0.0.1:x"  # starts with http://, but httpx.InvalidURL is no HTTPError


def test_a_malformed_server_url_is_refused_before_anything_is_written(
        deployed, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from cli.main import main

    d, _server = deployed
    args = local_runner.build_parser().parse_args(["--serving-url", MALFORMED])
    with pytest.raises(local_runner.ConfigError, match="--serving-url 'http://127.0.0.1:x' is not a URL"):
        local_runner.serving_from_args(args)
    monkeypatch.setattr(canary_checks, "blessed_check", lambda output: _ok)  # no MLMD here
    config, history = d.config_path.read_text(), d.history_path.read_text()
    output = str(d.push_dir.parent.parent)
    assert main(["canary", "--output", output, "--model", "toy", "--version", "3", "--url", MALFORMED]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Invalid value for '--url'") and err.count("\n") == 1, err
    assert d.config_path.read_text() == config and d.history_path.read_text() == history


def test_the_next_push_recovers_a_server_that_refused_a_move_written_elsewhere(deployed) -> None:
    """A server reading models.config but not at --serving-url refuses the one-write move canary 2 -> 3 at
    every poll, so its labels are no longer the file's. The next push's pin keeps only labels on versions the
    server has loaded, a config it takes, so the new version loads and the labels meet again."""
    d, server = deployed
    push_labels.label_push(str(d.push_dir.parent.parent), "toy", 3, push_labels.Serving("http://127.0.0.1:1", 5))
    time.sleep(1.5)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert _canary(http) == 2.0  # refused, as TF Serving would
        assert labels.label_after_push(d, 4, server=ModelServer(server.url, "toy", 15)) == {"stable": 1, "canary": 4}
        assert wait_for_label(server.url, "toy", "canary", 4, seconds=15)
        assert _canary(http) == 4.0


def test_taxi_canary_repairs_a_refused_move_to_the_version_the_file_already_names(
        deployed, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The same refused move, mended without a new push: `taxi canary --version 3` said "already the canary"
    (the file's label) while the server kept serving 2 and never loaded 3."""
    from cli.main import main

    monkeypatch.setattr(canary_checks, "blessed_check", lambda output: _ok)  # no MLMD here
    d, server = deployed
    push_labels.label_push(str(d.push_dir.parent.parent), "toy", 3, push_labels.Serving("http://127.0.0.1:1", 5))
    time.sleep(1.5)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert _canary(http) == 2.0
        with pytest.raises(LabelError, match="already the canary"):
            labels.canary(d, _ok, 3)  # --offline: nothing says the server refused it
        output = str(d.push_dir.parent.parent)
        assert main(["canary", "--output", output, "--model", "toy", "--version", "3", "--url", server.url]) == 0
        assert "canary 3 written again, now that the server has loaded it" in capsys.readouterr().out
        assert d.labels() == {"stable": 1, "canary": 3}
        assert wait_for_label(server.url, "toy", "canary", 3, seconds=15)
        assert _canary(http) == 3.0
        assert [e["action"] for e in d.history()][-2:] == ["pin", "canary"]
        assert d.history()[-2]["after"] == {"stable": 1, "canary": 2}  # canary traffic kept on 2 while 3 loaded
        with pytest.raises(LabelError, match="already the canary"):  # now the server has it
            labels.canary(d, _ok, 3, server=ModelServer(server.url, "toy", 15))


def test_another_server_at_the_url_is_no_evidence_of_a_refused_move(deployed, tmp_path: Path) -> None:
    """A wrong --url (a server with the same model name from another folder, no labels) read as "the server
    refused canary 2", and the repair's pin wrote a config without labels: the real server lost both."""
    d, _server = deployed
    push_toy(tmp_path / "elsewhere" / "toy", 9, scale=9.0)
    options = ServerOptions(models=[ModelSpec("toy", str(tmp_path / "elsewhere" / "toy"))], rest_port=0,
                            grpc_port=None)
    before = d.config_path.read_text()
    with ServingServer(options) as other:
        with pytest.raises(LabelError, match="version 2 is already the canary"):
            labels.canary(d, _ok, 2, server=ModelServer(other.url, "toy", 5))
    assert d.config_path.read_text() == before


@pytest.mark.parametrize("url", ["http://model server:8501", "http://[::1:8501", "ftp://127.0.0.1:8501"])
def test_a_server_url_without_a_usable_host_is_refused_before_the_run(url: str) -> None:
    """Else the run trains for minutes and only then fails to reach the server it must wait for."""
    args = local_runner.build_parser().parse_args(["--serving-url", url])
    with pytest.raises(local_runner.ConfigError, match=f"--serving-url '{re.escape(url)}' is not "):
        local_runner.serving_from_args(args)


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "http://127.0.0.1:0"])
def test_a_server_url_with_an_impossible_port_is_refused(url: str) -> None:
    """Unrefused, no server is ever found there, so a canary label moves at once to a version the real server
    is still loading: the refusal the flag exists to avoid."""
    args = local_runner.build_parser().parse_args(["--serving-url", url])
    with pytest.raises(local_runner.ConfigError, match=f"--serving-url '{url}' has port .* outside 1-65535"):
        local_runner.serving_from_args(args)
