"""Whether the model in service can read Examples written by this run's schema.

The Evaluator feeds this run's eval Examples to the baseline model (the latest
blessed one) as well as to the candidate. A column whose type the schema
changed (INT -> FLOAT, even one the model does not use: its parser declares
every raw column) is refused by the baseline's parser, and every run after the
edit failed in the Evaluator with "Fail to call signature func with
signature_name: transform_features", with no model ever blessed again. Found
before the run: the types the baseline's Transform was built on
(<transform_graph>/metadata/schema.pbtxt) against this run's.
"""
from __future__ import annotations

import os

from pipeline.mlmd_store import StoreError, open_readonly

_INPUT, _OUTPUT = 3, 4  # MLMD Event.Type


def _latest_blessed_model(store):  # noqa: ANN001, ANN202 - MetadataStore, Artifact
    """As TFX's LatestBlessedModelStrategy: the Model with the highest id that a ModelBlessing blessed."""
    try:
        blessings = store.get_artifacts_by_type("ModelBlessing")
    except Exception:  # noqa: BLE001 - MLMD raises NotFoundError when no run recorded the type yet
        return None
    blessed = {b.custom_properties["current_model_id"].int_value for b in blessings
               if b.custom_properties["blessed"].int_value == 1 and "current_model_id" in b.custom_properties}
    return max(store.get_artifacts_by_id(list(blessed)), key=lambda model: model.id) if blessed else None


def _transform_schema(store, model) -> str | None:  # noqa: ANN001 - MetadataStore, Artifact
    """The raw schema file of the Transform graph the model's Trainer read."""
    trainers = [e.execution_id for e in store.get_events_by_artifact_ids([model.id]) if e.type == _OUTPUT]
    inputs = [e.artifact_id for e in store.get_events_by_execution_ids(trainers) if e.type == _INPUT]
    graph_type = store.get_artifact_type("TransformGraph").id
    for artifact in store.get_artifacts_by_id(inputs):
        path = os.path.join(artifact.uri, "metadata", "schema.pbtxt")
        if artifact.type_id == graph_type and os.path.isfile(path):
            return path
    return None


def retyped_refusal(config) -> str | None:  # noqa: ANN001 - PipelineConfig
    """Why the Evaluator could not feed this run's Examples to the latest blessed model, or None (also when the
    run does not compare with it: --without-baseline)."""
    from pipeline.configs import parse_schema_text

    if not config.compare_with_baseline:
        return None
    found = retyped_columns(config.metadata_path, parse_schema_text(config.schema_path))
    if found is None:
        return None
    model, changed = found
    return (f"the schema changes the type of {', '.join(changed)}; the latest blessed model ({model}) reads the old "
            "type, so the Evaluator cannot compare the new model with it: undo the type change, or run once with "
            "--without-baseline to bless on the value thresholds alone")


def retyped_columns(metadata_path: str, schema) -> tuple[str, list[str]] | None:  # noqa: ANN001 - schema_pb2.Schema
    """(the baseline model's folder, one "name: OLD -> NEW" per column `schema` gives another type), or None
    when there is no baseline, its types cannot be found, or none changed."""
    from pipeline.configs import ConfigError, parse_schema_text
    from pipeline.schema_check import type_name

    if not os.path.isfile(metadata_path) or os.path.getsize(metadata_path) == 0:
        return None
    try:
        store = open_readonly(metadata_path)
        model = _latest_blessed_model(store)
        path = _transform_schema(store, model) if model is not None else None
        baseline = parse_schema_text(path) if path else None
    except (StoreError, ConfigError):
        return None
    if baseline is None:
        return None
    before = {feature.name: type_name(feature) for feature in baseline.feature}
    changed = [f"{feature.name}: {before[feature.name]} -> {type_name(feature)}" for feature in schema.feature
               if feature.name in before and before[feature.name] != type_name(feature)]
    return (model.uri, changed) if changed else None
