"""The end-of-run summary and --json output with metrics a weak model really produces (NaN precision)."""
from __future__ import annotations

import json
import math

import pytest

from cli.common import emit_json
from pipeline.run_summary import ComponentRun, RunSummary


def _refuse_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def test_a_model_that_never_says_yes_is_summarised_not_crashed() -> None:
    """--train-steps 10 gives precision NaN (no positive predictions); the summary used int() on it."""
    summary = RunSummary("r1", [ComponentRun("Evaluator", "ran", 5.7)],
                         {"auc": 0.5, "precision": math.nan, "calibration": math.inf, "example_count": 4966.0},
                         ["AUC >= 0.90"], False, ["AUC 0.5000 < required 0.90"], None, None)
    lines = summary.lines()
    assert "  auc 0.5000  precision nan  calibration inf  example_count 4966" in lines
    assert "model: NOT blessed: AUC 0.5000 < required 0.90" in lines
    assert lines[-1] == "pushed: nothing (not blessed)"  # "nothing new" read as if an earlier push stood in


def test_json_output_writes_non_finite_numbers_as_null(capsys: pytest.CaptureFixture) -> None:
    emit_json({"metrics": {"precision": math.nan, "auc": 0.5, "lift": [-math.inf, 1.0]}})
    line = capsys.readouterr().out
    assert json.loads(line, parse_constant=_refuse_constants) == {
        "metrics": {"precision": None, "auc": 0.5, "lift": [None, 1.0]}}


@pytest.mark.parametrize(("diff", "words"), [(-2.126e-05, "AUC fell 0.000021 below"), (-0.0123, "AUC fell 0.0123 below"),
                                              (-3e-09, "AUC fell 0.0000000030 below")])
def test_a_refusal_for_a_tiny_auc_drop_says_how_much_it_fell(diff: float, words: str) -> None:
    """Repro: `local_runner.py --output o`, then `--output o --train-steps 400`: the candidate's AUC is 2.1e-5 under
    the serving model's and the run said `NOT blessed: AUC fell 0.0000 below the serving model`."""
    from tensorflow_model_analysis.proto import validation_result_pb2

    from pipeline import run_summary

    failure = validation_result_pb2.ValidationFailure()
    failure.metric_key.name = "auc"
    failure.metric_key.is_diff = True
    failure.metric_value.double_value.value = diff
    failure.metric_threshold.change_threshold.absolute.value = -1e-10
    assert run_summary._failure_words(failure) == f"{words} the serving model (allowed: none)"


def test_a_first_run_without_a_serving_model_does_not_list_the_comparison_with_it(tmp_path) -> None:
    """TFMA drops change thresholds when there is no baseline (first push): the summary must not claim the model was
    checked against a serving model. Repro: `local_runner.py --output /tmp/new` prints
    `threshold: AUC not below the serving model (allowed drop: none)` on a run that had none."""
    from google.protobuf import json_format

    from pipeline import configs, run_summary
    from pipeline import pipeline as tfx_pipeline

    config = json_format.MessageToJson(tfx_pipeline.eval_config(configs.local_config(str(tmp_path / "d"), str(tmp_path / "o"))))
    assert run_summary._threshold_words(config, has_baseline=False) == [
        "AUC >= 0.90", "calibration within [0.80, 1.25]",
        "removes >= 10% of the errors of always answering the majority class"]
    assert "AUC not below the serving model (allowed drop: none)" in run_summary._threshold_words(config, has_baseline=True)


def test_the_rules_say_the_thresholds_as_set_not_rounded(tmp_path) -> None:
    """--auc-threshold 0.9461 printed `AUC >= 0.95` beside a blessed AUC of 0.9465, and --min-error-reduction
    0.9995 `required 100%`: the printed rules contradicted the verdict."""
    import dataclasses

    from google.protobuf import json_format

    from pipeline import configs, run_summary
    from pipeline import pipeline as tfx_pipeline

    config = dataclasses.replace(configs.local_config(str(tmp_path / "d"), str(tmp_path / "o")), auc_threshold=0.9461,
                                 calibration_tolerance=0.0195, min_error_reduction=0.9995, auc_change_tolerance=1e-5)
    words = run_summary._threshold_words(json_format.MessageToJson(tfx_pipeline.eval_config(config)))
    assert words == ["AUC >= 0.9461", "AUC not below the serving model (allowed drop: 0.00001)",
                     "calibration within [0.980873, 1.0195]",
                     "removes >= 99.95% of the errors of always answering the majority class"]


@pytest.mark.parametrize(("name", "bound", "words"), [
    ("auc", 0.9, "AUC could not be computed: every eval example has the same label (required >= 0.90)"),
    ("base_rate_error_reduction", 0.1, "no errors of always answering the majority class to remove: every eval "
                                       "example has the same label (required: removes >= 10%)"),
])
def test_a_refusal_on_single_class_labels_says_so(name: str, bound: float, words: str) -> None:
    """Data with every tip 0 (or every fare 0) gives one label class: the run said `AUC could not be computed
    (< required 0.90); base_rate_error_reduction could not be computed (< required 0.10)`, not why."""
    from tensorflow_model_analysis.proto import validation_result_pb2

    from pipeline import run_summary

    failure = validation_result_pb2.ValidationFailure()
    failure.metric_key.name = name
    failure.metric_value.double_value.value = math.nan
    failure.metric_threshold.value_threshold.lower_bound.value = bound
    assert run_summary._failure_words(failure) == words


def test_a_comparison_with_the_serving_model_on_single_class_labels_says_so_not_nan() -> None:
    """An eval split of one label class after a blessed model: the run said `AUC fell nan below the serving model`."""
    from tensorflow_model_analysis.proto import validation_result_pb2

    from pipeline import run_summary

    failure = validation_result_pb2.ValidationFailure()
    failure.metric_key.name = "auc"
    failure.metric_key.is_diff = True
    failure.metric_value.double_value.value = math.nan
    failure.metric_threshold.change_threshold.absolute.value = -1e-10
    assert run_summary._failure_words(failure) == (
        "AUC could not be compared with the serving model's: every eval example has the same label")


def _statistics(folder, split: str, values: dict[str, dict[str, float]]) -> None:
    """A StatisticsGen split as TFDV writes it: string columns with their value histograms."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    stats = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = stats.datasets.add(num_examples=100)
    for name, counts in values.items():
        feature = dataset.features.add()
        feature.path.step.append(name)
        for rank, (label, count) in enumerate(counts.items()):
            feature.string_stats.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=label,
                                                            sample_count=count)
    fare = dataset.features.add()
    fare.path.step.append("fare")
    fare.num_stats.mean = 11.0
    (folder / f"Split-{split}").mkdir(parents=True)
    (folder / f"Split-{split}" / "FeatureStats.pb").write_bytes(stats.SerializeToString())


def test_string_values_with_spaces_around_them_are_named_after_the_run(tmp_path) -> None:
    """` Taxi Affiliation Services` in an open-domain column passed the gate silently and trained a category clients
    that send the name trimmed never reach (in a column with a domain the gate stops on it)."""
    from pipeline.run_summary import padded_strings

    _statistics(tmp_path, "train", {"company": {"Flash Cab": 50, " Taxi Affiliation Services": 40, "Blue ": 2},
                                    "payment_type": {"Cash": 60, "Credit Card": 40}})
    _statistics(tmp_path, "eval", {"company": {" Taxi Affiliation Services": 20, "Flash Cab": 9}})
    assert padded_strings(str(tmp_path)) == [
        "company: 2 values have spaces around them (' Taxi Affiliation Services' (60 rows), 'Blue ' (2 rows)): "
        "categories of their own, which clients sending the values trimmed never reach; trim them in the data"]
    summary = RunSummary("r1", [ComponentRun("StatisticsGen", "ran", 1.0)], {}, [], True, [], "7", "/m/7",
                         data_warnings=padded_strings(str(tmp_path)))
    assert summary.lines()[2].startswith("data: company: 2 values have spaces around them")


def test_clean_string_values_give_no_data_line(tmp_path) -> None:
    from pipeline.run_summary import padded_strings

    _statistics(tmp_path, "train", {"company": {"Flash Cab": 50, "Taxi Affiliation Services": 40},
                                    "payment_type": {"Cash": 60, "": 3}})
    assert padded_strings(str(tmp_path)) == []
