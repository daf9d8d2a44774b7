"""The data gate's own check: a split without examples stops the run (TFDV reports nothing for it)."""
from __future__ import annotations

import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx.types import artifact_utils, standard_artifacts

from pipeline.components.data_gate import empty_splits


def _statistics(tmp_path, counts: dict) -> standard_artifacts.ExampleStatistics:  # noqa: ANN001
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(tmp_path)
    artifact.split_names = artifact_utils.encode_split_names(list(counts))
    for split, count in counts.items():
        folder = tmp_path / f"Split-{split}"
        folder.mkdir()
        stats = statistics_pb2.DatasetFeatureStatisticsList(
            datasets=[statistics_pb2.DatasetFeatureStatistics(num_examples=count)]
        )
        (folder / "FeatureStats.pb").write_bytes(stats.SerializeToString())
    return artifact


@pytest.mark.parametrize(
    "counts, empty",
    [({"train": 2000, "eval": 1000}, []), ({"train": 1, "eval": 0}, ["eval"]), ({"train": 0, "eval": 0}, ["train", "eval"])],
)
def test_splits_without_examples_are_named(tmp_path, counts, empty):
    lines = empty_splits(_statistics(tmp_path, counts))
    assert [line.split("]")[0].strip(" [") for line in lines] == empty
    assert all("NO_EXAMPLES" in line for line in lines)
