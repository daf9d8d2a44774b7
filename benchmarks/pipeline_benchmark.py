"""Side by side on this machine and the bundled data: the stock TFX taxi template vs this project.

    python benchmarks/pipeline_benchmark.py [--runs 3]

(a) `tfx template copy --model=taxi` with every component enabled (its
components.append lines uncommented), run with its own local_runner.py;
(b) this project's local_runner.py, cold (empty output) and re-run (nothing changed).
Runs alternate (a, b cold, b re-run) so machine noise hits both alike. Wall time
and peak RSS (GNU time's max RSS of the largest process) per run; medians, and
the median of each run's ratio to the stock run beside it, go to
benchmarks/results/pipeline.json and pipeline.md.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TIME = "/usr/bin/time"


def timed(command: list[str], cwd: Path) -> dict:
    started = time.monotonic()
    done = subprocess.run([TIME, "-f", "maxrss_kb=%M", *command], cwd=cwd, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed (exit {done.returncode}): {done.stderr.strip()[-400:]}")
    rss = int(re.findall(r"maxrss_kb=(\d+)", done.stderr)[-1])
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(rss / 1024, 1)}


def stock_template(workdir: Path) -> Path:
    """The template as `tfx template copy` writes it, with every component enabled."""
    tfx_cli = Path(sys.executable).parent / "tfx"
    destination = workdir / "stock_taxi"
    subprocess.run(
        [str(tfx_cli), "template", "copy", "--model=taxi", "--pipeline_name=stock-taxi", f"--destination_path={destination}"],
        check=True, capture_output=True, text=True,
    )
    pipeline_py = destination / "pipeline" / "pipeline.py"
    text = re.sub(r"#\s*components\.append\(", "components.append(", pipeline_py.read_text())
    pipeline_py.write_text(text)
    return destination


def clean_stock(template: Path) -> None:
    for name in ("tfx_pipeline_output", "tfx_metadata"):
        shutil.rmtree(template / name, ignore_errors=True)


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each (default: %(default)s)")
    args = parser.parse_args()
    if args.runs < 1:
        print("error: --runs must be at least 1", file=sys.stderr)
        return 2
    if not Path(TIME).exists():
        print("error: GNU time (/usr/bin/time) is needed for peak memory: apt-get install time", file=sys.stderr)
        return 2
    runs: dict[str, list[dict]] = {"stock_template": [], "project_cold": [], "project_rerun": []}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        template = stock_template(workdir)
        for i in range(args.runs):
            clean_stock(template)
            runs["stock_template"].append(timed([sys.executable, "local_runner.py"], template))
            output = workdir / f"project_{i}"
            ours = [sys.executable, str(ROOT / "local_runner.py"), "--output", str(output)]
            runs["project_cold"].append(timed(ours, ROOT))
            runs["project_rerun"].append(timed(ours, ROOT))
            print(f"run {i + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1]['seconds']} s" for k, v in runs.items()), flush=True)
    summary = {
        name: {
            "median_seconds": median([r["seconds"] for r in values]),
            "median_peak_rss_mb": median([r["peak_rss_mb"] for r in values]),
            "runs": values,
        }
        for name, values in runs.items()
    }
    # Each run's ratio is taken against the stock run just before it (same
    # machine load); the median of those is the figure the targets are read on.
    stock_runs = [r["seconds"] for r in runs["stock_template"]]
    ratios = {
        f"{name}_vs_stock": round(statistics.median(
            r["seconds"] / stock for r, stock in zip(runs[f"project_{name}"], stock_runs, strict=True)
        ), 3)
        for name in ("cold", "rerun")
    }
    targets = {"cold_vs_stock": 0.5, "rerun_vs_stock": 0.15}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps({"summary": summary, "ratios": ratios, "targets": targets}, indent=2))
    lines = [
        f"# Pipeline wall time, {args.runs} run(s) each, medians", "",
        "| run | median wall s | median peak RSS MB |", "|---|---|---|",
        *[f"| {k} | {v['median_seconds']} | {v['median_peak_rss_mb']} |" for k, v in summary.items()], "",
        "| ratio (median of per-run ratios) | measured | target |", "|---|---|---|",
        *[f"| {k} | {v} | <= {targets[k]} |" for k, v in ratios.items()],
    ]
    (RESULTS / "pipeline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
