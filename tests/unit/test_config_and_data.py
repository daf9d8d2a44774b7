from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models import features
from pipeline import configs, data
from pipeline.configs import ConfigError
from tests.conftest import ROOT


def test_label_source_is_never_a_serving_input():
    assert features.TIPS_KEY not in features.SERVING_FEATURES
    assert features.LABEL_KEY not in features.SERVING_FEATURES
    for name in features.SERVING_FEATURES:
        assert features.column_dtype(name) in ("int", "float", "string")


def test_missing_value_representation():
    assert features.is_missing(None) and features.is_missing(float("nan")) and features.is_missing("")
    assert not features.is_missing(0) and not features.is_missing(0.0) and not features.is_missing("Cash")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"pipeline_name": "Bad_Name"}, "pipeline name"),
        ({"train_steps": 0}, "train steps"),
        ({"auc_threshold": 0.4}, "AUC threshold"),
        ({"model_name": "a/b"}, "model name"),
        # `$` also matches before a final newline: "taxi\n" would become serving_model/taxi<newline>/
        ({"model_name": "taxi\n"}, "model name"),
        ({"pipeline_name": "taxi-pipeline\n"}, "pipeline name"),
        # models.config (serving/config.py) refuses names over 128 characters: the first push would write a
        # file that every later label change, for every model in the output, then fails to read
        ({"model_name": "a" * 129}, "model name"),
    ],
)
def test_config_rejects_bad_values(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        configs.local_config(str(tmp_path / "data"), str(tmp_path / "out"), **overrides)


def test_default_threshold_never_blesses_the_base_rate():
    # A model answering the base rate has AUC 0.5.
    assert configs.PipelineConfig.__dataclass_fields__["auc_threshold"].default > 0.5


def test_bundled_data_is_found_inside_the_tfx_install():
    folder = data.bundled_taxi_data()
    assert "site-packages" in folder and [p.name for p in data.check_csv_folder(folder)] == ["data.csv"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "nope", "does not exist"),
        (lambda p: p, "is empty"),
        (lambda p: (p / "x.txt").write_text("a") and p, "not .csv"),
        (lambda p: (p / "x.csv").write_text("") is not None and p, "is empty"),
        # hidden files are left out, as CsvExampleGen leaves them out: a folder of nothing else holds no data
        (lambda p: (p / ".DS_Store").write_bytes(b"\0") is not None and p, "is empty"),
        (lambda p: (p / "old").mkdir() or p, "holds folders \\(old\\)"),
    ],
)
def test_data_folder_problems_are_named(tmp_path, make, message):
    with pytest.raises(ConfigError, match=message):
        data.check_csv_folder(str(make(tmp_path)))


HEADER = b"fare,tips,payment_type\n"


@pytest.mark.parametrize(
    "files, message",
    [
        ({"a.csv": HEADER, "b.csv": HEADER + b"\n\n"}, "no data rows"),
        ({"a.csv": HEADER + b"1,0,Cash\n", "b.csv": b"tips,fare,payment_type\n0,1,Cash\n"},
         "a.csv and b.csv .* different header rows"),
        # the usual cause (exports of one table from two tools): the message says it is only the order
        ({"a.csv": HEADER + b"1,0,Cash\n", "b.csv": b"tips,fare,payment_type\n0,1,Cash\n"},
         "b.csv has the columns of a.csv in another order \\(tips,fare,payment_type\\)"),
        ({"a.csv": HEADER + b"1,0,Cash\n\n2,0\n"}, "a.csv line 4 has 2 values where the header has 3 columns"),
        ({"a.csv": HEADER + b'1,0,"Cash\n'}, "a.csv line 2: a quoted value is never closed"),
        ({"a.csv": HEADER + b'1,0,Cash\n2,0,"Cash\n' + b"3,0,Cash\n" * 50000},
         "a.csv line 3: a quoted value is never closed \\(field larger than field limit"),
        ({"a.csv": HEADER + b"1,0,Cash\n" * 5000 + "1,0,Café\n".encode("latin-1")}, "a.csv line 5002 is not UTF-8 text"),
        ({"a.csv": b"fare,tips,fare\n1,0,2\n"}, "names the column fare twice"),
        ({"a.csv": b'fa"re,tips,payment_type\n1,0,Cash\n'}, "a quote inside the column name 'fa\"re'"),
        ({"a.csv": b"fare, tips,payment_type\n1,0,Cash\n"}, "spaces around the column name ' tips'"),
        ({"a.csv": b"fare,,payment_type\n1,0,Cash\n"}, "an empty column name"),
        # a blank line above the header: 'an empty column name' sent the user looking in the header row
        ({"a.csv": b"\r\n" + HEADER + b"1,0,Cash\n"}, "a.csv starts with a blank line"),
        # a split CSV whose later part lost its header: its first data row (with an empty cell) is not a header
        ({"a.csv": HEADER + b"1,0,Cash\n", "b.csv": b"2.5,,Cash\n3,0,Cash\n"},
         "b.csv has no header row: its first line is data \\(2.5,,Cash\\)"),
        ({"a.csv": b"12.25,3.0,Credit Card\n7,0,Cash\n"}, "a.csv has no header row"),
        # CsvExampleGen opens a quoted value at any quote and reads on into the next line (Python's csv does not)
        ({"a.csv": HEADER + b'1,0,Cash\n2,0,Ca"sh\n3,0,Cash\n'}, "a.csv line 3: a quote inside an unquoted value"),
        ({"a.csv": HEADER.replace(b"\n", b"\r") + b"1,0,Cash\r"}, "a.csv ends its lines with CR alone"),
        # a CR alone inside an LF file (parts with other line endings joined, a pasted value): Python splits the line
        # there, CsvExampleGen splits at LF only and failed mid-run ('new-line character seen in unquoted field')
        ({"a.csv": HEADER + b"1,0,Cash\r2,0,Cash\n3,0,Cash\n"}, "a.csv line 2 holds a carriage return"),
        ({"a.csv": HEADER + b"1,0,Ca\rsh\n"}, "a.csv line 2 holds a carriage return"),
        # valid CSV, but over the 128 KiB a cell may hold in Python's csv, which CsvExampleGen parses with
        ({"a.csv": HEADER + b"1,0,Cash\n2,0," + b"x" * 200_000 + b"\n3,0,Cash\n"},
         "a.csv line 3 holds a value longer than 131072 characters"),
        # two exports joined with `cat`: every column turned STRING and the gate listed 33 type anomalies, not the line
        ({"a.csv": HEADER + b"1,0,Cash\n" + HEADER + b"2,0,Cash\n"}, "a.csv line 3 repeats the header row"),
        # a NUL byte (a file cut short on a full disk, a binary export): Python's csv, as CsvExampleGen's, stops there
        ({"a.csv": HEADER + b"1,0,Cash\n2,0,Ca\0sh\n"}, "a.csv line 3 is not valid CSV: line contains NUL"),
        # Excel's CSV in a comma-decimal locale, or a TSV: one column to CsvExampleGen, and the gate listed
        # every schema column as missing (36 lines) after the data was read
        ({"a.csv": b"fare;tips;payment_type\n1,5;0;Cash\n"}, "a.csv separates its columns with ';'"),
        ({"a.csv": b"fare\ttips\tpayment_type\n1.5\t0\tCash\n"}, "a.csv separates its columns with '\\\\t'"),
    ],
)
def test_csv_files_that_cannot_be_read_as_one_table_are_named(tmp_path, files, message):
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        data.check_csv_folder(str(tmp_path))


TYPES = {"fare": "FLOAT", "tips": "FLOAT", "trip_start_hour": "INT", "payment_type": "BYTES"}
TYPED_HEADER = b"fare,tips,trip_start_hour,payment_type\n"


def test_the_cells_the_gate_refuses_without_saying_where_are_found_by_file_and_line(tmp_path):
    """R's `NA`, a thousands separator, a fraction in an INT column, an int beyond 64 bits and a spreadsheet's empty
    rows: the gate said only that a column held a STRING (in both splits) or that every column had "fewer values
    than expected", and an engineer searched the files by hand."""
    (tmp_path / "a.csv").write_bytes(TYPED_HEADER + b'12,0,8.0,Cash\n1.4e3, 2 ,,\nnan,0,-3,Cash\n"1,234.50",0,3,Cash\n')
    (tmp_path / "b.csv").write_bytes(TYPED_HEADER + b"1,0,NA,Cash\n1,0,2.5,Cash\n1,0,9223372036854775808, Cash \n"
                                     b",,,\n,,,\n")
    assert data.cells_off_their_type(str(tmp_path), TYPES) == [
        "  fare: '1,234.50' in a.csv line 5 is not a number (the schema's FLOAT; 1 such cell; a missing value is an "
        "empty cell)",
        # TFDV's "values missing from the schema:  Cash  (~66%)" read as if the schema's own Cash were refused
        "  payment_type: ' Cash ' in b.csv line 4 has spaces around it (the schema's BYTES; 1 such cell; "
        "CsvExampleGen keeps them in the value)",
        "  trip_start_hour: 'NA' in b.csv line 2 is not a whole number within 64 bits (the schema's INT; 3 such cells; "
        "a missing value is an empty cell)",
        "  2 rows with no value in any column (b.csv line 5, b.csv line 6): a spreadsheet leaves such rows below its "
        "data; delete them"]
    (tmp_path / "b.csv").unlink()
    (tmp_path / "a.csv").write_bytes(TYPED_HEADER + b"12,0,8.0,Cash\n1.4e3, 2 ,,\nnan,0,-3,Cash\n")
    assert data.cells_off_their_type(str(tmp_path), TYPES) == []  # as CsvExampleGen reads the schema's types


def test_one_header_for_all_files_with_crlf_and_a_header_only_file_is_fine(tmp_path):
    (tmp_path / "a.csv").write_bytes(HEADER)
    (tmp_path / "b.csv").write_bytes(HEADER.replace(b"\n", b"\r\n") + b'1,0,Cash\r\n\r\n2,0,"Credit\nCard, quoted"\r\n')
    # Excel's "CSV UTF-8" starts with a byte-order mark: the same header (`taxi predict` reads it so too)
    (tmp_path / "c.csv").write_bytes(b"\xef\xbb\xbf" + HEADER.replace(b"\n", b"\r\n") + b"3,0,Cash\r\n")
    # every field quoted, header included (R's write.csv, pandas' QUOTE_ALL, database exports): the same header
    (tmp_path / "d.csv").write_bytes(b'"fare","tips","payment_type"\n"4","0","Cash"\n')
    assert [p.name for p in data.check_csv_folder(str(tmp_path))] == ["a.csv", "b.csv", "c.csv", "d.csv"]


def _hidden_junk(folder: Path) -> None:
    """What a Mac, LibreOffice, vim, Windows and Excel leave beside a CSV: none of it readable as the table."""
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1\0" + bytes(range(256)))
    (folder / "._a.csv").write_bytes(b"\0\5\x16\7\0\2\0\0Mac OS X        " + bytes(range(256)))  # AppleDouble
    (folder / ".~lock.a.csv#").write_text("Jane Doe,jane,host,01.01.2026 10:00,file:///home/jane;\n")
    (folder / ".a.csv.swp").write_bytes(b"b0VIM 9.0\0" + bytes(range(256)))
    (folder / ".ipynb_checkpoints").mkdir()  # a hidden folder (Jupyter's), with a CSV of another table inside
    (folder / ".ipynb_checkpoints" / "a-checkpoint.csv").write_text("x,y\n1,2\n")
    # what Windows and Office leave: Explorer's thumbnail cache and folder settings, Excel's owner file of a.csv
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256)))
    (folder / "desktop.ini").write_text("[.ShellClassInfo]\nIconResource=C:\\x.ico,0\n")
    (folder / "~$a.csv").write_bytes(b"\x08Jane Doe" + bytes(150))


def test_hidden_files_in_a_data_folder_are_left_out(tmp_path):
    """macOS's .DS_Store and ._ files, LibreOffice's lock and vim's swap file were refused ('not .csv'): users move
    them out by hand and the Finder writes them again. They are not data; every tool that reads a folder skips them."""
    (tmp_path / "a.csv").write_bytes(HEADER + b"1,0,Cash\n")
    _hidden_junk(tmp_path)
    assert [p.name for p in data.check_csv_folder(str(tmp_path))] == ["a.csv"]
    # a visible file that is not CSV is still refused, by name: skipping data.tsv would drop data without a word
    (tmp_path / "b.tsv").write_bytes(HEADER.replace(b",", b"\t") + b"2\t0\tCash\n")
    with pytest.raises(ConfigError, match=r"holds files that are not \.csv or \.csv\.gz \(b\.tsv\)"):
        data.check_csv_folder(str(tmp_path))


def test_hidden_files_do_not_change_the_up_to_date_fingerprint(tmp_path):
    """A .DS_Store written by the Finder, or a lock file from opening the CSV, made the next run retrain."""
    from pipeline import up_to_date

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.csv").write_bytes(HEADER + b"1,0,Cash\n")
    config = configs.local_config(str(folder), str(tmp_path / "out"))
    before = up_to_date.fingerprint(config)
    _hidden_junk(folder)
    (folder / ".DS_Store").write_bytes(b"changed")
    assert up_to_date.fingerprint(config) == before
    (folder / "a.csv").write_bytes(HEADER + b"2,0,Cash\n")  # the data itself changed: a new fingerprint
    assert up_to_date.fingerprint(config) != before


def test_gzipped_csv_files_are_read_and_checked_as_plain_ones(tmp_path):
    """Exports are often gzipped (`*.csv.gz`, which Beam reads by its name): they were refused as 'not .csv'."""
    (tmp_path / "a.csv").write_bytes(HEADER + b"1,0,Cash\n")
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress(HEADER + b"2,0,Cash\n"))
    (tmp_path / "C.CSV.GZ").write_bytes(gzip.compress(b"\xef\xbb\xbf" + HEADER.replace(b"\n", b"\r\n") + b"3,0,Cash\r\n"))
    assert [p.name for p in data.check_csv_folder(str(tmp_path))] == ["C.CSV.GZ", "a.csv", "b.csv.gz"]
    (tmp_path / "d.csv.bz2").write_bytes(b"BZh9")  # other compressions are not taken
    with pytest.raises(ConfigError, match=r"holds files that are not \.csv or \.csv\.gz \(d\.csv\.bz2\)"):
        data.check_csv_folder(str(tmp_path))


@pytest.mark.parametrize(
    "content, message",
    [  # every check a plain file gets, on the decompressed text, naming the file and line
        (HEADER + b"1,0,Cash\n\n2,0\n", "b.csv.gz line 4 has 2 values where the header has 3 columns"),
        (HEADER + b"1,0,Cash\n" * 5000 + "1,0,Café\n".encode("latin-1"), "b.csv.gz line 5002 is not UTF-8 text"),
        (b"tips,fare,payment_type\n0,1,Cash\n", "a.csv and b.csv.gz in .* have different header rows"),
        (HEADER + b'1,0,"Cash\n', "b.csv.gz line 2: a quoted value is never closed"),
        (HEADER + b"1,0,Cash\r2,0,Cash\n", "b.csv.gz line 2 holds a carriage return"),
        (HEADER + b"1,0,Cash\n" + HEADER, "b.csv.gz line 3 repeats the header row"),
        (b"", "b.csv.gz is empty"),
    ],
)
def test_a_gzipped_csv_gets_every_check_a_plain_one_gets(tmp_path, content, message):
    (tmp_path / "a.csv").write_bytes(HEADER + b"1,0,Cash\n")
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress(content))
    with pytest.raises(ConfigError, match=message):
        data.check_csv_folder(str(tmp_path))


ROWS = HEADER + b"".join(b"%d,0,Cash\n" % n for n in range(20000))


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda whole: whole[: len(whole) // 2], "Compressed file ended before the end-of-stream marker was reached"),
        (lambda whole: whole[:100] + bytes(64) + whole[164:], "Error -3 while decompressing data"),
        (lambda whole: ROWS, "Not a gzipped file"),  # plain text named .gz
    ],
    ids=["cut-short", "damaged", "not-gzip"],
)
def test_an_unreadable_gzip_file_is_one_line_exit_2(tmp_path, damage, reason):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "trips.csv.gz").write_bytes(damage(gzip.compress(ROWS)))
    with pytest.raises(ConfigError, match=f"data file {folder / 'trips.csv.gz'} is not a readable gzip file .*{reason}"):
        data.check_csv_folder(str(folder))
    done = _local_runner("--data", str(folder), "--output", str(tmp_path / "out"))
    assert done.returncode == 2 and "trips.csv.gz is not a readable gzip file" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def _local_runner(*args: str, one_line: bool = True, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """local_runner.py as a user runs it; by default asserts that stderr says one line."""
    done = subprocess.run([sys.executable, str(ROOT / "local_runner.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)
    assert not one_line or len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "/nonexistent/folder"], "does not exist"),
        (["--train-steps", "0"], "train steps"),
        (["--train-steps", "100000000000"], "train steps must be within [1, 2147483647]"),
        (["--batch-size", "100000000"], "batch size must be within [1, 65536]"),
        (["--auc-threshold", "0.2"], "AUC threshold"),
        (["--pipeline-name", "UPPER"], "pipeline name"),
        (["--schema", "/nope.pbtxt"], "schema file"),
        (["--schema", str(ROOT)], "is a folder"),
        (["--schema", str(ROOT / "README.md")], "not a TFMD Schema in text format"),
        (["--data", ""], "--data is empty"),
        (["--output", ""], "--output is empty"),
        (["--beam-args=--direct_num_workers=abc"], "invalid int value: 'abc'"),
        (["--beam-args=--direct_nun_workers=2"], "Beam has no option --direct_nun_workers"),
        (["--beam-args=--runner=Nope"], "Unexpected pipeline runner: Nope"),
        (["--beam-args=garbage"], "'garbage' is not an option or an option's value"),
        (["--beam-args=--direct_num_workers 2 3"], "'3' is not an option"),
        (["--beam-args=--save_main_session stray"], "'stray' is not an option"),  # a flag takes no value
        (["--beam-args=--runner=DataflowRunner"], "Dataflow runs through vertex_runner.py"),
        # Beam parses it, then its DirectRunner fails in the first component: "list index out of range", exit 1
        (["--beam-args=--direct_num_workers=-1"], "--direct_num_workers=-1: Beam's DirectRunner needs 0"),
        (["--serving-url", "localhost:8501"], "--serving-url 'localhost:8501' is not an http:// or https:// URL"),
        (["--label-wait", "nan"], "--label-wait nan must be a number of seconds within [0, 3600]"),
    ],
)
def test_local_runner_bad_input_is_one_line_exit_2(tmp_path, args, message):
    done = _local_runner("--output", str(tmp_path / "out"), *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [
    ("--direct_num_workers", "2", "--direct_running_mode=multi_threading"),  # a value as its own token
    ("--save_main_session", "--direct_num_workers=2"),  # a flag, then an option
    ("--runner=DirectRunner", "--direct_runner_bundle_repeat", "-1"),  # a value may start with a dash
    ("--runner=SwitchingDirectRunner",),
])
def test_beam_args_a_local_run_can_use_pass_the_check(args):
    configs.check_beam_args(args)


def test_an_empty_schema_file_is_one_line_exit_2(tmp_path):
    """An empty file parses as a Schema: the gate would report every column as new, after the data was read."""
    empty = tmp_path / "schema.pbtxt"
    empty.write_text("")
    done = _local_runner("--output", str(tmp_path / "out"), "--schema", str(empty))
    assert done.returncode == 2 and f"schema file {empty} declares no features" in done.stderr
    assert not (tmp_path / "out").exists()


def test_unusable_output_folder_is_one_line_exit_2(tmp_path):
    occupied = tmp_path / "a-file"
    occupied.write_text("not a folder")
    done = _local_runner("--output", str(occupied))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: cannot write to the output folder {occupied}: Not a directory")
    assert occupied.read_text() == "not a folder"


def test_an_output_whose_logs_folder_is_a_file_is_one_line_exit_2(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "logs").write_text("not a folder")
    done = _local_runner("--output", str(output))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: cannot write the run's log in {output / 'logs'}: File exists")
    assert (output / "logs").read_text() == "not a folder"


def test_local_runner_rejects_unknown_flag(tmp_path):
    done = _local_runner("--frobnicate")  # argparse printed its 14-line usage block first
    assert done.returncode == 2
    assert done.stderr == "error: unrecognized arguments: --frobnicate (--help lists the flags)\n"
    done = _local_runner("--train-steps", "many")
    assert done.stderr == "error: argument --train-steps: invalid int value: 'many' (--help lists the flags)\n"


def test_damaged_metadata_store_is_one_line_exit_2_and_kept(tmp_path):
    store = tmp_path / "out" / "metadata.sqlite"
    store.parent.mkdir()
    store.write_bytes(b"not sqlite at all" * 10)
    done = _local_runner("--output", str(store.parent))
    assert done.returncode == 2
    assert "is not a SQLite database" in done.stderr
    assert store.read_bytes() == b"not sqlite at all" * 10
    assert sorted(p.name for p in store.parent.iterdir()) == ["metadata.sqlite"]


def _sqlite_cut_short(path):
    """A SQLite file whose header is good and whose second half is gone (a full disk, a cut copy)."""
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x TEXT)")
        db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    return path.read_bytes()


def test_metadata_store_cut_short_is_one_line_exit_2_and_kept(tmp_path):
    store = tmp_path / "out" / "metadata.sqlite"
    store.parent.mkdir()
    damaged = _sqlite_cut_short(store)
    done = _local_runner("--output", str(store.parent), "--rerun")
    assert done.returncode == 2
    assert f"metadata store {store} is damaged" in done.stderr
    assert store.read_bytes() == damaged


def test_readers_of_an_empty_or_cut_short_store_get_one_line(tmp_path):
    from pipeline.mlmd_store import StoreError, open_readonly

    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with pytest.raises(StoreError, match="is empty: no run recorded yet"):
        open_readonly(str(empty))
    _sqlite_cut_short(tmp_path / "cut.sqlite")
    with pytest.raises(StoreError, match="is damaged"):
        open_readonly(str(tmp_path / "cut.sqlite"))


def test_a_store_another_process_keeps_locked_is_one_line_at_once(tmp_path, monkeypatch):
    """An open `BEGIN EXCLUSIVE` elsewhere (a sqlite3 shell): MLMD alone retried for ~50 s, then said
    "Concurrent writes aborted"; a run refused on a busy store leaves it as it was."""
    import sqlite3
    import time

    from pipeline import mlmd_store

    store = tmp_path / "metadata.sqlite"
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE t (x TEXT)")
    monkeypatch.setattr(mlmd_store, "LOCK_WAIT_S", 0.2)
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(mlmd_store.StoreLocked, match="is locked: another process has held a write"):
            mlmd_store.open_readonly(str(store))
        with pytest.raises(configs.StoreBusy, match=r"is locked: .* try again when it ends$"):
            configs.check_metadata_file(str(store))  # exit 3 from local_runner: not now
        assert time.monotonic() - started < 5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert mlmd_store.sqlite_problem(str(store)) is None

    # A pending write (a sqlite3 shell inside BEGIN; UPDATE ...): readers go on, a run's first write would fail
    # after ~18 s of MLMD's retries, naming a component of the run before.
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES ('pending')")
    try:
        assert mlmd_store.sqlite_problem(str(store)) is None
        configs.check_metadata_file(str(store))  # readers and a trigger's dry run pass: they write nothing
        with pytest.raises(configs.StoreBusy, match=r"is locked: .* try again when it ends$"):
            configs.check_store_writable(str(store))  # asked only by a run that goes to TFX
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    configs.check_store_writable(str(store))


def test_second_run_on_a_busy_output_folder_is_one_line_exit_3(tmp_path):
    from pipeline import run_lock

    output = tmp_path / "out"
    with run_lock.held(output / "run.lock"):
        done = _local_runner("--output", str(output))
    assert done.returncode == 3
    assert done.stderr.startswith(f"error: another pipeline run is using {output} (pid ")
    assert not (output / "metadata.sqlite").exists() and not (output / "logs").exists()


def test_output_inside_the_data_folder_is_refused_before_anything_is_written(tmp_path):
    import shutil
    from pathlib import Path

    from pipeline import data as data_module

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(Path(data_module.bundled_taxi_data()) / "data.csv", data / "data.csv")
    for output in (data, data / "out"):
        done = _local_runner("--data", str(data), "--output", str(output))
        assert done.returncode == 2
        assert f"--output {output} is the data folder or inside it" in done.stderr
    assert [p.name for p in data.iterdir()] == ["data.csv"]  # the data folder stays readable by CsvExampleGen


def test_a_lock_that_cannot_be_created_is_its_own_error(tmp_path):
    from pipeline import run_lock

    (tmp_path / "a-file").write_text("")
    with pytest.raises(run_lock.LockUnavailable, match="cannot write .*a-file/run.lock"):
        with run_lock.held(tmp_path / "a-file" / "run.lock"):
            pass


# Ctrl-C while the up-to-date check hashes the data (seconds for a large folder), before TFX starts.
INTERRUPTED_BEFORE_TFX = """
import os, signal, sys, time
sys.path.insert(0, {root!r})
import local_runner
from pipeline import up_to_date

def interrupted(*args):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(10)

up_to_date.inputs_now = interrupted
sys.exit(local_runner.main(sys.argv[1:]))
"""


def test_ctrl_c_outside_the_pipeline_is_one_line_exit_1(tmp_path):
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_BEFORE_TFX.format(root=str(ROOT)),
                           "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == ["interrupted: completed components stay cached; run again to resume"]


@pytest.mark.parametrize("name, char", [("exports [2024]", "["), ("back\\slash", "\\"), ("any*", "*")])
def test_a_data_folder_whose_path_is_read_as_a_pattern_is_one_line_exit_2(tmp_path, name, char):
    """CsvExampleGen globs <data>/*: a '[' or '\\' in the folder's path matched nothing and the run failed inside
    CsvExampleGen (exit 1, 'Split pattern ... does not match any files'); a '*' read another folder's files too."""
    import shutil
    from pathlib import Path

    for folder in (tmp_path / name, tmp_path / "anything"):  # the second: what `any*` also matches
        folder.mkdir()
        shutil.copy(Path(data.bundled_taxi_data()) / "data.csv", folder / "data.csv")
    folder = tmp_path / name
    done = _local_runner("--data", str(folder), "--output", str(tmp_path / "out"))
    assert done.returncode == 2
    assert f"data folder {folder} has {char!r} in its path" in done.stderr
    assert not (tmp_path / "out").exists()


def test_an_output_path_read_as_a_pattern_is_one_line_exit_2(tmp_path):
    """Beam finds the files it wrote with a glob: under 'runs [1]' CsvExampleGen failed mid-run (exit 1,
    'src and dst files do not exist') and left a half-written output folder."""
    output = tmp_path / "runs [1]"
    done = _local_runner("--output", str(output))
    assert done.returncode == 2
    assert f"--output {output} has '[' in its path" in done.stderr
    assert not output.exists()


@pytest.mark.parametrize("uri, hint", [("gs://bucket/runs", "run on Vertex AI"), ("file://{tmp}/out", "without file://")])
def test_an_output_uri_is_one_line_exit_2_not_a_local_folder_named_after_it(tmp_path, uri, hint):
    """`--output gs://bucket/x` ran the whole pipeline into ./gs:/bucket/x and exited 0."""
    uri = uri.format(tmp=tmp_path)
    done = _local_runner("--output", uri, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: --output {uri}: a local run writes to a folder") and hint in done.stderr
    assert done.stderr.count("\n") == 1 and list(tmp_path.iterdir()) == []


def test_a_named_pipe_in_the_data_folder_is_refused_not_waited_on(tmp_path):
    """`mkfifo data/p.csv`: the check opened it and waited for a writer; the run never returned."""
    (tmp_path / "a.csv").write_bytes(HEADER + b"1,0,Cash\n")
    os.mkfifo(tmp_path / "p.csv")
    with pytest.raises(ConfigError, match=r"holds p\.csv, which is not a regular file \(a named pipe"):
        data.check_csv_folder(str(tmp_path))


def test_a_run_that_failed_before_recording_itself_does_not_name_the_last_runs_component():
    """A run whose first MLMD write failed said `failed in DataGate`: the failed component of the run before."""
    import datetime

    import local_runner

    started = datetime.datetime(2026, 11, 24, 21, 58, 0)
    assert not local_runner._started_since("2026-11-24T21:57:11.075392", started)  # the run before
    assert local_runner._started_since("2026-11-24T21:58:00.412000", started)
    assert not local_runner._started_since("not-a-time", started)


def test_a_relative_output_folder_is_the_same_run_as_its_absolute_path(tmp_path, monkeypatch):
    """`--output ../out` kept its schema copies' paths relative: a different config, so the 'nothing changed'
    check, the trigger's 'not retrying' and ImportSchemaGen's cache all took it for another run."""
    import local_runner

    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    folder = data.bundled_taxi_data()
    absolute = local_runner.build_config(
        local_runner.parse_args(["--output", str(tmp_path / "out"), "--data", folder]), write=False)
    relative = local_runner.build_config(local_runner.parse_args(["--output", "../out", "--data", folder]), write=False)
    assert relative == absolute and os.path.isabs(relative.schema_path)
