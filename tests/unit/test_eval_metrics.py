"""The Evaluator's metrics read off one prediction table: exact values, one per-example combiner."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import (
    binary_confusion_matrices,
    calibration_histogram,
    metric_specs,
    metric_types,
)

from models import eval_metrics
from pipeline import configs
from pipeline import pipeline as tfx_pipeline

STANDARD = [tfma.MetricConfig(class_name=name) for name in ("AUC", "BinaryAccuracy", "Precision", "Recall", "Calibration")]
OURS = [eval_metrics.metric_config(eval_metrics.HistogramAUC), *eval_metrics.metric_configs()]


def _compute(metrics: list[tfma.MetricConfig], rows: list[tuple[float, float]]) -> dict[tuple, dict[str, float]]:
    """TFMA's own Beam evaluation of the `metrics` configs over (label, prediction) rows: overall and per group."""
    frame = pd.DataFrame(rows, columns=["label", "prediction"])
    frame["group"] = [f"g{index % 4}" for index in range(len(frame))]
    config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="label", prediction_key="prediction")],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["group"])],
    )
    result = tfma.analyze_raw_data(frame, config)
    values = {}
    for slice_key, by_output in result.slicing_metrics:
        metrics_of_slice = by_output[""][""]
        values[slice_key] = {name: float(value["doubleValue"]) for name, value in metrics_of_slice.items()}
    return values


def _rows(count: int, seed: int) -> list[tuple[float, float]]:
    random = np.random.RandomState(seed)
    labels = random.randint(0, 2, count)
    predictions = np.clip(0.35 * labels + random.uniform(0, 0.65, count), 0.0, 1.0)
    # Predictions right on a histogram bucket edge and on the 0.5 threshold itself.
    predictions[:3] = [0.5, 0.25, 0.9999]
    return list(zip(labels.astype(float), predictions.astype(np.float32).astype(float), strict=True))


def test_histogram_metrics_equal_tfma_metrics_on_every_slice() -> None:
    """TFMA's own values, but AUC: the exact area where TFMA's is read off 1e-4-wide buckets (close here)."""
    rows = _rows(2000, seed=0)
    standard = _compute(STANDARD, rows)
    ours = _compute(OURS, rows)
    assert set(ours) == set(standard) and len(ours) == 5  # overall and four groups
    for slice_key, values in standard.items():
        assert set(ours[slice_key]) == set(values) == {"auc", "binary_accuracy", "precision", "recall", "calibration"}
        for name, value in values.items():
            if name == "auc":
                assert ours[slice_key][name] == pytest.approx(value, abs=1e-4), slice_key
            else:
                assert ours[slice_key][name] == pytest.approx(value, rel=1e-9), (slice_key, name)
    labels = np.array([label for label, _ in rows])
    predictions = np.array([prediction for _, prediction in rows])
    assert ours[()]["binary_accuracy"] == pytest.approx(np.mean((predictions > 0.5) == labels))
    assert ours[()]["calibration"] == pytest.approx(predictions.sum() / labels.sum())


def test_a_slice_without_positive_labels_gets_what_tfma_gives_not_an_error() -> None:
    rows = [(0.0, 0.2), (0.0, 0.7), (0.0, 0.4)]
    ours, standard = _compute(OURS, rows)[()], _compute(STANDARD, rows)[()]
    assert math.isnan(ours["calibration"]) and math.isnan(standard["calibration"])
    assert math.isnan(ours["auc"]) and standard["auc"] == 0.0  # undefined, where TFMA says 0.0
    assert ours["precision"] == standard["precision"] == 0.0
    assert ours["binary_accuracy"] == standard["binary_accuracy"] == pytest.approx(2 / 3)


def test_multi_class_options_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="is for binary models"):
        precision = tfma.MetricConfig(class_name="HistogramPrecision", module=eval_metrics.__name__, config='{"top_k": 2}')
        metric_specs.to_computations([tfma.MetricsSpec(metrics=[precision])], tfma.EvalConfig())


def test_pipeline_evaluator_runs_one_per_example_combiner_besides_the_example_count(tmp_path) -> None:
    """AUC's histogram feeds every other metric: per example and slice, two combiners, not five."""
    config = tfx_pipeline.eval_config(configs.local_config(str(tmp_path / "data"), str(tmp_path / "out")))
    computations = metric_specs.to_computations(config.metrics_specs, config)
    per_example = {
        computation.keys[0].name
        for computation in computations
        if not isinstance(computation, metric_types.DerivedMetricComputation)
    }
    assert len(per_example) == 2, per_example
    assert eval_metrics.HISTOGRAM_NAME in per_example
    reported = {key.name for computation in computations for key in computation.keys if not key.name.startswith("_")}
    assert {"auc", "binary_accuracy", "precision", "recall", "calibration", "example_count"} <= reported


@pytest.mark.parametrize("seed", range(6))
def test_confusion_matrices_count_predictions_above_each_threshold(seed: int) -> None:
    random = np.random.RandomState(seed)
    # A table as the combiner leaves it: distinct predictions ascending (0 and 1 sometimes among them),
    # fractional and whole weights.
    values = np.unique(np.concatenate([random.uniform(0, 1, random.randint(1, 3000)), random.choice([0.0, 0.5, 1.0], 2)]))
    labels = random.randint(0, 4, len(values)) * random.choice([1.0, 0.37])
    examples = labels + random.randint(0, 4, len(values))
    table = (list(values), list(labels), list(random.uniform(0, 1, len(values))), list(examples))
    threshold_sets = [
        binary_confusion_matrices._interpolated_thresholds(10000),
        binary_confusion_matrices._interpolated_thresholds(200),
        [0.5], [0.0], [0.25, 0.5, 0.75], [0.0, 0.5, 1.0], [-0.5, 0.3, 1.2], [float("-inf")], [float(values[0])],
    ]
    for thresholds in threshold_sets:
        got = eval_metrics.confusion_matrices(thresholds, table)
        assert got.thresholds == thresholds
        for i, threshold in enumerate(thresholds):
            above = values > threshold
            expected = {
                "tp": labels[above].sum(), "fp": (examples - labels)[above].sum(),
                "fn": labels[~above].sum(), "tn": (examples - labels)[~above].sum(),
            }
            for name, value in expected.items():
                assert getattr(got, name)[i] == pytest.approx(value, abs=1e-9), (thresholds[i], name)


def test_roc_auc_is_roc_auc_score_with_weights_and_ties() -> None:
    from sklearn.metrics import roc_auc_score

    random = np.random.RandomState(3)
    labels = random.randint(0, 2, 500).astype(float)
    predictions = np.round(random.uniform(0, 1, 500) * 0.6 + 0.4 * labels, 2)  # many ties
    weights = random.choice([0.5, 1.0, 2.0], 500)
    frame = pd.DataFrame({"p": predictions, "l": labels * weights, "pw": predictions * weights, "w": weights})
    grouped = frame.groupby("p").sum().sort_index()
    table = (list(grouped.index), list(grouped.l), list(grouped.pw), list(grouped.w))
    assert eval_metrics.roc_auc(table) == pytest.approx(roc_auc_score(labels, predictions, sample_weight=weights),
                                                        abs=1e-12)
    assert math.isnan(eval_metrics.roc_auc(([0.1, 0.9], [0.0, 0.0], [0.1, 0.9], [1.0, 1.0])))
    assert math.isnan(eval_metrics.roc_auc(([0.1, 0.9], [1.0, 1.0], [0.1, 0.9], [1.0, 1.0])))


def test_histogram_combiner_compacted_for_the_shuffle_merges_to_one_pass_table() -> None:
    """Fed by its preprocessor, partial tables compacted (as Beam encodes them between bundles) merge to the table
    of one pass: per distinct prediction, TFMA's weighted labels (fractional ones split), predictions, examples."""
    (computation,) = eval_metrics._histogram(
        eval_config=None, model_name="", output_name="", sub_key=None, aggregation_type=None, class_weights=None,
        example_weighted=False,
    )
    (tfma_computation,) = calibration_histogram.calibration_histogram()
    assert computation.keys[0]._replace(name="") == tfma_computation.keys[0]._replace(name="")
    assert computation.keys[0].name == eval_metrics.HISTOGRAM_NAME != tfma_computation.keys[0].name
    ours = computation.combiner
    (preprocessor,) = computation.preprocessors
    rows = _rows(3000, seed=1)
    rows[3:6] = [(0.3, 0.7), (0.75, 0.2), (1.0, 0.0)]  # fractional labels: TFMA splits them in two
    rows[6:9] = [(1.0, 0.25), (0.0, 0.25), (1.0, 0.00001)]  # a repeated prediction; one far under 1e-4
    inputs = [
        metric_types.StandardMetricInputs(labels=np.array([label]), predictions=np.array([prediction]))
        for label, prediction in rows
    ]

    def partials(parts: list, compact: bool) -> list:
        accumulators = []
        for part in parts:
            accumulator = ours.create_accumulator()
            for element in part:
                for item in preprocessor.process(element):
                    accumulator = ours.add_input(accumulator, item)
            accumulators.append(ours.compact(accumulator) if compact else accumulator)
        return accumulators

    def output(accumulator) -> tuple:
        (value,) = ours.extract_output(accumulator).values()
        return value

    compacted = partials([inputs[:1000], inputs[1000:1001], inputs[1001:]], compact=True)
    assert all(isinstance(part, tuple) and all(isinstance(column, list) for column in part) for part in compacted)
    (one_pass,) = partials([inputs], compact=False)
    merged = output(ours.merge_accumulators(compacted))
    expected = output(one_pass)
    assert merged[0] == expected[0] == sorted({eval_metrics.key_of(prediction) for _, prediction in rows})
    for got, want in zip(merged[1:], expected[1:], strict=True):
        assert got == pytest.approx(want, abs=1e-12)
    frame = pd.DataFrame([(label, eval_metrics.key_of(p)) for label, p in rows], columns=["label", "key"])
    frame = frame.groupby("key").sum()
    assert merged[1] == pytest.approx(list(frame.label), abs=1e-12)  # the label weight, fractional ones split in two
    assert sum(merged[3]) == len(rows)


@pytest.mark.parametrize("seed", [0, 1])
def test_base_rate_error_reduction_through_tfma(seed: int) -> None:
    """The share of always-the-majority-answer's errors removed, run by TFMA like the Evaluator runs it."""
    rows = _rows(400, seed)
    flat = [(label, 0.1 + 0.3 * label) for label, _ in rows]  # ranks perfectly, never says yes
    for data in (rows, flat):
        values = _compute([eval_metrics.metric_config(eval_metrics.HistogramBinaryAccuracy),
                           eval_metrics.metric_config(eval_metrics.BaseRateErrorReduction)], data)[()]
        positives = sum(label for label, _ in data) / len(data)
        base_errors = min(positives, 1 - positives)
        expected = (base_errors - (1 - values["binary_accuracy"])) / base_errors
        assert values["base_rate_error_reduction"] == pytest.approx(expected, abs=1e-9)
    assert values["base_rate_error_reduction"] <= 0  # the flat model removes none


def test_blessing_rules_and_a_refusal_in_words(tmp_path) -> None:
    from google.protobuf import json_format
    from tensorflow_model_analysis.proto import validation_result_pb2

    from pipeline import run_summary

    config = tfx_pipeline.eval_config(configs.local_config(str(tmp_path / "data"), str(tmp_path / "out")))
    assert run_summary._threshold_words(json_format.MessageToJson(config)) == [
        "AUC >= 0.90", "AUC not below the serving model (allowed drop: none)", "calibration within [0.80, 1.25]",
        "removes >= 10% of the errors of always answering the majority class"]
    failure = validation_result_pb2.ValidationFailure()
    failure.metric_key.name = "base_rate_error_reduction"
    failure.metric_value.double_value.value = 0.0053
    failure.metric_threshold.value_threshold.lower_bound.value = 0.1
    assert run_summary._failure_words(failure) == ("removes 0.5% of the errors of always answering the majority "
                                                    "class (< required 10%)")
    # a model whose probabilities sit far above the observed rate (--batch-size 65536 --train-steps 3: AUC 0.93,
    # calibration 1.88) was blessed; the range is the tolerance's, both ways
    (calibration,) = [metric for metric in config.metrics_specs[0].metrics if metric.class_name == "HistogramCalibration"]
    bounds = calibration.per_slice_thresholds[0].threshold.value_threshold
    assert (bounds.lower_bound.value, bounds.upper_bound.value) == pytest.approx((0.8, 1.25))
    failure = validation_result_pb2.ValidationFailure()
    failure.metric_key.name = "calibration"
    failure.metric_threshold.value_threshold.CopyFrom(bounds)
    failure.metric_value.double_value.value = 1.8819
    assert run_summary._failure_words(failure) == "calibration 1.8819 not within [0.80, 1.25]"
    failure.metric_value.double_value.value = math.nan
    assert run_summary._failure_words(failure) == ("calibration could not be computed: every eval example has the "
                                                    "same label (required within [0.80, 1.25])")
    wide = configs.local_config(str(tmp_path / "data"), str(tmp_path / "out"), calibration_tolerance=1.0)
    assert "calibration within [0.50, 2.00]" in run_summary._threshold_words(
        json_format.MessageToJson(tfx_pipeline.eval_config(wide)))


def _fine_rows(seed: int) -> list[tuple[float, float]]:
    """Predictions as the taxi model gives them: half the eval split under 1e-4 (one histogram bucket), where
    the ranking still separates the classes; and a few just above the 0.5 threshold, inside its bucket."""
    random = np.random.RandomState(seed)
    labels = random.randint(0, 2, 1200)
    tiny = np.exp(random.uniform(np.log(1e-8), np.log(9e-5), 1200)) * np.where(labels == 1, 1.0, 0.05)
    wide = np.clip(0.3 * labels + random.uniform(0, 0.7, 1200), 0.0, 1.0)
    predictions = np.where(np.arange(1200) % 2 == 0, tiny, wide)
    predictions[:4] = [0.50003, 0.50007, 0.50002, 0.5]
    labels[:4] = [1, 0, 1, 1]
    return list(zip(labels.astype(float), predictions.astype(np.float32).astype(float), strict=True))


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_equal_an_independent_recomputation_below_the_histogram_resolution(seed: int) -> None:
    """AUC is the area over predictions keyed to 13 significant bits (sklearn's roc_auc_score to 1e-4), and
    accuracy/precision/recall count prediction > 0.5
    exactly, as TFMA's own single-threshold metrics do: not the 1e-4-wide buckets of the histogram.

    Repro on the pipeline: `python local_runner.py --output /tmp/o`; payment_type = Cash reported AUC 0.4675
    where roc_auc_score on the same predictions gives 0.3166 (51% of eval predictions are < 1e-4), and a
    prediction in (0.5, 0.5001) was counted as "no" (Credit Card accuracy 0.69077 vs 0.69136)."""
    from sklearn.metrics import roc_auc_score

    rows = _fine_rows(seed)
    values = _compute(OURS, rows)
    standard = _compute(STANDARD, rows)
    frame = pd.DataFrame(rows, columns=["label", "prediction"])
    frame["group"] = [f"g{index % 4}" for index in range(len(frame))]
    for slice_key, group in [((), frame), *((((("group", f"g{i}"),)), frame[frame.group == f"g{i}"]) for i in range(4))]:
        y, p = group.label.to_numpy(), group.prediction.to_numpy()
        said_yes = p > 0.5
        got = values[slice_key]
        keys = np.array([eval_metrics.key_of(value) for value in p])
        assert got["auc"] == pytest.approx(roc_auc_score(y, keys), abs=1e-9), slice_key  # the area over the keys
        assert got["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-4), slice_key  # the buckets were 0.15 off
        assert got["binary_accuracy"] == pytest.approx(np.mean(said_yes == y), abs=1e-12), slice_key
        assert got["precision"] == pytest.approx(y[said_yes].mean(), abs=1e-12), slice_key
        assert got["recall"] == pytest.approx(said_yes[y == 1].mean(), abs=1e-12), slice_key
        assert got["calibration"] == pytest.approx(p.sum() / y.sum(), rel=1e-9), slice_key
        for name in ("binary_accuracy", "precision", "recall", "calibration"):  # TFMA's own single-threshold values
            assert got[name] == pytest.approx(standard[slice_key][name], rel=1e-9), (slice_key, name)


@pytest.mark.parametrize("label", [0.0, 1.0])
def test_auc_of_a_slice_with_one_class_only_is_undefined_not_zero(label: float) -> None:
    """roc_auc_score refuses one class; the report must not show such a slice (payment_type = No Charge,
    20 rides, no big tip) as AUC 0.0000, a model ranking every pair wrong."""
    rows = [(label, 0.2), (label, 0.7), (label, 0.4)]
    assert math.isnan(_compute(OURS, rows)[()]["auc"])


def test_prediction_keys_are_relatively_fine_bounded_and_exact_at_one_half() -> None:
    """A key is the prediction rounded up to 13 significant bits: within 0.012% of it at any scale, never below
    it, so 'prediction > 0.5' reads off the keys exactly; and a million predictions share at most 8,192 keys a binade."""
    key_of = eval_metrics.key_of
    assert key_of(0.5) == 0.5 and key_of(0.0) == 0.0 and key_of(1.0) == 1.0
    assert key_of(np.nextafter(0.5, 1.0)) > 0.5 and key_of(np.nextafter(0.5, 0.0)) <= 0.5
    predictions = np.exp(np.random.RandomState(0).uniform(np.log(1e-9), 0.0, 1_000_000))
    keys = np.array([key_of(float(p)) for p in predictions])
    assert np.all(keys >= predictions) and np.all((keys - predictions) / predictions <= 2.0**-13)
    binades = np.unique(np.floor(np.log2(predictions))).size
    assert len(set(keys)) <= 8192 * binades < 300_000
