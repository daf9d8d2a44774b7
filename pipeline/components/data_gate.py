"""DataGate: stop the run when ExampleValidator found anomalies, a split is empty, or the data drifted.

ExampleValidator records anomalies and lets the pipeline go on to train on the
bad data; this component reads what it recorded and fails, so Transform,
Trainer and Pusher (which run after it) never see that data. With the previous
span's Examples it also applies the schema's drift comparators, which
ExampleValidator in TFX 1.16 does not: counted exactly on both spans' rows
(monitoring/distances.py, the engine `taxi monitor` uses; TFDV's rebinned
histograms gave fare 0.31-0.33 between random halves of the same data), and a
comparator of another kind through TFDV's statistics. `accept_drift` lets a run
through drift (never through anomalies), and MLMD keeps that choice with the execution.
A split without examples is a stop too: TFDV finds no anomaly in an empty split.
"""
# No `from __future__ import annotations`: TFX's @component reads real annotations.
import contextlib
import os

from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

ANOMALIES_FILE = "SchemaDiff.pb"


DRIFT_REASONS = {
    anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH,
    anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH,
    anomalies_pb2.AnomalyInfo.COMPARATOR_NORMALIZED_ABSOLUTE_DIFFERENCE_HIGH,
}
DRIFT_SPLIT = "train"


class BaselineWithoutRows(RuntimeError):
    """The previous span's Examples hold no rows (files deleted from a pipeline root): drift cannot be measured."""


class DataGateError(RuntimeError):
    """The data broke its contract; the message lists every problem, one a line."""

    def __init__(self, problems: list, drift: list, drift_accepted: bool = False):
        self.problems = problems
        self.drift = drift
        parts = []
        if problems:
            parts.append(f"{len(problems)} anomal{'y' if len(problems) == 1 else 'ies'} against the schema")
        if drift:
            count = f"{len(drift)} feature{'s' if len(drift) != 1 else ''}"
            parts.append(f"drift above threshold in {count}" + (" (accepted)" if drift_accepted else
                                                                 " (--accept-drift to train anyway)"))
        self.verdict = " and ".join(parts)  # one line: what the gate found, without the list
        super().__init__(
            "data gate: " + self.verdict + "; nothing was trained or pushed\n" + "\n".join(problems + drift)
        )


# TFDV's range checks on a numeric column no row holds a value in: its statistics' min and max are the unset 0,
# read as "Unexpectedly small value: 0" (valueless_features).
RANGE_REASONS = {
    anomalies_pb2.AnomalyInfo.INT_TYPE_SMALL_INT,
    anomalies_pb2.AnomalyInfo.INT_TYPE_BIG_INT,
    anomalies_pb2.AnomalyInfo.FLOAT_TYPE_SMALL_FLOAT,
    anomalies_pb2.AnomalyInfo.FLOAT_TYPE_BIG_FLOAT,
}
# ... and its "fewer values than expected" (value_count min 1): the same fact, every cell empty, said as NO_VALUES.
VALUELESS_REASONS = RANGE_REASONS | {anomalies_pb2.AnomalyInfo.FEATURE_TYPE_LOW_NUMBER_VALUES}


def anomaly_rows(anomalies: anomalies_pb2.Anomalies, valueless: frozenset = frozenset()) -> list:
    """(feature, kinds, description) per anomaly; the dataset-level one as `<dataset>`. For a `valueless`
    feature, TFDV's range and value-count checks on values that are not there are left out (NO_VALUES says it).
    The gate's message and the run report both read anomalies through this."""
    infos = sorted(anomalies.anomaly_info.items())
    if anomalies.HasField("dataset_anomaly_info"):
        infos.append(("<dataset>", anomalies.dataset_anomaly_info))
    rows = []
    for feature, info in infos:
        reasons = [r for r in info.reason if not (feature in valueless and r.type in VALUELESS_REASONS)]
        if info.reason and not reasons:
            continue
        description = info.description or info.short_description
        if len(reasons) < len(info.reason):
            description = "; ".join(r.description or r.short_description for r in reasons)
        rows.append((feature, ", ".join(anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in reasons) or "UNKNOWN",
                     description))
    return rows


def describe_anomalies(split: str, rows: list) -> list:
    """One line per anomaly_rows row: split, feature, kind, description."""
    return [f"  [{split}] {feature}: {kinds}: {description}" for feature, kinds, description in rows]


def valueless_features(dataset) -> frozenset:  # noqa: ANN001 - DatasetFeatureStatistics
    """The columns of a split's rows that no row holds a value in (every cell empty). CsvExampleGen writes such
    a column as an empty list of its schema type, which TFDV counts as present: the presence check passes and
    the range checks read the unset min and max, 0."""
    def values(feature) -> int:  # noqa: ANN001
        kind = feature.WhichOneof("stats")
        return getattr(feature, kind).common_stats.tot_num_values if kind else 0

    if not dataset.num_examples:
        return frozenset()
    return frozenset((f.path.step[0] if f.path.step else f.name) for f in dataset.features if not values(f))


def required_but_valueless(split: str, valueless: frozenset, schema) -> list:  # noqa: ANN001 - schema_pb2.Schema
    """One line per column the schema requires (presence min_count or min_fraction, or value_count min) that holds
    no value."""
    def requirement(f) -> str | None:  # noqa: ANN001 - schema_pb2.Feature
        if f.presence.min_count > 0 or f.presence.min_fraction > 0:
            return f"presence min_count {f.presence.min_count}, min_fraction {f.presence.min_fraction:g}"
        return f"value_count min {f.value_count.min}" if f.value_count.min > 0 else None

    return [f"  [{split}] {f.name}: NO_VALUES: the column is in the data but every cell of it is empty (the schema "
            f"requires it: {requirement(f)})" for f in schema.feature if f.name in valueless and requirement(f)]


def read_anomalies(artifact: types.Artifact) -> dict:
    result = {}
    for split in artifact_utils.decode_split_names(artifact.split_names):
        path = os.path.join(artifact_utils.get_split_uri([artifact], split), ANOMALIES_FILE)
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(io_utils.read_bytes_file(path))
        result[split] = anomalies
    return result


def _split_statistics(statistics_uri: str, split: str = DRIFT_SPLIT):  # noqa: ANN202 - DatasetFeatureStatisticsList
    import tensorflow_data_validation as tfdv

    return tfdv.load_stats_binary(os.path.join(statistics_uri, f"Split-{split}", "FeatureStats.pb"))


def empty_splits(statistics: types.Artifact) -> list:
    """One line per split without a single example. TFDV validates nothing on an
    empty split (no anomaly, whatever the schema requires), so the gate checks it."""
    return [
        f"  [{split}] <dataset>: NO_EXAMPLES: the split has no rows (too few data rows for a train/eval split?)"
        for split in artifact_utils.decode_split_names(statistics.split_names)
        if not any(d.num_examples for d in _split_statistics(statistics.uri, split).datasets)
    ]


def drift_measurements(statistics_uri: str, baseline_uri: str, schema_uri: str,
                       examples_uri: str, baseline_examples_uri: str) -> list:
    """(feature, distance, threshold, over threshold) for every drift comparator in the schema.

    The gate stops on the rows marked over; the run report shows them all. A
    distance over its threshold that sampling alone could give is not marked over.
    """
    import tensorflow_data_validation as tfdv

    from monitoring import distances

    schema = io_utils.SchemaReader().read(os.path.join(schema_uri, "schema.pbtxt"))
    rows = {}
    found = distances.comparators(schema, "drift_comparator")
    batches = []
    if found:
        with contextlib.suppress(distances.NoExamples):  # this span without rows: the gate's NO_EXAMPLES stop says so
            batches.append(distances.read_examples(distances.split_files(examples_uri, DRIFT_SPLIT)))
    if batches:
        try:
            batches.append(distances.read_examples(distances.split_files(baseline_examples_uri, DRIFT_SPLIT)))
        except distances.NoExamples:  # nothing to compare with: unchecked is not "no drift"
            raise BaselineWithoutRows(baseline_examples_uri) from None
        for c in distances.compare_batches(found, batches[1], batches[0]):
            if c.distance is not None:
                rows[c.feature] = (c.feature, c.distance.value, c.threshold, c.over)
            elif c.empty_side == "kind":  # numbers on one side only: unchecked is not "no drift"
                rows[c.feature] = (c.feature, float("nan"), c.threshold, True)
    rest = distances.left_to_tfdv(schema, "drift_comparator")
    if rest is None:
        return sorted(rows.values())
    rest = tfdv.validate_statistics(_split_statistics(statistics_uri), rest,
                                    previous_statistics=_split_statistics(baseline_uri))
    over = {name for name, info in rest.anomaly_info.items() if any(r.type in DRIFT_REASONS for r in info.reason)}
    for info in rest.drift_skew_info:
        for m in info.drift_measurements:
            name = info.path.step[0]
            rows[name] = (name, m.value, m.threshold, name in over)
    for name in over - set(rows):  # flagged without a measurement: still a stop
        rows[name] = (name, float("nan"), float("nan"), True)
    return sorted(rows.values())


def _drift_line(name: str, value: float, threshold: float) -> str:
    if value == value:
        return f"  [drift] {name}: distance {value:.3f} > threshold {threshold:.3f} vs the previous span"
    if threshold == threshold:
        return (f"  [drift] {name}: numbers in one span, text in the other (a cell that is not a number): drift "
                "is unchecked")
    return f"  [drift] {name}: flagged by TFDV without a distance vs the previous span"


@component
def DataGate(  # noqa: N802 - TFX component naming
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    statistics: InputArtifact[standard_artifacts.ExampleStatistics],
    schema: InputArtifact[standard_artifacts.Schema],
    baseline_statistics: InputArtifact[standard_artifacts.ExampleStatistics] = None,  # optional input
    examples: InputArtifact[standard_artifacts.Examples] = None,  # with a baseline: the drift comparators
    baseline_examples: InputArtifact[standard_artifacts.Examples] = None,
    accept_drift: Parameter[int] = 0,
) -> None:
    problems = empty_splits(statistics)
    schema_file = io_utils.SchemaReader().read(os.path.join(schema.uri, "schema.pbtxt"))
    for split, found in read_anomalies(anomalies).items():
        datasets = _split_statistics(statistics.uri, split).datasets
        valueless = valueless_features(datasets[0]) if datasets else frozenset()
        rows = anomaly_rows(found, valueless)
        problems.extend(describe_anomalies(split, rows))
        # TFDV names a column no row holds a value in only when it has no type at all (a STRING column).
        problems.extend(required_but_valueless(split, valueless - {feature for feature, _, _ in rows}, schema_file))
    drift = []
    if baseline_statistics is not None:
        if examples is None or baseline_examples is None:
            raise ValueError("DataGate: a drift baseline needs both spans' examples")
        try:
            drift = [
                _drift_line(name, value, threshold)
                for name, value, threshold, over in drift_measurements(
                    statistics.uri, baseline_statistics.uri, schema.uri, examples.uri, baseline_examples.uri)
                if over
            ]
        except BaselineWithoutRows as missing:
            drift = [f"  [drift] <previous span>: its train split at {missing} holds no rows (files deleted?): "
                     "drift is unchecked"]
    if problems or (drift and not accept_drift):
        raise DataGateError(problems, drift, bool(accept_drift))
    if drift:
        logging.warning("data gate: drift accepted by the run's --accept-drift:\n%s", "\n".join(drift))
