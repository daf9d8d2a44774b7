"""A schema type change the latest blessed model cannot read is refused before the run, not in the Evaluator."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline import configs
from pipeline.baseline_types import retyped_columns
from tests.conftest import ROOT

CURATED = configs.DEFAULT_SCHEMA.read_text()
RETYPED = CURATED.replace('name: "trip_start_timestamp"\n  type: INT', 'name: "trip_start_timestamp"\n  type: FLOAT')


def _artifact_type(store, name: str) -> int:  # noqa: ANN001 - MetadataStore
    return store.put_artifact_type(metadata_store_pb2.ArtifactType(name=name))


def _recorded_training(output: Path, blessed: int, schema_text: str = CURATED) -> None:
    """The MLMD records one run leaves: a Trainer that read a Transform graph and wrote a Model, and the
    Evaluator's ModelBlessing of that model, as TFX writes them."""
    output.mkdir(parents=True, exist_ok=True)
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = str(output / "metadata.sqlite")
    store = metadata_store.MetadataStore(connection)
    graph = metadata_store_pb2.Artifact(type_id=_artifact_type(store, "TransformGraph"),
                                        uri=str(output / "pipeline_root" / "Transform" / "transform_graph" / "5"))
    (Path(graph.uri) / "metadata").mkdir(parents=True)
    (Path(graph.uri) / "metadata" / "schema.pbtxt").write_text(schema_text)
    model = metadata_store_pb2.Artifact(type_id=_artifact_type(store, "Model"),
                                        uri=str(output / "pipeline_root" / "Trainer" / "model" / "6"))
    graph_id, model_id = store.put_artifacts([graph, model])
    trainer = store.put_execution_type(metadata_store_pb2.ExecutionType(name="Trainer"))
    store.put_execution(metadata_store_pb2.Execution(type_id=trainer), artifact_and_events=[
        (metadata_store_pb2.Artifact(id=graph_id, type_id=graph.type_id, uri=graph.uri),
         metadata_store_pb2.Event(type=metadata_store_pb2.Event.INPUT)),
        (metadata_store_pb2.Artifact(id=model_id, type_id=model.type_id, uri=model.uri),
         metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT))], contexts=[])
    blessing = metadata_store_pb2.Artifact(type_id=_artifact_type(store, "ModelBlessing"),
                                           uri=str(output / "pipeline_root" / "Evaluator" / "blessing" / "7"))
    blessing.custom_properties["blessed"].int_value = blessed
    blessing.custom_properties["current_model_id"].int_value = model_id
    store.put_artifacts([blessing])


def test_a_column_retyped_since_the_latest_blessed_model_is_named(tmp_path: Path) -> None:
    _recorded_training(tmp_path / "out", blessed=1)
    metadata = str(tmp_path / "out" / "metadata.sqlite")
    assert retyped_columns(metadata, configs.parse_schema_text(configs.DEFAULT_SCHEMA)) is None
    (tmp_path / "s.pbtxt").write_text(RETYPED)
    model, changed = retyped_columns(metadata, configs.parse_schema_text(tmp_path / "s.pbtxt"))
    assert model.endswith("Trainer/model/6") and changed == ["trip_start_timestamp: INT -> FLOAT"]


def test_no_blessed_model_or_no_store_is_no_verdict(tmp_path: Path) -> None:
    (tmp_path / "s.pbtxt").write_text(RETYPED)
    schema = configs.parse_schema_text(tmp_path / "s.pbtxt")
    assert retyped_columns(str(tmp_path / "none.sqlite"), schema) is None
    _recorded_training(tmp_path / "out", blessed=0)
    assert retyped_columns(str(tmp_path / "out" / "metadata.sqlite"), schema) is None


def test_local_runner_refuses_the_run_in_one_line_before_anything_runs(tmp_path: Path) -> None:
    _recorded_training(tmp_path / "out", blessed=1)
    (tmp_path / "s.pbtxt").write_text(RETYPED)
    done = subprocess.run([sys.executable, str(ROOT / "local_runner.py"), "--output", str(tmp_path / "out"),
                           "--schema", str(tmp_path / "s.pbtxt"), "--no-progress"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert done.stderr.splitlines() == [
        f"error: the schema changes the type of trip_start_timestamp: INT -> FLOAT; the latest blessed model "
        f"({tmp_path / 'out' / 'pipeline_root' / 'Trainer' / 'model' / '6'}) reads the old type, so the Evaluator "
        "cannot compare the new model with it: undo the type change, or run once with --without-baseline to bless "
        "on the value thresholds alone"]
    assert not (tmp_path / "out" / "logs").exists()
