"""The 'nothing changed' check (pipeline/up_to_date.py): what makes a run repeat the last completed one."""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from pipeline import configs, fingerprints, up_to_date
from pipeline.data import bundled_taxi_data


def _completed(tmp_path: Path, **settings) -> configs.PipelineConfig:
    config = dataclasses.replace(configs.local_config(bundled_taxi_data(), str(tmp_path / "out")), **settings)
    Path(config.metadata_path).parent.mkdir(parents=True, exist_ok=True)
    Path(config.metadata_path).write_bytes(b"")
    up_to_date.record_completed_run(config, "run-1", ["summary"], blessed=True)
    return config


def _data_folder(tmp_path: Path) -> configs.PipelineConfig:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("fare,tips\n1,0\n")
    config = configs.local_config(str(data), str(tmp_path / "out"))
    Path(config.metadata_path).parent.mkdir(parents=True, exist_ok=True)
    Path(config.metadata_path).write_bytes(b"")
    return config


def test_a_run_after_a_no_cache_run_of_the_same_inputs_repeats_it(tmp_path) -> None:
    """--no-cache recomputes what a cached run would reuse: the trigger and the next `make run` must not
    retrain because the last run happened to be made with --no-cache."""
    config = _completed(tmp_path, enable_cache=False)
    assert up_to_date.repeated_run(config) is None  # caching off: always goes to TFX
    record = up_to_date.repeated_run(dataclasses.replace(config, enable_cache=True))
    assert record is not None and record["run_id"] == "run-1"


def test_a_setting_that_changes_the_model_is_not_a_repeat(tmp_path) -> None:
    config = _completed(tmp_path)
    assert up_to_date.repeated_run(config)["run_id"] == "run-1"
    assert up_to_date.repeated_run(dataclasses.replace(config, train_steps=config.train_steps + 1)) is None
    assert up_to_date.repeated_run(config, rerun=True) is None


def test_data_that_lands_while_a_run_goes_is_not_recorded_as_read(tmp_path) -> None:
    """The record hashed the data when the run ended: a file copied in mid-run (never trained on) was in it, so
    the next run said "nothing changed" and the model never saw those rows; the trigger did not retry either."""
    config = _data_folder(tmp_path)
    data = tmp_path / "data"
    taken = up_to_date.inputs_now(config)  # as local_runner takes them, before TFX reads the data
    (data / "b.csv").write_text("fare,tips\n2,1\n")  # lands while the run trains on a.csv
    up_to_date.record_completed_run(config, "run-1", ["summary"], inputs=taken)
    assert up_to_date.repeated_run(config) is None  # b.csv is new to the model: the next run goes to TFX
    (data / "b.csv").unlink()
    assert up_to_date.repeated_run(config)["run_id"] == "run-1"


def test_a_run_the_data_gate_stopped_is_known_until_its_inputs_change(tmp_path) -> None:
    """The trigger asks before retrying a span the gate stopped: the same inputs meet the same stop."""
    config = configs.local_config(bundled_taxi_data(), str(tmp_path / "out"))
    assert up_to_date.last_runs(config)[1] is None
    up_to_date.record_gate_stop(config, "2026-11-24 10:00:00", "drift above threshold in 1 feature")
    assert up_to_date.last_runs(config)[1]["why"] == "drift above threshold in 1 feature"
    assert up_to_date.repeated_run(config) is None  # a stop is not a completed run: local_runner still runs
    for asks_anyway in (dataclasses.replace(config, accept_drift=True), dataclasses.replace(config, enable_cache=False)):
        assert up_to_date.last_runs(asks_anyway)[1] is None
    assert up_to_date.last_runs(config, rerun=True)[1] is None


def test_a_gate_stop_that_cannot_be_recorded_is_still_only_a_stop(tmp_path) -> None:
    config = configs.local_config(bundled_taxi_data(), str(tmp_path / "out"))
    (Path(config.pipeline_root) / up_to_date.GATE_STOP_FILE).mkdir(parents=True)  # in the record's place
    up_to_date.record_gate_stop(config, "2026-11-24 10:00:00", "1 anomaly against the schema")
    assert up_to_date.last_runs(config)[1] is None


def test_an_edit_in_a_symlinked_span_folder_is_a_change(tmp_path) -> None:
    """span-2 -> an export folder elsewhere: Path.rglob did not enter it, so rows edited there were
    "nothing changed" and the model stayed stale."""
    exports = tmp_path / "exports" / "2014"
    exports.mkdir(parents=True)
    (exports / "data.csv").write_text("fare,tips\n1,0\n2,1\n")
    data = tmp_path / "data"
    (data / "span-1").mkdir(parents=True)
    (data / "span-1" / "data.csv").write_text("fare,tips\n3,0\n")
    (data / "span-2").symlink_to(exports)
    (data / "span-1" / "loop").symlink_to(data)  # a link back up is read once, not for ever
    config = dataclasses.replace(configs.local_config(bundled_taxi_data(), str(tmp_path / "out")),
                                 data_root=str(data))
    assert [p.relative_to(data).as_posix() for p in up_to_date.data_files(data)] == [
        "span-1/data.csv", "span-2/data.csv"]
    before = up_to_date.fingerprint(config)
    (exports / ".~lock.data.csv#").write_text("an editor's lock file")
    assert up_to_date.fingerprint(config) == before
    (exports / "data.csv").write_text("fare,tips\n1,0\n")
    assert up_to_date.fingerprint(config) != before


def _settled(monkeypatch) -> None:
    """Files written so far count as settled: the test need not wait SETTLED_NS (2 s) for them."""
    monkeypatch.setattr(fingerprints, "SETTLED_NS", 50_000_000)
    time.sleep(0.1)


def test_an_unchanged_data_file_is_not_read_again(tmp_path, monkeypatch) -> None:
    """The check read every data file on every run and every trigger tick (seconds a gigabyte): a file whose
    stat is as the last completed run saw it is taken at the hash that run read."""
    config = _data_folder(tmp_path)
    _settled(monkeypatch)
    up_to_date.record_completed_run(config, "run-1", ["summary"])
    data_file = str(tmp_path / "data" / "a.csv")
    reads = []
    real_blocks = fingerprints._blocks
    monkeypatch.setattr(fingerprints, "_blocks", lambda path: reads.append(str(path)) or real_blocks(path))
    assert up_to_date.repeated_run(config)["run_id"] == "run-1"
    assert data_file not in reads
    Path(data_file).write_text("fare,tips\n2,0\n")  # same size, another row
    assert up_to_date.repeated_run(config) is None
    assert data_file in reads


def test_an_edit_that_keeps_size_and_mtime_is_still_a_change(tmp_path, monkeypatch) -> None:
    """rsync -t or touch -r restore a file's mtime; its ctime still moves, and the file is read again."""
    config = _data_folder(tmp_path)
    _settled(monkeypatch)
    up_to_date.record_completed_run(config, "run-1", ["summary"])
    data_file = tmp_path / "data" / "a.csv"
    before = data_file.stat()
    data_file.write_text("fare,tips\n9,1\n")
    os.utime(data_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert data_file.stat().st_mtime_ns == before.st_mtime_ns and data_file.stat().st_size == before.st_size
    assert up_to_date.repeated_run(config) is None


def test_a_file_written_just_before_it_is_read_is_read_again_next_time(tmp_path) -> None:
    """A write in the same clock tick as the read leaves the stamp as it was: such a file's hash is not kept."""
    config = _data_folder(tmp_path)  # a.csv written a moment ago
    taken = up_to_date.inputs_now(config)
    assert str(tmp_path / "data" / "a.csv") not in taken.files_hashed
    assert taken.fingerprint == up_to_date.inputs_now(config).fingerprint
