"""The previous span's Examples and statistics, when an earlier run already made them from the same data.

A run on span N computes span N-1's Examples and statistics (PreviousSpanExampleGen,
PreviousSpanStatisticsGen) as the drift gate's baseline. Span N-1 was usually the
current span of the run before (CsvExampleGen, StatisticsGen), and TFX's cache key
holds the node id, so every new span re-read and re-described the one before it:
3.8 s of a 26 s run on the taxi spans, and the whole previous span's ingestion on
large data.

`ingested` finds an execution, under either node id, of an ExampleGen with the same
parameters (split, column types, code key: the cache key but for the node id) over
the same data (the content fingerprint the driver computes), the StatisticsGen
execution with the same parameters that read its Examples, and both outputs still
on disk. The pipeline then imports those artifacts (Importer, reimport=False: the
same MLMD artifacts, so lineage names the run that made them). Anything else, or
any doubt, and the previous span is ingested as before. Local runs only: Vertex
keeps its metadata in Vertex ML Metadata and caches by its own rules.
"""
from __future__ import annotations

import json
import os

from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.components.base.base_component import BaseComponent

from pipeline.mlmd_store import StoreError, open_readonly

DONE = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
OUTPUT = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


def _parameters(components: list[BaseComponent], pipeline_name: str, pipeline_root: str) -> dict[str, dict]:
    """{node id: {parameter: value}} as the launcher records them in MLMD, for the ExampleGen after its
    driver resolved the span and fingerprinted the data."""
    from tfx.dsl.compiler.compiler import Compiler
    from tfx.orchestration import pipeline as tfx_pipeline

    from pipeline.components.batched_csv_example_gen import ContentFingerprintDriver

    ir = Compiler().compile(tfx_pipeline.Pipeline(pipeline_name=pipeline_name, pipeline_root=pipeline_root,
                                                  components=components))
    found = {}
    for node in ir.nodes:
        values = node.pipeline_node.parameters.parameters
        found[node.pipeline_node.node_info.id] = {
            key: getattr(value.field_value, value.field_value.WhichOneof("value")) for key, value in values.items()}
    example_gen = components[0]
    resolved = ContentFingerprintDriver(None).resolve_exec_properties(found[example_gen.id], None, None)
    found[example_gen.id] = {key: value for key, value in resolved.items() if value is not None}
    return found


def _matches(execution: metadata_store_pb2.Execution, parameters: dict) -> bool:
    if execution.last_known_state not in DONE:
        return False
    for key, value in parameters.items():
        stored = execution.custom_properties.get(key)
        if stored is None or getattr(stored, stored.WhichOneof("value") or "string_value") != value:
            return False
    return True


def _on_disk(artifact: metadata_store_pb2.Artifact) -> bool:
    """Every split folder the artifact names is still there with its files (a pruned or half-deleted pipeline root
    is not: the drift gate would have nothing to compare with)."""
    try:
        splits = json.loads(artifact.properties["split_names"].string_value)
    except (KeyError, ValueError):
        return False
    def has_files(folder: str) -> bool:
        return os.path.isdir(folder) and any(entry.is_file() and entry.stat().st_size for entry in os.scandir(folder))

    return bool(splits) and all(has_files(os.path.join(artifact.uri, f"Split-{name}")) for name in splits)


def _live_output(store, execution_id: int, type_name: str) -> metadata_store_pb2.Artifact | None:  # noqa: ANN001
    events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type in OUTPUT]
    for artifact in store.get_artifacts_by_id([e.artifact_id for e in events]):
        if artifact.type == type_name and artifact.state == metadata_store_pb2.Artifact.LIVE and _on_disk(artifact):
            return artifact
    return None


def ingested(example_gen: BaseComponent, statistics_gen: BaseComponent, pipeline_name: str, pipeline_root: str,
             metadata_path: str) -> tuple[str, str] | None:
    """(Examples uri, ExampleStatistics uri) an earlier run made as these two nodes would now, or None."""
    if not os.path.isfile(metadata_path) or not os.path.getsize(metadata_path):
        return None
    try:
        store = open_readonly(metadata_path)
    except StoreError:
        return None  # the run's own checks say what is wrong with it
    try:
        parameters = _parameters([example_gen, statistics_gen], pipeline_name, pipeline_root)
    except Exception:  # noqa: BLE001 - no span folder, an unreadable file: the ExampleGen itself will say
        return None
    examples_parameters = parameters[example_gen.id]
    statistics_parameters = parameters[statistics_gen.id]
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)  # TFX's cache is per pipeline too
    if pipeline is None:
        return None
    in_pipeline = store.get_executions_by_context(pipeline.id)
    candidates = [e for e in in_pipeline if e.type == example_gen.type and _matches(e, examples_parameters)]
    for execution in sorted(candidates, key=lambda e: e.create_time_since_epoch, reverse=True):
        examples = _live_output(store, execution.id, "Examples")
        if examples is None:
            continue
        readers = {e.execution_id for e in store.get_events_by_artifact_ids([examples.id])
                   if e.type == metadata_store_pb2.Event.INPUT}
        described = [e for e in in_pipeline
                     if e.id in readers and e.type == statistics_gen.type and _matches(e, statistics_parameters)]
        for reader in sorted(described, key=lambda e: e.create_time_since_epoch, reverse=True):
            statistics = _live_output(store, reader.id, "ExampleStatistics")
            if statistics is not None:
                return examples.uri, statistics.uri
    return None
