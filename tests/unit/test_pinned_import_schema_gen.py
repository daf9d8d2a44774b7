"""ImportSchemaGen pinned to a schema's content: the executor on a real schema file."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tfx.types import standard_artifacts

from pipeline.components.pinned_import_schema_gen import Executor
from pipeline.configs import DEFAULT_SCHEMA


def _import(tmp_path: Path, schema: Path, sha256: str | None) -> Path:
    artifact = standard_artifacts.Schema()
    artifact.uri = str(tmp_path / "out")
    Executor().Do({}, {"schema": [artifact]}, {"schema_file": str(schema), "schema_sha256": sha256})
    return Path(artifact.uri) / "schema.pbtxt"


def test_the_schema_it_was_pinned_to_is_imported(tmp_path: Path) -> None:
    content = DEFAULT_SCHEMA.read_bytes()
    assert _import(tmp_path, DEFAULT_SCHEMA, hashlib.sha256(content).hexdigest()).read_bytes() == content


def test_another_schema_at_the_path_stops_the_run_naming_both_hashes(tmp_path: Path) -> None:
    edited = tmp_path / "schema.pbtxt"
    edited.write_bytes(DEFAULT_SCHEMA.read_bytes() + b"\n# reviewed later\n")
    compiled_with = hashlib.sha256(DEFAULT_SCHEMA.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=rf"not the schema this pipeline was compiled with .*{compiled_with[:16]}"):
        _import(tmp_path, edited, compiled_with)
    assert not (tmp_path / "out" / "schema.pbtxt").exists()


def test_for_training_it_imports_the_schema_without_what_only_the_gate_reads(tmp_path: Path) -> None:
    from pipeline.configs import parse_schema_text, read_schema
    from pipeline.training_schema import training_schema_text

    expected = training_schema_text(read_schema(str(DEFAULT_SCHEMA)))
    artifact = standard_artifacts.Schema()
    artifact.uri = str(tmp_path / "out")
    Executor().Do({}, {"schema": [artifact]}, {"schema_file": str(DEFAULT_SCHEMA), "for_training": 1,
                                               "schema_sha256": hashlib.sha256(expected).hexdigest()})
    imported = parse_schema_text(str(tmp_path / "out" / "schema.pbtxt"))
    full = read_schema(str(DEFAULT_SCHEMA))
    assert any(f.HasField("drift_comparator") for f in full.feature)
    assert not any(f.HasField("drift_comparator") or f.HasField("skew_comparator") for f in imported.feature)
    assert not any(f.HasField("int_domain") or f.HasField("float_domain") or f.HasField("domain")
                   or f.HasField("presence") for f in imported.feature) and not imported.string_domain
    assert [(f.name, f.type, f.value_count, list(f.not_in_environment)) for f in imported.feature] == [
        (f.name, f.type, f.value_count, list(f.not_in_environment)) for f in full.feature]
    with pytest.raises(ValueError, match="not the schema this pipeline was compiled with"):  # pinned to the full file
        Executor().Do({}, {"schema": [artifact]}, {"schema_file": str(DEFAULT_SCHEMA), "for_training": 1,
                                                   "schema_sha256": hashlib.sha256(DEFAULT_SCHEMA.read_bytes()).hexdigest()})
