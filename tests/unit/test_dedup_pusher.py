"""The Pusher's "identical to the latest pushed version" check, on real SavedModels."""
from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from pipeline.components.dedup_pusher import same_model


def _export(path: Path, scale: float = 1.0, weights: tuple = (1.0, 2.0), traces_before: int = 0) -> Path:
    # Other functions traced earlier in the process advance TensorFlow's naming counter,
    # as the Transform and Trainer of one local run do before the export.
    for i in range(traces_before):
        tf.function(lambda x, i=i: x + i).get_concrete_function(tf.TensorSpec([], tf.float32))

    class Model(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(list(weights), name="w")

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def predict(self, x: tf.Tensor) -> tf.Tensor:
            return tf.reduce_sum(x * self.w * scale, axis=1)

    model = Model()
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.predict})
    return path


def test_the_same_model_exported_after_other_traces_is_identical(tmp_path: Path) -> None:
    first = _export(tmp_path / "1")
    again = _export(tmp_path / "2", traces_before=3)
    # The files do differ: the function names carry the process's trace counter.
    assert (first / "saved_model.pb").read_bytes() != (again / "saved_model.pb").read_bytes()
    assert same_model(str(again), str(first))


def test_a_different_constant_or_weight_is_a_different_model(tmp_path: Path) -> None:
    first = _export(tmp_path / "1")
    assert not same_model(str(_export(tmp_path / "2", scale=2.0)), str(first))
    assert not same_model(str(_export(tmp_path / "3", weights=(1.0, 3.0))), str(first))


def test_an_extra_or_missing_file_is_a_different_model(tmp_path: Path) -> None:
    first = _export(tmp_path / "1")
    again = _export(tmp_path / "2")
    (again / "assets" / "vocabulary.txt").write_text("Cash\n")
    assert not same_model(str(again), str(first))
    assert not same_model(str(first), str(again))
