"""What each component's cache key sees besides its inputs: the code it runs and the environment.

TFX keys a component's cache on its parameters, its input artifacts and its
executor's class name, not on the code behind the names this pipeline passes
(executors, preprocessing_fn, run_fn, metrics). Here, on a copy of the
project's code: an edit to a module a component runs changes that
component's key (TFX re-runs it, and its new outputs re-run everything
downstream), an edit to code no component runs changes none, and an edit
Python discards (a comment, a re-wrapped line) changes none either. The
"nothing changed" check must see every edit a key sees.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from pipeline import configs, fingerprints, up_to_date
from pipeline.data import bundled_taxi_data
from tests.conftest import ROOT

RESOLVER = "latest_blessed_model_resolver"
BEAM_COMPONENTS = {"CsvExampleGen", "StatisticsGen", "Transform", "Evaluator"}


@pytest.fixture(scope="module")
def components(tmp_path_factory: pytest.TempPathFactory) -> list:
    from pipeline.pipeline import create_pipeline

    config = configs.local_config(bundled_taxi_data(), str(tmp_path_factory.mktemp("out")))
    return create_pipeline(config).components


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of the project's Python packages, to edit."""
    for package in ("pipeline", "models", "monitoring"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _keys(components: list, root: Path, environment: str = "env") -> dict[str, str]:
    """Each component's code parameter, as create_pipeline sets it, for the code under `root`."""
    from pipeline.code_keys import CODE_PROPERTY, key_by_code

    key_by_code(components, fingerprints.CodeIndex(root), environment)
    return {c.id: c.exec_properties.get(CODE_PROPERTY) for c in components}


def _changed(before: dict, after: dict) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


@pytest.mark.parametrize("path, reruns", [
    ("models/preprocessing.py", {"Transform", "Trainer"}),  # run_fn imports it for the serving signatures
    ("models/model.py", {"Trainer"}),
    ("models/eval_metrics.py", {"Evaluator"}),
    # The Evaluator reads features only through its eval_config, which is a parameter already.
    ("models/features.py", {"Transform", "Trainer"}),
    ("pipeline/components/batched_csv_example_gen.py", {"CsvExampleGen"}),
    ("pipeline/data_files.py", {"CsvExampleGen"}),
    ("pipeline/components/pinned_import_schema_gen.py", {"ImportSchemaGen", "TrainingSchemaImporter"}),
    ("pipeline/training_schema.py", {"ImportSchemaGen", "TrainingSchemaImporter"}),  # the executor imports it
    ("pipeline/components/data_gate.py", {"DataGate"}),
    ("monitoring/distances.py", {"DataGate"}),  # imported inside the gate's drift check
    ("pipeline/components/fixed_batch_transform.py", {"Transform"}),
    ("pipeline/components/dedup_pusher.py", {"Pusher"}),
    ("pipeline/local_beam.py", BEAM_COMPONENTS),  # patched into Beam in the run's process
    ("pipeline/local_tft.py", {"Transform"}),
    ("pipeline/run_summary.py", set()),  # read after the run; no component runs it
    ("pipeline/configs.py", set()),  # its values reach the components as parameters
    ("pipeline/data.py", set()),  # the check before the run
])
def test_an_edit_reruns_the_components_that_run_that_code_and_no_other(components, source, path, reruns) -> None:
    before = _keys(components, source)
    _append(source / path, "\nEDITED = 1\n")
    assert _changed(before, _keys(components, source)) == reruns


def test_a_docstring_is_code_python_keeps(components, source) -> None:
    before = _keys(components, source)
    path = source / "models" / "eval_metrics.py"
    path.write_text(path.read_text().replace('"""', '"""Edited. ', 1))
    assert _changed(before, _keys(components, source)) == {"Evaluator"}


def test_a_comment_or_a_rewrapped_line_reruns_nothing(components, source) -> None:
    """Python discards both before it runs anything: nothing any component computes can differ."""
    before = _keys(components, source)
    for path in source.rglob("*.py"):
        path.write_text("# reviewed\n" + path.read_text() + "\n\n# end\n")
    model = source / "models" / "model.py"
    assert "DEEP_UNITS = 32\n" in model.read_text()
    model.write_text(model.read_text().replace("DEEP_UNITS = 32\n", "DEEP_UNITS = (  # wider?\n    32\n)\n"))
    assert _changed(before, _keys(components, source)) == set()


def test_every_component_is_keyed_on_the_environment(components, source) -> None:
    before, after = _keys(components, source, "env-a"), _keys(components, source, "env-b")
    assert _changed(before, after) == {c.id for c in components} - {RESOLVER}


def test_create_pipeline_sets_each_component_s_code_key(tmp_path) -> None:
    from pipeline.code_keys import CODE_PROPERTY
    from pipeline.pipeline import create_pipeline

    config = configs.local_config(bundled_taxi_data(), str(tmp_path / "out"))
    built = create_pipeline(config).components
    expected = _keys(create_pipeline(config).components, ROOT, config.environment)
    assert {c.id: c.exec_properties.get(CODE_PROPERTY) for c in built} == expected
    assert all(expected[c.id] for c in built if c.id != RESOLVER)


def test_the_nothing_changed_check_holds_the_code_of_every_component(components) -> None:
    from pipeline.code_keys import component_modules

    index = fingerprints.CodeIndex(ROOT)
    checked = set(index.closure(fingerprints.PIPELINE_CODE))
    for component in components:
        assert set(index.closure(component_modules(component))) <= checked, component.id


def test_the_nothing_changed_check_sees_a_code_edit_but_not_a_comment(tmp_path, source) -> None:
    config = configs.local_config(bundled_taxi_data(), str(tmp_path / "out"))
    before = up_to_date.fingerprint(config, fingerprints.CodeIndex(source))
    _append(source / "monitoring" / "distances.py", "# a comment\n")
    assert up_to_date.fingerprint(config, fingerprints.CodeIndex(source)) == before
    _append(source / "monitoring" / "distances.py", "EDITED = 1\n")
    assert up_to_date.fingerprint(config, fingerprints.CodeIndex(source)) != before


def test_an_upgraded_or_added_package_is_another_environment(tmp_path, monkeypatch) -> None:
    site = tmp_path / "site-packages"
    (site / "somepkg-1.0.dist-info").mkdir(parents=True)
    monkeypatch.syspath_prepend(str(site))
    before = fingerprints.environment()
    assert fingerprints.environment() == before
    (site / "somepkg-1.0.dist-info").rename(site / "somepkg-1.1.dist-info")
    upgraded = fingerprints.environment()
    (site / "otherpkg-0.1.dist-info").mkdir()
    assert len({before, upgraded, fingerprints.environment()}) == 3


def test_the_nothing_changed_check_sees_another_environment(tmp_path) -> None:
    config = configs.local_config(bundled_taxi_data(), str(tmp_path / "out"))
    assert config.environment == fingerprints.environment()
    other = dataclasses.replace(config, environment="another")
    assert up_to_date.fingerprint(other) != up_to_date.fingerprint(config)


def test_a_comment_or_a_layout_edit_to_the_schema_is_the_same_schema(tmp_path) -> None:
    """ImportSchemaGen is keyed on the path of the schema's copy, named by its content: a comment edit in
    schema.pbtxt (most of its lines are comments) re-ran ImportSchemaGen and every component after it."""
    original = configs.DEFAULT_SCHEMA.read_text()
    edited = tmp_path / "schema.pbtxt"
    edited.write_text("# Reviewed again.\n" + original.replace("feature {\n", "feature {  # one more note\n\n", 1))
    out = str(tmp_path / "out")
    copy = configs.content_addressed_schemas(configs.read_schema(str(configs.DEFAULT_SCHEMA)), out)[0]
    assert configs.content_addressed_schemas(configs.read_schema(str(edited)), out)[0] == copy
    assert configs.parse_schema_text(copy) == configs.parse_schema_text(configs.DEFAULT_SCHEMA)
    edited.write_text(original.replace("threshold: 0.02 }", "threshold: 0.025 }", 1))
    assert configs.content_addressed_schemas(configs.read_schema(str(edited)), out)[0] != copy


def test_an_edit_only_the_gate_reads_keeps_the_schema_transform_and_the_trainer_see(tmp_path) -> None:
    """TFX keys Transform and the Trainer on their schema artifact: a drift threshold tuned, a domain widened or a
    presence bound eased re-ran both and retrained the same model. They read TrainingSchemaImporter's, whose
    parameters stay the same."""
    import local_runner
    from pipeline.pipeline import create_pipeline

    original = configs.DEFAULT_SCHEMA.read_text()
    edited = tmp_path / "schema.pbtxt"

    def importers(schema_text: str) -> dict:
        edited.write_text(schema_text)
        args = local_runner.build_parser().parse_args(["--output", str(tmp_path / "out"), "--schema", str(edited)])
        built = create_pipeline(local_runner.build_config(args)).components
        return {c.id: c.exec_properties for c in built if c.id in ("ImportSchemaGen", "TrainingSchemaImporter")}

    before = importers(original)
    gate_only = importers(original.replace("threshold: 0.02 }", "threshold: 0.025 }", 1))
    assert gate_only["TrainingSchemaImporter"] == before["TrainingSchemaImporter"]
    assert gate_only["ImportSchemaGen"] != before["ImportSchemaGen"]  # the gate reads the new threshold
    for old, new in (("int_domain { min: 1 max: 77 }", "int_domain { min: 1 max: 78 }"),  # a range widened
                     ('  value: "Prepaid"\n', '  value: "Prepaid"\n  value: "Voucher"\n'),  # a category allowed
                     ("presence { min_fraction: 1.0 min_count: 1 }", "presence { min_fraction: 0.9 min_count: 1 }")):
        edit = importers(original.replace(old, new, 1))
        assert edit["TrainingSchemaImporter"] == before["TrainingSchemaImporter"], new
        assert edit["ImportSchemaGen"] != before["ImportSchemaGen"], new
    retyped = importers(original.replace('name: "trip_start_timestamp"\n  type: INT',
                                         'name: "trip_start_timestamp"\n  type: FLOAT', 1))
    assert retyped["TrainingSchemaImporter"] != before["TrainingSchemaImporter"]  # Transform reads a column's type


def test_the_environment_hash_does_not_move_when_a_package_puts_its_own_folder_on_sys_path(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing TFDV puts setuptools/_vendor (vendored *.dist-info) on sys.path: `taxi monitor --retrain`, which
    imports it first, hashed another environment and took the last run for a run of other packages."""
    import sys

    site = tmp_path / "site-packages"
    (site / "setuptools" / "_vendor" / "packaging-24.2.dist-info").mkdir(parents=True)
    (site / "setuptools" / "__init__.py").write_text("")
    (site / "tfx-1.16.0.dist-info").mkdir()
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    before = fingerprints.environment()
    monkeypatch.setattr(sys, "path", [*sys.path, str(site / "setuptools" / "_vendor")])
    assert fingerprints.environment() == before
    (site / "tfx-1.17.0.dist-info").mkdir()  # an upgrade is another environment
    assert fingerprints.environment() != before
