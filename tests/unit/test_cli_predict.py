"""`taxi predict` through the real local server and client (toy model, REST and gRPC)."""
from __future__ import annotations

import http.server
import json
import math
import re
import subprocess
import sys
import threading

import pytest

from cli.common import UsageProblem
from cli.main import main
from cli.rows import typed
from serving.config import ModelSpec
from serving.server import ServerOptions, ServingServer
from serving.testing import push_toy
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("predict") / "toy"
    base.mkdir()
    push_toy(base, 1, scale=2.0)
    options = ServerOptions(models=[ModelSpec("toy", str(base))], rest_port=0, grpc_port=0,
                            file_system_poll_wait_seconds=0)
    with ServingServer(options) as srv:
        yield srv


def test_csv_rows_are_typed_by_the_signature_and_predicted(server, tmp_path, capsys) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("x,s\n1.5,ab\n,xyz\n")
    assert main(["predict", str(rows), "--url", server.url, "--model", "toy", "--json"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out[0] == {"row": 0, "y": 3.0, "n": 2}
    assert out[1]["n"] == 3  # the empty number became NaN, as the model's missing value
    rows.write_bytes("\ufeffx,s\n1.5,ab\n".encode())  # Excel's "CSV UTF-8": the mark must not rename x
    assert main(["predict", str(rows), "--url", server.url, "--model", "toy", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"row": 0, "y": 3.0, "n": 2}


def test_jsonl_over_grpc(server, tmp_path, capsys) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"x": 2, "s": "a"}\n\n{"x": 4, "s": "bb"}\n')
    assert main(["predict", str(rows), "--url", server.url, "--model", "toy", "--protocol", "grpc",
                 "--grpc-target", server.grpc_target, "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["row 0: n 1  y 4.0000", "row 1: n 2  y 8.0000"]
    assert captured.err == ""  # --quiet: results only


@pytest.mark.parametrize("content,args,code,fragment", [
    ("x,s,label\n1,a,0\n", [], 2, "error: row 0 (line 2): 'label' is not a model input"),
    ("x,s\nmany,a\n", [], 2, "error: row 0 (line 2): x='many' is not a number"),
    ("x,s\n1,a\n-1e400,b\n", [], 2,
     "error: row 1 (line 3): x='-1e400' is too big for a number (a double holds up to 1.8e308)"),
    # Python's float() reads these; the pipeline's data has ASCII digits
    ("x,s\n1_2.5,a\n", [], 2, "error: row 0 (line 2): x='1_2.5' is not a number"),
    ("x,s\n1,a\n\uff11\uff12,b\n", [], 2, "error: row 1 (line 3): x='\uff11\uff12' is not a number"),
    # one of the two would be dropped, silently: the last one won
    ("x,s,x\n1,a,999\n", [], 2, "error: the header names 'x' twice (columns 1, 3): one of them would be dropped"),
    ("x,s\n1,bad!\n", [], 1, "error: the server answered 400"),
    ("x,s\n", [], 2, "error: "),
    # the pipeline refuses these in its data; a client sent them, filled or cut
    ('x,s\n1,a\n2,"b\n3,c\n', [], 2, "error: line 4: a quoted value is never closed"),
    ("x,s\n1,a\n2\n", [], 2, "error: line 3 has 1 values where the header has 2 columns"),
    # a header typo dropped by --drop-unknown, or a column left out: every row was sent without it, exit 0
    ("X,s,tips\n1,a,0\n", ["--drop-unknown"], 2, "error: the header has no column 'x', a model input: every row "
                                                  "would be sent without it; add the column"),
    ("s\na\n", [], 2, "error: the header has no column 'x'"),
    ("x,s\n1,a,extra\n", [], 2, "error: line 2 has 3 values where the header has 2 columns"),
    ("x,s\n1,a\n", ["--signature", "nope"], 2, "error: the model has no signature 'nope'; it has: classify_x,"),
])
def test_bad_rows_and_refusals_are_one_line(server, tmp_path, capsys, content, args, code, fragment) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text(content)
    assert main(["predict", str(rows), "--url", server.url, "--model", "toy", *args]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(fragment), err


def test_a_binary_string_in_tf_servings_b64_form_is_sent(server, tmp_path, capsys) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"x": 2, "s": {"b64": "YWJj"}}\n')  # "abc"
    assert main(["predict", str(rows), "--url", server.url, "--model", "toy", "-q"]) == 0
    assert capsys.readouterr().out == "row 0: n 3  y 4.0000\n"


@pytest.mark.parametrize("line,fragment", [
    # `Fare` for `fare`: dropped by --drop-unknown, every such row was sent without the input, exit 0
    ('{"X": 1, "s": "a"}', "error: row 1 (line 3): 'X' is not a model input, 'x' is: every row with it would be "
                           "sent without that input; rename it"),
    # a number for a string input: refused by the server after the batches before it were answered
    ('{"x": 1, "s": 5}', "error: row 1 (line 3): s=5 is not a string, which the model input takes (DT_STRING)"),
    ('{"x": [1, 2], "s": "a"}', "error: row 1 (line 3): x=[1, 2] is not a number, which the model input takes"),
    ('{"x": true, "s": "a"}', "error: row 1 (line 3): x=true is not a number"),
    # refused by the server (as TF Serving: "Cannot convert JSON value ... without loss of precision")
    ('{"x": 9007199254740993, "s": "a"}', "error: row 1 (line 3): x=9007199254740993 cannot be sent to a double "
                                          "input (DT_DOUBLE) without loss of precision (whole numbers up to "
                                          "9007199254740991); write it as a decimal, e.g. 9007199254740992.0"),
    ('{"x": 1, "s": {"b64": "!!!"}}', 'error: row 1 (line 3): s={"b64": "!!!"} is not valid base64'),
    ('{"x": 1, "s": "\\ud800"}', 'error: row 1 (line 3): s="\\ud800" is not valid Unicode (a lone surrogate)'),
])
def test_jsonl_rows_are_checked_before_any_is_sent(server, tmp_path, capsys, line, fragment) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"x": 2, "s": "a"}\n\n' + line + "\n")
    assert main(["predict", str(rows), "--url", server.url, "--model", "toy", "--drop-unknown"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(fragment), captured.err


def test_rows_answered_before_a_failed_request_are_printed_and_the_rest_named(server, tmp_path, capsys) -> None:
    """A request refused after earlier batches were answered threw their predictions away, exit 1, no output."""
    rows = tmp_path / "rows.csv"
    rows.write_text("x,s\n1,a\n2,b\n3,bad!\n4,c\n")
    assert main(["predict", str(rows), "--url", server.url, "--model", "toy", "--batch-size", "2", "-q"]) == 1
    captured = capsys.readouterr()
    assert [line.split(":")[0] for line in captured.out.splitlines()] == ["row 0", "row 1"]
    assert captured.err.startswith("error: the server answered 400: ") and \
        captured.err.endswith(" (rows 2-3 not predicted; rows 0-1 above)\n"), captured.err


def test_nothing_listening_on_the_grpc_target_is_said_so(server, tmp_path, capsys) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("x,s\n1,a\n")
    assert main(["predict", str(rows), "--url", server.url, "--model", "toy", "--protocol", "grpc",
                 "--grpc-target", "127.0.0.1:9", "--timeout", "1"]) == 1
    assert capsys.readouterr().err.startswith("error: cannot reach 127.0.0.1:9 over gRPC (UNAVAILABLE): ")


def test_unreachable_server_is_exit_1(tmp_path, capsys) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("x,s\n1,a\n")
    assert main(["predict", str(rows), "--url", "http://127.0.0.1:9", "--model", "toy", "--timeout", "1"]) == 1
    assert capsys.readouterr().err.startswith("error: cannot reach http://127.0.0.1:9")


def test_a_jsonl_number_beyond_a_double_is_refused_with_its_line(server, tmp_path, capsys) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"x": 2, "s": "a"}\n{"x": 1e400, "s": "b"}\n')
    assert main(["predict", str(rows), "--url", server.url, "--model", "toy"]) == 2
    assert capsys.readouterr().err == "error: line 2: 1e400 is too big for a number (a double holds up to 1.8e308)\n"
    rows.write_text('{"x": Infinity, "s": "a"}\n')  # the literal is a deliberate infinity, sent as written
    assert main(["predict", str(rows), "--url", server.url, "--model", "toy", "-q"]) == 0


def test_drop_unknown_and_types() -> None:
    dtypes = {"x": "DT_DOUBLE", "k": "DT_INT64", "s": "DT_STRING"}
    assert typed([{"x": "1", "k": "3", "s": "", "label": "1"}], dtypes, drop_unknown=True) == [
        {"x": 1.0, "k": 3, "s": ""}]
    assert typed([{"k": "9007199254740993"}, {"k": " -12 "}, {"k": "4.0"}], dtypes, drop_unknown=False) == [
        {"k": 9007199254740993}, {"k": -12}, {"k": 4}]  # 2**53 + 1 kept exact, not rounded through a float
    with pytest.raises(UsageProblem, match=r"row 0: k='--12' is not a number"):
        typed([{"k": "--12"}], dtypes, drop_unknown=False)


def test_numbers_the_server_would_refuse_are_refused_before_sending() -> None:
    dtypes = {"f": "DT_FLOAT", "k": "DT_INT64", "d": "DT_DOUBLE"}
    assert typed([{"f": 16777215, "k": "4.0", "d": -9007199254740991}], dtypes, drop_unknown=False) == [
        {"f": 16777215, "k": 4, "d": -9007199254740991}]
    for row, fragment in (({"f": 16777217}, "f=16777217 cannot be sent to a float input"),
                          ({"f": "1e39"}, "f=1e+39 is too big for a float input"),
                          ({"k": "4.5"}, "k=4.5 is not a whole number"),
                          ({"k": 2**63}, "k=9223372036854775808 is out of range")):
        with pytest.raises(UsageProblem, match=f"^row 0: {re.escape(fragment)}"):
            typed([row], dtypes, drop_unknown=False)


def test_numbers_that_round_to_a_format_s_largest_value_are_sent_as_the_server_takes_them() -> None:
    """3.4028235e38 (float32's maximum as the server prints it) and 65519 for a half were refused as too big,
    though both round down to the largest value and the server takes them; half a step further is infinity."""
    dtypes = {"f": "DT_FLOAT", "h": "DT_HALF"}
    assert typed([{"f": 3.4028235e38, "h": 65519.0}], dtypes, drop_unknown=False) == [{"f": 3.4028235e38, "h": 65519.0}]
    for row in ({"f": 3.4028236e38}, {"h": 65520.0}):
        with pytest.raises(UsageProblem, match="is too big for a"):
            typed([row], dtypes, drop_unknown=False)


def test_a_numeral_beyond_a_double_is_refused_while_the_words_inf_and_nan_are_read() -> None:
    """Python's float() reads 1e400 as infinity: sent on, a typo'd value would reach the model as Infinity."""
    dtypes = {"x": "DT_DOUBLE", "k": "DT_INT64"}
    rows = [{"x": "inf", "k": "1"}, {"x": "-Infinity"}, {"x": "nan"}, {"x": "1.7e308"}]
    got = typed(rows, dtypes, drop_unknown=False)
    assert [row["x"] for row in got[:2]] == [math.inf, -math.inf] and math.isnan(got[2]["x"])
    assert got[3]["x"] == 1.7e308
    for row in ({"x": "1e400"}, {"k": "2e308"}):
        with pytest.raises(UsageProblem, match=r"^row 0: (x|k)='\d+e\d+' is too big for a number"):
            typed([row], dtypes, drop_unknown=False)


def _taxi(*args: str, **kwargs) -> subprocess.Popen:  # noqa: ANN003 - Popen's
    return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=ROOT, stderr=subprocess.PIPE, text=True, **kwargs)


def test_grpc_predict_and_serve_say_their_own_lines_not_tensorflows(tmp_path) -> None:
    """TensorFlow's import prints CUDA plugin errors on a machine without a GPU (and google.api_core a
    FutureWarning): four lines of noise above the one error line of `taxi predict --protocol grpc`, and at the
    head of every server log."""
    rows = tmp_path / "rows.csv"
    rows.write_text("x,s\n1,a\n")
    predict = _taxi("predict", str(rows), "--protocol", "grpc", "--grpc-target", "127.0.0.1:9",
                    "--url", "http://127.0.0.1:9", "--timeout", "1")
    assert predict.wait(timeout=120) == 1
    assert predict.stderr.read().splitlines() == ["error: cannot reach http://127.0.0.1:9/v1/models/taxi/metadata: "
                                                  "[Errno 111] Connection refused"]
    (tmp_path / "empty").mkdir()
    serve = _taxi("serve", "--model-name", "toy", "--model-base-path", str(tmp_path / "empty"),
                  "--rest-api-port", "0", "--grpc-port", "0")
    try:
        first = serve.stderr.readline()
        assert "serving:" in first and "no loadable version" in first, first
    finally:
        serve.kill()
        serve.wait()


def test_a_new_version_with_another_input_mid_file_stops_instead_of_sending_it_missing(tmp_path, capsys,
                                                                                       monkeypatch) -> None:
    """The client follows a hot reload to a version with one more input (serving/client.py) and fills it as
    missing: for the CLI, whose rows were checked against the old inputs, that is wrong probabilities, no word."""
    import serving.client

    class Reloading:
        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - ServingClient's
            self.calls, self.dtypes = 0, {"x": "DT_DOUBLE", "s": "DT_STRING"}

        def __enter__(self):  # noqa: ANN204
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def input_dtypes(self) -> dict[str, str]:
            return dict(self.dtypes)

        def predict(self, rows: list) -> list:
            self.calls += 1
            if self.calls == 2:  # the second batch reached the new version
                self.dtypes["tolls"] = "DT_DOUBLE"
            return [{"y": 1.0} for _ in rows]

    monkeypatch.setattr(serving.client, "ServingClient", Reloading)
    rows = tmp_path / "rows.csv"
    rows.write_text("x,s\n1,a\n2,b\n3,c\n")
    assert main(["predict", str(rows), "--url", "http://127.0.0.1:9", "--model", "toy", "--batch-size", "2"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "row 0: y 1.0000\nrow 1: y 1.0000\n"
    assert captured.err == ("error: the served model's inputs changed while predicting (a new version: 'tolls'); "
                            "row 2 not predicted; rows 0-1 above; run again\n")


def _predict_to(server, rows, stdout, **kwargs) -> subprocess.Popen:  # noqa: ANN001, ANN003 - Popen's
    return _taxi("predict", str(rows), "--url", server.url, "--model", "toy", "-q", stdout=stdout, **kwargs)


def test_a_reader_that_stops_early_ends_predict_quietly_with_exit_0(server, tmp_path) -> None:
    """`taxi predict big.csv | head -1`: click turned the broken pipe into a silent exit 1."""
    rows = tmp_path / "rows.csv"
    rows.write_text("x,s\n" + "".join(f"{i},a\n" for i in range(20000)))  # far more than a pipe holds
    predict = _predict_to(server, rows, subprocess.PIPE)
    assert predict.stdout.readline().startswith("row 0: ")
    predict.stdout.close()
    assert predict.wait(timeout=120) == 0
    assert predict.stderr.read() == ""


@pytest.mark.parametrize("target", ["full", "closed"])
def test_output_that_cannot_be_written_is_one_line_and_exit_1(server, tmp_path, target) -> None:
    """> /dev/full was an OSError traceback, >&- an AttributeError one (sys.stdout is None)."""
    rows = tmp_path / "rows.csv"
    rows.write_text("x,s\n1,a\n")
    if target == "full":
        with open("/dev/full", "w") as full:
            predict = _predict_to(server, rows, full)
        fragment = "No space left on device"
    else:
        # the shell closes fd 1 (a preexec_fn is not safe in this test process, which runs server threads)
        predict = subprocess.Popen(["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "cli", "predict",
                                    str(rows), "--url", server.url, "--model", "toy", "-q"],
                                   cwd=ROOT, stderr=subprocess.PIPE, text=True)
        fragment = "standard output is closed"
    code, err = predict.wait(timeout=120), predict.stderr.read()
    assert (code, err) == (1, f"error: cannot write the output: {fragment}\n")


def test_an_upper_case_csv_suffix_is_csv_and_a_csv_under_another_name_is_hinted(server, tmp_path, capsys) -> None:
    """T10.CSV was read as JSON lines: 'line 1 is not JSON', with no word of --format."""
    upper = tmp_path / "T10.CSV"
    upper.write_text("x,s\n1.5,ab\n")
    assert main(["predict", str(upper), "--url", server.url, "--model", "toy", "-q"]) == 0
    assert capsys.readouterr().out == "row 0: n 2  y 3.0000\n"
    other = tmp_path / "rows.txt"
    other.write_text("x,s\n1.5,ab\n")
    assert main(["predict", str(other), "--url", server.url, "--model", "toy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: line 1 is not JSON: ") and err.endswith("; it looks like a CSV header: pass "
                                                                          "--format csv\n"), err
    other.write_text("not json\n")  # not a header: no hint
    assert main(["predict", str(other), "--url", server.url, "--model", "toy"]) == 2
    assert "--format" not in capsys.readouterr().err


def test_a_key_given_twice_in_a_json_line_is_refused_with_its_line(server, tmp_path, capsys) -> None:
    """json keeps the last of two values silently; a CSV column named twice is refused, and so is this."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"x": 2, "s": "a"}\n{"x": 1, "s": "b", "x": 2}\n')
    assert main(["predict", str(rows), "--url", server.url, "--model", "toy"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "error: line 2: 'x' is given twice: one of the values would be dropped; remove one\n"


def test_serve_keeps_an_explicit_log_level_over_verbose(monkeypatch) -> None:
    """The bridge writes --log-level=ERROR, which `"--log-level" not in argv` missed: -v made it DEBUG."""
    import serving.__main__

    seen = []
    monkeypatch.setattr(serving.__main__, "main", lambda argv: seen.append(argv) or 0)
    assert main(["serve", "-v", "--log-level", "ERROR", "--model-base-path", "m"]) == 0
    assert main(["serve", "-q", "--model-base-path", "m"]) == 0
    assert [[a for a in argv if "log-level" in a or a in ("DEBUG", "WARNING")] for argv in seen] == [
        ["--log-level=ERROR"], ["--log-level", "WARNING"]]


class _NotServing(http.server.BaseHTTPRequestHandler):
    """A web server that is not TF Serving: answers every request with the server's `answers[path-kind]`."""

    answers: dict[str, tuple[int, str, str]] = {}
    hits: list[str] = []

    def _answer(self) -> None:
        kind = "metadata" if self.path.endswith("/metadata") else "predict"
        self.hits.append(kind)
        if kind == "predict":
            self.rfile.read(int(self.headers.get("content-length", 0)))
        status, content_type, body = self.answers.get(kind, self.answers.get("*", (404, "text/plain", "no")))
        data = body.encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_serving():
    _NotServing.hits = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotServing)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


METADATA = json.dumps({"model_spec": {"name": "toy", "version": "1"}, "metadata": {"signature_def": {
    "signature_def": {"serving_default": {"inputs": {"x": {"dtype": "DT_DOUBLE"}, "s": {"dtype": "DT_STRING"}}}}}}})
NGINX_502 = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
             "</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


HINT = "; is --url the model server's REST address?"


@pytest.mark.parametrize("answers,message", [
    ({"*": (200, "text/html", "<html><body>Welcome</body></html>")}, "/v1/models/toy/metadata did not answer as TF "
     "Serving (its answer is not JSON); is --url the model server's REST address?"),
    ({"*": (200, "application/json", "[]")}, "/v1/models/toy/metadata did not answer as TF Serving (its answer is "
     "a JSON list, not an object)"),
    ({"*": (200, "application/json", '{"model_version_status": []}')}, "/v1/models/toy/metadata did not answer as "
     "TF Serving (no metadata.signature_def.signature_def in its answer)"),
    ({"metadata": (200, "application/json", METADATA), "predict": (200, "application/json", '{"outputs": [1]}')},
     "/v1/models/toy:predict did not answer as TF Serving (no list of 1 predictions in its answer)"),
])
def test_a_server_that_does_not_answer_as_tf_serving_is_one_line_exit_1(not_serving, tmp_path, capsys, answers,
                                                                         message) -> None:
    """'error: metadata' (a KeyError taken for bad usage, exit 2) or a TypeError traceback."""
    _NotServing.answers = answers
    rows = tmp_path / "rows.csv"
    rows.write_text("x,s\n1,a\n")
    assert main(["predict", str(rows), "--url", not_serving, "--model", "toy"]) == 1
    assert capsys.readouterr().err == f"error: {not_serving}{message.removesuffix(HINT)}{HINT}\n"


def test_a_proxys_html_error_page_is_retried_then_one_line(not_serving, tmp_path, capsys) -> None:
    """nginx's 502 page was the error, over eight lines, and not retried as a 503 is."""
    _NotServing.answers = {"metadata": (200, "application/json", METADATA), "predict": (502, "text/html", NGINX_502)}
    rows = tmp_path / "rows.csv"
    rows.write_text("x,s\n1,a\n")
    assert main(["predict", str(rows), "--url", not_serving, "--model", "toy"]) == 1
    assert capsys.readouterr().err == "error: the server answered 502: 502 Bad Gateway 502 Bad Gateway nginx\n"
    assert _NotServing.hits.count("predict") == 4  # retried 3 times, as a 503


def test_a_model_name_is_a_name_not_a_query(server, tmp_path, capsys) -> None:
    """`--model 'toy?x=1'` asked for /v1/models/toy?x=1/metadata: the model toy's status, read as metadata."""
    rows = tmp_path / "rows.csv"
    rows.write_text("x,s\n1,a\n")
    assert main(["predict", str(rows), "--url", server.url, "--model", "toy?x=1"]) == 1
    assert capsys.readouterr().err == "error: the server answered 404: Servable not found for request: Latest(toy?x=1)\n"


@pytest.mark.parametrize("args,message", [
    (["--version", "1", "--label", "stable"], "error: give --version or --label, not both\n"),
    # the client's ValueError, its closing quote eaten by .strip("'")
    (["--protocol", "grpc", "--grpc-target", ""], "error: --protocol grpc needs --grpc-target, e.g. 127.0.0.1:8500\n"),
])
def test_conflicting_flags_are_named_as_flags(server, tmp_path, capsys, args, message) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("x,s\n1,a\n")
    assert main(["predict", str(rows), "--url", server.url, "--model", "toy", *args]) == 2
    assert capsys.readouterr().err == message


def test_json_floats_are_printed_alike_over_rest_and_grpc(server, tmp_path, capsys) -> None:
    """Over gRPC a float32 output was printed as its double, 0.29980000853538513, where REST prints 0.2998."""
    rows = tmp_path / "rows.csv"
    rows.write_text("x,s\n0.1499,a\n")
    printed = []
    for protocol in ("rest", "grpc"):
        assert main(["predict", str(rows), "--url", server.url, "--model", "toy", "--json", "--protocol", protocol,
                     "--grpc-target", server.grpc_target]) == 0
        printed.append(capsys.readouterr().out)
    assert printed == ['{"row": 0, "n": 1, "y": 0.2998}\n'] * 2


def test_a_grpc_server_gone_mid_file_is_cannot_reach(tmp_path, capsys) -> None:
    """After rows were printed it said 'the server answered UNAVAILABLE: failed to connect ...'."""
    base = tmp_path / "toy"
    base.mkdir()
    push_toy(base, 1, scale=2.0)
    options = ServerOptions(models=[ModelSpec("toy", str(base))], rest_port=0, grpc_port=0,
                            file_system_poll_wait_seconds=0)
    rows = tmp_path / "rows.csv"
    rows.write_text("x,s\n1,a\n2,b\n")
    import serving.client

    with ServingServer(options) as srv:
        url, target = srv.url, srv.grpc_target
        original = serving.client.ServingClient.predict

        def predict_then_stop(client, batch):  # noqa: ANN001, ANN202 - the real predict, then the server stops
            answers = original(client, batch)
            srv.stop()
            return answers

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(serving.client.ServingClient, "predict", predict_then_stop)
            assert main(["predict", str(rows), "--url", url, "--model", "toy", "--protocol", "grpc",
                         "--grpc-target", target, "--batch-size", "1", "--timeout", "2", "-q"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "row 0: n 1  y 2.0000\n"
    assert captured.err.startswith(f"error: cannot reach {target} over gRPC (UNAVAILABLE): ") and \
        captured.err.endswith(" (row 1 not predicted; row 0 above)\n"), captured.err
