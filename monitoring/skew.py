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
EXACT_MEASURES = {"infinity_norm": "l_infty", "jensen_shannon_divergence": "jensen_shannon_divergence"}
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

    def what_is_wrong(self) -> str:
        """The features over threshold, by kind: one the clients stopped sending is a serving anomaly, not skew."""
        parts = []
        for verdict, words in (("over threshold", "skew over threshold in"), ("anomaly", "serving anomaly in")):
            features = sorted({r.feature for r in self.over if r.verdict == verdict})
            if features:
                parts.append(f"{words} {', '.join(features)}")
        return "; ".join(parts)

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
    from pipeline.configs import read_schema

    schema = read_schema(str(schema_path))  # ConfigError, one line, for a schema the pipeline would refuse
    for feature in schema.feature:
        if feature.name not in served and SERVING_ENV not in feature.not_in_environment:
            feature.not_in_environment.append(SERVING_ENV)
    return schema


def served_batch(window: Window, schema) -> pa.RecordBatch:  # noqa: ANN001 - schema_pb2.Schema
    from pipeline.configs import column_types

    return to_record_batch(window, column_types(schema))


def serving_statistics(batch: pa.RecordBatch, schema):  # noqa: ANN001, ANN201 - schema and stats protos
    from tensorflow_data_validation.statistics import stats_impl, stats_options

    return stats_impl.generate_statistics_in_memory(batch, stats_options.StatsOptions(schema=schema))


def exact_skew(training: pa.RecordBatch, served: pa.RecordBatch, schema) -> list[FeatureResult]:  # noqa: ANN001
    results = []
    for c in distances.compare_batches(distances.comparators(schema, "skew_comparator"), training, served):
        label = EXACT_MEASURES[c.kind]
        if c.distance is None:
            why = {"baseline": "no values in the training examples", "compared": "no values in the served rows",
                   "kind": "the served values are not of the training values' kind"}[c.empty_side]
            results.append(FeatureResult(c.feature, "skew", label, None, c.threshold, "ok", why))
            continue
        detail = f"within sampling noise of {c.values} rows (p={c.distance.p_value:.2g})" if c.noise else ""
        results.append(FeatureResult(c.feature, "skew", label, round(c.distance.value, 4), c.threshold,
                                     "over threshold" if c.over else "ok", detail, c.distance.p_value))
    return results


def compare(training_stats_path: str, training: pa.RecordBatch, served: pa.RecordBatch, serving_stats,  # noqa: ANN001
            schema) -> list[FeatureResult]:  # noqa: ANN001
    """Per feature: skew distance vs threshold, and the SERVING environment's anomalies."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    results = exact_skew(training, served, schema)
    rest = distances.left_to_tfdv(schema, "skew_comparator")
    measured = anomalies_pb2.Anomalies() if rest is None else tfdv.validate_statistics(
        tfdv.load_stats_binary(training_stats_path), rest, environment=SERVING_ENV, serving_statistics=serving_stats)
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
