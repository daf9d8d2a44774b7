"""DataGate: stop the run when ExampleValidator found anomalies.

ExampleValidator records anomalies and lets the pipeline go on to train on the
bad data; this component reads what it recorded and fails, so Transform,
Trainer and Pusher (which run after it) never see that data.
"""
# No `from __future__ import annotations`: TFX's @component reads real annotations.
import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

ANOMALIES_FILE = "SchemaDiff.pb"


class DataGateError(RuntimeError):
    """The data broke its contract; the message lists every anomaly, one a line."""

    def __init__(self, problems: list):
        self.problems = problems
        super().__init__(
            f"data gate: {len(problems)} anomal{'y' if len(problems) == 1 else 'ies'} "
            "against schema/schema.pbtxt; nothing was trained or pushed\n" + "\n".join(problems)
        )


def describe_anomalies(split: str, anomalies: anomalies_pb2.Anomalies) -> list:
    """One line per anomaly: split, feature, kind, description."""
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        kinds = ", ".join(
            anomalies_pb2.AnomalyInfo.Type.Name(reason.type) for reason in info.reason
        ) or "UNKNOWN"
        description = info.description or info.short_description
        lines.append(f"  [{split}] {feature}: {kinds}: {description}")
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        lines.append(f"  [{split}] <dataset>: {info.description or info.short_description}")
    return lines


def read_anomalies(artifact: types.Artifact) -> dict:
    result = {}
    for split in artifact_utils.decode_split_names(artifact.split_names):
        path = os.path.join(artifact_utils.get_split_uri([artifact], split), ANOMALIES_FILE)
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(io_utils.read_bytes_file(path))
        result[split] = anomalies
    return result


@component
def DataGate(anomalies: InputArtifact[standard_artifacts.ExampleAnomalies]) -> None:  # noqa: N802
    problems = []
    for split, found in read_anomalies(anomalies).items():
        problems.extend(describe_anomalies(split, found))
    if problems:
        raise DataGateError(problems)
