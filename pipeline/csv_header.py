"""How a CSV header line is read: by the data check before a run and by CsvExampleGen's executor.

A module of its own, importing nothing of the project: CsvExampleGen's cache key
holds the code its executor runs (pipeline/fingerprints.py), and the rest of the
data check is not that code.
"""
from __future__ import annotations

import csv

BOM = "\ufeff"  # the UTF-8 byte-order mark Excel's "CSV UTF-8" starts a file with


def header_names(line: str) -> list[str]:
    """The column names in a header line, as CsvExampleGen's executor reads them: TFX's read (the line
    stripped, then split at commas) but parsed as CSV, so a quoted name loses its quotes (R's write.csv,
    pandas' QUOTE_ALL), and without the byte-order mark Excel's "CSV UTF-8" starts a file with."""
    return next(csv.reader([line.removeprefix(BOM).strip()]), None) or [""]
