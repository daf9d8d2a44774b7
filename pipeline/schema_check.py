"""Mistakes in a curated schema, found before a run starts.

ImportSchemaGen takes any text-format Schema. Without this check a contradiction
surfaced late and blamed the wrong thing: `min > max` or `min_fraction: 2.0`
became a data anomaly in the gate (every row "out of range"), a model input
declared FLOAT failed inside Transform with TensorFlow's dtype error, a model
input left out failed there with a KeyError, and a duplicated feature or a
negative drift threshold passed silently. Each is now named with the feature
and the fix, and the run does not start.
"""
from __future__ import annotations

import math
from collections import Counter

from models import features

# The schema types each column the model reads may have: the numeric ones are
# cast to float in preprocessing_fn, the categorical ids are compared as int64,
# the vocabularies are built over strings.
_NUMERIC = ("INT", "FLOAT")
MODEL_COLUMN_TYPES = {
    **{name: _NUMERIC for name in (*features.DENSE_FLOAT_FEATURES, *features.BUCKET_FEATURES,
                                   features.TIPS_KEY, features.FARE_KEY)},
    **{name: ("INT",) for name in features.CATEGORICAL_INT_FEATURES},
    **{name: ("BYTES",) for name in features.VOCAB_STRING_FEATURES},
}
SERVING_ENVIRONMENT = "SERVING"


def type_name(feature) -> str:  # noqa: ANN001 - schema_pb2.Feature
    from tensorflow_metadata.proto.v0 import schema_pb2

    return schema_pb2.FeatureType.Name(feature.type)


def _environments(feature) -> set[str]:  # noqa: ANN001 - schema_pb2.Feature
    return set(feature.in_environment) | set(feature.not_in_environment)


def _in_serving(feature, schema) -> bool:  # noqa: ANN001 - tensorflow_metadata protos
    """Whether TFDV expects the feature in SERVING data (its in/not_in/default environment rules)."""
    if feature.in_environment:
        return SERVING_ENVIRONMENT in feature.in_environment
    if SERVING_ENVIRONMENT in feature.not_in_environment:
        return False
    return not schema.default_environment or SERVING_ENVIRONMENT in schema.default_environment


def _model_problems(schema) -> list[str]:  # noqa: ANN001 - schema_pb2.Schema
    by_name = {feature.name: feature for feature in schema.feature}
    problems = []
    for name, allowed in MODEL_COLUMN_TYPES.items():
        feature = by_name.get(name)
        if feature is None:
            problems.append(f"{name}: the model reads this column but the schema does not declare it")
        elif type_name(feature) not in allowed:
            problems.append(f"{name}: type {type_name(feature)}, but the model reads it as "
                            f"{' or '.join(allowed)}")
        elif feature.HasField("shape"):
            problems.append(f"{name}: has a shape, but the model reads every column as optional "
                            "(give value_count, not shape)")
    tips = by_name.get(features.TIPS_KEY)
    if tips is not None and _in_serving(tips, schema):
        problems.append(f"{features.TIPS_KEY}: the label's source must not be in the {SERVING_ENVIRONMENT} "
                        f'environment (add not_in_environment: "{SERVING_ENVIRONMENT}"); requests never carry it')
    for name in features.SERVING_FEATURES:
        if name in by_name and not _in_serving(by_name[name], schema):
            problems.append(f"{name}: a model input must be in the {SERVING_ENVIRONMENT} environment "
                            "(every request carries it)")
    return problems


def _range_problem(name: str, kind: str, low: float | None, high: float | None) -> str | None:
    if any(value is not None and math.isnan(value) for value in (low, high)):
        return f"{name}: {kind} has a NaN bound"
    if low is not None and high is not None and low > high:
        return f"{name}: {kind} min {low:g} is above its max {high:g}"
    return None


def _bound(message, field: str) -> float | None:  # noqa: ANN001 - a proto message
    return getattr(message, field) if message.HasField(field) else None


def _feature_problems(feature, schema) -> list[str]:  # noqa: ANN001 - tensorflow_metadata protos
    name = feature.name
    problems = [problem for problem in (
        feature.HasField("int_domain") and _range_problem(
            name, "int_domain", _bound(feature.int_domain, "min"), _bound(feature.int_domain, "max")),
        feature.HasField("float_domain") and _range_problem(
            name, "float_domain", _bound(feature.float_domain, "min"), _bound(feature.float_domain, "max")),
        feature.HasField("value_count") and _range_problem(
            name, "value_count", _bound(feature.value_count, "min"), _bound(feature.value_count, "max")),
    ) if problem]
    presence = feature.presence
    if not 0.0 <= presence.min_fraction <= 1.0:  # also false for NaN
        problems.append(f"{name}: presence min_fraction {presence.min_fraction:g} is not a fraction in [0, 1]")
    if presence.min_count < 0:
        problems.append(f"{name}: presence min_count {presence.min_count} is negative")
    for which in ("drift_comparator", "skew_comparator"):
        comparator = getattr(feature, which)
        for measure in ("infinity_norm", "jensen_shannon_divergence", "normalized_abs_difference"):
            if comparator.HasField(measure) and not getattr(comparator, measure).threshold >= 0:
                threshold = getattr(comparator, measure).threshold
                problems.append(f"{name}: {which} {measure} threshold {threshold:g} is not a distance >= 0")
    if feature.HasField("domain") and feature.domain not in {domain.name for domain in schema.string_domain}:
        problems.append(f"{name}: domain {feature.domain!r} names no string_domain in the schema")
    declared = set(schema.default_environment)
    unknown = sorted(_environments(feature) - declared) if declared else []
    if unknown:
        problems.append(f"{name}: environment {unknown[0]!r} is not one of the schema's default_environment "
                        f"({', '.join(schema.default_environment)})")
    return problems


def schema_problems(schema) -> list[str]:  # noqa: ANN001 - schema_pb2.Schema
    """One line per mistake, each naming the feature; empty when the schema is sound."""
    counts = Counter(feature.name for feature in schema.feature)
    problems = [f"{name}: declared {count} times" for name, count in counts.items() if count > 1]
    domains = Counter(domain.name for domain in schema.string_domain)
    problems += [f"string_domain {name!r}: declared {count} times" for name, count in domains.items() if count > 1]
    for feature in schema.feature:
        problems += _feature_problems(feature, schema)
    return problems + _model_problems(schema)
