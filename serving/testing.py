"""Tiny SavedModels in the Pusher layout, for fast tests of the server mechanics.

Version switching, corrupt dirs, labels and :classify/:regress need many model
versions built in seconds, not a two-minute pipeline run. `push` copies like
the TFX Pusher (saved_model.pb last), so the poller sees the same races.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

_TEMPLATES: dict[float, Path] = {}


class _Toy(tf.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = tf.Variable(scale, dtype=tf.float64)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float64, name="x"),
                                  tf.TensorSpec([None], tf.string, name="s")])
    def predict(self, x: tf.Tensor, s: tf.Tensor) -> dict[str, tf.Tensor]:
        # a data-dependent failure, so tests can send a request the model itself rejects
        tf.debugging.assert_equal(tf.strings.regex_full_match(s, "[^!]*"), True, message="s must not contain '!'")
        return {"y": tf.cast(x * self.scale, tf.float32), "n": tf.strings.length(s, unit="UTF8_CHAR")
                + tf.zeros_like(tf.cast(x, tf.int32))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        x = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([], tf.float32, default_value=0.0)})["x"]
        p = tf.sigmoid(x * tf.cast(self.scale, tf.float32))
        n = tf.shape(x)[0]
        classes = tf.tile(tf.constant([["no", "yes"]]), [n, 1])
        return {"classes": classes, "scores": tf.stack([1.0 - p, p], axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        x = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([], tf.float32, default_value=0.0)})["x"]
        return {"outputs": x * tf.cast(self.scale, tf.float32)}


def set_method_names(model_dir: Path, methods: dict[str, str]) -> None:
    """Rewrite SignatureDef.method_name: tf.saved_model.save only writes predict."""
    pb = Path(model_dir) / "saved_model.pb"
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(pb.read_bytes())
    for graph in proto.meta_graphs:
        for name, method in methods.items():
            graph.signature_def[name].method_name = method
    pb.write_bytes(proto.SerializeToString())


def build_toy_model(out_dir: Path, scale: float = 1.0) -> Path:
    """y = x*scale, n = len(s); plus classify/regress signatures on tf.Examples."""
    module = _Toy(scale)
    tf.saved_model.save(module, str(out_dir), signatures={
        "serving_default": module.predict.get_concrete_function(),
        "classify_x": module.classify.get_concrete_function(),
        "regress_x": module.regress.get_concrete_function(),
    })
    set_method_names(out_dir, {"classify_x": "tensorflow/serving/classify", "regress_x": "tensorflow/serving/regress"})
    return Path(out_dir)


def _template(scale: float) -> Path:
    if scale not in _TEMPLATES or not (_TEMPLATES[scale] / "saved_model.pb").exists():
        _TEMPLATES[scale] = build_toy_model(Path(tempfile.mkdtemp(prefix="toy-model-")) / "m", scale)
    return _TEMPLATES[scale]


def push(src: Path, base: Path, version: int, write_pb: bool = True) -> Path:
    """Copy a SavedModel into base/version like the Pusher: saved_model.pb last."""
    dest = Path(base) / str(version)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("saved_model.pb"))
    if write_pb:
        tmp = dest / "saved_model.pb.tmp"
        shutil.copyfile(Path(src) / "saved_model.pb", tmp)
        tmp.rename(dest / "saved_model.pb")
    return dest


def push_toy(base: Path, version: int, scale: float = 1.0) -> Path:
    """A toy model version in the Pusher layout, from a per-scale cached build."""
    return push(_template(scale), base, version)


def eventually(condition: Callable[[], bool], seconds: float = 15.0) -> bool:
    """True as soon as `condition` holds, asked every 50 ms; False once `seconds` have passed without."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
