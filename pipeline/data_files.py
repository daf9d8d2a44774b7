"""Which files are data and how one is opened and its header read: by the data check before a run
(pipeline/data.py), by the 'nothing changed' check, and by CsvExampleGen's executor (components/csv_rows.py).

A module of its own, importing nothing of the project: CsvExampleGen's cache key
holds the code its executor runs (pipeline/fingerprints.py), and the rest of the
data check is not that code.
"""
from __future__ import annotations

import contextlib
import csv
import gzip
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

CSV_NAMES = (".csv", ".csv.gz")  # plain or gzip-compressed, any case (DATA.CSV)
BOM = "\ufeff"  # the UTF-8 byte-order mark Excel's "CSV UTF-8" starts a file with


def header_names(line: str) -> list[str]:
    """The column names in a header line, as CsvExampleGen's executor reads them: TFX's read (the line
    stripped, then split at commas) but parsed as CSV, so a quoted name loses its quotes (R's write.csv,
    pandas' QUOTE_ALL), and without the byte-order mark Excel's "CSV UTF-8" starts a file with."""
    return next(csv.reader([line.removeprefix(BOM).strip()]), None) or [""]


# What Windows' Explorer writes into a folder it shows (thumbnail caches, folder settings), by lower-case name.
WINDOWS_BOOKKEEPING = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini"})


def is_hidden(name: str) -> bool:
    """A file a system or an editor keeps beside the data, not data: a name starting with '.' (macOS's .DS_Store
    and ._<file> (AppleDouble), LibreOffice's .~lock.<file>#, an editor's .<file>.swp, Jupyter's
    .ipynb_checkpoints/), with '~$' (the owner file Excel and Word write beside a file they have open:
    ~$data.csv) or Windows Explorer's Thumbs.db and desktop.ini. The checks here, CsvExampleGen
    (csv_rows.data_files) and both caches' fingerprints leave them out, where TensorFlow's glob of `<folder>/*`
    matches them."""
    return name.startswith((".", "~$")) or name.lower() in WINDOWS_BOOKKEEPING


def is_csv(name: str) -> bool:
    """A data file's name: `.csv` or `.csv.gz`, in any case."""
    return name.lower().endswith(CSV_NAMES)


@contextlib.contextmanager
def open_data_file(path: str | Path, open_stored: Callable[[str], BinaryIO] | None = None) -> Iterator[BinaryIO]:
    """A data file's bytes, decompressed when its name ends in .gz (`*.csv.gz`: Beam also picks gzip by the name).
    `open_stored` opens the bytes as stored (default: a local file; CsvExampleGen passes Beam's, for gs://).
    A file that is not gzip after all fails as it is read: gzip.BadGzipFile, EOFError (cut short) or zlib.error."""
    with (open_stored or (lambda name: open(name, "rb")))(str(path)) as stored:
        if not str(path).lower().endswith(".gz"):
            yield stored
            return
        with gzip.GzipFile(fileobj=stored, mode="rb") as unzipped:
            yield unzipped


INT64_RANGE = 2**63


def whole_number(cell: str | bytes) -> bool:
    """`8`, or `8.0` (pandas writes an int column with gaps as floats): a value an int64 column holds exactly."""
    try:
        return -INT64_RANGE <= int(cell) < INT64_RANGE
    except ValueError:
        pass
    try:
        value = float(cell)
    except ValueError:
        return False
    return value.is_integer() and -INT64_RANGE <= value < INT64_RANGE
