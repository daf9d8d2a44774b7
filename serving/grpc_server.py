"""TF Serving's gRPC API (PredictionService, ModelService) from tensorflow-serving-api.

Clients generated from the official protos (Python, Go, Java) work unchanged
against this server and against the TF Serving container on port 8500.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
    status_pb2,
)

from serving.codec import CLASSIFY_METHOD, REGRESS_METHOD, SignatureInfo, TensorSpec, check_shape
from serving.config import ConfigError, specs_from_proto
from serving.core import ServingCore, check_examples_signature
from serving.errors import ServingError, invalid
from serving.example_codec import classifications
from serving.servable import DEFAULT_SIGNATURE, Servable

log = logging.getLogger("serving")
_ERROR_CODES = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type.values_by_name
_STATES = get_model_status_pb2.ModelVersionStatus.State


def _spec_target(spec: Any) -> tuple[int | None, str | None]:
    which = spec.WhichOneof("version_choice")
    if which == "version":
        return spec.version.value, None
    if which == "version_label":
        return None, spec.version_label
    return None, None


# TensorProto's typed value field per numpy dtype, for the dtypes models take
# and return most. tf.make_ndarray / tf.make_tensor_proto handle every case
# but cost 30-45 us per tensor (14 inputs: ~0.5 ms of GIL time per request);
# these paths cost 3-10 us.
_VALUE_FIELDS = {np.dtype(np.float32): "float_val", np.dtype(np.float64): "double_val",
                 np.dtype(np.int32): "int_val", np.dtype(np.int64): "int64_val",
                 np.dtype(np.bool_): "bool_val", np.dtype(object): "string_val"}


def _ndarray(proto: Any, spec: TensorSpec) -> np.ndarray:
    """TensorProto -> ndarray (dtype already checked against the signature)."""
    field = _VALUE_FIELDS.get(spec.np_dtype)
    if field is None:
        return tf.make_ndarray(proto)
    shape = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_content and field != "string_val":
        return np.frombuffer(proto.tensor_content, dtype=spec.np_dtype).reshape(shape).copy()
    if not proto.tensor_content and len(getattr(proto, field)) == math.prod(shape) > 0:
        return np.array(getattr(proto, field), dtype=spec.np_dtype).reshape(shape)
    return tf.make_ndarray(proto)  # one value broadcast to the shape, and the like


def _fill_tensor_proto(proto: Any, array: np.ndarray) -> None:
    """ndarray -> TensorProto, as tf.make_tensor_proto would write it."""
    field = _VALUE_FIELDS.get(array.dtype)
    if field is None:
        proto.CopyFrom(tf.make_tensor_proto(array))
        return
    proto.dtype = tf.as_dtype(tf.string if array.dtype == object else array.dtype).as_datatype_enum
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if field == "string_val":
        proto.string_val.extend(array.ravel().tolist())
    else:
        proto.tensor_content = array.tobytes()


def serialized_examples(request_input: Any) -> list[bytes]:
    """An Input's tf.Examples as the signature takes them. With a context, its
    bytes come first in each: parsing keeps the last value of a feature, so an
    example's own features win (TF Serving's InputToSerializedExampleTensor)."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in request_input.example_list.examples]
    if kind == "example_list_with_context":
        listed = request_input.example_list_with_context
        context = listed.context.SerializeToString()
        return [context + e.SerializeToString() for e in listed.examples]
    return []


def _classification(outputs: dict[str, np.ndarray]) -> classification_pb2.ClassificationResponse:
    response = classification_pb2.ClassificationResponse()
    for row in classifications(outputs):
        listed = response.result.classifications.add()
        for label, score in row:
            listed.classes.add(label=label, score=float(score))
    return response


def _regression(outputs: dict[str, np.ndarray]) -> regression_pb2.RegressionResponse:
    response = regression_pb2.RegressionResponse()
    for value in outputs["outputs"].tolist():
        response.result.regressions.add(value=value)
    return response


_TASK_METHODS = {CLASSIFY_METHOD: "classify", REGRESS_METHOD: "regress"}


def _inference_tasks(servable: Servable,
                     request: inference_pb2.MultiInferenceRequest) -> list[tuple[SignatureInfo, str]]:
    """(signature, classify/regress) per task, checked task by task in the order and
    with the messages of TF Serving's TensorFlowMultiInferenceRunner::Infer."""
    tasks: list[tuple[SignatureInfo, str]] = []
    for task in request.tasks:
        spec = task.model_spec
        if not spec.name:
            raise invalid("Found ModelSpec with an empty model name.")
        if spec.name != servable.name:
            raise invalid("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        name = spec.signature_name or DEFAULT_SIGNATURE
        if any(sig.name == name for sig, _method in tasks):
            raise invalid(f"Duplicate evaluation of signature: {name}")
        if name not in servable.signatures:
            raise invalid(f"Requested signature not found in model graph: {name}")
        method = _TASK_METHODS.get(task.method_name)
        if method is None:
            raise ServingError("UNIMPLEMENTED", f"Unsupported signature method_name: {task.method_name}")
        sig = servable.signature(name)
        check_examples_signature(sig, method)
        tasks.append((sig, method))
    return tasks


def _fill_model_spec(spec: Any, servable: Servable, signature: str) -> None:
    """The version and signature that answered, as TF Serving's MakeModelSpec."""
    spec.name = servable.name
    spec.version.value = servable.version
    spec.signature_name = signature


def _abort(context: grpc.ServicerContext, exc: ServingError) -> None:
    context.abort(exc.grpc_code, exc.message)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify, Regress, MultiInference and GetModelMetadata."""

    def __init__(self, core: ServingCore) -> None:
        self.core = core

    def _servable(self, spec: Any) -> Servable:
        if not spec.name:
            raise invalid("model_spec.name is required")
        version, label = _spec_target(spec)
        return self.core.resolve(spec.name, version, label)

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext) -> Any:
        try:
            with self.core.track(request.model_spec.name, "predict", "grpc") as tracked:
                servable = self._servable(request.model_spec)
                tracked.version = str(servable.version)
                sig = servable.signature(request.model_spec.signature_name or None)
                tracked.signature = sig.name
                names = set(request.inputs)
                unknown = sorted(names - set(sig.inputs))
                missing = sorted(set(sig.inputs) - names)
                if unknown or missing:
                    what = f"unknown input '{unknown[0]}'" if unknown else f"missing input '{missing[0]}'"
                    raise invalid(f"{what} for signature '{sig.name}'; expected: {', '.join(sig.inputs)}")
                feeds = {}
                for name, proto in request.inputs.items():
                    want = sig.inputs[name].dtype
                    if proto.dtype != want.as_datatype_enum:
                        raise invalid(
                            f"input '{name}' has dtype {tf.as_dtype(proto.dtype).name}, the signature expects {want.name}"
                        )
                    check_shape(sig.inputs[name], [d.size for d in proto.tensor_shape.dim])
                    try:
                        feeds[name] = _ndarray(proto, sig.inputs[name])
                    except (ValueError, TypeError) as exc:
                        raise invalid(f"input '{name}' is not a valid TensorProto: {exc}") from None
                outputs = self.core.predict(servable, sig.name, feeds, "grpc")
                wanted = list(request.output_filter) or list(outputs)
                bad = [o for o in wanted if o not in outputs]
                if bad:
                    raise invalid(f"output_filter names unknown output '{bad[0]}'")
                twice = [o for i, o in enumerate(wanted) if o in wanted[:i]]
                if twice:  # as TF Serving says it; filled twice, the tensor's shape no longer matched its values
                    raise invalid(f"duplicate output tensor name: {twice[0]}")
                response = predict_pb2.PredictResponse()
                _fill_model_spec(response.model_spec, servable, sig.name)
                for name in wanted:
                    _fill_tensor_proto(response.outputs[name], np.asarray(outputs[name]))
                return response
        except ServingError as exc:
            _abort(context, exc)

    def Classify(self, request: classification_pb2.ClassificationRequest, context: grpc.ServicerContext) -> Any:
        return self._examples_call(request, context, "classify")

    def Regress(self, request: regression_pb2.RegressionRequest, context: grpc.ServicerContext) -> Any:
        return self._examples_call(request, context, "regress")

    def _examples_call(self, request: Any, context: grpc.ServicerContext, method: str) -> Any:
        """Classify/Regress through the path REST's :classify/:regress take; only the answer's format differs."""
        try:
            with self.core.track(request.model_spec.name, method, "grpc") as tracked:
                servable = self._servable(request.model_spec)
                tracked.version = str(servable.version)
                sig, outputs = self.core.examples_call(servable, request.model_spec.signature_name or None, method,
                                                       serialized_examples(request.input), tracked)
                response = _classification(outputs) if method == "classify" else _regression(outputs)
                _fill_model_spec(response.model_spec, servable, sig.name)
                return response
        except ServingError as exc:
            _abort(context, exc)

    def MultiInference(self, request: inference_pb2.MultiInferenceRequest, context: grpc.ServicerContext) -> Any:
        """Classify and/or regress tasks on one model, all on the request's one Input.
        As in TF Serving, the first task's model_spec picks the version for all."""
        try:
            first = request.tasks[0].model_spec if request.tasks else None
            with self.core.track(first.name if first else "", "multi_inference", "grpc") as tracked:
                if first is None:  # TF Serving looks up an empty ModelSpec then
                    raise invalid("ModelSpec has no name specified. (the request has no tasks)")
                servable = self._servable(first)
                tracked.version = str(servable.version)
                tasks = _inference_tasks(servable, request)
                tracked.signature = ",".join(sig.name for sig, _method in tasks)
                outputs = self.core.run_examples(servable, tasks, serialized_examples(request.input))
                response = inference_pb2.MultiInferenceResponse()
                for (sig, method), answered in zip(tasks, outputs, strict=True):
                    result = response.results.add()
                    _fill_model_spec(result.model_spec, servable, sig.name)
                    if method == "classify":
                        result.classification_result.CopyFrom(_classification(answered).result)
                    else:
                        result.regression_result.CopyFrom(_regression(answered).result)
                return response
        except ServingError as exc:
            _abort(context, exc)

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise invalid("metadata_field must be exactly ['signature_def']")
            servable = self._servable(request.model_spec)
            sig_map = get_model_metadata_pb2.SignatureDefMap()
            for k, v in servable.signature_defs.items():
                sig_map.signature_def[k].CopyFrom(v)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(sig_map)
            return response
        except ServingError as exc:
            _abort(context, exc)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus, the readiness check deployments poll, and HandleReloadConfigRequest."""

    def __init__(self, core: ServingCore) -> None:
        self.core = core

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            version, _label = _spec_target(request.model_spec)  # a label is not read, as in TF Serving
            states = self.core.registry.model_states(request.model_spec.name, version)
            response = get_model_status_pb2.GetModelStatusResponse()
            for s in states:
                row = response.model_version_status.add(version=s.version, state=_STATES.Value(s.state))
                row.status.error_code = _ERROR_CODES[s.error_code].number
                row.status.error_message = s.error_message
            return response
        except ServingError as exc:
            _abort(context, exc)


    def HandleReloadConfigRequest(self, request: Any, context: grpc.ServicerContext) -> Any:
        """A new ModelConfigList, taken or refused whole by the rules of a config file's re-read.

        Models left out are unloaded; a label may move only to a loaded version
        (FAILED_PRECONDITION); the answer waits until added models are loaded, or failed to, for as long
        as the client waits (an added model without versions keeps a client without a deadline waiting,
        as TF Serving does).
        `metric_names` are answered with each one's increase over the reload, read from this server's
        own metrics by their exposition names (`serving_model_events_total`); TF's internal metric
        names are not kept here and, like any name not exported, increase by 0.
        """
        try:
            if request.config.WhichOneof("config") != "model_config_list":
                raise invalid("ServerModelConfig type not supported by HandleReloadConfigRequest. "
                              "Only ModelConfigList is currently supported")
            try:
                specs = specs_from_proto(request.config.model_config_list)
            except ConfigError as exc:
                raise invalid(str(exc)) from None
            names = list(dict.fromkeys(request.metric_names))
            before = {name: self.core.metrics.value(name) for name in names}
            self.core.registry.reload_and_load(specs, waiting=context.is_active)
            response = model_management_pb2.ReloadConfigResponse()
            response.status.error_code = _ERROR_CODES["OK"].number
            for name in names:
                response.metric.add(name=name, int64_value_increase=self.core.metrics.value(name) - before[name])
            return response
        except ServingError as exc:
            log.error("ReloadConfig failed: %s", exc.message)
            _abort(context, exc)


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """fd 2 at /dev/null for a moment: gRPC's C core logs there directly, past Python's logging."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def create_grpc_server(core: ServingCore, host: str, port: int, threads: int = 16,
                       max_message_bytes: int = 64 * 1024 * 1024) -> tuple[grpc.Server, int]:
    """A started-ready gRPC server and the port it bound (port 0 picks one)."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),  # else a second server silently shares the port
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc"), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(core), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), server)
    try:
        with _stderr_to_devnull():  # gRPC's own "E1125 ... add_port.cc" line: the error below says it in one
            bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # grpcio raises instead of returning 0 on a busy port
        bound = 0
    if bound == 0:
        raise OSError(f"cannot bind gRPC port {host}:{port} (in use?); pick another with --grpc-port")
    return server, bound
