"""pipeline/ingested_span.py: what makes an earlier run's Examples fit to import (the real runs: the spans e2e)."""
from __future__ import annotations

import shutil

from ml_metadata.proto import metadata_store_pb2

from pipeline.ingested_span import _on_disk


def _artifact(uri: str, splits: str | None) -> metadata_store_pb2.Artifact:
    artifact = metadata_store_pb2.Artifact(uri=uri)
    if splits is not None:
        artifact.properties["split_names"].string_value = splits
    return artifact


def test_an_artifact_missing_a_split_folder_is_not_imported(tmp_path) -> None:
    """A pipeline root pruned by hand, or a copy cut short: MLMD still lists the artifact as LIVE."""
    for split in ("train", "eval"):
        (tmp_path / f"Split-{split}").mkdir()
        (tmp_path / f"Split-{split}" / "data_tfrecord-00000-of-00001.gz").write_bytes(b"\x1f\x8b rows")
    (tmp_path / "Split-eval" / "data_tfrecord-00000-of-00001.gz").unlink()  # the folder kept, its files pruned
    assert not _on_disk(_artifact(str(tmp_path), '["train", "eval"]'))
    (tmp_path / "Split-eval" / "data_tfrecord-00000-of-00001.gz").write_bytes(b"")  # cut to nothing
    assert not _on_disk(_artifact(str(tmp_path), '["train", "eval"]'))
    (tmp_path / "Split-eval" / "data_tfrecord-00000-of-00001.gz").write_bytes(b"\x1f\x8b rows")
    assert _on_disk(_artifact(str(tmp_path), '["train", "eval"]'))
    shutil.rmtree(tmp_path / "Split-eval")
    assert not _on_disk(_artifact(str(tmp_path), '["train", "eval"]'))
    assert not _on_disk(_artifact(str(tmp_path), None)) and not _on_disk(_artifact(str(tmp_path), "[]"))
    assert not _on_disk(_artifact(str(tmp_path / "gone"), '["train"]'))
