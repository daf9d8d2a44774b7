"""A fix for a cost tf.Transform adds to every Transform run.

Before it analyzes anything, TFX's Transform executor asks tf.Transform three
times which input columns the preprocessing_fn reads (for the analyzers,
twice, and for the transform), and each answer traces the whole
preprocessing_fn into a new TF1 graph: about 0.6 s each on the taxi
preprocessing_fn here, 5 traces per Transform with the two the analysis
makes. The three column questions now share one trace per (preprocessing_fn,
input specs). They only read the graph, which is finalized so that anything
that tried to change it would fail loudly. The analysis's own traces are left
alone: tf.Transform's graph builder clears a collection of the graph it is
given. TF2 tracing (force_tf_compat_v1=False) is left as it is.
"""
from __future__ import annotations

from types import ModuleType


class _SharedInspectionTrace:
    """impl_helper as the inspection modules see it: one trace for the same function and specs."""

    _local_tft = True

    def __init__(self, impl_helper: ModuleType) -> None:
        self._impl_helper = impl_helper
        self._last: tuple | None = None  # (key, (graph, structured inputs, structured outputs))

    def __getattr__(self, name: str):  # noqa: ANN204 - everything else is impl_helper's own
        return getattr(self._impl_helper, name)

    def trace_preprocessing_function(self, preprocessing_fn, input_specs, use_tf_compat_v1, base_temp_dir=None):  # noqa: ANN001, ANN201
        trace = self._impl_helper.trace_preprocessing_function
        if not use_tf_compat_v1:
            return trace(preprocessing_fn, input_specs, use_tf_compat_v1, base_temp_dir)
        # The function itself (held here, so its identity stays unique) and the specs by value.
        key = (preprocessing_fn, sorted(input_specs.items()), base_temp_dir)
        if self._last is None or self._last[0] != key:
            traced = trace(preprocessing_fn, input_specs, use_tf_compat_v1, base_temp_dir)
            traced[0].finalize()
            self._last = (key, traced)
        return self._last[1]


def install() -> None:
    """Share the column questions' trace (idempotent). Local runs only."""
    from tensorflow_transform import impl_helper, inspect_preprocessing_fn

    if not getattr(inspect_preprocessing_fn.impl_helper, "_local_tft", False):
        inspect_preprocessing_fn.impl_helper = _SharedInspectionTrace(impl_helper)
