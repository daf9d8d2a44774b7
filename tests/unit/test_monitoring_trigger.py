"""Retrain trigger: decisions, the one-run-at-a-time lock, and bad input that starts nothing."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.main import main
from monitoring import trigger
from pipeline import spans
from pipeline.data import bundled_taxi_data
from tests.conftest import ROOT


def _spans(tmp_path: Path, count: int = 2) -> Path:
    data = tmp_path / "data"
    for n in range(1, count + 1):
        (data / f"span-{n}").mkdir(parents=True)
        (data / f"span-{n}" / "data.csv").write_text("a,b\n1,2\n")
    return data


def _decisions(output: Path) -> list[dict]:
    return [json.loads(x) for x in (output / "monitoring" / "decisions.jsonl").read_text().splitlines()]


def test_nothing_pushed_means_retrain_on_the_latest_span(tmp_path: Path) -> None:
    decision = trigger.decide(str(tmp_path / "out"), str(_spans(tmp_path)))
    assert decision.retrain and decision.span == 2 and decision.reasons == ["no model is pushed yet"]


def test_missing_span_is_a_clear_error_and_logged(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    code = main(["trigger", "--output", str(out), "--data", str(_spans(tmp_path)), "--span", "7", "--dry-run"])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"error: span 7 not found in {tmp_path / 'data'} (spans there: 1, 2)"
    assert _decisions(out)[-1]["decision"] == "error"


@pytest.mark.parametrize("mistake", [["--span", "9"], ["--", "--train-steps", "0"], ["--model", "a b"]])
def test_a_mistake_is_not_logged_into_an_output_folder_it_would_create(tmp_path: Path, mistake: list[str],
                                                                       capsys: pytest.CaptureFixture) -> None:
    """A mistyped --output got a monitoring/decisions.jsonl made just to hold the error."""
    out = tmp_path / "typo"
    assert main(["trigger", "--output", str(out), "--data", str(_spans(tmp_path)), *mistake]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("extra, fragment", [
    (["--dryrun"], "error: not a trigger flag, nor a local_runner.py flag after --: unrecognized arguments: --dryrun"),
    (["--dry-run", "--", "--bogus"], "error: not a trigger flag, nor a local_runner.py flag after --: unrecognized"),
    (["--", "--train-steps", "many"], "error: not a trigger flag, nor a local_runner.py flag after --: argument"),
    (["--", "--output", "elsewhere"], "error: --output is set by trigger itself"),
    # argparse reads these as --output and --span: the run went to another folder than the trigger's lock and log
    (["--", "--out", "elsewhere"], "error: --out (--output) is set by trigger itself"),
    (["--", "--spa=3"], "error: --spa=3 (--span) is set by trigger itself"),
    (["--", "--model-name", "other"], "error: --model-name is set by trigger itself; pass --model to trigger"),
])
def test_runner_flags_are_checked_before_anything_is_decided(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                              extra: list[str], fragment: str) -> None:
    out = tmp_path / "out"
    assert main(["trigger", "--output", str(out), "--data", str(_spans(tmp_path)), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(fragment), err
    assert not out.exists()  # no decision logged, nothing started


def test_a_stopped_trigger_stops_its_run_and_logs_the_end(tmp_path: Path) -> None:
    """cron's timeout or systemd sends SIGTERM to the trigger: the run must not go on orphaned and unlogged."""
    import signal

    out = tmp_path / "out"
    script = ("import sys, monitoring.trigger as t\n"
              "t.ROOT = __import__('pathlib').Path(sys.argv[1])\n"
              "d = t.Decision(True, ['test'], None, None, None)\n"
              "sys.exit(t.run(d, sys.argv[2], sys.argv[3]))\n")
    fake_root = tmp_path / "root"
    fake_root.mkdir()
    (fake_root / "local_runner.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    trig = subprocess.Popen([sys.executable, "-c", script, str(fake_root), str(out), str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    try:
        assert trig.stdout.readline().strip() == "started"
        trig.send_signal(signal.SIGTERM)
        assert trig.wait(20) == 256 - signal.SIGTERM or trig.returncode == -signal.SIGTERM
    finally:
        trig.kill()
    finished = _decisions(out)[-1]
    assert finished["decision"] == "finished" and finished["exit_code"] == -signal.SIGTERM


def test_second_trigger_refuses_while_a_run_holds_the_lock(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    lock = out / "monitoring" / "trigger.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(  # another trigger, mid-run: holds the same fcntl lock
        [sys.executable, "-c", "import fcntl,json,os,sys,time\n"
         f"h=open({str(lock)!r},'a+'); fcntl.flock(h, fcntl.LOCK_EX)\n"
         "h.write(json.dumps({'pid': os.getpid(), 'started': time.time()})); h.flush()\n"
         "print('locked', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = main(["trigger", "--output", str(out), "--data", str(_spans(tmp_path))])
        err = capsys.readouterr().err
        assert code == 3
        assert err.startswith(f"error: another triggered pipeline run is in progress (pid {holder.pid}")
        assert _decisions(out)[-1]["decision"] == "skip"
    finally:
        holder.kill()
        holder.wait(10)
    assert not (out / "metadata.sqlite").exists()  # nothing was started


def test_lock_is_released_after_a_run(tmp_path: Path) -> None:
    out, data = tmp_path / "out", _spans(tmp_path)
    decision = trigger.Decision(True, ["test"], 1, None, None)
    started = time.monotonic()
    code = trigger.run(decision, str(out), str(data), ["--train-steps", "0"])  # rejected by the runner's own checks
    assert code == 2 and time.monotonic() - started < 120
    assert [d["decision"] for d in _decisions(out)] == ["retrain", "finished"]
    assert _decisions(out)[-1]["exit_code"] == 2
    assert trigger.run(decision, str(out), str(data), ["--train-steps", "0"]) == 2  # the lock was released


def test_the_run_trains_and_labels_the_model_the_trigger_decided_for(tmp_path: Path) -> None:
    """`trigger --model foo` decided from foo's labels but started a run that pushed and labelled `taxi`: the next
    decision said foo's span was retrained, while foo never got a model."""
    out, data = tmp_path / "out", _spans(tmp_path)
    decision = trigger.decide(str(out), str(data), "foo")
    assert decision.retrain and decision.reasons == ["no model is pushed yet"]
    assert trigger.run(decision, str(out), str(data), ["--train-steps", "0"]) == 2
    command = _decisions(out)[0]["command"]
    assert command[command.index("--model-name") + 1] == "foo"


def test_python_dash_m_monitoring_bad_log(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "requests-20260101.jsonl").write_text("garbage\n")
    done = subprocess.run([sys.executable, "-m", "monitoring", "monitor", "--output", str(tmp_path), "--request-log",
                           str(tmp_path / "log")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: no pushed model in")


def _pushed(output: Path, *versions: int, stable: int | None = None) -> None:
    """Versions on disk as the Pusher leaves them (saved_model.pb last), and a models.config with a stable label."""
    for version in versions:
        (output / "serving_model" / "taxi" / str(version)).mkdir(parents=True)
        (output / "serving_model" / "taxi" / str(version) / "saved_model.pb").write_bytes(b"")
    if stable is not None:
        base = output / "serving_model" / "taxi"
        (output / "serving_model" / "models.config").write_text(
            f'model_config_list {{ config {{ name: "taxi" base_path: "{base}" model_platform: "tensorflow" '
            f'version_labels {{ key: "stable" value: {stable} }} }} }}\n')


def _trigger_error(output: Path, data: Path, capsys: pytest.CaptureFixture) -> str:
    code = main(["trigger", "--output", str(output), "--data", str(data), "--dry-run"])
    captured = capsys.readouterr()
    assert code == 2, captured.out + captured.err
    assert "trigger: " not in captured.out  # no verdict printed
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert _decisions(output)[-1]["decision"] == "error"
    return err[0]


def test_a_model_whose_training_span_cannot_be_read_is_an_error_not_current(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    """Without MLMD the trigger cannot know the model's span; 'trained on span None is current' hid span 2 for good."""
    out = tmp_path / "out"
    _pushed(out, 5)
    err = _trigger_error(out, _spans(tmp_path), capsys)
    assert "cannot tell which span version 5 was trained on" in err and "no MLMD store" in err


def test_a_damaged_models_config_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    _pushed(out, 5)
    (out / "serving_model" / "models.config").write_text("garbage {\n")
    err = _trigger_error(out, _spans(tmp_path), capsys)
    assert "models.config: not a ModelServerConfig" in err


def test_a_stable_label_on_a_deleted_version_is_an_error_as_in_monitor(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """`monitor` refuses it (exit 2); the trigger took the deleted version as the model in service."""
    out = tmp_path / "out"
    _pushed(out, 5, stable=7)
    err = _trigger_error(out, _spans(tmp_path), capsys)
    assert err.startswith("error: label 'stable' points at version 7, which is not in")


def _problems(capsys: pytest.CaptureFixture) -> list[str]:
    """stderr without the "monitoring <log> ..." progress line."""
    return [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("monitoring ")]


@pytest.mark.parametrize("flags, fragment", [
    (["--since", "yesterday"], "error: --since 'yesterday' is neither unix seconds nor an ISO time"),
    (["--since", "2000", "--until", "1000"], "error: --since must be before --until"),
    (["--schema", "typo.pbtxt"], "error: schema file typo.pbtxt does not exist"),
    (["--version", "5"], "error: no MLMD store at"),
])
def test_monitor_retrain_refuses_its_own_bad_flags(tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str],
                                                   fragment: str) -> None:
    """A typo in a cron line must fail, not turn into 'no skew verdict' and a trigger decision without skew, forever."""
    out = tmp_path / "out"
    out.mkdir()
    code = main(["monitor", "--output", str(out), "--retrain", "--data", str(tmp_path / "spans"), *flags])
    err = _problems(capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith(fragment), err
    assert not (out / "monitoring" / "decisions.jsonl").exists()  # nothing decided, nothing started


def test_monitor_retrain_without_traffic_warns_and_still_decides(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    code = main(["monitor", "--output", str(out), "--retrain", "--data", str(tmp_path / "spans")])
    err = _problems(capsys)
    assert code == 2 and err[0] == f"warning: no skew verdict: no pushed model in {out / 'serving_model' / 'taxi'}; " \
                                   "run the pipeline first", err
    assert err[-1] == f"error: data folder {tmp_path / 'spans'} does not exist"  # the trigger's own check ran
    assert _decisions(out)[-1]["decision"] == "error"


@pytest.mark.parametrize("blocked", ["trigger.lock", "decisions.jsonl"])
def test_an_unwritable_lock_or_decision_log_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                              blocked: str) -> None:
    """A read-only output (or a folder where the file should be) ended in a LockUnavailable / OSError traceback."""
    out = tmp_path / "out"
    (out / "monitoring" / blocked).mkdir(parents=True)  # as root, a folder in its place is what refuses the write
    code = main(["trigger", "--output", str(out), "--data", str(_spans(tmp_path))])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: cannot write {out / 'monitoring' / blocked}"), err
    assert not (out / "metadata.sqlite").exists()  # nothing was started


def test_a_run_killed_by_a_signal_is_exit_1_as_documented(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The OOM killer's SIGKILL made the run's code -9, and the trigger exited with it (247 to the shell)."""
    fake_root = tmp_path / "root"
    fake_root.mkdir()
    (fake_root / "local_runner.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    monkeypatch.setattr(trigger, "ROOT", fake_root)
    out = tmp_path / "out"
    assert main(["trigger", "--output", str(out), "--data", str(_spans(tmp_path))]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: the triggered pipeline run was killed by SIGKILL (see its output above)"], err
    assert _decisions(out)[-1]["exit_code"] == -9


def test_monitor_retrain_without_the_models_training_data_warns_and_the_trigger_decides(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Lineage of the model in service unreadable is no verdict, not a bad flag: the trigger still runs (and logs)."""
    out = tmp_path / "out"
    _pushed(out, 5)
    assert main(["monitor", "--output", str(out), "--retrain", "--data", str(_spans(tmp_path))]) == 2
    err = _problems(capsys)
    assert err[0].startswith("warning: no skew verdict: no MLMD store at"), err
    assert err[-1].startswith("error: cannot tell which span version 5 was trained on"), err
    assert _decisions(out)[-1]["decision"] == "error"


def test_the_readme_cron_line_runs_in_a_fresh_folder(tmp_path: Path) -> None:
    """The documented line appends to tfx_output/monitoring/cron.log: the shell refused it (no such folder) until a
    person had run `monitor` by hand, so the first, bootstrapping cron runs never started."""
    import os
    import re

    line = next(x for x in (ROOT / "README.md").read_text().splitlines() if x.startswith("0 * * * * cd /srv/taxi"))
    command = line.split(" ", 5)[5].replace("cd /srv/taxi", f"cd {tmp_path}").replace(".venv/bin/python", sys.executable)
    command = re.sub(r"/data/taxi_spans", str(tmp_path / "spans"), command)
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stderr == "" and done.returncode == 2, done.stderr  # cron mails stderr; all of it goes to the log
    logged = (tmp_path / "tfx_output" / "monitoring" / "cron.log").read_text()
    assert logged.strip().splitlines()[-1] == f"error: data folder {tmp_path / 'spans'} does not exist"


def test_a_skew_report_on_another_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Its over-threshold features were taken as a reason to retrain this model."""
    from monitoring.skew import FeatureResult, SkewReport

    report = tmp_path / "skew.json"
    over = FeatureResult("fare", "skew", "jensen_shannon_divergence", 0.5, 0.02, "over threshold")
    report.write_text(json.dumps(SkewReport("chicago_fares", 3, 1, {}, 900, [over]).as_json()))
    out = tmp_path / "out"
    code = main(["trigger", "--output", str(out), "--data", str(_spans(tmp_path)), "--skew-report", str(report),
                 "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"error: --skew-report {report} is about model 'chicago_fares', not --model "
                                 "'taxi'"], err
    assert not out.exists()


def test_monitor_retrain_decides_on_the_model_its_config_serves(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """With --config the monitor judged that file's stable version and the trigger then decided on another one
    (<output>/serving_model/models.config's)."""
    out = tmp_path / "out"
    _pushed(out, 5, stable=7)  # the default config: a stable label on a version no longer on disk
    deployed = tmp_path / "deploy.config"
    deployed.write_text((out / "serving_model" / "models.config").read_text().replace("value: 7", "value: 5"))
    code = main(["monitor", "--output", str(out), "--config", str(deployed), "--retrain", "--data", str(_spans(tmp_path))])
    err = _problems(capsys)
    assert code == 2 and err[-1].startswith("error: cannot tell which span version 5 was trained on"), err


def test_runner_flags_the_run_would_refuse_are_one_error_line_before_it_starts(tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture) -> None:
    """The decision builds the run's config to ask whether it would repeat the last run; a config local_runner
    refuses is said then, instead of a 'retraining' decision and a run that stops at its flags."""
    data = tmp_path / "data"
    (data / "span-1").mkdir(parents=True)
    (data / "span-1" / "data.csv").write_bytes((Path(bundled_taxi_data()) / "data.csv").read_bytes()[:20000]
                                               .rsplit(b"\n", 1)[0] + b"\n")
    out = tmp_path / "out"
    out.mkdir()
    code = main(["trigger", "--output", str(out), "--data", str(data), "--", "--train-steps", "0"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "", captured.out
    assert captured.err.strip().splitlines() == ["error: train steps must be within [1, 2147483647], got 0"]
    assert [d["decision"] for d in _decisions(out)] == ["error"]
    assert not (out / "metadata.sqlite").exists() and not (out / "schemas").exists()  # nothing started or written


def test_relative_paths_name_the_same_folders_for_the_decision_and_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                          capfd: pytest.CaptureFixture) -> None:
    """The run was started in the project folder, so `--output out` from anywhere else decided on ./out while the
    run wrote to <project>/out: the next decision found nothing pushed and retrained again, every hour."""
    fake_root = tmp_path / "project"
    fake_root.mkdir()
    (fake_root / "local_runner.py").write_text(
        "import os, sys\nflags = sys.argv[1:]\n"
        "print('run:', os.path.abspath(flags[flags.index('--output') + 1]), "
        "os.path.abspath(flags[flags.index('--data') + 1]))\n")
    monkeypatch.setattr(trigger, "ROOT", fake_root)
    work = tmp_path / "work"
    work.mkdir()
    _spans(work)
    monkeypatch.chdir(work)
    assert main(["trigger", "--output", "out", "--data", "data"]) == 0
    said = capfd.readouterr().out.strip().splitlines()  # the run's lines come from its own process
    assert said[-1] == f"run: {work / 'out'} {work / 'data'}", said
    assert (work / "out" / "monitoring" / "decisions.jsonl").is_file()


def test_a_run_past_the_time_limit_is_stopped_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    """A run over the trigger's time limit (3 h) was stopped and reported as 'ended with exit code 1 (see its output
    above)', while nothing above said why: the run, stopped by SIGTERM, prints nothing."""
    fake_root = tmp_path / "root"
    fake_root.mkdir()
    (fake_root / "local_runner.py").write_text("import time\ntime.sleep(8)\n")
    monkeypatch.setattr(trigger, "ROOT", fake_root)
    monkeypatch.setattr(trigger, "RUN_TIME_LIMIT_S", 0.5, raising=False)
    out = tmp_path / "out"
    started = time.monotonic()
    assert main(["trigger", "--output", str(out), "--data", str(_spans(tmp_path))]) == 1
    assert time.monotonic() - started < 8  # stopped, not waited for
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: the triggered pipeline run took longer than the trigger's limit of 0.5 s and was stopped"], err
    finished = _decisions(out)[-1]
    assert finished["decision"] == "finished" and finished["exit_code"] == 1 and finished["timed_out_after_s"] == 0.5


def test_runner_flags_are_checked_when_the_model_is_current_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """They were read only when a retrain was due: an hourly cron line with a broken flag after -- logged
    "model 5 is current" until the day a span landed, and then failed."""
    data = _spans(tmp_path)
    learned = trigger.Learned(5, 2, spans.input_fingerprint(str(data), 2))  # the model in service: the last span
    monkeypatch.setattr(trigger, "_in_service", lambda *args: learned)
    monkeypatch.setattr(trigger, "_newer_push", lambda *args: trigger.Learned())
    assert not trigger.decide(str(tmp_path / "out"), str(data)).retrain
    with pytest.raises(trigger.TriggerError, match=r"train steps must be within \[1, 2147483647\], got 0"):
        trigger.decide(str(tmp_path / "out"), str(data), runner_args=["--train-steps", "0"])
    with pytest.raises(trigger.TriggerError, match="schema file /nonexistent.pbtxt does not exist"):
        trigger.decide(str(tmp_path / "out"), str(data), runner_args=["--schema", "/nonexistent.pbtxt"])


@pytest.mark.parametrize("command", [["trigger"], ["monitor", "--retrain"]])
def test_an_empty_data_flag_is_named_as_empty(tmp_path: Path, capsys: pytest.CaptureFixture, command: list[str]) -> None:
    """--data '' was the current folder: 'holds folders (benchmarks, cli, common)' named what it found there."""
    assert main([*command, "--output", str(tmp_path), "--data", ""]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: Invalid value for '--data': empty: give a folder (see 'taxi {command[0]} --help')"], err


def _learned(data: Path, version: int, span: int | None) -> trigger.Learned:
    return trigger.Learned(version, span, spans.input_fingerprint(str(data), span))


def _decide_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data: Path, in_service: trigger.Learned,
                 newer: trigger.Learned | None = None, **kwargs) -> trigger.Decision:
    monkeypatch.setattr(trigger, "_in_service", lambda *args: in_service)
    monkeypatch.setattr(trigger, "_newer_push", lambda *args: newer or trigger.Learned())
    return trigger.decide(str(tmp_path / "out"), str(data), **kwargs)


def test_a_learned_span_whose_files_changed_is_retrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A span half copied when a run read it (the rest landed later) was "current" for good: span numbers alone
    were compared, not the files ExampleGen read."""
    data = _spans(tmp_path)
    learned = _learned(data, 5, 2)
    assert not _decide_with(monkeypatch, tmp_path, data, learned).retrain
    (data / "span-2" / "part-2.csv").write_text("a,b\n3,4\n")
    decision = _decide_with(monkeypatch, tmp_path, data, learned)
    assert decision.retrain and decision.span == 2
    assert decision.reasons == ["span 2 changed since the model in service (version 5) learned it"]


def test_the_same_span_through_a_symlink_is_not_a_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ExampleGen's fingerprint hashes the paths it read: the data folder named through a link was "changed"."""
    data = _spans(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(data)
    learned = trigger.Learned(5, 2, spans.input_fingerprint(str(data), 2), str(data))
    decision = _decide_with(monkeypatch, tmp_path, link, learned)
    assert not decision.retrain and decision.reasons == ["model 5 trained on span 2 is current and no skew report"]
    (data / "span-2" / "data.csv").write_text("a,b\n1,3\n")
    assert _decide_with(monkeypatch, tmp_path, link, learned).retrain


def test_a_flat_folder_edited_in_place_is_retrained_and_named_as_such(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "flat"
    data.mkdir()
    (data / "data.csv").write_text("a,b\n1,2\n")
    learned = _learned(data, 5, None)
    assert _decide_with(monkeypatch, tmp_path, data, learned).reasons == [
        "model 5 trained on the flat data folder is current and no skew report"]  # not "trained on span 0"
    (data / "data.csv").write_text("a,b\n1,3\n")
    assert _decide_with(monkeypatch, tmp_path, data, learned).reasons == [
        f"the data in {data} changed since the model in service (version 5) learned it"]
    canary = trigger.Learned(7, 0, spans.input_fingerprint(str(data), None))  # span 0: MLMD's for a flat folder
    assert _decide_with(monkeypatch, tmp_path, data, learned, canary).reasons == [
        f"the data in {data} is already learned by version 7, pushed after the model in service (5, the flat data "
        "folder): promote it, or wait for new data"]


def test_a_later_span_learned_by_a_newer_push_is_not_said_to_be_the_latest_span(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Span 3's folder removed, its canary still pushed: "span 2 is already learned by version 7" named a version
    that learned span 3 (span 2 had been stopped by the data gate)."""
    data = _spans(tmp_path)
    decision = _decide_with(monkeypatch, tmp_path, data, _learned(data, 5, 1), trigger.Learned(7, 3, "x"))
    assert not decision.retrain
    assert decision.reasons == [f"version 7, pushed after the model in service (5, span 1), learned span 3, later "
                                f"than span 2, the latest in {data}: promote it, or wait for a new span"]


def test_a_skew_report_on_another_version_is_not_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A report about version 12345 (never pushed, from 2001) retrained the model in service."""
    from monitoring.skew import FeatureResult, SkewReport

    data = tmp_path / "flat"
    data.mkdir()
    (data / "data.csv").write_text("a,b\n1,2\n")
    over = [FeatureResult("fare", "skew", "JSD", 0.4, 0.1, "over threshold")]
    stale = SkewReport("taxi", 12345, None, {}, 600, over, 0)
    decision = _decide_with(monkeypatch, tmp_path, data, _learned(data, 5, None), skew=stale)
    assert not decision.retrain
    assert decision.reasons == ["the skew report is on version 12345, not the model in service (5): not counted"]
    current = SkewReport("taxi", 5, None, {}, 600, over, 0)
    decision = _decide_with(monkeypatch, tmp_path, data, _learned(data, 5, None), skew=current)
    assert not decision.retrain and decision.reasons[0].startswith("skew over threshold in fare (report on version 5), "
                                                                   "but the model in service (version 5) already "
                                                                   f"learned the data in {data}")


def test_a_metadata_store_held_locked_is_not_now_not_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture) -> None:
    """Exit 2 ("bad input") on a store another process held: the systemd unit, which tolerates 3, failed."""
    import sqlite3

    from monitoring import labels
    from pipeline import mlmd_store
    from serving.testing import push_toy

    data = _spans(tmp_path)
    out = tmp_path / "out"
    monkeypatch.setattr(mlmd_store, "LOCK_WAIT_S", 0.2)
    store = out / "metadata.sqlite"
    out.mkdir()
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE t (x TEXT)")
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert main(["trigger", "--output", str(out), "--data", str(data), "--dry-run"]) == 3  # nothing pushed yet
        push_toy(out / "serving_model" / "taxi", 1)
        labels.label_after_push(labels.Deployment.for_output(out, "taxi"), 1)
        assert main(["trigger", "--output", str(out), "--data", str(data), "--dry-run"]) == 3  # its span unknown now
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(" is locked: " in line for line in err), err
