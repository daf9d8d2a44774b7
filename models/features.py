"""The raw data contract of the Chicago taxi data, in one place.

Everything that names a column (preprocessing, the serving signatures, the
schema draft, the tests) reads it from here, so a renamed column is one edit.
"""
from __future__ import annotations

import math

# The label is derived, not read: a "big tipper" left tips above 20% of the fare.
LABEL_KEY = "big_tipper"
TIPS_KEY = "tips"
FARE_KEY = "fare"
BIG_TIP_FRACTION = 0.2

# Numeric columns scaled to z-scores (log1p first for the long-tailed ones).
DENSE_FLOAT_FEATURES = ["trip_miles", "fare", "trip_seconds"]
LOG_SCALED_FEATURES = ["trip_miles", "fare", "trip_seconds"]

# Coordinates, bucketized into quantiles (location matters, not magnitude).
BUCKET_FEATURES = [
    "pickup_latitude",
    "pickup_longitude",
    "dropoff_latitude",
    "dropoff_longitude",
]
FEATURE_BUCKET_COUNT = 10

# Integer categories with a fixed domain in the schema, used directly as ids,
# with their cardinality (largest id + 1). Chicago's community areas are
# numbered 1-77: a vocabulary would only relearn that list on every run.
CATEGORICAL_INT_FEATURES = {
    "trip_start_hour": 24,
    "trip_start_day": 8,
    "trip_start_month": 13,
    "pickup_community_area": 78,
    "dropoff_community_area": 78,
}

# Free-text categories: vocabularies.
VOCAB_STRING_FEATURES = ["payment_type", "company"]
VOCAB_SIZE = 200
OOV_SIZE = 10

# Columns in the data that the model deliberately does not read: the timestamp
# (the hour/day/month columns carry its seasonality) and the census tracts
# (pickup is empty in all but one row, dropoff in 28%; they only added overfitting).
UNUSED_FEATURES = ["trip_start_timestamp", "pickup_census_tract", "dropoff_census_tract"]

# How a tip is sized depends on the exact fare and on how the trip was paid
# (cash tips are almost never recorded): a learned weight per
# (payment type, fare quantile) pair gives the model that interaction directly.
PAYMENT_FARE_CROSS = "payment_fare"
FARE_CROSS_BUCKETS = 20

INT_COLUMNS = sorted(
    list(CATEGORICAL_INT_FEATURES)
    + ["trip_seconds", "trip_start_timestamp", "pickup_census_tract", "dropoff_census_tract"]
)
FLOAT_COLUMNS = sorted(
    ["trip_miles", "fare", "tips"] + BUCKET_FEATURES
)
STRING_COLUMNS = sorted(VOCAB_STRING_FEATURES)

# What a client sends to serving_default: every model input, never the label source.
SERVING_FEATURES = sorted(
    DENSE_FLOAT_FEATURES
    + BUCKET_FEATURES
    + list(CATEGORICAL_INT_FEATURES)
    + VOCAB_STRING_FEATURES
)

# Slices the Evaluator reports on, besides the overall metrics.
SLICE_FEATURES = ["payment_type", "trip_start_hour"]


def column_dtype(name: str) -> str:
    """'int', 'float' or 'string': the type the CSV column has in the schema."""
    if name in INT_COLUMNS:
        return "int"
    if name in FLOAT_COLUMNS:
        return "float"
    if name in STRING_COLUMNS:
        return "string"
    raise KeyError(f"unknown column {name!r}")


def transformed_name(key: str) -> str:
    return f"{key}_xf"


def is_missing(value: object) -> bool:
    """The documented missing-value representation of serving_default.

    Numbers: NaN (JSON ``NaN``, which TF Serving's parser accepts) ; strings: "".
    Python ``None`` is accepted by the project's client and turned into these.
    """
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, (str, bytes)) and len(value) == 0
