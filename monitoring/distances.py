"""Skew and drift distances on exact counts of raw values, and whether they are more than sampling noise.

One engine for both comparisons the schema declares: `taxi monitor` (served
values vs the training Examples, skew_comparator) and the data gate (a span's
Examples vs the previous span's, drift_comparator).

TFDV's comparators work on the summary histograms in two statistics protos.
For numeric features it rebins the two equal-width histograms onto shared bounds
assuming values spread evenly inside each bucket; one 700-dollar fare makes the
training buckets 70 dollars wide, and then a random sample of the training data
itself scores fare 0.33 against a threshold of 0.08. Here both sides are counted
exactly, value by value, in the same bins:

- numeric: the deciles of the training values (ties collapsed, so a value that
  fills several deciles is one bin) plus a bin below the training minimum and one
  above its maximum, Jensen-Shannon divergence with log base 2 (0..1);
- categorical: one bin per value, L-infinity distance (largest gap in share).

A distance over its threshold is skew only when a chi-square test of the two
count vectors also says it is not sampling noise (p < SIGNIFICANCE): 500 served
rows drawn from the training data itself put payment_type's share 0.04 off in
5% of draws, and an hourly cron would retrain on them.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from monitoring.sampling import BottomK

EXACT_KINDS = ("infinity_norm", "jensen_shannon_divergence")
MAX_ROWS = 200_000  # a uniform sample beyond this: exact counts on it, reading all rows once
READ_BATCH = 8192
QUANTILE_BINS = 10
SIGNIFICANCE = 0.001
MIN_EXPECTED = 5.0  # chi-square's usual rule: bins with fewer expected served rows are pooled


class NoExamples(ValueError):
    """The shards hold no rows (or there are none)."""


@dataclasses.dataclass(frozen=True)
class Distance:
    value: float
    p_value: float  # chance of a distance this large if served and training rows came from one distribution
    bins: int

    def skewed(self, threshold: float) -> bool:
        return self.value > threshold and self.p_value < SIGNIFICANCE


def numeric_counts(training: np.ndarray, served: np.ndarray, bins: int = QUANTILE_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Counts in bins (-inf, min), [min, e1], (e1, e2], ..., (ek, max], (max, inf); e: training quantiles.

    The outer bins are empty for the training sample, so served values outside the
    training range are counted apart instead of joining the lowest or highest decile.
    """
    low, high = float(np.min(training)), float(np.max(training))
    inner = np.quantile(training, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(np.concatenate([[np.nextafter(low, -np.inf)], inner, [high]]))
    size = len(edges) + 1
    return (np.bincount(np.searchsorted(edges, training, side="left"), minlength=size),
            np.bincount(np.searchsorted(edges, served, side="left"), minlength=size))


def categorical_counts(training: Sequence[str], served: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Counts per value over the union of values (a value only one side has is a bin too)."""
    values = sorted(set(training) | set(served))
    index = {v: i for i, v in enumerate(values)}
    return (np.bincount([index[v] for v in training], minlength=len(values)),
            np.bincount([index[v] for v in served], minlength=len(values)))


def _shares(counts: np.ndarray) -> np.ndarray:
    return counts / counts.sum()


def jensen_shannon(a: np.ndarray, b: np.ndarray) -> float:
    p, q = _shares(a), _shares(b)
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        used = x > 0
        return float(np.sum(x[used] * np.log2(x[used] / m[used])))

    return max(0.0, (kl(p) + kl(q)) / 2)


def l_infinity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(_shares(a) - _shares(b))))


def homogeneity_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """Chi-square test that both count vectors come from one distribution; sparse bins pooled into one."""
    from scipy.stats import chi2_contingency

    table = np.array([a, b], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    expected = table.sum(axis=0) * min(table.sum(axis=1)) / table.sum()
    sparse = expected < MIN_EXPECTED
    if sparse.any():
        table = np.column_stack([table[:, ~sparse], table[:, sparse].sum(axis=1)])
    if table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table, correction=False)[1])


def measure(kind: str, training: Sequence, served: Sequence) -> Distance:
    """kind: jensen_shannon_divergence (numeric values on training deciles, categorical ones value by value,
    as TFDV allows it on both) or infinity_norm (value by value); empty sides are refused."""
    if not len(training) or not len(served):
        raise ValueError("both samples need at least one value")
    if kind == "jensen_shannon_divergence":
        numeric = _is_number(training[0])
        a, b = (numeric_counts(np.asarray(training, dtype=float), np.asarray(served, dtype=float)) if numeric
                else categorical_counts(training, served))
        value = jensen_shannon(a, b)
    elif kind == "infinity_norm":
        a, b = categorical_counts(training, served)
        value = l_infinity(a, b)
    else:
        raise ValueError(f"no exact measure for {kind}")
    return Distance(round(value, 6), homogeneity_p_value(a, b), len(a))


def comparators(schema, field: str) -> list[tuple[str, str, float]]:  # noqa: ANN001 - schema_pb2.Schema
    """(feature, kind, threshold) for each comparator of `field` (skew_comparator | drift_comparator) counted here."""
    return [(f.name, kind, getattr(getattr(f, field), kind).threshold)
            for f in schema.feature for kind in EXACT_KINDS if getattr(f, field).HasField(kind)]


def left_to_tfdv(schema, field: str):  # noqa: ANN001, ANN201 - schema_pb2.Schema | None
    """A copy of the schema without the comparators counted here, or None when no comparator is left for TFDV."""
    rest = type(schema)()
    rest.CopyFrom(schema)
    for feature in rest.feature:
        for kind in EXACT_KINDS:
            getattr(feature, field).ClearField(kind)
    return rest if any(f.HasField(field) and getattr(f, field).ListFields() for f in rest.feature) else None


def split_files(examples_uri: str, split: str) -> list[str]:
    """The TFRecord shards ExampleGen wrote for one split (empty when the folder is gone); gs:// works too."""
    import tensorflow as tf

    folder = os.path.join(examples_uri, f"Split-{split}")
    if not tf.io.gfile.isdir(folder):
        return []
    return sorted(os.path.join(folder, f) for f in tf.io.gfile.listdir(folder) if not f.endswith("/"))


def read_examples(files: list[str], limit: int = MAX_ROWS, seed: int = 0) -> pa.RecordBatch:
    """Every tf.Example of the shards as Arrow, or a uniform random `limit` of them when there are more.

    The sample is bottom-k on seeded random keys over all records (monitoring/sampling.py):
    the same files give the same rows, and no shard or stretch of the source file is favoured
    (in-process ExampleGen keeps the CSV's order inside a shard, so "the first
    `limit` rows" would be the earliest trips of a time-sorted file).
    """
    import tensorflow as tf
    from tfx_bsl.coders import example_coder

    compression = "GZIP" if all(f.endswith(".gz") for f in files) else ""
    sample = BottomK(limit, seed)
    kept = np.empty(0, dtype=object)
    try:
        for chunk in tf.data.TFRecordDataset(files, compression_type=compression).batch(READ_BATCH):
            records = chunk.numpy().astype(object)
            kept = np.concatenate([kept, records])
            sample.add(len(records))
            keep = sample.cut()
            if keep is not None:
                kept = kept[keep]
    except tf.errors.OpError as error:
        raise ValueError(f"the examples cannot be read ({error.message.splitlines()[0]}): {', '.join(files)}") from None
    if not len(kept):
        raise NoExamples(f"the examples hold no rows: {', '.join(files) or 'no shard files'}")
    return example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(list(kept))


def column_values(batch: pa.RecordBatch, name: str) -> list:
    """The present values of one feature (one per row at most for this schema); NaN counts as missing."""
    if name not in batch.schema.names:
        return []
    return [v for v in batch.column(name).flatten().to_pylist() if v is not None and v == v]


@dataclasses.dataclass(frozen=True)
class Comparison:
    feature: str
    kind: str
    threshold: float
    distance: Distance | None  # None when a side has no values of the feature, or values of another kind
    values: int  # present values on the compared (served / new span) side
    empty_side: str = ""  # "baseline" | "compared" when a side has none; "kind": numbers on one side only

    @property
    def over(self) -> bool:
        return self.distance is not None and self.distance.skewed(self.threshold)

    @property
    def noise(self) -> bool:
        """Over the threshold, but within what sampling alone would give."""
        return self.distance is not None and self.distance.value > self.threshold and not self.over


def compare_batches(found: list[tuple[str, str, float]], baseline: pa.RecordBatch,
                    compared: pa.RecordBatch) -> list[Comparison]:
    """Each comparator measured on the two batches' raw values."""
    out = []
    for name, kind, threshold in found:
        before, after = column_values(baseline, name), column_values(compared, name)
        if not before or not after:
            out.append(Comparison(name, kind, threshold, None, len(after), "baseline" if not before else "compared"))
            continue
        if _is_number(before[0]) != _is_number(after[0]):  # a string in a numeric column: the schema check's to name
            out.append(Comparison(name, kind, threshold, None, len(after), "kind"))
            continue
        out.append(Comparison(name, kind, threshold, measure(kind, before, after), len(after)))
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
