"""`python -m serving --model-base-path DIR --model-name taxi`: the local model server.

Flags mirror tensorflow_model_server's (dashes instead of underscores), so a
command line moves between this server and the TF Serving container easily.
Bad flags or config end in one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving", description=__doc__.splitlines()[0])
    p.add_argument("--model-name", default=None, help="model name in URLs (default: 'default', or from the config)")
    p.add_argument("--model-base-path", help="folder (or file:// URI) holding <version>/saved_model.pb dirs")
    p.add_argument("--model-config-file", type=Path, help="ModelServerConfig text file (names, policies, labels)")
    p.add_argument("--model-config-file-poll-wait-seconds", type=float, default=0.0,
                   help="re-read the config file this often (0: never)")
    p.add_argument("--allow-version-labels-for-unavailable-models", action="store_true",
                   help="a new label may name a version not loaded yet (needed to start with a labelled config); "
                        "a label moved to another version still needs that version loaded")
    p.add_argument("--file-system-poll-wait-seconds", type=float, default=1.0,
                   help="look for new versions this often (0: only at start)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: local only)")
    p.add_argument("--rest-api-port", type=int, default=8501)
    p.add_argument("--grpc-port", "--port", dest="grpc_port", type=int, default=8500,
                   help="gRPC port (-1: no gRPC)")
    p.add_argument("--enable-batching", action="store_true", help="merge concurrent requests into one model call")
    p.add_argument("--batching-parameters-file", type=Path, help="TF Serving batching parameters text file")
    p.add_argument("--model-threads", type=int, default=1,
                   help="threads running models without batching (0: the request's own thread)")
    p.add_argument("--tensorflow-intra-op-parallelism", type=int, default=0, help="threads per op (0: TF default)")
    p.add_argument("--tensorflow-inter-op-parallelism", type=int, default=0, help="ops in parallel (0: TF default)")
    p.add_argument("--max-body-bytes", type=int, default=10 * 1024 * 1024)
    p.add_argument("--max-batch-rows", type=int, default=1024, help="largest accepted request, in rows")
    p.add_argument("--request-timeout-seconds", type=float, default=30.0)
    p.add_argument("--max-inflight", type=int, default=256, help="concurrent REST requests before 503")
    p.add_argument("--request-log-dir", type=Path, help="write sampled requests as JSON lines here")
    p.add_argument("--request-log-sample-rate", type=float, default=0.0, help="fraction of requests to log (0..1)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def options_from_args(args: argparse.Namespace) -> object:
    """Flags -> ServerOptions, with every inconsistency as a ValueError line.

    The flags are checked before TensorFlow is imported (seconds, and log noise
    ahead of the one error line).
    """
    from serving.config import MODEL_NAME_RE, ModelSpec, load_model_config, local_folder

    if args.model_base_path is None and args.model_config_file is None:
        raise ValueError("give --model-base-path (and --model-name) or --model-config-file")
    base_path = None
    if args.model_base_path is not None:  # a str: Path() would turn gs://b into gs:/b
        base_path = local_folder(args.model_base_path, "--model-base-path", local="paths")
        if not base_path.is_dir():
            raise ValueError(f"--model-base-path {args.model_base_path} is not a directory")
    if args.model_config_file is not None and not args.model_config_file.is_file():
        raise ValueError(f"--model-config-file {args.model_config_file} does not exist")
    configured = load_model_config(args.model_config_file) if args.model_config_file is not None else []
    name = args.model_name or "default"  # a bad config file is one line above, before TensorFlow loads
    if args.model_name is None and base_path is not None and configured:
        # --model-base-path overrides the base path of the config's model: the one it has, or the named one.
        if len(configured) > 1:
            raise ValueError(f"{args.model_config_file} serves {len(configured)} models; "
                             "say whose base path --model-base-path replaces with --model-name")
        name = configured[0].name
    if not MODEL_NAME_RE.match(name):
        raise ValueError(f"--model-name {name!r} is not a valid model name")
    for flag in ("rest_api_port", "grpc_port"):
        port = getattr(args, flag)
        if not (port == -1 and flag == "grpc_port") and not 0 <= port <= 65535:
            raise ValueError(f"--{flag.replace('_', '-')} {port} is not a port number")
    if not 0.0 <= args.request_log_sample_rate <= 1.0:
        raise ValueError("--request-log-sample-rate must be within [0, 1]")
    if args.request_log_sample_rate > 0 and args.request_log_dir is None:
        raise ValueError("--request-log-sample-rate needs --request-log-dir")
    if min(args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism, args.model_threads) < 0:
        raise ValueError("--model-threads and --tensorflow-*-parallelism must be >= 0")
    if min(args.max_body_bytes, args.max_batch_rows, args.max_inflight) < 1 or not (
            0 < args.request_timeout_seconds < math.inf):
        raise ValueError("--max-body-bytes, --max-batch-rows, --max-inflight and --request-timeout-seconds must be > 0")
    for flag in ("file_system_poll_wait_seconds", "model_config_file_poll_wait_seconds"):
        if not 0 <= getattr(args, flag) < math.inf:
            raise ValueError(f"--{flag.replace('_', '-')} must be a number of seconds >= 0 (0: never)")
    from common.console import silenced

    with silenced():  # TensorFlow's import-time lines (CUDA plugins on a machine without a GPU) are not the server's
        from serving.batching import BatchingParameters
        from serving.core import Limits
        from serving.server import ServerOptions, parse_batching_parameters

    batching = None
    if args.enable_batching or args.batching_parameters_file:
        batching = BatchingParameters()
        if args.batching_parameters_file:
            try:
                text = args.batching_parameters_file.read_text()
            except OSError as exc:
                raise ValueError(f"cannot read {args.batching_parameters_file}: {exc.strerror}") from None
            try:
                batching = parse_batching_parameters(text)
            except ValueError as exc:  # ConfigError: which file, as for the model config
                raise ValueError(f"{args.batching_parameters_file}: {exc}") from None
    models, overrides = [], {}
    if args.model_config_file is None:
        models = [ModelSpec(name, str(base_path.resolve()))]
    elif base_path is not None:
        overrides = {name: str(base_path.resolve())}
    return ServerOptions(
        models=models, host=args.host, rest_port=args.rest_api_port,
        grpc_port=None if args.grpc_port == -1 else args.grpc_port,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        model_config_file=args.model_config_file,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        allow_version_labels_for_unavailable_models=args.allow_version_labels_for_unavailable_models,
        base_path_override=overrides,
        limits=Limits(max_body_bytes=args.max_body_bytes, max_batch_rows=args.max_batch_rows,
                      request_timeout_s=args.request_timeout_seconds, max_inflight=args.max_inflight),
        batching=batching, request_log_dir=args.request_log_dir,
        request_log_sample_rate=args.request_log_sample_rate,
        model_threads=args.model_threads,
        tf_intra_op_threads=args.tensorflow_intra_op_parallelism,
        tf_inter_op_threads=args.tensorflow_inter_op_parallelism,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        options = options_from_args(args)
        from serving.server import ServingServer

        server = ServingServer(options)  # type: ignore[arg-type]
    except (ValueError, OSError) as exc:  # ConfigError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
