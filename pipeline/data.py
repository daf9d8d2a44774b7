"""Locating and checking the CSV input folder before any TFX work starts."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from pipeline.configs import ConfigError

UTF8_BOM = b"\xef\xbb\xbf"


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
    files = sorted(path.iterdir())  # what CsvExampleGen's `*` pattern reads, hidden files and folders included
    folders = [p.name for p in files if p.is_dir()]
    if folders:
        raise ConfigError(
            f"data folder {folder} holds folders ({', '.join(folders[:3])}) that CsvExampleGen would read as "
            "files: move them out, or name span folders span-<N> and hold nothing else"
        )
    if not files:
        raise ConfigError(f"data folder {folder} is empty: it needs at least one CSV file with a header row")
    not_csv = [p.name for p in files if p.suffix.lower() != ".csv"]
    if not_csv:
        raise ConfigError(
            f"data folder {folder} holds files that are not .csv ({', '.join(not_csv[:3])}); "
            "CsvExampleGen reads every file in it"
        )
    headers = {p: _header_and_first_row(p) for p in files}
    first = files[0]
    for p, (header, _) in headers.items():
        if header.startswith(UTF8_BOM):
            raise ConfigError(
                f"data file {p} starts with a UTF-8 byte-order mark (Excel's 'CSV UTF-8'), which would become "
                "part of the first column's name: save it as plain CSV"
            )
        if header != headers[first][0]:
            raise ConfigError(
                f"data files {first.name} and {p.name} in {folder} have different header rows: "
                "CsvExampleGen reads the whole folder with one header"
            )
    if not any(row for _, row in headers.values()):
        raise ConfigError(f"data folder {folder} has no data rows: its CSV files hold only a header")
    return files



def _header_and_first_row(path: Path) -> tuple[bytes, bytes]:
    """The header line and the first non-blank line after it (b"" if none), read from the file's start only."""
    with open(path, "rb") as handle:
        header = handle.readline()
        if not header:
            raise ConfigError(f"data file {path} is empty: it needs a header row and data rows")
        for line in handle:
            if line.strip():
                return header.rstrip(b"\r\n"), line
    return header.rstrip(b"\r\n"), b""
