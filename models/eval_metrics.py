"""Evaluator metrics read off one per-slice table of the predictions, keyed finely by value.

TFMA's BinaryAccuracy, Precision and Recall (at one threshold) share a
per-example Python combiner, and its Calibration runs another, beside AUC's
histogram and the example count: four combiners for every example, slice
(overall, per payment type, per hour) and model (candidate and baseline). The
Histogram* classes here compute the same metrics, under the same metric names
(binary_accuracy, ...), from one table that a single combiner fills: per
prediction key (the value rounded up to 13 significant bits, KEY_MANTISSA_BITS),
its weighted labels, predictions and examples (TFMA's calibration histogram,
with buckets 0.006-0.012% of the value wide instead of 1e-4 wide). Measured on the
bundled data (Evaluator executor alone, alternating runs): 15.0 -> 11.6 s with
no baseline model, 31-38 -> 20-21.5 s with one. The combiner is fed (label,
prediction, weight) triples that a preprocessor makes once per example, before
slicing, where TFMA's combiner converts each example's extracts again for
every slice it is in.

Why not TFMA's 10,000 buckets of width 1e-4: the taxi model puts half the
eval split under 1e-4 (cash rides), and a bucket ties every pair inside it.
TFMA's AUC read off those buckets gave 0.4675 for payment_type = Cash where
the area under the ROC curve of the same predictions (sklearn's
roc_auc_score) is 0.3166, and a prediction in (0.5, 0.5001) counted as "no"
in accuracy, precision and recall. Here:

- AUC (ROC, the default) is the area under the curve through the (fpr, tpr)
  points of every key: roc_auc_score but for pairs within 0.012% of each
  other, which count one half (1e-7 on the taxi eval split); undefined (NaN) on a
  slice with one class only (TFMA says 0.0, which reads as a model that ranks
  every pair wrong);
- the confusion matrices count prediction > threshold exactly for thresholds
  on the key grid (0.5, the one used here, included), as TFMA's own
  single-threshold BinaryAccuracy/Precision/Recall do;
- calibration (total predictions / total labels) is exact.

Relative buckets bound the table at 8,192 keys per binade of the predictions
in a slice however large the eval split (4,663 keys for 4,966 rows here),
where one key per distinct prediction would grow with it.

The module sits in models/ so that its code is part of the fingerprint that
makes Transform, Trainer and so the Evaluator re-run when the ML code changes.
Their class names differ from TFMA's because TFMA looks a class name up in
its own registry before it reads MetricConfig.module. Binary models only:
top_k and class_id are refused.
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

# The prediction table: prediction keys (ascending, see key_of), weighted labels,
# weighted predictions and weighted examples, one entry per key.
Columns = tuple[list[float], list[float], list[float], list[float]]
HISTOGRAM_NAME = "_prediction_histogram"


# The table keys a prediction by its value rounded up to this many significant
# bits: buckets 0.006-0.012% of the value wide at every scale (1e-7 as finely
# as 0.9, where they are 6e-5 wide against TFMA's 1e-4), so at most 8,192 keys
# per binary order of magnitude of the predictions (~220k for 1e-8 to 1) in a
# slice however large the eval split, where exact values would grow with it.
# On the taxi eval split the AUC moves by 1e-7 (0.9464842 -> 0.9464843).
# Rounding up keeps "prediction > t" exact for any t on the grid, 0.5 included:
# a value at or below t keeps a key at or below it.
KEY_MANTISSA_BITS = 13


def key_of(prediction: float) -> float:
    """The smallest value with KEY_MANTISSA_BITS significant bits at or above the prediction."""
    if prediction == 0 or not math.isfinite(prediction):
        return prediction
    mantissa, exponent = math.frexp(prediction)  # mantissa in [0.5, 1)
    scale = 1 << (KEY_MANTISSA_BITS + 1)
    return math.ldexp(math.ceil(mantissa * scale) / scale, exponent)


def _with_metric(computations: list, key: metric_types.MetricKey, value_of) -> list:  # noqa: ANN001
    """`computations` and one derived metric: key = value_of(the output of the last of them)."""
    source = computations[-1].keys[-1]

    def result(metrics: dict) -> dict:
        return {key: value_of(metrics[source])}

    return [*computations, metric_types.DerivedMetricComputation(keys=[key], result=result)]


def confusion_matrices(thresholds: list[float], histogram: Columns) -> binary_confusion_matrices.Matrices:
    """The binary confusion matrices at `thresholds`: a prediction above a threshold counts as "yes".

    Counts from the table, for any number of thresholds, with numpy: exact
    (what TFMA's per-example path computes for one threshold) for a threshold
    on the key grid, as 0.5 is; another one reads its key's bucket as above it.
    """
    values = np.array(histogram[0], dtype=np.float64)
    labels = np.array(histogram[1], dtype=np.float64)
    negatives = np.array(histogram[3], dtype=np.float64) - labels
    # Entries at or below each threshold: the first `below` values of the ascending table.
    below = np.searchsorted(values, np.array(thresholds, dtype=np.float64), side="right")
    fn = np.concatenate([[0.0], np.cumsum(labels)])[below]
    tn = np.concatenate([[0.0], np.cumsum(negatives)])[below]
    tp, fp = math.fsum(labels) - fn, math.fsum(negatives) - tn
    as_list = lambda column: [float(v) for v in column]  # noqa: E731
    return binary_confusion_matrices.Matrices(list(thresholds), as_list(tp), as_list(tn), as_list(fp), as_list(fn))


def roc_auc(histogram: Columns) -> float:
    """The area under the ROC curve over the table's keys (sklearn's roc_auc_score on them); NaN when a
    class is absent.

    One (fpr, tpr) point per key, from the highest down; trapezoids between
    them, so a positive/negative pair under one key counts one half.
    """
    labels = np.array(histogram[1], dtype=np.float64)[::-1]
    negatives = np.array(histogram[3], dtype=np.float64)[::-1] - labels
    positives_total, negatives_total = labels.sum(), negatives.sum()
    if positives_total <= 0 or negatives_total <= 0:
        return float("nan")
    tpr = np.concatenate([[0.0], np.cumsum(labels)]) / positives_total
    fpr = np.concatenate([[0.0], np.cumsum(negatives)]) / negatives_total
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def _histogram(
    eval_config,  # noqa: ANN001 - TFMA's EvalConfig or None
    class_weights: dict | None,
    model_name: str,
    output_name: str,
    sub_key,  # noqa: ANN001 - TFMA's SubKey or None
    aggregation_type,  # noqa: ANN001 - TFMA's AggregationType or None
    example_weighted: bool,
) -> list[metric_types.MetricComputation]:
    """The prediction table: TFMA's calibration histogram with a bucket per prediction key (key_of).

    Under a name of its own: its value is Columns, not TFMA's list of Buckets,
    so TFMA's own metrics (which read that) must never be handed it.
    """
    key = metric_types.PlotKey(
        name=HISTOGRAM_NAME,
        model_name=model_name,
        output_name=output_name,
        sub_key=sub_key,
        example_weighted=example_weighted,
    )
    # How an example's label, prediction and weight are read: the preprocessor does it, the combiner's base keeps them.
    reading = {
        "eval_config": eval_config,
        "aggregation_type": aggregation_type,
        "class_weights": class_weights,
        "example_weighted": example_weighted,
    }
    inputs = _HistogramInputs(
        name=metric_util.generate_private_name_from_arguments(f"{HISTOGRAM_NAME}_inputs", key=key),
        model_name=model_name,
        output_name=output_name,
        sub_key=sub_key,
        **reading,
    )
    combiner = _HistogramCombiner(
        key=key,
        **reading,
        num_buckets=calibration_histogram.DEFAULT_NUM_BUCKETS,
        left=0.0,
        right=1.0,
        prediction_based_bucketing=True,
        fractional_labels=True,
    )
    return [metric_types.MetricComputation([key], [inputs], combiner)]


class _HistogramInputs(metric_types.Preprocessor):
    """An example's (label, prediction, example weight) triples as TFMA's histogram reads them, made once per example.

    TFMA's histogram combiner makes them in its add_input (key lookups, numpy
    conversions, a fractional label split in two), so once for every slice an
    example is in: three here (overall, payment type, hour), per model. A
    preprocessor runs before the examples are sliced.
    """

    def __init__(self, name: str, **conversion):  # noqa: ANN003 - to_label_prediction_example_weight's arguments
        super().__init__(name=name)
        self._conversion = conversion

    def process(self, extracts: dict):  # noqa: ANN201 - yields (label, prediction, example weight)
        inputs = metric_types.StandardMetricInputs(extracts)
        for label, prediction, weight in metric_util.to_label_prediction_example_weight(
            inputs, fractional_labels=True, flatten=True, **self._conversion
        ):
            yield float(label), float(prediction), float(weight)


class _HistogramCombiner(calibration_histogram._CalibrationHistogramCombiner):  # noqa: SLF001 - TFMA's own
    """TFMA's histogram combiner, keyed by key_of(prediction), fed by _HistogramInputs; its tables cross
    Beam's shuffles as Columns.

    Beam encodes each bundle's partial histogram per slice before it groups
    them, and the merged ones again on their way to the writer; its coder
    pickles TFMA's histograms (dataclass Buckets) one bucket at a time: about
    80,000 pickles and as many unpickles in an Evaluator run here. Columns are
    four lists of numbers, which it writes natively. In between, the table is a
    dict key -> [weighted labels, weighted predictions, weighted examples], not
    TFMA's Bucket dataclasses, which every merge made again from the Columns:
    adding an example costs a fifth and a merge two thirds of what they did
    (20 partial tables of 500 examples; a tenth of a second in an Evaluator run).
    """

    def add_input(self, accumulator: dict | Columns, element: tuple[float, float, float]) -> dict:
        """Files one (label, prediction, example weight) under its key, as TFMA's add_input does in its bucket."""
        table = _table(accumulator)
        label, prediction, weight = element
        _add(table, key_of(prediction), label * weight, prediction * weight, weight)
        return table

    def merge_accumulators(self, accumulators) -> dict:  # noqa: ANN001 - any iterable of accumulators
        accumulators = iter(accumulators)
        merged = _table(next(accumulators))
        for accumulator in accumulators:
            for key, labels, predictions, examples in _rows(accumulator):
                _add(merged, key, labels, predictions, examples)
        return merged

    def compact(self, accumulator: dict | Columns) -> Columns:
        return _columns(_table(accumulator))

    def extract_output(self, accumulator: dict | Columns) -> dict:
        return {self._key: _columns(_table(accumulator), ordered=True)}


def _add(table: dict, key: float, labels: float, predictions: float, examples: float) -> None:
    """Adds weighted sums under a key (a new list: merging must not change another accumulator's)."""
    sums = table.get(key)
    if sums is None:
        table[key] = [labels, predictions, examples]
    else:
        sums[0] += labels
        sums[1] += predictions
        sums[2] += examples


def _columns(table: dict, ordered: bool = False) -> Columns:
    keys = sorted(table) if ordered else list(table)
    sums = [table[key] for key in keys]
    return keys, [row[0] for row in sums], [row[1] for row in sums], [row[2] for row in sums]


def _table(accumulator: dict | Columns) -> dict:
    """The accumulator as a table (key -> [labels, predictions, examples]), from itself or from its Columns."""
    if isinstance(accumulator, dict):
        return accumulator
    return {key: [labels, predictions, examples] for key, labels, predictions, examples in _rows(accumulator)}


def _rows(accumulator: dict | Columns):  # noqa: ANN202 - an iterator of (key, labels, predictions, examples)
    """The accumulator's (key, weighted labels, weighted predictions, weighted examples), from either form."""
    if isinstance(accumulator, dict):
        return ((key, *sums) for key, sums in accumulator.items())
    return zip(*accumulator, strict=True)


class _FromHistogram:
    """Mixin for a TFMA metric computed from the prediction table (subclasses say how)."""

    # TFMA passes a create-computations function only the arguments its
    # signature names (model_name among them), so each is spelled out; the
    # metric's own options (AUC's curve, ...) come as the rest.
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
        **options,
    ) -> metric_types.MetricComputations:
        if top_k is not None or class_id is not None:
            raise ValueError(f"{type(self).__name__} is for binary models: no top_k or class_id")
        of_output = {  # what the metric and the histogram are of
            "model_name": model_name,
            "output_name": output_name,
            "sub_key": sub_key,
            "aggregation_type": aggregation_type,
            "example_weighted": example_weighted,
        }
        key = metric_types.MetricKey(name=name, **of_output)
        histogram = _histogram(eval_config=eval_config, class_weights=class_weights, **of_output)
        return _with_metric(histogram, key, self._value_of(key, thresholds, num_thresholds, options))

    def _value_of(self, key: metric_types.MetricKey, thresholds, num_thresholds, options: dict):  # noqa: ANN001, ANN202
        """The function from the histogram to the metric's value."""
        raise NotImplementedError


class _ConfusionMatrixFromHistogram(_FromHistogram):
    """TFMA's confusion-matrix metrics, their matrices counted from the prediction table (see confusion_matrices)."""

    def _value_of(self, key: metric_types.MetricKey, thresholds, num_thresholds, options: dict):  # noqa: ANN001, ANN202
        if num_thresholds is not None and thresholds is not None:
            raise ValueError(f"{type(self).__name__} takes thresholds or num_thresholds, not both")
        if thresholds is None and num_thresholds is None and self._default_threshold() is not None:
            thresholds = self._default_threshold()
        if isinstance(thresholds, float):
            thresholds = [thresholds]
        if thresholds is None:  # as TFMA: 10,000 thresholds spread evenly over [0, 1]
            count = num_thresholds or binary_confusion_matrices.DEFAULT_NUM_THRESHOLDS
            if count <= 1:
                raise ValueError("num_thresholds must be > 1")
            thresholds = binary_confusion_matrices._interpolated_thresholds(count)  # noqa: SLF001 - TFMA's own

        def value(histogram: Columns) -> float:
            return self._metric_value(key=key, matrices=confusion_matrices(thresholds, histogram), **options)

        return value


class HistogramAUC(_ConfusionMatrixFromHistogram, confusion_matrix_metrics.AUC):
    """The ROC AUC over the table's keys (roc_auc); given thresholds or another curve, TFMA's formula on the
    table's matrices."""

    def _value_of(self, key: metric_types.MetricKey, thresholds, num_thresholds, options: dict):  # noqa: ANN001, ANN202
        curve, summation = options.get("curve", "ROC"), options.get("summation_method", "interpolation")
        if thresholds is None and num_thresholds is None and curve.upper() == "ROC" and summation.lower() == "interpolation":
            return roc_auc
        return super()._value_of(key, thresholds, num_thresholds, options)


class HistogramBinaryAccuracy(_ConfusionMatrixFromHistogram, confusion_matrix_metrics.BinaryAccuracy):
    pass


class HistogramPrecision(_ConfusionMatrixFromHistogram, confusion_matrix_metrics.Precision):
    pass


class HistogramRecall(_ConfusionMatrixFromHistogram, confusion_matrix_metrics.Recall):
    pass


class _OneFunctionOfHistogram(_FromHistogram, tfma.metrics.Metric):
    """A metric that is one function of the histogram (`value`), with no thresholds of its own."""

    default_name = ""

    def __init__(self, name: str | None = None):
        super().__init__(metric_util.merge_per_key_computations(self._metric_computations),
                         name=name or self.default_name)

    def _value_of(self, key: metric_types.MetricKey, thresholds, num_thresholds, options: dict):  # noqa: ANN001, ANN202
        if thresholds is not None or num_thresholds is not None:
            raise ValueError(f"{type(self).__name__} takes no thresholds")
        return type(self).value

    @staticmethod
    def value(histogram: Columns) -> float:
        raise NotImplementedError


class HistogramCalibration(_OneFunctionOfHistogram):
    """Total predictions / total labels, as TFMA's Calibration."""

    default_name = "calibration"

    @staticmethod
    def value(histogram: Columns) -> float:
        labels, predictions = math.fsum(histogram[1]), math.fsum(histogram[2])
        return float("nan") if np.isclose(labels, 0.0) else predictions / labels  # as TFMA's Calibration


class BaseRateErrorReduction(_OneFunctionOfHistogram):
    """The share of the base rate's errors the model removes: (accuracy - base) / (1 - base), at 0.5.

    base: the accuracy of always answering the majority class. A model can rank
    well (AUC 0.92) and still almost never say "big tip" (recall 0.006, accuracy
    0.7725 where answering "no" everywhere scores 0.7713): that removes 0.5% of
    the errors. Unlike an accuracy bound, it means the same on spans with other base rates.
    """

    default_name = "base_rate_error_reduction"

    @staticmethod
    def value(histogram: Columns) -> float:
        matrices = confusion_matrices([0.5], histogram)
        tp, tn, fp, fn = (float(getattr(matrices, name)[0]) for name in ("tp", "tn", "fp", "fn"))
        base_errors = min(tp + fn, tn + fp)  # always answering the majority class is wrong on the minority
        return float("nan") if base_errors <= 0 else (base_errors - (fp + fn)) / base_errors


HISTOGRAM_METRICS = (HistogramBinaryAccuracy, HistogramPrecision, HistogramRecall, HistogramCalibration)


def metric_config(metric: type, **fields) -> tfma.MetricConfig:  # noqa: ANN003 - MetricConfig's fields
    """The MetricConfig that names one of the metrics above (TFMA imports it by module and class name)."""
    return tfma.MetricConfig(class_name=metric.__name__, module=metric.__module__, **fields)


def metric_configs(thresholds: dict[type, list] | None = None) -> list[tfma.MetricConfig]:
    """Accuracy, precision, recall and calibration, with `thresholds` (metric class -> its per-slice thresholds);
    AUC takes a baseline comparison too, so the caller names it."""
    thresholds = thresholds or {}
    return [metric_config(cls, per_slice_thresholds=thresholds.get(cls, [])) for cls in HISTOGRAM_METRICS]
