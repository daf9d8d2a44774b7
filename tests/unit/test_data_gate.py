"""The data gate's own checks: a split without examples stops the run (TFDV reports nothing for it), and drift."""
from __future__ import annotations

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2
from tfx.types import artifact_utils, standard_artifacts

from pipeline.components.data_gate import empty_splits


def _statistics(tmp_path, counts: dict) -> standard_artifacts.ExampleStatistics:  # noqa: ANN001
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(tmp_path)
    artifact.split_names = artifact_utils.encode_split_names(list(counts))
    for split, count in counts.items():
        folder = tmp_path / f"Split-{split}"
        folder.mkdir()
        stats = statistics_pb2.DatasetFeatureStatisticsList(
            datasets=[statistics_pb2.DatasetFeatureStatistics(num_examples=count)]
        )
        (folder / "FeatureStats.pb").write_bytes(stats.SerializeToString())
    return artifact


@pytest.mark.parametrize(
    "counts, empty",
    [({"train": 2000, "eval": 1000}, []), ({"train": 1, "eval": 0}, ["eval"]), ({"train": 0, "eval": 0}, ["train", "eval"])],
)
def test_splits_without_examples_are_named(tmp_path, counts, empty):
    lines = empty_splits(_statistics(tmp_path, counts))
    assert [line.split("]")[0].strip(" [") for line in lines] == empty
    assert all("NO_EXAMPLES" in line for line in lines)


def _span_artifacts(root, rows: list, schema) -> tuple:  # noqa: ANN001 - paths and schema_pb2.Schema
    """Examples and statistics of one span's train split, as ExampleGen and StatisticsGen write them."""
    import tensorflow as tf
    import tensorflow_data_validation as tfdv

    examples, statistics = root / "examples" / "Split-train", root / "statistics" / "Split-train"
    examples.mkdir(parents=True)
    statistics.mkdir(parents=True)
    kinds = {f.name: f.type for f in schema.feature}
    with tf.io.TFRecordWriter(str(examples / "data_tfrecord-00000-of-00001.gz"), options="GZIP") as writer:
        for row in rows:
            example = tf.train.Example()
            for name, text in row.items():
                if text == "" or name not in kinds:
                    continue
                feature = example.features.feature[name]
                if kinds[name] == schema_pb2.INT:
                    feature.int64_list.value.append(int(text))
                elif kinds[name] == schema_pb2.FLOAT:
                    feature.float_list.value.append(float(text))
                else:
                    feature.bytes_list.value.append(text.encode())
            writer.write(example.SerializeToString())
    stats = tfdv.generate_statistics_from_tfrecord(str(examples / "*.gz"))
    (statistics / "FeatureStats.pb").write_bytes(stats.SerializeToString())
    return str(root / "statistics"), str(root / "examples")


def test_drift_is_counted_exactly_random_halves_pass_and_a_fare_rise_stops(tmp_path):
    """TFDV's histogram JSD put fare at 0.31-0.33 between random halves of the taxi data (threshold 0.02 now)."""
    import csv
    import random
    from pathlib import Path

    from pipeline.components.data_gate import drift_measurements
    from pipeline.data import bundled_taxi_data
    from tests.conftest import ROOT

    with open(Path(bundled_taxi_data()) / "data.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    random.Random(3).shuffle(rows)
    half = len(rows) // 2
    schema_dir = tmp_path / "schema"
    schema_dir.mkdir()
    (schema_dir / "schema.pbtxt").write_text((ROOT / "schema" / "schema.pbtxt").read_text())
    schema = schema_pb2.Schema()
    text_format.Parse((ROOT / "schema" / "schema.pbtxt").read_text(), schema)
    previous = _span_artifacts(tmp_path / "previous", rows[:half], schema)
    same = _span_artifacts(tmp_path / "same", rows[half:], schema)
    risen = _span_artifacts(tmp_path / "risen", [{**r, "fare": str(float(r["fare"]) * 1.25)} for r in rows[half:]],
                            schema)

    def measured(span: tuple) -> dict:
        found = drift_measurements(span[0], previous[0], str(schema_dir), span[1], previous[1])
        return {name: (value, over) for name, value, _threshold, over in found}

    calm = measured(same)
    assert set(calm) == {"fare", "trip_miles", "trip_seconds", "pickup_latitude", "payment_type", "company"}
    assert not any(over for _value, over in calm.values()), calm
    assert calm["fare"][0] < 0.005
    moved = measured(risen)
    assert [name for name, (_value, over) in moved.items() if over] == ["fare"]

    # On Vertex the artifacts are gs:// URIs: the same measurements through TF's filesystem layer, not os/open.
    import tensorflow as tf

    def to_ram(local: str) -> str:
        remote = "ram://drift" + local
        for folder, _dirs, files in tf.io.gfile.walk(local):
            tf.io.gfile.makedirs(remote + folder[len(local):])
            for name in files:
                tf.io.gfile.copy(f"{folder}/{name}", f"{remote}{folder[len(local):]}/{name}", overwrite=True)
        return remote

    remote = drift_measurements(*map(to_ram, (risen[0], previous[0], str(schema_dir), risen[1], previous[1])))
    assert {name: (value, over) for name, value, _threshold, over in remote} == moved

    # The previous span's shards deleted (a pruned pipeline root): no rows to compare with is not "no drift".
    from pipeline.components.data_gate import BaselineWithoutRows

    for shard in (Path(previous[1]) / "Split-train").iterdir():
        shard.unlink()
    with pytest.raises(BaselineWithoutRows):
        measured(same)


def test_range_checks_on_a_column_without_values_are_left_out_and_other_findings_kept():
    """TFDV reads the unset min of a column no row holds a value in as 0: not a finding about the data."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    from pipeline.components.data_gate import anomaly_rows, required_but_valueless, valueless_features

    dataset = text_format.Parse("""
        num_examples: 20
        features { path { step: "area" } num_stats { common_stats { num_non_missing: 20 tot_num_values: 0 } } }
        features { path { step: "optional" } num_stats { common_stats { num_non_missing: 20 tot_num_values: 0 } } }
        features { path { step: "fare" } num_stats { common_stats { num_non_missing: 20 tot_num_values: 20 } } }
    """, statistics_pb2.DatasetFeatureStatistics())
    valueless = valueless_features(dataset)
    assert valueless == {"area", "optional"}
    anomalies = text_format.Parse("""
        anomaly_info { key: "area" value { description: "Unexpectedly small value: 0."
            reason { type: INT_TYPE_SMALL_INT description: "Unexpectedly small value: 0." } } }
        anomaly_info { key: "optional" value { description: "x; y"
            reason { type: INT_TYPE_BIG_INT description: "x" }
            reason { type: ENUM_TYPE_UNEXPECTED_STRING_VALUES description: "Examples contain values missing" } } }
        anomaly_info { key: "fare" value { description: "Unexpectedly small value: -3."
            reason { type: FLOAT_TYPE_SMALL_FLOAT description: "Unexpectedly small value: -3." } } }
    """, anomalies_pb2.Anomalies())
    assert anomaly_rows(anomalies, valueless) == [
        ("fare", "FLOAT_TYPE_SMALL_FLOAT", "Unexpectedly small value: -3."),
        ("optional", "ENUM_TYPE_UNEXPECTED_STRING_VALUES", "Examples contain values missing"),
    ]
    schema = text_format.Parse("""
        feature { name: "area" type: INT presence { min_fraction: 1.0 min_count: 1 } }
        feature { name: "optional" type: INT presence { min_count: 0 } }
        feature { name: "fare" type: FLOAT presence { min_count: 1 } }
    """, schema_pb2.Schema())
    assert [line.split(":")[0] for line in required_but_valueless("train", valueless, schema)] == ["  [train] area"]


def test_fewer_values_than_expected_on_a_column_without_values_is_said_as_no_values():
    """A FLOAT column with value_count min 1, empty in every row: TFDV says "fewer values than expected", and the
    README's promise, NO_VALUES with every cell empty, was not kept."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    from pipeline.components.data_gate import anomaly_rows, required_but_valueless

    anomalies = text_format.Parse("""
        anomaly_info { key: "fare" value { description: "Some examples have fewer values than expected."
            reason { type: FEATURE_TYPE_LOW_NUMBER_VALUES description: "Some examples have fewer values" } } }
        anomaly_info { key: "tips" value { description: "Some examples have fewer values than expected."
            reason { type: FEATURE_TYPE_LOW_NUMBER_VALUES description: "Some examples have fewer values" } } }
    """, anomalies_pb2.Anomalies())
    assert anomaly_rows(anomalies, frozenset({"fare"})) == [
        ("tips", "FEATURE_TYPE_LOW_NUMBER_VALUES", "Some examples have fewer values than expected.")]
    schema = text_format.Parse('feature { name: "fare" type: FLOAT value_count { min: 1 max: 1 } }',
                               schema_pb2.Schema())
    assert required_but_valueless("train", frozenset({"fare"}), schema) == [
        "  [train] fare: NO_VALUES: the column is in the data but every cell of it is empty (the schema requires it: "
        "value_count min 1)"]


def test_a_string_in_a_numeric_column_of_a_later_span_leaves_its_drift_unmeasured_not_a_crash(tmp_path):
    """`n/a` in a span's fare column makes ExampleGen write the column as bytes; measuring its drift against the
    previous span's floats crashed the gate (`could not convert string to float`), so the run failed (exit 1)
    instead of stopping on the anomaly, and the trigger retried it every hour."""
    import csv
    from pathlib import Path

    from pipeline.components.data_gate import drift_measurements
    from pipeline.data import bundled_taxi_data
    from tests.conftest import ROOT

    with open(Path(bundled_taxi_data()) / "data.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[:2000]
    schema_dir = tmp_path / "schema"
    schema_dir.mkdir()
    (schema_dir / "schema.pbtxt").write_text((ROOT / "schema" / "schema.pbtxt").read_text())
    schema = schema_pb2.Schema()
    text_format.Parse((ROOT / "schema" / "schema.pbtxt").read_text(), schema)
    previous = _span_artifacts(tmp_path / "previous", rows[:1000], schema)
    as_text = schema_pb2.Schema()
    as_text.CopyFrom(schema)
    next(f for f in as_text.feature if f.name == "fare").type = schema_pb2.BYTES
    later = _span_artifacts(tmp_path / "later", [{**r, "fare": "n/a" if i % 100 == 0 else r["fare"]}
                                                  for i, r in enumerate(rows[1000:])], as_text)
    found = {name: (value, over) for name, value, _threshold, over in
             drift_measurements(later[0], previous[0], str(schema_dir), later[1], previous[1])}
    assert {"trip_miles", "payment_type", "company"} <= set(found)
    # Unmeasured stops the gate: with the text on the baseline's side no schema anomaly of this span would.
    value, over = found["fare"]
    assert value != value and over
    backwards = {name: (value, over) for name, value, _threshold, over in
                 drift_measurements(previous[0], later[0], str(schema_dir), previous[1], later[1])}
    assert backwards["fare"][0] != backwards["fare"][0] and backwards["fare"][1]
