"""Report pieces that need no pipeline run: statistics/anomalies protos, SVG charts, metric words."""
from __future__ import annotations

import json
import math

from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from report import svg
from report.build import _auc_threshold, _chain
from report.data import data_section
from report.evaluation import fmt_metric


def _write_split(root, split: str) -> None:
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = stats.datasets.add(num_examples=10)
    fare = dataset.features.add(type=statistics_pb2.FeatureNameStatistics.FLOAT)
    fare.path.step.append("fare")
    fare.num_stats.mean, fare.num_stats.max = 5.5, 10
    fare.num_stats.common_stats.tot_num_values, fare.num_stats.common_stats.max_num_values = 8, 1
    fare.num_stats.histograms.add().buckets.add(low_value=0, high_value=10, sample_count=8)
    pay = dataset.features.add(type=statistics_pb2.FeatureNameStatistics.STRING)
    pay.path.step.append("payment_type")
    pay.string_stats.unique = 2
    pay.string_stats.common_stats.tot_num_values, pay.string_stats.common_stats.max_num_values = 10, 1
    pay.string_stats.top_values.add(value="Cash", frequency=7)
    pay.string_stats.top_values.add(value="<Card>", frequency=3)
    (root / "stats" / f"Split-{split}").mkdir(parents=True)
    (root / "stats" / f"Split-{split}" / "FeatureStats.pb").write_bytes(stats.SerializeToString())
    anomalies = anomalies_pb2.Anomalies()
    if split == "eval":
        info = anomalies.anomaly_info["payment_type"]
        info.description = "Examples contain values missing from the schema: Bitcoin (~10%)."
        info.reason.add(type=anomalies_pb2.AnomalyInfo.ENUM_TYPE_UNEXPECTED_STRING_VALUES)
    (root / "anom" / f"Split-{split}").mkdir(parents=True)
    (root / "anom" / f"Split-{split}" / "SchemaDiff.pb").write_bytes(anomalies.SerializeToString())


def test_data_section_reads_tfdv_protos(tmp_path) -> None:
    for split in ("eval", "train"):
        _write_split(tmp_path, split)
    splits = data_section(str(tmp_path / "stats"), str(tmp_path / "anom"))
    assert [s.name for s in splits] == ["train", "eval"]  # train first
    train, evaluation = splits
    assert train.rows == 10 and not train.anomalies
    fare, pay = train.features
    assert (fare.name, fare.kind, fare.values, fare.missing) == ("fare", "numeric", 8, 2)
    assert "<svg" in fare.chart and "<rect" in fare.chart
    assert pay.kind == "string" and "&lt;Card&gt;" in pay.chart  # escaped inside SVG
    assert evaluation.anomalies == [("payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
                                     "Examples contain values missing from the schema: Bitcoin (~10%).")]


def test_missing_statistics_give_an_empty_section(tmp_path) -> None:
    assert data_section(None, None) == []
    assert data_section(str(tmp_path / "nope"), None) == []


def test_svg_charts_are_inline_and_survive_odd_values() -> None:
    assert svg.histogram([]) == ""
    chart = svg.hbars([("auc", 0.95), ("precision", math.nan)], maximum=1.0, marker=0.9, fmt="{:.3f}",
                      compare=[0.94, None])
    assert chart.startswith("<svg") and "n/a" in chart and "threshold 0.9" in chart and "http" not in chart.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


def test_metric_words_and_threshold_from_eval_config() -> None:
    assert fmt_metric(4966.0, "example_count") == "4,966"
    assert fmt_metric(1.0, "auc") == "1.0000"
    assert fmt_metric(math.nan, "precision") == "n/a"
    config = ('{"metrics_specs": [{"metrics": [{"class_name": "AUC", "per_slice_thresholds": [{"threshold": '
              '{"value_threshold": {"lower_bound": 0.9}}}]}]}]}')
    assert _auc_threshold(config) == 0.9
    assert _auc_threshold("not json") is None


def _step(node: str, execution_id: int, key: str, kind: str, artifact_id: int):  # noqa: ANN202 - mlmd.Step
    from report.mlmd import Step

    artifact = {"id": artifact_id, "type": kind, "uri": f"/root/{node}/{key}/{execution_id}", "properties": {}}
    return Step(node, execution_id, "ran", {}, {}, {key: [artifact]}, ["run"])


def test_lineage_chain_follows_the_trained_span_not_the_drift_baseline() -> None:
    # A span run: TFX may start the previous span's ExampleGen/StatisticsGen before this span's.
    steps = [_step("PreviousSpanExampleGen", 1, "examples", "Examples", 1),
             _step("CsvExampleGen", 2, "examples", "Examples", 2),
             _step("PreviousSpanStatisticsGen", 3, "statistics", "ExampleStatistics", 3),
             _step("StatisticsGen", 4, "statistics", "ExampleStatistics", 4),
             _step("Transform", 5, "transformed_examples", "Examples", 5)]
    chain = {a["type"]: a["node"] for a in _chain(steps)}
    assert chain == {"Examples": "CsvExampleGen", "ExampleStatistics": "StatisticsGen"}


def _page(outcome: str, states: dict[str, str], blessed: bool | None, pushed: str | None = None,
          data_warnings: tuple[str, ...] = ()) -> str:
    """The report's HTML for a run whose components ended in `states`, rendered by the real template."""
    from pipeline.run_summary import RunSummary
    from report.build import render
    from report.mlmd import Execution, RunRow

    executions = [Execution(i, node, state, i * 1000, i * 1000 + 500, {}, {})
                  for i, (node, state) in enumerate(states.items(), 1)]
    row = RunRow("2026-01-02T03:04:05", 1.0, 3.0, outcome, sum(s == "ran" for s in states.values()), 0, blessed,
                 pushed, None)
    summary = RunSummary(row.run_id, [], {"auc": 0.95}, [], blessed, [], pushed, None,
                         data_warnings=list(data_warnings))
    return render({"run_id": row.run_id, "row": row, "started": "2026-01-02 03:04:05", "output": "/out",
                   "summary": summary, "splits": [], "drift": [], "drift_accepted": False, "model": None, "evaluation_uri": None,
                   "auc_threshold": None, "executions": executions, "timing_chart": "", "steps": [], "chain": [],
                   "generated": "now", "unreadable": []})


def _verdict(html: str) -> str:
    import re

    return re.search(r'<div class="verdict (\w+)" id="verdict">(.*?)</div>', html, re.S).group(1, 2)


def test_a_run_that_failed_after_the_blessing_is_not_shown_as_a_good_outcome() -> None:
    kind, words = _verdict(_page("failed", {"Evaluator": "ran", "Pusher": "failed"}, blessed=True))
    assert kind == "bad" and "FAILED in Pusher" in words and "nothing was pushed" in words
    kind, words = _verdict(_page("incomplete", {"Evaluator": "ran", "Pusher": "running"}, blessed=True))
    assert kind == "bad" and "did not finish" in words
    kind, words = _verdict(_page("completed", {"Evaluator": "ran", "Pusher": "ran"}, blessed=True, pushed="17"))
    assert kind == "ok" and "pushed as version 17" in words


def test_the_report_lists_what_passed_the_gate_but_deserves_a_look() -> None:
    warning = "company: ' Taxi' (3 rows) has spaces around it: a category of its own"
    page = _page("completed", {"Evaluator": "ran"}, blessed=True, pushed="17", data_warnings=(warning,))
    assert '<ul id="data-warnings"><li>company: &#39; Taxi&#39; (3 rows) has spaces around it' in page
    assert 'id="data-warnings"' not in _page("completed", {"Evaluator": "ran"}, blessed=True, pushed="17")


def test_timing_chart_of_a_cached_run_does_not_draw_hundredths_of_a_second_as_full_bars() -> None:
    import re

    from report.build import timing_chart
    from report.mlmd import Execution

    cached = [Execution(i, node, "cached", 1000 * i, 1000 * i + ms, {}, {})
              for i, (node, ms) in enumerate([("CsvExampleGen", 20), ("Trainer", 10)], 1)]
    widths = [float(w) for w in re.findall(r'<rect x="\d+" y="[\d.]+" width="([\d.]+)"', timing_chart(cached))]
    assert len(widths) == 2 and max(widths) < 10  # 0.02 s of a chart whose full width is at least 1 s


def test_threshold_line_is_the_overall_slice_rule_the_blessing_applies() -> None:
    def config(*per_slice: tuple[list, float]) -> str:
        import json

        return json.dumps({"metrics_specs": [{"metrics": [{"class_name": "HistogramAUC", "per_slice_thresholds": [
            {"slicing_specs": specs, "threshold": {"value_threshold": {"lower_bound": bound}}}
            for specs, bound in per_slice]}]}]})

    by_payment = [{"feature_keys": ["payment_type"]}]
    assert _auc_threshold(config((by_payment, 0.5), ([{}], 0.9))) == 0.9
    assert _auc_threshold(config((by_payment, 0.5))) is None  # no rule for the overall slice: no line


def test_a_report_written_while_its_run_went_on_is_not_taken_as_its_metrics(tmp_path) -> None:
    """`taxi report` during the Evaluator wrote a sidecar without metrics, and `taxi runs` showed the finished,
    blessed run without them from then on."""
    from report import mlmd

    (tmp_path / "reports").mkdir()
    sidecar = tmp_path / "reports" / "2026-11-25T01-00-00.json"
    sidecar.write_text(json.dumps({"run_id": "2026-11-25T01:00:00", "outcome": "incomplete", "metrics": {}}))
    assert mlmd.sidecar_metrics(str(tmp_path), "2026-11-25T01:00:00") is None  # read from the evaluation instead
    sidecar.write_text(json.dumps({"run_id": "2026-11-25T01:00:00", "outcome": "completed", "metrics": {"auc": None}}))
    assert mlmd.sidecar_metrics(str(tmp_path), "2026-11-25T01:00:00") == {"auc": None}


def test_a_metric_without_a_value_is_n_a_in_the_runs_list() -> None:
    from cli.history import _number

    assert [_number(v) for v in (float("nan"), None, 0.94651)] == ["n/a", "n/a", "0.9465"]
