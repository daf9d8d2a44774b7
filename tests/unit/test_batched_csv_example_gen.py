"""The batched CsvExampleGen executor writes what TFX's own CSV executor writes: same examples, splits and order."""
from __future__ import annotations

import gzip
import os
import random
from pathlib import Path
from unittest import mock

import apache_beam as beam
import pytest
import tensorflow as tf
from tfx.components.example_gen.csv_example_gen import executor as tfx_csv_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from pipeline import data
from pipeline.components import batched_csv_example_gen, csv_rows
from pipeline.pipeline import SPLIT_CONFIG

# Quoting, a line break inside a field, a blank line, missing cells, a column
# without any value, an int past int64 (a string then), nan/inf, leading
# spaces and digit separators that Python's int() takes, non-ASCII text.
ODD_ROWS = (
    "i,f,s,empty,mixed,big\n"
    '1,1.5,"x, y",,1,1\n'
    '2,,"two\nlines",,2.5,2\n'
    "\n"
    "3,2e3,z,,abc,99999999999999999999\n"
    '-4,nan,"",,,4\n'
    ' 12 ,1e40,"q""uote",,7,5\n'
    "1_0,-inf,été,,8,6\n"
)


def _run(executor_class: type, input_base: str, output_uri: str, **extra: object) -> dict:
    """{split: [deterministically serialized example, in file order]} as the executor wrote them."""
    examples = standard_artifacts.Examples()
    examples.uri = output_uri
    single_split = example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="single_split", pattern="*")])
    executor_class().Do(
        {},
        {"examples": [examples]},
        {
            "input_base": input_base,
            "input_config": proto_utils.proto_to_json(single_split),
            "output_config": proto_utils.proto_to_json(SPLIT_CONFIG),
            "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
            "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            **extra,
        },
    )
    written = {}
    for split in artifact_utils.decode_split_names(examples.split_names):
        files = tf.io.gfile.glob(f"{artifact_utils.get_split_uri([examples], split)}/*")
        assert [f.rsplit("/", 1)[1] for f in files] == ["data_tfrecord-00000-of-00001.gz"]
        written[split] = [
            tf.train.Example.FromString(record.numpy()).SerializeToString(deterministic=True)
            for record in tf.data.TFRecordDataset(files, compression_type="GZIP")
        ]
    return written


def _reshuffle_buckets(count: int):  # noqa: ANN202
    """Beam's Reshuffle (TFX's WriteSplit) drawing its random keys from `count` values instead of 2**32."""
    return mock.patch.object(beam.transforms.util.Reshuffle, "_DEFAULT_NUM_BUCKETS", count)


def _same_as_tfx(input_base: str, tmp_path) -> dict:  # noqa: ANN001
    # One Reshuffle key: the files keep the order the examples were made in,
    # which is the conversion's to compare (TFX's random keys collide now and then).
    with _reshuffle_buckets(1):
        ours = _run(batched_csv_example_gen.Executor, input_base, str(tmp_path / "batched"))
        assert ours == _run(tfx_csv_executor.Executor, input_base, str(tmp_path / "tfx"))
    return ours


def test_odd_rows_over_several_batches_and_files(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_rows, "ROWS_PER_BATCH", 2)
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.csv").write_text(ODD_ROWS, encoding="utf-8")
    (folder / "b.csv").write_text("i,f,s,empty,mixed,big\n5,0.25,w,,9,7\n", encoding="utf-8")
    written = _same_as_tfx(str(folder), tmp_path)
    assert sum(map(len, written.values())) == 7
    example = tf.train.Example.FromString(next(r for r in written["train"] + written["eval"] if b"abc" in r))
    feature = example.features.feature
    assert feature["big"].bytes_list.value == [b"99999999999999999999"]
    assert feature["mixed"].bytes_list.value == [b"abc"]
    assert not feature["empty"].HasField("kind")


def test_repeated_header_name_and_crlf(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "d.csv").write_bytes(b"x,x,y\r\n1,2,3\r\n4,5,\r\n")
    written = _same_as_tfx(str(folder), tmp_path)
    values = sorted(tf.train.Example.FromString(r).features.feature["x"].int64_list.value[0]
                    for r in written["train"] + written["eval"])
    assert values == [2, 5]  # the later column of a repeated name, as in TFX


def test_bundled_taxi_sample(tmp_path):
    written = _same_as_tfx(data.bundled_taxi_data(), tmp_path)
    assert {split: len(rows) for split, rows in written.items()} == {"train": 10036, "eval": 4966}


def test_row_of_another_width_fails_naming_it(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "d.csv").write_text("a,b,c\n1,2,3\n1,2,3,\n")
    with pytest.raises(ValueError, match=r"Columns do not match specified csv headers: \['a', 'b', 'c'\] -> "):
        _run(batched_csv_example_gen.Executor, str(folder), str(tmp_path / "out"))


def test_order_is_the_same_from_run_to_run(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "d.csv").write_text("n,s\n" + "".join(f"{n},row{n}\n" for n in range(60)))
    runs = {}
    # Three Reshuffle keys: examples sharing a key are grouped, so the file order
    # depends on the keys drawn, which is rare with 2**32 of them but does happen.
    with _reshuffle_buckets(3):
        for name, executor in (("ours", batched_csv_example_gen.Executor), ("tfx", tfx_csv_executor.Executor)):
            for seed in (1, 2):
                random.seed(seed)
                runs[name, seed] = _run(executor, str(folder), str(tmp_path / f"{name}{seed}"))
                after = random.getstate()
                random.seed(seed)
                if name == "ours":
                    assert after == random.getstate()  # Python's random is left as it was found
    assert runs["tfx", 1] != runs["tfx", 2]  # TFX's own order moves with the keys
    assert runs["ours", 1] == runs["ours", 2]
    assert sorted(runs["ours", 1]["train"]) == sorted(runs["tfx", 1]["train"])


def test_the_examples_do_not_depend_on_the_order_the_file_system_lists_the_files_in(tmp_path, monkeypatch):
    """The Trainer reads the examples in file order: a folder copied to another machine trained another model."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("a.csv", "b.csv", "c.csv"):
        (folder / name).write_text("n,s\n" + "".join(f"{n},{name}{n}\n" for n in range(20)))
    listed = csv_rows.fileio.glob
    written = {}
    for order in (sorted, lambda paths: sorted(paths, reverse=True)):
        monkeypatch.setattr(csv_rows.fileio, "glob", lambda pattern, order=order: order(listed(pattern)))
        written[order] = _run(batched_csv_example_gen.Executor, str(folder), str(tmp_path / f"out{len(written)}"))
    first, second = written.values()
    assert first == second and sum(map(len, first.values())) == 60


def _fingerprint(folder: Path) -> str:
    """What the pipeline's CsvExampleGen driver keys the cache on, for a flat data folder."""
    from tfx.components.example_gen import utils as example_gen_utils
    from tfx.types import standard_component_specs as specs

    driver = batched_csv_example_gen.ContentFingerprintDriver.__new__(
        batched_csv_example_gen.ContentFingerprintDriver)  # resolving needs no MLMD handle
    exec_properties = {specs.INPUT_BASE_KEY: str(folder),
                       specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(example_gen_utils.make_default_input_config())}
    return driver.resolve_exec_properties(exec_properties, None, None)[example_gen_utils.FINGERPRINT_PROPERTY_NAME]


def test_data_rewritten_at_the_same_size_and_time_is_a_new_fingerprint(tmp_path: Path) -> None:
    """TFX keys its cache on size and mtime only: an edit kept at both served stale examples (cp -p, rsync -t)."""
    folder = tmp_path / "data"
    folder.mkdir()
    csv = folder / "data.csv"
    csv.write_text("fare,tips\n10.0,0.0\n")
    before = _fingerprint(folder)
    assert _fingerprint(folder) == before  # the same contents: a cache hit, as before
    stat = csv.stat()
    csv.write_text("fare,tips\n10.0,9.9\n")
    os.utime(csv, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = _fingerprint(folder)
    assert after != before and after.split(",sha256:")[0] == before.split(",sha256:")[0]


def test_hidden_files_are_not_read_and_do_not_change_the_fingerprint(tmp_path: Path) -> None:
    """CsvExampleGen's `<folder>/*` also matched .DS_Store and ._d.csv (the data check refused them for that); a
    hidden file is not data: it is not read, and adding or changing one is not a new input (no retrain)."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "d.csv").write_text("n,s\n" + "".join(f"{n},row{n}\n" for n in range(20)))
    plain = _run(batched_csv_example_gen.Executor, str(folder), str(tmp_path / "plain"))
    before = _fingerprint(folder)
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1\0" + bytes(range(256)))
    # a hidden file that is even a CSV of the same table (an editor's backup) is not read either
    (folder / ".d.csv.swp").write_text("n,s\n99,backup\n")
    assert _run(batched_csv_example_gen.Executor, str(folder), str(tmp_path / "hidden")) == plain
    assert _fingerprint(folder) == before
    (folder / ".DS_Store").write_bytes(b"changed")
    assert _fingerprint(folder) == before
    (folder / "d.csv").write_text("n,s\n1,row1\n")
    assert _fingerprint(folder) != before


def test_gzipped_csv_files_are_read_as_the_plain_ones(tmp_path: Path) -> None:
    """`*.csv.gz`: the header was read from the compressed bytes and TFX's record reader cannot iterate
    Beam's compressed file; now each file's bytes are decompressed first, header and rows alike."""
    plain, zipped = tmp_path / "plain", tmp_path / "zipped"
    plain.mkdir()
    zipped.mkdir()
    first = ODD_ROWS.encode()
    second = b"i,f,s,empty,mixed,big\n5,0.25,w,,9,7\n"
    (plain / "a.csv").write_bytes(first)
    (plain / "b.csv").write_bytes(second)
    (zipped / "a.csv.gz").write_bytes(gzip.compress(b"\xef\xbb\xbf" + first))  # Excel's mark inside, as in a plain file
    (zipped / "b.csv").write_bytes(second)  # plain and gzipped files in one folder
    expected = _run(batched_csv_example_gen.Executor, str(plain), str(tmp_path / "out-plain"))
    assert sum(map(len, expected.values())) == 7
    written = _run(batched_csv_example_gen.Executor, str(zipped), str(tmp_path / "out-zipped"))
    # the same examples in the same splits; the files' order is the glob's (the file system's), as in TFX
    assert {split: sorted(rows) for split, rows in written.items()} == {
        split: sorted(rows) for split, rows in expected.items()}


def test_data_touched_without_a_change_keeps_its_fingerprint(tmp_path: Path) -> None:
    """A file's time alone (touch, a checkout, a copy without -p) changes nothing CsvExampleGen reads: TFX's
    fingerprint holds the mtimes, so such a run made new examples, and every component after them ran again."""
    folder = tmp_path / "data"
    folder.mkdir()
    csv = folder / "data.csv"
    csv.write_text("fare,tips\n10.0,0.0\n")
    before = _fingerprint(folder)
    os.utime(csv, ns=(csv.stat().st_atime_ns, csv.stat().st_mtime_ns + 5 * 10**9))
    assert _fingerprint(folder) == before


@pytest.mark.parametrize("given", ["listed", "schema_file"])
def test_a_schema_float_column_of_whole_numbers_stays_float(tmp_path, given):
    """Fares written as 12 rather than 12.0 made TFX infer INT, which the gate refused against the schema's FLOAT.

    The FLOAT columns come listed, or, when the pipeline was built where the
    schema could not be read (gs:// on Vertex), from the schema file itself.
    """
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "d.csv").write_text("fare,hour\n12,3\n7,4\n")
    schema = tmp_path / "schema.pbtxt"
    schema.write_text('feature { name: "fare" type: FLOAT }\nfeature { name: "hour" type: INT }\n')
    custom = (batched_csv_example_gen.custom_config_for(["fare"]) if given == "listed"
              else batched_csv_example_gen.custom_config_for(schema_file=str(schema)))
    config = proto_utils.proto_to_json(custom)
    written = _run(batched_csv_example_gen.Executor, str(folder), str(tmp_path / "out"), custom_config=config)
    features = [tf.train.Example.FromString(r).features.feature for r in written["train"] + written["eval"]]
    assert sorted(f["fare"].float_list.value[0] for f in features) == [7.0, 12.0]
    assert sorted(f["hour"].int64_list.value[0] for f in features) == [3, 4]  # INT in the schema: inferred as before
    assert batched_csv_example_gen.configured_float_columns(config) == {"fare"}


@pytest.mark.parametrize("given", ["component", "schema_file"])
def test_a_schema_int_column_written_as_whole_floats_is_int(tmp_path, given):
    """pandas writes an int column with a missing cell as floats (`8.0`): a CSV of the bundled data read and saved
    again with pandas was refused by the gate (INT expected, FLOAT found) in five columns. Whole values are ints;
    a column with a fraction (`2.5`) stays FLOAT, for the gate to refuse."""
    from pipeline.configs import parse_schema_text
    from pipeline.pipeline import _schema_column_types

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "d.csv").write_text("fare,hour,area,seconds\n12.5,3.0,8.0,60\n7.0,4.0,,2.5\n")
    schema = tmp_path / "schema.pbtxt"
    schema.write_text('feature { name: "fare" type: FLOAT }\nfeature { name: "hour" type: INT }\n'
                      'feature { name: "area" type: INT }\nfeature { name: "seconds" type: INT }\n')
    if given == "component":  # as the pipeline builds it
        component = batched_csv_example_gen.BatchedCsvExampleGen(**_schema_column_types(str(schema), parse_schema_text(schema)),
                                                                 input_base=str(folder))
        custom = component.exec_properties["custom_config"]
    else:
        custom = batched_csv_example_gen.custom_config_for(schema_file=str(schema))
    config = custom if isinstance(custom, str) else proto_utils.proto_to_json(custom)
    written = _run(batched_csv_example_gen.Executor, str(folder), str(tmp_path / "out"), custom_config=config)
    features = [tf.train.Example.FromString(r).features.feature for r in written["train"] + written["eval"]]
    def values(name: str, kind: str) -> list:
        return sorted(v for f in features for v in getattr(f[name], kind).value)

    assert values("hour", "int64_list") == [3, 4]
    assert values("area", "int64_list") == [8]
    assert values("fare", "float_list") == [7.0, 12.5]
    assert values("seconds", "float_list") == [2.5, 60.0]  # not whole: the gate's to refuse


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    """Excel's "CSV UTF-8" starts the file with U+FEFF: TFX's header read made the first column
    '\\ufefffare' (a header other files do not share, and a column the schema does not have)."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.csv").write_bytes("\ufefffare,payment_type\r\n12.5,Cash\r\n".encode())
    (folder / "b.csv").write_text("fare,payment_type\n7.5,Credit Card\n")
    written = _run(batched_csv_example_gen.Executor, str(folder), str(tmp_path / "out"))
    features = [tf.train.Example.FromString(r).features.feature for r in written["train"] + written["eval"]]
    assert all(set(f) == {"fare", "payment_type"} for f in features)
    assert sorted(f["fare"].float_list.value[0] for f in features) == [7.5, 12.5]


def test_quoted_column_names_are_read_as_csv(tmp_path):
    """R's write.csv, pandas' QUOTE_ALL and database exports quote every field, header included: TFX's header
    read split the line at commas and kept the quotes ('"fare"'), and the data check refused the file."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.csv").write_text('"fare","payment_type","note, quoted"\n"12.5","Cash","x"\n')
    (folder / "b.csv").write_text('fare,payment_type,"note, quoted"\n7.5,Credit Card,y\n')
    written = _run(batched_csv_example_gen.Executor, str(folder), str(tmp_path / "out"))
    features = [tf.train.Example.FromString(r).features.feature for r in written["train"] + written["eval"]]
    assert all(set(f) == {"fare", "payment_type", "note, quoted"} for f in features)
    assert sorted(f["fare"].float_list.value[0] for f in features) == [7.5, 12.5]


def test_a_row_is_written_the_same_whatever_the_other_rows_hold(tmp_path):
    """The train/eval split hashes each serialized example. In the bundled data one row holds the only
    pickup_census_tract: without it the column had no value anywhere and was written without a kind, every
    row's bytes changed, and a third of the rows moved between train and eval. The schema's type decides
    how a column without values is written, so removing that row moves no other row."""
    schema = tmp_path / "schema.pbtxt"
    schema.write_text('feature { name: "tract" type: INT }\nfeature { name: "fare" type: FLOAT }\n'
                      'feature { name: "hour" type: INT }\n')
    rows = [f",,{hour % 24}" for hour in range(60)]
    written = {}
    for name, last in (("with", "17031081500,12.5,3"), ("without", None)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "d.csv").write_text("\n".join(["tract,fare,hour", *rows, *([last] if last else [])]) + "\n")
        config = proto_utils.proto_to_json(batched_csv_example_gen.custom_config_for(schema_file=str(schema)))
        written[name] = _run(batched_csv_example_gen.Executor, str(folder), str(tmp_path / f"out-{name}"),
                             custom_config=config)
    def others(records: list[bytes]) -> list[bytes]:  # all but the row holding the tract
        return sorted(r for r in records if not tf.train.Example.FromString(r).features.feature["tract"].int64_list.value)

    kept = {split: others(records) for split, records in written["with"].items()}
    assert kept == {split: sorted(records) for split, records in written["without"].items()}
    example = tf.train.Example.FromString(written["without"]["train"][0]).features.feature
    assert example["tract"].HasField("int64_list") and example["fare"].HasField("float_list")
