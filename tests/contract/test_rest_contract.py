"""The TF Serving REST contract of the taxi model, against any server URL.

Only HTTP is used to talk to the server; the in-process comparison loads the
same SavedModel directly when its directory is known.
"""
from __future__ import annotations

import base64
import gzip
import json
import math

import httpx
import numpy as np
import pytest

from models.features import SERVING_FEATURES, column_dtype
from tests.contract.conftest import Target

pytestmark = pytest.mark.contract

STRINGS = {"payment_type", "company"}
ROWS = [
    {"trip_miles": 2.1, "fare": 12.5, "trip_seconds": 600.0, "pickup_latitude": 41.89, "pickup_longitude": -87.63,
     "dropoff_latitude": 41.9, "dropoff_longitude": -87.62, "trip_start_hour": 14.0, "trip_start_day": 3.0,
     "trip_start_month": 5.0, "pickup_community_area": 8.0, "dropoff_community_area": 32.0,
     "payment_type": "Credit Card", "company": "Taxi Affiliation Services"},
    {"trip_miles": 0.4, "fare": 4.25, "trip_seconds": 120.0, "pickup_latitude": 41.88, "pickup_longitude": -87.63,
     "dropoff_latitude": 41.88, "dropoff_longitude": -87.62, "trip_start_hour": 2.0, "trip_start_day": 7.0,
     "trip_start_month": 12.0, "pickup_community_area": 32.0, "dropoff_community_area": 32.0,
     "payment_type": "Cash", "company": ""},
    {"trip_miles": 17.0, "fare": 45.0, "trip_seconds": 2400.0, "pickup_latitude": 41.98, "pickup_longitude": -87.9,
     "dropoff_latitude": float("nan"), "dropoff_longitude": float("nan"), "trip_start_hour": 18.0,
     "trip_start_day": 1.0, "trip_start_month": 1.0, "pickup_community_area": 76.0,
     "dropoff_community_area": float("nan"), "payment_type": "Credit Card", "company": "Flash Cab"},
]


def post(http: httpx.Client, path: str, body: object) -> httpx.Response:
    return http.post(path, content=body if isinstance(body, bytes) else json.dumps(body),
                     headers={"content-type": "application/json"})


def columns(rows: list[dict]) -> dict[str, list]:
    return {k: [r[k] for r in rows] for k in rows[0]}


def assert_valid_predictions(preds: list[dict], n: int) -> None:
    assert len(preds) == n
    for p in preds:
        assert set(p) == {"big_tip_probability", "big_tipper"}
        assert 0.0 <= p["big_tip_probability"] <= 1.0 and p["big_tipper"] in (0, 1)


def test_status_reports_an_available_version(http: httpx.Client, target: Target) -> None:
    resp = http.get(f"/v1/models/{target.model}")
    assert resp.status_code == 200
    states = resp.json()["model_version_status"]
    available = [s for s in states if s["state"] == "AVAILABLE"]
    assert available and all(s["version"].isdigit() for s in states)
    assert all(s["status"]["error_code"] == "OK" for s in available)
    version = max(available, key=lambda s: int(s["version"]))["version"]
    one = http.get(f"/v1/models/{target.model}/versions/{version}").json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in one] == [(version, "AVAILABLE")]


def test_label_status_and_predict(http: httpx.Client, target: Target) -> None:
    if not target.label:
        pytest.skip("no --serving-label given")
    # GetModelStatus reads no label: a label's status lists every version, as the model's does.
    status = http.get(f"/v1/models/{target.model}/labels/{target.label}").json()["model_version_status"]
    assert status == http.get(f"/v1/models/{target.model}").json()["model_version_status"]
    # The label's metadata names the version it resolves to, an available one.
    meta = http.get(f"/v1/models/{target.model}/labels/{target.label}/metadata").json()
    available = {s["version"] for s in status if s["state"] == "AVAILABLE"}
    assert meta["model_spec"]["version"] in available
    resp = post(http, f"/v1/models/{target.model}/labels/{target.label}:predict", {"instances": ROWS[:1]})
    assert resp.status_code == 200, resp.text
    assert_valid_predictions(resp.json()["predictions"], 1)


@pytest.mark.parametrize("suffix", ["", "/versions/{v}"])
def test_metadata_describes_the_serving_signatures(http: httpx.Client, target: Target, suffix: str) -> None:
    version = http.get(f"/v1/models/{target.model}/metadata").json()["model_spec"]["version"]
    meta = http.get(f"/v1/models/{target.model}{suffix.format(v=version)}/metadata").json()
    assert meta["model_spec"]["name"] == target.model and meta["model_spec"]["version"] == version
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    default = sigs["serving_default"]
    assert sorted(default["inputs"]) == sorted(SERVING_FEATURES)
    for name, info in default["inputs"].items():
        assert info["dtype"] == ("DT_STRING" if name in STRINGS else "DT_DOUBLE")
    assert default["outputs"]["big_tip_probability"]["dtype"] == "DT_FLOAT"
    assert default["outputs"]["big_tipper"]["dtype"] == "DT_INT64"
    assert sigs["serving_tf_example"]["inputs"]["examples"]["dtype"] == "DT_STRING"
    assert default["method_name"] == "tensorflow/serving/predict"


def test_row_and_columnar_formats_agree(http: httpx.Client, target: Target) -> None:
    rows = post(http, f"/v1/models/{target.model}:predict", {"instances": ROWS})
    cols = post(http, f"/v1/models/{target.model}:predict", {"signature_name": "serving_default", "inputs": columns(ROWS)})
    assert rows.status_code == cols.status_code == 200, (rows.text, cols.text)
    preds = rows.json()["predictions"]
    assert_valid_predictions(preds, len(ROWS))
    outputs = cols.json()["outputs"]
    assert outputs["big_tipper"] == [p["big_tipper"] for p in preds]
    assert np.allclose(outputs["big_tip_probability"], [p["big_tip_probability"] for p in preds], rtol=1e-6)


def test_nan_literals_and_empty_strings_are_missing_values(http: httpx.Client, target: Target) -> None:
    row = {k: ("" if k in STRINGS else float("nan")) for k in SERVING_FEATURES}
    resp = post(http, f"/v1/models/{target.model}:predict", json.dumps({"instances": [row]}).encode())
    assert b"NaN" in resp.request.content
    assert resp.status_code == 200, resp.text
    assert_valid_predictions(resp.json()["predictions"], 1)


def test_a_gzip_body_is_read_like_a_plain_one(http: httpx.Client, target: Target) -> None:
    # TF Serving uncompresses bodies sent with Content-Encoding: gzip (net_http's auto_uncompress_input).
    body = json.dumps({"instances": ROWS}).encode()
    plain = post(http, f"/v1/models/{target.model}:predict", body)
    zipped = http.post(f"/v1/models/{target.model}:predict", content=gzip.compress(body),
                       headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert plain.status_code == zipped.status_code == 200, zipped.text[:300]
    assert zipped.json() == plain.json()


def _example(row: dict) -> bytes:
    import tensorflow as tf

    feats = {}
    for k, v in row.items():
        if k in STRINGS:
            feats[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()] if v else []))
        elif math.isnan(v):
            continue
        elif column_dtype(k) == "int":  # the Example parser follows the schema's column types
            feats[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))
        else:
            feats[k] = tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def test_tf_example_signature_with_b64_matches_serving_default(http: httpx.Client, target: Target) -> None:
    instances = [{"b64": base64.b64encode(_example(r)).decode()} for r in ROWS]
    resp = post(http, f"/v1/models/{target.model}:predict", {"signature_name": "serving_tf_example", "instances": instances})
    assert resp.status_code == 200, resp.text
    preds = resp.json()["predictions"]
    assert_valid_predictions(preds, len(ROWS))
    direct = post(http, f"/v1/models/{target.model}:predict", {"instances": ROWS}).json()["predictions"]
    assert [p["big_tipper"] for p in preds] == [p["big_tipper"] for p in direct]
    assert np.allclose([p["big_tip_probability"] for p in preds], [p["big_tip_probability"] for p in direct], atol=1e-5)


def test_tf_example_with_wrong_feature_type_is_400(http: httpx.Client, target: Target) -> None:
    bad = _example({"trip_start_hour": 1.5, "payment_type": "Cash"})  # float where the schema says int
    import tensorflow as tf

    ex = tf.train.Example.FromString(bad)
    ex.features.feature["trip_start_hour"].Clear()
    ex.features.feature["trip_start_hour"].float_list.value.append(1.5)
    body = {"signature_name": "serving_tf_example", "instances": [{"b64": base64.b64encode(ex.SerializeToString()).decode()}]}
    resp = post(http, f"/v1/models/{target.model}:predict", body)
    assert resp.status_code == 400 and "trip_start_hour" in resp.json()["error"]


def test_predict_equals_the_saved_model_in_process(http: httpx.Client, target: Target) -> None:
    if target.model_dir is None:
        pytest.skip("no --serving-model-dir: the served SavedModel is not known")
    import tensorflow as tf

    version = target.model_dir.name
    resp = post(http, f"/v1/models/{target.model}/versions/{version}:predict", {"instances": ROWS})
    assert resp.status_code == 200, resp.text
    served = resp.json()["predictions"]
    fn = tf.saved_model.load(str(target.model_dir)).signatures["serving_default"]
    local = fn(**{k: tf.constant(v, dtype=tf.string if k in STRINGS else tf.float64) for k, v in columns(ROWS).items()})
    assert [p["big_tipper"] for p in served] == local["big_tipper"].numpy().tolist()
    assert np.allclose([p["big_tip_probability"] for p in served], local["big_tip_probability"].numpy(), rtol=1e-6,
                       atol=1e-7)
