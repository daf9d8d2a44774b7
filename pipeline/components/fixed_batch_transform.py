"""A Transform whose analyzers see the same batches on every run of the same data.

TFX's Transform leaves the batch size to Beam's BatchElements, which tunes it
from measured timings (1, 2, 4, ... up to 1,000 rows). tf.Transform's mean
and variance combiners then sum different groupings of the same rows, and the
z-score constants differ in their last float32 bit from run to run
(1.9469782 vs 1.9469781 on the taxi data). The model trained on them differs
too, so a `--no-cache` run on unchanged data pushed a new "identical" version.
With the batch size fixed the batches, and so the constants, depend only on
the data.

TFX 1.16's Transform executor does the work in a TransformProcessor it makes
itself inside Do; this executor has it make one that answers a fixed batch size.
"""
from __future__ import annotations

from tfx.components.transform import executor as transform_executor
from tfx.components.transform.component import Transform
from tfx.dsl.components.base import executor_spec

# tfx_bsl's cap for BatchElements' tuning (batch_util._BATCH_SIZE_CAP): the
# size Beam's tuning reaches anyway after its first few batches.
ANALYSIS_BATCH_SIZE = 1000


class _FixedBatchProcessor(transform_executor.TransformProcessor):
    def _GetDesiredBatchSize(self, data_format: int, schema) -> int:  # noqa: ANN001, N802 - TFX API
        # TFX's own answer wins where it has one (1 for raw SequenceExamples).
        return super()._GetDesiredBatchSize(data_format, schema) or ANALYSIS_BATCH_SIZE


class Executor(transform_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: ANN001, N802 - TFX executor API
        # Do looks TransformProcessor up in its module when it runs; executors
        # run one at a time in a process, so the swap is seen by this Do only.
        stock = transform_executor.TransformProcessor
        transform_executor.TransformProcessor = _FixedBatchProcessor
        try:
            return super().Do(input_dict, output_dict, exec_properties)
        finally:
            transform_executor.TransformProcessor = stock


class FixedBatchTransform(Transform):
    """TFX's Transform (same arguments and outputs) with the fixed-batch executor."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
