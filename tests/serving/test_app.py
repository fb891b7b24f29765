"""create_app in process (Flask's test client): payloads, answers, limits, metrics."""
import io
import json

import numpy as np
import pytest

import dropcore
from dropcore.serving import create_app

from .conftest import NPY, SHAPE, needs_exact_batching, npy


@pytest.fixture(scope="module")
def app_model(saved_model):
    path, model = saved_model
    app = create_app(path, max_instances=8, max_mc_samples=20, max_body_bytes=64 * 1024)
    return app.test_client(), model


def _json(client, doc, **kw):
    resp = client.post("/predict", data=json.dumps(doc), content_type="application/json", **kw)
    return resp.status_code, resp.get_json()


def test_json_and_npy_answers_equal_the_predictor(app_model, saved_model):
    client, model = app_model
    predictor = dropcore.Predictor(saved_model[0])
    x = np.random.default_rng(1).random((3,) + SHAPE, dtype=np.float32)
    status, body = _json(client, {"instances": x.tolist()})
    assert status == 200
    # float32 -> JSON -> float64 -> float32 round-trips exactly: the JSON answer is the predictor's, bit for bit
    np.testing.assert_array_equal(np.asarray(body["predictions"], np.float32), predictor.predict(x))
    resp = client.post("/predict", data=npy(x.astype(np.float64)), content_type=NPY, headers={"Accept": NPY})
    assert resp.status_code == 200 and resp.content_type == NPY
    np.testing.assert_array_equal(np.load(io.BytesIO(resp.data)), predictor.predict(x))


def test_mc_dropout_json_and_npy(app_model, saved_model):
    client, _ = app_model
    predictor = dropcore.Predictor(saved_model[0])
    x = np.random.default_rng(2).random((2,) + SHAPE, dtype=np.float32)
    mean, std = predictor.predict(x, mc_samples=5, seed=11)
    assert std.max() > 0  # the model's dropout is active: this tests something
    status, body = _json(client, {"instances": x.tolist(), "mc_samples": 5, "seed": 11})
    assert status == 200
    np.testing.assert_array_equal(np.asarray(body["mean"], np.float32), mean)
    np.testing.assert_array_equal(np.asarray(body["std"], np.float32), std)
    resp = client.post("/predict?mc_samples=5&seed=11", data=npy(x), content_type=NPY, headers={"Accept": NPY})
    assert resp.status_code == 200
    np.testing.assert_array_equal(np.load(io.BytesIO(resp.data)), np.stack([mean, std]))


@pytest.mark.parametrize("doc, reason", [
    ({"inputs": []}, '"instances"'),
    ([1, 2], '"instances"'),
    ({"instances": [[1.0]]}, "have shape (1, 1); expected (n, 10, 10, 1)"),
    ({"instances": []}, "have shape (0,)"),
    ({"instances": [[[[1.0]] * 10] * 10] * 9}, "9 instances; at most 8"),
    ({"instances": [[[["a"]] * 10] * 10]}, "rectangular nested list of numbers"),
    ({"instances": [[[[1.0]] * 10] * 10, [[[1.0]] * 9] * 10]}, "rectangular nested list"),
    ({"instances": [[[[1e39]] * 10] * 10]}, "non-finite value"),
    ({"instances": [[[[1.0]] * 10] * 10], "mc_samples": 21}, "`mc_samples` must be between 1 and 20, received "
                                                              "mc_samples=21"),
    ({"instances": [[[[1.0]] * 10] * 10], "mc_samples": 0}, "mc_samples=0"),
    ({"instances": [[[[1.0]] * 10] * 10], "mc_samples": 2.5}, "must be an integer"),
    ({"instances": [[[[1.0]] * 10] * 10], "mc_samples": 2, "seed": -1}, "seed=-1"),
    ({"instances": [[[[1.0]] * 10] * 10], "seed": 3}, "needs `mc_samples`"),
    ({"instances": [[[[1.0]] * 10] * 10], "mc": 3}, "unknown fields ['mc']"),
])
def test_bad_json_gets_400_with_the_reason(app_model, doc, reason):
    status, body = _json(app_model[0], doc)
    assert status == 400 and reason in body["error"], body


def test_nan_in_json_and_bad_npy_get_400(app_model):
    client, _ = app_model
    resp = client.post("/predict", data='{"instances": [[[[NaN]]]]}', content_type="application/json")
    assert resp.status_code == 400  # wrong shape first; a well-shaped NaN next
    doc = '{"instances": [' + json.dumps([[[1.0]] * 10] * 10).replace("1.0", "NaN", 1) + "]}"
    resp = client.post("/predict", data=doc, content_type="application/json")
    assert resp.status_code == 400 and "non-finite value (nan at index (0, 0, 0, 0))" in resp.get_json()["error"]
    x = np.zeros((1,) + SHAPE)
    x[0, 3, 4, 0] = np.inf
    for body, reason in [(b"not an npy", "not a readable .npy"),
                         (npy(x), "non-finite value (inf at index (0, 3, 4, 0))"),
                         (npy(np.zeros((1,) + SHAPE, np.int64)), "dtype int64; expected float32 or float64"),
                         (npy(np.zeros((2, 5))), "have shape (2, 5)"),
                         (npy(np.array([{"a": 1}], dtype=object)), "not a readable .npy"),
                         (npy(np.zeros((9,) + SHAPE, np.float32)), "9 instances; at most 8"),
                         (npy(np.zeros((1, 10, 10, 1), np.float32))[:-8], "not a readable .npy")]:
        resp = client.post("/predict", data=body, content_type=NPY)
        assert resp.status_code == 400 and reason in resp.get_json()["error"], (reason, resp.get_json())
    resp = client.post("/predict?mc_samples=abc", data=npy(np.zeros((1,) + SHAPE)), content_type=NPY)
    assert resp.status_code == 400 and "mc_samples='abc'" in resp.get_json()["error"]


def test_body_too_large_gets_413(app_model):
    client, _ = app_model
    resp = client.post("/predict", data=b"x" * (64 * 1024 + 1), content_type=NPY)
    assert resp.status_code == 413 and "error" in resp.get_json()


def test_deadline_gets_503_and_nothing_stuck(saved_model):
    client = create_app(saved_model[0], timeout_ms=1, max_mc_samples=10**6).test_client()
    status, body = _json(client, {"instances": np.zeros((256,) + SHAPE).tolist(), "mc_samples": 10**6})
    assert status == 503 and "deadline" in body["error"]
    x = np.zeros((1,) + SHAPE).tolist()
    assert _json(create_app(saved_model[0]).test_client(), {"instances": x})[0] == 200


def test_health_metadata_metrics_and_404(app_model):
    client, model = app_model
    health = client.get("/health").get_json()
    assert health["status"] == "ok" and health["input_shape"] == list(SHAPE)
    meta = client.get("/metadata").get_json()
    assert meta["input_shape"] == [None, *SHAPE] and meta["output_shape"] == [None, 3]
    assert meta["limits"]["max_instances"] == 8 and meta["kernels"] in ("cython", "numba")
    assert client.get("/nope").status_code == 404 and "error" in client.get("/nope").get_json()
    assert client.get("/predict").status_code == 405 and "takes POST" in client.get("/predict").get_json()["error"]
    text = client.get("/metrics").data.decode()
    assert 'dropcore_http_requests_total{method="GET",route="/health",status="200"}' in text
    assert 'dropcore_http_request_seconds_bucket{le="+Inf",route="/metadata"}' in text
    assert 'dropcore_http_errors_total{kind="http",route="unmatched",status="404"}' in text


@needs_exact_batching
def test_batching_app_gives_identical_answers(saved_model):
    predictor = dropcore.Predictor(saved_model[0])
    client = create_app(saved_model[0], batching=True, max_batch=8).test_client()
    x = np.random.default_rng(4).random((2,) + SHAPE, dtype=np.float32)
    resp = client.post("/predict", data=npy(x), content_type=NPY, headers={"Accept": NPY})
    np.testing.assert_array_equal(np.load(io.BytesIO(resp.data)), predictor.predict(x))
    assert client.get("/metadata").get_json()["batching"]["max_batch"] == 8


def test_bad_limits_are_refused(saved_model):
    with pytest.raises(ValueError, match="max_instances"):
        create_app(saved_model[0], max_instances=0)
    with pytest.raises(TypeError):
        create_app(saved_model[0], max_things=3)
