"""The schema as Transform and the Trainer see it: without what only the data gate and `taxi monitor` read.

Both are keyed on their schema artifact, not on the fields they use: an edit to
a drift or skew threshold, a value domain or a presence bound alone retrained
the same model. Transform builds its graph from each column's type and shape
(every column here is a VarLenFeature); domains only come back as
TFTransformOutput.raw_domains(), which nothing here reads, and presence only
decides dense vs. sparse for a column with a shape. The pipeline gives
them a second import of the schema (TrainingSchemaImporter) holding this text,
which stays the same through such an edit, so their cache holds. A module of its
own, importing nothing of the project: that component's cache key holds the code
it runs (pipeline/fingerprints.py).
"""
from __future__ import annotations

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

GATE_ONLY_FEATURE_FIELDS = ("drift_comparator", "skew_comparator", "int_domain", "float_domain", "string_domain",
                            "domain", "distribution_constraints")
GATE_ONLY_SCHEMA_FIELDS = ("dataset_constraints", "string_domain")


def training_schema_text(schema: schema_pb2.Schema) -> bytes:
    """The schema without GATE_ONLY_* (and presence where there is no shape), in the parser's own layout (comments and spacing are not kept)."""
    training = schema_pb2.Schema()
    training.CopyFrom(schema)
    for name in GATE_ONLY_SCHEMA_FIELDS:
        training.ClearField(name)
    for feature in training.feature:
        for name in GATE_ONLY_FEATURE_FIELDS:
            feature.ClearField(name)
        if not feature.HasField("shape"):
            feature.ClearField("presence")
    return text_format.MessageToString(training).encode()
