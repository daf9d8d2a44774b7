"""`taxi predict`'s rows: read from CSV or JSON lines and checked against the model's signature as the
server will check them, so a bad row is refused with its line before the first request is sent."""
from __future__ import annotations

import csv
import json
import math
import re
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from cli.common import UsageProblem
from common.b64_json import b64_bytes, is_b64

NUMERIC = {"DT_FLOAT", "DT_DOUBLE", "DT_HALF", "DT_BFLOAT16"}
INTEGER = {"DT_INT8", "DT_INT16", "DT_INT32", "DT_INT64", "DT_UINT8", "DT_UINT16", "DT_UINT32", "DT_UINT64"}


def _without_bom(handle: TextIO) -> Iterator[str]:
    """Excel's "CSV UTF-8" starts with a byte-order mark; left in, it renames the first column."""
    for number, line in enumerate(handle):
        yield line.removeprefix("\ufeff") if number == 0 else line


WHOLE = re.compile(r"\s*[+-]?\d+\s*", re.ASCII)
TOO_BIG = "is too big for a number (a double holds up to 1.8e308)"


class _TooBig(ValueError):
    pass


class _Twice(ValueError):
    pass


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose key is given twice: json keeps the last value, silently; the CSV reader refuses a
    column named twice, and so is this."""
    row = dict(pairs)
    if len(row) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _Twice(f"{twice!r} is given twice: one of the values would be dropped; remove one")
    return row


def _finite(text: str) -> float:
    """A JSON number as json reads it, but 1e400 refused instead of read as infinity (the literal Infinity stays)."""
    number = float(text)
    if math.isinf(number):
        raise _TooBig(f"{text} {TOO_BIG}")
    return number


class Rows(list):
    """Rows as dicts, with the file line each starts on (`lines`), for messages that point into the file."""

    def __init__(self, rows: list[dict[str, Any]], lines: list[int]) -> None:
        super().__init__(rows)
        self.lines = lines

    def where(self, index: int) -> str:
        return f"row {index} (line {self.lines[index]})" if index < len(self.lines) else f"row {index}"


def _csv_rows(lines: Iterator[str]) -> Rows:
    """Rows of a CSV with a header, refused as the pipeline refuses its data: a quote never closed (Python's csv
    would read the rest of the file into one value), a row of another width (its missing cells would be sent
    as missing values, its extra ones dropped), or a column named twice (one of the two would be dropped)."""
    reader = csv.reader(lines, strict=True)
    try:
        names = next(reader, [])
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            columns = ", ".join(str(i + 1) for i, name in enumerate(names) if name == twice[0])
            raise UsageProblem(f"the header names {twice[0]!r} twice (columns {columns}): one of them would be "
                               "dropped; rename or remove one")
        rows, starts = [], []
        start = reader.line_num + 1
        for values in reader:
            if values:
                if len(values) != len(names):
                    raise UsageProblem(f"line {reader.line_num} has {len(values)} values where the header has "
                                       f"{len(names)} columns")
                rows.append(dict(zip(names, values, strict=True)))
                starts.append(start)
            start = reader.line_num + 1
    except csv.Error as error:
        problem = "a quoted value is never closed" if "unexpected end of data" in str(error) else error
        raise UsageProblem(f"line {reader.line_num}: {problem}") from None
    return Rows(rows, starts)


CSV_NAME = re.compile(r'\s*([\w .-]+|"[^"]*")\s*')


def _csv_hint(line: str) -> str:
    """For a first line that is not JSON and was read as such only because of the file's name."""
    cells = line.strip().split(",")
    return "; it looks like a CSV header: pass --format csv" if len(cells) > 1 and all(
        CSV_NAME.fullmatch(cell) for cell in cells) else ""


def read_rows(handle: TextIO, fmt: str, guessed: bool = False) -> Rows:
    """Rows as dicts: CSV values stay strings (typed later from the signature), JSON lines as given.
    `guessed`: the format was picked from the file's name (--format auto)."""
    lines = _without_bom(handle)
    if fmt == "csv":
        return _csv_rows(lines)
    rows, starts = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, parse_float=_finite, object_pairs_hook=_once)
        except (_TooBig, _Twice) as error:
            raise UsageProblem(f"line {number}: {error}") from None
        except ValueError as error:
            hint = _csv_hint(line) if guessed and not rows else ""
            raise UsageProblem(f"line {number} is not JSON: {error}{hint}") from None
        if not isinstance(row, dict):
            raise UsageProblem(f"line {number} is not a JSON object of feature -> value")
        rows.append(row)
        starts.append(number)
    return Rows(rows, starts)


def check_header(row: dict[str, Any], dtypes: dict[str, str]) -> None:
    """A model input the CSV header lacks (a typo, `Fare`, dropped by --drop-unknown; a column left out of an
    export) would be sent missing in every row: plausible, wrong probabilities, and no word. An empty column
    is how a CSV sends missing values on purpose."""
    absent = sorted(set(dtypes) - set(row))
    if absent:
        raise UsageProblem(f"the header has no column {', '.join(map(repr, absent[:3]))}"
                           f"{' ...' if len(absent) > 3 else ''}, a model input: every row would be sent without "
                           "it; add the column (its empty cells are missing values)")


ASCII_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*|\s*[+-]?(inf|infinity|nan)\s*", re.I | re.ASCII)


def _number(where: str, name: str, value: str, kind: str) -> int | float:
    """A CSV cell (or a JSON string) as a number, written as the pipeline's data writes numbers: ASCII digits
    only (Python's float() also reads `1_2.45` and full-width or Arabic-Indic digits)."""
    if not ASCII_NUMBER.fullmatch(value):
        raise UsageProblem(f"{where}: {name}={value!r} is not a number")
    number = float(value)
    if math.isinf(number) and any(c.isdigit() for c in value):  # 1e400; the words inf/Infinity stay
        raise UsageProblem(f"{where}: {name}={value!r} {TOO_BIG}")
    return int(number) if kind in INTEGER and number.is_integer() else number


def _typo_of(unknown: list[str], row: dict[str, Any], dtypes: dict[str, str]) -> tuple[str, str] | None:
    """An unknown key that is a model input but for case or spaces (`Fare`, `fare `), that input absent."""
    inputs = {name.strip().lower(): name for name in dtypes}
    for key in unknown:
        meant = inputs.get(key.strip().lower())
        if meant is not None and meant not in row:
            return key, meant
    return None


# The server's codec (serving/codec.py, as TF Serving's IsLosslessDecimal): a whole number sent to a float input
# must be exact in that type (2**digits - 1), and a number must not overflow it; read here without TensorFlow.
EXACT = {"DT_DOUBLE": 2**53 - 1, "DT_FLOAT": 2**24 - 1, "DT_HALF": 2**11 - 1, "DT_BFLOAT16": 2**8 - 1}
LARGEST = {"DT_DOUBLE": sys.float_info.max, "DT_FLOAT": 3.4028234663852886e38, "DT_HALF": 65504.0,
           "DT_BFLOAT16": 3.3895313892515355e38}
# Half the gap between the largest value and the next the format would have: anything nearer the largest
# value rounds down to it (3.4028235e38, as float32's maximum is printed), anything from there on to infinity.
HALF_STEP = {"DT_DOUBLE": 2.0**970, "DT_FLOAT": 2.0**103, "DT_HALF": 2.0**4, "DT_BFLOAT16": 2.0**119}
FLOAT_NAME = {"DT_DOUBLE": "double", "DT_FLOAT": "float", "DT_HALF": "half", "DT_BFLOAT16": "half"}


def _servable_number(where: str, name: str, value: int | float, kind: str) -> int | float:
    """A number the server takes for this input as it is; else refused here, with its row, not by the server
    after the batches before it were answered."""
    shown = json.dumps(value)
    if kind in EXACT:
        if isinstance(value, int) and abs(value) > EXACT[kind]:
            raise UsageProblem(f"{where}: {name}={shown} cannot be sent to a {FLOAT_NAME[kind]} input ({kind}) "
                               f"without loss of precision (whole numbers up to {EXACT[kind]}); write it as a "
                               f"decimal, e.g. {float(value)!r}")
        if isinstance(value, float) and math.isfinite(value) and abs(value) >= LARGEST[kind] + HALF_STEP[kind]:
            raise UsageProblem(f"{where}: {name}={shown} is too big for a {FLOAT_NAME[kind]} input ({kind})")
    elif isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise UsageProblem(f"{where}: {name}={shown} is not a whole number, which the model input takes ({kind})")
    elif not -2**63 <= value < (2**64 if kind.startswith("DT_UINT") else 2**63):
        raise UsageProblem(f"{where}: {name}={shown} is out of range for the model input ({kind})")
    return value


def _servable_string(where: str, name: str, value: str | dict) -> str | dict:
    """A string the server can read: valid base64 in {"b64": ...}, no lone UTF-16 surrogate ("\\ud800")."""
    if isinstance(value, dict):
        try:
            b64_bytes(value)
        except ValueError:
            raise UsageProblem(f"{where}: {name}={json.dumps(value)} is not valid base64") from None
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageProblem(f"{where}: {name}={json.dumps(value)} is not valid Unicode (a lone surrogate)") from None
    return value


def typed(rows: list[dict[str, Any]], dtypes: dict[str, str], drop_unknown: bool) -> list[dict[str, Any]]:
    """Convert CSV strings by the signature's dtypes; '' and missing become None (the client fills NaN/'').
    Every row is checked before any is sent: a value of the wrong kind is refused here, with its line, rather
    than by the server after earlier batches were answered."""
    where = rows.where if isinstance(rows, Rows) else (lambda index: f"row {index}")
    out = []
    for index, row in enumerate(rows):
        unknown = sorted(set(row) - set(dtypes))
        typo = _typo_of(unknown, row, dtypes)
        if typo:
            raise UsageProblem(f"{where(index)}: {typo[0]!r} is not a model input, {typo[1]!r} is: every row with "
                               "it would be sent without that input; rename it")
        if unknown and not drop_unknown:
            raise UsageProblem(f"{where(index)}: {unknown[0]!r} is not a model input (inputs: "
                               f"{', '.join(sorted(dtypes))}); --drop-unknown ignores extra columns")
        converted = {}
        for name, value in row.items():
            if name not in dtypes:
                continue
            kind = dtypes[name]
            if value is None or (isinstance(value, str) and value == "" and kind != "DT_STRING"):
                converted[name] = None
            elif kind == "DT_STRING":
                if not (isinstance(value, str) or is_b64(value)):
                    raise UsageProblem(f"{where(index)}: {name}={json.dumps(value)} is not a string, which the "
                                       "model input takes (DT_STRING); quote it")
                converted[name] = _servable_string(where(index), name, value)
            elif kind in NUMERIC | INTEGER:
                if isinstance(value, str) and kind in INTEGER and WHOLE.fullmatch(value):
                    number = int(value)  # exactly: float() rounds a whole number above 2**53
                elif isinstance(value, str):
                    number = _number(where(index), name, value, kind)
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    number = value
                else:
                    raise UsageProblem(f"{where(index)}: {name}={json.dumps(value)} is not a number, which the "
                                       f"model input takes ({kind})")
                converted[name] = _servable_number(where(index), name, number, kind)
            else:
                converted[name] = value
        out.append(converted)
    return out
