"""TF Serving's :classify / :regress JSON: examples in (as tf.Examples), results out.

Shared by REST and gRPC (classifications); values are typed as TF Serving's
json_tensor.cc types them (AddValueToFeature), with its messages.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from serving.codec import FLOAT32_MAX, JsonConstant, json_type, lossy, overflowed, string_leaf, to_json
from serving.errors import invalid

_KINDS = {"int64_list": "int64", "float_list": "float", "bytes_list": "bytes"}


def _feature_value(leaf: Any, name: str) -> tuple[str, Any]:
    """(Feature kind, value) of one JSON value, as TF Serving's AddValueToFeature reads it."""
    if isinstance(leaf, bool):
        return "int64_list", int(leaf)
    if isinstance(leaf, int) and -2**63 <= leaf < 2**63:
        return "int64_list", leaf
    if isinstance(leaf, int) and 0 < leaf < 2**64:
        raise invalid(f"Feature: {name} has uint64 element. Only int64 is supported.")
    if isinstance(leaf, (int, float)):  # a double to RapidJSON (a point, an exponent, NaN/Infinity, a huge int)
        if leaf.__class__ is JsonConstant:
            return "float_list", leaf
        if overflowed(leaf) or abs(leaf) > FLOAT32_MAX:
            raise lossy(leaf, f"Feature: {name}", "float")
        return "float_list", float(leaf)
    if isinstance(leaf, str) or (isinstance(leaf, dict) and set(leaf) == {"b64"}):
        return "bytes_list", string_leaf(leaf, name)
    raise invalid(f"Feature: {name} has element with unexpected JSON type: {json_type(leaf)}")


def _feature(value: Any, name: str) -> tf.train.Feature:
    """One feature of a :classify/:regress example: every value of one kind (an int then a float is refused
    there too), an empty list an empty feature."""
    kind, values = None, []
    for leaf in value if isinstance(value, list) else [value]:
        leaf_kind, leaf_value = _feature_value(leaf, name)
        if kind is not None and leaf_kind != kind:
            raise invalid(f"Unexpected element type in feature: {name} expecting type: {_KINDS[kind]}")
        kind = leaf_kind
        values.append(leaf_value)
    feature = tf.train.Feature()
    if kind is not None:
        getattr(feature, kind).value.extend(values)
    return feature


_RAPIDJSON_TYPES = {type(None): "Null", bool: "True", dict: "Object", list: "Array", str: "String"}


def _example_features(value: Any) -> dict[str, tf.train.Feature]:
    """TF Serving's MakeExampleFromJsonObject: an object of feature -> value(s)."""
    if not isinstance(value, dict):
        kind = "False" if value is False else _RAPIDJSON_TYPES.get(type(value), "Number")
        raise invalid(f"Example must be JSON object but got JSON {kind}")
    return {k: _feature(v, k) for k, v in value.items()}


def parse_examples(body: Any) -> list[bytes]:
    """Serialized tf.Examples from a :classify/:regress body (context merged in), read in
    the order and with the messages of TF Serving's FillClassifyRegressRequestFromJson
    (context first; its "When method is classify" is said for regress too)."""
    if not isinstance(body, dict):
        raise invalid("request body must be a JSON object with 'examples'")
    context = _example_features(body["context"]) if "context" in body else {}
    if "examples" not in body:
        raise invalid("When method is classify, key 'examples' is expected and was not found")
    examples = body["examples"]
    if not isinstance(examples, list):
        raise invalid("Expecting 'examples' value to be an list/array")
    if not examples:  # without TF Serving's dump of the request, to keep the error one line
        raise invalid("'examples' value is an empty array")
    features = [{**context, **_example_features(example)} for example in examples]
    return [tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString() for f in features]


def classifications(outputs: dict[str, np.ndarray]) -> list[list[tuple[str, np.float32 | float]]]:
    """(label, score) per class per example, as TF Serving's PostProcessClassificationResult
    ("" or 0 where the signature has no classes or scores output). `outputs`:
    classes/scores as [rows, classes] (core.examples_call checks them)."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    rows, width = (scores if scores is not None else classes).shape
    return [[(classes[i, j].decode("utf-8", "replace") if classes is not None else "",
              scores[i, j] if scores is not None else 0.0) for j in range(width)] for i in range(rows)]


def format_classify(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """[[label, score], ...] per example, as TF Serving's classify answers; a float32
    score is written by its shortest form (0.7, not 0.699999988), as TF Serving's WriteDecimal."""
    return {"results": [[[label, float(str(score))] for label, score in row] for row in classifications(outputs)]}


def format_regress(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """One number per example, as TF Serving's regress answers."""
    return {"results": to_json("outputs", outputs["outputs"])}
