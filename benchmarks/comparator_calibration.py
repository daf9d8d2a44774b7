"""Where the schema's skew and drift thresholds come from: noise, yearly shifts and synthetic shifts, measured.

On the bundled taxi data, through the code `taxi monitor` (monitoring.skew.exact_skew)
and the data gate (monitoring.distances.compare_batches) run:

- noise: random samples of the data scored against all of it. Nothing should be
  skew. TFDV's histogram comparison of the same samples is shown next to it, which
  is the false alarm that made the monitor count exactly;
- years: 2/3 of 2013 as the training data, scored against its other third and
  against 2014, 2015 and 2016;
- synthetic: the other third of 2013 with fares or trip times scaled up, or pickup
  points moved north;
- drift: random halves of the data, and each year against the one before, with the
  drift comparators (TFDV's histogram JSD beside the exact one).

    .venv/bin/python benchmarks/comparator_calibration.py [--draws 30] [--sizes 500,2000] [--seed 0]

Writes benchmarks/results/comparator_calibration.{json,md}.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.features import SERVING_FEATURES  # noqa: E402
from monitoring import distances, skew  # noqa: E402
from monitoring.requests import Window  # noqa: E402
from pipeline import data  # noqa: E402

CATEGORICAL = ("payment_type", "company")


def _rows() -> list[dict]:
    with open(Path(data.bundled_taxi_data()) / "data.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _year(row: dict) -> int:
    return dt.datetime.fromtimestamp(int(row["trip_start_timestamp"]), dt.timezone.utc).year


def _batch(rows: list[dict], schema, change: tuple[str, object] | None = None):  # noqa: ANN001, ANN202
    def value(name: str, text: str) -> object:
        return text if name in CATEGORICAL else (float(text) if text else math.nan)

    columns = {n: [value(n, r[n]) for r in rows] for n in SERVING_FEATURES}
    if change:
        name, how = change
        columns[name] = [how(v) for v in columns[name]]
    return skew.served_batch(Window(columns, len(rows), 1, [], {}, 0, 0), schema)


def _scores(training, served, schema) -> dict[str, dict]:  # noqa: ANN001
    return {r.feature: {"distance": r.distance, "threshold": r.threshold, "p_value": r.p_value,
                        "skew": r.verdict != "ok"} for r in skew.exact_skew(training, served, schema)}


def _tfdv_scores(training_stats, served, schema) -> dict[str, float]:  # noqa: ANN001
    import tensorflow_data_validation as tfdv

    measured = tfdv.validate_statistics(training_stats, schema, environment=skew.SERVING_ENV,
                                        serving_statistics=skew.serving_statistics(served, schema))
    return {".".join(i.path.step): m.value for i in measured.drift_skew_info for m in i.skew_measurements}


def _drift(previous, current, schema) -> dict[str, dict]:  # noqa: ANN001
    """Exact and TFDV-histogram drift of `current` against `previous`, per drift comparator."""
    import tensorflow_data_validation as tfdv

    found = tfdv.validate_statistics(skew.serving_statistics(current, schema), schema,
                                     previous_statistics=skew.serving_statistics(previous, schema))
    tfdv_values = {".".join(i.path.step): m.value for i in found.drift_skew_info for m in i.drift_measurements}
    return {c.feature: {"distance": c.distance.value, "threshold": c.threshold, "p_value": c.distance.p_value,
                        "drift": c.over, "tfdv_histogram": tfdv_values.get(c.feature)}
            for c in distances.compare_batches(distances.comparators(schema, "drift_comparator"), previous, current)}


def _span(values: list[float]) -> str:
    return f"{min(values):.4f}-{max(values):.4f}" if values else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--sizes", default="500,2000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes {args.sizes!r} must be whole numbers separated by commas, e.g. 500,2000")
    if args.draws < 1 or any(s < 1 for s in sizes):
        parser.error("--draws and --sizes must be positive")
    if args.seed < 0:
        parser.error("--seed must be 0 or more")

    schema = skew.serving_schema(ROOT / "schema" / "schema.pbtxt", set(SERVING_FEATURES))
    rng = np.random.default_rng(args.seed)
    rows = _rows()
    if max(sizes) > len(rows):
        parser.error(f"--sizes {max(sizes)} is more rows than the bundled data holds ({len(rows)})")
    everything = _batch(rows, schema)
    everything_stats = skew.serving_statistics(everything, schema)
    noise = []
    for size in sizes:
        for _ in range(args.draws):
            sample = _batch([rows[i] for i in rng.choice(len(rows), size, replace=False)], schema)
            noise.append({"size": size, "exact": _scores(everything, sample, schema),
                          "tfdv": _tfdv_scores(everything_stats, sample, schema)})

    year_2013 = [r for r in rows if _year(r) == 2013]
    order = rng.permutation(len(year_2013))
    cut = len(year_2013) * 2 // 3
    training = _batch([year_2013[i] for i in order[:cut]], schema)
    other_third = [year_2013[i] for i in order[cut:]]
    cases = {"2013, other third": _batch(other_third, schema)}
    for year in (2014, 2015, 2016):
        cases[str(year)] = _batch([r for r in rows if _year(r) == year], schema)
    for label, change in (("fares x1.15", ("fare", lambda v: v * 1.15)), ("fares x1.25", ("fare", lambda v: v * 1.25)),
                          ("trip_seconds x1.2", ("trip_seconds", lambda v: v * 1.2)),
                          ("pickup_latitude +0.005", ("pickup_latitude", lambda v: v + 0.005))):
        cases[f"2013 third, {label}"] = _batch(other_third, schema, change)
        cases[f"500 of it, {label}"] = _batch(other_third[:500], schema, change)
    shifts = {name: _scores(training, served, schema) for name, served in cases.items()}
    drift = {}
    for draw in range(3):
        order = rng.permutation(len(rows))
        half = len(rows) // 2
        drift[f"random halves, draw {draw + 1}"] = _drift(_batch([rows[i] for i in order[:half]], schema),
                                                          _batch([rows[i] for i in order[half:]], schema), schema)
    years = {year: _batch([r for r in rows if _year(r) == year], schema) for year in (2013, 2014, 2015, 2016)}
    for year in (2014, 2015, 2016):
        drift[f"{year} after {year - 1}"] = _drift(years[year - 1], years[year], schema)

    features = list(shifts["2014"])
    summary = []
    for size in sizes:
        draws = [n for n in noise if n["size"] == size]
        for f in features:
            exact = [d["exact"][f]["distance"] for d in draws if d["exact"][f]["distance"] is not None]
            summary.append({"size": size, "feature": f, "draws": len(draws), "exact": _span(exact),
                            "over_threshold": sum(d["exact"][f]["distance"] is not None
                                                  and d["exact"][f]["distance"] > d["exact"][f]["threshold"]
                                                  for d in draws),
                            "skew": sum(d["exact"][f]["skew"] for d in draws),
                            "tfdv_histogram_jsd": _span([d["tfdv"][f] for d in draws if f in d["tfdv"]])})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comparator_calibration.json").write_text(json.dumps({"noise": summary, "shifts": shifts, "drift": drift}, indent=1))
    lines = ["# Skew and drift calibration (`benchmarks/comparator_calibration.py`)", "",
             f"Noise: {args.draws} random samples per size of the bundled data against all of it.", "",
             "| size | feature | exact distance | over threshold | skew verdicts | TFDV histogram JSD |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['size']} | {r['feature']} | {r['exact']} | {r['over_threshold']}/{r['draws']} | "
              f"{r['skew']}/{r['draws']} | {r['tfdv_histogram_jsd']} |" for r in summary]
    lines += ["", "Shifts: 2/3 of 2013 as training data (`!` = skew).", "",
              "| served | " + " | ".join(f"{f} (> {shifts['2014'][f]['threshold']})" for f in features) + " |",
              "|---|" + "---|" * len(features)]
    for name, scores in shifts.items():
        cells = [f"{s['distance']:.4f}{' !' if s['skew'] else ''}" for s in (scores[f] for f in features)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    drifted = list(drift["2014 after 2013"])
    lines += ["", "Drift: exact distance (TFDV histogram JSD in brackets; `!` = the gate stops).", "",
              "| spans | " + " | ".join(f"{f} (> {drift['2014 after 2013'][f]['threshold']})" for f in drifted) + " |",
              "|---|" + "---|" * len(drifted)]
    for name, scores in drift.items():
        cells = []
        for f in drifted:
            s = scores[f]
            tfdv = "" if s["tfdv_histogram"] is None else f" ({s['tfdv_histogram']:.3f})"
            cells.append(f"{s['distance']:.4f}{tfdv}{' !' if s['drift'] else ''}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (args.out / "comparator_calibration.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    false_alarms = sum(any(s["skew"] for s in n["exact"].values()) for n in noise)
    print(f"\nfalse alarms: {false_alarms} of {len(noise)} random samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
