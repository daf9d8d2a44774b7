"""Past runs and model lineage, read from the local MLMD store.

Only ml_metadata is imported (no TensorFlow), so `runs` and `lineage` answer
in well under a second. Lineage walks MLMD events backwards from a
PushedModel artifact: the events are what TFX itself recorded as each
component's inputs and outputs, cache hits included.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from pipeline.mlmd_store import (
    RUN_CONTEXT,
    STATE_WORDS,
    StoreError,
    executions_in_start_order,
    node_name,
    open_readonly,
    run_contexts,
)

INPUTS = (mlmd.Event.INPUT, mlmd.Event.DECLARED_INPUT)
OUTPUTS = (mlmd.Event.OUTPUT, mlmd.Event.DECLARED_OUTPUT)
GATE_NODE = "DataGate"
BASELINE_INPUT = "baseline_model"  # the Evaluator's model in service, compared with
CHECK_OUTPUTS = {"statistics", "anomalies"}


def open_store(output: str) -> metadata_store.MetadataStore:
    """The read-only store of an output folder (as written by local_runner)."""
    return open_readonly(os.path.join(output, "metadata.sqlite"))


@dataclasses.dataclass
class Execution:
    """One component execution in a run, with its MLMD id and outputs by key."""

    id: int
    node: str
    state: str
    started_ms: int
    ended_ms: int
    properties: dict[str, Any]
    outputs: dict[str, list[mlmd.Artifact]]

    @property
    def seconds(self) -> float:
        return (self.ended_ms - self.started_ms) / 1000


def _value(value: mlmd.Value) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def properties(item: mlmd.Artifact | mlmd.Execution) -> dict[str, Any]:
    """Properties and custom properties as plain Python values."""
    out = {k: _value(v) for k, v in item.properties.items()}
    out.update({k: _value(v) for k, v in item.custom_properties.items()})
    return out


def _artifacts_by_key(store: metadata_store.MetadataStore, execution_id: int, kinds: tuple) -> dict[str, list]:
    events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type in kinds]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    out: dict[str, list] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else "?"
        if event.artifact_id in artifacts:
            out.setdefault(key, []).append(artifacts[event.artifact_id])
    return out


def _no_run(run_id: str) -> StoreError:
    return StoreError(f"no run {run_id!r} in MLMD; `taxi runs` lists the run ids")


def resolve_run_id(store: metadata_store.MetadataStore, run_id: str | None) -> str:
    """The run id as given or as its report's file name spells it (safe_run_id); None: the latest run."""
    ids = run_ids(store)
    if not ids:
        raise StoreError("MLMD holds no runs yet; run the pipeline first")
    if run_id is None:
        return ids[-1]
    found = [known for known in ids if run_id in (known, safe_run_id(known))]
    if not found:
        raise _no_run(run_id)
    return found[0]


def run_executions(store: metadata_store.MetadataStore, run_id: str) -> list[Execution]:
    context = store.get_context_by_type_and_name(RUN_CONTEXT, run_id)
    if context is None:
        raise _no_run(run_id)
    executions = executions_in_start_order(store, context.id)
    return [Execution(e.id, node_name(store, e.id), STATE_WORDS.get(e.last_known_state, "?"),
                      e.create_time_since_epoch, e.last_update_time_since_epoch, properties(e),
                      _artifacts_by_key(store, e.id, OUTPUTS)) for e in executions]


def run_ids(store: metadata_store.MetadataStore) -> list[str]:
    """All run ids, oldest first."""
    return [c.name for c in run_contexts(store)]


def outcome(executions: list[Execution]) -> str:
    """completed, gated (the data gate stopped it), failed, or incomplete (interrupted or still running)."""
    failed = [e for e in executions if e.state == "failed"]
    if failed:
        return "gated" if failed[0].node == GATE_NODE else "failed"
    if any(e.state in ("running", "new", "canceled") for e in executions):  # canceled: interrupted (local_runner)
        return "incomplete"
    return "completed"


@dataclasses.dataclass
class RunRow:
    """One line of `runs`."""

    run_id: str
    started: float  # unix seconds
    seconds: float
    outcome: str
    ran: int
    cached: int
    blessed: bool | None
    pushed_version: str | None
    evaluation_uri: str | None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("evaluation_uri")
        return out


def run_row(store: metadata_store.MetadataStore, run_id: str) -> RunRow:
    executions = run_executions(store, run_id)
    blessed = pushed = evaluation = None
    for e in executions:
        for artifact in e.outputs.get("blessing", []):
            blessed = bool(properties(artifact).get("blessed"))
        for artifact in e.outputs.get("evaluation", []):
            evaluation = artifact.uri
        for artifact in e.outputs.get("pushed_model", []):
            props = properties(artifact)
            if props.get("pushed") and e.state == "ran":
                pushed = props.get("pushed_version")
    started = min((e.started_ms for e in executions), default=0) / 1000
    ended = max((e.ended_ms for e in executions), default=0) / 1000
    return RunRow(run_id, started, max(0.0, ended - started), outcome(executions),
                  sum(e.state == "ran" for e in executions), sum(e.state == "cached" for e in executions),
                  blessed, pushed, evaluation)


def sidecar_metrics(output: str, run_id: str) -> dict[str, float] | None:
    """Metrics saved next to a run's HTML report, so `runs` needs no TFMA import."""
    path = os.path.join(output, "reports", f"{safe_run_id(run_id)}.json")
    try:
        with open(path) as handle:
            saved = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("outcome") == "incomplete":  # written while the run went on
        return None
    return saved.get("metrics") or {}


def safe_run_id(run_id: str) -> str:
    """Run ids are ISO timestamps; ':' is awkward in file names on some systems."""
    return run_id.replace(":", "-")


def pushed_model(store: metadata_store.MetadataStore, version: str) -> mlmd.Artifact:
    matches = [a for a in store.get_artifacts_by_type("PushedModel")
               if str(properties(a).get("pushed_version", "")) == str(version) and properties(a).get("pushed")]
    if not matches:
        known = sorted({str(properties(a).get("pushed_version")) for a in store.get_artifacts_by_type("PushedModel")
                        if properties(a).get("pushed")})
        raise StoreError(f"no pushed model version {version!r} in MLMD; pushed versions: {', '.join(known) or 'none'}")
    return max(matches, key=lambda a: a.id)


def _producer(store: metadata_store.MetadataStore, artifact_id: int) -> int | None:
    """The execution that first produced an artifact (the one that ran, not a later cache hit)."""
    ids = [e.execution_id for e in store.get_events_by_artifact_ids([artifact_id]) if e.type in OUTPUTS]
    return min(ids) if ids else None


@dataclasses.dataclass
class Step:
    """A component in a model's lineage: what it consumed and produced."""

    node: str
    execution_id: int
    state: str
    properties: dict[str, Any]
    inputs: dict[str, list[dict[str, Any]]]
    outputs: dict[str, list[dict[str, Any]]]
    run_ids: list[str]


def _artifact_dict(artifact: mlmd.Artifact) -> dict[str, Any]:
    return {"id": artifact.id, "type": artifact.type, "uri": artifact.uri, "properties": properties(artifact)}


def lineage(store: metadata_store.MetadataStore, version: str) -> list[Step]:
    """Every execution upstream of a pushed version, from the data to the push, plus the data checks and the
    schema they checked against.

    The Evaluator's baseline (the model in service it was compared with) is listed
    as its input, not walked: its own lineage is another version's. The data checks
    are those of the run that pushed the version (a gate that stopped an earlier
    run on the same data, and the --accept-drift run that let it through, both
    consumed that data).
    """
    start = pushed_model(store, version)
    seen: dict[int, Step] = {}
    frontier = [_producer(store, start.id)]
    push_runs = set()
    while frontier:
        execution_id = frontier.pop()
        if execution_id is None or execution_id in seen:
            continue
        seen[execution_id] = found = step(store, execution_id)
        push_runs = push_runs or set(found.run_ids)
        for key, artifacts in found.inputs.items():
            if key != BASELINE_INPUT:
                frontier += [_producer(store, a["id"]) for a in artifacts]
    # StatisticsGen, ExampleValidator and DataGate feed no artifact to Transform (the
    # gate is an ordering dependency): follow the Examples forward through the checks.
    candidates: dict[str, list[Step]] = {}
    visited = set(seen)
    artifacts = {a["id"] for s in seen.values() for a in s.outputs.get("examples", []) if a["type"] == "Examples"}
    while artifacts:
        consumers = {e.execution_id for e in store.get_events_by_artifact_ids(sorted(artifacts)) if e.type in INPUTS}
        artifacts = set()
        for execution_id in sorted(consumers - visited):
            visited.add(execution_id)
            check = step(store, execution_id)
            if not (CHECK_OUTPUTS & set(check.outputs) or check.node == GATE_NODE):
                continue  # not a check at all
            candidates.setdefault(check.node, []).append(check)
            artifacts |= {a["id"] for key in CHECK_OUTPUTS for a in check.outputs.get(key, [])}
    for found in candidates.values():  # the push's own run, else the first (a later run was a cache hit)
        chosen = next((c for c in found if push_runs & set(c.run_ids)), found[0])
        seen[chosen.execution_id] = chosen
        # The contract the data was checked against: ImportSchemaGen's (training reads TrainingSchemaImporter's).
        for producer in {_producer(store, a["id"]) for a in chosen.inputs.get("schema", [])} - set(seen) - {None}:
            seen[producer] = step(store, producer)
    return sorted(seen.values(), key=lambda s: s.execution_id)


def step(store: metadata_store.MetadataStore, execution_id: int) -> Step:
    [execution] = store.get_executions_by_id([execution_id])
    runs = [c.name for c in store.get_contexts_by_execution(execution_id) if c.type == RUN_CONTEXT]
    as_dicts = lambda found: {k: [_artifact_dict(a) for a in v] for k, v in found.items()}  # noqa: E731
    return Step(node_name(store, execution_id), execution_id, STATE_WORDS.get(execution.last_known_state, "?"),
                properties(execution), as_dicts(_artifacts_by_key(store, execution_id, INPUTS)),
                as_dicts(_artifacts_by_key(store, execution_id, OUTPUTS)), runs)
