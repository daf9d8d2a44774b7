"""Data spans: `span-<N>/` folders of CSV files, and a tool that cuts the taxi data into them.

    python -m pipeline.spans split --out DIR [--by year|quarter] [--data DIR]

A data folder either holds CSV files directly (one implicit span) or
`span-1/`, `span-2/`, ... folders; a run trains on the latest span unless told
otherwise, and compares its statistics with the span before it (drift).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import glob
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline import data
from pipeline.configs import INT32_MAX, ConfigError

SPAN_PATTERN = "span-{SPAN}/*"
TIMESTAMP = "trip_start_timestamp"


def list_spans(folder: str) -> list[int]:
    """Span numbers present under folder (empty when it holds plain CSV files)."""
    path = Path(folder)
    if not path.is_dir():
        return []
    found = data.span_folders(folder, data.entries(folder))
    padded = sorted(name for name, number in found.items() if name != f"span-{number}")
    if padded:
        raise ConfigError(f"span folder {Path(folder) / padded[0]}: write span numbers without leading zeros "
                          f"(span-{found[padded[0]]}), as the pipeline's span-{{SPAN}} pattern names them")
    too_big = sorted(name for name, number in found.items() if number > INT32_MAX)
    if too_big:
        raise ConfigError(f"span folder {Path(folder) / too_big[0]}: span numbers go up to {INT32_MAX} "
                          "(TFX keeps them as 32-bit integers); number the spans 1, 2, ... or by date (20240601)")
    return sorted(found.values())


def input_fingerprint(folder: str, span: int | None) -> str:
    """The fingerprint ExampleGen records for a run on `span` of `folder` (None: a flat folder), for its files as
    they are now: the same files (its pattern's glob, hidden ones left out, sorted) and the same hash."""
    from pipeline.data_files import is_hidden
    from pipeline.fingerprints import split_fingerprint

    pattern = os.path.join(glob.escape(folder), "*" if span is None else SPAN_PATTERN.format(SPAN=span))
    return split_fingerprint("single_split", sorted(p for p in glob.glob(pattern) if not is_hidden(os.path.basename(p))))


def choose_spans(folder: str, span: int | None,
                 stopped: Callable[[], set[int]] = set) -> tuple[int | None, int | None]:
    """(span to train on, its drift baseline) for a spanned folder; (None, None) for a flat one. The baseline is the
    newest earlier span not in `stopped()` (those the data gate stopped and never let through), else the span
    before: a broken export is no baseline, or the fixed span after it is stopped for drift against it too."""
    spans = list_spans(folder)
    if not spans:
        if span is not None:
            raise ConfigError(f"--span {span} given but {folder} has no span-<N>/ folders")
        data.check_csv_folder(folder)
        return None, None
    chosen = spans[-1] if span is None else span
    if chosen not in spans:
        raise ConfigError(f"span {chosen} not found in {folder} (spans there: {', '.join(map(str, spans))})")
    data.check_csv_folder(str(Path(folder) / f"span-{chosen}"))
    earlier = [s for s in spans if s < chosen]
    if not earlier:
        return chosen, None
    refused = stopped() if len(earlier) > 1 else set()
    baseline = max((s for s in earlier if s not in refused), default=earlier[-1])
    data.check_csv_folder(str(Path(folder) / f"span-{baseline}"))
    return chosen, baseline


def _period(row: dict, by: str) -> str:
    moment = datetime.datetime.fromtimestamp(int(row[TIMESTAMP]), tz=datetime.timezone.utc)
    return f"{moment.year}" if by == "year" else f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"


def split(source: str, out: str, by: str) -> dict[int, tuple[str, int]]:
    """Write one span per period, oldest first; returns {span: (period, rows)}."""
    files = data.check_csv_folder(source)
    periods: dict[str, list[dict]] = {}
    header: list[str] = []
    for file in files:
        with data.open_data_text(file, encoding="utf-8-sig", newline="") as handle:  # a .csv.gz decompressed
            reader = csv.DictReader(handle)
            header = header or list(reader.fieldnames or [])
            if TIMESTAMP not in header:
                raise ConfigError(f"{file} has no {TIMESTAMP} column to cut spans by")
            for row in reader:
                if not row[TIMESTAMP]:
                    continue
                try:
                    period = _period(row, by)
                except (ValueError, OverflowError, OSError):
                    raise ConfigError(f"{file} line {reader.line_num}: {TIMESTAMP} {row[TIMESTAMP]!r} is not "
                                      "seconds since 1970 (an integer)") from None
                periods.setdefault(period, []).append(row)
    target = Path(out)
    if target.resolve() == Path(source).resolve():
        raise ConfigError(f"--out {out} is the source folder; give a new folder for the span-<N>/ folders")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder to create span-<N>/ folders in")
    if list_spans(out):
        raise ConfigError(f"{out} already holds spans; choose an empty folder")
    present = [path.name for path in data.entries(out)] if target.is_dir() else []
    if present:  # CSV files beside span folders make a folder no run reads; a file may hold a span's name
        raise ConfigError(f"--out {out} is not empty (it holds {', '.join(present[:3])}); choose an empty or new "
                          "folder for the span-<N>/ folders")
    written = {}
    try:
        for number, period in enumerate(sorted(periods), start=1):
            folder = target / f"span-{number}"
            folder.mkdir(parents=True)
            written[number] = (period, 0)
            with open(folder / "data.csv", "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=header)
                writer.writeheader()
                writer.writerows(periods[period])
            written[number] = (period, len(periods[period]))
    except OSError as error:
        for number in written:  # only what this split created: a half-written set is no run's data
            shutil.rmtree(target / f"span-{number}", ignore_errors=True)
        raise ConfigError(f"cannot write spans to {out}: {error.strerror or error}") from None
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.spans", description="Cut CSV data into span-<N>/ folders by time.")
    commands = parser.add_subparsers(dest="command", required=True)
    cut = commands.add_parser("split", help="one span per year or quarter of trip_start_timestamp")
    cut.add_argument("--out", required=True, help="folder to create span-<N>/ folders in")
    cut.add_argument("--by", choices=("year", "quarter"), default="year")
    cut.add_argument("--data", help="source CSV folder (default: the bundled taxi sample)")
    args = parser.parse_args(argv)
    try:
        written = split(args.data or data.bundled_taxi_data(), args.out, args.by)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for number, (period, rows) in written.items():
        print(f"span-{number}: {period}, {rows} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
