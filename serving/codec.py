"""TF Serving's JSON <-> tensor conversions, checked against the signature.

Every malformed request must end as one clear INVALID_ARGUMENT line naming the
input, never as a TensorFlow stack trace, so conversion validates shape and
type before anything reaches the model.
"""
from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from common.b64_json import b64_bytes, is_b64
from serving.errors import ServingError, invalid

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


@dataclass(frozen=True)
class TensorSpec:
    """dtype and shape (-1 = any) of one signature input or output."""

    name: str
    dtype: tf.DType
    shape: tuple[int, ...] | None  # None: unknown rank
    # Read per request, so computed once: tf.DType's properties cost ~1 us each.
    np_dtype: np.dtype = field(init=False, repr=False, compare=False)
    kind: str = field(init=False, repr=False, compare=False)  # string, bool, int or float
    # float kinds: the largest whole number the type holds exactly (2^digits - 1); 0 otherwise
    max_exact_int: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kind = ("string" if self.dtype == tf.string else "bool" if self.dtype.is_bool
                else "int" if self.dtype.is_integer else "float")
        try:
            np_dtype = np.dtype(object if kind == "string" else self.dtype.as_numpy_dtype)
        except KeyError:  # resource/variant outputs have no numpy twin
            np_dtype = np.dtype(object)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "np_dtype", np_dtype)
        exact = 2 ** (np.finfo(np_dtype).nmant + 1) - 1 if kind == "float" and np_dtype.kind == "f" else 0
        object.__setattr__(self, "max_exact_int", exact)

    def fits(self, shape: tuple[int, ...] | list[int]) -> bool:
        """Whether an array of this shape matches the declared one (-1: any size)."""
        return self.shape is None or (len(shape) == len(self.shape) and all(
            want in (-1, None) or want == got for want, got in zip(self.shape, shape, strict=False)))


@dataclass(frozen=True)
class SignatureInfo:
    """What a request is validated against, read from the SignatureDef proto."""

    name: str
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]

    @classmethod
    def from_proto(cls, name: str, sig: Any) -> SignatureInfo:
        def specs(infos: Any) -> dict[str, TensorSpec]:
            out = {}
            for key in sorted(infos):
                info = infos[key]
                shape = None
                if not info.tensor_shape.unknown_rank:
                    shape = tuple(d.size for d in info.tensor_shape.dim)
                out[key] = TensorSpec(key, tf.as_dtype(info.dtype), shape)
            return out

        return cls(name, sig.method_name, specs(sig.inputs), specs(sig.outputs))


def dtype_label(dtype: tf.DType) -> str:
    """The DataType enum name, as metadata shows it: DT_DOUBLE, not DT_FLOAT64."""
    return types_pb2.DataType.Name(dtype.as_datatype_enum)


def _flatten(value: Any, name: str) -> tuple[list[int], list[Any]]:
    """Shape and leaves of a nested JSON list; ragged lists are rejected."""
    if not isinstance(value, list):
        return [], [value]
    if not value:
        return [0], []
    shapes, leaves = [], []
    for item in value:
        shape, sub = _flatten(item, name)
        shapes.append(shape)
        leaves.extend(sub)
    if any(s != shapes[0] for s in shapes):
        raise invalid(f"input '{name}' is a ragged list; every row must have the same shape")
    return [len(value)] + shapes[0], leaves


def string_leaf(leaf: Any, name: str) -> bytes:
    if isinstance(leaf, str):
        try:
            return leaf.encode("utf-8")
        except UnicodeEncodeError:  # a lone UTF-16 surrogate ("\ud800"), which JSON escapes can spell
            raise invalid(f"input '{name}' holds a string that is not valid Unicode (a lone surrogate)") from None
    if is_b64(leaf):
        try:
            return b64_bytes(leaf)
        except ValueError:  # binascii.Error
            raise invalid(f"input '{name}': value of 'b64' is not valid base64") from None
    raise invalid(f"input '{name}' expects strings (DT_STRING), got {json_type(leaf)}")


def json_type(value: Any) -> str:
    """Name of a JSON value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, dict):
        return "an object"
    return "a list"


class JsonConstant(float):
    """NaN, Infinity or -Infinity written as such in the request: TF Serving
    reads them (RapidJSON's kParseNanAndInfFlag), while a number too big for a
    double (1e400) is a parse error there, not infinity as in Python's json."""


_JSON_CONSTANTS = {name: JsonConstant(name) for name in ("NaN", "Infinity", "-Infinity")}
_DECODER = json.JSONDecoder(parse_constant=_JSON_CONSTANTS.__getitem__)
TOO_BIG = "JSON Parse error: Number too big to be stored in double"
FLOAT32_MAX = float(np.finfo(np.float32).max)


def loads(data: bytes) -> Any:
    """A request body (UTF-8, as TF Serving reads it) as Python values, infinities
    marked by how they were written. One decoder for all: json.loads builds one
    per call when given options (3 us of a 6 us one-row parse)."""
    return _DECODER.decode(data.decode("utf-8"))


def overflowed(leaf: Any) -> bool:
    """A JSON number Python's json turned into infinity because it was too big."""
    return leaf.__class__ is float and math.isinf(leaf)


def lossy(leaf: Any, where: str, target: str) -> ServingError:
    """A number the float type cannot hold; one beyond a double RapidJSON cannot even parse."""
    if overflowed(leaf) or abs(leaf) >= 2 ** 1024:
        return invalid(TOO_BIG)
    return invalid(f"{where}: Cannot convert JSON value: {leaf!r} to {target} without loss of precision")


def _float_name(spec: TensorSpec) -> str:
    return {2: "half", 4: "float"}.get(spec.np_dtype.itemsize, "double")


def _numeric_leaves(leaves: list[Any], spec: TensorSpec) -> np.ndarray:
    name, dtype = spec.name, spec.dtype
    if spec.kind == "bool":
        for leaf in leaves:
            if not isinstance(leaf, bool):
                raise invalid(f"input '{name}' expects booleans, got {json_type(leaf)}")
        return np.array(leaves, dtype=spec.np_dtype)
    exact = spec.max_exact_int  # as TF Serving's IsLosslessDecimal: a whole number must be exact in the type
    for leaf in leaves:
        if leaf.__class__ is not float and (isinstance(leaf, bool) or not isinstance(leaf, (int, float))):
            raise invalid(f"input '{name}' expects numbers ({dtype_label(dtype)}), got {json_type(leaf)}")
        if leaf.__class__ is int and exact and not -exact <= leaf <= exact:
            raise lossy(leaf, f"input '{name}'", _float_name(spec))
        if spec.kind == "int" and isinstance(leaf, float) and not (math.isfinite(leaf) and leaf.is_integer()):
            raise invalid(TOO_BIG if overflowed(leaf) else
                          f"input '{name}' expects integers ({dtype_label(dtype)}), got {leaf!r}")
    try:
        with np.errstate(over="ignore"):
            array = np.array(leaves, dtype=spec.np_dtype)
    except OverflowError:
        raise invalid(f"input '{name}': a value is out of range for {dtype_label(dtype)}") from None
    if exact and np.isinf(array).any():  # rare: only then are the leaves looked at again
        for leaf, value in zip(leaves, array.ravel().tolist(), strict=True):
            if math.isinf(value) and (overflowed(leaf) or math.isfinite(leaf)):  # 1e400; 1e39 in a float32
                raise lossy(leaf, f"input '{name}'", _float_name(spec))
    return array


def to_array(value: Any, spec: TensorSpec, batched_rows: bool = False) -> np.ndarray:
    """JSON value -> ndarray of the spec's dtype; the shape must fit the spec."""
    if isinstance(value, list) and value and not any(isinstance(v, (list, dict)) for v in value):
        shape, leaves = [len(value)], value  # one scalar per row: the common case, no recursion
    else:
        shape, leaves = _flatten(value, spec.name)
    if spec.kind == "string":
        array = np.array([string_leaf(leaf, spec.name) for leaf in leaves], dtype=object)
    else:
        array = _numeric_leaves(leaves, spec)
    if len(shape) != 1:
        array = array.reshape(shape)
    check_shape(spec, shape, batched_rows)
    return array


def check_shape(spec: TensorSpec, shape: list[int], batched_rows: bool = False) -> None:
    """Refuse an input whose shape does not fit the signature's before TF sees
    it (TF's own error would not say which input, nor what was expected)."""
    if spec.fits(shape):
        return
    per_row = "each row of " if batched_rows else ""
    got = list(shape[1:]) if batched_rows else list(shape)
    want = list(spec.shape[1:]) if batched_rows else list(spec.shape)
    raise invalid(f"{per_row}input '{spec.name}' has shape {got}, but the signature expects {want} (-1: any size)")


def parse_predict(body: Any, sig: SignatureInfo) -> tuple[dict[str, np.ndarray], bool]:
    """Feeds for the signature from a :predict body; True when in row format."""
    if not isinstance(body, dict):
        raise invalid("request body must be a JSON object with 'instances' or 'inputs'")
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows == has_cols:
        raise invalid("request must contain exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    if has_rows:
        return _parse_rows(body["instances"], sig), True
    return _parse_columns(body["inputs"], sig), False


def _check_names(names: set[str], sig: SignatureInfo, where: str) -> None:
    unknown = sorted(names - set(sig.inputs))
    if unknown:
        raise invalid(
            f"{where}unknown input '{unknown[0]}' for signature '{sig.name}'; expected: {', '.join(sig.inputs)}"
        )
    missing = sorted(set(sig.inputs) - names)
    if missing:
        raise invalid(f"{where}missing input '{missing[0]}' for signature '{sig.name}'")


def _is_named(value: Any) -> bool:
    return isinstance(value, dict) and set(value) != {"b64"}


def _parse_rows(instances: Any, sig: SignatureInfo) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise invalid("'instances' must be a non-empty list of rows")
    if not _is_named(instances[0]):
        if len(sig.inputs) != 1:
            raise invalid(
                f"signature '{sig.name}' has {len(sig.inputs)} inputs; each instance must be an object "
                f"naming them: {', '.join(sig.inputs)}"
            )
        (spec,) = sig.inputs.values()
        return {spec.name: to_array(instances, spec, batched_rows=True)}
    columns: dict[str, list[Any]] = {name: [] for name in sig.inputs}
    for i, row in enumerate(instances):
        if not _is_named(row):
            raise invalid(f"instance {i} is {json_type(row)}; every instance must be an object like the first")
        if row.keys() != columns.keys():
            _check_names(set(row), sig, f"instance {i}: ")
        for name, value in row.items():
            columns[name].append(value)
    return {name: to_array(values, sig.inputs[name], batched_rows=True) for name, values in columns.items()}


def _parse_columns(inputs: Any, sig: SignatureInfo) -> dict[str, np.ndarray]:
    if not _is_named(inputs):
        if len(sig.inputs) != 1:
            raise invalid(f"signature '{sig.name}' has {len(sig.inputs)} inputs; 'inputs' must be an object naming them")
        (spec,) = sig.inputs.values()
        return {spec.name: to_array(inputs, spec)}
    # Only the signature's inputs are read, as TF Serving's FillTensorMapFromInputsMap:
    # other keys are ignored (a row with an unknown key is refused, as there).
    missing = sorted(set(sig.inputs) - set(inputs))
    if missing:
        raise invalid(f"missing input '{missing[0]}' for signature '{sig.name}'")
    return {name: to_array(inputs[name], spec) for name, spec in sig.inputs.items()}


def batch_size(feeds: dict[str, np.ndarray]) -> int:
    """Rows in a request: the leading dimension every batched input shares."""
    sizes = {a.shape[0] for a in feeds.values() if a.ndim}
    if len(sizes) > 1:
        raise invalid(f"inputs have different batch sizes: {sorted(sizes)}")
    return sizes.pop() if sizes else 1


def to_json(name: str, array: np.ndarray) -> Any:
    """Tensor -> JSON value; float32 printed shortest, like TF Serving does."""
    if array.dtype == np.float32:
        flat = [float(str(x)) for x in array.ravel()]
        return np.array(flat, dtype=np.float64).reshape(array.shape).tolist()
    if array.dtype == object:
        def conv(b: bytes) -> Any:
            if not name.endswith("_bytes"):
                try:
                    return b.decode("utf-8")
                except UnicodeDecodeError:
                    pass
            return {"b64": base64.b64encode(b).decode("ascii")}

        flat = np.empty(array.size, dtype=object)
        flat[:] = [conv(b) for b in array.ravel()]
        return flat.reshape(array.shape).tolist()
    return array.tolist()


def format_predict(outputs: dict[str, np.ndarray], rows: bool) -> dict[str, Any]:
    """TF Serving's response shape: rows -> predictions, columns -> outputs."""
    names = sorted(outputs)
    if not rows:
        if len(names) == 1:
            return {"outputs": to_json(names[0], outputs[names[0]])}
        return {"outputs": {n: to_json(n, outputs[n]) for n in names}}
    sizes = {outputs[n].shape[0] if outputs[n].ndim else None for n in names}
    if len(sizes) != 1 or None in sizes:
        raise invalid("outputs have different or no batch dimension; use the columnar 'inputs' format")
    cols = {n: to_json(n, outputs[n]) for n in names}
    if len(names) == 1:
        return {"predictions": cols[names[0]]}
    return {"predictions": [dict(zip(names, vals, strict=False)) for vals in zip(*(cols[n] for n in names), strict=False)]}
