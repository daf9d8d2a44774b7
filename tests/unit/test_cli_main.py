"""The `taxi` command group: help everywhere, one-line errors, exit codes, no drift from the runners."""
from __future__ import annotations

import subprocess
import sys

import click
import pytest

import local_runner
import vertex_runner
from cli.main import COMMANDS, LazyGroup, cli, main
from tests.conftest import ROOT

HELP_PATHS = [[], *([name] for name in COMMANDS), ["vertex", "compile"], ["vertex", "submit"],
              ["vertex", "schedule"], ["vertex", "schedule", "create"], ["vertex", "schedule", "pause"]]


@pytest.mark.parametrize("path", HELP_PATHS, ids=lambda p: " ".join(p) or "taxi")
def test_every_level_has_help(path: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: taxi {' '.join(path)}".rstrip())


def test_a_group_without_its_command_is_one_line_exit_2_and_taxi_alone_is_the_overview(
        capsys: pytest.CaptureFixture) -> None:
    """`taxi vertex schedule` printed its help and exited 0, where `vertex_runner.py schedule` exits 2."""
    assert main(["vertex", "schedule"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: taxi vertex schedule needs a command: create, delete, list, pause, resume "
        "(see 'taxi vertex schedule --help')"]
    assert main([]) == 0 and capsys.readouterr().out.startswith("Usage: taxi")


def test_help_imports_no_tensorflow_or_tfx() -> None:
    code = ("import sys; from cli.main import main\n"
            "for p in (['--help'], ['run', '--help'], ['vertex', 'compile', '--help'], ['runs', '--help']):\n"
            "    assert main(p) == 0\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'tfx', 'apache_beam', "
            "'tensorflow_model_analysis', 'google.cloud.aiplatform', 'kfp'})\n"
            "print('HEAVY', heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout


def test_python_dash_m_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "cli", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and "lineage" in done.stdout and "Exit codes" in done.stdout


def _options(command: click.Command) -> dict[str, click.Parameter]:
    return {opt: p for p in command.params for opt in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]}


def test_run_has_exactly_local_runners_flags_and_defaults() -> None:
    run = LazyGroup().get_command(click.Context(cli), "run")
    options = _options(run)
    for action in local_runner.build_parser()._actions:
        for flag in action.option_strings:
            if flag in ("-h", "--help"):
                continue
            assert flag in options, f"{flag} of local_runner.py is missing from `taxi run`"
            default = options[flag].default
            assert default == (action.default if action.default is not None else default), flag
    extra = {o for o in options if o.startswith("--")} - {o for a in local_runner.build_parser()._actions
                                                          for o in a.option_strings}
    assert extra <= {"--quiet", "--verbose", "--help"}


def test_run_hands_local_runner_the_same_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["--data", "d", "--output", "o", "--train-steps", "7", "--learning-rate", "0.01", "--no-cache",
            "--beam-args", "--direct_num_workers=2"]
    seen = []
    monkeypatch.setattr(local_runner, "execute", lambda args: seen.append(args) or 0)
    assert main(["run", *argv]) == 0
    argv[-2:] = ["--beam-args=--direct_num_workers=2"]  # argparse needs '=' for a value starting with '-'
    assert vars(seen[0]) == vars(local_runner.parse_args(argv))


def test_quiet_turns_off_live_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(local_runner, "execute", lambda args: seen.append(args) or 0)
    assert main(["-q", "run", "--output", "o"]) == 0
    assert seen[0].no_progress is True


def test_vertex_keeps_its_subcommands_and_flags() -> None:
    vertex = LazyGroup().get_command(click.Context(cli), "vertex")
    parser = vertex_runner.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(vertex.commands) == set(sub.choices)
    compile_flags = {o for a in sub.choices["compile"]._actions for o in a.option_strings} - {"-h", "--help"}
    assert compile_flags <= set(_options(vertex.commands["compile"]))


@pytest.mark.parametrize("argv,fragment", [
    (["run", "--train-steps", "0"], "error: train steps must be within [1, 2147483647], got 0"),
    (["run", "--data", "/no/such/folder"], "error:"),
    (["run", "--train-steps", "many"], "error: Invalid value for '--train-steps'"),
    (["runs", "--bogus"], "error: No such option '--bogus'"),
    (["nonsense"], "error: No such command 'nonsense'"),
    (["vertex", "compile", "--project", "Bad_Project"], "error: project 'Bad_Project'"),
    (["lineage"], "error: Missing argument 'VERSION'"),
    (["promote", "--wait", "nan"], "error: Invalid value for '--wait': 'nan' is not a number."),
    (["promote", "--if-healthy", "--max-p95-ms", "nan"], "error: Invalid value for '--max-p95-ms': 'nan' is not a number."),
    (["monitor", "--window-hours", "nan"], "error: Invalid value for '--window-hours': 'nan' is not a number."),
    (["predict", "--timeout", "nan", "rows.jsonl"], "error: Invalid value for '--timeout': 'nan' is not a number."),
    # an OverflowError traceback from the socket's timeout
    (["predict", "--timeout", "inf", "rows.jsonl"], "error: Invalid value for '--timeout': inf is not in the range"),
    (["predict", "--timeout", "1e10", "rows.jsonl"], "error: Invalid value for '--timeout': 10000000000.0 is not in"),
    # tried as URLs: retried for 1.6 s, then "cannot reach", exit 1
    (["predict", "--url", "127.0.0.1:18601", "rows.jsonl"], "error: Invalid value for '--url': '127.0.0.1:18601' is "
                                                            "not an http:// or https:// URL with a host"),
    (["predict", "--url", "ftp://x", "rows.jsonl"], "error: Invalid value for '--url': 'ftp://x' is not an http://"),
    (["predict", "--url", "", "rows.jsonl"], "error: Invalid value for '--url': '' is not an http://"),
    (["predict", "--version", "-1", "rows.jsonl"], "error: Invalid value for '--version': -1 is not in the range"),
    (["monitor", "--window-hours", "inf"], "error: Invalid value for '--window-hours': 'inf' is not a finite number."),
    (["promote", "--offline", "--output", "typo"], "error: output folder typo does not exist"),
    (["rollback", "--offline", "--config", "typo.config"], "error: --config typo.config does not exist"),
    (["labels", "--config", "typo.config"], "error: --config typo.config does not exist"),
    (["report", "--run", ""], "error: --run is empty; `taxi runs` lists the run ids"),
    (["runs", "--output", ""], "error: Invalid value for '-o' / '--output': empty"),  # read ./metadata.sqlite
    (["report", "--output", " "], "error: Invalid value for '-o' / '--output': empty"),
    (["lineage", "1", "--output", ""], "error: Invalid value for '-o' / '--output': empty"),
    (["monitor", "--output", ".", "--since", "nan"], "error: --since 'nan' is not a time"),
    (["monitor", "--output", ".", "--since", "2026-11-23T22:00:00Z", "--until", "2026-11-23T21:00:00Z"],
     "error: --since must be before --until"),  # the Z is read, not refused
    (["monitor", "--config", "typo.config", "--retrain", "--data", "spans"], "error: --config typo.config does not"),
    # stdout would be the report's JSON followed by the trigger's and the pipeline run's lines: no JSON at all
    (["monitor", "--json", "--retrain", "--data", "spans"], "error: --json cannot be combined with --retrain"),
])
def test_bad_input_is_one_error_line_and_exit_2(argv: list[str], fragment: str, tmp_path, monkeypatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(fragment), err
    assert not list(tmp_path.iterdir())  # no lock, history or output folder left behind by a refused command


@pytest.mark.parametrize("command", [["runs"], ["lineage", "1"]])
def test_damaged_metadata_store_is_one_error_line(command: list[str], tmp_path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "metadata.sqlite").write_bytes(b"\x00garbage" * 8)
    assert main([*command, "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: metadata store {tmp_path / 'metadata.sqlite'} is not a SQLite database (damaged?)"], err


def test_monitor_refuses_a_bad_schema_or_report_folder_before_any_work(tmp_path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "not_a_schema.pbtxt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "a_file").write_text("")
    assert main(["monitor", "--output", str(tmp_path), "--schema", str(tmp_path / "not_a_schema.pbtxt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: schema file {tmp_path / 'not_a_schema.pbtxt'} is not a TFMD Schema"), err
    assert main(["monitor", "--output", str(tmp_path), "--report-dir", str(tmp_path / "a_file")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: report folder {tmp_path / 'a_file'} cannot be written (File exists); pass another "
                   "--report-dir"], err
