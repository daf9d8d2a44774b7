"""How good can a model be on the pipeline's own split? A gradient-boosted tree as the yardstick.

    python benchmarks/quality_reference.py [--output tfx_output] [--thirds 8]

Reads the train and eval splits that CsvExampleGen gave the newest completed
run, as <output>/metadata.sqlite records them (run `make run` first), derives the label as
preprocessing does (tips > 20% of a positive fare), and fits scikit-learn's
HistGradientBoostingClassifier (scikit-learn and pandas come with tfx's
own dependencies) on every raw column except the tips:
  (a) on the pipeline's own split: train -> eval, the rows the Evaluator scores;
  (b) on --thirds random thirds of the same rows held out, the way the reference
      figure for this data (AUC 0.956 / accuracy 0.905) was taken.
(a) is the bar the Keras model's Evaluator metrics can be read against; the
spread of (b) shows how much of a gap to that figure is the draw of eval rows.
Writes benchmarks/results/quality_reference.json and .md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from models import features

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def latest_examples(output: Path) -> Path:
    """The Examples artifact CsvExampleGen gave the newest completed run (ran or cached), per MLMD."""
    from monitoring.lineage import EXAMPLE_GEN_NODE
    from report import mlmd

    try:
        store = mlmd.open_store(str(output))
        for run_id in reversed(mlmd.run_ids(store)):
            executions = mlmd.run_executions(store, run_id)
            if mlmd.outcome(executions) != "completed":
                continue
            for execution in executions:
                if execution.node == EXAMPLE_GEN_NODE and execution.outputs.get("examples"):
                    return Path(execution.outputs["examples"][0].uri)
        problem = "no completed run recorded"
    except mlmd.StoreError as error:
        problem = str(error)
    print(f"error: no CsvExampleGen output in {output}: {problem}", file=sys.stderr)
    raise SystemExit(2)  # bad input, as `taxi runs` says it


def split_files(examples: Path, split: str) -> list[str]:
    return [str(p) for p in sorted((examples / f"Split-{split}").glob("*.gz"))]


def read_rows(files: list[str]):  # noqa: ANN201 - pandas imported lazily
    import pandas as pd
    import tensorflow as tf

    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        row = {}
        for name, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            values = getattr(feature, kind).value if kind else []
            value = values[0] if len(values) else None
            row[name] = value.decode() if isinstance(value, bytes) else value
        rows.append(row)
    return pd.DataFrame(rows)


def design(frame):  # noqa: ANN001, ANN201
    """(X, y): every raw column but the label source; strings as categories."""
    fare = frame[features.FARE_KEY].astype(float)
    tips = frame[features.TIPS_KEY].astype(float)
    y = ((fare > 0) & (tips > features.BIG_TIP_FRACTION * fare)).astype(int)
    x = frame.drop(columns=[features.TIPS_KEY]).copy()
    for name in x.columns:
        if features.column_dtype(name) == "string":
            x[name] = x[name].fillna("").astype("category")
        else:
            x[name] = x[name].astype(float)
    return x, y


def score(x_train, y_train, x_eval, y_eval, seed: int = 0) -> dict:  # noqa: ANN001
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import accuracy_score, roc_auc_score

    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
    probability = model.fit(x_train, y_train).predict_proba(x_eval)[:, 1]
    return {
        "auc": round(float(roc_auc_score(y_eval, probability)), 4),
        "accuracy": round(float(accuracy_score(y_eval, probability >= 0.5)), 4),
        "eval_rows": len(y_eval),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "tfx_output"), help="the pipeline output folder of a run")
    parser.add_argument("--thirds", type=int, default=8, help="random thirds to hold out (default 8)")
    args = parser.parse_args(argv)
    if args.thirds < 1:
        parser.error("--thirds must be at least 1")
    if not args.output.strip():  # Path("") is ".": a metadata.sqlite there would be read as the run
        parser.error("--output is empty: give a pipeline output folder (or leave it out for tfx_output)")
    args.output = Path(args.output)
    import numpy as np
    import pandas as pd

    examples = latest_examples(args.output)
    files = {split: split_files(examples, split) for split in ("train", "eval")}
    for split, found in files.items():
        if not found:  # MLMD holds absolute paths: the output folder was moved, or pipeline_root pruned
            raise SystemExit(f"error: no Examples files in {examples / f'Split-{split}'}, which MLMD names as the newest "
                             "completed run's data: was the output folder moved or pruned? run the pipeline again")
    train = read_rows(files["train"])
    evaluation = read_rows(files["eval"])
    rows = pd.concat([train, evaluation], ignore_index=True)
    x, y = design(rows)
    own = np.arange(len(rows)) >= len(train)
    pipeline_split = score(x[~own], y[~own], x[own], y[own])
    thirds = []
    for seed in range(args.thirds):
        held_out = np.zeros(len(rows), dtype=bool)
        held_out[np.random.RandomState(seed).permutation(len(rows))[: len(rows) // 3]] = True
        thirds.append(score(x[~held_out], y[~held_out], x[held_out], y[held_out]))
    result = {
        "rows": len(rows),
        "positive_rate": round(float(y.mean()), 4),
        "pipeline_split": pipeline_split,
        "random_thirds": {
            "runs": thirds,
            "median_auc": round(statistics.median(t["auc"] for t in thirds), 4),
            "median_accuracy": round(statistics.median(t["accuracy"] for t in thirds), 4),
            "min_auc": min(t["auc"] for t in thirds),
            "max_auc": max(t["auc"] for t in thirds),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality_reference.json").write_text(json.dumps(result, indent=2) + "\n")
    table = [
        "# Gradient-boosted tree on the pipeline's data (scikit-learn HistGradientBoosting, all raw columns)",
        "",
        f"{result['rows']} rows, {result['positive_rate']:.1%} big tippers.",
        "",
        "| held out | AUC | accuracy |",
        "|---|---|---|",
        f"| the pipeline's eval split ({pipeline_split['eval_rows']} rows) | {pipeline_split['auc']} | "
        f"{pipeline_split['accuracy']} |",
        f"| random thirds, median of {len(thirds)} (AUC {result['random_thirds']['min_auc']}-"
        f"{result['random_thirds']['max_auc']}) | {result['random_thirds']['median_auc']} | "
        f"{result['random_thirds']['median_accuracy']} |",
    ]
    (RESULTS / "quality_reference.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
