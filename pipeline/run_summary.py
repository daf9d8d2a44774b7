"""What a finished local run did, read back from MLMD and the Evaluator's output.

Reads only what TFX recorded, so the summary is the same whether a component
ran or was a cache hit, and it never imports TFX's runner.
"""
from __future__ import annotations

import dataclasses
import math
import os

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline.mlmd_store import (
    RUN_CONTEXT,
    STATE_WORDS,
    executions_in_start_order,
    node_name,
    open_readonly,
    run_contexts,
)

BASE_RATE_METRIC = "base_rate_error_reduction"  # models/eval_metrics.BaseRateErrorReduction
ONE_CLASS = "every eval example has the same label"
DATA_GATE = "DataGate"
STATISTICS_GEN = "StatisticsGen"  # this span's; PreviousSpanStatisticsGen describes the drift baseline
REPORTED_METRICS = ("auc", "binary_accuracy", "precision", "recall", "calibration", "example_count")


@dataclasses.dataclass
class ComponentRun:
    name: str
    state: str
    seconds: float


@dataclasses.dataclass
class RunSummary:
    run_id: str
    components: list[ComponentRun]
    metrics: dict[str, float]
    thresholds: list[str]
    blessed: bool | None
    blessing_reasons: list[str]
    pushed_version: str | None
    pushed_to: str | None
    not_pushed_reason: str = ""
    data_warnings: list[str] = dataclasses.field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"run {self.run_id}"]
        width = max((len(c.name) for c in self.components), default=10)
        for c in self.components:
            out.append(f"  {c.name:<{width}}  {c.state:<7} {c.seconds:6.1f} s")
        out += [f"data: {warning}" for warning in self.data_warnings]
        if self.metrics:
            out.append("evaluation (eval split, overall):")
            out.append("  " + "  ".join(f"{k} {_fmt(v)}" for k, v in self.metrics.items()))
        out += [f"  threshold: {t}" for t in self.thresholds]
        if self.blessed is None:
            out.append("model: not evaluated in this run")
        elif self.blessed:
            out.append("model: BLESSED")
        else:
            out.append("model: NOT blessed: " + "; ".join(self.blessing_reasons or ["see the Evaluator output"]))
        if self.pushed_version:
            out.append(f"pushed: version {self.pushed_version} -> {self.pushed_to}")
        elif self.blessed:
            out.append(f"pushed: nothing new{' (' + self.not_pushed_reason + ')' if self.not_pushed_reason else ''}")
        else:  # "nothing new" read as if an earlier push stood in for this model, in a folder with none
            out.append("pushed: nothing" + (" (not blessed)" if self.blessed is False else ""))
        return out


def _fmt(value: float) -> str:
    """A metric as the summary prints it; a NaN (precision of a model that never says yes) is `nan`, not a crash."""
    if not math.isfinite(value):
        return str(value)
    return str(int(value)) if value == int(value) and abs(value) > 1 else f"{value:.4f}"


def latest_run_id(store: metadata_store.MetadataStore) -> str | None:
    runs = run_contexts(store)
    return runs[-1].name if runs else None


def _outputs(store, execution_id: int, artifact_type: str) -> list[metadata_store_pb2.Artifact]:
    events = store.get_events_by_execution_ids([execution_id])
    ids = [e.artifact_id for e in events if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
    return [a for a in store.get_artifacts_by_id(ids) if a.type == artifact_type]


def summarize(metadata_path: str, run_id: str | None = None) -> RunSummary | None:
    if not os.path.exists(metadata_path):
        return None
    store = open_readonly(metadata_path)
    run_id = run_id or latest_run_id(store)
    if run_id is None:
        return None
    context = store.get_context_by_type_and_name(RUN_CONTEXT, run_id)
    executions = executions_in_start_order(store, context.id)
    components, evaluation_uri, eval_config, blessing, pushed, statistics = [], None, "", None, None, None
    for execution in executions:
        name = node_name(store, execution.id)
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
        components.append(ComponentRun(name, STATE_WORDS.get(execution.last_known_state, "?"), seconds))
        for artifact in _outputs(store, execution.id, "ModelEvaluation"):
            evaluation_uri = artifact.uri
            eval_config = execution.custom_properties["eval_config"].string_value
        if name == STATISTICS_GEN:
            statistics = next(iter(_outputs(store, execution.id, "ExampleStatistics")), None)
        for artifact in _outputs(store, execution.id, "ModelBlessing"):
            blessing = artifact
        for artifact in _outputs(store, execution.id, "PushedModel"):
            if execution.last_known_state == metadata_store_pb2.Execution.COMPLETE:
                pushed = artifact
    on_disk = evaluation_uri and os.path.isdir(evaluation_uri)  # MLMD outlives a pruned pipeline root
    metrics, thresholds, reasons = read_evaluation(evaluation_uri, eval_config) if on_disk else ({}, [], [])
    blessed = None if blessing is None else bool(blessing.custom_properties["blessed"].int_value)
    pushed_version = pushed_to = None
    reason = pushed.custom_properties["not_pushed_reason"].string_value if pushed is not None else ""
    if pushed is not None and pushed.custom_properties["pushed"].int_value:
        pushed_version = pushed.custom_properties["pushed_version"].string_value
        pushed_to = pushed.custom_properties["pushed_destination"].string_value
    # Only for data the gate let through: a value it stopped on (one outside its column's domain) is its anomaly.
    passed = any(c.name == DATA_GATE and c.state in ("ran", "cached") for c in components)
    warnings = padded_strings(statistics.uri) if passed and statistics is not None and os.path.isdir(statistics.uri) \
        else []
    return RunSummary(run_id, components, metrics, thresholds, blessed, reasons, pushed_version, pushed_to, reason,
                      warnings)


def padded_strings(statistics_uri: str) -> list[str]:
    """One line per string column holding values with spaces around them (` Cash`, `Taxi `), which pass the gate
    when the column has no domain: each is trained as a category of its own that clients sending the trimmed value
    never reach. Read from StatisticsGen's value histogram (every value of a column with up to 1,000 of them)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    found: dict[str, dict[str, float]] = {}
    for split in sorted(os.listdir(statistics_uri)):
        path = os.path.join(statistics_uri, split, "FeatureStats.pb")
        if not os.path.isfile(path):
            continue
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        with open(path, "rb") as handle:
            stats.ParseFromString(handle.read())
        for feature in (f for dataset in stats.datasets for f in dataset.features):
            if feature.WhichOneof("stats") != "string_stats":
                continue
            name = feature.path.step[0] if feature.path.step else feature.name
            for bucket in feature.string_stats.rank_histogram.buckets:
                if bucket.label != bucket.label.strip():
                    values = found.setdefault(name, {})
                    values[bucket.label] = values.get(bucket.label, 0) + bucket.sample_count
    lines = []
    for name, values in sorted(found.items()):
        shown = sorted(values.items(), key=lambda item: (-item[1], item[0]))
        listed = ", ".join(f"{value!r} ({count:.0f} rows)" for value, count in shown[:3])
        more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
        if len(shown) == 1:
            lines.append(f"{name}: {listed} has spaces around it: a category of its own, which clients sending "
                         "the value trimmed never reach; trim it in the data")
        else:
            lines.append(f"{name}: {len(shown)} values have spaces around them ({listed}{more}): categories of "
                         "their own, which clients sending the values trimmed never reach; trim them in the data")
    return lines


def read_evaluation(uri: str, eval_config_json: str) -> tuple[dict[str, float], list[str], list[str]]:
    """Overall metrics, the thresholds in words, and why the model was not blessed."""
    import tensorflow_model_analysis as tfma  # heavy; only when there is an evaluation

    metrics: dict[str, float] = {}
    has_baseline = False
    for slice_metrics in tfma.load_metrics(uri):
        if slice_metrics.slice_key.single_slice_keys:
            continue
        for entry in slice_metrics.metric_keys_and_values:
            key = entry.key
            has_baseline = has_baseline or key.is_diff
            is_candidate = key.model_name in ("", "candidate") and not key.is_diff
            if key.name in REPORTED_METRICS and is_candidate and entry.value.HasField("double_value"):
                metrics[key.name] = entry.value.double_value.value
    validation = tfma.load_validation_result(uri)
    reasons = [_failure_words(f) for v in validation.metric_validations_per_slice for f in v.failures]
    if validation.missing_slices:
        reasons.append("some slices had no examples")
    thresholds = _threshold_words(eval_config_json, has_baseline)
    return dict(sorted(metrics.items(), key=lambda kv: REPORTED_METRICS.index(kv[0]))), thresholds, reasons


def _failure_words(failure) -> str:  # noqa: ANN001 - tfma ValidationFailure proto
    name = failure.metric_key.name.upper() if failure.metric_key.name == "auc" else failure.metric_key.name
    value = failure.metric_value.double_value.value
    threshold = failure.metric_threshold
    if failure.metric_key.is_diff and math.isnan(value):  # AUC has no value on one class: nor its difference
        return f"{name} could not be compared with the serving model's: {ONE_CLASS}"
    if failure.metric_key.is_diff:
        return f"{name} fell {_drop(abs(value))} below the serving model (allowed: {_allowed_drop(threshold)})"
    bound = threshold.value_threshold.lower_bound.value
    if failure.metric_key.name == BASE_RATE_METRIC and not math.isnan(value):
        return (f"removes {value:.1%} of the errors of always answering the majority class "
                f"(< required {_percent(bound)})")
    if math.isnan(value):  # these metrics are NaN only when every eval label is the same (an empty split stops at the gate)
        if failure.metric_key.name == BASE_RATE_METRIC:
            return (f"no errors of always answering the majority class to remove: {ONE_CLASS} "
                    f"(required: removes >= {_percent(bound)})")
        return f"{name} could not be computed: {ONE_CLASS} (required {_required(threshold.value_threshold)})"
    if threshold.value_threshold.HasField("upper_bound"):  # a range (calibration)
        return f"{name} {value:.4f} not {_required(threshold.value_threshold)}"
    return f"{name} {value:.4f} < required {_bound(bound)}"


def _required(bounds) -> str:  # noqa: ANN001 - tfma GenericValueThreshold
    """A value threshold in words: `>= 0.90`, or `within [0.80, 1.25]` when it has an upper bound too."""
    if bounds.HasField("upper_bound"):
        return f"within [{_bound(bounds.lower_bound.value)}, {_bound(bounds.upper_bound.value)}]"
    return f">= {_bound(bounds.lower_bound.value)}"


def _bound(value: float) -> str:
    """A threshold as it was set (0.90, 0.9461, 0.980873), not rounded to two decimals: --auc-threshold 0.9461
    printed as `AUC >= 0.95` beside a blessed AUC of 0.9465."""
    text = f"{value:.6f}".rstrip("0")
    decimals = len(text.partition(".")[2])
    return text + "0" * (2 - decimals) if decimals < 2 else text


def _percent(share: float) -> str:
    """10%, 99.95%: as set, not rounded to a whole percent (a required 99.95% printed as 100%)."""
    return f"{share * 100:.4f}".rstrip("0").rstrip(".") + "%"


def _drop(value: float) -> str:
    """Four decimals, or two significant digits for a drop under 0.0001 (any drop fails with no allowance)."""
    if not math.isfinite(value) or value == 0 or value >= 1e-4:
        return f"{value:.4f}"
    return f"{value:.{1 - math.floor(math.log10(value))}f}"


def _allowed_drop(threshold) -> str:  # noqa: ANN001
    drop = -threshold.change_threshold.absolute.value
    return "none" if drop < 1e-6 else _bound(drop)


def tfma_metric_class(class_name: str) -> str:
    """The TFMA metric a MetricConfig class name computes: models/eval_metrics.py's Histogram<X> is TFMA's <X>."""
    return class_name.removeprefix("Histogram")


def _threshold_words(eval_config_json: str, has_baseline: bool = True) -> list[str]:
    """The blessing rules as the Evaluator ran them: TFMA drops change rules when there is no baseline
    (the first blessed model), and the config recorded in MLMD is the one it was given, so they are left out here."""
    import tensorflow_model_analysis as tfma
    from google.protobuf import json_format

    if not eval_config_json:
        return []
    config = json_format.Parse(eval_config_json, tfma.EvalConfig(), ignore_unknown_fields=True)
    words = []
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            name = tfma_metric_class(metric.class_name)
            name = name if name == "AUC" else name.lower()  # as the metrics are printed: AUC, calibration
            for per_slice in metric.per_slice_thresholds:
                threshold = per_slice.threshold
                if threshold.HasField("value_threshold") and metric.class_name == "BaseRateErrorReduction":
                    words.append(f"removes >= {_percent(threshold.value_threshold.lower_bound.value)} of the errors of "
                                 "always answering the majority class")
                elif threshold.HasField("value_threshold"):
                    words.append(f"{name} {_required(threshold.value_threshold)}")
                if threshold.HasField("change_threshold") and has_baseline:
                    words.append(
                        f"{name} not below the serving model "
                        f"(allowed drop: {_allowed_drop(threshold)})"
                    )
    return words
