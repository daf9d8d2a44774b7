"""The Pusher's "identical to the latest pushed version" check, on real SavedModels."""
from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf

from pipeline.components import dedup_pusher
from pipeline.components.dedup_pusher import copy_version, latest_version_dir, next_version, same_model


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


def test_a_push_killed_mid_copy_leaves_no_version_folder_and_the_next_push_clears_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TFX copied into <base>/<version>/ itself: a run killed mid-copy left a version folder without
    saved_model.pb, never removed, that a server's `latest` policy would try to load."""
    model = _export(tmp_path / "model")
    base = tmp_path / "serving_model" / "taxi"
    copy_dir = dedup_pusher.io_utils.copy_dir

    def killed(source: str, destination: str, **kwargs) -> None:  # noqa: ANN003
        copy_dir(str(model / "variables"), destination + "/variables")
        raise KeyboardInterrupt  # as a Ctrl-C or a kill lands between two files

    monkeypatch.setattr(dedup_pusher.io_utils, "copy_dir", killed)
    with pytest.raises(KeyboardInterrupt):
        copy_version(str(model), str(base), 100)
    assert [p.name for p in base.iterdir()] == [".pushing-100"]  # no version a server would see
    monkeypatch.setattr(dedup_pusher.io_utils, "copy_dir", copy_dir)
    pushed = copy_version(str(model), str(base), 101)
    assert [p.name for p in base.iterdir()] == ["101"] and pushed == str(base / "101")
    assert same_model(pushed, str(model)) and latest_version_dir(str(base)) == pushed


def test_a_new_version_is_numbered_above_every_earlier_one_whatever_the_clock(tmp_path: Path) -> None:
    base = tmp_path / "taxi"
    assert next_version(str(base), now=1_700_000_000.9) == 1_700_000_000  # TFX's: the Unix time in seconds
    (base / "1700000000").mkdir(parents=True)
    (base / ".pushing-1800000000").mkdir()  # not a version
    assert next_version(str(base), now=1_700_000_000.5) == 1_700_000_001  # a second push in the same second
    assert next_version(str(base), now=1_600_000_000) == 1_700_000_001  # a clock a day or a year behind
    assert next_version(str(base), now=1_800_000_000) == 1_800_000_000


def test_a_run_that_pushes_nothing_also_clears_what_a_killed_push_left(tmp_path: Path) -> None:
    """The leftover went only with the next actual push: after a kill, runs that were not blessed or identical
    kept a second copy of the model in serving_model/ for as long as nothing new was pushed."""
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "trainer")
    _export(tmp_path / "trainer" / "Format-Serving")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", 0)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    base = tmp_path / "serving_model" / "taxi"
    (base / "7").mkdir(parents=True)
    (base / ".pushing-8" / "variables").mkdir(parents=True)
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(
        base_directory=str(base)))
    dedup_pusher.Executor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
                               {"push_destination": proto_utils.proto_to_json(destination)})
    assert pushed.get_int_custom_property("pushed") == 0
    assert [p.name for p in base.iterdir()] == ["7"]  # a version folder is never touched
