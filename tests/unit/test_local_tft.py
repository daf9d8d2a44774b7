"""Transform's column questions share one trace of the preprocessing_fn, with tf.Transform's own answers."""
from __future__ import annotations

import pytest
import tensorflow as tf
import tensorflow_transform as tft
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform import impl_helper, inspect_preprocessing_fn
from tensorflow_transform.tf_metadata import schema_utils

from models import features, preprocessing
from pipeline import configs, local_tft


@pytest.fixture
def restored():
    """tf.Transform's own impl_helper put back after the test."""
    saved = inspect_preprocessing_fn.impl_helper
    yield
    inspect_preprocessing_fn.impl_helper = saved


@pytest.fixture
def installed(restored):
    local_tft.install()


@pytest.fixture(scope="module")
def raw_specs() -> dict:
    schema = text_format.Parse(configs.DEFAULT_SCHEMA.read_text(), schema_pb2.Schema())
    return schema_utils.schema_as_feature_spec(schema).feature_spec


def _columns(preprocessing_fn, specs: dict) -> tuple[list, list]:  # noqa: ANN001
    return (
        sorted(tft.get_analyze_input_columns(preprocessing_fn, specs, force_tf_compat_v1=True)),
        sorted(tft.get_transform_input_columns(preprocessing_fn, specs, force_tf_compat_v1=True)),
    )


def _only_fare(inputs: dict) -> dict:
    return {"fare_xf": tft.scale_to_z_score(tf.sparse.to_dense(inputs[features.FARE_KEY]))}


def test_the_columns_are_the_ones_tf_transform_finds(restored, raw_specs: dict) -> None:
    expected = {fn: _columns(fn, raw_specs) for fn in (preprocessing.preprocessing_fn, _only_fare)}
    local_tft.install()
    for fn in (preprocessing.preprocessing_fn, _only_fare, preprocessing.preprocessing_fn):
        assert _columns(fn, raw_specs) == expected[fn]
    analyze, transform = expected[preprocessing.preprocessing_fn]
    assert features.TIPS_KEY in transform and "trip_start_timestamp" not in transform
    assert expected[_only_fare] == ([features.FARE_KEY], [features.FARE_KEY])


def test_the_three_column_questions_trace_once(installed, raw_specs: dict, monkeypatch) -> None:
    traced = []
    real = impl_helper.trace_preprocessing_function

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        traced.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(impl_helper, "trace_preprocessing_function", counting)
    _columns(preprocessing.preprocessing_fn, raw_specs)
    tft.get_analyze_input_columns(preprocessing.preprocessing_fn, raw_specs, force_tf_compat_v1=True)
    assert traced == [preprocessing.preprocessing_fn]
    _columns(preprocessing.preprocessing_fn, dict(raw_specs))
    assert len(traced) == 1  # equal specs, a new dict: still the same trace
    # Other specs (another schema) or another function: a trace of their own.
    narrower = {k: v for k, v in raw_specs.items() if k in (features.FARE_KEY, features.TIPS_KEY)}
    _columns(_only_fare, narrower)
    assert traced == [preprocessing.preprocessing_fn, _only_fare]


def test_the_shared_graph_cannot_be_changed(installed, raw_specs: dict) -> None:
    graph, _, _ = inspect_preprocessing_fn.impl_helper.trace_preprocessing_function(
        preprocessing.preprocessing_fn, raw_specs, True
    )
    with pytest.raises(RuntimeError, match="finalized"):
        graph.clear_collection("anything")


def test_installing_twice_keeps_one_wrapper(installed) -> None:
    first = inspect_preprocessing_fn.impl_helper
    local_tft.install()
    assert inspect_preprocessing_fn.impl_helper is first
    assert first.batched_placeholders_from_specs is impl_helper.batched_placeholders_from_specs  # the rest passes through
