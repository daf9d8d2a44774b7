"""One monitoring pass: logged traffic in a window vs the training Examples of the model in service."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from monitoring.distances import read_examples
from monitoring.labels import STABLE, Deployment
from monitoring.lineage import LineageError, version_record
from monitoring.requests import RequestLogError, read_window
from monitoring.skew import SkewReport, compare, served_batch, serving_schema, serving_statistics
from pipeline.configs import ConfigError, column_types

DEFAULT_SCHEMA = Path(__file__).resolve().parent.parent / "schema" / "schema.pbtxt"


class MonitorError(ValueError):
    """Input the monitor cannot judge (no logs, too few rows, no model in service)."""


class NoVerdict(MonitorError):
    """Nothing to judge (no model pushed; no, too few or only unusable logged requests; the training data of the
    model in service gone): not a mistake in the flags, so `trigger` goes on without a model (nothing pushed)
    and `monitor --retrain` without a skew verdict."""


@dataclasses.dataclass
class MonitorInput:
    output: str
    request_log: Path
    since: float
    until: float
    model: str = "taxi"
    version: int | None = None  # default: the stable label, else the latest pushed version
    schema: Path = DEFAULT_SCHEMA
    min_rows: int = 500
    config: str | None = None


def model_in_service(deployment: Deployment) -> int:
    """The version clients get by default: `stable` when labelled, else the newest push."""
    label = deployment.labels().get(STABLE)
    if label is not None:
        if label not in deployment.pushed():
            raise MonitorError(f"label 'stable' points at version {label}, which is not in {deployment.push_dir}; "
                               "fix it with `taxi rollback --to V`")
        return label
    pushed = deployment.pushed()
    if not pushed:
        raise NoVerdict(f"no pushed model in {deployment.push_dir}; run the pipeline first")
    return pushed[-1]


def run(spec: MonitorInput) -> SkewReport:
    from models.features import SERVING_FEATURES

    try:
        schema = serving_schema(spec.schema, set(SERVING_FEATURES))
    except ConfigError as error:
        raise MonitorError(str(error)) from None
    deployment = Deployment.for_output(spec.output, spec.model, spec.config)
    version = spec.version if spec.version is not None else model_in_service(deployment)
    # The training data of the model in service gone or unreadable: no verdict, but `--retrain` still decides on
    # spans. For a --version the user named, it is that flag's problem.
    data_problem = MonitorError if spec.version is not None else NoVerdict
    try:
        record = version_record(spec.output, version)
        stats_file = record.statistics_file("train")
        example_files = record.examples_files("train")
    except LineageError as error:
        raise data_problem(str(error)) from None
    try:
        # Only the rows this version answered: a canary's traffic, judged against the stable version's training
        # data, hid the skew in what stable served (and made up skew the canary's own data would not show).
        window = read_window(spec.request_log, spec.since, spec.until, spec.model, version,
                             types=column_types(schema))
    except RequestLogError as error:
        raise NoVerdict(str(error)) from None
    if window.rows < spec.min_rows:
        raise NoVerdict(f"only {window.rows} logged rows in the window (< --min-rows {spec.min_rows}): too few to "
                           "judge skew; widen the window or raise the server's --request-log-sample-rate")
    try:
        served = served_batch(window, schema)
    except RequestLogError as error:  # none of the schema's features logged
        raise NoVerdict(str(error)) from None
    try:
        training = read_examples(example_files)
    except ValueError as error:  # unreadable or empty training examples
        raise data_problem(str(error)) from None
    results = compare(stats_file, training, served, serving_statistics(served, schema), schema)
    info = {"since": spec.since, "until": spec.until, **window.info(),
            "training_statistics": stats_file, "training_examples": example_files, "training_rows": training.num_rows}
    return SkewReport(spec.model, version, record.span, info, window.rows, results)
