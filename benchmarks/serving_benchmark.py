"""Serving latency and throughput: REST and gRPC side by side with in-process calls.

    .venv/bin/python benchmarks/serving_benchmark.py --model-base-path OUT/serving_model/taxi

Measures 1-row predictions at 1, 8 and 32 concurrent clients against the local
server (started as a subprocess, as deployed), and the same SavedModel called
in this process, in one run on one machine, so the serving overhead is read off
directly. Targets: REST p50 <= in-process p50 + 2 ms; throughput at 32 clients
>= 50% of the in-process single-thread rate. Writes JSON + Markdown to
benchmarks/results/.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import httpx  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ROW = {"trip_miles": 2.1, "fare": 12.5, "trip_seconds": 600.0, "pickup_latitude": 41.89,
       "pickup_longitude": -87.63, "dropoff_latitude": 41.9, "dropoff_longitude": -87.62, "trip_start_hour": 14.0,
       "trip_start_day": 3.0, "trip_start_month": 5.0, "pickup_community_area": 8.0,
       "dropoff_community_area": 32.0, "payment_type": "Credit Card", "company": "Flash Cab"}
STRINGS = {"payment_type", "company"}


def summarize(latencies: list[float], wall: float) -> dict[str, float | None]:
    """Percentiles of the successful calls (None when none succeeded) and successes per second."""
    ms = np.array(latencies) * 1000
    pct = lambda q: round(float(np.percentile(ms, q)), 3) if len(ms) else None  # noqa: E731
    return {"requests": len(ms), "p50_ms": pct(50), "p99_ms": pct(99), "throughput_rps": round(len(ms) / wall, 1)}


_LOADED: dict[Path, object] = {}


def in_process_call(model_dir: Path):  # noqa: ANN201 - a zero-argument callable
    """The SavedModel's serving_default called directly on the 1-row request
    (the model is loaded once per benchmark run)."""
    import tensorflow as tf

    if model_dir not in _LOADED:
        _LOADED[model_dir] = tf.saved_model.load(str(model_dir))
    fn = _LOADED[model_dir].signatures["serving_default"]
    feeds = {k: tf.constant([v], dtype=tf.string if k in STRINGS else tf.float64) for k, v in ROW.items()}
    return lambda: fn(**feeds)


def bench_in_process(model_dir: Path, seconds: float) -> dict[str, float]:
    """The floor: the SavedModel's serving_default called directly, one thread."""
    return time_calls(in_process_call(model_dir), seconds)


def bench_server_call(model_dir: Path, seconds: float) -> dict[str, float]:
    """For reference, not a target: the server's own model call (Servable.run on
    the feeds its JSON codec makes), in this process."""
    from serving import codec
    from serving.servable import Servable

    servable = Servable("taxi", 0, model_dir)
    servable.warm_up()
    feeds, _ = codec.parse_predict(json.loads(REST_BODY), servable.signature(None))
    return time_calls(lambda: servable.run("serving_default", feeds), seconds)


def time_calls(call, seconds: float) -> dict[str, float]:  # noqa: ANN001 - a zero-argument callable
    for _ in range(50):
        call()
    latencies, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t)
    return summarize(latencies, time.perf_counter() - start)


REST_BODY = json.dumps({"instances": [ROW]}).encode()


def rest_predict(conn: http.client.HTTPConnection) -> None:
    """One 1-row :predict on a keep-alive connection; a non-200 answer raises."""
    conn.request("POST", "/v1/models/taxi:predict", REST_BODY, {"content-type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    if resp.status != 200:
        raise RuntimeError(f"REST answered {resp.status}")


def grpc_request():  # noqa: ANN201 - a PredictRequest
    """The same 1-row request as a TF Serving PredictRequest."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "taxi"
    for k, v in ROW.items():
        arr = np.array([v.encode()], dtype=object) if k in STRINGS else np.array([v], dtype=np.float64)
        request.inputs[k].CopyFrom(tf.make_tensor_proto(arr))
    return request


async def _load(call, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    stop_at = 0.0

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            try:
                await call()
                latencies.append(time.perf_counter() - t)
            except Exception:
                errors += 1

    try:
        for _ in range(10):  # warm connections and the batcher
            await call()
    except Exception as error:
        raise RuntimeError(f"gRPC warm-up failed: {type(error).__name__}: {error}") from None
    start = time.perf_counter()
    stop_at = start + seconds
    await asyncio.gather(*(worker() for _ in range(clients)))
    result = summarize(latencies, time.perf_counter() - start)
    result["errors"] = errors
    return result


def bench_rest(url: str, clients: int, seconds: float) -> dict[str, float]:
    """One thread and one keep-alive connection per client; stdlib http.client
    because its per-request cost is a fraction of httpx's, and the client
    shares the machine's two cores with the server."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)
    stop_at = [0.0]
    warm_up_errors: list[Exception] = []

    def worker() -> None:
        nonlocal errors
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        mine, bad = [], 0
        try:
            for _ in range(5):
                rest_predict(conn)
            start_gate.wait()
        except Exception as error:  # a failed warm-up stops the run: no thread may wait at the gate forever
            warm_up_errors.append(error)
            start_gate.abort()
            conn.close()
            return
        while time.perf_counter() < stop_at[0]:
            t = time.perf_counter()
            try:
                rest_predict(conn)
                mine.append(time.perf_counter() - t)
            except Exception:
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    stop_at[0] = time.perf_counter() + 1e9
    for t in threads:
        t.start()
    try:
        start_gate.wait()
    except threading.BrokenBarrierError:
        for t in threads:
            t.join()
        error = warm_up_errors[0]  # the first failure; it broke the gate for the others
        raise RuntimeError(f"REST warm-up failed: {type(error).__name__}: {error}") from None
    start = time.perf_counter()
    stop_at[0] = start + seconds
    for t in threads:
        t.join()
    result = summarize(latencies, time.perf_counter() - start)
    result["errors"] = errors
    return result


async def bench_grpc(target: str, clients: int, seconds: float) -> dict[str, float]:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    request = grpc_request()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        async def call() -> None:
            await stub.Predict(request, timeout=30)
        return await _load(call, clients, seconds)


def bench_paired(url: str, grpc_target: str, model_dir: Path, seconds: float) -> dict[str, dict[str, float]]:
    """1 client, calls interleaved in-process / REST / gRPC, so that all three
    see the same moment-to-moment load of a shared machine."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    request = grpc_request()
    channel = grpc.insecure_channel(grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    calls = {"in-process": in_process_call(model_dir), "rest": lambda: rest_predict(conn),
             "grpc": lambda: stub.Predict(request, timeout=30)}
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(20):
        for call in calls.values():
            call()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for name, call in calls.items():
            t = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    conn.close()
    channel.close()
    return {name: summarize(lat, wall) for name, lat in times.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


VARIANTS = {  # server flags per benchmarked variant
    "batching": ["--enable-batching"],
    "plain": [],
    "inline": ["--model-threads", "0"],  # model runs on the event loop: fewer thread hops
    # TF's spinning thread pools might compete with the HTTP path for the 2 cores
    "batching-tf1": ["--enable-batching", "--tensorflow-intra-op-parallelism", "1",
                     "--tensorflow-inter-op-parallelism", "1"],
}


@contextlib.contextmanager
def running_server(base: Path, variant: str) -> Iterator[tuple[str, str]]:
    """(REST url, gRPC target) of the server as a subprocess, stopped (killed if it will not stop) however
    the block ends: an error, Ctrl-C, or SIGTERM (main turns it into SystemExit)."""
    rest, grpc_port = _free_port(), _free_port()
    cmd = [sys.executable, "-m", "serving", "--model-base-path", str(base), "--model-name", "taxi",
           "--rest-api-port", str(rest), "--grpc-port", str(grpc_port), "--file-system-poll-wait-seconds", "0",
           "--log-level", "WARNING"] + VARIANTS[variant]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{rest}"
    try:
        deadline = time.monotonic() + 180
        while not _ready(proc, cmd, url):
            if time.monotonic() > deadline:
                raise SystemExit("error: server did not become ready in 180s")
            time.sleep(0.25)
        yield url, f"127.0.0.1:{grpc_port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready(proc: subprocess.Popen, cmd: list[str], url: str) -> bool:
    if proc.poll() is not None:
        raise SystemExit(f"error: server exited with {proc.returncode}; run it by hand: {' '.join(cmd)}")
    try:
        return httpx.get(f"{url}/v1/models/taxi", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def bench_server(report: dict, variant: str, url: str, grpc_target: str, model_dir: Path, seconds: float,
                 clients: list[int]) -> None:
    """The interleaved 1-client comparison, then REST and gRPC at each client count, into report."""
    paired = bench_paired(url, grpc_target, model_dir, seconds)
    report["paired"].append({"server": variant, **{k: {"p50_ms": v["p50_ms"], "p99_ms": v["p99_ms"]}
                                                    for k, v in paired.items()}})
    print("paired", report["paired"][-1], flush=True)
    for protocol in ("rest", "grpc"):
        for n in clients:
            # the machine is shared: re-measure the floor next to every run
            floor = bench_in_process(model_dir, min(seconds, 2.0))
            stats = (bench_rest(url, n, seconds) if protocol == "rest"
                     else asyncio.run(bench_grpc(grpc_target, n, seconds)))
            result = {"server": variant, "protocol": protocol, "clients": n, **stats,
                      "in_process_p50_ms": floor["p50_ms"], "in_process_rps": floor["throughput_rps"]}
            report["runs"].append(result)
            print(result, flush=True)


def targets(report: dict) -> list[dict]:
    """The README's targets, each PASS or FAIL; a run with failed requests fails (its numbers count only successes)."""
    found = []
    for pr in report["paired"]:
        want = pr["in-process"]["p50_ms"] + 2
        found.append({"name": f"{pr['server']} REST p50, 1 client, interleaved (ms)", "value": pr["rest"]["p50_ms"],
                      "target": f"<= {want:.3f} (in-process p50 + 2)", "pass": pr["rest"]["p50_ms"] <= want})
    for r in report["runs"]:
        name = f"{r['server']} {r['protocol'].upper()}"
        if r["clients"] == 32:
            want = 0.5 * r["in_process_rps"]
            found.append({"name": f"{name} req/s at 32 clients", "value": r["throughput_rps"],
                          "target": f">= {want:.1f} (50% of in-process)",
                          "pass": r["throughput_rps"] >= want and not r["errors"]})
        if r["errors"]:
            found.append({"name": f"{name} failed requests at {r['clients']} clients", "value": r["errors"],
                          "target": "0", "pass": False})
    return found


def markdown(report: dict) -> str:
    ip = report["in_process"]
    lines = [
        "# Serving benchmark", "",
        f"{report['date']} on {report['machine']}; model `{report['model_dir']}`; 1-row requests, "
        f"{report['seconds_per_run']:g} s per run; clients run in the benchmark process (REST: a thread + keep-alive http.client connection each; gRPC: grpc.aio).", "",
        f"In process (single thread, first run): p50 {ip['p50_ms']} ms, p99 {ip['p99_ms']} ms, "
        f"{ip['throughput_rps']} req/s. This is `signatures[\"serving_default\"](**tensors)`, the call "
        "a user would write, and the floor the targets use.", "",
        "For reference (not a target), the server's own model call in this process (JSON codec's feeds, "
        "inputs packed by dtype, flat call, single-threaded executor for small batches): "
        f"p50 {report['server_call_in_process']['p50_ms']} ms.", "",
        f"Load average (shared machine) at start {report['load_average_start']}, end {report['load_average_end']}; "
        "the in-process floor is re-measured right before every run (last two columns).", "",
        "| server | protocol | clients | p50 ms | p99 ms | req/s | errors | in-process p50 ms | in-process req/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        lines.append(f"| {r['server']} | {r['protocol']} | {r['clients']} | {r['p50_ms']} | {r['p99_ms']} | "
                     f"{r['throughput_rps']} | {r['errors']} | {r['in_process_p50_ms']} | {r['in_process_rps']} |")
    lines += ["", "1 client, in-process / REST / gRPC calls interleaved (same load for all three), p50 / p99 ms:", "",
              "| server | in-process | REST | gRPC |", "|---|---|---|---|"]
    for pr in report["paired"]:
        lines.append(f"| {pr['server']} | " + " | ".join(
            f"{pr[k]['p50_ms']} / {pr[k]['p99_ms']}" for k in ("in-process", "rest", "grpc")) + " |")
    lines += ["", "## Targets", ""]
    lines += [f"- {t['name']}: {t['value']} (target {t['target']}) **{'PASS' if t['pass'] else 'FAIL'}**"
              for t in report["targets"]]
    return "\n".join(lines) + "\n"


def _positive(parse, words: str):  # noqa: ANN001, ANN202 - an argparse type
    """parse(text) must give numbers > 0 (a list of them for --clients); otherwise one usage line."""
    def check(text: str):  # noqa: ANN202
        try:
            value = parse(text)
        except ValueError:
            value = math.nan
        if not all(math.isfinite(v) and v > 0 for v in np.atleast_1d(value)):
            raise argparse.ArgumentTypeError(f"{text!r}: give {words}")
        return value
    return check


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-base-path", type=Path, required=True, help="<output>/serving_model/taxi")
    p.add_argument("--seconds", type=_positive(float, "a number of seconds > 0"), default=5.0,
                   help="duration of each run")
    p.add_argument("--clients", type=_positive(lambda t: [int(c) for c in t.split(",")], "whole numbers >= 1, "
                                               "comma-separated, e.g. 1,8,32"), default="1,8,32")
    p.add_argument("--servers", default="batching,plain", help=f"server variants: {', '.join(VARIANTS)}")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    import grpc
    unknown = set(args.servers.split(",")) - set(VARIANTS)
    if unknown:
        print(f"error: unknown server variant {sorted(unknown)[0]!r}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    versions = sorted(int(d.name) for d in args.model_base_path.glob("*") if d.name.isdigit()
                      and (d / "saved_model.pb").exists()) if args.model_base_path.is_dir() else []
    if not versions:
        print(f"error: no pushed version under {args.model_base_path}", file=sys.stderr)
        return 2
    try:  # before minutes of measuring, not after: an --out that is a file would lose the results
        args.out.mkdir(parents=True, exist_ok=True)
        probe = args.out / ".serving_benchmark.write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        print(f"error: --out {args.out} cannot hold the results: {error.strerror or error}", file=sys.stderr)
        return 2
    model_dir = args.model_base_path / str(versions[-1])
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "model_dir": str(model_dir), "seconds_per_run": args.seconds, "load_average_start": os.getloadavg(),
              "in_process": bench_in_process(model_dir, args.seconds),
              "server_call_in_process": bench_server_call(model_dir, args.seconds), "runs": [], "paired": []}
    print("in-process", report["in_process"], flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # unwind: stop the server
    for variant in args.servers.split(","):
        try:
            with running_server(args.model_base_path, variant) as (url, grpc_target):
                bench_server(report, variant, url, grpc_target, model_dir, args.seconds, args.clients)
        except (RuntimeError, grpc.RpcError) as error:  # the server answered errors where none may be
            print(f"error: server {variant}: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
    report["targets"] = targets(report)
    report["load_average_end"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving_benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "serving_benchmark.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
