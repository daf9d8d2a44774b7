"""Skew distances on exact counts of raw values, and whether they are more than sampling noise.

TFDV's skew comparators work on the summary histograms in two statistics protos.
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
from collections.abc import Sequence

import numpy as np

QUANTILE_BINS = 10
SIGNIFICANCE = 0.001
MIN_EXPECTED = 5.0  # chi-square's usual rule: bins with fewer expected served rows are pooled


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
    """kind: jensen_shannon_divergence (numeric) or infinity_norm (categorical); empty sides are refused."""
    if not len(training) or not len(served):
        raise ValueError("both samples need at least one value")
    if kind == "jensen_shannon_divergence":
        a, b = numeric_counts(np.asarray(training, dtype=float), np.asarray(served, dtype=float))
        value = jensen_shannon(a, b)
    elif kind == "infinity_norm":
        a, b = categorical_counts(training, served)
        value = l_infinity(a, b)
    else:
        raise ValueError(f"no exact measure for {kind}")
    return Distance(round(value, 6), homogeneity_p_value(a, b), len(a))
