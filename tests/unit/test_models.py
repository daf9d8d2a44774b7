"""preprocessing_fn run for real by tf.Transform on a few hundred rows; the model and its signatures."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import features, model, preprocessing
from pipeline.data import bundled_taxi_data

ROWS = 400


def _raw_rows() -> list[dict]:
    with open(Path(bundled_taxi_data()) / "data.csv") as handle:
        return list(csv.DictReader(handle))[:ROWS]


def _raw_spec() -> dict:
    kinds = {"int": tf.int64, "float": tf.float32, "string": tf.string}
    return {
        name: tf.io.VarLenFeature(kinds[features.column_dtype(name)])
        for name in features.INT_COLUMNS + features.FLOAT_COLUMNS + features.STRING_COLUMNS
    }


def _example(row: dict) -> bytes:
    """A tf.Example as CsvExampleGen writes one: an empty cell is a feature with no values."""
    feature = {}
    for name, value in row.items():
        kind = features.column_dtype(name)
        if kind == "string":
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()] if value else []))
        elif kind == "float":
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)] if value else []))
        else:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(float(value))] if value else []))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _examples_file(rows: list[dict], folder: Path) -> str:
    """The rows as CsvExampleGen's output: a gzipped TFRecord file of tf.Examples."""
    path = str(folder / "examples.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for row in rows:
            writer.write(_example(row))
    return path


@pytest.fixture(scope="module")
def transform_output(tmp_path_factory):
    """A real transform graph: tf.Transform's Beam analyzers over the rows."""
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    out = tmp_path_factory.mktemp("tft")
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(_raw_spec()))
    examples = [tf.io.parse_single_example(_example(r), _raw_spec()) for r in _raw_rows()]
    instances = []
    for parsed in examples:
        instances.append({k: v.values.numpy() for k, v in parsed.items()})
    with tft_beam.Context(temp_dir=str(out / "tmp"), force_tf_compat_v1=True):  # as the pipeline
        (transformed, transformed_metadata), transform_fn = (
            (instances, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing.preprocessing_fn)
        )
        transform_fn | tft_beam.WriteTransformFn(str(out / "graph"))
    # As the Transform component does: the raw schema beside the graph, for the serving parsers.
    metadata_io.write_metadata(metadata, str(out / "graph" / tft.TFTransformOutput.RAW_METADATA_DIR))
    return tft.TFTransformOutput(str(out / "graph")), transformed


def test_label_is_big_tipper_over_twenty_percent():
    tips = tf.constant([[3.0], [1.0], [5.0], [0.0]])
    fare = tf.constant([[10.0], [10.0], [0.0], [4.0]])
    assert preprocessing.big_tipper(tips, fare).numpy().tolist() == [1, 0, 0, 0]


def test_preprocessing_outputs_are_model_inputs_in_range(transform_output):
    _, transformed = transform_output
    sizes = preprocessing.categorical_sizes()
    for row in transformed:
        for name in model.model_input_names():
            value = np.asarray(row[name]).item()
            if name in sizes:
                assert 0 <= value < sizes[name], (name, value)
            else:
                assert math.isfinite(value)
    labels = [np.asarray(r[model.LABEL]).item() for r in transformed]
    assert 0 < sum(labels) < len(labels)


def test_missing_coordinate_gets_its_own_bucket(transform_output):
    _, transformed = transform_output
    rows = _raw_rows()
    missing = [i for i, r in enumerate(rows) if r["dropoff_latitude"] == ""]
    assert missing, "the sample rows should include a missing dropoff"
    for i in missing:
        assert np.asarray(transformed[i]["dropoff_latitude_xf"]).item() == features.FEATURE_BUCKET_COUNT


def test_integer_categories_are_their_own_ids_and_missing_ones_share_one(transform_output):
    _, transformed = transform_output
    rows = _raw_rows()
    missing = 0
    for key, size in features.CATEGORICAL_INT_FEATURES.items():
        for row, out in zip(rows, transformed, strict=True):
            expected = int(float(row[key])) if row[key] != "" else size
            missing += row[key] == ""
            assert np.asarray(out[features.transformed_name(key)]).item() == expected, (key, row[key])
    assert missing, "the sample rows should include a missing community area"


@pytest.fixture(scope="module")
def export_dir(transform_output, tmp_path_factory) -> tuple[str, keras.Model]:
    tft_output, _ = transform_output
    keras_model = model.build_model()
    path = str(tmp_path_factory.mktemp("export") / "model")
    model.ExportModule(keras_model, tft_output).save(path)
    return path, keras_model


@pytest.fixture(scope="module")
def exported(export_dir):
    return tf.saved_model.load(export_dir[0])


def test_export_ships_the_model_weights_and_no_training_state(export_dir):
    """TF Serving loads the weights it serves with, not Adam's slots or the metrics' counters."""
    path, keras_model = export_dir
    saved = [name for name, _ in tf.train.list_variables(os.path.join(path, "variables", "variables"))
             if name.endswith("VARIABLE_VALUE") and "/.ATTRIBUTES/" in name]
    assert len(saved) == len(keras_model.weights)
    assert not [name for name in saved if "optimizer" in name or "metric" in name]


def _json_rows(rows: list[dict]) -> dict:
    """What a client sends: every serving feature, NaN / "" where a value is missing."""
    columns = {}
    for name in features.SERVING_FEATURES:
        kind = features.column_dtype(name)
        values = [r.get(name, "") for r in rows]
        if kind == "string":
            columns[name] = tf.constant(values)
        else:
            columns[name] = tf.constant([float(v) if v != "" else float("nan") for v in values], tf.float64)
    return columns


def test_exported_signatures_and_their_inputs(exported):
    assert set(exported.signatures) == {"serving_default", "serving_tf_example", "transform_features"}
    inputs = exported.signatures["serving_default"].structured_input_signature[1]
    assert set(inputs) == set(features.SERVING_FEATURES)
    assert inputs["payment_type"].dtype == tf.string and inputs["fare"].dtype == tf.float64
    assert set(exported.signatures["serving_tf_example"].structured_input_signature[1]) == {"examples"}


def test_big_tipper_is_one_only_above_one_half_as_the_evaluator_counts(transform_output):
    """Accuracy, precision and recall count prediction > 0.5 as "yes"; a client reading big_tipper gets that rule."""
    keras_model = model.build_model()
    keras_model.set_weights([np.zeros_like(w) for w in keras_model.get_weights()])  # logit 0: exactly 0.5
    out = model.ExportModule(keras_model, transform_output[0])._predict_raw(_json_rows(_raw_rows()[:4]))
    assert out[model.PROBABILITY_OUTPUT].numpy().tolist() == [0.5] * 4
    assert out[model.CLASS_OUTPUT].numpy().tolist() == [0] * 4


def test_serving_default_equals_tf_example_path_with_missing_values(exported):
    rows = _raw_rows()[:8]
    rows[0] = {**rows[0], "company": "", "dropoff_latitude": "", "trip_seconds": ""}
    rows[1] = {k: "" for k in rows[1]}  # every value missing
    raw = exported.signatures["serving_default"](**_json_rows(rows))
    examples = tf.constant([_example({k: v for k, v in r.items() if k != "tips"}) for r in rows])
    via_example = exported.signatures["serving_tf_example"](examples=examples)
    probability = raw[model.PROBABILITY_OUTPUT].numpy()
    assert probability.shape == (8,)
    assert np.all((probability >= 0) & (probability <= 1)) and np.all(np.isfinite(probability))
    np.testing.assert_allclose(probability, via_example[model.PROBABILITY_OUTPUT].numpy(), rtol=1e-5, atol=1e-6)
    assert raw[model.CLASS_OUTPUT].numpy().tolist() == (probability >= 0.5).astype(int).tolist()


def test_transform_features_yields_the_label(exported):
    rows = _raw_rows()[:4]
    out = exported.signatures["transform_features"](examples=tf.constant([_example(r) for r in rows]))
    expected = [int(float(r["fare"]) > 0 and float(r["tips"]) > 0.2 * float(r["fare"])) for r in rows]
    assert out[model.LABEL].numpy().tolist() == expected


def test_serving_tf_example_ignores_the_label_source(exported):
    rows = _raw_rows()[:6]
    with_tips = exported.signatures["serving_tf_example"](examples=tf.constant([_example(r) for r in rows]))
    without = exported.signatures["serving_tf_example"](
        examples=tf.constant([_example({k: v for k, v in r.items() if k != "tips"}) for r in rows])
    )
    np.testing.assert_allclose(
        with_tips[model.PROBABILITY_OUTPUT].numpy(), without[model.PROBABILITY_OUTPUT].numpy(), rtol=1e-6
    )


def test_training_creates_no_variables_inside_the_traced_step(transform_output):
    """Variables created during a tf.function's first trace force a second trace of the train step."""
    _, transformed = transform_output
    inputs = {name: np.array([[row[name]] for row in transformed[:64]]) for name in model.model_input_names()}
    labels = np.array([row[model.LABEL] for row in transformed[:64]], dtype="float32")
    keras_model = model.build_model()
    created = []

    def record(next_creator, **kwargs):
        created.append(kwargs.get("name"))
        return next_creator(**kwargs)

    with tf.variable_creator_scope(record):
        keras_model.fit(inputs, labels, batch_size=32, epochs=1, verbose=0)
    assert created == []


def test_training_batches_are_what_the_served_transform_makes(transform_output, tmp_path):
    """The Trainer reads raw examples through the very Transform function the signatures export: no skew."""
    tft_output, _ = transform_output
    rows = _raw_rows()[:300]
    path = _examples_file(rows, tmp_path)
    module = model.ExportModule(model.build_model(), tft_output)
    dataset = model.batches(model.transformed_examples([path], module), batch_size=len(rows), shuffle=False)
    assert not dataset.options().autotune.enabled  # its thread could hold fit() up at the end by seconds
    inputs, labels = next(iter(dataset))
    served = module.transform_features(tf.constant([_example(r) for r in rows]))
    assert set(inputs) == set(model.model_input_names())
    for name in model.model_input_names():
        np.testing.assert_array_equal(inputs[name].numpy().reshape(-1), served[name].numpy().reshape(-1), err_msg=name)
    assert labels.numpy().tolist() == served[model.LABEL].numpy().tolist()
    # Shuffled: the same rows, in another order.
    shuffled, _ = next(iter(model.batches(model.transformed_examples([path], module), batch_size=len(rows), shuffle=True)))
    fares = features.transformed_name(features.FARE_KEY)
    assert sorted(shuffled[fares].numpy().reshape(-1)) == sorted(inputs[fares].numpy().reshape(-1))
    assert shuffled[fares].numpy().reshape(-1).tolist() != inputs[fares].numpy().reshape(-1).tolist()


def test_the_background_fill_leaves_training_reading_memory_not_files(transform_output, tmp_path):
    """fill_caches reads the examples through once off the main thread; training then never touches the files."""
    tft_output, _ = transform_output
    rows = _raw_rows()[:300]
    path = _examples_file(rows, tmp_path)
    module = model.ExportModule(model.build_model(), tft_output)
    examples = model.transformed_examples([path], module)
    filling = model.fill_caches(examples)
    filling.join()
    os.remove(path)
    inputs, labels = next(iter(model.batches(examples, batch_size=len(rows), shuffle=True)))
    assert labels.shape[0] == len(rows)
    fares = features.transformed_name(features.FARE_KEY)
    assert sorted(inputs[fares].numpy().reshape(-1)) == sorted(
        module.transform_features(tf.constant([_example(r) for r in rows]))[fares].numpy().reshape(-1)
    )
    # The files are gone: the same examples made afresh have nothing to read.
    assert list(model.transformed_examples([path], module)) == []


def _tensorboard_events(log_dir: Path) -> dict[str, set]:
    """Per run folder (train, validation): the (tag, step) of each summary logged."""
    runs = {}
    for events in log_dir.rglob("events.out.tfevents.*"):
        logged = runs.setdefault(events.parent.name, set())
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            logged.update((value.tag, event.step) for value in event.summary.value)
    return runs


def test_the_trainer_tensorboard_logs_what_keras_logs_per_epoch(transform_output, tmp_path):
    """EpochTensorBoard skips Keras's per-call summaries that no writer takes at this frequency; the logs are Keras's."""
    tft_output, _ = transform_output
    path = _examples_file(_raw_rows()[:300], tmp_path)
    logs = {}
    for name, callback in [("keras", keras.callbacks.TensorBoard(str(tmp_path / "keras"), update_freq="epoch")),
                           ("ours", model.EpochTensorBoard(str(tmp_path / "ours")))]:
        keras_model = model.build_model(steps_per_execution=2)
        module = model.ExportModule(keras_model, tft_output)
        data = model.batches(model.transformed_examples([path], module), batch_size=50, shuffle=True)
        keras_model.fit(data, epochs=2, steps_per_epoch=4, validation_data=data, validation_steps=2,
                        callbacks=[callback], verbose=0)
        logs[name] = _tensorboard_events(tmp_path / name)
    assert logs["ours"] == logs["keras"]
    assert {"train", "validation"} <= set(logs["ours"])
    assert {tag for tag, _ in logs["ours"]["train"]} >= {"epoch_loss", "epoch_auc", "epoch_accuracy"}


@pytest.mark.parametrize("train_steps", [1, 7, 199, 200, 211, 250, 300, 500, 600, 1000, 1999, 2000, 5000])
def test_training_runs_exactly_the_steps_asked_for(train_steps):
    epochs, steps_per_epoch = model.epochs_for(train_steps)
    assert epochs * steps_per_epoch == train_steps
    assert 1 <= epochs <= model.MAX_EPOCHS
    if epochs > 1:
        assert steps_per_epoch <= model.EPOCH_STEPS


def test_the_default_schedule_is_three_epochs_of_two_hundred():
    assert model.epochs_for(600) == (3, 200)


def test_signatures_traced_beside_training_are_what_the_export_saves(transform_output, tmp_path):
    """Traced in a thread during the later epochs, then saved as traced (no second trace), with the final weights."""
    tft_output, _ = transform_output
    rows = _raw_rows()[:300]
    path = _examples_file(rows, tmp_path)
    keras_model = model.build_model()
    module = model.ExportModule(keras_model, tft_output)
    trace = model.TraceExportWhileTraining(module)
    data = model.batches(model.transformed_examples([path], module), batch_size=50, shuffle=True)
    keras_model.fit(data, epochs=3, steps_per_epoch=4, callbacks=[trace], verbose=0)
    trace.finish()
    signatures = module.signatures()
    assert {name: fn.experimental_get_tracing_count() for name, fn in signatures.items()} == dict.fromkeys(signatures, 1)
    module.save(str(tmp_path / "export"))
    assert {name: fn.experimental_get_tracing_count() for name, fn in signatures.items()} == dict.fromkeys(signatures, 1)
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    examples = tf.constant([_example(row) for row in rows[:40]])
    saved = loaded.signatures["serving_tf_example"](examples=examples)[model.PROBABILITY_OUTPUT].numpy()
    trained = module.serving_tf_example(examples)[model.PROBABILITY_OUTPUT].numpy()
    np.testing.assert_allclose(saved, trained, rtol=1e-6)
    assert saved.std() > 0


@pytest.mark.parametrize("requested,used", [(None, model.DEFAULT_VALIDATION_STEPS), (2, 2), (4, 4), (10**9, 4)])
def test_validation_never_runs_past_one_pass_over_the_eval_split(tmp_path, requested, used, capsys):
    """1000 eval examples in batches of 256 are 4 batches: --eval-steps 1000000000 must not loop over them for hours."""
    shard = tmp_path / "data_tfrecord-00000-of-00001.gz"
    with tf.io.TFRecordWriter(str(shard), options="GZIP") as writer:
        for i in range(1000):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "x": tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))})).SerializeToString())
    assert model.validation_steps_for(requested, [str(tmp_path / "*.gz")], 256) == used
    assert ("one pass over the eval split (1000 examples" in capsys.readouterr().out) == (requested == 10**9)
