"""Where `taxi monitor`'s skew thresholds come from: noise, yearly shifts and synthetic shifts, measured.

On the bundled taxi data, through the monitor's own code (monitoring.skew.exact_skew):

- noise: random samples of the data scored against all of it. Nothing should be
  skew. TFDV's histogram comparison of the same samples is shown next to it, which
  is the false alarm that made the monitor count exactly;
- years: 2/3 of 2013 as the training data, scored against its other third and
  against 2014, 2015 and 2016;
- synthetic: the other third of 2013 with fares or trip times scaled up, or pickup
  points moved north.

    .venv/bin/python benchmarks/skew_calibration.py [--draws 30] [--sizes 500,2000] [--seed 0]

Writes benchmarks/results/skew_calibration.{json,md}.
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
from monitoring import skew  # noqa: E402
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


def _span(values: list[float]) -> str:
    return f"{min(values):.4f}-{max(values):.4f}" if values else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--sizes", default="500,2000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.draws < 1 or any(s < 1 for s in sizes):
        parser.error("--draws and --sizes must be positive")

    schema = skew.serving_schema(ROOT / "schema" / "schema.pbtxt", set(SERVING_FEATURES))
    rng = np.random.default_rng(args.seed)
    rows = _rows()
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
    (args.out / "skew_calibration.json").write_text(json.dumps({"noise": summary, "shifts": shifts}, indent=1))
    lines = ["# Skew calibration (`benchmarks/skew_calibration.py`)", "",
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
    (args.out / "skew_calibration.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    false_alarms = sum(any(s["skew"] for s in n["exact"].values()) for n in noise)
    print(f"\nfalse alarms: {false_alarms} of {len(noise)} random samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
