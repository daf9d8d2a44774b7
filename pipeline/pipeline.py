"""create_pipeline(config): the one TFX pipeline every runner runs.

Components are imported from their own modules rather than through
``tfx.v1``: the v1 facade pulls in the Vertex extensions and
google.cloud.aiplatform (seconds of import) that a local run never uses.
"""
from __future__ import annotations

import os
from pathlib import Path

import tensorflow_model_analysis as tfma
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.evaluator.component import Evaluator
from tfx.components.example_validator.component import ExampleValidator
from tfx.components.pusher.component import Pusher
from tfx.components.statistics_gen.component import StatisticsGen
from tfx.components.trainer.component import Trainer
from tfx.dsl.components.base import executor_spec
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import example_gen_pb2, pusher_pb2, range_config_pb2, trainer_pb2
from tfx.types import Channel, standard_artifacts

from models import eval_metrics, features
from pipeline.code_keys import key_by_code
from pipeline.components import dedup_pusher
from pipeline.components.batched_csv_example_gen import BatchedCsvExampleGen, schema_columns
from pipeline.components.data_gate import DataGate
from pipeline.components.fixed_batch_transform import FixedBatchTransform
from pipeline.components.pinned_import_schema_gen import PinnedImportSchemaGen, schema_sha256
from pipeline.configs import IMAGE_REPO_ROOT, PROJECT_ROOT, PipelineConfig, read_schema
from pipeline.fingerprints import CodeIndex
from pipeline.spans import SPAN_PATTERN
from pipeline.training_schema import training_schema_text

PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.model.run_fn"

# Component ids, stable so that MLMD history and caching survive edits.
EXAMPLE_GEN = "CsvExampleGen"
PREVIOUS_EXAMPLE_GEN = "PreviousSpanExampleGen"
PREVIOUS_STATISTICS_GEN = "PreviousSpanStatisticsGen"
# ... or, when an earlier run made them from the same data, their imports (pipeline/ingested_span.py)
PREVIOUS_EXAMPLES, PREVIOUS_STATISTICS = "PreviousSpanExamples", "PreviousSpanStatistics"
DATA_GATE = "DataGate"
TRAINER = "Trainer"
EVALUATOR = "Evaluator"
PUSHER = "Pusher"
TRANSFORM = "Transform"
SCHEMA_IMPORTER = "ImportSchemaGen"
TRAINING_SCHEMA_IMPORTER = "TrainingSchemaImporter"


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """TFMA metrics, slices and the two blessing rules."""
    higher = tfma.MetricDirection.HIGHER_IS_BETTER
    auc_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.auc_threshold}),
        # "Not worse than the model in service", with an optional tolerance.
        change_threshold=tfma.GenericChangeThreshold(
            direction=higher, absolute={"value": -config.auc_change_tolerance - 1e-10}
        ),
    )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_tf_example",
                preprocessing_function_names=["transform_features"],
                label_key=features.transformed_name(features.LABEL_KEY),
                prediction_key="big_tip_probability",
            )
        ],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    # Blessing is decided on the overall slice; small slices (a few
                    # "Dispute" rides) would veto every model on noise alone.
                    eval_metrics.metric_config(
                        eval_metrics.HistogramAUC,
                        per_slice_thresholds=[
                            tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=auc_threshold)
                        ],
                    ),
                    # Accuracy, precision, recall and calibration, read off AUC's histogram. A model whose
                    # probabilities sit far from the observed rate is not blessed however well it ranks.
                    *eval_metrics.metric_configs({eval_metrics.HistogramCalibration: [tfma.PerSliceMetricThreshold(
                        slicing_specs=[tfma.SlicingSpec()],
                        threshold=tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(
                            lower_bound={"value": 1 / (1 + config.calibration_tolerance)},
                            upper_bound={"value": 1 + config.calibration_tolerance})))]}),
                    # A model must beat answering "no big tip" everywhere by a margin, whatever its AUC.
                    eval_metrics.metric_config(
                        eval_metrics.BaseRateErrorReduction,
                        per_slice_thresholds=[tfma.PerSliceMetricThreshold(
                            slicing_specs=[tfma.SlicingSpec()],
                            threshold=tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(
                                lower_bound={"value": config.min_error_reduction})))],
                    ),
                ]
            )
        ],
        slicing_specs=[tfma.SlicingSpec()]
        + [tfma.SlicingSpec(feature_keys=[key]) for key in features.SLICE_FEATURES],
    )


def _vertex_training_config(config: PipelineConfig) -> dict:
    from tfx.extensions.google_cloud_ai_platform import constants
    from tfx.extensions.google_cloud_ai_platform.trainer import executor as trainer_executor

    return {
        constants.ENABLE_VERTEX_KEY: True,
        constants.VERTEX_REGION_KEY: config.vertex_training_args.get("region", "us-central1"),
        trainer_executor.TRAINING_ARGS_KEY: config.vertex_training_args,
    }


def _vertex_serving_config(config: PipelineConfig) -> dict:
    from tfx.extensions.google_cloud_ai_platform import constants

    from pipeline.vertex.settings import DEFAULT_SERVING_IMAGE

    return {
        constants.ENABLE_VERTEX_KEY: True,
        constants.VERTEX_REGION_KEY: config.vertex_serving_args.get("region", "us-central1"),
        constants.VERTEX_CONTAINER_IMAGE_URI_KEY: config.vertex_serving_args.get(
            "container_image_uri", DEFAULT_SERVING_IMAGE
        ),
        # Model.deploy() takes the rest as keyword arguments; these two are not among them.
        constants.SERVING_ARGS_KEY: {
            k: v for k, v in config.vertex_serving_args.items() if k not in ("region", "container_image_uri")
        },
    }


SPLIT_CONFIG = example_gen_pb2.Output(
    # Hash-bucketed on the whole row: the same row always lands in the same split.
    split_config=example_gen_pb2.SplitConfig(
        splits=[
            example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=2),
            example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1),
        ]
    )
)


def _readable_schema(schema_path: str) -> str | None:
    """The local file holding the schema at schema_path where the pipeline runs: the file itself, or for a
    path in Vertex's image (under /pipeline/) this checkout's file, which the image is built from; None if it
    cannot be read here (gs://, a file of the image outside /pipeline/: vertex_runner refuses one found here)."""
    if schema_path.startswith(f"{IMAGE_REPO_ROOT}/"):
        schema_path = str(PROJECT_ROOT / schema_path[len(IMAGE_REPO_ROOT) + 1:])
    return schema_path if "://" not in schema_path and os.path.isfile(schema_path) else None


def _schema_column_types(schema_path: str, schema: schema_pb2.Schema | None) -> dict:
    """How CsvExampleGen learns the schema's FLOAT and INT columns: listed, from the schema where it can be
    read here (`schema`, see _readable_schema); else named, for the executor to read where it runs."""
    if schema is None:
        return {"schema_file": schema_path}
    return {"float_columns": schema_columns(schema, schema_pb2.FLOAT),
            "int_columns": schema_columns(schema, schema_pb2.INT)}


def _schema_importer(schema_path: str, readable: str | None) -> PinnedImportSchemaGen:
    """ImportSchemaGen pinned to the content of the schema read here, when it can be (see the component)."""
    pinned = schema_sha256(Path(readable).read_bytes()) if readable else None
    return PinnedImportSchemaGen(schema_file=schema_path, schema_sha256=pinned).with_id(SCHEMA_IMPORTER)


def _training_schema_importer(config: PipelineConfig, schema: schema_pb2.Schema | None) -> PinnedImportSchemaGen:
    """The schema as Transform and the Trainer see it (pipeline/training_schema.py), from the copy
    local_runner wrote, or made from the schema where the importer runs; pinned like ImportSchemaGen."""
    pinned = schema_sha256(training_schema_text(schema)) if schema is not None else None
    return PinnedImportSchemaGen(schema_file=config.training_schema_path or config.schema_path, schema_sha256=pinned,
                                 for_training=True).with_id(TRAINING_SCHEMA_IMPORTER)


def _example_gen(config: PipelineConfig, span: int | None, column_types: dict) -> BatchedCsvExampleGen:
    """CsvExampleGen over the flat folder, or over exactly one span-<N>/ folder (recorded in MLMD)."""
    if span is None:
        return BatchedCsvExampleGen(**column_types, input_base=config.data_root, output_config=SPLIT_CONFIG)
    return BatchedCsvExampleGen(
        **column_types,
        input_base=config.data_root,
        input_config=example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="single_split", pattern=SPAN_PATTERN)]
        ),
        output_config=SPLIT_CONFIG,
        range_config=range_config_pb2.RangeConfig(
            static_range=range_config_pb2.StaticRange(start_span_number=span, end_span_number=span)
        ),
    )


def _previous_span(config: PipelineConfig, column_types: dict, code: CodeIndex) -> list:
    """The previous span's Examples and statistics, the drift gate's baseline: made by an ExampleGen and a
    StatisticsGen (cached after their first run), or imported when an earlier local run made them from the same
    data under other node ids (the run that trained on that span; pipeline/ingested_span.py)."""
    examples = _example_gen(config, config.previous_span, column_types).with_id(PREVIOUS_EXAMPLE_GEN)
    statistics = StatisticsGen(examples=examples.outputs["examples"]).with_id(PREVIOUS_STATISTICS_GEN)
    if not config.metadata_path or not config.enable_cache:  # --no-cache: every component runs, these too
        return [examples, statistics]
    from pipeline.ingested_span import ingested

    key_by_code([examples, statistics], code, config.environment)  # as create_pipeline keys them, for the lookup
    made = ingested(examples, statistics, config.pipeline_name, config.pipeline_root, config.metadata_path)
    if made is None:
        return [examples, statistics]
    from tfx.dsl.components.common.importer import Importer

    return [Importer(source_uri=made[0], artifact_type=standard_artifacts.Examples).with_id(PREVIOUS_EXAMPLES),
            Importer(source_uri=made[1], artifact_type=standard_artifacts.ExampleStatistics).with_id(
                PREVIOUS_STATISTICS)]


def _only_output(node) -> Channel:  # noqa: ANN001 - a component or an Importer
    (channel,) = node.outputs.values()
    return channel


def create_pipeline(config: PipelineConfig) -> tfx_pipeline.Pipeline:
    readable_schema = _readable_schema(config.schema_path)
    schema = read_schema(readable_schema) if readable_schema else None
    column_types = _schema_column_types(config.schema_path, schema)  # both spans' ExampleGens
    example_gen = _example_gen(config, config.span, column_types).with_id(EXAMPLE_GEN)
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_importer = _schema_importer(config.schema_path, readable_schema)
    training_schema_importer = _training_schema_importer(config, schema)
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_importer.outputs["schema"],
    )
    code = CodeIndex()  # parsed once, for the lookup of the previous span and for every component's cache key
    baseline = _previous_span(config, column_types, code) if config.previous_span is not None else []
    # ExampleValidator only records anomalies; the gate is what stops the run.
    gate_inputs = {"baseline_statistics": _only_output(baseline[1]), "examples": example_gen.outputs["examples"],
                   "baseline_examples": _only_output(baseline[0])} if baseline else {}
    data_gate = DataGate(
        anomalies=example_validator.outputs["anomalies"],
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_importer.outputs["schema"],
        accept_drift=int(config.accept_drift),
        **gate_inputs,
    ).with_id(DATA_GATE)

    transform = FixedBatchTransform(
        examples=example_gen.outputs["examples"],
        schema=training_schema_importer.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        # StatisticsGen already described the raw data; Transform's own
        # pre/post statistics would double its Beam work for nothing here.
        disable_statistics=True,
        # TF1-style tracing of preprocessing_fn: measured here 14 s vs 23 s of
        # analysis on the taxi data; the exported tft_layer serves it the same.
        force_tf_compat_v1=True,
        # Nothing feeds the analyzer cache back (each run analyzes one span
        # whole); writing it costs a Beam sink per analyzer.
        disable_analyzer_cache=True,
        # The Trainer applies the Transform graph itself as it reads the raw
        # examples (models/model.py): no transformed copy of the data to
        # write and read back (about 5 s of Transform here).
        materialize=False,
    ).with_id(TRANSFORM)
    transform.add_upstream_node(data_gate)

    trainer_class, trainer_extra = Trainer, {}
    if config.vertex_training_args:
        # Imported here: the extension pulls in google.cloud.aiplatform (seconds).
        from tfx.extensions.google_cloud_ai_platform.trainer.component import Trainer as VertexTrainer

        trainer_class, trainer_extra = VertexTrainer, _vertex_training_config(config)
    trainer = trainer_class(
        run_fn=RUN_FN,
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=training_schema_importer.outputs["schema"],
        train_args=trainer_pb2.TrainArgs(num_steps=config.train_steps),
        eval_args=trainer_pb2.EvalArgs(num_steps=config.eval_steps),
        custom_config={
            "batch_size": config.batch_size,
            "learning_rate": config.learning_rate,
            **trainer_extra,
        },
    ).with_id(TRAINER)

    model_resolver = [Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=Channel(type=standard_artifacts.Model),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")] if config.compare_with_baseline else []

    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        # Without one, TFX drops the change thresholds, as on a first run.
        baseline_model=model_resolver[0].outputs["model"] if model_resolver else None,
        eval_config=eval_config(config),
    ).with_id(EVALUATOR)

    if config.vertex_serving_args:
        from tfx.extensions.google_cloud_ai_platform.pusher.component import Pusher as VertexPusher

        pusher = VertexPusher(
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            custom_config=_vertex_serving_config(config),
        ).with_id(PUSHER)
    else:
        pusher = Pusher(
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            push_destination=pusher_pb2.PushDestination(
                filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=config.serving_model_dir)
            ),
            custom_executor_spec=executor_spec.ExecutorClassSpec(dedup_pusher.Executor),
        ).with_id(PUSHER)

    components = [
        example_gen,
        *baseline,
        statistics_gen,
        schema_importer,
        training_schema_importer,
        example_validator,
        data_gate,
        transform,
        trainer,
        *model_resolver,
        evaluator,
        pusher,
    ]
    key_by_code(components, code, config.environment)
    return tfx_pipeline.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=(
            metadata.sqlite_metadata_connection_config(config.metadata_path)
            if config.metadata_path
            else None
        ),
        beam_pipeline_args=list(config.beam_pipeline_args),
    )
