"""Mistakes in a curated schema, found before a run starts.

ImportSchemaGen takes any text-format Schema. Without this check a contradiction
surfaced late and blamed the wrong thing: `min > max` or `min_fraction: 2.0`
became a data anomaly in the gate (every row "out of range"), a model input
declared FLOAT failed inside Transform with TensorFlow's dtype error, a model
input left out (or deprecated) failed there with a KeyError, a domain on the
wrong type or an empty one blamed every row, and a duplicated feature or a
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
# The domain each type may carry (TFDV reports any other as "domain does not match the type", against the data).
_DOMAIN_TYPES = {"int_domain": "INT", "float_domain": "FLOAT", "string_domain": "BYTES", "domain": "BYTES",
                 "struct_domain": "STRUCT"}
# Stages at which TFX's parsers leave a feature out (tfx_bsl's _DISQUALIFYING_LIFECYCLE_STAGES).
_DROPPED_STAGES = ("DEPRECATED", "DISABLED", "PLANNED", "ALPHA", "DEBUG_ONLY", "VALIDATION_DERIVED")


def type_name(feature) -> str:  # noqa: ANN001 - schema_pb2.Feature
    from tensorflow_metadata.proto.v0 import schema_pb2

    return schema_pb2.FeatureType.Name(feature.type)


def _left_out(feature) -> str | None:  # noqa: ANN001 - schema_pb2.Feature
    """Why TFX's parsers leave the feature out ("deprecated: true", "lifecycle_stage: ALPHA"), or None."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    if feature.deprecated:
        return "deprecated: true"
    stage = schema_pb2.LifecycleStage.Name(feature.lifecycle_stage)
    return f"lifecycle_stage: {stage}" if stage in _DROPPED_STAGES else None


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
        elif left_out := _left_out(feature):
            problems.append(f"{name}: the model reads this column, but {left_out} leaves it out of what "
                            "Transform parses")
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


def _bounds_problems(feature) -> list[str]:  # noqa: ANN001 - schema_pb2.Feature
    name, problems = feature.name, []
    for kind in ("int_domain", "float_domain", "value_count"):
        if feature.HasField(kind):
            message = getattr(feature, kind)
            problems.append(_range_problem(name, kind, _bound(message, "min"), _bound(message, "max")))
    if feature.HasField("value_count") and feature.value_count.HasField("max") and feature.value_count.max == 0:
        problems.append(f"{name}: value_count max 0 lets no row hold a value")
    presence = feature.presence
    if not 0.0 <= presence.min_fraction <= 1.0:  # also false for NaN
        problems.append(f"{name}: presence min_fraction {presence.min_fraction:g} is not a fraction in [0, 1]")
    if presence.min_count < 0:
        problems.append(f"{name}: presence min_count {presence.min_count} is negative")
    mass = feature.distribution_constraints.min_domain_mass
    if feature.HasField("distribution_constraints") and not 0.0 <= mass <= 1.0:
        problems.append(f"{name}: distribution_constraints min_domain_mass {mass:g} is not a fraction in [0, 1]")
    for which in ("drift_comparator", "skew_comparator"):
        comparator = getattr(feature, which)
        for measure in ("infinity_norm", "jensen_shannon_divergence", "normalized_abs_difference"):
            if comparator.HasField(measure) and not getattr(comparator, measure).threshold >= 0:
                threshold = getattr(comparator, measure).threshold
                problems.append(f"{name}: {which} {measure} threshold {threshold:g} is not a distance >= 0")
    return [problem for problem in problems if problem]


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiouAEIOU' else 'a'} {word}"


def _domain_problems(feature, string_domains: dict) -> list[str]:  # noqa: ANN001 - schema_pb2.Feature
    name, kind = feature.name, type_name(feature)
    if kind == "TYPE_UNKNOWN":
        return [f"{name}: has no type (give type: INT, FLOAT or BYTES)"]
    problems = []
    domain = feature.WhichOneof("domain_info")
    if domain in _DOMAIN_TYPES and _DOMAIN_TYPES[domain] != kind:
        problems.append(f"{name}: {_a(domain)} on {_a(kind)} feature (it belongs on {_DOMAIN_TYPES[domain]} ones)")
    if domain == "domain" and feature.domain not in string_domains:
        problems.append(f"{name}: domain {feature.domain!r} names no string_domain in the schema")
    values = feature.string_domain.value if domain == "string_domain" else string_domains.get(feature.domain, [None])
    if domain in ("domain", "string_domain") and not values:
        problems.append(f"{name}: its string_domain lists no value, so every value would be an anomaly")
    return problems


def _environment_problems(schema) -> list[str]:  # noqa: ANN001 - schema_pb2.Schema
    declared = set(schema.default_environment)
    unknown = {feature.name: sorted(_environments(feature) - declared) for feature in schema.feature}
    return [f"{name}: environment {names[0]!r} is not one of the schema's default_environment "
            f"({', '.join(schema.default_environment)})" for name, names in unknown.items() if names and declared]


def _structure_problems(schema) -> list[str]:  # noqa: ANN001 - schema_pb2.Schema
    """Names declared twice, the environments the pipeline reads, and what sparse and weighted features name."""
    counts = Counter(feature.name for feature in schema.feature)
    problems = [f"{name}: declared {count} times" for name, count in counts.items() if count > 1]
    domains = Counter(domain.name for domain in schema.string_domain)
    problems += [f"string_domain {name!r}: declared {count} times" for name, count in domains.items() if count > 1]
    missing = [env for env in ("TRAINING", SERVING_ENVIRONMENT) if env not in schema.default_environment]
    if missing:
        problems.append(f"default_environment: {' and '.join(missing)} missing (declare both: the label's source "
                        "is kept out of SERVING, which `taxi monitor` validates served requests against)")
    for sparse in schema.sparse_feature:
        if sparse.name in counts:
            problems.append(f"{sparse.name}: a sparse_feature and a feature of the same name")
        named = [*(ref.name for ref in sparse.index_feature), sparse.value_feature.name]
        problems += [f"{sparse.name}: sparse_feature names {ref!r}, which is not a feature" for ref in named
                     if ref not in counts]
    for weighted in schema.weighted_feature:
        named = [".".join(weighted.feature.step), ".".join(weighted.weight_feature.step)]
        problems += [f"{weighted.name}: weighted_feature names {ref!r}, which is not a feature" for ref in named
                     if ref not in counts]
    return problems


def schema_problems(schema) -> list[str]:  # noqa: ANN001 - schema_pb2.Schema
    """One line per mistake, each naming the feature; empty when the schema is sound."""
    # The first is the one a run prints: a misspelt environment before what it makes of the label, a type the
    # model cannot read before the domain that no longer fits it.
    problems = _structure_problems(schema) + _environment_problems(schema) + _model_problems(schema)
    string_domains = {domain.name: domain.value for domain in schema.string_domain}
    for feature in schema.feature:
        problems += _bounds_problems(feature) + _domain_problems(feature, string_domains)
    return problems
