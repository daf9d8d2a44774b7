"""TF Serving's JSON for binary strings, {"b64": "<base64>"}: told apart and read in one place (no TensorFlow)."""
from __future__ import annotations

import base64
from typing import Any


def is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str)


def b64_bytes(value: dict) -> bytes:
    """The bytes of an is_b64 value; ValueError (binascii.Error) when it is not valid base64."""
    return base64.b64decode(value["b64"], validate=True)
