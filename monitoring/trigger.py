"""Retraining trigger: decide (skew over threshold, or a newer span than the model in service), then run.

The run goes through local_runner.py in a subprocess, the entry point a person
uses, in the trigger's own working folder, so a triggered run is
indistinguishable from a manual one in MLMD, logs and labels. A run that would
repeat the last completed run exactly (local_runner's own "nothing changed"
check, pipeline/up_to_date.py) is not started: its record says how that run
ended, e.g. a model the Evaluator refused. An fcntl lock file makes a second trigger (cron overlapping a slow
run, or a person) refuse instead of starting a second pipeline on the same
MLMD store; the OS drops the lock if the trigger dies. Every decision, with its
reason, is appended to <output>/monitoring/decisions.jsonl.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from monitoring.labels import Deployment
from monitoring.lineage import LineageBusy, LineageError, VersionRecord, version_record
from monitoring.skew import SkewReport
from pipeline import run_lock

ROOT = Path(__file__).resolve().parent.parent


class TriggerBusy(RuntimeError):
    """Not now: another triggered run holds the lock, or another process the MLMD store."""


class RunTimedOut(RuntimeError):
    """The run went on past RUN_TIME_LIMIT_S and was stopped (logged as finished, exit code 1)."""


RUN_TIME_LIMIT_S = 3 * 3600


class TriggerError(ValueError):
    """The trigger cannot decide or record (bad data folder or span, the model in service, an unwritable lock or log)."""


@dataclasses.dataclass
class Decision:
    retrain: bool
    reasons: list[str]  # why to retrain, or (retrain False) why not
    span: int | None  # span to train on (None: the runner's default)
    model_version: int | None
    model_span: int | None
    model: str = "taxi"  # the model the decision is about, and the run trains and labels (--model-name)


def monitoring_dir(output: str) -> Path:
    return Path(output) / "monitoring"


def log_decision(output: str, entry: dict) -> None:
    """One JSON line per decision or outcome; never lost to a crash mid-line (append, flush). TriggerError: unwritable."""
    path = monitoring_dir(output) / "decisions.jsonl"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write(json.dumps({"ts": time.time(), **entry}) + "\n")
    except OSError as error:
        raise TriggerError(f"cannot write {path}: {error.strerror or error}") from None


@dataclasses.dataclass(frozen=True)
class Learned:
    """A pushed version and what it was trained on: the span, and ExampleGen's fingerprint of the files read."""

    version: int | None = None
    span: int | None = None
    read: str | None = None
    base: str | None = None  # the data folder as that run spelled it

    @classmethod
    def of(cls, record: VersionRecord) -> Learned:
        return cls(record.version, record.span, record.input_fingerprint, record.input_base)

    def still_reads(self, data_root: str, span: int | None) -> bool:
        """Whether a run on `span` of `data_root` would read the files this version learned, as they were: the
        same names and contents. The folder is taken as this version's run spelled it when both name the same
        one (a symlink, another mount path): the fingerprint hashes the paths."""
        from pipeline.spans import input_fingerprint

        same = self.base is not None and os.path.realpath(self.base) == os.path.realpath(data_root)
        return self.read is not None and self.read == input_fingerprint(self.base if same else data_root, span)


def _in_service(output: str, model: str, config: str | None = None) -> Learned:
    """The model in service, as `monitor` finds it; Learned() when nothing is pushed."""
    from monitoring.labels import LabelError
    from monitoring.monitor import MonitorError, NoVerdict, model_in_service

    try:
        version = model_in_service(Deployment.for_output(output, model, config))
    except NoVerdict:
        return Learned()
    except (MonitorError, LabelError) as error:  # a stable label on a deleted version, a damaged models.config
        raise TriggerError(str(error)) from None
    try:
        return Learned.of(version_record(output, version))
    except LineageBusy as error:
        raise TriggerBusy(f"cannot tell which span version {version} was trained on now: {error}") from None
    except LineageError as error:  # no MLMD store, or it lost the version: "current" would be a guess
        raise TriggerError(f"cannot tell which span version {version} was trained on: {error}") from None


def _newer_push(output: str, model: str, version: int | None) -> Learned:
    """The newest push when it is newer than the model in service (a canary not promoted yet, or a version
    rolled back from); Learned() when there is none, span None when MLMD cannot place it."""
    pushed = Deployment.for_output(output, model).pushed()
    if version is None or not pushed or pushed[-1] <= version:
        return Learned()
    try:
        return Learned.of(version_record(output, pushed[-1]))
    except LineageError:
        return Learned(pushed[-1])


def decide(output: str, data: str, model: str = "taxi", skew: SkewReport | None = None,
           span: int | None = None, config: str | None = None, runner_args: Sequence[str] = ()) -> Decision:
    """Why (or why not) to retrain now. config: the models.config whose labels are served (default: the output's);
    runner_args: the local_runner.py flags the run would get (a run that would repeat the last one is not started)."""
    from pipeline import spans as span_lib
    from pipeline.configs import ConfigError

    in_service = _in_service(output, model, config)
    version, model_span = in_service.version, in_service.span
    newer = _newer_push(output, model, version)
    try:
        chosen, _ = span_lib.choose_spans(data, span)
    except ConfigError as error:
        raise TriggerError(str(error)) from None
    # The run's flags are checked whatever the decision: a cron line whose flags after -- would stop the run must
    # fail now, not pass as "current" every hour until a new span lands.
    args, run_config = _runner_config(output, data, chosen, runner_args, model)
    what = f"the data in {data}" if chosen is None else f"span {chosen}"
    trained_on = "the flat data folder" if chosen is None else f"span {model_span}"
    reasons, waiting = [], []
    latest = in_service  # the push that learned the newest data
    if version is None:
        reasons.append("no model is pushed yet")
    elif (newer.version is not None and (chosen is None or newer.span == chosen)
          and newer.still_reads(run_config.data_root, chosen)):
        # the same run again: the same model, or the drift gate
        latest = newer
        waiting.append(f"{what} is already learned by version {newer.version}, pushed after the model in service "
                       f"({version}, {trained_on}): promote it, or wait for "
                       + ("new data" if chosen is None else "a new span"))
    elif chosen is None or chosen == model_span:
        if not in_service.still_reads(run_config.data_root, chosen):  # a file added, removed or edited since
            reasons.append(f"{what} changed since the model in service (version {version}) learned it")
    elif model_span is not None and chosen > model_span:
        if newer.span == chosen:
            reasons.append(f"span {chosen} changed since version {newer.version} learned it")
        elif newer.span is not None and newer.span > chosen and span is None:
            latest = newer
            waiting.append(f"version {newer.version}, pushed after the model in service ({version}, span "
                           f"{model_span}), learned span {newer.span}, later than span {chosen}, the latest in "
                           f"{data}: promote it, or wait for a new span")
        else:
            reasons.append(f"span {chosen} landed after the model in service (version {version}, "
                           f"trained on span {model_span})")
    if span is not None and chosen is not None and chosen != model_span and not reasons and not waiting:
        reasons.append(f"span {chosen} requested (model in service trained on span {model_span})")
    skewed = None
    if skew is not None and skew.over and skew.version != version:
        waiting.append(f"the skew report is on version {skew.version}, not the model in service ({version}): "
                       "not counted")
    elif skew is not None and skew.over:
        skewed = f"{skew.what_is_wrong()} (report on version {skew.version})"
    if skewed and (reasons or model_span is None and chosen is not None):
        reasons.append(skewed)
    if reasons:
        tried = _already_tried(run_config, args.rerun, what)
        if tried:
            return Decision(False, [tried], chosen, version, model_span, model)
        return Decision(True, reasons, chosen, version, model_span, model)
    if skewed:  # training is seeded: the same data gives the same model, pushed again as a new canary each time
        who = f"version {latest.version}" if latest is newer else f"the model in service (version {version})"
        learned = what if chosen is None or latest.span == chosen else (
            f"span {latest.span}, and span {chosen} is the latest in {data}")
        waiting.append(f"{skewed}, but {who} already learned {learned}: retraining would fit the same rows "
                       "again; waiting for " + ("new data" if chosen is None else "a new span"))
    return Decision(False, waiting or [f"model {version} trained on {trained_on} is current and "
                                       + ("no skew found" if skew is not None else "no skew report")],
                    chosen, version, model_span, model)


OWN_FLAGS = ("--data", "--output", "--no-progress", "--span", "--model-name")  # what runner_flags() sets itself


def runner_flags(data: str, output: str, span: int | None, runner_args: Sequence[str], model: str = "taxi") -> list[str]:
    """local_runner.py's flags for a triggered run of `model` on `span` (None: a flat data folder)."""
    flags = ["--data", data, "--output", output, "--no-progress", "--model-name", model]
    if span is not None:
        flags += ["--span", str(span)]
    return flags + list(runner_args)


def _parsed(flags: Sequence[str]):  # noqa: ANN202 - argparse.Namespace
    """local_runner.py's own parser on the flags; TriggerError instead of argparse's exit."""
    import local_runner

    parser = local_runner.build_parser()

    def refuse(message: str) -> None:
        raise TriggerError(f"not a trigger flag, nor a local_runner.py flag after --: {message}")

    parser.error = refuse
    return parser.parse_args(list(flags))


def _as_argparse_reads(name: str, options: list[str]) -> str | None:
    """The option argparse takes `name` for: itself, or the one option it abbreviates (`--out`: --output)."""
    if name in options:
        return name
    matches = [option for option in options if option.startswith(name)]
    return matches[0] if len(matches) == 1 else None


def check_runner_args(runner_args: list[str]) -> None:
    """local_runner.py's own parser reads them before a retrain decision is logged (a dry run too):
    a misspelt trigger flag (--dryrun) lands here and must not start a run. TriggerError says why."""
    import local_runner

    options = [o for action in local_runner.build_parser()._actions for o in action.option_strings]
    for arg in runner_args:
        name = arg.split("=")[0]
        meant = _as_argparse_reads(name, options) if name.startswith("--") else None
        if meant in OWN_FLAGS:
            spelled = arg if meant == name else f"{arg} ({meant})"
            own = {"--model-name": "--model"}.get(meant)
            raise TriggerError(f"{spelled} is set by trigger itself; pass {own or 'it'} to trigger, not after --")
    _parsed(runner_args)


def _runner_config(output: str, data: str, span: int | None, runner_args: Sequence[str],  # noqa: ANN202
                   model: str = "taxi"):
    """(local_runner's parsed flags, the config of the run it would start); TriggerError where that run would
    stop at its flags."""
    import local_runner
    from pipeline.configs import ConfigError, StoreBusy

    args = _parsed(runner_flags(data, output, span, runner_args, model))
    try:
        return args, local_runner.build_config(args, write=False)
    except StoreBusy as error:
        raise TriggerBusy(str(error)) from None
    except ConfigError as error:
        raise TriggerError(str(error)) from None


def _already_tried(config, rerun: bool, what: str) -> str | None:  # noqa: ANN001 - PipelineConfig
    """Why not to start a run that would repeat the last completed run, or the last run the data gate stopped,
    exactly (the same data files, schema, code, config and outputs), from the record that run left; None when
    it would not.

    Training is seeded, so a span whose model the Evaluator refused gets the
    same refusal until something the run depends on changes; the gate is
    deterministic, so a span it stopped is stopped again (every hour, exit 2).
    """
    from pipeline import up_to_date

    record, stop = up_to_date.last_runs(config, rerun)
    if record is None and stop is not None:
        return (f"{what} was stopped by the data gate at {stop.get('stopped_at', '?')}: {stop.get('why', '?')}; "
                "not retrying until the data or the pipeline changes")
    if record is None:
        return None
    when = str(record.get("run_id", "?")).replace("T", " ").split(".")[0]
    if record.get("blessed") is False:
        why = "; ".join(record.get("not_blessed_because") or [f"see run {record.get('run_id')}"])
        outcome = f"not blessed: {why}"
    else:
        outcome = "blessed" if record.get("blessed") else "not evaluated"
    return f"{what} was retrained at {when} and {outcome}; not retrying until the data or the pipeline changes"


def _run_to_the_end(command: list[str], timeout: float) -> int:
    """The run's exit code. A SIGTERM to the trigger (cron's timeout, systemd stop) is passed on and waited for:
    a run left behind would go on unlogged, and the released lock would let the next trigger start a second.
    Ctrl-C reaches the run from the terminal by itself; the trigger waits for it to end. A run still going after
    `timeout` seconds is stopped, and subprocess.TimeoutExpired raised once it has ended."""
    child = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT)})  # in the trigger's folder, as its paths
    handlers = {}
    try:
        handlers = {signal.SIGTERM: signal.signal(signal.SIGTERM, lambda signum, _frame: child.send_signal(signum)),
                    signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    except ValueError:  # not the main thread: signals stay as they are
        pass
    try:
        return child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.terminate()
        child.wait()
        raise
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)


def run(decision: Decision, output: str, data: str, runner_args: list[str] = (), timeout: float | None = None) -> int:
    """Start local_runner.py under the lock; returns its exit code. TriggerBusy when a run holds the lock,
    TriggerError when the lock or the decision log cannot be written, RunTimedOut when the run was stopped after
    `timeout` seconds (default RUN_TIME_LIMIT_S)."""
    timeout = RUN_TIME_LIMIT_S if timeout is None else timeout
    lock_path = monitoring_dir(output) / "trigger.lock"
    try:
        with run_lock.held(lock_path):
            command = [sys.executable, str(ROOT / "local_runner.py"), *runner_flags(data, output, decision.span,
                                                                                  runner_args, decision.model)]
            log_decision(output, {"decision": "retrain", "reasons": decision.reasons, "command": command})
            sys.stdout.flush()
            try:
                code = _run_to_the_end(command, timeout)
            except subprocess.TimeoutExpired:
                log_decision(output, {"decision": "finished", "exit_code": 1, "timed_out_after_s": timeout,
                                      "command": command})
                limit = f"{timeout / 3600:g} h" if timeout >= 3600 else f"{timeout:g} s"
                raise RunTimedOut(f"the triggered pipeline run took longer than the trigger's limit of {limit} "
                                  "and was stopped") from None
            log_decision(output, {"decision": "finished", "exit_code": code, "command": command})
            return code
    except run_lock.LockUnavailable as error:  # a read-only output folder: nothing was started
        raise TriggerError(str(error)) from None
    except run_lock.LockBusy as busy:
        log_decision(output, {"decision": "skip", "reasons": decision.reasons,
                              "why": f"another triggered run is in progress ({busy})"})
        raise TriggerBusy(f"another triggered pipeline run is in progress ({busy}); not starting a second") from None
