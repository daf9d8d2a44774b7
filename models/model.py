"""The Keras model, its training (TFX run_fn) and the exported serving signatures.

Exported signatures, all applying the one Transform graph (no train/serve skew):
  serving_default     raw features as named inputs, for plain JSON clients;
  serving_tf_example  a batch of serialized tf.Example (input `examples`);
  transform_features  serialized tf.Example -> transformed features (for TFMA).
Missing values in serving_default: NaN for a number, "" for a string.
"""
from __future__ import annotations

import math
import os
import threading

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.python.saved_model import save_context  # the export's trace context (see traced_transform)

from models import features, preprocessing

LABEL = features.transformed_name(features.LABEL_KEY)
PROBABILITY_OUTPUT = "big_tip_probability"
CLASS_OUTPUT = "big_tipper"
EMBEDDING_DIM = 4
DEEP_UNITS = 32
DROPOUT = 0.5
SEED = 42
EXPORT_OPTIONS = tf.saved_model.SaveOptions()


def model_input_names() -> list[str]:
    return sorted(preprocessing.numeric_outputs() + list(preprocessing.categorical_sizes()))


def build_model(learning_rate: float = 0.003, steps_per_execution: int = 1) -> keras.Model:
    """Wide and deep: a learned weight per crossed id, plus a small regularized tower.

    The data is small (10k training rows), so the deep part is narrow and
    dropout-heavy; the wide part holds the payment x fare interaction.
    """
    sizes = preprocessing.categorical_sizes()
    cross = features.transformed_name(features.PAYMENT_FARE_CROSS)
    regularizer = keras.regularizers.L2(1e-4)
    inputs, parts = {}, []
    for name in model_input_names():
        if name in sizes:
            inputs[name] = keras.Input(shape=(1,), name=name, dtype="int64")
            if name == cross:
                continue
            embedded = keras.layers.Embedding(
                sizes[name], EMBEDDING_DIM, embeddings_regularizer=regularizer, name=f"{name}_embedding"
            )(inputs[name])
            parts.append(keras.layers.Flatten()(embedded))
        else:
            inputs[name] = keras.Input(shape=(1,), name=name, dtype="float32")
            parts.append(inputs[name])
    deep = keras.layers.Concatenate()(parts)
    deep = keras.layers.Dense(DEEP_UNITS, activation="relu", kernel_regularizer=regularizer)(deep)
    deep = keras.layers.Dropout(DROPOUT, seed=SEED)(deep)
    deep_logit = keras.layers.Dense(1, name="deep_logit")(deep)
    wide_logit = keras.layers.Flatten()(keras.layers.Embedding(sizes[cross], 1, name="wide_weights")(inputs[cross]))
    logit = keras.layers.Add()([deep_logit, wide_logit])
    output = keras.layers.Activation("sigmoid", name=PROBABILITY_OUTPUT)(logit)
    model = keras.Model(inputs=inputs, outputs=output)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
        steps_per_execution=steps_per_execution,
    )
    # Adam's slot variables now, not lazily inside the first traced train step:
    # a tf.function that creates variables on its first trace is traced a
    # second time, which doubled the train step's tracing (about 3 s).
    model.optimizer.build(model.trainable_variables)
    return model


def _to_model_inputs(transformed: dict) -> dict:
    return {name: tf.reshape(transformed[name], [-1, 1]) for name in model_input_names()}


def example_records(file_patterns: list[str]) -> tf.data.TFRecordDataset:
    """The serialized examples of an ExampleGen split (gzipped TFRecord shards; gs:// too)."""
    files = [path for pattern in file_patterns for path in tf.io.gfile.glob(pattern)]
    return tf.data.TFRecordDataset(files, compression_type="GZIP")


def transformed_examples(file_patterns: list[str], module: ExportModule) -> tf.data.Dataset:
    """(features, label) examples: raw examples through the Transform graph once, kept in memory.

    The same Transform function as the exported signatures (traced once for
    both); Transform does not write a transformed copy of the data for this.
    """
    dataset = example_records(file_patterns).batch(4096)
    # Plain TF calls, no Python control flow on tensors: without AutoGraph, which
    # converted these and the feature-name helpers they call (~0.4 s of building the datasets).
    no_autograph = tf.autograph.experimental.do_not_convert
    transform = module.traced_transform()
    dataset = dataset.map(no_autograph(lambda records: transform(tf.io.parse_example(records, module.raw_spec))))
    dataset = dataset.map(no_autograph(lambda transformed: (_to_model_inputs(transformed), transformed[LABEL])))
    return dataset.unbatch().cache()


def batches(examples: tf.data.Dataset, batch_size: int, shuffle: bool) -> tf.data.Dataset:
    """Batches of the examples, repeated forever."""
    if shuffle:
        examples = examples.shuffle(50_000, seed=SEED, reshuffle_each_iteration=True)
    # No tf.data autotuning: the pipeline is in memory and simple, and the
    # autotuner's optimization thread held up the iterator's deletion when
    # fit() returned by 0.5-2 s in about half the runs here (a run it was
    # optimizing is waited for); none in 8 runs without it, same training.
    options = tf.data.Options()
    options.autotune.enabled = False
    return examples.repeat().batch(batch_size).prefetch(2).with_options(options)


def fill_caches(*cached: tf.data.Dataset) -> threading.Thread:
    """Reads each cached dataset through once, on a thread of its own, so that its in-memory cache is full.

    Reading, parsing and transforming run in TF's C++ runtime without the GIL,
    so the fill overlaps Keras tracing the train step (Python) instead of
    being the first step's wait. TF's memory cache belongs to the dataset:
    iterators made after the fill read memory; one made before it ends reads
    the files itself, and the first to finish completes the cache. Join it
    before leaving; a read error also reaches the iterator that training uses.
    """

    def fill() -> None:
        for dataset in cached:
            dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1)

    thread = threading.Thread(target=fill, name="fill-caches", daemon=True)
    thread.start()
    return thread


class ExportModule(tf.Module):
    """The exported SavedModel: the trained model behind the Transform graph."""

    def __init__(self, model: keras.Model, tf_transform_output: tft.TFTransformOutput):
        super().__init__()
        # The Keras model itself is kept out of the SavedModel, its weights in:
        # tracked, the model brought its optimizer and metric state and Keras's
        # own traced default signature, which every load then rebuilt (measured:
        # export 2.9-3.3 -> 1.8-2.4 s, load 1.1-1.4 -> 0.6-1.1 s, saved_model.pb
        # 698 -> 503 kB; the same predictions).
        self._hold_untracked(model)
        self._transform_trace = None  # see traced_transform
        self.model_weights = list(model.weights)
        # Tracked so the transform graph's tables and vocabulary assets are saved.
        # Applied through .call(), never __call__: a layer that Keras never saw
        # called is saved as its tracked resources only ("Skipping full
        # serialization ... not built" in the log). Built, tf_keras would also
        # serialize it as a Keras model and trace it once more: 7 of 12 s of export.
        self.tft_layer = tf_transform_output.transform_features_layer()
        raw_spec = tf_transform_output.raw_feature_spec()
        if not all(isinstance(spec, tf.io.VarLenFeature) for spec in raw_spec.values()):
            raise ValueError("the export expects every raw feature optional (VarLenFeature) in the schema")
        self.raw_spec = raw_spec
        self._serving_raw_spec = {k: v for k, v in raw_spec.items() if k != features.TIPS_KEY}
        # The Transform graph is applied in this one function, which all three
        # signatures call: TFT prunes and copies its v1 graph for every call, so
        # once instead of three times (measured: export 4.8 -> 4.3 s, median of
        # 5; saved_model.pb 917 -> 715 kB; loading it 1.9 -> 1.1 s).
        self.transform_raw = tf.function(
            self.tft_layer.call,
            input_signature=[{name: tf.SparseTensorSpec([None, None], spec.dtype) for name, spec in raw_spec.items()}],
            autograph=False,
        )

        # No tensor-dependent Python control flow below, so no AutoGraph: in a
        # py-spy profile of the Trainer, converting these functions and what they
        # call (tft_layer, Keras) was the largest part of the export.
        self.serving_default = tf.function(
            self._predict_raw,
            autograph=False,
            input_signature=[
                {
                    name: tf.TensorSpec(
                        [None],
                        tf.string if features.column_dtype(name) == "string" else tf.float64,
                        name=name,
                    )
                    for name in features.SERVING_FEATURES
                }
            ],
        )
        example_spec = [tf.TensorSpec([None], tf.string, name="examples")]
        self.serving_tf_example = tf.function(
            self._predict_examples, input_signature=example_spec, autograph=False
        )
        self.transform_features = tf.function(
            self._transform_examples, input_signature=example_spec, autograph=False
        )

    @tf.__internal__.tracking.no_automatic_dependency_tracking
    def _hold_untracked(self, model: keras.Model) -> None:
        self.model = model  # what the signatures call; its weights are tracked above

    @tf.__internal__.tracking.no_automatic_dependency_tracking
    def traced_transform(self):  # noqa: ANN201 - a tf ConcreteFunction
        """The Transform function as the export traces it, traced once: for the training data and the export.

        tf.saved_model.save traces every function anew, because TF keys its
        trace cache on whether it is tracing for an export. The Transform
        function (TFT prunes and copies its graph, ~0.4 s a trace) was so
        traced twice. Traced here in the export's context, the export finds
        this trace, and the training data calls the same concrete function.
        """
        if self._transform_trace is None:
            with save_context.save_context(EXPORT_OPTIONS):
                self._transform_trace = self.transform_raw.get_concrete_function()
        return self._transform_trace

    def _complete(self, raw: dict) -> dict:
        """Raw columns a caller does not send (the label source, unused ones) as empty, i.e. missing."""
        rows = next(iter(raw.values())).dense_shape[0]
        empty = tf.zeros([0, 2], tf.int64)
        return {
            name: raw[name] if name in raw else tf.SparseTensor(empty, tf.zeros([0], spec.dtype), tf.stack([rows, 1]))
            for name, spec in self.raw_spec.items()
        }

    def _outputs(self, raw: dict) -> dict:
        transformed = self.transform_raw(self._complete(raw))
        probability = tf.reshape(self.model(_to_model_inputs(transformed)), [-1])
        return {
            PROBABILITY_OUTPUT: probability,
            # Above one half, as the Evaluator's accuracy, precision and recall count a "yes".
            CLASS_OUTPUT: tf.cast(probability > 0.5, tf.int64),
        }

    def _predict_raw(self, inputs: dict) -> dict:
        """Dense named inputs -> the sparse raw form Transform saw (NaN / "" -> absent)."""
        raw = {}
        for name, value in inputs.items():
            if value.dtype == tf.string:
                present = tf.strings.length(value) > 0
            else:
                present = tf.math.is_finite(value)
            indices = tf.where(present)
            target = self.raw_spec[name].dtype
            values = tf.gather_nd(value, indices)
            if target != tf.string:
                values = tf.cast(tf.round(values) if target.is_integer else values, target)
            raw[name] = tf.SparseTensor(
                indices=tf.concat([indices, tf.zeros_like(indices)], axis=1),
                values=values,
                dense_shape=tf.stack([tf.shape(value, out_type=tf.int64)[0], tf.constant(1, tf.int64)]),
            )
        return self._outputs(raw)

    def _predict_examples(self, examples: tf.Tensor) -> dict:
        return self._outputs(tf.io.parse_example(examples, self._serving_raw_spec))

    def _transform_examples(self, examples: tf.Tensor) -> dict:
        return self.transform_raw(tf.io.parse_example(examples, self.raw_spec))

    def signatures(self) -> dict:
        return {
            "serving_default": self.serving_default,
            "serving_tf_example": self.serving_tf_example,
            "transform_features": self.transform_features,
        }

    def trace_signatures(self) -> None:
        """Trace the exported signatures as tf.saved_model.save will, so that it finds them traced."""
        with save_context.save_context(EXPORT_OPTIONS):
            for signature in self.signatures().values():
                signature.get_concrete_function()

    def save(self, export_dir: str) -> None:
        tf.saved_model.save(self, export_dir, signatures=self.signatures(), options=EXPORT_OPTIONS)


class TraceExportWhileTraining(keras.callbacks.Callback):
    """Traces the export's signatures in a thread while the epochs after the first one train.

    Tracing is Python; those epochs run in TF's C++ runtime with the GIL
    released, so the two share the machine's cores instead of taking turns
    (the trace is ~0.5 s of the export). With a single epoch it is left to the
    export. finish() waits for it and raises what it raised.
    """

    def __init__(self, module: ExportModule):
        super().__init__()
        self._module = module
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._thread is None and epoch + 1 < self.params.get("epochs", 1):
            self._thread = threading.Thread(target=self._trace, name="trace-export", daemon=True)
            self._thread.start()

    def _trace(self) -> None:
        try:
            self._module.trace_signatures()
        except BaseException as error:  # noqa: BLE001 - raised in the training thread by finish()
            self._error = error

    def finish(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback at update_freq="epoch": the same logs, less per-call work.

    At that frequency Keras sets no summary writer for batches, yet after every
    training call it still builds a summary for each metric, which nothing
    takes: 90 per run, 0.36 s of the Trainer's GIL time under py-spy (fit,
    median of 6 alternating runs without py-spy: 3.59 -> 3.53 s).
    Its batch end is given no logs, which skips exactly those; the epoch and
    evaluation summaries are Keras's (tested equal).
    """

    def __init__(self, log_dir: str):
        super().__init__(log_dir=log_dir, update_freq="epoch")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        super().on_train_batch_end(batch, logs=None)


EPOCH_STEPS = 200  # the usual epoch length: a validation and a TensorBoard point each
MAX_EPOCHS = 10


def epochs_for(train_steps: int) -> tuple[int, int]:
    """(epochs, steps per epoch) training exactly train_steps steps.

    Epochs of about EPOCH_STEPS steps, when train_steps splits evenly into at
    most MAX_EPOCHS of them; otherwise one epoch of all the steps.
    """
    for epochs in range(max(1, math.ceil(train_steps / EPOCH_STEPS)), MAX_EPOCHS + 1):
        if train_steps % epochs == 0:
            return epochs, train_steps // epochs
    return 1, train_steps


DEFAULT_VALIDATION_STEPS = 20  # about one pass over the bundled eval split at batch size 256


def validation_steps_for(requested: int | None, eval_patterns: list[str], batch_size: int) -> int:
    """Validation batches per epoch: the requested number, but at most one pass over the eval split.

    The eval batches repeat forever, so more steps than one pass only count
    the same examples again, and a slip (--eval-steps 100000000) would turn
    every epoch's validation into hours. The split is counted only when a
    number is asked for.
    """
    if requested is None:
        return DEFAULT_VALIDATION_STEPS
    records = int(example_records(eval_patterns).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    one_pass = max(1, math.ceil(records / batch_size))
    if requested > one_pass:
        print(f"eval steps: {requested} requested, {one_pass} used: one pass over the eval split "
              f"({records} examples in batches of {batch_size})")
    return min(requested, one_pass)


def run_fn(fn_args) -> None:  # noqa: ANN001 - tfx FnArgs
    """TFX Trainer entry point."""
    keras.utils.set_random_seed(SEED)
    config = fn_args.custom_config or {}
    batch_size = int(config.get("batch_size", 256))
    epochs, steps_per_epoch = epochs_for(fn_args.train_steps)
    validation_steps = validation_steps_for(fn_args.eval_steps, fn_args.eval_files, batch_size)
    # The model is small, so a step costs little next to Keras's per-call
    # overhead: several steps per call (2.5-3 s less fit here). Keras runs
    # whole calls, so the count divides both the epoch and the validation.
    model = build_model(
        float(config.get("learning_rate", 0.003)),
        steps_per_execution=math.gcd(steps_per_epoch, validation_steps),
    )
    module = ExportModule(model, tft.TFTransformOutput(fn_args.transform_output))
    train = transformed_examples(fn_args.train_files, module)
    evaluation = transformed_examples(fn_args.eval_files, module)
    filling = fill_caches(train, evaluation)
    trace_export = TraceExportWhileTraining(module)
    model.fit(
        batches(train, batch_size, shuffle=True),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=batches(evaluation, batch_size, shuffle=False),
        validation_steps=validation_steps,
        callbacks=[EpochTensorBoard(fn_args.model_run_dir), trace_export],
        verbose=2,
    )
    trace_export.finish()
    filling.join()
    module.save(fn_args.serving_model_dir)
    os.makedirs(fn_args.model_run_dir, exist_ok=True)
