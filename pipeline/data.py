"""Locating and checking the CSV input folder before any TFX work starts."""
from __future__ import annotations

import contextlib
import csv
import glob
import gzip
import importlib.util
import io
import os
import re
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from pipeline.configs import WILDCARDS, ConfigError, glob_char_in
from pipeline.data_files import header_names, is_csv, is_hidden, open_data_file, whole_number

SPAN_FOLDER = re.compile(r"^span-([0-9]+)$")  # span-<N>/, as the pipeline's span-{SPAN} pattern reads
OTHER_SEPARATORS = (";", "\t", "|")  # a one-column header holding one: Excel's CSV in a comma-decimal locale, TSV


@contextlib.contextmanager
def open_data_text(path: str | Path, encoding: str = "utf-8", newline: str | None = None) -> Iterator[io.TextIOWrapper]:
    """A local data file's text (open_data_file), for the checks here and the tools that read the folder."""
    with open_data_file(path) as stored, io.TextIOWrapper(stored, encoding=encoding, newline=newline) as text:
        yield text


def bundled_taxi_data() -> str:
    """The Chicago taxi sample that the installed tfx wheel ships, found without importing tfx."""
    spec = importlib.util.find_spec("tfx")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the tfx package is not installed: run 'make install' (or pass --data DIR)")
    root = Path(next(iter(spec.submodule_search_locations)))
    folder = root / "examples" / "chicago_taxi_pipeline" / "data" / "simple"
    if not (folder / "data.csv").is_file():
        raise ConfigError(f"the bundled taxi sample is missing from the tfx install at {folder}; pass --data DIR")
    return str(folder)


def check_csv_folder(folder: str) -> list[Path]:
    """The CSV files CsvExampleGen will read, or a ConfigError saying why there are none."""
    path = Path(folder)
    if not path.exists():
        raise ConfigError(f"data folder {folder} does not exist")
    if not path.is_dir():
        raise ConfigError(f"data path {folder} is not a folder: pass the folder that holds the CSV files")
    _check_not_a_pattern(folder)
    files = entries(folder)  # what CsvExampleGen reads of its `*` pattern: every entry but hidden ones
    folders = [p.name for p in files if p.is_dir()]
    if folders and all(SPAN_FOLDER.match(name) for name in folders):
        span_folders(folder, files)  # CSV files beside them: the same refusal a run gives
        raise ConfigError(f"data folder {folder} holds span folders ({', '.join(folders[:3])}): pass one of them "
                          f"(e.g. {path / folders[-1]}), or run the pipeline with --data {folder} --span N")
    if folders:
        raise ConfigError(
            f"data folder {folder} holds folders ({', '.join(folders[:3])}) that CsvExampleGen would read as "
            "files: move them out, or name span folders span-<N> and hold nothing else"
        )
    if not files:
        raise ConfigError(f"data folder {folder} is empty: it needs at least one CSV file with a header row")
    special = [p.name for p in files if p.exists() and not p.is_file()]
    if special:  # reading a named pipe waits for a writer: the run hung
        raise ConfigError(f"data folder {folder} holds {', '.join(special[:3])}, which is not a regular file "
                          "(a named pipe, socket or device): move it out")
    not_csv = [p.name for p in files if not is_csv(p.name)]
    if not_csv:
        raise ConfigError(
            f"data folder {folder} holds files that are not .csv or .csv.gz ({', '.join(not_csv[:3])}); "
            "CsvExampleGen reads every file in it but hidden ones (names starting with '.')"
        )
    scanned = {p: _scan(p) for p in files}
    first = files[0]
    for p, (names, _) in scanned.items():
        if names != scanned[first][0]:
            reordered = (f"{p.name} has the columns of {first.name} in another order ({_preview(names)}); "
                         if sorted(names) == sorted(scanned[first][0]) else "")
            raise ConfigError(
                f"data files {first.name} and {p.name} in {folder} have different header rows: {reordered}"
                "CsvExampleGen reads the whole folder with one header"
            )
    if not any(rows for _, rows in scanned.values()):
        raise ConfigError(f"data folder {folder} has no data rows: its CSV files hold only a header")
    return files


def _check_not_a_pattern(folder: str) -> None:
    """CsvExampleGen finds its files with TensorFlow's glob of <folder>/*: a '[' or '\\' in the folder's path
    is pattern syntax there, and the path no longer matches itself (no files: the run fails inside
    CsvExampleGen); a '*' or '?' also matches other folders, whose files it would read too."""
    fix = "rename the folder, or pass a symlink to it whose path has none"
    char = glob_char_in(folder)
    if char:
        raise ConfigError(f"data folder {folder} has {char!r} in its path, which CsvExampleGen's file pattern "
                          f"(<folder>/*) reads as pattern syntax and then finds no file: {fix}")
    absolute = os.path.abspath(folder)
    wildcard = glob_char_in(folder, WILDCARDS)
    others = sorted(set(glob.glob(absolute)) - {absolute}) if wildcard else []
    if others:
        raise ConfigError(f"data folder {folder} has {wildcard!r} in its path, which CsvExampleGen's file pattern "
                          f"(<folder>/*) reads as a wildcard: it would read {others[0]} too; {fix}")


def entries(folder: str) -> list[Path]:
    """The folder's entries but hidden ones (is_hidden), sorted; a folder that cannot be listed is a ConfigError."""
    try:
        return sorted(path for path in Path(folder).iterdir() if not is_hidden(path.name))
    except OSError as error:
        raise ConfigError(f"data folder {folder} cannot be read: {error.strerror or error}") from None


def span_folders(folder: str, found: list[Path]) -> dict[str, int]:
    """{span-<N> folder name: N} among the folder's entries; CSV files beside span folders are refused,
    since a run reads only span-{SPAN}/* and would silently leave them out."""
    spans = {p.name: int(m.group(1)) for p in found if p.is_dir() and (m := SPAN_FOLDER.match(p.name))}
    loose = [p.name for p in found if is_csv(p.name) and p.is_file()]
    if spans and loose:
        raise ConfigError(f"data folder {folder} holds span-<N>/ folders and CSV files ({', '.join(loose[:3])}), "
                          "which no run would read: move the files into a span folder or out")
    return spans


def _scan(path: Path) -> tuple[list[str], int]:
    """(column names as CsvExampleGen reads them, number of data rows), or a ConfigError for what
    would fail CsvExampleGen mid-run: a row of another width, broken quoting, text that is not UTF-8.
    One streaming pass; the bundled 15k rows take about 30 ms."""
    try:
        with open_data_text(path, newline="\n") as handle:  # lines end at LF alone, as CsvExampleGen's
            header = handle.readline()
            if not header:
                raise ConfigError(f"data file {path} is empty: it needs a header row and data rows")
            if "\r" in header.rstrip("\r\n"):
                raise ConfigError(
                    f"data file {path} ends its lines with CR alone (classic Mac, Excel's 'CSV (Macintosh)'): "
                    "CsvExampleGen splits lines at LF and would read the whole file as its header; "
                    "save it with LF or CRLF line endings"
                )
            if not header.strip():
                raise ConfigError(f"data file {path} starts with a blank line: CsvExampleGen reads the first line "
                                  "as the column names; remove the lines above the header row")
            names = header_names(header)
            _check_column_names(path, names)
            quotes = _QuoteCounter(handle, first_line=2)
            reader = csv.reader(quotes)
            rows = 0
            for values in reader:
                if not values:  # a blank line: CsvExampleGen skips it too
                    continue
                if quotes.count % 2 and any('"' in value for value in values):
                    # Python's csv kept the quote as a character; CsvExampleGen opens a quoted value there
                    raise ConfigError(
                        f"data file {path} line {quotes.opened}: a quote inside an unquoted value; CsvExampleGen "
                        "would read it as the start of a quoted value and run on into the next line: quote the "
                        'whole value, doubling the quote ("Ca""sh"), or remove it'
                    )
                if values == names:
                    raise ConfigError(
                        f"data file {path} line {reader.line_num + 1} repeats the header row (files joined with "
                        "`cat`?): CsvExampleGen would read it as data; remove it, or keep the parts as separate files"
                    )
                if len(values) != len(names):
                    raise ConfigError(
                        f"data file {path} line {reader.line_num + 1} has {len(values)} values "
                        f"where the header has {len(names)} columns"
                    )
                rows += 1
            if quotes.count % 2:
                raise ConfigError(f"data file {path} line {quotes.opened}: a quoted value is never closed")
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:  # BadGzipFile is an OSError: caught first
        raise ConfigError(f"data file {path} is not a readable gzip file ({error}): a name ending in .gz is read as "
                          "gzip; copy or compress it again whole, or drop the .gz from a plain CSV") from None
    except OSError as error:
        raise ConfigError(f"data file {path} cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"data file {path} line {_first_undecodable_line(path)} is not UTF-8 text ({error.reason}, "
                          f"byte {error.object[error.start]:#04x}): CsvExampleGen reads UTF-8; save it as such") from None
    except csv.Error as error:
        if quotes.count % 2:
            raise ConfigError(f"data file {path} line {quotes.opened}: a quoted value is never closed ({error})") from None
        if "new-line character seen in unquoted field" in str(error):
            raise ConfigError(f"data file {path} line {reader.line_num + 1} holds a carriage return (CR) outside "
                              "quotes: CsvExampleGen splits lines at LF alone and cannot parse it; remove it "
                              "(or quote the value)") from None
        if "field larger than field limit" in str(error):
            raise ConfigError(f"data file {path} line {reader.line_num + 1} holds a value longer than "
                              f"{csv.field_size_limit()} characters, more than CsvExampleGen's CSV parser "
                              "(Python's csv) takes: shorten or drop it") from None
        raise ConfigError(f"data file {path} line {reader.line_num + 1} is not valid CSV: {error}") from None
    return names, rows


def _first_undecodable_line(path: Path) -> int:
    """Text is decoded in blocks, so the error does not know its line; a second pass over the bytes does."""
    with open_data_file(path) as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def _check_column_names(path: Path, names: list[str]) -> None:
    """CsvExampleGen keeps every character of a name but its quotes (header_names): one with spaces
    around it, or a stray quote, would reach the data gate as a new column plus a missing one.
    A first line of half numbers or more is data: a file without its header row (e.g. a later part of a split CSV)."""
    separators = [mark for mark in OTHER_SEPARATORS if len(names) == 1 and mark in names[0]]
    if separators:
        raise ConfigError(f"data file {path} separates its columns with {separators[0]!r}, not commas "
                          "(CsvExampleGen would read its whole header as one column): save it as comma-separated CSV")
    given = [name for name in names if name]
    if given and sum(_is_number(name) for name in given) * 2 >= len(given):
        raise ConfigError(f"data file {path} has no header row: its first line is data ({_preview(names)}); "
                          "CsvExampleGen reads the first line of every file as the column names")
    for name in names:
        if '"' in name:
            raise ConfigError(f"data file {path} has a quote inside the column name {name!r} in its header row: "
                              "quote the whole name, doubling the quote, or remove it")
        if name != name.strip():
            raise ConfigError(f"data file {path} has spaces around the column name {name!r} in its header row: "
                              "CsvExampleGen would keep them in the name")
        if not name:
            raise ConfigError(f"data file {path} has an empty column name in its header row")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"data file {path} names the column {repeated[0]} twice in its header row")


def _preview(names: list[str]) -> str:
    text = ",".join(names)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# Per schema type: whether a cell reads as CsvExampleGen reads that type, what it is when not, and the fix.
CELL_CHECKS = {
    "INT": (whole_number, "is not a whole number within 64 bits", "a missing value is an empty cell"),
    "FLOAT": (_is_number, "is not a number", "a missing value is an empty cell"),
    # CsvExampleGen keeps them: ' Cash ' is outside a closed domain, and in an open one a category clients never send
    "BYTES": (lambda cell: cell == cell.strip(), "has spaces around it", "CsvExampleGen keeps them in the value"),
}


def cells_off_their_type(folder: str, column_types: Mapping[str, str]) -> list[str]:
    """Where the rows are that the data gate refuses without saying where, one line each: per column the first
    cell that does not read as the schema's type (`NA`, `1,234.50`, `2.5` in an INT column: TFDV says only that the
    column held a STRING or FLOAT, in both splits; ` Cash ` with spaces, which TFDV quotes without them showing),
    and the rows with no value at all (what a spreadsheet leaves below its data: TFDV counts them in every column
    as "fewer values than expected"). Empty when there are none; for files check_csv_folder passed (a second
    pass, ~100 ms for 15k rows)."""
    first: dict[str, tuple[str, int, str, int]] = {}
    empty: list[tuple[str, int]] = []
    for path in (p for p in entries(folder) if is_csv(p.name) and p.is_file()):  # the run's pre-check read them
        with open_data_text(path, newline="\n") as handle:
            names = header_names(handle.readline())
            reader = csv.reader(handle)
            checked = [(index, name, CELL_CHECKS[column_types[name]][0]) for index, name in enumerate(names)
                       if column_types.get(name) in CELL_CHECKS]
            for values in reader:
                line = reader.line_num + 1  # the header was read before the reader
                if values and not any(values):
                    empty.append((path.name, line))
                for index, name, fits in checked:
                    cell = values[index] if index < len(values) else ""
                    if cell and not fits(cell):
                        seen = first.get(name)
                        first[name] = seen[:3] + (seen[3] + 1,) if seen else (path.name, line, cell, 1)
    lines = []
    for name, (file, line, cell, count) in sorted(first.items()):
        _, problem, fix = CELL_CHECKS[column_types[name]]
        lines.append(f"  {name}: {cell!r} in {file} line {line} {problem} (the schema's {column_types[name]}; "
                     f"{count} such cell{'s' if count > 1 else ''}; {fix})")
    if empty:
        shown = ", ".join(f"{file} line {line}" for file, line in empty[:3]) + (" ..." if len(empty) > 3 else "")
        lines.append(f"  {len(empty)} row{'s' if len(empty) > 1 else ''} with no value in any column ({shown}): "
                     "a spreadsheet leaves such rows below its data; delete them")
    return lines


def where_in_the_data(data_root: str, span: int | None, schema_path: str) -> list[str]:
    """cells_off_their_type for a run's folder (its span's) against its schema; empty when the folder changed since
    the run read it, so the gate's own lines stand."""
    from pipeline.configs import column_types, parse_schema_text

    folder = data_root if span is None else os.path.join(data_root, f"span-{span}")
    try:
        return cells_off_their_type(folder, column_types(parse_schema_text(schema_path)))
    except (ConfigError, OSError, ValueError, csv.Error):  # ValueError: UnicodeDecodeError; a file changed since
        return []


class _QuoteCounter:
    """The lines of a file, counting `"` on the way: an odd total is CsvExampleGen's
    "unbalanced quotes" failure, which Python's csv reader lets through at the end of a file."""

    def __init__(self, lines: Iterator[str], first_line: int = 1) -> None:
        self.lines = lines
        self.count = 0
        self.first_line = first_line
        self.opened = 0  # the line where the quote still open was opened

    def __iter__(self) -> Iterator[str]:
        for number, line in enumerate(self.lines, start=self.first_line):
            was_open = self.count % 2
            self.count += line.count('"')
            if self.count % 2 and not was_open:
                self.opened = number
            yield line
