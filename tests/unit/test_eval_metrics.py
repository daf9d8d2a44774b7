"""The Evaluator's histogram-based metrics: TFMA's values, one per-example combiner."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_specs, metric_types

from models import eval_metrics
from pipeline import configs
from pipeline import pipeline as tfx_pipeline

STANDARD = [tfma.MetricConfig(class_name=name) for name in ("BinaryAccuracy", "Precision", "Recall", "Calibration")]


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
    rows = _rows(2000, seed=0)
    standard = _compute(STANDARD, rows)
    ours = _compute(eval_metrics.metric_configs(), rows)
    assert set(ours) == set(standard) and len(ours) == 5  # overall and four groups
    for slice_key, values in standard.items():
        assert set(ours[slice_key]) == set(values) == {"binary_accuracy", "precision", "recall", "calibration"}
        for name, value in values.items():
            assert ours[slice_key][name] == pytest.approx(value, rel=1e-9), (slice_key, name)
    labels = np.array([label for label, _ in rows])
    predictions = np.array([prediction for _, prediction in rows])
    assert ours[()]["binary_accuracy"] == pytest.approx(np.mean((predictions > 0.5) == labels))
    assert ours[()]["calibration"] == pytest.approx(predictions.sum() / labels.sum())


def test_a_slice_without_positive_labels_gets_what_tfma_gives_not_an_error() -> None:
    rows = [(0.0, 0.2), (0.0, 0.7), (0.0, 0.4)]
    ours, standard = _compute(eval_metrics.metric_configs(), rows)[()], _compute(STANDARD, rows)[()]
    assert math.isnan(ours["calibration"]) and math.isnan(standard["calibration"])
    assert ours["precision"] == standard["precision"] == 0.0
    assert ours["binary_accuracy"] == standard["binary_accuracy"] == pytest.approx(2 / 3)


def test_multi_class_options_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="takes thresholds only"):
        precision = tfma.MetricConfig(class_name="HistogramPrecision", module=eval_metrics.__name__, config='{"top_k": 2}')
        metric_specs.to_computations([tfma.MetricsSpec(metrics=[precision])], tfma.EvalConfig())


def test_pipeline_evaluator_runs_one_per_example_combiner_besides_the_example_count(tmp_path) -> None:
    """AUC's histogram feeds every other metric: per example and slice, two combiners, not five."""
    config = tfx_pipeline.eval_config(configs.local_config(str(tmp_path), str(tmp_path / "out")))
    computations = metric_specs.to_computations(config.metrics_specs, config)
    per_example = {
        computation.keys[0].name
        for computation in computations
        if not isinstance(computation, metric_types.DerivedMetricComputation)
    }
    assert len(per_example) == 2, per_example
    assert any(name.startswith("_calibration_histogram") for name in per_example)
    reported = {key.name for computation in computations for key in computation.keys if not key.name.startswith("_")}
    assert {"auc", "binary_accuracy", "precision", "recall", "calibration", "example_count"} <= reported
