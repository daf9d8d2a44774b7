"""Calling one SavedModel signature from Python about as cheaply as TF allows.

TF Serving's C++ server builds input tensors and runs the graph for almost
nothing per request; from Python three costs dominate a 1-row request and each
is avoidable (measured on the taxi model, 14 inputs, 2-core machine):

- TF's public call re-binds and re-validates 14 keyword arguments each time,
  about as costly as the graph itself. The signature is called flat instead.
- Each input becomes an EagerTensor at 20-45 us apiece. Inputs of one dtype and
  shape [-1] are stacked into one [-1, k] array and split again inside the
  graph: 2 conversions instead of 14 (1.06 ms vs 1.66 ms per call in a loop).
- TF's default executor hands every kernel to its inter-op pool, whose threads
  sleep between requests; waking them costs more than the graph (a 1-row call:
  1.9 ms after a 2 ms pause, 1.2 ms in a tight loop). Small batches run on the
  single-threaded executor in the calling thread instead (1.2 ms either way).
  Large batches gain from parallel kernels (1000 rows: 2.0-2.5 ms pooled,
  3.0 ms inline) and keep the default executor.

Anything unusual (a shape the wrapper cannot take, a TF without these
internals) goes through the public call, which also explains the mismatch.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np
import tensorflow as tf

from serving.codec import SignatureInfo, TensorSpec

log = logging.getLogger("serving")

try:
    from tensorflow.python.eager.context import context as _eager_context
    from tensorflow.python.eager.context import function_executor_type as _function_executor
    from tensorflow.python.framework.ops import EagerTensor as _EagerTensor
except ImportError:  # a TF without them: tf.constant and the default executor
    _EagerTensor = None
    _function_executor = None

INLINE_EXECUTOR = "SINGLE_THREADED_EXECUTOR"
INLINE_EXECUTOR_MAX_ROWS = 256


def to_tensor(value: np.ndarray, spec: TensorSpec) -> tf.Tensor:
    """tf.constant without its generic conversion layers when the array already
    has the declared dtype (what the codecs produce)."""
    if _EagerTensor is not None and value.dtype == spec.np_dtype:
        return _EagerTensor(value, _eager_context().device_name, spec.dtype.as_datatype_enum)
    return tf.constant(value, dtype=spec.dtype)


def _groups(info: SignatureInfo) -> list[tuple[TensorSpec, list[str]]]:
    """Inputs of one dtype and shape [-1] share a [-1, k] tensor; others stay alone."""
    groups, by_dtype = [], {}
    for name, spec in info.inputs.items():
        if spec.shape == (-1,):
            by_dtype.setdefault(spec.dtype, []).append(name)
        else:
            groups.append((spec, [name]))
    for dtype, names in by_dtype.items():
        shape = (-1, len(names)) if len(names) > 1 else (-1,)
        groups.append((TensorSpec("+".join(names), dtype, shape), names))
    return groups


class SignatureCall:
    """One signature function plus its packed, flat-called twin."""

    def __init__(self, fn: Any, info: SignatureInfo) -> None:
        self.fn, self.info = fn, info
        self.inline_executor = False  # turned on by probe_inline_executor()
        # (packed spec, input names): names stacked along axis 1 when several
        self.groups: list[tuple[TensorSpec, list[str]]] = []
        self.packed = None
        if any(spec.shape is None for spec in info.inputs.values()):
            return
        try:
            self.groups = _groups(info)
            self.packed = self._pack()
        except Exception as exc:  # noqa: BLE001 - any tracing failure: stay on the public call
            log.info("signature %s keeps TF's public call: %s", info.name, exc)

    def _pack(self) -> Any:
        groups, fn = self.groups, self.fn

        def unpacked(*tensors: tf.Tensor) -> Any:
            named = {}
            for (_, names), tensor in zip(groups, tensors, strict=True):
                for i, name in enumerate(names):
                    named[name] = tensor[:, i] if len(names) > 1 else tensor
            return fn(**named)

        signature = [tf.TensorSpec([None if d == -1 else d for d in spec.shape], spec.dtype) for spec, _ in groups]
        concrete = tf.function(unpacked, input_signature=signature).get_concrete_function()
        return concrete if hasattr(concrete, "_call_flat") else None

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
        specs = self.info.inputs
        if self.packed is None or feeds.keys() != specs.keys() or not all(
            specs[k].fits(v.shape) for k, v in feeds.items()
        ):
            return self.fn(**{k: to_tensor(v, specs[k]) for k, v in feeds.items()})
        arrays = [np.stack([feeds[n] for n in names], axis=1) if len(names) > 1 else feeds[names[0]]
                  for _, names in self.groups]
        tensors = [to_tensor(a, spec) for a, (spec, _) in zip(arrays, self.groups, strict=True)]
        with self._executor(arrays[0]):
            return self.packed._call_flat(tensors, self.packed.captured_inputs)

    def _executor(self, first: np.ndarray) -> contextlib.AbstractContextManager:
        rows = first.shape[0] if first.ndim else 1
        if self.inline_executor and rows <= INLINE_EXECUTOR_MAX_ROWS:
            return _function_executor(INLINE_EXECUTOR)
        return contextlib.nullcontext()

    def probe_inline_executor(self, feeds: dict[str, np.ndarray]) -> None:
        """The single-threaded executor refuses some graphs (TF1 control flow)
        when it builds them; one call on feeds the model accepts tells."""
        if _function_executor is None or self.packed is None:
            return
        try:
            self.inline_executor = True
            self(feeds)
        except Exception as exc:  # noqa: BLE001 - whatever the executor says, the default one works
            self.inline_executor = False
            log.info("signature %s stays on TF's default executor: %s", self.info.name, exc)
