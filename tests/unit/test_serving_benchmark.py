"""The serving benchmark's measuring parts against real (stdlib) HTTP servers: failures are counted
and reported, never a hang, a crash or a PASS; bad flags are one usage error."""
from __future__ import annotations

import http.server
import threading

import pytest

from benchmarks import serving_benchmark


class _Flaky(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the benchmark's clients use it
    healthy = 0  # how many requests get a 200 before every answer is a 500
    served = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self.rfile.read(int(self.headers["content-length"]))
        type(self).served += 1
        body = b'{"predictions": [[0.5]]}'
        self.send_response(200 if type(self).served <= type(self).healthy else 500)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # noqa: ANN002 - quiet
        pass


@pytest.fixture()
def flaky_server():
    def start(healthy: int) -> str:
        handler = type("Handler", (_Flaky,), {"healthy": healthy, "served": 0})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    started: list = []
    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def _in_thread(call, timeout: float = 30):  # noqa: ANN001, ANN202 - returns what call returned or raised
    done: dict = {}

    def run() -> None:
        try:
            done["result"] = call()
        except Exception as error:  # noqa: BLE001 - handed to the test
            done["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still running after {timeout} s: the benchmark hangs"
    return done


def test_rest_server_failing_from_the_start_is_an_error_not_a_hang(flaky_server) -> None:
    done = _in_thread(lambda: serving_benchmark.bench_rest(flaky_server(0), 2, 0.3))
    assert "500" in str(done.get("error")), done


def test_rest_errors_during_the_run_are_counted_and_fail_the_targets(flaky_server) -> None:
    done = _in_thread(lambda: serving_benchmark.bench_rest(flaky_server(10), 2, 0.3))  # warm-up only
    result = done.get("result")
    assert result is not None, done
    assert result["requests"] == 0 and result["errors"] > 0 and result["p50_ms"] is None
    report = {"paired": [], "runs": [{"server": "plain", "protocol": "rest", "clients": 32, **result,
                                      "in_process_p50_ms": 1.0, "in_process_rps": 0.0}]}
    targets = serving_benchmark.targets(report)
    assert targets and not any(t["pass"] for t in targets)


@pytest.mark.parametrize("flags, words", [(["--clients", "1,x"], "--clients"), (["--clients", "0"], "--clients"),
                                          (["--seconds", "0"], "--seconds"), (["--seconds", "nan"], "--seconds")])
def test_bad_flags_are_one_usage_error(tmp_path, capsys, flags, words) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        serving_benchmark.main(["--model-base-path", str(tmp_path), "--out", str(tmp_path / "out"), *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_an_out_that_cannot_hold_the_results_is_refused_before_measuring(tmp_path, capsys) -> None:
    """It was found only after minutes of measuring, with a traceback, and the results were lost."""
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "a-file").write_text("")
    assert serving_benchmark.main(["--model-base-path", str(tmp_path), "--out", str(tmp_path / "a-file")]) == 2
    assert capsys.readouterr().err.startswith(f"error: --out {tmp_path / 'a-file'} cannot hold the results: ")
