"""CsvExampleGen's executor, converting CSV rows a batch at a time.

TFX's CSV executor turns every row into a tf.Example in Python, cell by cell
(a Python handler and a proto per cell), and infers the column types row by
row: on the taxi sample that is most of CsvExampleGen's 6-9 s. This executor
is TFX's, with one part replaced: the rows of a file are read, parsed and
type-checked the same way (TFX's own record reader, CSV reader and type
rules), then converted a batch at a time through Arrow and tfx_bsl's C++
encoder. Everything around it is TFX's own: the split by hash of the
example, the gzipped TFRecord files, the artifact properties.

The output is the same examples in the same splits: a missing cell is an
empty value list, a column without any value has features without a kind,
ints are int64 and floats float32, the header must match across files,
blank lines are skipped. Each record is the example's deterministic
serialization, which is also what TFX hashes to choose its split.

Unlike TFX's, its output is the same from run to run, order included (see
seeded_reshuffle): the Trainer reads the examples in file order, so a new
order trained a slightly different model from the same data. And the
schema's column types, passed in, win over the look of the numbers: a FLOAT
column stays FLOAT when every value is whole (`12`), where TFX's inference
makes it INT, and an INT column whose every value is a whole number is INT
when written as floats (`8.0`, as pandas writes an int column with a missing
cell), where TFX's makes it FLOAT.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow as tf
from google.protobuf import struct_pb2
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.components.example_gen.csv_example_gen.component import CsvExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import io_utils, proto_utils
from tfx_bsl.coders import csv_decoder, example_coder

from pipeline.data import header_names
from pipeline.up_to_date import hash_file

ColumnType = csv_decoder.ColumnType
ROWS_PER_BATCH = 4096

INT64_RANGE = 2**63


def _whole_number(cell: bytes) -> bool:
    """`8` or `8.0`: a value an int64 column can hold exactly as written."""
    try:
        value = float(cell)
    except ValueError:
        return False
    return value.is_integer() and -INT64_RANGE <= value < INT64_RANGE


def _as_int(cell: bytes) -> int:
    try:
        return int(cell)
    except ValueError:  # `8.0` in a schema INT column of whole numbers (_int_column_value_type)
        return int(float(cell))


# How TFX's CSV executor stores a cell of each column type (csv_example_gen/executor.py):
# the Python parse of the cell (None: its bytes as they are) and the value type.
_CELL_VALUES = {
    ColumnType.INT: (_as_int, pa.int64()),
    ColumnType.FLOAT: (float, pa.float32()),
    ColumnType.STRING: (None, pa.large_binary()),
}


class _ReadCsvRowBatches(beam.DoFn):
    """A CSV file -> lists of parsed rows (cells as bytes), blank lines skipped, in file order."""

    def __init__(self) -> None:
        self._rows_per_batch = ROWS_PER_BATCH

    def process(self, csv_filepath: str) -> Iterator[list[list[bytes]]]:
        reader = csv_decoder._CSVRecordReader(",")  # noqa: SLF001 - TFX's own parsing, for the same cells
        batch = []
        for record in csv_executor._ReadCsvRecordsFromTextFile().process(csv_filepath):  # noqa: SLF001
            cells = reader.ReadLine(record)
            if cells:
                batch.append(cells)
                if len(batch) == self._rows_per_batch:
                    yield batch
                    batch = []
        if batch:
            yield batch


class _BatchColumnTypeInferrer(csv_decoder.ColumnTypeInferrer):
    """TFX's column type inference (INT < FLOAT < STRING), fed a batch of rows at a time. In the schema's
    INT columns (`int_columns`) a whole number written as a float (`8.0`) counts as INT."""

    def __init__(self, column_names: list[str], int_columns: frozenset[str] = frozenset(), **kwargs: object) -> None:
        super().__init__(column_names, **kwargs)
        self._int_columns = int_columns

    def add_input(self, accumulator: dict, rows: list[list[bytes]]) -> dict:
        width = len(self._column_names)
        for row in rows:
            if len(row) != width:
                raise ValueError(f"Columns do not match specified csv headers: {self._column_names} -> {row}")
        batch_types = {}
        for name, cells in zip(self._column_names, zip(*rows, strict=True), strict=True):
            if accumulator.get(name) == ColumnType.STRING:
                continue
            infer = _int_column_value_type if name in self._int_columns else _value_type
            batch_types[name] = max(map(infer, set(cells)))
        return self.merge_accumulators([accumulator, batch_types])


_value_type = csv_decoder._InferValueType  # noqa: SLF001 - TFX's own inference, cell by cell


def _int_column_value_type(cell: bytes) -> ColumnType:
    """A cell's type as TFX infers it, but INT for a whole number written as a float (`8.0`)."""
    kind = _value_type(cell)
    return ColumnType.INT if kind == ColumnType.FLOAT and _whole_number(cell) else kind


def _column_array(cells: tuple[bytes, ...], column_type: ColumnType) -> pa.Array:
    """One column as Arrow lists: one value per present cell, an empty list per missing one."""
    if column_type not in _CELL_VALUES:  # no value in any row: TFX writes a feature without a kind
        return pa.nulls(len(cells), pa.large_list(pa.large_binary()))
    parse, value_type = _CELL_VALUES[column_type]
    present = [cell for cell in cells if cell]
    if parse is not None:
        # float32 as the proto's FloatList stores it (round to nearest; inf beyond its range).
        with np.errstate(over="ignore"):
            present = np.array([parse(cell) for cell in present]).astype(value_type.to_pandas_dtype())
    offsets = np.zeros(len(cells) + 1, np.int64)
    np.cumsum([bool(cell) for cell in cells], out=offsets[1:])
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(present, value_type))


@beam.typehints.with_output_types(bytes)
class _RowBatchToExamples(beam.DoFn):
    """A batch of parsed rows -> each row's tf.Example, deterministically serialized."""

    def setup(self) -> None:
        self._encoder = example_coder.RecordBatchToExamplesEncoder()

    def process(self, rows: list[list[bytes]], column_infos: list) -> Iterable[bytes]:
        # A repeated header name keeps its last column, as in TFX's feature dict.
        columns = {
            info.name: _column_array(cells, info.type)
            for info, cells in zip(column_infos, zip(*rows, strict=True), strict=True)
        }
        batch = pa.RecordBatch.from_arrays(list(columns.values()), list(columns))
        for encoded in self._encoder.encode(batch):
            yield tf.train.Example.FromString(encoded).SerializeToString(deterministic=True)


@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)  # serialized, where TFX's gives protos
class _BatchedCsvToExample(csv_executor._CsvToExample):  # noqa: SLF001 - the input pattern handling is TFX's
    """TFX's CSV-to-examples transform, a batch of rows at a time."""

    def __init__(self, exec_properties: dict, split_pattern: str) -> None:
        super().__init__(exec_properties, split_pattern)
        custom_config = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
        self._float_columns = configured_float_columns(custom_config)
        self._int_columns = configured_int_columns(custom_config)

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        csv_files = fileio.glob(self._csv_pattern)
        if not csv_files:
            raise RuntimeError(f"Split pattern {self._csv_pattern} does not match any files.")
        column_names = csv_column_names(csv_files[0])
        for csv_file in csv_files[1:]:
            if csv_column_names(csv_file) != column_names:
                raise RuntimeError(f"Files in same split {self._csv_pattern} have different header.")
        row_batches = (
            pipeline
            | "CreateFilenames" >> beam.Create(csv_files)
            | "ReadCsvRowBatches" >> beam.ParDo(_ReadCsvRowBatches())
        )
        column_infos = beam.pvalue.AsSingleton(
            row_batches
            | "InferColumnTypes" >> beam.CombineGlobally(
                _BatchColumnTypeInferrer(column_names, self._int_columns, skip_blank_lines=True)
            )
            | "SchemaFloats" >> beam.Map(_as_float, self._float_columns)
        )
        return row_batches | "ToTFExample" >> beam.ParDo(_RowBatchToExamples(), column_infos)


def csv_column_names(csv_file: str) -> list[str]:
    """The first line's column names parsed as CSV (pipeline.data.header_names): TFX's read split it at
    commas, keeping quotes and the byte-order mark of Excel's "CSV UTF-8" in the names. The rows, read
    after the header line, are parsed as CSV already and never hold the mark."""
    with fileio.open(csv_file) as handle:
        return header_names(handle.readline())


def _as_float(column_infos: list, floats: frozenset[str]) -> list:
    """Columns the schema says are FLOAT stay FLOAT when every value happens to be whole (`12`, not `12.0`):
    TFX's inference alone made them INT, which the data gate refused as the wrong type."""
    return [csv_decoder.ColumnInfo(info.name, ColumnType.FLOAT)
            if info.name in floats and info.type == ColumnType.INT else info for info in column_infos]


def configured_float_columns(custom_config: object) -> frozenset[str]:
    """The FLOAT columns named in CsvExampleGen's custom_config (JSON of a CustomConfig packing a Struct).

    Either listed (`float_columns`, read from the schema when the pipeline was
    built) or, for a schema the build could not read (gs:// on Vertex), read
    from `schema_file` here, where the executor runs.
    """
    return _configured_columns(custom_config, schema_pb2.FLOAT)


def configured_int_columns(custom_config: object) -> frozenset[str]:
    """The INT columns, as configured_float_columns finds the FLOAT ones (`int_columns` when listed)."""
    return _configured_columns(custom_config, schema_pb2.INT)


_LISTED = {schema_pb2.FLOAT: "float_columns", schema_pb2.INT: "int_columns"}


def _configured_columns(custom_config: object, kind: int) -> frozenset[str]:
    if not custom_config:
        return frozenset()
    config = custom_config
    if isinstance(custom_config, str):
        config = example_gen_pb2.CustomConfig()
        proto_utils.json_to_proto(custom_config, config)
    fields = struct_pb2.Struct()
    config.custom_config.Unpack(fields)
    if "schema_file" in fields:
        return frozenset(schema_columns(io_utils.SchemaReader().read(fields["schema_file"]), kind))
    return frozenset(fields[_LISTED[kind]]) if _LISTED[kind] in fields else frozenset()


def schema_columns(schema: schema_pb2.Schema, kind: int) -> list[str]:
    return [feature.name for feature in schema.feature if feature.type == kind]


def custom_config_for(floats: Iterable[str] = (), schema_file: str | None = None,
                      ints: Iterable[str] = ()) -> example_gen_pb2.CustomConfig:
    """The FLOAT (and INT) columns as lists, or the schema file to read them from at run time."""
    fields = struct_pb2.Struct()
    if schema_file is not None:
        fields["schema_file"] = schema_file
    else:
        fields["float_columns"] = sorted(floats)
        if ints:
            fields["int_columns"] = sorted(ints)
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(fields)
    return config


RESHUFFLE_SEED = 0


@contextlib.contextmanager
def seeded_reshuffle() -> Iterator[None]:
    """Python's random, which Beam's Reshuffle keys examples with, seeded while inside; restored after.

    TFX writes each split through beam.Reshuffle: every example gets a random
    key in [0, 2**32) and the examples are grouped by key. In-process, each
    group comes out in the order its first example went in, so the file keeps
    the read order unless two examples of a split draw the same key: then the
    second moves up next to the first. For the taxi sample's 10,036 training
    examples that happens in about 1 run in 85 (n^2 / 2^33), and the Trainer,
    which reads the examples in file order, then trained a different model
    (seen once here: eval AUC 0.9470 / accuracy 0.8927 instead of 0.9468 /
    0.8931, one example moved 881 places). Seeded, the same data gives the
    same keys, the same order and the same model. Beam workers in other
    processes (multi-processing, Dataflow) draw their own keys, as with TFX's
    executor.
    """
    state = random.getstate()
    random.seed(RESHUFFLE_SEED)
    try:
        yield
    finally:
        random.setstate(state)


class Executor(csv_executor.Executor):
    """TFX's CsvExampleGen executor with the batched conversion and a run-to-run stable order."""

    def Do(self, input_dict: dict, output_dict: dict, exec_properties: dict) -> None:  # noqa: N802 - TFX's name
        with seeded_reshuffle():
            super().Do(input_dict, output_dict, exec_properties)

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802 - TFX's name
        return _BatchedCsvToExample


class ContentFingerprintDriver(example_gen_driver.FileBasedDriver):
    """TFX's ExampleGen driver, with the input files' contents in the fingerprint the cache is keyed on.

    TFX's fingerprint is the files' count, total size and mtimes in seconds:
    data rewritten at the same size with its timestamp kept (cp -p, rsync -t,
    an unpacked archive) looked unchanged, and the cache served the old
    examples and every result after them. With a SHA-256 of the contents any
    change is a cache miss. Local runs only: Vertex runs TFX's own driver.
    """

    def resolve_exec_properties(self, exec_properties: dict, pipeline_info: object, component_info: object) -> dict:
        exec_properties = super().resolve_exec_properties(exec_properties, pipeline_info, component_info)
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        digest = hashlib.sha256()
        for split in input_config.splits:
            for path in sorted(fileio.glob(os.path.join(base, split.pattern))):
                hash_file(digest, Path(path))
        key = example_gen_utils.FINGERPRINT_PROPERTY_NAME
        exec_properties[key] = f"{exec_properties[key]},sha256:{digest.hexdigest()}"
        return exec_properties


class BatchedCsvExampleGen(CsvExampleGen):
    """CsvExampleGen (same arguments, outputs and splits) with the batched executor and a content fingerprint.

    `float_columns` (the schema's FLOAT features) stay FLOAT whatever their values look like, and
    `int_columns` are INT when their values are whole; or, when the schema cannot be read where the
    pipeline is built, `schema_file` names it for the executor to read.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
    DRIVER_CLASS = ContentFingerprintDriver

    def __init__(self, float_columns: Iterable[str] = (), schema_file: str | None = None,
                 int_columns: Iterable[str] = (), **kwargs: object) -> None:
        # CsvExampleGen takes no custom_config; its parent does, and CsvExampleGen passes the rest through.
        wanted = float_columns or schema_file or int_columns
        custom_config = custom_config_for(float_columns, schema_file, int_columns) if wanted else None
        FileBasedExampleGen.__init__(self, custom_config=custom_config, **kwargs)
