"""Request logs -> TFDV statistics -> skew verdicts, on real taxi rows and the curated schema."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from models.features import SERVING_FEATURES
from monitoring import report as report_files
from monitoring import skew
from monitoring.requests import RequestLogError, Window, read_window
from pipeline import data
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


@pytest.fixture(scope="module")
def training_stats(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Statistics of 2013's rows, as StatisticsGen writes them (binary DatasetFeatureStatisticsList)."""
    rows = _rows(2013)[::2]
    schema = skew.serving_schema(SCHEMA, set(SERVING_FEATURES))
    window = Window({n: [_value(n, r[n]) for r in rows] for n in SERVING_FEATURES}, len(rows), 1, [], {}, 0, 0)
    path = tmp_path_factory.mktemp("stats") / "FeatureStats.pb"
    path.write_bytes(skew.serving_statistics(window, schema).SerializeToString())
    return str(path)


def _compare(log: Path, training_stats: str) -> list[skew.FeatureResult]:
    schema = skew.serving_schema(SCHEMA, set(SERVING_FEATURES))
    window = read_window(log, 0, 2e9, "taxi")
    return skew.compare(training_stats, skew.serving_statistics(window, schema), schema)


def test_same_year_is_ok_next_year_is_skew(tmp_path: Path, training_stats: str) -> None:
    same, later = tmp_path / "same.jsonl", tmp_path / "later.jsonl"
    _log(same, _rows(2013)[1::2])
    _log(later, _rows(2014))
    ok = _compare(same, training_stats)
    assert [r for r in ok if r.verdict != "ok"] == []
    assert {r.feature for r in ok if r.check == "skew"} == {"payment_type", "company", "fare", "trip_miles", "pickup_latitude"}
    shifted = _compare(later, training_stats)
    assert {r.feature for r in shifted if r.verdict == "over threshold"} >= {"payment_type", "pickup_latitude"}


def test_serving_anomaly_is_reported(tmp_path: Path, training_stats: str) -> None:
    rows = [dict(r, payment_type="Bitcoin") for r in _rows(2013)[1:400:2]]
    log = tmp_path / "bad.jsonl"
    _log(log, rows)
    results = _compare(log, training_stats)
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


def test_report_files(tmp_path: Path, training_stats: str) -> None:
    log = tmp_path / "later.jsonl"
    _log(log, _rows(2014)[:1500])
    result = skew.SkewReport("taxi", 7, 1, {"files": [str(log)]}, 1500, _compare(log, training_stats))
    json_path, html_path = report_files.write(result, tmp_path / "out")
    saved = json.loads(json_path.read_text())
    assert saved["verdict"] == "skew" and "payment_type" in saved["over_threshold"]
    assert "<table>" in html_path.read_text() and "over threshold" in html_path.read_text()
    assert report_files.lines(result)[-1].startswith("verdict: SKEW in ")
