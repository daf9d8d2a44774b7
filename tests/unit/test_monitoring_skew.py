"""Request logs -> statistics and exact counts -> skew verdicts, on real taxi rows and the curated schema."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

from models.features import SERVING_FEATURES
from monitoring import distances, skew
from monitoring import report as report_files
from monitoring.lineage import LineageError, VersionRecord
from monitoring.requests import RequestLogError, Window, read_window
from pipeline import configs, data
from tests.conftest import ROOT

SCHEMA = ROOT / "schema" / "schema.pbtxt"


def _rows(year: int) -> list[dict]:
    import datetime

    path = Path(data.bundled_taxi_data()) / "data.csv"
    with open(path, newline="") as handle:
        return [r for r in csv.DictReader(handle)
                if datetime.datetime.fromtimestamp(int(r["trip_start_timestamp"]), datetime.timezone.utc).year == year]


def _value(name: str, text: str) -> object:
    if name in ("payment_type", "company"):
        return text
    return float(text) if text else math.nan


def _log(path: Path, rows: list[dict], ts: float = 1000.0, batch: int = 50, model: str = "taxi") -> None:
    """Records shaped like serving/request_log.py writes them (columnar inputs per request)."""
    with path.open("a") as handle:
        for start in range(0, len(rows), batch):
            chunk = rows[start:start + batch]
            inputs = {n: [_value(n, r[n]) for r in chunk] for n in SERVING_FEATURES}
            handle.write(json.dumps({"ts": ts, "model": model, "version": 1, "signature": "serving_default",
                                     "protocol": "rest", "inputs": inputs, "outputs": {}}) + "\n")


def _all_rows() -> list[dict]:
    with open(Path(data.bundled_taxi_data()) / "data.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _batch(rows: list[dict], fare_scale: float = 1.0):  # noqa: ANN202 - pyarrow.RecordBatch
    schema = skew.serving_schema(SCHEMA, set(SERVING_FEATURES))
    columns = {n: [_value(n, r[n]) for r in rows] for n in SERVING_FEATURES}
    columns["fare"] = [v * fare_scale for v in columns["fare"]]
    return skew.served_batch(Window(columns, len(rows), 1, [], {}, 0, 0), schema)


@dataclasses.dataclass
class Training:
    stats: str  # as StatisticsGen writes them (binary DatasetFeatureStatisticsList)
    batch: object  # the raw training rows, as decoded from ExampleGen's tf.Examples


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> Training:
    """Half of 2013's rows as the training data of the model in service."""
    batch = _batch(_rows(2013)[::2])
    schema = skew.serving_schema(SCHEMA, set(SERVING_FEATURES))
    path = tmp_path_factory.mktemp("stats") / "FeatureStats.pb"
    path.write_bytes(skew.serving_statistics(batch, schema).SerializeToString())
    return Training(str(path), batch)


def _compare_batch(served, training: Training) -> list[skew.FeatureResult]:  # noqa: ANN001
    schema = skew.serving_schema(SCHEMA, set(SERVING_FEATURES))
    return skew.compare(training.stats, training.batch, served, skew.serving_statistics(served, schema), schema)


def _compare(log: Path, training: Training) -> list[skew.FeatureResult]:
    schema = skew.serving_schema(SCHEMA, set(SERVING_FEATURES))
    return _compare_batch(skew.served_batch(read_window(log, 0, 2e9, "taxi"), schema), training)


def test_same_year_is_ok_next_year_is_skew(tmp_path: Path, training: Training) -> None:
    same, later = tmp_path / "same.jsonl", tmp_path / "later.jsonl"
    _log(same, _rows(2013)[1::2])
    _log(later, _rows(2014))
    ok = _compare(same, training)
    assert [r for r in ok if r.verdict != "ok"] == []
    assert {r.feature for r in ok if r.check == "skew"} == {"payment_type", "company", "fare", "trip_miles", "trip_seconds",
                                                          "pickup_latitude"}
    shifted = _compare(later, training)
    # 2014 records a trip's miles far more often (0 miles: 44% of 2013's trips, 22% of 2014's) and pays by card more.
    assert {r.feature for r in shifted if r.verdict == "over threshold"} == {"payment_type", "trip_miles"}


def test_random_samples_of_the_training_data_are_not_skew() -> None:
    """TFDV's rebinned histograms flagged fare (0.33 > 0.08) on samples like these: one 700-dollar fare set the buckets."""
    rows = _all_rows()
    training = Training("", _batch(rows))
    schema = skew.serving_schema(SCHEMA, set(SERVING_FEATURES))
    rng = np.random.default_rng(7)
    for size in (500, 2000):
        for _ in range(6):
            served = _batch([rows[i] for i in rng.choice(len(rows), size, replace=False)])
            results = skew.exact_skew(training.batch, served, schema)
            assert [r for r in results if r.verdict != "ok"] == [], results


def test_a_fare_increase_is_skew_even_in_500_rows(training: Training) -> None:
    same_year = _rows(2013)[1::2]
    for rows in (same_year, same_year[:500]):
        results = _compare_batch(_batch(rows, fare_scale=1.25), training)
        over = [r for r in results if r.verdict != "ok"]
        assert [r.feature for r in over] == ["fare"] and over[0].p_value < distances.SIGNIFICANCE
    small = [r for r in _compare_batch(_batch(same_year[:500], fare_scale=1.05), training) if r.feature == "fare"]
    assert small[0].verdict == "ok" and small[0].distance < small[0].threshold


def test_exact_distances() -> None:
    same = distances.measure("jensen_shannon_divergence", [1.0, 2.0, 3.0] * 50, [3.0, 2.0, 1.0] * 50)
    assert same.value == 0 and same.p_value == pytest.approx(1.0)
    apart = distances.measure("jensen_shannon_divergence", list(np.arange(0, 100.0)), [1000.0] * 100)
    assert apart.value == pytest.approx(1.0) and apart.p_value < 1e-20
    shares = distances.measure("infinity_norm", ["a"] * 60 + ["b"] * 40, ["a"] * 30 + ["b"] * 50 + ["new"] * 20)
    assert shares.value == pytest.approx(0.3) and shares.bins == 3
    # TFDV allows jensen_shannon_divergence on a categorical feature too: value by value (it crashed on b"Cash")
    categorical = distances.measure("jensen_shannon_divergence", [b"Cash"] * 50 + [b"Card"] * 50, [b"Cash"] * 100)
    assert categorical.bins == 2 and categorical.value == pytest.approx(0.311, abs=1e-3)
    assert not distances.Distance(0.5, 0.01, 3).skewed(0.1) and distances.Distance(0.5, 0.0001, 3).skewed(0.1)
    tied = distances.numeric_counts(np.array([0.0] * 60 + list(range(1, 41))), np.array([0.0, 50.0]))
    # The 60 zeros fill six deciles and are one bin; the outer bins hold only values outside the training range.
    assert list(tied[0][:2]) == [0, 60] and tied[0][-1] == 0 and tied[0].sum() == 100
    assert list(tied[1][:2]) == [0, 1] and tied[1][-1] == 1
    with pytest.raises(ValueError, match="no exact measure"):
        distances.measure("normalized_abs_difference", [1], [1])
    with pytest.raises(ValueError, match="at least one value"):
        distances.measure("infinity_norm", [], ["a"])


def test_training_examples_are_read_from_example_gen_shards(tmp_path: Path) -> None:
    import tensorflow as tf

    split = tmp_path / "examples" / "Split-train"
    split.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split / "data_tfrecord-00000-of-00001.gz"), options="GZIP") as writer:
        for fare, payment in ((3.25, b"Cash"), (7.5, b"Credit Card")):
            example = tf.train.Example()
            example.features.feature["fare"].float_list.value.append(fare)
            example.features.feature["payment_type"].bytes_list.value.append(payment)
            writer.write(example.SerializeToString())
    record = VersionRecord(3, True, None, None, str(tmp_path / "examples"))
    batch = distances.read_examples(record.examples_files("train"))
    assert distances.column_values(batch, "fare") == [3.25, 7.5]
    assert distances.column_values(batch, "payment_type") == [b"Cash", b"Credit Card"]
    assert distances.column_values(batch, "company") == []
    with pytest.raises(LineageError, match="training examples of version 3 are gone"):
        record.examples_files("eval")
    (split / "data_tfrecord-00000-of-00001.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="cannot be read"):
        distances.read_examples(record.examples_files("train"))


def test_training_rows_beyond_the_cap_are_a_uniform_sample_of_every_shard(tmp_path: Path) -> None:
    import tensorflow as tf

    files = []
    for shard in range(2):  # shard 0: fares 0..999 in file order (a time-sorted CSV); shard 1: fares 1000..1999
        files.append(str(tmp_path / f"data_tfrecord-0000{shard}-of-00002.gz"))
        with tf.io.TFRecordWriter(files[-1], options="GZIP") as writer:
            for fare in range(shard * 1000, shard * 1000 + 1000):
                example = tf.train.Example()
                example.features.feature["fare"].float_list.value.append(fare)
                writer.write(example.SerializeToString())
    fares = np.array(distances.column_values(distances.read_examples(files, limit=400), "fare"))
    assert len(fares) == 400 and len(set(fares)) == 400
    assert 150 < (fares < 1000).sum() < 250  # both shards, not the first 400 rows of shard 0
    assert 300 < np.median(fares[fares < 1000]) < 700  # and all of each shard, not its first rows
    again = distances.column_values(distances.read_examples(files, limit=400), "fare")
    assert again == list(fares)  # the same files give the same sample
    assert len(distances.column_values(distances.read_examples(files), "fare")) == 2000


def test_serving_anomaly_is_reported(tmp_path: Path, training: Training) -> None:
    rows = [dict(r, payment_type="Bitcoin") for r in _rows(2013)[1:400:2]]
    log = tmp_path / "bad.jsonl"
    _log(log, rows)
    results = _compare(log, training)
    assert any(r.feature == "payment_type" and r.check == "schema" and r.verdict == "anomaly" for r in results)


def test_window_filters_and_bad_logs(tmp_path: Path) -> None:
    log = tmp_path / "logs"
    log.mkdir()
    with pytest.raises(RequestLogError, match="holds no"):
        read_window(log, 0, 2e9, "taxi")
    (log / "requests-1.jsonl").write_text("")
    with pytest.raises(RequestLogError, match="the logs are empty"):
        read_window(log, 0, 2e9, "taxi")
    (log / "requests-1.jsonl").write_text("{not json\n[1,2]\n")
    with pytest.raises(RequestLogError, match="2 malformed line"):
        read_window(log, 0, 2e9, "taxi")
    rows = _rows(2013)[:100]
    _log(log / "requests-1.jsonl", rows, ts=100)
    _log(log / "requests-2.jsonl", rows, ts=500)
    _log(log / "requests-2.jsonl", rows, ts=500, model="other")
    window = read_window(log, 400, 600, "taxi")
    assert window.rows == 100 and window.skipped == {"malformed line": 2, "outside the window": 2,
                                                      "other model or version": 2}
    with pytest.raises(RequestLogError, match="does not exist"):
        read_window(tmp_path / "nope", 0, 1, "taxi")


def test_lines_with_values_that_are_not_numbers_are_skipped_not_fatal(tmp_path: Path) -> None:
    schema = skew.serving_schema(SCHEMA, set(SERVING_FEATURES))
    log = tmp_path / "requests.jsonl"
    _log(log, _rows(2013)[:100])
    good = json.loads(log.read_text().splitlines()[0])
    with log.open("a") as handle:
        for name, value in (("fare", "abc"), ("fare", [1.0]), ("company", {"a": 1}), ("trip_start_day", 10**400)):
            inputs = {**good["inputs"], name: [value] * len(good["inputs"][name])}
            handle.write(json.dumps({**good, "inputs": inputs}) + "\n")
    window = read_window(log, 0, 2e9, "taxi", types=configs.column_types(schema))
    assert window.rows == 150 and window.skipped == {"value not of its schema type": 3}  # a dict is a (strange) string
    assert skew.served_batch(window, schema).num_rows == 150


def test_a_served_number_no_int64_holds_is_judged_and_named_not_dropped(tmp_path: Path, training: Training) -> None:
    """The server takes any JSON number for its DT_DOUBLE inputs. A trip_seconds of 1e19 or 600.5 for the
    schema's INT dropped the whole request from the window (or was cut to 600), and the verdict stayed ok."""
    schema = skew.serving_schema(SCHEMA, set(SERVING_FEATURES))
    log = tmp_path / "requests.jsonl"
    _log(log, _rows(2013)[1:1200:2], batch=100)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    for record, value in zip(records, (1e19, 600.5, math.inf, 10**30), strict=False):
        record["inputs"]["trip_start_day"][0] = value
    records[-1]["inputs"]["trip_start_day"][1] = 16777217  # an int float32 cannot hold: the column is float64
    records[-1]["inputs"]["trip_start_hour"] = [float(h) for h in records[-1]["inputs"]["trip_start_hour"]]  # 7.0: 7
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    window = read_window(log, 0, 2e9, "taxi", types=configs.column_types(schema))
    assert window.rows == 600 and window.skipped == {}
    results = _compare_batch(skew.served_batch(window, schema), training)
    named = {r.feature for r in results if r.check == "schema" and r.verdict == "anomaly"}
    assert named == {"trip_start_day"}


def test_strings_logged_as_base64_are_their_bytes(tmp_path: Path) -> None:
    """The server logs a string input that is not UTF-8 as {"b64": ...}: it was compared as that dict's text."""
    import base64

    schema = skew.serving_schema(SCHEMA, set(SERVING_FEATURES))
    log = tmp_path / "requests.jsonl"
    _log(log, _rows(2013)[:50])
    record = json.loads(log.read_text())
    record["inputs"]["company"] = [{"b64": base64.b64encode(b"Caf\xe9 Cab").decode()}] * 50
    log.write_text(json.dumps(record) + "\n")
    window = read_window(log, 0, 2e9, "taxi", types=configs.column_types(schema))
    assert set(window.columns["company"]) == {b"Caf\xe9 Cab"}


def test_a_byte_order_mark_does_not_cost_the_first_record(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    _log(log, _rows(2013)[:100])
    log.write_bytes(b"\xef\xbb\xbf" + log.read_bytes())  # a file saved by a Windows editor
    window = read_window(log, 0, 2e9, "taxi")
    assert window.rows == 100 and window.skipped == {}


def test_logs_that_cannot_be_read_are_one_error_not_a_traceback(tmp_path: Path, monkeypatch) -> None:
    """A day file the server's user made unreadable, or one a cleanup removed mid-read: a PermissionError or
    FileNotFoundError traceback, and under `monitor --retrain` no decision at all."""
    folder = tmp_path / "logs"
    folder.mkdir()
    _log(folder / "requests-1.jsonl", _rows(2013)[:100])
    real_open = Path.open

    def refuse(path: Path, *args, **kwargs):  # noqa: ANN202 - as root, chmod 000 does not stop a read
        if path.name == "requests-1.jsonl":
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(RequestLogError, match=r"cannot read request log .*requests-1.jsonl: Permission denied"):
        read_window(folder, 0, 2e9, "taxi")
    monkeypatch.setattr(os, "scandir", lambda path: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(RequestLogError, match=r"cannot read request log .*logs: Permission denied"):
        read_window(folder, 0, 2e9, "taxi")


def test_report_files(tmp_path: Path, training: Training) -> None:
    log = tmp_path / "later.jsonl"
    _log(log, _rows(2014)[:1500])
    result = skew.SkewReport("taxi", 7, 1, {"files": [str(log)]}, 1500, _compare(log, training))
    json_path, html_path = report_files.write(result, tmp_path / "out")
    saved = json.loads(json_path.read_text())
    assert saved["verdict"] == "skew" and "payment_type" in saved["over_threshold"]
    assert "<table>" in html_path.read_text() and "over threshold" in html_path.read_text()
    assert report_files.lines(result)[-1].startswith("verdict: SKEW in ")


def test_two_reports_in_one_second_are_both_kept(tmp_path: Path) -> None:
    """Two monitors finishing in the same second (cron for two models, or cron and a person) wrote one file name."""
    result = skew.FeatureResult("fare", "skew", "jensen_shannon_divergence", 0.5, 0.02, "over threshold")
    first = skew.SkewReport("taxi", 1, 1, {}, 600, [result], created=1795500000.25)
    second = skew.SkewReport("other", 2, 1, {}, 700, [], created=1795500000.75)
    paths = report_files.write(first, tmp_path) + report_files.write(second, tmp_path)
    assert len(set(paths)) == 4 and all(p.name.startswith("skew-20261124T") for p in paths)
    assert [json.loads(p.read_text())["model"] for p in paths if p.suffix == ".json"] == ["taxi", "other"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temporary files left


def test_day_files_of_the_server_outside_the_window_are_not_read(tmp_path: Path) -> None:
    """The server writes one requests-<UTC day>.jsonl per day and keeps them all: an hourly monitor read every
    day ever logged, line by line, to keep one day's rows."""
    import datetime

    log = tmp_path / "log"
    log.mkdir()
    rows = _rows(2013)[:100]
    day = datetime.datetime(2026, 11, 20, tzinfo=datetime.timezone.utc).timestamp()
    for offset in range(3):  # 18, 19, 20 November; the window below is 19 November 12:00 .. 20 November 12:00
        stamp = day - (2 - offset) * 86400
        _log(log / f"requests-{time.strftime('%Y%m%d', time.gmtime(stamp))}.jsonl", rows, ts=stamp + 43200)
    (log / "requests-manual.jsonl").write_text("not json\n")  # not a day file: always read
    window = read_window(log, day - 43200, day + 43200, "taxi")
    assert window.rows == 100 and window.skipped == {"malformed line": 1, "outside the window": 2}
    assert [Path(f).name for f in window.files] == ["requests-20261119.jsonl", "requests-20261120.jsonl",
                                                    "requests-manual.jsonl"]


def test_a_window_over_the_row_cap_is_a_uniform_sample_of_all_of_it(tmp_path: Path) -> None:
    """Beyond the cap the newest rows of the window were dropped: skew was judged on its oldest rows only."""
    log = tmp_path / "requests-20261120.jsonl"
    rows = [dict(r, fare=str(float(i))) for i, r in enumerate(_rows(2013)[:1000])]  # fare: the row's place in time
    for start in range(0, len(rows), 10):
        _log(log, rows[start:start + 10], ts=1000.0 + start, batch=10)
    window = read_window(log, 0, 2e9, "taxi", max_rows=100)
    fares = np.array(window.columns["fare"])
    assert len(fares) == window.rows == 100 and len(set(fares)) == 100
    assert 30 <= (fares >= 500).sum() <= 70 and fares.max() >= 900  # the newest half is in it, as much as the oldest
    assert all(len(column) == 100 for column in window.columns.values())
    rows_of = {r["fare"]: r for r in rows}  # each sampled row keeps its own values in every column
    assert all(window.columns["company"][i] == rows_of[str(f)]["company"] for i, f in enumerate(fares))
    assert window.skipped == {} and window.records == 100 and (window.first_ts, window.last_ts) == (1000.0, 1990.0)
    again = read_window(log, 0, 2e9, "taxi", max_rows=100)
    assert again.columns == window.columns  # the same logs give the same sample, so the same report
    whole = read_window(log, 0, 2e9, "taxi", max_rows=1000)
    assert whole.rows == whole.rows_seen == 1000 and whole.columns["fare"] == [float(i) for i in range(1000)]

    report = skew.SkewReport("taxi", 7, 1, window.info(), window.rows, [])
    assert ": 100 of 1000 served rows (a uniform sample), " in report_files.lines(report)[0]
    assert report.as_json()["window"]["rows_seen"] == 1000
    assert ": 1000 served rows, " in report_files.lines(skew.SkewReport("taxi", 7, 1, whole.info(), 1000, []))[0]


def test_a_window_of_many_small_requests_is_read_in_time_linear_in_its_rows(tmp_path: Path) -> None:
    """Each logged request rebuilt a list as long as the whole window for every feature (an eager setdefault
    default): 60k rows took 7.5 s, and a day of one-row requests at 2M rows would take hours, not one cron hour."""
    inputs = {n: ["Cash"] * 3 if n in ("payment_type", "company") else [1.5] * 3 for n in SERVING_FEATURES}
    line = json.dumps({"ts": 1000.0, "model": "taxi", "version": 1, "inputs": inputs}) + "\n"
    log = tmp_path / "requests.jsonl"
    log.write_text(line * 30_000)
    started = time.monotonic()
    window = read_window(log, 0, 2e9, "taxi")
    took = time.monotonic() - started
    assert window.rows == 90_000 and window.records == 30_000
    assert took < 5, f"{took:.1f} s to read 90,000 rows (about 0.7 s when linear; 17 s when quadratic)"
