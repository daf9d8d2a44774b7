"""CSV files -> Arrow record batches of their rows, as the pipeline's CsvExampleGen converts them.

The rows of a file are read, parsed and type-checked as TFX's CSV executor
does (TFX's own record reader, CSV reader and type rules), then converted a
batch at a time to Arrow: a missing cell is an empty value list, a column
without any value is null (unless the schema types it), ints are int64 and
floats float32, blank lines are skipped. The schema's column types, passed in,
win over the look of the numbers: a FLOAT column stays FLOAT when every value
is whole (`12`), where TFX's inference makes it INT, an INT column whose every
value is a whole number is INT when written as floats (`8.0`, as pandas writes
an int column with a missing cell), where TFX's makes it FLOAT, and a FLOAT or
INT column without any value has the schema's type, where TFX's has none.

The batched CsvExampleGen encodes these batches as tf.Examples
(batched_csv_example_gen.py); `make schema` computes its statistics from them,
so the draft sees the columns as the pipeline does.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.dsl.io import fileio
from tfx_bsl.coders import csv_decoder

from pipeline.data_files import header_names, is_hidden, open_data_file, whole_number

ColumnType = csv_decoder.ColumnType
ROWS_PER_BATCH = 4096

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
        for record in _csv_records(csv_filepath):
            cells = reader.ReadLine(record)
            if cells:
                batch.append(cells)
                if len(batch) == self._rows_per_batch:
                    yield batch
                    batch = []
        if batch:
            yield batch


def _open_stored(path: str) -> BinaryIO:
    """A file's bytes as stored, local or gs://; open_data_file decompresses a .gz."""
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _csv_records(csv_file: str) -> Iterator[str]:
    """The CSV records after the header line, read as TFX's _ReadCsvRecordsFromTextFile reads them (a record
    runs on over lines while a quote is open), from the file's bytes decompressed when it is a .csv.gz
    (data_files.open_data_file): TFX's reader opens files through Beam, whose gzip file cannot be iterated by line."""
    with open_data_file(csv_file, _open_stored) as handle:
        handle.readline()  # the header
        buffer = csv_executor._CsvLineBuffer()  # noqa: SLF001 - TFX's own record assembly
        for line in handle:
            buffer.write(line.decode("utf-8"))
            if buffer.is_complete_line():
                yield buffer.read()
        if not buffer.is_empty():
            raise ValueError(f"Csv record had unbalanced quotes. File: {csv_file}")


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
    return ColumnType.INT if kind == ColumnType.FLOAT and whole_number(cell) else kind


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



def record_batch(rows: list[list[bytes]], column_infos: list) -> pa.RecordBatch:
    """A batch of parsed rows as Arrow columns. A repeated header name keeps its last column, as in TFX's feature dict."""
    columns = {
        info.name: _column_array(cells, info.type)
        for info, cells in zip(column_infos, zip(*rows, strict=True), strict=True)
    }
    return pa.RecordBatch.from_arrays(list(columns.values()), list(columns))


@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(pa.RecordBatch)
class CsvRecordBatches(beam.PTransform):
    """CSV files that share the header `column_names` -> record batches of their rows, in file order.

    `float_columns` and `int_columns`: the schema's FLOAT and INT columns (see the module's docstring).
    """

    def __init__(self, csv_files: list[str], column_names: list[str], float_columns: frozenset[str] = frozenset(),
                 int_columns: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self._csv_files = csv_files
        self._column_names = column_names
        self._float_columns = float_columns
        self._int_columns = int_columns

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        row_batches = (
            pipeline
            | "CreateFilenames" >> beam.Create(self._csv_files)
            | "ReadCsvRowBatches" >> beam.ParDo(_ReadCsvRowBatches())
        )
        column_infos = beam.pvalue.AsSingleton(
            row_batches
            | "InferColumnTypes" >> beam.CombineGlobally(
                _BatchColumnTypeInferrer(self._column_names, self._int_columns, skip_blank_lines=True)
            )
            | "SchemaTypes" >> beam.Map(_schema_types, self._float_columns, self._int_columns)
        )
        return row_batches | "ToRecordBatch" >> beam.Map(record_batch, column_infos)


def data_files(pattern: str) -> list[str]:
    """The files a split's pattern (`<folder>/*`, `<folder>/span-3/*`) names that are data, sorted: the glob's
    order is the file system's (another machine, a copied folder), and the examples keep the order read.
    TensorFlow's glob also matches hidden ones (.DS_Store, ._data.csv; pipeline.data_files.is_hidden), which are not."""
    return sorted(path for path in fileio.glob(pattern) if not is_hidden(os.path.basename(path)))


def csv_column_names(csv_file: str) -> list[str]:
    """The first line's column names parsed as CSV (pipeline.data_files.header_names): TFX's read split it at
    commas, keeping quotes and the byte-order mark of Excel's "CSV UTF-8" in the names. The rows, read
    after the header line, are parsed as CSV already and never hold the mark. A .csv.gz is decompressed."""
    with open_data_file(csv_file, _open_stored) as handle:
        return header_names(handle.readline().decode("utf-8"))


def _schema_types(column_infos: list, floats: frozenset[str], ints: frozenset[str]) -> list:
    """The schema's type where the values leave room for it. Columns the schema says are FLOAT stay FLOAT when
    every value happens to be whole (`12`, not `12.0`): TFX's inference alone made them INT, which the data gate
    refused as the wrong type. A FLOAT or INT column without any value is written as the schema's type (an empty
    value list), not without a kind: otherwise whether one other row holds a value would change every row's
    bytes, and with them the hash split."""
    def typed(info):  # noqa: ANN001, ANN202 - tfx_bsl's ColumnInfo
        if info.name in floats and info.type in (ColumnType.INT, ColumnType.UNKNOWN):
            return csv_decoder.ColumnInfo(info.name, ColumnType.FLOAT)
        if info.name in ints and info.type == ColumnType.UNKNOWN:
            return csv_decoder.ColumnInfo(info.name, ColumnType.INT)
        return info

    return [typed(info) for info in column_infos]
