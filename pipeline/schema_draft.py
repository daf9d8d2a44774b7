"""`make schema`: infer a draft schema from the data, for review against the curated one.

The pipeline never uses the draft: it imports schema/schema.pbtxt. The draft
shows what the data looks like now (types, presence, domains), and the printed
differences are what a reviewer would carry over by hand.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common.atomic_files import replace_whole
from common.console import silenced
from pipeline import configs, data
from pipeline.configs import ConfigError

DRAFT = configs.PROJECT_ROOT / "schema" / "schema.draft.pbtxt"
HEADER = "# Draft schema inferred by `make schema` from the data; the pipeline uses schema/schema.pbtxt.\n"


def differences(curated, draft, empty: set[str] | frozenset[str] = frozenset(),  # noqa: ANN001 - Schema protos
                ranges: dict[str, tuple[float, float]] | None = None) -> list[str]:
    """What a reviewer would carry over; `empty`: columns with no value in any row (TFDV types them BYTES);
    `ranges`: {numeric column: (min, max) in the data}, checked against the curated int/float domains."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    lines = []
    ours = {f.name: f for f in curated.feature}
    theirs = {f.name: f for f in draft.feature}
    for name in sorted(set(theirs) - set(ours)):
        lines.append(f"  + {name}: in the data, not in the curated schema")
    for name in sorted(set(ours) - set(theirs)):
        lines.append(f"  - {name}: in the curated schema, not in the data")
    for name in sorted(set(ours) & set(theirs)):
        if name in empty:
            lines.append(f"  ~ {name}: no values in the data (curated type {schema_pb2.FeatureType.Name(ours[name].type)})")
        elif ours[name].type != theirs[name].type:
            lines.append(
                f"  ~ {name}: curated type {schema_pb2.FeatureType.Name(ours[name].type)}, "
                f"data type {schema_pb2.FeatureType.Name(theirs[name].type)}"
            )
        elif (bounds := _bounds(ours[name])) and name in (ranges or {}) and _outside(ranges[name], bounds):
            low, high = (_number(b) for b in bounds)
            lines.append(f"  ~ {name}: data range {_number(ranges[name][0])} to {_number(ranges[name][1])}, "
                         f"curated domain {low} to {high}")
        elif closed := _domain(curated, ours[name]):  # a value outside a closed domain stops a run
            if extra := _domain(draft, theirs[name]) - closed:
                lines.append(f"  ~ {name}: values outside the curated domain: {', '.join(sorted(extra))}")
    return lines


def _bounds(feature) -> tuple[float | None, float | None] | None:  # noqa: ANN001 - tensorflow_metadata Feature
    """(min, max) of a curated int/float domain, None for a bound it does not set; None without a domain."""
    kind = feature.WhichOneof("domain_info")
    if kind not in ("int_domain", "float_domain"):
        return None
    domain = getattr(feature, kind)
    return (domain.min if domain.HasField("min") else None, domain.max if domain.HasField("max") else None)


def _outside(seen: tuple[float, float], bounds: tuple[float | None, float | None]) -> bool:
    return (bounds[0] is not None and seen[0] < bounds[0]) or (bounds[1] is not None and seen[1] > bounds[1])


def _number(value: float | None) -> str:
    return "(none)" if value is None else f"{value:g}"


def _domain(schema, feature) -> set[str]:  # noqa: ANN001 - tensorflow_metadata protos
    """A feature's string domain values (inline or named), empty when it has none (an open feature)."""
    if feature.HasField("string_domain"):
        return set(feature.string_domain.value)
    if feature.HasField("domain"):
        return next((set(d.value) for d in schema.string_domain if d.name == feature.domain), set())
    return set()


def _check_out(out: Path) -> None:
    """Before the statistics pass (seconds), not after it."""
    if out.resolve() == configs.DEFAULT_SCHEMA.resolve():
        raise ConfigError(f"--out {out} is the curated schema, which the draft would replace; "
                          "write the draft elsewhere (default: schema/schema.draft.pbtxt)")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give the draft's file path (e.g. {out / 'schema.draft.pbtxt'})")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ConfigError(f"--out {out} cannot be written: permission denied")
    if out.is_file() and out.resolve() != DRAFT.resolve() and out.stat().st_size and not _is_draft(out):
        raise ConfigError(f"--out {out} exists and is not a draft written by `make schema`: "
                          "move it away or choose another path")


def _is_draft(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as file:
            return file.readline() == HEADER
    except OSError:
        return False


def _read_curated():  # noqa: ANN202 - tensorflow_metadata Schema proto
    """The curated schema (empty when there is none), or a ConfigError before the statistics pass."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    path = configs.DEFAULT_SCHEMA
    if not path.exists():
        return schema_pb2.Schema()
    try:
        return configs.parse_schema_text(path)
    except ConfigError as error:
        raise ConfigError(f"the curated schema {path} {error}") from None


def _write(draft, out: Path) -> None:  # noqa: ANN001 - tensorflow_metadata Schema proto
    """Header, then the draft, written whole: a failed write leaves the previous draft whole."""
    from google.protobuf import text_format

    replace_whole(out, HEADER + text_format.MessageToString(draft))


def _statistics(files: list[Path], curated):  # noqa: ANN001, ANN202 - Schema / DatasetFeatureStatisticsList protos
    """TFDV's statistics of the files' rows as the pipeline's CsvExampleGen reads and converts them (csv_rows):
    the files check_csv_folder found (DATA.CSV included, hidden files left out), not TFDV's own CSV reading; the
    curated schema's FLOAT and INT columns typed as the run types them (`12` FLOAT, `8.0` INT where it says so)."""
    import tempfile

    import apache_beam as beam
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    from pipeline.components.batched_csv_example_gen import schema_columns
    from pipeline.components.csv_rows import CsvRecordBatches, csv_column_names

    paths = [str(path) for path in files]
    floats, ints = (frozenset(schema_columns(curated, kind)) for kind in (schema_pb2.FLOAT, schema_pb2.INT))
    with tempfile.TemporaryDirectory() as scratch:
        output = os.path.join(scratch, "statistics.tfrecord")
        with beam.Pipeline() as pipeline:
            _ = (pipeline
                 | "ReadCsv" >> CsvRecordBatches(paths, csv_column_names(paths[0]), floats, ints)
                 | "GenerateStatistics" >> tfdv.GenerateStatistics(tfdv.StatsOptions())
                 | "WriteStatistics" >> tfdv.WriteStatisticsToTFRecord(output))
        return tfdv.load_statistics(output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make schema", description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder of CSV files (default: the bundled taxi sample)")
    parser.add_argument("--out", default=str(DRAFT), help="where to write the draft (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.data is not None and not args.data.strip():
            raise ConfigError("--data is empty: give a folder of CSV files, or leave --data out for the bundled sample")
        folder = args.data if args.data is not None else data.bundled_taxi_data()
        files = data.check_csv_folder(folder)
        _check_out(Path(args.out))
        curated = _read_curated()
    except ConfigError as error:
        print(f"error: {error}".splitlines()[0], file=sys.stderr)
        return 2

    print(f"computing statistics of {folder} ...", flush=True)
    try:
        with silenced():  # TFDV, Beam and TensorFlow chatter: warnings about this Python, cuFFT, snappy, ...
            import tensorflow_data_validation as tfdv

            statistics = _statistics(files, curated)
            draft = tfdv.infer_schema(statistics)
    except Exception as error:  # noqa: BLE001 - whatever TFDV raised, one line, not its traceback
        print(f"error: the statistics pass over {folder} failed: {type(error).__name__}: {error}".splitlines()[0],
              file=sys.stderr)
        return 1
    try:
        _write(draft, Path(args.out))
    except OSError as error:
        print(f"error: cannot write the draft to {args.out}: {error.strerror or error}", file=sys.stderr)
        return 1
    print(f"draft schema written to {args.out} (the pipeline still uses {configs.DEFAULT_SCHEMA})")
    from pipeline.components.data_gate import valueless_features

    # Counted by values, as the gate counts them: a column written as empty lists of its type is present in every row.
    empty = set().union(*(valueless_features(dataset) for dataset in statistics.datasets))
    ranges = {f.path.step[-1]: (f.num_stats.min, f.num_stats.max) for d in statistics.datasets for f in d.features
              if f.path.step and f.HasField("num_stats") and f.num_stats.common_stats.num_non_missing}
    found = differences(curated, draft, empty, ranges)
    print("differences from the curated schema:" if found else "no differences from the curated schema (features, types, domains)")
    if found:
        print("\n".join(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
