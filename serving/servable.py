"""One loaded SavedModel version: its signatures, its calls, its warm-up (serving/registry.py loads them)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from serving.codec import SignatureInfo
from serving.errors import invalid
from serving.signature_call import SignatureCall

log = logging.getLogger("serving")

DEFAULT_SIGNATURE = "serving_default"


class Servable:
    """One loaded SavedModel version; thread-safe to call concurrently."""

    def __init__(self, name: str, version: int, path: Path) -> None:
        self.name, self.version, self.path = name, version, path
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((path / "saved_model.pb").read_bytes())
        graphs = [g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags] or list(proto.meta_graphs)
        if not graphs:
            raise ValueError("saved_model.pb holds no MetaGraph")
        self.signature_defs = {k: v for k, v in graphs[0].signature_def.items() if not k.startswith("__")}
        self.signatures = {k: SignatureInfo.from_proto(k, v) for k, v in self.signature_defs.items()}
        self._model = tf.saved_model.load(str(path), tags=["serve"])
        functions = dict(self._model.signatures)
        missing = set(self.signatures) - set(functions)
        if missing:
            raise ValueError(f"signatures {sorted(missing)} are in saved_model.pb but not callable")
        self._calls = {name: SignatureCall(fn, self.signatures[name]) for name, fn in functions.items()}

    def signature(self, name: str | None) -> SignatureInfo:
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise invalid(
                f"Serving signature name: \"{name}\" not found in signature def; "
                f"available: {', '.join(sorted(self.signatures))}"
            )
        return self.signatures[name]

    def run(self, signature: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call a signature; TF's own argument errors become INVALID_ARGUMENT."""
        try:
            out = self._calls[signature](feeds)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise invalid(f"model rejected the input: {tf_error_line(exc)}") from None
        return {k: v.numpy() for k, v in out.items()}

    def warm_up(self) -> None:
        """First call traces/optimizes the graph; pay that before going live.
        Also decides whether small batches run on the single-threaded executor."""
        sig = self.signatures.get(DEFAULT_SIGNATURE)
        if sig is None or sig.method_name != "tensorflow/serving/predict":
            return
        feeds = {}
        for spec in sig.inputs.values():
            shape = [1 if d in (-1, None) else d for d in (spec.shape or (1,))]
            feeds[spec.name] = np.full(shape, b"" if spec.kind == "string" else 0, dtype=spec.np_dtype)
        try:
            self.run(DEFAULT_SIGNATURE, feeds)
        except Exception as exc:  # a model may reject zeros; loading still succeeded
            log.info("warm-up of %s/%s skipped: %s", self.name, self.version, exc)
            return
        self._calls[DEFAULT_SIGNATURE].probe_inline_executor(feeds)


def tf_error_line(exc: BaseException) -> str:
    """The line of a TF error that says what is wrong, without graph noise."""
    msg = getattr(exc, "message", None) or str(exc)
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ", "Traceback")
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip() and not ln.strip().startswith(noise)]
    return (lines[0] if lines else msg.strip() or type(exc).__name__)[:500]
