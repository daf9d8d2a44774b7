"""Skip a local run when nothing it depends on changed since the last completed run.

TFX's own cache would make every component a hit in that case, but reaching
that verdict costs ~10 s of importing TensorFlow, Beam and TFMA before the first
cache lookup. This check hashes the same inputs TFX's cache keys on (data
files, schema, the code every component runs, config, the environment) plus
the state of the outputs, without importing any of them. Anything different, or a
missing output, and the run goes to TFX, whose cache then decides per component.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from pathlib import Path

from common.atomic_files import replace_whole
from pipeline.configs import PipelineConfig
from pipeline.data_files import is_hidden
from pipeline.fingerprints import PIPELINE_CODE, CodeIndex, FileHashes, folder_digest

STATE_FILE = "last_completed_run.json"
GATE_STOP_FILE = "last_gate_stop.json"


# How a run is made, not what it makes: a run with --no-cache computes what a cached one would reuse.
RUN_MODE_FIELDS = ("enable_cache",)


def fingerprint(config: PipelineConfig, code: CodeIndex | None = None, files: FileHashes | None = None) -> str:
    """The config (the environment in it) but RUN_MODE_FIELDS, the data, the schema and the code of every component."""
    digest = hashlib.sha256()
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in RUN_MODE_FIELDS}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    files = files or FileHashes()
    for path in [*data_files(Path(config.data_root)), Path(config.schema_path)]:
        digest.update(f"{path}\0{files.sha256(path)}\0".encode())
    digest.update((code or CodeIndex()).digest(PIPELINE_CODE).encode())
    return digest.hexdigest()


def data_files(root: Path) -> list[Path]:
    """Every file under `root` but hidden ones (a .DS_Store, a lock file: not data, no retrain), sorted, through
    symlinked folders too (span-4 -> /mnt/exports/2016): Path.rglob does not enter them, and an edit there passed
    as "nothing changed". A folder reached twice (a link back up) is read once."""
    found, seen = [], set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders[:] = [name for name in subfolders if not is_hidden(name)]
        found += [Path(folder, name) for name in names if not is_hidden(name) and os.path.isfile(Path(folder, name))]
    return sorted(found)


def _outputs_state(config: PipelineConfig) -> list[str]:
    """What must still be on disk, as it was, for the last run's results to stand: the MLMD store and the
    pushed versions, each with the hash of its files (a version deleted or edited by hand is pushed again)."""
    state = [f"metadata:{os.path.exists(config.metadata_path or '')}"]
    serving = Path(config.serving_model_dir)
    if serving.is_dir():
        state += sorted(f"{p.name}:{folder_digest(str(p))}" for p in serving.iterdir()
                        if (p / "saved_model.pb").exists())
    return state


def _state_path(config: PipelineConfig, name: str = STATE_FILE) -> Path:
    return Path(config.pipeline_root) / name


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What a run depends on, hashed before it starts: a record must name the inputs the run read, not what is
    there when it ends (a file landing mid-run, never trained on, was recorded as trained on: the next run said
    "nothing changed" and the trigger never retried)."""

    fingerprint: str
    code_parsed: dict  # what the next check need not parse again
    files_hashed: dict  # what the next check need not read again (fingerprints.FileHashes)


def _read_record(config: PipelineConfig, name: str) -> dict | None:
    try:
        record = json.loads(_state_path(config, name).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def inputs_now(config: PipelineConfig) -> Inputs:
    """The inputs as they are now; the code the records parsed is not parsed again, nor files unchanged since."""
    parsed, hashed = {}, {}
    for name in (STATE_FILE, GATE_STOP_FILE):
        record = _read_record(config, name) or {}
        for known, field in ((parsed, "code_parsed"), (hashed, "files_hashed")):
            if isinstance(record.get(field), dict):
                known.update(record[field])
    code, files = CodeIndex(known=parsed), FileHashes(hashed)
    return Inputs(fingerprint(config, code, files), code.known, files.kept)


def _matching_records(config: PipelineConfig, names: tuple[str, ...], inputs: Inputs | None = None) -> list[dict | None]:
    """Per name, the record in that file if it was left by a run of exactly these inputs and outputs; else None.
    The inputs and outputs are hashed once, and only when some record is there to compare with."""
    records = [_read_record(config, name) for name in names]
    if not any(records):
        return [None] * len(records)
    now = ((inputs or inputs_now(config)).fingerprint, _outputs_state(config))
    return [r if r and (r.get("fingerprint"), r.get("outputs")) == now else None for r in records]


def _write_record(config: PipelineConfig, name: str, inputs: Inputs | None, **fields) -> None:
    """`inputs`: as hashed before the run started (None: now, for a record of no run)."""
    path = _state_path(config, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = inputs or inputs_now(config)
    record = {
        "fingerprint": inputs.fingerprint,
        "code_parsed": inputs.code_parsed,
        "files_hashed": inputs.files_hashed,
        "outputs": _outputs_state(config),  # as the run left them
        **fields,
    }
    replace_whole(path, json.dumps(record, indent=2))


def unchanged_since_last_run(config: PipelineConfig, inputs: Inputs | None = None) -> dict | None:
    """The record of the last completed run if this run would repeat it exactly.

    Its keys: run_id, summary (the lines the run printed), blessed (True,
    False, or None when nothing was evaluated) and not_blessed_because.
    """
    return _matching_records(config, (STATE_FILE,), inputs)[0]


def repeated_run(config: PipelineConfig, rerun: bool = False, inputs: Inputs | None = None) -> dict | None:
    """The last completed run's record when a local run of `config` would do nothing but repeat it
    (TFX caching on, no --rerun, nothing changed); None when it would go to TFX."""
    return unchanged_since_last_run(config, inputs) if _may_repeat(config, rerun) else None


def _may_repeat(config: PipelineConfig, rerun: bool) -> bool:
    """--no-cache and --rerun ask for the run whatever the last one did."""
    return config.enable_cache and not rerun


def record_completed_run(config: PipelineConfig, run_id: str, summary_lines: list[str], blessed: bool | None = None,
                         not_blessed_because: list[str] = (), inputs: Inputs | None = None) -> None:
    """`inputs`: inputs_now() taken before the run started."""
    _write_record(config, STATE_FILE, inputs, run_id=run_id, summary=summary_lines, blessed=blessed,
                  not_blessed_because=list(not_blessed_because))


def record_gate_stop(config: PipelineConfig, stopped_at: str, why: str, inputs: Inputs | None = None) -> None:
    """A run the data gate stopped: the same inputs are stopped again (the gate is deterministic). Not written
    (a full disk): the stop is still reported as it is, and the trigger only tries the span again."""
    with contextlib.suppress(OSError):
        _write_record(config, GATE_STOP_FILE, inputs, stopped_at=stopped_at, why=why)


def last_runs(config: PipelineConfig, rerun: bool = False) -> tuple[dict | None, dict | None]:
    """The records of the last completed run and of the last run the data gate stopped (stopped_at, why), each
    where this run would repeat it exactly (and so meet the same stop); None with --rerun, --no-cache, or when
    anything it depends on changed (--accept-drift among them)."""
    if not _may_repeat(config, rerun):
        return None, None
    completed, stopped = _matching_records(config, (STATE_FILE, GATE_STOP_FILE))
    return completed, stopped
