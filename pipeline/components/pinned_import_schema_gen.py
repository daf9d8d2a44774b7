"""ImportSchemaGen whose parameters name the schema's content, not only its path.

TFX's ImportSchemaGen takes a file path, and a path is all its cache key sees.
On Vertex the reviewed schema sits at the same path in every pipeline image
(/pipeline/schema/schema.pbtxt), so after a schema edit and a rebuilt image a
cached run reused the old schema. Here the pipeline also names the sha256 of
the schema it was built from: an edit is a new cache key, and a run whose file
is not that schema (an image built from another checkout) stops at once,
naming both hashes, instead of validating data against a contract nobody
compiled. With for_training it imports the schema as Transform and the
Trainer see it (pipeline/training_schema.py), and the sha256 is of that.
"""
from __future__ import annotations

import hashlib
import os

from tfx import types
from tfx.components.schema_gen import executor as schema_gen_executor
from tfx.components.schema_gen.import_schema_gen import executor as import_schema_gen_executor
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import io_utils

from pipeline.training_schema import training_schema_text

SCHEMA_SHA256_KEY = "schema_sha256"
FOR_TRAINING_KEY = "for_training"


def schema_sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class PinnedImportSchemaGenSpec(standard_component_specs.ImportSchemaGenSpec):
    PARAMETERS = {
        **standard_component_specs.ImportSchemaGenSpec.PARAMETERS,
        SCHEMA_SHA256_KEY: ExecutionParameter(type=str, optional=True),
        FOR_TRAINING_KEY: ExecutionParameter(type=int, optional=True),
    }


class Executor(import_schema_gen_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: ANN001, N802 - TFX executor API
        expected = exec_properties.get(SCHEMA_SHA256_KEY)
        path = exec_properties.get(standard_component_specs.SCHEMA_FILE_KEY)
        training = path and exec_properties.get(FOR_TRAINING_KEY)
        content = training_schema_text(io_utils.SchemaReader().read(path)) if training else None
        if expected and path:
            actual = schema_sha256(content if training else io_utils.read_bytes_file(path))
            if actual != expected:
                raise ValueError(
                    f"schema {path} is not the schema this pipeline was compiled with (sha256 {actual[:16]}, "
                    f"compiled with {expected[:16]}): build the image from the checkout that compiled the "
                    f"pipeline, or compile again"
                )
        if not training:
            return super().Do(input_dict, output_dict, exec_properties)
        output = artifact_utils.get_single_uri(output_dict[standard_component_specs.SCHEMA_KEY])
        io_utils.write_string_file(os.path.join(output, schema_gen_executor.DEFAULT_FILE_NAME), content.decode())
        return None


class PinnedImportSchemaGen(ImportSchemaGen):
    """ImportSchemaGen (same output) that also takes the sha256 of the schema it must find; for_training:
    the schema without what only the gate reads (training_schema_text; the sha256 is of that)."""

    SPEC_CLASS = PinnedImportSchemaGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, schema_file: str, schema_sha256: str | None = None, for_training: bool = False) -> None:
        spec = PinnedImportSchemaGenSpec(
            schema_file=schema_file,
            schema_sha256=schema_sha256,
            for_training=int(for_training) if for_training else None,
            schema=types.Channel(type=standard_artifacts.Schema),
        )
        base_component.BaseComponent.__init__(self, spec=spec)
