"""Collect one run's data, model, lineage and timing, and write it as one HTML file.

The file is self-contained (inline CSS and SVG, no scripts or fonts) so it can
be attached to a CI job, mailed or opened on a machine with no network. A
small JSON sidecar with the same headline numbers lets `runs` show metrics
without importing TFMA.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.atomic_files import replace_whole
from common.error_text import first_line
from pipeline.run_summary import tfma_metric_class
from report import mlmd, svg

TEMPLATES = Path(__file__).resolve().parent / "templates"
CHAIN = ("Examples", "ExampleStatistics", "ExampleAnomalies", "Schema", "TransformGraph", "Model",
         "ModelEvaluation", "ModelBlessing", "PushedModel")
PREVIOUS_EXAMPLE_GEN, PREVIOUS_STATISTICS_GEN = "PreviousSpanExampleGen", "PreviousSpanStatisticsGen"  # drift baseline
PREVIOUS_EXAMPLES, PREVIOUS_STATISTICS = "PreviousSpanExamples", "PreviousSpanStatistics"  # ... or its imports
BASELINE_NODES = (PREVIOUS_EXAMPLE_GEN, PREVIOUS_STATISTICS_GEN, PREVIOUS_EXAMPLES, PREVIOUS_STATISTICS)


def report_path(output: str, run_id: str) -> Path:
    return Path(output) / "reports" / f"{mlmd.safe_run_id(run_id)}.html"


def _auc_threshold(eval_config_json: str) -> float | None:
    """The AUC lower bound the Evaluator applied to the overall slice, for the threshold line on the charts."""
    try:
        config = json.loads(eval_config_json or "{}")
    except ValueError:
        return None
    for spec in config.get("metrics_specs", config.get("metricsSpecs", [])):
        for metric in spec.get("metrics", []):
            if tfma_metric_class(metric.get("class_name", metric.get("className", ""))) != "AUC":
                continue
            for per_slice in metric.get("per_slice_thresholds", metric.get("perSliceThresholds", [])):
                slices = per_slice.get("slicing_specs", per_slice.get("slicingSpecs"))
                if slices and not any(not s for s in slices):  # a rule for column slices only, not the overall one
                    continue
                bound = per_slice.get("threshold", {}).get("value_threshold", {}).get("lower_bound")
                if bound is None:
                    bound = per_slice.get("threshold", {}).get("valueThreshold", {}).get("lowerBound")
                if bound is not None:
                    return float(bound)
    return None


def _chain(steps: list[mlmd.Step]) -> list[dict[str, Any]]:
    """The headline path data -> ... -> pushed version: first artifact of each type, in order.

    The previous span's Examples and statistics (the drift baseline) are not on
    that path, though TFX may run them before this span's.
    """
    found: dict[str, dict[str, Any]] = {}
    for step in steps:
        if step.node in BASELINE_NODES:
            continue
        for artifacts in step.outputs.values():
            for artifact in artifacts:
                kind = artifact["type"]
                if kind in CHAIN and kind not in found:
                    found[kind] = {**artifact, "node": step.node, "execution_id": step.execution_id}
    return [found[k] for k in CHAIN if k in found]


def _drift(*uris: str | None) -> list:
    """The span-to-span drift the data gate judged, recomputed from the same artifacts (see drift_measurements)."""
    if not all(uris):
        return []
    from pipeline.components.data_gate import BaselineWithoutRows, drift_measurements

    try:
        return drift_measurements(*uris)
    except BaselineWithoutRows:  # the gate stopped on it; its line is the run's error
        return []


def timing_chart(executions: list[mlmd.Execution]) -> str:
    """Seconds per component, as bars on a scale of at least 1 s: a cached run's hundredths stay slivers."""
    items = [(e.node, e.seconds) for e in executions]
    return svg.hbars(items, width=460, label_width=190, fmt="{:.1f} s", maximum=max([1.0] + [s for _, s in items]))


def collect(output: str, run_id: str | None = None) -> dict[str, Any]:
    """Everything the template shows, as plain values; raises mlmd.StoreError on a missing run."""
    from pipeline.run_summary import summarize
    from report.data import data_section

    store = mlmd.open_store(output)
    run_id = mlmd.resolve_run_id(store, run_id)
    executions = mlmd.run_executions(store, run_id)
    row = mlmd.run_row(store, run_id)
    unreadable: list[str] = []  # outputs of the run that are gone or damaged: named, and their section left out

    def readable(what: str, read: Callable[..., Any], *args: Any, default: Any = None) -> Any:
        try:
            return read(*args)
        except Exception as error:  # noqa: BLE001 - a missing or damaged artifact file (OSError, DecodeError,
            # TensorFlow's DataLossError/NotFoundError) costs its section, not the whole report
            unreadable.append(f"{what}: {type(error).__name__}: {first_line(error)[:200]}")
            return default

    summary = readable("the run's evaluation", summarize, os.path.join(output, "metadata.sqlite"), run_id)
    by_node = {e.node: e for e in executions}

    def uri(node: str, key: str) -> str | None:
        artifacts = by_node[node].outputs.get(key, []) if node in by_node else []
        return artifacts[0].uri if artifacts else None

    splits = readable("the data statistics and anomalies", data_section, uri("StatisticsGen", "statistics"),
                      uri("ExampleValidator", "anomalies"), default=[])
    drift = readable("the drift from the previous span", _drift, uri("StatisticsGen", "statistics"),
                     uri(PREVIOUS_STATISTICS_GEN, "statistics") or uri(PREVIOUS_STATISTICS, "result"),
                     uri("ImportSchemaGen", "schema"), uri("CsvExampleGen", "examples"),
                     uri(PREVIOUS_EXAMPLE_GEN, "examples") or uri(PREVIOUS_EXAMPLES, "result"), default=[])
    model = None
    evaluator = by_node.get("Evaluator")
    evaluation_uri = uri("Evaluator", "evaluation")
    auc_threshold = _auc_threshold(str(evaluator.properties.get("eval_config", ""))) if evaluator else None
    if evaluation_uri and os.path.isdir(evaluation_uri):
        from report.evaluation import model_section

        model = readable("the evaluation's slices", model_section, evaluation_uri, auc_threshold)
    steps = [mlmd.step(store, e.id) for e in executions]
    timing = timing_chart(executions)
    return {
        "run_id": run_id,
        "row": row,
        "started": dt.datetime.fromtimestamp(row.started).strftime("%Y-%m-%d %H:%M:%S") if row.started else "?",
        "output": os.path.abspath(output),
        "summary": summary,
        "splits": splits,
        "drift": drift,
        "drift_accepted": bool(by_node["DataGate"].properties.get("accept_drift")) if "DataGate" in by_node else False,
        "model": model,
        "evaluation_uri": evaluation_uri,
        "auc_threshold": auc_threshold,
        "executions": executions,
        "timing_chart": timing,
        "steps": steps,
        "chain": _chain(steps),
        "generated": dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        "unreadable": unreadable,
    }


def render(context: dict[str, Any]) -> str:
    import jinja2

    from report.evaluation import fmt_metric

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["metric"] = fmt_metric
    env.filters["short"] = lambda v: (str(v)[:117] + "...") if len(str(v)) > 120 else str(v)
    return env.get_template("report.html").render(**context)


def write_report(output: str, run_id: str | None = None) -> Path:
    """Write <output>/reports/<run_id>.html (+ .json) and return the HTML path."""
    context = collect(output, run_id)
    path = report_path(output, context["run_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    summary, row = context["summary"], context["row"]
    metrics = {k: None if v != v else v for k, v in (summary.metrics if summary else {}).items()}  # NaN: null
    sidecar = {"run_id": context["run_id"], "outcome": row.outcome, "metrics": metrics,
               "blessed": row.blessed, "pushed_version": row.pushed_version, "report": str(path)}
    replace_whole(path, render(context))
    replace_whole(path.with_suffix(".json"), json.dumps(sidecar, indent=1))
    return path


def report_after_run(output: str) -> str:
    """The line local_runner prints after a run: where the report is, or why there is none."""
    try:
        return f"report: {write_report(output)}"
    except Exception as error:  # noqa: BLE001 - a report problem must never fail a finished run
        return f"warning: no report written: {type(error).__name__}: {error}"
