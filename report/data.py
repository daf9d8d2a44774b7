"""The data section: StatisticsGen's FeatureStats.pb and ExampleValidator's anomalies.

Read as tensorflow_metadata protos directly: the same protos TFDV writes,
without importing TFDV (and with it TensorFlow) just to look at them.
"""
from __future__ import annotations

import dataclasses
import os

from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from report import svg

STATS_FILE = "FeatureStats.pb"
ANOMALIES_FILE = "SchemaDiff.pb"


@dataclasses.dataclass
class Feature:
    name: str
    kind: str  # numeric or string
    values: int
    missing: int
    summary: list[tuple[str, str]]
    chart: str  # inline SVG


@dataclasses.dataclass
class Split:
    name: str
    rows: int
    features: list[Feature]
    anomalies: list[tuple[str, str, str]]  # feature, kinds, description


def _splits(uri: str) -> list[str]:
    if not os.path.isdir(uri):
        return []
    names = [d[len("Split-"):] for d in os.listdir(uri) if d.startswith("Split-")]
    return sorted(names, key=lambda n: (n != "train", n))


def load_statistics(path: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    with open(path, "rb") as handle:
        stats.ParseFromString(handle.read())
    return stats


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() and abs(value) < 1e12 else f"{value:,.4g}"


def _feature(feature: statistics_pb2.FeatureNameStatistics, rows: int) -> Feature:
    name = ".".join(feature.path.step) or feature.name
    kind = feature.WhichOneof("stats")
    if kind == "num_stats":
        stats = feature.num_stats
        common = stats.common_stats
        standard = [h for h in stats.histograms if h.type == statistics_pb2.Histogram.STANDARD]
        buckets = [(b.low_value, b.high_value, b.sample_count) for b in (standard[0].buckets if standard else [])]
        summary = [("mean", _fmt(stats.mean)), ("std", _fmt(stats.std_dev)), ("min", _fmt(stats.min)),
                   ("median", _fmt(stats.median)), ("max", _fmt(stats.max)), ("zeros", _fmt(stats.num_zeros))]
        chart = svg.histogram(buckets)
        label = "numeric"
    elif kind == "string_stats":
        stats = feature.string_stats
        common = stats.common_stats
        top = [(v.value or "(empty)", v.frequency) for v in stats.top_values[:8]]
        summary = [("unique", _fmt(stats.unique)), ("avg length", _fmt(stats.avg_length))]
        chart = svg.hbars(top, width=300, label_width=140)
        label = "string"
    else:
        return Feature(name, kind or "?", 0, rows, [], "")
    values = int(common.tot_num_values)
    return Feature(name, label, values, max(0, rows - values) if common.max_num_values <= 1 else 0, summary, chart)


def describe_anomalies(path: str, dataset) -> list[tuple[str, str, str]]:  # noqa: ANN001 - DatasetFeatureStatistics
    """(feature, kinds, description) for every anomaly recorded for one split, read as the gate reads them
    (`dataset`: the split's statistics, for the columns without any value)."""
    if not os.path.isfile(path):
        return []
    from pipeline.components.data_gate import anomaly_rows, valueless_features  # the gate's own reading

    anomalies = anomalies_pb2.Anomalies()
    with open(path, "rb") as handle:
        anomalies.ParseFromString(handle.read())
    return anomaly_rows(anomalies, valueless_features(dataset))


def data_section(statistics_uri: str | None, anomalies_uri: str | None) -> list[Split]:
    """One Split per data split: row count, per-feature statistics with charts, anomalies."""
    splits = []
    for name in _splits(statistics_uri or ""):
        path = os.path.join(statistics_uri or "", f"Split-{name}", STATS_FILE)
        if not os.path.isfile(path):
            continue
        dataset = load_statistics(path).datasets[0]
        rows = int(dataset.num_examples)
        features = sorted((_feature(f, rows) for f in dataset.features), key=lambda f: f.name)
        anomalies = describe_anomalies(os.path.join(anomalies_uri or "", f"Split-{name}", ANOMALIES_FILE), dataset)
        splits.append(Split(name, rows, features, anomalies))
    return splits
