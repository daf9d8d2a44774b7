"""A curated schema that contradicts itself or the model is refused before a run starts, naming the feature."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline import configs
from pipeline.configs import ConfigError
from pipeline.schema_check import schema_problems
from tests.unit.test_config_and_data import _local_runner

CURATED = configs.DEFAULT_SCHEMA.read_text()


def _edited(old: str, new: str, count: int = 1) -> str:
    assert old in CURATED, old
    return CURATED.replace(old, new, count)


def _without_feature(name: str) -> str:
    text, removed = re.subn(r'feature \{\n  name: "' + name + r'".*?\n\}\n', "", CURATED, flags=re.S)
    assert removed == 1
    return text


MISTAKES = {
    "a duplicated feature": (CURATED + 'feature { name: "company" type: BYTES }\n', "company: declared 2 times"),
    "min above max": (_edited("int_domain { min: 0 max: 23 }", "int_domain { min: 23 max: 0 }"),
                      "trip_start_hour: int_domain min 23 is above its max 0"),
    "a float range upside down": (_edited("float_domain { min: 41.5 max: 42.2", "float_domain { min: 42.2 max: 41.5"),
                                  "pickup_latitude: float_domain min 42.2 is above its max 41.5"),
    "a fraction above 1": (_edited("min_fraction: 1.0", "min_fraction: 2.0"),
                           "pickup_community_area: presence min_fraction 2 is not a fraction in [0, 1]"),
    "a negative drift threshold": (_edited("threshold: 0.02 }", "threshold: -0.02 }"),
                                   "fare: drift_comparator jensen_shannon_divergence threshold -0.02 is not a "
                                   "distance >= 0"),
    "a negative skew threshold": (_edited("skew_comparator { infinity_norm { threshold: 0.04 } }",
                                          "skew_comparator { infinity_norm { threshold: -1 } }"),
                                  "payment_type: skew_comparator infinity_norm threshold -1 is not a distance >= 0"),
    "a model id column made FLOAT": (_edited('name: "trip_start_hour"\n  type: INT', 'name: "trip_start_hour"\n  type: FLOAT'),
                                     "trip_start_hour: type FLOAT, but the model reads it as INT"),
    "a vocabulary column made INT": (_edited('name: "company"\n  type: BYTES', 'name: "company"\n  type: INT'),
                                     "company: type INT, but the model reads it as BYTES"),
    "a model input left out": (_without_feature("company"),
                               "company: the model reads this column but the schema does not declare it"),
    "the label's source left out": (_without_feature("tips"),
                                    "tips: the model reads this column but the schema does not declare it"),
    "an environment misspelt": (_edited('  not_in_environment: "SERVING"\n}\nfeature {\n  name: "trip_miles"',
                                        '  not_in_environment: "SERVNG"\n}\nfeature {\n  name: "trip_miles"'),
                                "tips: environment 'SERVNG' is not one of the schema's default_environment "
                                "(TRAINING, SERVING)"),
    "a model input kept out of serving": (_edited('name: "company"\n  type: BYTES',
                                                  'name: "company"\n  type: BYTES\n  not_in_environment: "SERVING"'),
                                          "company: a model input must be in the SERVING environment"),
    "a model input deprecated": (_edited('name: "company"\n  type: BYTES', 'name: "company"\n  type: BYTES\n'
                                         '  lifecycle_stage: DEPRECATED'),
                                 "company: the model reads this column, but lifecycle_stage: DEPRECATED leaves "
                                 "it out of what Transform parses"),
    "a sparse feature naming nothing": (CURATED + 'sparse_feature { name: "sp" index_feature { name: "nonexist" } '
                                        'value_feature { name: "fare" } }\n',
                                        "sp: sparse_feature names 'nonexist', which is not a feature"),
    "a weighted feature without its weight": (CURATED + 'weighted_feature { name: "wf" feature { step: "company" } '
                                              'weight_feature { step: "w" } }\n',
                                              "wf: weighted_feature names 'w', which is not a feature"),
    "a float domain on an INT column": (_edited('int_domain { min: 0 max: 604800 }', 'float_domain { min: 0 }'),
                                        "trip_seconds: a float_domain on an INT feature (it belongs on FLOAT ones)"),
    "a string domain on an INT column": (_edited("int_domain { min: 0 max: 23 }", 'domain: "payment_type"'),
                                         "trip_start_hour: a domain on an INT feature (it belongs on BYTES ones)"),
    "an empty string domain": (CURATED.replace('  value: "Cash"\n', "").replace('  value: "Credit Card"\n', "")
                               .replace('  value: "Dispute"\n', "").replace('  value: "No Charge"\n', "")
                               .replace('  value: "Pcard"\n', "").replace('  value: "Prcard"\n', "")
                               .replace('  value: "Unknown"\n', "").replace('  value: "Mobile"\n', "")
                               .replace('  value: "Prepaid"\n', ""),
                               "payment_type: its string_domain lists no value, so every value would be an anomaly"),
    "a domain mass above 1": (_edited('domain: "payment_type"', 'domain: "payment_type"\n'
                                      '  distribution_constraints { min_domain_mass: 1.5 }'),
                              "payment_type: distribution_constraints min_domain_mass 1.5 is not a fraction in [0, 1]"),
    "no type": (_edited('name: "trip_start_timestamp"\n  type: INT\n', 'name: "trip_start_timestamp"\n'),
                "trip_start_timestamp: has no type (give type: INT, FLOAT or BYTES)"),
    "no value allowed": (_edited("value_count { min: 0 max: 1 }", "value_count { min: 0 max: 0 }"),
                         "pickup_community_area: value_count max 0 lets no row hold a value"),
    "no SERVING environment": (_edited('default_environment: "SERVING"\n', ""),
                               "default_environment: SERVING missing"),
    "a domain that is not there": (_edited('domain: "payment_type"', 'domain: "payment"'),
                                   "payment_type: domain 'payment' names no string_domain in the schema"),
}


def test_the_curated_schema_is_sound() -> None:
    assert schema_problems(configs.read_schema(str(configs.DEFAULT_SCHEMA))) == []


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_schema_mistake_is_named_with_its_feature(tmp_path: Path, mistake: str) -> None:
    text, expected = MISTAKES[mistake]
    path = tmp_path / "schema.pbtxt"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        configs.read_schema(str(path))
    assert str(refused.value).startswith(f"schema file {path}: {expected}"), refused.value


def test_the_label_source_in_serving_is_refused() -> None:
    schema = configs.parse_schema_text(configs.DEFAULT_SCHEMA)
    tips = next(f for f in schema.feature if f.name == "tips")
    del tips.not_in_environment[:]
    assert schema_problems(schema) == ["tips: the label's source must not be in the SERVING environment "
                                       '(add not_in_environment: "SERVING"); requests never carry it']


def test_a_column_the_model_does_not_read_may_be_dropped_or_retyped(tmp_path: Path) -> None:
    """The schema describes the data: only what the model reads is tied to the model."""
    schema = configs.parse_schema_text(configs.DEFAULT_SCHEMA)
    kept = [f for f in schema.feature if f.name != "trip_start_timestamp"]
    del schema.feature[:]
    schema.feature.extend(kept)
    next(f for f in schema.feature if f.name == "pickup_census_tract").type = 3  # FLOAT
    assert schema_problems(schema) == []


def test_local_runner_refuses_a_bad_schema_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "schema.pbtxt"
    path.write_text(MISTAKES["min above max"][0])
    done = _local_runner("--output", str(tmp_path / "out"), "--schema", str(path))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: schema file {path}: trip_start_hour: int_domain min 23 is above its max 0"
    assert not (tmp_path / "out").exists()


def test_a_byte_order_mark_is_read_past_and_a_path_that_is_no_file_is_named_as_such(tmp_path: Path) -> None:
    """Notepad saves UTF-8 with a byte-order mark, which data files may have too; a symlink loop or a named pipe
    given as --schema was said not to exist."""
    bom = tmp_path / "bom.pbtxt"
    bom.write_bytes(b"\xef\xbb\xbf" + CURATED.encode())
    assert schema_problems(configs.read_schema(str(bom))) == []
    loop = tmp_path / "loop.pbtxt"
    loop.symlink_to(loop)
    with pytest.raises(ConfigError, match="is not a regular file"):
        configs.read_schema(str(loop))
    with pytest.raises(ConfigError, match="does not exist"):
        configs.read_schema(str(tmp_path / "none.pbtxt"))
