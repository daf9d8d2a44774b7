"""Canary/stable labels: after push, promote, rollback, and every refusal leaving the config untouched."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cli.main import main
from monitoring import labels, push_labels
from monitoring.canary import healthy_check, loaded_check, wait_for_label
from monitoring.labels import Deployment, LabelError, NothingToPromoteYet
from serving.server import ServerOptions, ServingServer
from serving.testing import push_toy

ROOT = Path(__file__).resolve().parents[2]
ROW = {"instances": [{"x": 1.0, "s": "a"}]}


def _ok(version: int) -> None:
    """Stands in for the MLMD blessing check (covered against a real MLMD store by the e2e loop)."""


def _deployment(tmp_path: Path, versions: tuple[int, ...] = (1, 2, 3)) -> Deployment:
    base = tmp_path / "serving_model" / "toy"
    base.mkdir(parents=True)
    for v in versions:
        push_toy(base, v, scale=float(v))
    return Deployment.for_output(tmp_path, "toy")


def test_first_push_is_stable_then_canary_promote_rollback(tmp_path: Path) -> None:
    d = _deployment(tmp_path)
    assert labels.label_after_push(d, 1) == {"stable": 1}
    assert labels.label_after_push(d, 2) == {"stable": 1, "canary": 2}
    assert labels.promote(d, _ok) == {"stable": 2}
    spec = d.read()[1]
    assert spec.policy.kind == "specific" and set(spec.policy.versions) == {1, 2}  # old stable kept loaded
    assert labels.label_after_push(d, 3) == {"stable": 2, "canary": 3}
    assert labels.rollback(d, _ok) == {"stable": 1, "canary": 3}  # the canary is not what was rolled back
    assert [e["action"] for e in d.history()] == ["first-push", "canary", "promote", "canary", "rollback"]


def test_a_version_stable_a_second_time_keeps_the_history_before_it(tmp_path: Path) -> None:
    """Stable 1 -> 2 -> 3 -> 1: the stack was cut at 1's first place, so `rollback` said "no earlier version" and
    the pin kept only 1 loaded."""
    d = _deployment(tmp_path)
    labels.label_after_push(d, 1)
    for version in (2, 3, 1):
        labels.promote(d, _ok, version=version)
    assert d.read()[1].labels["stable"] == 1
    assert 3 in d.read()[1].policy.versions  # the rollback target stays loaded
    assert labels.rollback(d, _ok)["stable"] == 3
    assert labels.rollback(d, _ok)["stable"] == 2
    with pytest.raises(LabelError, match="no earlier version"):
        labels.rollback(d, _ok)


def test_a_symlinked_models_config_is_written_through_with_one_history(tmp_path: Path) -> None:
    """TF Serving reads the config at a deploy path linked to <output>/serving_model/models.config: `canary` via
    the link replaced the link with a file of its own (the real config never changed, yet it said done) and
    started a second label history beside it."""
    d = _deployment(tmp_path)
    labels.label_after_push(d, 1)
    link = tmp_path / "deploy" / "models.config"
    link.parent.mkdir()
    link.symlink_to(d.config_path)
    via_link = Deployment(d.push_dir, link, "toy")
    assert labels.label_after_push(via_link, 2) == {"stable": 1, "canary": 2}
    assert link.is_symlink() and d.read()[1].labels == {"stable": 1, "canary": 2}
    assert sorted(p.name for p in link.parent.iterdir()) == ["models.config"]
    assert [e["action"] for e in d.history()] == ["first-push", "canary"]


def test_a_label_change_behind_another_that_holds_the_lock_is_not_now(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """A canary waiting for its version to load holds the lock: a cron `promote --if-healthy` behind it failed
    (exit 1) instead of "not now" (exit 3), as when there is nothing to promote yet."""
    import fcntl

    d = _deployment(tmp_path)
    labels.label_after_push(d, 1)
    labels.label_after_push(d, 2)
    monkeypatch.setattr(labels.time, "monotonic", iter(range(0, 10_000, 40)).__next__)  # 30 s pass at once
    with open(d.config_path.with_name("models.config.lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(labels.LabelsBusy, match="another label change holds"):
            labels.promote(d, _ok)
        code = main(["promote", "--output", str(tmp_path), "--model", "toy", "--offline"])
    assert code == 3 and "labels unchanged" in capsys.readouterr().err
    assert d.labels() == {"stable": 1, "canary": 2}


def test_rollback_walks_back_never_forth_and_its_target_stays_loaded(tmp_path: Path) -> None:
    d = _deployment(tmp_path, versions=(1, 2, 3, 4))
    labels.label_after_push(d, 1)
    labels.label_after_push(d, 2)
    labels.promote(d, _ok)  # stable 2
    labels.label_after_push(d, 3)
    assert set(d.read()[1].policy.versions) == {1, 2, 3}  # 1, the rollback target, is still loaded
    labels.promote(d, _ok)  # stable 3
    labels.label_after_push(d, 4)
    assert set(d.read()[1].policy.versions) == {2, 3, 4}
    assert labels.rollback(d, _ok) == {"stable": 2, "canary": 4}
    assert set(d.read()[1].policy.versions) == {1, 2, 4}  # the next rollback's target, not the bad 3
    assert labels.rollback(d, _ok) == {"stable": 1, "canary": 4}  # further back, never to 3 again
    with pytest.raises(LabelError, match="no earlier version"):
        labels.rollback(d, _ok)
    labels.promote(d, _ok)  # the canary 4 after all
    assert labels.rollback(d, _ok) == {"stable": 1}


def test_promote_keeps_labels_it_does_not_move_and_damaged_history_is_skipped(tmp_path: Path) -> None:
    d = _deployment(tmp_path)
    labels.label_after_push(d, 1)
    labels.label_after_push(d, 3)
    d.config_path.write_text(d.config_path.read_text().replace('value: 3\n', 'value: 3\n    }\n    version_labels {\n'
                                                               '      key: "shadow"\n      value: 1\n', 1))
    assert d.labels() == {"stable": 1, "canary": 3, "shadow": 1}
    with d.history_path.open("a") as handle:
        handle.write('42\n{"before": "x", "after": {}}\n{"before": {"stable": "1"}, "after": {}}\nnot json\n')
    assert [e["action"] for e in d.history()] == ["first-push", "canary"]
    assert labels.promote(d, _ok, version=2) == {"shadow": 1, "stable": 2, "canary": 3}  # canary 3 still on test
    assert labels.rollback(d, _ok) == {"shadow": 1, "stable": 1, "canary": 3}
    assert main(["labels", "--output", str(tmp_path), "--model", "toy"]) == 0


def test_refusals_leave_config_and_history_untouched(tmp_path: Path) -> None:
    d = _deployment(tmp_path)
    labels.label_after_push(d, 1)
    labels.label_after_push(d, 2)
    text, history = d.config_path.read_text(), d.history_path.read_text()

    def not_blessed(version: int) -> None:
        raise LabelError(f"version {version} is not blessed")

    with pytest.raises(LabelError, match="not blessed"):
        labels.promote(d, not_blessed)
    with pytest.raises(LabelError, match="not in"):
        labels.promote(d, _ok, version=99)
    with pytest.raises(LabelError, match="already stable"):
        labels.rollback(d, _ok, version=1)
    shutil.rmtree(d.push_dir / "2")  # the canary's version deleted by hand
    with pytest.raises(LabelError, match="version 2: it is not in"):
        labels.promote(d, _ok)
    assert labels.dangling(d) == {"canary": 2}
    assert (d.config_path.read_text(), d.history_path.read_text()) == (text, history)


def test_rollback_with_nothing_earlier_and_broken_config(tmp_path: Path) -> None:
    d = _deployment(tmp_path, versions=(5,))
    labels.label_after_push(d, 5)
    with pytest.raises(LabelError, match="no earlier version"):
        labels.rollback(d, _ok)
    d.config_path.write_text("not { a config")
    with pytest.raises(LabelError, match="not a ModelServerConfig"):
        labels.promote(d, _ok, version=5)
    assert d.config_path.read_text() == "not { a config"


def test_cli_labels_flags_a_label_on_a_deleted_version(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = _deployment(tmp_path)
    labels.label_after_push(d, 3)
    assert main(["labels", "--output", str(tmp_path), "--model", "toy"]) == 0
    assert main(["labels", "--output", str(tmp_path / "typo"), "--model", "toy"]) == 2
    assert capsys.readouterr().err.endswith(f"error: output folder {tmp_path / 'typo'} does not exist; "
                                            "pass the pipeline's --output\n")
    shutil.rmtree(d.push_dir / "3")
    assert main(["labels", "--output", str(tmp_path), "--model", "toy"]) == 1
    assert "error: label 'stable' points at version 3" in capsys.readouterr().err
    # promote needs MLMD for the blessing: a clear refusal, nothing written
    before = d.config_path.read_text()
    assert main(["promote", "--output", str(tmp_path), "--model", "toy", "--version", "2", "--offline"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: promote: version 2: no MLMD store") and err.count("\n") == 1
    assert d.config_path.read_text() == before


def test_loaded_check_and_a_real_server_following_the_labels(tmp_path: Path) -> None:
    d = _deployment(tmp_path)
    labels.label_after_push(d, 1)
    server = ServingServer(ServerOptions(models=[], rest_port=0, grpc_port=None, file_system_poll_wait_seconds=0.2,
                                         model_config_file=d.config_path,
                                         model_config_file_poll_wait_seconds=0.2,
                                         allow_version_labels_for_unavailable_models=True)).start()
    try:
        http = httpx.Client(base_url=server.url, timeout=10)
        check = loaded_check(server.url, "toy")
        with pytest.raises(LabelError, match="not loaded"):
            check(3)  # pinned policy: 3 is on disk but not loaded until labelled
        labels.label_after_push(d, 3)
        assert wait_for_label(server.url, "toy", "canary", 3, seconds=15)
        check(3)
        labels.promote(d, check)
        assert wait_for_label(server.url, "toy", "stable", 3, seconds=15)
        labels.rollback(d, check)  # 1 stayed pinned, so it is loaded: no failed request in between
        assert wait_for_label(server.url, "toy", "stable", 1, seconds=15)  # back to an older version
        deadline = time.monotonic() + 15
        answers = []
        while time.monotonic() < deadline:
            answer = http.post("/v1/models/toy/labels/stable:predict", json=ROW)
            answers.append(answer.status_code)
            if answer.status_code == 200 and answer.json()["predictions"][0]["y"] == 1.0:
                break
            time.sleep(0.05)
        assert set(answers) == {200} and answers
        assert answer.json()["predictions"][0]["y"] == 1.0
    finally:
        server.stop()
    with pytest.raises(LabelError, match="cannot reach the model server"):
        check(1)


def test_promote_if_healthy_waits_for_enough_good_fast_canary_requests(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    d = _deployment(tmp_path)
    labels.label_after_push(d, 1)
    labels.label_after_push(d, 3)
    server = ServerOptions(models=[], rest_port=0, grpc_port=None, file_system_poll_wait_seconds=0.2,
                           model_config_file=d.config_path, model_config_file_poll_wait_seconds=0.2,
                           allow_version_labels_for_unavailable_models=True)
    with ServingServer(server) as srv, httpx.Client(base_url=srv.url, timeout=10) as http:
        assert wait_for_label(srv.url, "toy", "canary", 3, seconds=15)
        before = d.config_path.read_text()

        def promote(**bounds: float) -> None:
            limits = {"min_requests": 10, "max_error_rate": 0.2, "max_p95_seconds": 5.0, **bounds}
            labels.promote(d, healthy_check(srv.url, "toy", **limits))

        # too few requests is not a refusal but "not yet": a cron job meets it until the canary has served enough
        with pytest.raises(NothingToPromoteYet, match="cannot be judged yet .* only 0 of 10 requests"):
            promote()
        for row in [ROW] * 6 + [{"instances": [{"x": "not a number", "s": "a"}]}] * 3:
            http.post("/v1/models/toy/labels/canary:predict", json=row)
        http.post("/v1/models/toy/labels/stable:predict", json=ROW)  # the stable version's, not counted
        with pytest.raises(NothingToPromoteYet, match=r"only 9 of 10 requests served so far \(3 errors\)"):
            promote()
        http.post("/v1/models/toy/labels/canary:predict", json=ROW)
        with pytest.raises(LabelError, match=r"error rate 30\.000% > 20\.000%") as unhealthy:
            promote()
        assert not isinstance(unhealthy.value, NothingToPromoteYet)  # judged, and refused
        for _ in range(6):
            http.post("/v1/models/toy/labels/canary:predict", json=ROW)
        with pytest.raises(LabelError, match="p95 latency") as slow:
            promote(max_p95_seconds=1e-9)
        assert not isinstance(slow.value, NothingToPromoteYet)
        assert d.config_path.read_text() == before
        promote()  # 3 errors in 16 requests
        assert d.labels() == {"stable": 3}
    # the CLI refuses the combination that cannot read the metrics
    assert main(["promote", "--output", str(tmp_path), "--model", "toy", "--if-healthy", "--offline"]) == 2
    assert "--if-healthy reads the server's metrics" in capsys.readouterr().err


def test_promote_with_no_canary_exits_3_not_now_and_a_refusal_exits_1(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """A job that runs `promote --if-healthy` every few minutes finds no canary most of the time: that is exit 3
    (nothing to promote yet, as for a canary not judged yet), told apart from a refusal (exit 1)."""
    d = _deployment(tmp_path)
    labels.label_after_push(d, 1)
    before = d.config_path.read_text()
    assert main(["promote", "--output", str(tmp_path), "--model", "toy", "--offline"]) == 3
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: promote: no canary label in {d.config_path}: nothing to promote; labels unchanged"]
    assert main(["promote", "--output", str(tmp_path), "--model", "toy", "--offline", "--version", "1"]) == 1
    assert "version 1 is already stable" in capsys.readouterr().err
    assert d.config_path.read_text() == before


@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_cli_change_on_a_malformed_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                      action: str) -> None:
    d = _deployment(tmp_path)
    labels.label_after_push(d, 1)
    valid = d.config_path.read_bytes()
    d.config_path.write_text("garbage {")
    assert main([action, "--output", str(tmp_path), "--model", "toy", "--offline"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {action}: {d.config_path}: not a ModelServerConfig") and err.count("\n") == 1
    assert d.config_path.read_text() == "garbage {"
    # a comment an editor saved as Latin-1: a traceback from every command, and from the run that had just pushed
    latin1 = "# d\xe9ploy\xe9\n".encode("latin-1") + valid
    d.config_path.write_bytes(latin1)
    assert main([action, "--output", str(tmp_path), "--model", "toy", "--offline"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"model config {d.config_path} is not UTF-8 text: byte 0xe9 at offset 3" in err
    assert d.config_path.read_bytes() == latin1


def test_a_label_folder_that_cannot_be_written_is_one_error_line_and_changes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A serving_model/ the cron user cannot write (another user's, read-only) ended promote in a traceback."""
    import errno
    import os

    from common import atomic_files

    d = _deployment(tmp_path)
    labels.label_after_push(d, 1)
    labels.label_after_push(d, 2)
    config, history = d.config_path.read_text(), d.history_path.read_text()
    lock = d.config_path.with_name("models.config.lock")
    lock.unlink()
    lock.mkdir()  # as root, a folder in its place is what refuses the write
    assert main(["promote", "--output", str(tmp_path), "--model", "toy", "--offline"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: promote: cannot write {lock}: Is a directory; labels unchanged"], err
    lock.rmdir()

    def disk_full(path: Path, data: str | bytes) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(atomic_files, "_temporary", disk_full)  # the new config cannot be written
    with pytest.raises(LabelError, match=f"cannot write {d.config_path}: No space left on device"):
        labels.promote(d, _ok)
    assert d.config_path.read_text() == config and d.history_path.read_text() == history


def test_a_label_change_the_history_cannot_record_is_not_made(tmp_path: Path) -> None:
    """A change the history misses is one a later rollback cannot walk back: the config stays as it was."""
    d = _deployment(tmp_path)
    labels.label_after_push(d, 1)
    labels.label_after_push(d, 2)
    config = d.config_path.read_text()
    d.history_path.unlink()
    d.history_path.mkdir()  # as root, a folder in its place is what refuses the write
    with pytest.raises(LabelError, match=f"cannot write {d.history_path}: Is a directory"):
        labels.promote(d, _ok)
    assert d.config_path.read_text() == config and d.history_path.is_dir()


def test_refusals_name_what_is_missing_not_none(tmp_path: Path) -> None:
    """`cannot make version None the canary`, `stable is None`: Python's None leaked into the words."""
    d = _deployment(tmp_path, versions=())
    with pytest.raises(LabelError, match="^no version pushed in .* to make the canary$"):
        labels.canary(d, _ok)
    with pytest.raises(LabelError, match=r"stable is unset; pushed: none"):
        labels.rollback(d, _ok)


@pytest.mark.parametrize("command", [["promote"], ["rollback"], ["canary", "--version", "5"]])
def test_a_refused_change_where_nothing_was_pushed_leaves_the_output_folder_as_it_was(
        tmp_path: Path, capsys: pytest.CaptureFixture, command: list[str]) -> None:
    """A cron job pointed at a run's output before its first push created serving_model/ and a lock file in it."""
    assert main([*command, "--output", str(tmp_path), "--model", "toy", "--offline"]) in (1, 3)
    assert capsys.readouterr().err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_run_that_cannot_read_models_config_says_so_and_leaves_it(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    """A run that pushed nothing checks the newest push is labelled; a config it could not read was passed over
    in silence, so a labelling the run should have done was missed with no word."""
    d = _deployment(tmp_path)
    labels.label_after_push(d, 1)
    latin1 = "# d\xe9ploy\xe9\n".encode("latin-1") + d.config_path.read_bytes()
    d.config_path.write_bytes(latin1)
    push_labels.label_unlabelled_push(str(tmp_path), "toy", push_labels.Serving("http://127.0.0.1:1", 1))
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: labels not checked: model config {d.config_path} is not UTF-8 text: byte 0xe9 at "
                   "offset 3; save it as UTF-8"], err
    assert d.config_path.read_bytes() == latin1


def test_a_move_under_way_counts_only_for_its_own_model(tmp_path: Path) -> None:
    """One models.config serves several models: a canary loading for toy2 blocked toy's promote and pinned
    toy's own version 3 (loading a model nobody labelled)."""
    from monitoring.label_lock import moves_now, moving

    config = tmp_path / "models.config"
    config.write_text("")
    with moving(config, "toy2", {"canary": 3}, (3,)):
        assert moves_now(config, "toy") == ({}, set())
        assert moves_now(config, "toy2") == ({"canary": 3}, {3})
    assert moves_now(config, "toy2") == ({}, set())


def test_a_marker_left_by_a_killed_move_counts_for_nothing_and_is_removed(tmp_path: Path) -> None:
    """A `taxi canary` killed by SIGKILL while it waited for a load leaves `models.config.moving.<pid>`; the
    next label change must neither keep its version pinned nor leave the file to pile up."""
    d = _deployment(tmp_path)
    code = ("import os, signal; from pathlib import Path; from monitoring.label_lock import moving\n"
            f"with moving(Path({str(d.config_path)!r}), 'toy', {{'canary': 3}}, (3,)):\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False)
    assert killed.returncode == -signal.SIGKILL
    [marker] = d.config_path.parent.glob("models.config.moving.*")
    assert json.loads(marker.read_text())["labels"] == {"canary": 3}
    assert labels.label_after_push(d, 1) == {"stable": 1}
    assert not list(d.config_path.parent.glob("models.config.moving.*"))
    assert d.read()[1].policy.versions == (1,)  # 3 is not kept loaded for a move that died


def test_a_server_restarted_during_the_wait_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart mid-wait ended the move at once with "cannot reach" (and advice to pass --offline, which
    writes the one-step move the server refuses)."""
    from monitoring import canary

    answers = iter([LabelError("cannot reach the model server"), LabelError("cannot reach"), ("LOADING", ""),
                    ("AVAILABLE", "")])

    def version_status(url: str, model: str, version: int) -> tuple[str, str]:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(canary, "version_status", version_status)
    assert canary.ModelServer("http://127.0.0.1:9", "toy", 10).wait_loaded(3)


@pytest.mark.parametrize("failed_before", [False, True])
def test_a_failed_load_ends_the_wait_unless_it_is_an_old_attempt_the_server_retries(
        monkeypatch: pytest.MonkeyPatch, failed_before: bool) -> None:
    """An END with an error before the server is seen trying again is, for a version whose load had failed
    before the pin, the old attempt (TF Serving retries a version that comes back into its config)."""
    from monitoring import canary

    answers = iter([("END", "bad file"), ("LOADING", ""), ("AVAILABLE", "")])
    monkeypatch.setattr(canary, "version_status", lambda url, model, version: next(answers))
    server = canary.ModelServer("http://127.0.0.1:9", "toy", 10)
    if failed_before:
        assert server.wait_loaded(3, failed_before=True)
    else:
        with pytest.raises(LabelError, match="failed to load version 3: bad file"):
            server.wait_loaded(3)


class _LaggingServer:
    """A server that has not polled the last promote yet (TF Serving polls every 60 s by default): it still
    has its old labels; every version but `loading` is loaded, and that one loads once waited for."""

    def __init__(self, labels: dict[str, int], loading: int) -> None:
        self.labels, self.loading, self.waited = labels, loading, False

    def present(self) -> bool:
        return True

    def holds(self, version: int) -> bool:
        return True

    def loaded(self, version: int) -> bool:
        return version != self.loading or self.waited

    def failed(self, version: int) -> bool:
        return False

    def wait_loaded(self, version: int, failed_before: bool) -> bool:
        self.waited = True
        return True

    def label_version(self, label: str) -> int | None:
        return self.labels.get(label)


def test_a_move_never_writes_back_a_stable_the_server_has_not_polled_yet(tmp_path: Path) -> None:
    """promote 1 -> 2, then a push within one poll: the canary's pin wrote the server's stable 1 back into the
    file for the whole wait, and the pin's history entry cut rollback's stable stack."""
    d = _deployment(tmp_path)
    labels.label_after_push(d, 1)
    labels.label_after_push(d, 2)
    labels.promote(d, _ok)
    assert d.labels() == {"stable": 2}
    server = _LaggingServer({"stable": 1, "canary": 2}, loading=3)
    assert labels.label_after_push(d, 3, server=server) == {"stable": 2, "canary": 3}
    assert all(entry["after"].get("stable") == 2 for entry in d.history()[-2:])  # the pin and the move
    assert labels.previous_stable(d, 2) == 1
