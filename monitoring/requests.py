"""Logged requests (serving/request_log.py's JSON lines) -> one Arrow RecordBatch for TFDV.

The served inputs are turned into the same shape CsvExampleGen gives TFDV for
training (one list per feature per row, an empty list for a missing value), so
training and serving statistics are comparable feature by feature.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from common.b64_json import b64_bytes, is_b64
from monitoring.sampling import BottomK

DEFAULT_SIGNATURE = "serving_default"


class RequestLogError(ValueError):
    """Request logs that cannot be monitored; the message says which and why."""


MAX_WINDOW_ROWS = 2_000_000  # beyond this, a uniform random sample of the window's rows


@dataclasses.dataclass
class Window:
    """Rows of the logged requests in [since, until) (a uniform sample when there are more than the cap),
    plus what was skipped and why."""

    columns: dict[str, list[Any]]
    rows: int  # in `columns`
    records: int
    files: list[str]
    skipped: dict[str, int]
    first_ts: float | None
    last_ts: float | None
    rows_seen: int | None = None  # in the window; more than `rows` when they were sampled (None: as many)

    def __post_init__(self) -> None:
        if self.rows_seen is None:
            self.rows_seen = self.rows

    def info(self) -> dict[str, Any]:
        """What the report says about the window besides its rows."""
        return {"first_ts": self.first_ts, "last_ts": self.last_ts, "records": self.records, "files": self.files,
                "skipped": self.skipped, "rows_seen": self.rows_seen}


def log_files(path: Path) -> list[Path]:
    try:
        if path.is_file():
            return [path]
        if not path.is_dir():
            raise RequestLogError(f"request log {path} does not exist")
        with os.scandir(path) as entries:  # unlike glob, says when the folder cannot be read
            files = sorted(Path(e.path) for e in entries if e.name.endswith(".jsonl") and e.is_file())
    except OSError as error:
        raise _unreadable(path, error) from None
    if not files:
        raise RequestLogError(f"{path} holds no *.jsonl request logs (is the server started with --request-log-dir?)")
    return files


def _unreadable(path: Path | str, error: OSError) -> RequestLogError:
    return RequestLogError(f"cannot read request log {path}: {error.strerror or error}")


DAY_FILE = re.compile(r"requests-(\d{8})\.jsonl")  # serving/request_log.py: one file per UTC day


def outside(file: Path, since: float, until: float) -> bool:
    """A server day file whose whole UTC day is outside [since, until); any other file may hold the window."""
    match = DAY_FILE.fullmatch(file.name)
    if not match:
        return False
    try:
        start = dt.datetime.strptime(match[1], "%Y%m%d").replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        return False
    return start + 86400 <= since or start >= until


def _is_missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


INT64_LIMIT = 2.0**63


def typed(kind: str, value: Any) -> Any:
    """A served value as the schema's type (INT | FLOAT | BYTES); ValueError when it cannot be one.

    A number that is not a whole int64 (600.5, 1e19) for an INT feature stays a float: the model takes it
    (its inputs are doubles), so it is served traffic to judge, and the float makes TFDV name the feature's
    type as an anomaly, as the data gate does for such a value in training data; a whole number sent as
    600.0 is the integer 600. A string the server logged as {"b64": ...} (bytes that are not UTF-8) is
    those bytes.
    """
    if kind == "BYTES":
        if is_b64(value):
            try:
                return b64_bytes(value)
            except ValueError:  # binascii.Error
                raise ValueError(f"{value!r} is not base64") from None
        return str(value).encode("utf-8")
    if isinstance(value, (list, dict, bool)):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer of 400 digits
        raise ValueError(f"{value!r} is not a number") from None
    return int(number) if kind == "INT" and _whole_int64(number) else number


def _whole_int64(number: float) -> bool:
    return math.isfinite(number) and number.is_integer() and abs(number) < INT64_LIMIT


def read_window(path: Path, since: float, until: float, model: str, version: int | None = None,
                max_rows: int = MAX_WINDOW_ROWS, types: dict[str, str] | None = None) -> Window:
    """Columns of every logged row in the window, or of a uniform random `max_rows` of them (the same ones for
    the same logs); malformed lines are counted, not fatal, unless all are.

    types (feature -> INT | FLOAT | BYTES): a line with a value that is not of its
    feature's type (a string fare, an infinite trip_start_day) is skipped and counted.
    """
    columns: dict[str, list[Any]] = {}
    skipped: dict[str, int] = {}
    sample = BottomK(max_rows, slack=max_rows // 4)  # held at most: 1.25 x max_rows rows
    rows = records = 0  # rows: held in `columns`
    first = last = None
    listed = log_files(Path(path))
    files = [f for f in listed if f == Path(path) or not outside(f, since, until)]  # a file named is always read

    def skip(why: str) -> None:
        skipped[why] = skipped.get(why, 0) + 1

    for file in files:
        try:
            lines = file.open(encoding="utf-8-sig", errors="replace")  # a byte-order mark is not the first record's
        except OSError as error:  # unreadable, or removed since it was listed
            raise _unreadable(file, error) from None
        with lines as handle:
            for line in _lines_of(handle, file):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    ts, inputs = float(record["ts"]), record["inputs"]
                except (ValueError, KeyError, TypeError):
                    skip("malformed line")
                    continue
                if not since <= ts < until:
                    skip("outside the window")
                    continue
                if record.get("model") != model or (version is not None and record.get("version") != version):
                    skip("other model or version")
                    continue
                if record.get("signature", DEFAULT_SIGNATURE) != DEFAULT_SIGNATURE or not isinstance(inputs, dict):
                    skip("other signature")
                    continue
                batch = [v if isinstance(v, list) else [v] for v in inputs.values()]
                size = len(batch[0]) if batch else 0
                if not size or any(len(v) != size for v in batch):
                    skip("malformed line")
                    continue
                try:
                    batch = [[v if _is_missing(v) or name not in (types or {}) else typed(types[name], v)
                              for v in values] for name, values in zip(inputs, batch, strict=True)]
                except ValueError:
                    skip("value not of its schema type")
                    continue
                for name, values in zip(inputs, batch, strict=True):
                    if name not in columns:  # first seen here: missing in the rows before
                        columns[name] = [None] * rows
                    columns[name].extend(values)
                for column in columns.values():
                    column.extend([None] * (rows + size - len(column)))
                rows, records = rows + size, records + 1
                first, last = min(first or ts, ts), max(last or ts, ts)
                sample.add(size)
                rows = _cut(columns, sample.cut(), rows)
    rows = _cut(columns, sample.cut(final=True), rows)
    if not rows:
        detail = (", ".join(f"{n} {why}" for why, n in sorted(skipped.items()))
                  or ("the logs are empty" if files else f"none of its {len(listed)} day files covers the window"))
        raise RequestLogError(f"no logged {model} requests in {path} for the window ({detail})")
    return Window(columns, rows, records, [str(f) for f in files], skipped, first, last, sample.seen)


def _lines_of(handle: Iterable[str], file: Path) -> Iterator[str]:
    try:
        yield from handle
    except OSError as error:  # a read error mid-file
        raise _unreadable(file, error) from None


def _cut(columns: dict[str, list[Any]], keep: np.ndarray | None, rows: int) -> int:
    """Keeps the rows at `keep` in every column (None: all); returns how many rows the columns hold."""
    if keep is None:
        return rows
    index = keep.tolist()  # Python ints: a list indexed by numpy ints is several times slower
    for name, column in columns.items():
        columns[name] = [column[i] for i in index]
    return len(index)


def to_record_batch(window: Window, types: dict[str, str]) -> pa.RecordBatch:
    """types: feature -> INT | FLOAT | BYTES (from the schema); unknown features are left out.

    The values were typed once, line by line, by read_window(types=...); Arrow
    only lays them out (and refuses, per feature, what a hand-built window got wrong).
    """
    arrays, names = [], []
    for name, values in sorted(window.columns.items()):
        kind = types.get(name)
        if kind is None:
            continue
        value_type = {"BYTES": pa.binary(), "INT": pa.int64()}.get(kind, pa.float32())
        if kind == "INT" and any(isinstance(v, float) and not _is_missing(v) and not _whole_int64(v) for v in values):
            # a served value no int64 holds (typed()): TFDV names the type; float64 holds the column's ints exactly
            value_type, values = pa.float64(), [v if _is_missing(v) else float(v) for v in values]
        try:
            arrays.append(pa.array([[] if _is_missing(v) else [v] for v in values], type=pa.list_(value_type)))
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as error:
            raise RequestLogError(f"feature {name}: not {kind} values ({str(error)[:120]})") from None
        names.append(name)
    if not names:
        raise RequestLogError("the logged requests hold none of the schema's features")
    return pa.RecordBatch.from_arrays(arrays, names)
