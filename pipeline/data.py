"""Locating and checking the CSV input folder before any TFX work starts."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from pipeline.configs import ConfigError


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
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ConfigError(f"data folder {folder} is empty: it needs at least one CSV file with a header row")
    not_csv = [p.name for p in files if p.suffix.lower() != ".csv"]
    if not_csv:
        raise ConfigError(
            f"data folder {folder} holds files that are not .csv ({', '.join(not_csv[:3])}); "
            "CsvExampleGen reads every file in it"
        )
    for p in files:
        if os.path.getsize(p) == 0:
            raise ConfigError(f"data file {p} is empty: it needs a header row and data rows")
    return files
