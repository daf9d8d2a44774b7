"""Outputs that a past run made and that are gone or changed since: a pushed model, the MLMD store.

TFX's cache reuses a Pusher execution as long as its PushedModel artifact is
LIVE in MLMD, whatever became of the folder it pushed. A pushed version
deleted or edited by hand stayed so: the re-run reported the model as pushed
and served nothing, or a damaged copy. Here, on a real SQLite MLMD store: such
a push is forgotten (its artifact no longer LIVE, so TFX does not reuse it and
the Pusher runs again), and the "nothing changed" check sees the edit.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline import configs, fingerprints, up_to_date
from pipeline.data import bundled_taxi_data

ROOT = Path(__file__).resolve().parents[2]
LIVE, DELETED = metadata_store_pb2.Artifact.LIVE, metadata_store_pb2.Artifact.DELETED


def _version(base: Path, name: str = "1700000000") -> Path:
    """A pushed model's folder as the Pusher writes it (the files' contents do not matter here)."""
    folder = base / name
    (folder / "variables").mkdir(parents=True)
    (folder / "variables" / "variables.index").write_bytes(b"\x00index")
    (folder / "saved_model.pb").write_bytes(b"graph")
    return folder


def _store(path: Path) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def _push(store: metadata_store.MetadataStore, folder: Path, pushed: bool) -> int:
    """A PushedModel as the Pusher records it: pushed to `folder`, or not pushed for being identical to it."""
    type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="PushedModel"))
    artifact = metadata_store_pb2.Artifact(type_id=type_id, uri=str(folder.parent / "archive"), state=LIVE)
    artifact.custom_properties["pushed"].int_value = int(pushed)
    key = "pushed_destination" if pushed else "identical_to"
    artifact.custom_properties[key].string_value = str(folder)
    artifact.custom_properties["served_digest"].string_value = fingerprints.folder_digest(str(folder))
    return store.put_artifacts([artifact])[0]


def _states(store: metadata_store.MetadataStore, ids: list[int]) -> list[int]:
    return [a.state for a in store.get_artifacts_by_id(ids)]


@pytest.fixture
def pushes(tmp_path: Path) -> tuple[Path, Path, list[int]]:
    """An MLMD store holding a push of a version and a later 'identical to it, not pushed again'."""
    folder = _version(tmp_path / "serving_model" / "taxi")
    store = _store(tmp_path / "metadata.sqlite")
    ids = [_push(store, folder, pushed=True), _push(store, folder, pushed=False)]
    return tmp_path / "metadata.sqlite", folder, ids


def test_pushes_whose_version_is_intact_stand(pushes) -> None:
    from pipeline import lost_outputs

    metadata, _, ids = pushes
    assert lost_outputs.forget_lost_pushes(str(metadata)) == []
    assert _states(_store(metadata), ids) == [LIVE, LIVE]


@pytest.mark.parametrize("lose", ["deleted", "edited"])
def test_a_pushed_version_deleted_or_edited_is_forgotten_so_the_pusher_runs_again(pushes, lose) -> None:
    import shutil

    from pipeline import lost_outputs

    metadata, folder, ids = pushes
    if lose == "deleted":
        shutil.rmtree(folder)
    else:
        index = folder / "variables" / "variables.index"
        stat = index.stat()
        index.write_bytes(b"\x00INDEX")  # same size, time restored: only the content says
        os.utime(index, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert lost_outputs.forget_lost_pushes(str(metadata)) == [str(folder)]
    assert _states(_store(metadata), ids) == [DELETED, DELETED]


def test_the_nothing_changed_check_sees_an_edited_pushed_version(tmp_path) -> None:
    config = configs.local_config(bundled_taxi_data(), str(tmp_path / "out"))
    folder = _version(Path(config.serving_model_dir))
    Path(config.metadata_path).write_bytes(b"")
    up_to_date.record_completed_run(config, "run-1", ["summary"])
    assert up_to_date.unchanged_since_last_run(config)["run_id"] == "run-1"
    index = folder / "variables" / "variables.index"
    stat = index.stat()
    index.write_bytes(b"\x00INDEX")  # same size, time restored
    os.utime(index, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert up_to_date.unchanged_since_last_run(config) is None


def test_outputs_left_without_their_metadata_store_are_set_aside(tmp_path) -> None:
    """Without MLMD the next run's executions are numbered from 1 again, into output folders that exist:
    the run failed in ImportSchemaGen with 'file already exists'."""
    from pipeline import lost_outputs

    config = configs.local_config(bundled_taxi_data(), str(tmp_path / "out"))
    assert lost_outputs.set_aside_orphaned_outputs(config) is None  # a first run: nothing there
    schema = Path(config.pipeline_root) / "ImportSchemaGen" / "schema" / "2"
    schema.mkdir(parents=True)
    Path(config.metadata_path).write_bytes(b"")
    assert lost_outputs.set_aside_orphaned_outputs(config) is None  # the store is there: its outputs are its own
    os.remove(config.metadata_path)
    moved = lost_outputs.set_aside_orphaned_outputs(config)
    assert moved is not None and not os.path.exists(config.pipeline_root)
    assert (Path(moved) / "ImportSchemaGen" / "schema" / "2").is_dir()
    assert Path(moved).parent == Path(config.pipeline_root).parent


def test_an_output_folder_moved_or_copied_is_named_with_where_its_store_recorded_the_outputs(tmp_path) -> None:
    """MLMD records outputs by absolute path: after `mv tfx_output elsewhere` every run failed in the Evaluator
    ('SavedModel file does not exist at <old path>'); a copy silently built on the original's outputs."""
    import shutil

    from pipeline import lost_outputs

    def config_of(output: Path) -> configs.PipelineConfig:
        return configs.local_config(bundled_taxi_data(), str(output))

    original = tmp_path / "out"
    config = config_of(original)
    assert lost_outputs.moved_from(config) is None  # no store yet
    original.mkdir()
    store = _store(Path(config.metadata_path))
    type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="Model"))
    uri = Path(config.pipeline_root) / "Trainer" / "model" / "7"
    store.put_artifacts([metadata_store_pb2.Artifact(type_id=type_id, uri=str(uri), state=LIVE)])
    _push(store, _version(original / "serving_model" / "taxi"), pushed=True)  # its archive: under serving_model
    del store
    assert lost_outputs.moved_from(config) is None  # in place
    (tmp_path / "link").symlink_to(original)
    assert lost_outputs.moved_from(config_of(tmp_path / "link")) is None  # the same folder by another path

    def refused(output: Path, says: str) -> None:
        """As a user meets it: one line naming both folders and what to do, exit 2, its store untouched."""
        before = (output / "metadata.sqlite").read_bytes()
        done = subprocess.run([sys.executable, str(ROOT / "local_runner.py"), "--output", str(output)],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"error: {output} {says} {original}:") and "a new output folder" in done.stderr
        assert (output / "metadata.sqlite").read_bytes() == before and not (output / "logs").exists()

    shutil.copytree(original, tmp_path / "copy")
    assert lost_outputs.moved_from(config_of(tmp_path / "copy")) == str(original)
    refused(tmp_path / "copy", "is a copy of")
    os.rename(original, tmp_path / "moved")
    assert lost_outputs.moved_from(config_of(tmp_path / "moved")) == str(original)
    refused(tmp_path / "moved", "was moved from")


def test_the_pusher_and_the_checks_hash_a_version_folder_alike(tmp_path) -> None:
    """The Pusher records served_digest through TFX's file system layer (gs:// on Vertex); the checks here
    read local folders: the same folder must give the same hash, or every push would look changed."""
    from pipeline.components.dedup_pusher import served_digest

    folder = _version(tmp_path)
    assert served_digest(str(folder)) == fingerprints.folder_digest(str(folder))
