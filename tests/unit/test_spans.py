from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipeline import configs, spans
from pipeline.configs import ConfigError


def _write(folder: Path, rows: int = 3) -> None:
    folder.mkdir(parents=True)
    (folder / "data.csv").write_text("a,b\n" + "1,2\n" * rows)


def test_latest_span_and_its_predecessor(tmp_path):
    for n in (1, 2, 5):
        _write(tmp_path / f"span-{n}")
    (tmp_path / "notes").mkdir()
    assert spans.list_spans(str(tmp_path)) == [1, 2, 5]
    assert spans.choose_spans(str(tmp_path), None) == (5, 2)
    assert spans.choose_spans(str(tmp_path), 2) == (2, 1)
    assert spans.choose_spans(str(tmp_path), 1) == (1, None)


def test_the_drift_baseline_is_the_newest_earlier_span_the_gate_did_not_stop(tmp_path):
    """Span 2 stopped by the gate (a broken export): span 3 compared with it was stopped for drift too. A span
    never run (the README's span 4 after spans 1 and 2) is no reason to look further back."""
    for n in (1, 2, 3):
        _write(tmp_path / f"span-{n}")
    assert spans.choose_spans(str(tmp_path), None, lambda: {2}) == (3, 1)
    assert spans.choose_spans(str(tmp_path), None, lambda: set()) == (3, 2)
    assert spans.choose_spans(str(tmp_path), None, lambda: {1, 2}) == (3, 2)  # all stopped: the span before
    assert spans.choose_spans(str(tmp_path), None) == (3, 2)


def test_flat_folder_has_no_spans(tmp_path):
    _write(tmp_path / "flat")
    assert spans.choose_spans(str(tmp_path / "flat"), None) == (None, None)
    with pytest.raises(ConfigError, match="no span-<N>/ folders"):
        spans.choose_spans(str(tmp_path / "flat"), 3)


def test_missing_or_empty_span_is_named(tmp_path):
    _write(tmp_path / "span-1")
    (tmp_path / "span-2").mkdir()
    with pytest.raises(ConfigError, match=r"span 7 not found in .* \(spans there: 1, 2\)"):
        spans.choose_spans(str(tmp_path), 7)
    with pytest.raises(ConfigError, match="is empty"):
        spans.choose_spans(str(tmp_path), 2)


def test_hidden_files_beside_and_inside_span_folders_are_left_out(tmp_path):
    """Span folders are read with the same pattern: a .DS_Store in span-2/ or beside the spans is not data."""
    for n in (1, 2):
        _write(tmp_path / f"span-{n}")
        (tmp_path / f"span-{n}" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1\0\xff")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1\0\xff")
    (tmp_path / "._data.csv").write_bytes(b"\0\5\x16\7")  # a hidden CSV name beside the spans: not a loose CSV
    (tmp_path / "span-3").mkdir()
    (tmp_path / "span-3" / "._data.csv").write_bytes(b"\0\5\x16\7")
    with pytest.raises(ConfigError, match="span-3 is empty"):  # a span holding only hidden files holds no data
        spans.choose_spans(str(tmp_path), None)
    assert spans.choose_spans(str(tmp_path), 2) == (2, 1)


def test_zero_padded_span_folders_are_named(tmp_path):
    _write(tmp_path / "span-01")
    with pytest.raises(ConfigError, match=r"span-01: write span numbers without leading zeros \(span-1\)"):
        spans.choose_spans(str(tmp_path), None)


def test_span_numbers_past_32_bits_are_refused_before_a_run(tmp_path):
    """TFX keeps a span in an int32: span-2147483648 passed here and failed every run (and every trigger tick)
    with `Value out of range`, exit 1."""
    _write(tmp_path / "span-1")
    _write(tmp_path / "span-2147483648")
    with pytest.raises(ConfigError, match=r"span-2147483648: span numbers go up to 2147483647"):
        spans.choose_spans(str(tmp_path), None)


def test_a_span_folder_numbered_in_other_digits_is_not_a_span(tmp_path):
    """`span-\u0661` (an Arabic-Indic 1) was read as span 1 and refused as "leading zeros"."""
    _write(tmp_path / "span-1")
    _write(tmp_path / "span-\u0661")
    assert spans.list_spans(str(tmp_path)) == [1]


def test_input_fingerprint_is_the_one_example_gen_records_and_moves_with_the_files(tmp_path):
    """The trigger compares it with the Examples' input_fingerprint (pipeline/components/batched_csv_example_gen.py):
    the same files, the same hash; a file added to the span changes it, a hidden one does not."""
    from pipeline.components.csv_rows import data_files
    from pipeline.fingerprints import split_fingerprint

    _write(tmp_path / "span-1")
    before = spans.input_fingerprint(str(tmp_path), 1)
    assert before == split_fingerprint("single_split", data_files(str(tmp_path / "span-1" / "*")))
    (tmp_path / "span-1" / ".DS_Store").write_bytes(b"\0")
    assert spans.input_fingerprint(str(tmp_path), 1) == before
    (tmp_path / "span-1" / "more.csv").write_text("a,b\n3,4\n")
    assert spans.input_fingerprint(str(tmp_path), 1) != before


def test_split_refuses_bad_timestamps_and_a_file_as_out(tmp_path, capsys):
    source = tmp_path / "source"
    source.mkdir()
    (source / "data.csv").write_text("trip_start_timestamp,fare\n1400000000,5\nyesterday,6\n")
    assert spans.main(["split", "--data", str(source), "--out", str(tmp_path / "spans")]) == 2
    assert capsys.readouterr().err == (f"error: {source / 'data.csv'} line 3: trip_start_timestamp 'yesterday' "
                                       "is not seconds since 1970 (an integer)\n")
    (source / "data.csv").write_text("trip_start_timestamp,fare\n1400000000,5\n")
    (tmp_path / "a-file").write_text("kept")
    assert spans.main(["split", "--data", str(source), "--out", str(tmp_path / "a-file")]) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "a-file").read_text() == "kept"
    assert not (tmp_path / "spans").exists()
    # A folder with a CSV file (no run reads spans beside it) or a file named like a span is left as it was.
    for name in ("data.csv", "span-1"):
        taken = tmp_path / f"taken-{name}"
        taken.mkdir()
        (taken / name).write_text("kept")
        assert spans.main(["split", "--data", str(source), "--out", str(taken)]) == 2
        assert capsys.readouterr().err == (f"error: --out {taken} is not empty (it holds {name}); choose an empty "
                                           "or new folder for the span-<N>/ folders\n")
        assert [p.name for p in taken.iterdir()] == [name]


def test_split_by_year_orders_spans_in_time(tmp_path):
    assert spans.main(["split", "--out", str(tmp_path / "spans")]) == 0
    found = spans.list_spans(str(tmp_path / "spans"))
    assert found == [1, 2, 3, 4]
    years = []
    total = 0
    for n in found:
        with open(tmp_path / "spans" / f"span-{n}" / "data.csv") as handle:
            rows = list(csv.DictReader(handle))
        total += len(rows)
        years.append({int(r["trip_start_timestamp"]) // (365 * 86400) for r in rows})
    assert total == 15002
    assert max(years[0]) <= min(years[-1])
    # A second split into the same folder refuses rather than mixing spans.
    assert spans.main(["split", "--out", str(tmp_path / "spans")]) == 2


def test_schema_copy_is_addressed_by_content(tmp_path):
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = tmp_path / "schema.pbtxt"
    schema.write_text('feature { name: "a" type: INT }\n')
    first = configs.content_addressed_schemas(configs.parse_schema_text(schema), str(tmp_path / "out"))[0]
    assert configs.content_addressed_schemas(configs.parse_schema_text(schema), str(tmp_path / "out"))[0] == first
    schema.write_text('feature { name: "a" type: FLOAT }\n')
    second = configs.content_addressed_schemas(configs.parse_schema_text(schema), str(tmp_path / "out"))[0]
    assert second != first and configs.parse_schema_text(second).feature[0].type == schema_pb2.FLOAT


def test_schema_draft_names_added_dropped_and_retyped_features():
    from tensorflow_metadata.proto.v0 import schema_pb2

    from pipeline.schema_draft import differences

    curated, draft = schema_pb2.Schema(), schema_pb2.Schema()
    curated.feature.add(name="fare", type=schema_pb2.FLOAT)
    curated.feature.add(name="gone", type=schema_pb2.INT)
    draft.feature.add(name="fare", type=schema_pb2.BYTES)
    draft.feature.add(name="new", type=schema_pb2.INT)
    assert differences(curated, draft) == [
        "  + new: in the data, not in the curated schema",
        "  - gone: in the curated schema, not in the data",
        "  ~ fare: curated type FLOAT, data type BYTES",
    ]


def test_csv_files_next_to_span_folders_and_a_spans_folder_as_flat_data_are_named(tmp_path, capsys):
    from pipeline import data

    for n in (1, 2):
        _write(tmp_path / "spans" / f"span-{n}")
    with pytest.raises(ConfigError, match=r"pass one of them \(e.g. .*span-2\), or run the pipeline with --data"):
        data.check_csv_folder(str(tmp_path / "spans"))  # what schema_draft and split take: one table
    (tmp_path / "spans" / "data.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match=r"holds span-<N>/ folders and CSV files \(data.csv\), which no run would read"):
        spans.choose_spans(str(tmp_path / "spans"), None)
    (tmp_path / "spans" / "data.csv").unlink()
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "data.csv").write_text("trip_start_timestamp,fare\n1400000000,5\n")
    assert spans.main(["split", "--data", str(tmp_path / "flat"), "--out", str(tmp_path / "flat")]) == 2
    assert "is the source folder" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "flat").iterdir()] == ["data.csv"]


def test_schema_draft_refuses_an_unwritable_out_before_the_statistics_pass(tmp_path, capsys):
    from pipeline import schema_draft

    (tmp_path / "a-file").write_text("kept")
    for out, fragment in ((tmp_path / "nodir" / "draft.pbtxt", "does not exist"),
                          (tmp_path / "a-file" / "draft.pbtxt", "does not exist"),
                          (tmp_path, "is a folder")):
        assert schema_draft.main(["--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --out {out}") and fragment in err[0], err


def test_make_schema_prints_its_result_and_no_library_chatter(tmp_path):
    """`make schema` in a fresh process: TFDV, Beam and TensorFlow warnings stay off the terminal."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    folder = tmp_path / "data"
    folder.mkdir()
    rows = ["fare,payment_type,tips"] + [f"{i % 40 + 0.5},{'Cash' if i % 3 else 'Credit Card'},{i % 5}" for i in range(200)]
    (folder / "trips.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "draft.pbtxt"
    done = subprocess.run([sys.executable, "-m", "pipeline.schema_draft", "--data", str(folder), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == ""
    assert f"draft schema written to {out}" in done.stdout
    assert "in the curated schema, not in the data" in done.stdout  # the curated schema has more features
    assert 'name: "payment_type"' in out.read_text()


def _small_taxi_folder(folder: Path, name: str = "trips.csv") -> Path:
    folder.mkdir(parents=True)
    rows = ["fare,payment_type,tips"] + [f"{i % 40 + 0.5},{'Cash' if i % 3 else 'Credit Card'},{i % 5}" for i in range(60)]
    (folder / name).write_text("\n".join(rows) + "\n")
    return folder


def test_schema_draft_refuses_to_overwrite_the_curated_schema(tmp_path, monkeypatch, capsys):
    """`make schema ARGS="--out schema/schema.pbtxt"` replaced the curated contract (comments and all) with
    the draft, then diffed the draft with itself: "no feature or type differences", exit 0."""
    from pipeline import configs, schema_draft

    curated = tmp_path / "schema" / "schema.pbtxt"
    curated.parent.mkdir()
    curated.write_text('# reviewed\nfeature { name: "fare" type: FLOAT }\n')
    monkeypatch.setattr(configs, "DEFAULT_SCHEMA", curated)
    folder = _small_taxi_folder(tmp_path / "data")
    for out in (curated, tmp_path / "schema" / "." / "schema.pbtxt"):
        assert schema_draft.main(["--data", str(folder), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "curated schema" in err[0], err
    assert curated.read_text() == '# reviewed\nfeature { name: "fare" type: FLOAT }\n'


def test_schema_draft_reads_upper_case_csv_names_as_the_pipeline_does(tmp_path, capsys):
    """check_csv_folder (and CsvExampleGen's `*`) take DATA.CSV; the statistics pass globbed `*.csv` and failed."""
    from pipeline import schema_draft

    folder = _small_taxi_folder(tmp_path / "data", "TRIPS.CSV")
    out = tmp_path / "draft.pbtxt"
    assert schema_draft.main(["--data", str(folder), "--out", str(out)]) == 0, capsys.readouterr().err
    assert 'name: "payment_type"' in out.read_text()


def test_schema_draft_leaves_hidden_files_out(tmp_path, capsys):
    """The pipeline leaves out .DS_Store and ._trips.csv; the statistics pass read `<folder>/*` and failed on them."""
    from pipeline import schema_draft

    folder = _small_taxi_folder(tmp_path / "data")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1\0" + bytes(range(256)))
    (folder / "._trips.csv").write_bytes(b"\0\5\x16\7\0\2\0\0Mac OS X        " + bytes(range(256)))
    out = tmp_path / "draft.pbtxt"
    assert schema_draft.main(["--data", str(folder), "--out", str(out)]) == 0, capsys.readouterr().err
    assert 'name: "payment_type"' in out.read_text()


def test_schema_draft_reads_a_file_with_a_byte_order_mark_as_the_pipeline_does(tmp_path, capsys):
    """Excel's "CSV UTF-8" starts with U+FEFF, which the pipeline reads past: make schema refused the file, since
    TFDV's CSV reader kept the mark in the first column's name. It reads the header as CsvExampleGen does now."""
    from pipeline import schema_draft

    folder = _small_taxi_folder(tmp_path / "data")
    trips = folder / "trips.csv"
    trips.write_bytes(b"\xef\xbb\xbf" + trips.read_bytes().replace(b"\n", b"\r\n"))
    out = tmp_path / "draft.pbtxt"
    assert schema_draft.main(["--data", str(folder), "--out", str(out)]) == 0, capsys.readouterr().err
    draft = out.read_text()
    assert 'name: "fare"' in draft and "\\357\\273\\277" not in draft and "\ufeff" not in draft


def test_schema_draft_and_split_read_gzipped_csv_files(tmp_path, capsys):
    """The pipeline reads `*.csv.gz`; make schema and `spans split` take the same folders."""
    import gzip

    from pipeline import schema_draft

    folder = _small_taxi_folder(tmp_path / "data")
    trips = folder / "trips.csv"
    (folder / "trips.csv.gz").write_bytes(gzip.compress(trips.read_bytes()))
    trips.unlink()
    out = tmp_path / "draft.pbtxt"
    assert schema_draft.main(["--data", str(folder), "--out", str(out)]) == 0, capsys.readouterr().err
    assert 'name: "payment_type"' in out.read_text()
    capsys.readouterr()

    source = tmp_path / "source"
    source.mkdir()
    (source / "trips.csv.gz").write_bytes(gzip.compress(b"trip_start_timestamp,fare\n1400000000,5\n1500000000,6\n"))
    assert spans.main(["split", "--data", str(source), "--out", str(tmp_path / "spans")]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out == "span-1: 2014, 1 rows\nspan-2: 2017, 1 rows\n"


def test_schema_draft_types_columns_as_the_pipeline_reads_them(tmp_path, monkeypatch, capsys):
    """pandas writes an int column with a missing cell as `8.0`: the pipeline reads a curated INT column of such
    whole floats as INT, but the draft said FLOAT and the diff reported 'curated type INT, data type FLOAT' for data
    the run takes. Likewise a curated FLOAT column written as whole numbers (`12`) stays FLOAT in the run."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    from pipeline import schema_draft

    curated = tmp_path / "schema.pbtxt"
    curated.write_text('feature { name: "hour" type: INT }\nfeature { name: "area" type: INT }\n'
                       'feature { name: "fare" type: FLOAT }\nfeature { name: "payment_type" type: BYTES }\n')
    monkeypatch.setattr(configs, "DEFAULT_SCHEMA", curated)
    folder = tmp_path / "data"
    folder.mkdir()
    rows = ["hour,area,fare,payment_type"] + [
        f"{i % 24}.0,{'' if i % 7 == 0 else f'{i % 77 + 1}.0'},{i % 40 + 3},{'Cash' if i % 3 else 'Credit Card'}"
        for i in range(60)]
    rows[5] = "4.0,2.5,12,Cash"  # a fraction: area is FLOAT data, which the gate refuses against the curated INT
    (folder / "trips.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "draft.pbtxt"
    assert schema_draft.main(["--data", str(folder), "--out", str(out)]) == 0, capsys.readouterr().err
    draft = text_format.Parse(out.read_text(), schema_pb2.Schema())
    types = {f.name: schema_pb2.FeatureType.Name(f.type) for f in draft.feature}
    assert types == {"hour": "INT", "area": "FLOAT", "fare": "FLOAT", "payment_type": "BYTES"}
    printed = capsys.readouterr().out
    assert "  ~ area: curated type INT, data type FLOAT" in printed
    assert "hour:" not in printed and "fare:" not in printed, printed


def test_schema_draft_names_values_outside_a_closed_curated_domain():
    """A payment type the curated schema's closed domain lacks stops a run; the diff said nothing about it."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    from pipeline.schema_draft import differences

    curated, draft = schema_pb2.Schema(), schema_pb2.Schema()
    curated.feature.add(name="payment_type", type=schema_pb2.BYTES, domain="payment_type")
    curated.string_domain.add(name="payment_type", value=["Cash", "Credit Card"])
    curated.feature.add(name="company", type=schema_pb2.BYTES)  # open: no domain, nothing to report
    draft.feature.add(name="payment_type", type=schema_pb2.BYTES, domain="payment_type")
    draft.string_domain.add(name="payment_type", value=["Bitcoin", "Cash"])
    draft.feature.add(name="company", type=schema_pb2.BYTES, domain="company")
    draft.string_domain.add(name="company", value=["Acme"])
    assert differences(curated, draft) == [
        "  ~ payment_type: values outside the curated domain: Bitcoin",
    ]


def test_schema_draft_keeps_an_existing_file_that_is_not_a_draft(tmp_path, capsys):
    """--out naming an existing file (notes, another schema) replaced it; only a draft may be rewritten."""
    from pipeline import schema_draft

    folder = _small_taxi_folder(tmp_path / "data")
    kept = tmp_path / "review-notes.pbtxt"
    kept.write_text('# my hand-edited schema\nfeature { name: "fare" type: FLOAT }\n')
    assert schema_draft.main(["--data", str(folder), "--out", str(kept)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a draft" in err[0], err
    assert kept.read_text().startswith("# my hand-edited schema")
    draft = tmp_path / "draft.pbtxt"
    for _ in range(2):  # a draft it wrote is rewritten
        assert schema_draft.main(["--data", str(folder), "--out", str(draft)]) == 0, capsys.readouterr().err


def test_schema_draft_empty_data_and_an_unreadable_curated_schema_are_one_line_errors(tmp_path, monkeypatch, capsys):
    """--data "" silently drafted the bundled sample; a broken curated schema was reported as a failed
    statistics pass over the data, after the draft had been written."""
    from pipeline import configs, schema_draft

    folder = _small_taxi_folder(tmp_path / "data")
    out = tmp_path / "draft.pbtxt"
    assert schema_draft.main(["--data", "", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data" in err[0], err
    broken = tmp_path / "schema.pbtxt"
    broken.write_text("feature { nme: 1 }\n")
    monkeypatch.setattr(configs, "DEFAULT_SCHEMA", broken)
    assert schema_draft.main(["--data", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"curated schema {broken}" in err[0] and "statistics pass" not in err[0], err
    assert not out.exists()


def test_schema_draft_says_a_column_without_values_has_no_values_not_a_new_type():
    """A span where pickup_census_tract is empty in every row (the curated schema allows it) was reported as
    "curated type INT, data type BYTES": TFDV types a column with no values as BYTES."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    from pipeline.schema_draft import differences

    curated, draft = schema_pb2.Schema(), schema_pb2.Schema()
    curated.feature.add(name="pickup_census_tract", type=schema_pb2.INT)
    draft.feature.add(name="pickup_census_tract", type=schema_pb2.BYTES)
    assert differences(curated, draft, empty={"pickup_census_tract"}) == [
        "  ~ pickup_census_tract: no values in the data (curated type INT)",
    ]


def test_schema_draft_names_values_outside_a_curated_numeric_range():
    """pickup_community_area 99 (curated int_domain 1-77) or a negative fare stops a run; the diff said nothing."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    from pipeline.schema_draft import differences

    curated, draft = schema_pb2.Schema(), schema_pb2.Schema()
    area = curated.feature.add(name="pickup_community_area", type=schema_pb2.INT)
    area.int_domain.min, area.int_domain.max = 1, 77
    fare = curated.feature.add(name="fare", type=schema_pb2.FLOAT)
    fare.float_domain.min = 0
    curated.feature.add(name="trip_miles", type=schema_pb2.FLOAT)  # no range: nothing to report
    for f in curated.feature:
        draft.feature.add(name=f.name, type=f.type)
    ranges = {"pickup_community_area": (1.0, 99.0), "fare": (-3.5, 700.0), "trip_miles": (-1.0, 1e6)}
    assert differences(curated, draft, ranges=ranges) == [
        "  ~ fare: data range -3.5 to 700, curated domain 0 to (none)",
        "  ~ pickup_community_area: data range 1 to 99, curated domain 1 to 77",
    ]


def test_schema_draft_run_names_a_column_every_row_leaves_empty(tmp_path, capsys):
    """fare empty in every row: the draft said 'no differences from the curated schema' (it counted rows that
    have the column, which CsvExampleGen writes as an empty FLOAT list, not values), while a run stops at the gate."""
    from pipeline import schema_draft

    folder = tmp_path / "data"
    folder.mkdir()
    rows = ["fare,payment_type,tips"] + [f",{'Cash' if i % 3 else 'Credit Card'},{i % 5}" for i in range(60)]
    (folder / "trips.csv").write_text("\n".join(rows) + "\n")
    assert schema_draft.main(["--data", str(folder), "--out", str(tmp_path / "draft.pbtxt")]) == 0
    out = capsys.readouterr().out
    assert "  ~ fare: no values in the data (curated type FLOAT)" in out, out
