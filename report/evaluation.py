"""The model section: TFMA metrics overall and per slice, candidate vs baseline.

Overall metrics, thresholds and the blessing reasons come from
pipeline.run_summary, so the report and the console summary use the same
words; this module adds the per-slice view and the baseline comparison.
"""
from __future__ import annotations

import dataclasses
import math

from pipeline.run_summary import REPORTED_METRICS
from report import svg

SLICE_CHART_METRIC = "auc"
MAX_SLICES_CHARTED = 40


@dataclasses.dataclass
class SliceMetrics:
    name: str  # "Overall" or "payment_type = Cash"
    column: str  # "" for overall
    candidate: dict[str, float]
    baseline: dict[str, float]
    diff: dict[str, float]

    @property
    def examples(self) -> float:
        return self.candidate.get("example_count", 0.0)


@dataclasses.dataclass
class ModelSection:
    slices: list[SliceMetrics]
    charts: dict[str, str]  # slice column -> SVG of the chart metric per slice value
    has_baseline: bool


def _slice_name(slice_key) -> tuple[str, str]:  # noqa: ANN001 - tfma SliceKey proto
    if not slice_key.single_slice_keys:
        return "Overall", ""
    parts, columns = [], []
    for key in slice_key.single_slice_keys:
        kind = key.WhichOneof("kind")
        value = getattr(key, kind)
        value = value.decode() if isinstance(value, bytes) else value
        parts.append(f"{key.column} = {value}")
        columns.append(key.column)
    return " & ".join(parts), " & ".join(columns)


def load_slices(evaluation_uri: str) -> list[SliceMetrics]:
    """Every slice TFMA computed, overall first, then by column and descending size."""
    import tensorflow_model_analysis as tfma  # heavy: only when a report is written

    slices = []
    for per_slice in tfma.load_metrics(evaluation_uri):
        name, column = _slice_name(per_slice.slice_key)
        found: dict[str, dict[str, float]] = {"candidate": {}, "baseline": {}, "diff": {}}
        for entry in per_slice.metric_keys_and_values:
            key = entry.key
            if key.name not in REPORTED_METRICS or not entry.value.HasField("double_value"):
                continue
            role = "diff" if key.is_diff else ("baseline" if key.model_name == "baseline" else "candidate")
            found[role][key.name] = entry.value.double_value.value
        slices.append(SliceMetrics(name, column, found["candidate"], found["baseline"], found["diff"]))
    return sorted(slices, key=lambda s: (s.column != "", s.column, -s.examples, s.name))


def model_section(evaluation_uri: str, auc_threshold: float | None) -> ModelSection:
    slices = load_slices(evaluation_uri)
    charts: dict[str, str] = {}
    for column in sorted({s.column for s in slices if s.column}):
        rows = [s for s in slices if s.column == column][:MAX_SLICES_CHARTED]
        items = [(s.name.split(" = ", 1)[-1], s.candidate.get(SLICE_CHART_METRIC, math.nan)) for s in rows]
        compare = [s.baseline.get(SLICE_CHART_METRIC) for s in rows]
        charts[column] = svg.hbars(items, width=420, label_width=150, maximum=1.0, marker=auc_threshold,
                                   fmt="{:.3f}", compare=compare if any(c is not None for c in compare) else None)
    overall = [s for s in slices if not s.column]
    if overall:
        o = overall[0]
        items = [(k, v) for k, v in o.candidate.items() if k != "example_count"]
        compare = [o.baseline.get(k) for k, _ in items]
        charts[""] = svg.hbars(items, width=420, label_width=150, maximum=max([1.0] + [v for _, v in items if math.isfinite(v)]),
                               fmt="{:.4f}", compare=compare if any(c is not None for c in compare) else None)
    return ModelSection(slices, charts, any(s.baseline for s in slices))


def fmt_metric(value: float | None, name: str = "") -> str:
    """Counts as integers, everything else with four decimals; NaN (e.g. precision with no positives) as n/a."""
    if value is None:
        return ""
    if math.isnan(value):
        return "n/a"
    return f"{value:,.0f}" if name == "example_count" else f"{value:.4f}"
