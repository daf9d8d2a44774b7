"""Training/serving skew of logged traffic against the model in service.

Two checks, both from the curated schema: TFDV validates the served statistics
in the SERVING environment (types, domains, presence), and the schema's
skew_comparators (L-infinity / Jensen-Shannon) compare the served values with
the training Examples of the model in service, counted exactly
(monitoring/distances.py says why not on TFDV's histograms). A comparator of
another kind is left to TFDV's statistics comparison. A feature over its
threshold (beyond sampling noise) or with a schema anomaly fails the check.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from monitoring import distances
from monitoring.requests import Window, to_record_batch

SERVING_ENV = "SERVING"
EXACT_COMPARATORS = {"infinity_norm": "l_infty", "jensen_shannon_divergence": "jensen_shannon_divergence"}
MAX_TRAINING_ROWS = 200_000
SKEW_REASONS = ("COMPARATOR_L_INFTY_HIGH", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH",
                "COMPARATOR_NORMALIZED_ABSOLUTE_DIFFERENCE_HIGH")


@dataclasses.dataclass
class FeatureResult:
    """One line of the report."""

    feature: str
    check: str  # skew (vs training) or schema (SERVING environment)
    measure: str
    distance: float | None
    threshold: float | None
    verdict: str  # ok | over threshold | anomaly
    detail: str = ""
    p_value: float | None = None  # exact comparators: chance the distance is sampling noise


@dataclasses.dataclass
class SkewReport:
    """Everything `monitor` prints and writes; `over` decides the exit code."""

    model: str
    version: int
    span: int | None
    window: dict[str, Any]
    rows: int
    results: list[FeatureResult]
    created: float = dataclasses.field(default_factory=time.time)

    @property
    def over(self) -> list[FeatureResult]:
        return [r for r in self.results if r.verdict != "ok"]

    def as_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["over_threshold"] = [r.feature for r in self.over]
        out["verdict"] = "skew" if self.over else "ok"
        return out


def serving_schema(schema_path: Path, served: set[str]):  # noqa: ANN201 - schema_pb2.Schema
    """The curated schema, with columns the model never receives marked not_in_environment SERVING.

    The schema file lists every CSV column; the serving signature takes only the
    model's inputs (models.features.SERVING_FEATURES), so the timestamp and the
    census tracts are absent by design, not by accident.
    """
    import tensorflow_data_validation as tfdv

    schema = tfdv.load_schema_text(str(schema_path))
    for feature in schema.feature:
        if feature.name not in served and SERVING_ENV not in feature.not_in_environment:
            feature.not_in_environment.append(SERVING_ENV)
    return schema


def schema_types(schema) -> dict[str, str]:  # noqa: ANN001 - schema_pb2.Schema
    from tensorflow_metadata.proto.v0 import schema_pb2

    return {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}


def served_batch(window: Window, schema) -> pa.RecordBatch:  # noqa: ANN001 - schema_pb2.Schema
    return to_record_batch(window, schema_types(schema))


def serving_statistics(batch: pa.RecordBatch, schema):  # noqa: ANN001, ANN201 - schema and stats protos
    from tensorflow_data_validation.statistics import stats_impl, stats_options

    return stats_impl.generate_statistics_in_memory(batch, stats_options.StatsOptions(schema=schema))


def training_batch(files: list[str], limit: int = MAX_TRAINING_ROWS) -> pa.RecordBatch:
    """The first `limit` tf.Examples of the training split (ExampleGen's shards are hash-assigned) as Arrow."""
    import tensorflow as tf
    from tfx_bsl.coders import example_coder

    compression = "GZIP" if all(f.endswith(".gz") for f in files) else ""
    try:
        records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type=compression).take(limit)]
    except tf.errors.OpError as error:
        raise ValueError(f"the training examples cannot be read ({error.message.splitlines()[0]}): "
                         f"{', '.join(files)}") from None
    if not records:
        raise ValueError(f"the training examples hold no rows: {', '.join(files)}")
    return example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(records)


def column_values(batch: pa.RecordBatch, name: str) -> list:
    """The present values of one feature (one per row at most for this schema); NaN counts as missing."""
    if name not in batch.schema.names:
        return []
    values = batch.column(name).flatten().to_pylist()
    return [v for v in values if v is not None and v == v]


def exact_comparators(schema) -> list[tuple[str, str, float]]:  # noqa: ANN001 - schema_pb2.Schema
    """(feature, comparator kind, threshold) for every skew comparator distances.py counts exactly."""
    return [(f.name, kind, getattr(f.skew_comparator, kind).threshold)
            for f in schema.feature for kind in EXACT_COMPARATORS if f.skew_comparator.HasField(kind)]


def exact_skew(training: pa.RecordBatch, served: pa.RecordBatch, schema) -> list[FeatureResult]:  # noqa: ANN001
    results = []
    for name, kind, threshold in exact_comparators(schema):
        train_values, served_values = column_values(training, name), column_values(served, name)
        label = EXACT_COMPARATORS[kind]
        if not train_values or not served_values:
            side = "training examples" if not train_values else "served rows"
            results.append(FeatureResult(name, "skew", label, None, threshold, "ok", f"no values in the {side}"))
            continue
        distance = distances.measure(kind, train_values, served_values)
        skewed = distance.skewed(threshold)
        detail = ""
        if distance.value > threshold and not skewed:
            detail = f"within sampling noise of {len(served_values)} rows (p={distance.p_value:.2g})"
        results.append(FeatureResult(name, "skew", label, round(distance.value, 4), threshold,
                                     "over threshold" if skewed else "ok", detail, distance.p_value))
    return results


def compare(training_stats_path: str, training: pa.RecordBatch, served: pa.RecordBatch, serving_stats,  # noqa: ANN001
            schema) -> list[FeatureResult]:  # noqa: ANN001
    """Per feature: skew distance vs threshold, and the SERVING environment's anomalies."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    results = exact_skew(training, served, schema)
    rest = type(schema)()
    rest.CopyFrom(schema)
    for feature in rest.feature:
        for kind in EXACT_COMPARATORS:
            feature.skew_comparator.ClearField(kind)
    measured = tfdv.validate_statistics(tfdv.load_stats_binary(training_stats_path), rest,
                                        environment=SERVING_ENV, serving_statistics=serving_stats)
    for info in measured.drift_skew_info:
        name = ".".join(info.path.step)
        for m in info.skew_measurements:
            kind = anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type)
            over = m.value > m.threshold
            results.append(FeatureResult(name, "skew", kind.lower(), round(m.value, 4), m.threshold,
                                         "over threshold" if over else "ok"))
    skewed = {r.feature for r in results if r.verdict != "ok"}
    for name, info in sorted(measured.anomaly_info.items()):
        kinds = {anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason}
        if kinds & set(SKEW_REASONS) and name not in skewed:
            results.append(FeatureResult(name, "skew", "comparator", None, None, "over threshold", info.description))
    anomalies = tfdv.validate_statistics(serving_stats, schema, environment=SERVING_ENV)
    for name, info in sorted(anomalies.anomaly_info.items()):
        results.append(FeatureResult(name, "schema", "SERVING environment", None, None, "anomaly",
                                     info.short_description + ": " + info.description))
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        results.append(FeatureResult("<dataset>", "schema", "SERVING environment", None, None, "anomaly",
                                     info.description or info.short_description))
    return sorted(results, key=lambda r: (r.verdict == "ok", r.check, r.feature))
