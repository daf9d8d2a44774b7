"""Bad requests get a 4xx {"error": ...} with TF Serving's codes; the server stays up."""
from __future__ import annotations

import json
import threading

import httpx
import pytest

from tests.contract.conftest import Target
from tests.contract.test_rest_contract import ROWS, post

pytestmark = pytest.mark.contract

GOOD = {"instances": ROWS[:1]}


def _assert_error(resp: httpx.Response, status: int | tuple[int, int]) -> str:
    lo, hi = (status, status) if isinstance(status, int) else status
    assert lo <= resp.status_code <= hi, (resp.status_code, resp.text[:300])
    body = resp.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return body["error"]


def _row(**changes: object) -> dict:
    return {"instances": [{**ROWS[0], **changes}]}


@pytest.mark.parametrize("body", [
    b'{"instances": [{"fare": 1.0',  # truncated JSON
    b"not json at all",
    b"",
    json.dumps([1, 2, 3]).encode(),  # not an object
    json.dumps({"rows": ROWS}).encode(),  # neither instances nor inputs
    json.dumps({"instances": ROWS, "inputs": {}}).encode(),  # both
    json.dumps({"instances": []}).encode(),
    json.dumps({"instances": [{**ROWS[0], "tip": 3.0}]}).encode(),  # unknown input name
    json.dumps({"instances": [{k: v for k, v in ROWS[0].items() if k != "fare"}]}).encode(),  # missing input
    json.dumps(_row(fare="twelve")).encode(),  # string for a number
    json.dumps(_row(company=7)).encode(),  # number for a string
    json.dumps(_row(fare=[1.0, 2.0])).encode(),  # wrong shape
    json.dumps(_row(fare={"nested": 1})).encode(),
    json.dumps({"inputs": {**{k: [v] for k, v in ROWS[0].items()}, "fare": [1.0, 2.0]}}).encode(),  # batch mismatch
    json.dumps({"signature_name": "no_such_signature", **GOOD}).encode(),
    json.dumps({"signature_name": 5, **GOOD}).encode(),
    json.dumps(_row(fare="BIG")).replace('"BIG"', "1e400").encode(),  # too big for a double: not infinity
])
def test_malformed_predict_is_400(http: httpx.Client, target: Target, body: bytes) -> None:
    _assert_error(post(http, f"/v1/models/{target.model}:predict", body), 400)


@pytest.mark.parametrize("path", [
    "/v1/models/no_such_model{verb}",
    "/v1/models/{m}/versions/1{verb}",
])
@pytest.mark.parametrize("verb", ["", ":predict"])
def test_unknown_model_or_version_is_404(http: httpx.Client, target: Target, path: str, verb: str) -> None:
    url = path.format(m=target.model, verb=verb)
    resp = http.get(url) if not verb else post(http, url, GOOD)
    _assert_error(resp, 404)


@pytest.mark.parametrize("verb", ["/metadata", ":predict"])
def test_unknown_label_is_400_as_in_tf_serving(http: httpx.Client, target: Target, verb: str) -> None:
    # ServerCore answers INVALID_ARGUMENT "Unrecognized servable version label: <label>".
    url = f"/v1/models/{target.model}/labels/no_such_label{verb}"
    resp = http.get(url) if verb == "/metadata" else post(http, url, GOOD)
    assert "Unrecognized servable version label: no_such_label" in _assert_error(resp, 400)


def test_status_of_an_unknown_model_is_404(http: httpx.Client, target: Target) -> None:
    error = _assert_error(http.get("/v1/models/no_such_model"), 404)
    assert error == "Could not find any versions of model no_such_model"


def test_classify_and_regress_need_matching_signatures(http: httpx.Client, target: Target) -> None:
    for verb in ("classify", "regress"):
        resp = post(http, f"/v1/models/{target.model}:{verb}", {"examples": [{"fare": 1.0}]})
        assert "tensorflow/serving/" + verb in _assert_error(resp, 400)


def test_huge_body_is_rejected(http: httpx.Client, target: Target) -> None:
    body = b'{"instances": "' + b"x" * (20 * 1024 * 1024) + b'"}'
    _assert_error(post(http, f"/v1/models/{target.model}:predict", body), (400, 499))


def test_ten_thousand_row_batch_is_rejected(http: httpx.Client, target: Target) -> None:
    _assert_error(post(http, f"/v1/models/{target.model}:predict", {"instances": ROWS[:1] * 10_000}), (400, 499))


def test_server_survives_a_burst_of_garbage(http: httpx.Client, target: Target) -> None:
    garbage = [b"{", b"[" * 100_000, b'{"instances": [null]}', b'{"instances": [[[[]]]]}', b"\xff\xfe\x00",
               json.dumps(_row(fare=1e400)).encode(), json.dumps({"inputs": "x"}).encode()]
    statuses: list[int] = []

    def send() -> None:
        with httpx.Client(base_url=target.url, timeout=30) as client:
            for body in garbage * 3:
                statuses.append(post(client, f"/v1/models/{target.model}:predict", body).status_code)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(statuses) == 4 * 3 * len(garbage)
    assert all(400 <= s < 500 for s in statuses if s != 200), sorted(set(statuses))
    ok = post(http, f"/v1/models/{target.model}:predict", GOOD)
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1
