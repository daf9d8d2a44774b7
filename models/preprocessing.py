"""tf.Transform preprocessing_fn: the same graph at training time and in both serving signatures.

Every raw column may be absent from a row (the schema does not make any
required), so each arrives as a SparseTensor; missing values get their own
representation here (an out-of-range bucket, an empty-string vocabulary
entry, an explicit missing flag) rather than silently becoming a real value.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from models import features


def _densify(x: tf.Tensor | tf.SparseTensor, default: object) -> tuple[tf.Tensor, tf.Tensor]:
    """(values [batch], present [batch] bool) for a feature of at most one value per row."""
    if not isinstance(x, tf.SparseTensor):
        x = tf.reshape(x, [-1])
        return x, tf.ones_like(x, dtype=tf.bool)
    shape = [x.dense_shape[0], 1]
    values = tf.sparse.to_dense(
        tf.SparseTensor(x.indices, x.values, shape), default_value=default
    )
    present = tf.sparse.to_dense(
        tf.SparseTensor(x.indices, tf.ones_like(x.values, dtype=tf.bool), shape),
        default_value=False,
    )
    return tf.squeeze(values, axis=1), tf.squeeze(present, axis=1)


def _as_float(x: tf.Tensor | tf.SparseTensor) -> tuple[tf.Tensor, tf.Tensor]:
    values, present = _densify(x, tf.constant(0, dtype=x.dtype))
    values = tf.cast(values, tf.float32)
    present = tf.logical_and(present, tf.math.is_finite(values))
    return tf.where(present, values, 0.0), present


def big_tipper(tips: tf.Tensor | tf.SparseTensor, fare: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    """1 when tips > 20% of the fare; 0 when either is missing or the fare is not positive."""
    tip_values, tip_present = _as_float(tips)
    fare_values, fare_present = _as_float(fare)
    known = tip_present & fare_present & (fare_values > 0)
    return tf.cast(known & (tip_values > features.BIG_TIP_FRACTION * fare_values), tf.int64)


def preprocessing_fn(inputs: dict) -> dict:
    outputs = {}
    xf = features.transformed_name

    for key in features.DENSE_FLOAT_FEATURES:
        values, present = _as_float(inputs[key])
        if key in features.LOG_SCALED_FEATURES:
            values = tf.math.log1p(tf.maximum(values, 0.0))
        outputs[xf(key)] = tft.scale_to_z_score(values)
        outputs[xf(key + "_missing")] = tf.cast(tf.logical_not(present), tf.float32)

    for key in features.BUCKET_FEATURES:
        values, present = _as_float(inputs[key])
        # Quantiles over present values only; a missing coordinate gets the extra bucket.
        buckets = tft.bucketize(values, features.FEATURE_BUCKET_COUNT, weights=tf.cast(present, tf.float32))
        outputs[xf(key)] = tf.where(
            present, tf.cast(buckets, tf.int64), tf.constant(features.FEATURE_BUCKET_COUNT, tf.int64)
        )

    for key, size in features.CATEGORICAL_INT_FEATURES.items():
        values, present = _densify(inputs[key], tf.constant(0, tf.int64))
        # Out-of-range and missing values share the id `size`.
        valid = present & (values >= 0) & (values < size)
        outputs[xf(key)] = tf.where(valid, values, tf.constant(size, tf.int64))

    for key in features.VOCAB_STRING_FEATURES:
        # A missing value is the empty string, an entry of its own.
        values, _ = _densify(inputs[key], tf.constant(b""))
        outputs[xf(key)] = tft.compute_and_apply_vocabulary(
            values,
            top_k=features.VOCAB_SIZE,
            num_oov_buckets=features.OOV_SIZE,
            vocab_filename=key,
        )

    fare, _ = _as_float(inputs[features.FARE_KEY])
    fare_bucket = tft.bucketize(fare, features.FARE_CROSS_BUCKETS)
    outputs[xf(features.PAYMENT_FARE_CROSS)] = (
        outputs[xf("payment_type")] * features.FARE_CROSS_BUCKETS + tf.minimum(tf.cast(fare_bucket, tf.int64), features.FARE_CROSS_BUCKETS - 1)
    )

    outputs[xf(features.LABEL_KEY)] = big_tipper(
        inputs[features.TIPS_KEY], inputs[features.FARE_KEY]
    )
    return outputs


VOCAB_IDS = features.VOCAB_SIZE + features.OOV_SIZE


def categorical_sizes() -> dict[str, int]:
    """Embedding input sizes of the categorical outputs above (ids are < size)."""
    sizes = {features.transformed_name(features.PAYMENT_FARE_CROSS): VOCAB_IDS * features.FARE_CROSS_BUCKETS}
    for key in features.BUCKET_FEATURES:
        sizes[features.transformed_name(key)] = features.FEATURE_BUCKET_COUNT + 1
    for key, size in features.CATEGORICAL_INT_FEATURES.items():
        sizes[features.transformed_name(key)] = size + 1
    for key in features.VOCAB_STRING_FEATURES:
        sizes[features.transformed_name(key)] = VOCAB_IDS
    return sizes


def numeric_outputs() -> list[str]:
    names = []
    for key in features.DENSE_FLOAT_FEATURES:
        names += [features.transformed_name(key), features.transformed_name(key + "_missing")]
    return names
