"""ImportSchemaGen whose parameters name the schema's content, not only its path.

TFX's ImportSchemaGen takes a file path, and a path is all its cache key sees.
On Vertex the reviewed schema sits at the same path in every pipeline image
(/pipeline/schema/schema.pbtxt), so after a schema edit and a rebuilt image a
cached run reused the old schema. Here the pipeline also names the sha256 of
the schema it was built from: an edit is a new cache key, and a run whose file
is not that schema (an image built from another checkout) stops at once,
naming both hashes, instead of validating data against a contract nobody
compiled.
"""
from __future__ import annotations

import hashlib

from tfx import types
from tfx.components.schema_gen.import_schema_gen import executor as import_schema_gen_executor
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import io_utils

SCHEMA_SHA256_KEY = "schema_sha256"


def schema_sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class PinnedImportSchemaGenSpec(standard_component_specs.ImportSchemaGenSpec):
    PARAMETERS = {
        **standard_component_specs.ImportSchemaGenSpec.PARAMETERS,
        SCHEMA_SHA256_KEY: ExecutionParameter(type=str, optional=True),
    }


class Executor(import_schema_gen_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: ANN001, N802 - TFX executor API
        expected = exec_properties.get(SCHEMA_SHA256_KEY)
        path = exec_properties.get(standard_component_specs.SCHEMA_FILE_KEY)
        if expected and path:
            actual = schema_sha256(io_utils.read_bytes_file(path))
            if actual != expected:
                raise ValueError(
                    f"schema {path} is not the schema this pipeline was compiled with (sha256 {actual[:16]}, "
                    f"compiled with {expected[:16]}): build the image from the checkout that compiled the "
                    f"pipeline, or compile again"
                )
        return super().Do(input_dict, output_dict, exec_properties)


class PinnedImportSchemaGen(ImportSchemaGen):
    """ImportSchemaGen (same output) that also takes the sha256 of the schema it must find."""

    SPEC_CLASS = PinnedImportSchemaGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, schema_file: str, schema_sha256: str | None = None) -> None:
        spec = PinnedImportSchemaGenSpec(
            schema_file=schema_file,
            schema_sha256=schema_sha256,
            schema=types.Channel(type=standard_artifacts.Schema),
        )
        base_component.BaseComponent.__init__(self, spec=spec)
