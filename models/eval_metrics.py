"""Evaluator metrics read off the one calibration histogram that TFMA's AUC fills.

TFMA's BinaryAccuracy, Precision and Recall (at one threshold) share a
per-example Python combiner, and its Calibration runs another, beside AUC's
histogram and the example count: four combiners for every example, slice
(overall, per payment type, per hour) and model (candidate and baseline). The
Histogram* classes here compute the same metrics, under the same metric names
(binary_accuracy, ...), from the 10,000-bucket prediction histogram that AUC
already builds, which leaves two. Measured on the
bundled data (Evaluator executor alone, alternating runs): 15.0 -> 11.6 s
with no baseline model, 31-38 -> 20-21.5 s with one; same values on all 31
slices.

Calibration (total predictions / total labels) is exact. The confusion-matrix
metrics are what TFMA's own histogram path gives: a prediction counts as above
0.5 when its bucket starts above 0.5, so one in (0.5, 0.5001) counts as below.
The module sits in models/ so that its code is part of the fingerprint that
makes Transform, Trainer and so the Evaluator re-run when the ML code changes.
Their class names differ from TFMA's because TFMA looks a class name up in
its own registry before it reads MetricConfig.module. Binary models only:
top_k, class_id and num_thresholds are refused.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import (
    binary_confusion_matrices,
    calibration_histogram,
    confusion_matrix_metrics,
    metric_types,
    metric_util,
)


def _with_metric(computations: list, key: metric_types.MetricKey, value_of) -> list:  # noqa: ANN001
    """`computations` and one derived metric: key = value_of(the output of the last of them)."""
    source = computations[-1].keys[-1]

    def result(metrics: dict) -> dict:
        return {key: value_of(metrics[source])}

    return [*computations, metric_types.DerivedMetricComputation(keys=[key], result=result)]


class _FromHistogram:
    """Mixin for a TFMA metric computed from AUC's calibration histogram (subclasses say how)."""

    # TFMA passes a create-computations function only the arguments its
    # signature names (model_name among them), so each is spelled out.
    def _metric_computations(
        self,
        thresholds=None,  # noqa: ANN001 - TFMA's signature
        num_thresholds=None,  # noqa: ANN001
        top_k=None,  # noqa: ANN001
        class_id=None,  # noqa: ANN001
        name: str | None = None,
        eval_config=None,  # noqa: ANN001
        model_name: str = "",
        output_name: str = "",
        sub_key=None,  # noqa: ANN001
        aggregation_type=None,  # noqa: ANN001
        class_weights=None,  # noqa: ANN001
        example_weighted: bool = False,
    ) -> metric_types.MetricComputations:
        if num_thresholds is not None or top_k is not None or class_id is not None:
            raise ValueError(f"{type(self).__name__} takes thresholds only (no num_thresholds, top_k, class_id)")
        key = metric_types.MetricKey(
            name=name,
            model_name=model_name,
            output_name=output_name,
            sub_key=sub_key,
            example_weighted=example_weighted,
            aggregation_type=aggregation_type,
        )
        histogram_args = {
            "eval_config": eval_config,
            "model_name": model_name,
            "output_name": output_name,
            "sub_key": sub_key,
            "aggregation_type": aggregation_type,
            "class_weights": class_weights,
            "example_weighted": example_weighted,
        }
        return self._from_histogram(key, thresholds, histogram_args)

    def _from_histogram(self, key: metric_types.MetricKey, thresholds, histogram_args: dict) -> list:  # noqa: ANN001
        raise NotImplementedError


class _ConfusionMatrixFromHistogram(_FromHistogram):
    """TFMA's confusion-matrix metrics, their matrices rebinned from the histogram."""

    def _from_histogram(self, key: metric_types.MetricKey, thresholds, histogram_args: dict) -> list:  # noqa: ANN001
        if thresholds is None:
            thresholds = [self._default_threshold()]
        elif isinstance(thresholds, float):
            thresholds = [thresholds]
        matrices = binary_confusion_matrices.binary_confusion_matrices(
            thresholds=thresholds, use_histogram=True, **histogram_args
        )
        return _with_metric(matrices, key, lambda value: self._metric_value(key=key, matrices=value))


class HistogramBinaryAccuracy(_ConfusionMatrixFromHistogram, confusion_matrix_metrics.BinaryAccuracy):
    pass


class HistogramPrecision(_ConfusionMatrixFromHistogram, confusion_matrix_metrics.Precision):
    pass


class HistogramRecall(_ConfusionMatrixFromHistogram, confusion_matrix_metrics.Recall):
    pass


class HistogramCalibration(_FromHistogram, tfma.metrics.Metric):
    """Total predictions / total labels, as TFMA's Calibration."""

    def __init__(self, name: str = "calibration"):
        super().__init__(metric_util.merge_per_key_computations(self._metric_computations), name=name)

    def _from_histogram(self, key: metric_types.MetricKey, thresholds, histogram_args: dict) -> list:  # noqa: ANN001
        return _with_metric(calibration_histogram.calibration_histogram(**histogram_args), key, _calibration_of)


def _calibration_of(histogram: calibration_histogram.Histogram) -> float:
    labels = math.fsum(bucket.weighted_labels for bucket in histogram)
    predictions = math.fsum(bucket.weighted_predictions for bucket in histogram)
    return float("nan") if np.isclose(labels, 0.0) else predictions / labels  # as TFMA's Calibration


HISTOGRAM_METRICS = (HistogramBinaryAccuracy, HistogramPrecision, HistogramRecall, HistogramCalibration)


def metric_configs() -> list[tfma.MetricConfig]:
    """The MetricConfigs that name the metrics above (TFMA imports each by module and class name)."""
    return [tfma.MetricConfig(class_name=cls.__name__, module=cls.__module__) for cls in HISTOGRAM_METRICS]
