"""``dropcore serve`` as a real service: a trained, saved model served over HTTP to concurrent clients (gunicorn
workers), and the Flask example (a thin use of ``dropcore.serving.create_app``) still serving the same app."""
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import dropcore
from dropcore.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D

pytest.importorskip("flask", reason="Flask is not installed (optional extra: pip install 'dropcore[serve]')")
pytest.importorskip("gunicorn", reason="gunicorn is not installed (optional extra: pip install 'dropcore[serve]')")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "serve_flask.py"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url, payload=None, timeout=30):
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module", params=["dropcore serve", "example"])
def served(request, tmp_path_factory):
    dropcore.set_random_seed(3)
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 10, 10, 1), dtype=np.float32), rng.integers(0, 3, 64)
    model = dropcore.Sequential([Input((10, 10, 1)), Conv2D(4, 3, activation="relu"), MaxPooling2D(2), Dropout(0.3),
                                 Flatten(), Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = tmp_path_factory.mktemp("serve") / "model.dropcore"
    dropcore.save_model(model, path)
    port = _free_port()
    command = ([sys.executable, "-m", "dropcore", "serve", "--workers", "2", "--log-level", "warning"]
               if request.param == "dropcore serve" else [sys.executable, str(EXAMPLE)])
    proc = subprocess.Popen(command + [str(path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited early: {proc.stdout.read()}")
            try:
                if _call(base + "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the server did not answer /health within 60 s")
            time.sleep(0.1)
        yield base, model
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_health(served):
    base, model = served
    status, body = _call(base + "/health")
    assert status == 200 and body["status"] == "ok" and body["model"] == model.name
    assert body["input_shape"] == [10, 10, 1]
    # The service process loads the file and predicts on the ahead-of-time kernels without ever importing Numba.
    assert body["kernels"] == ("cython" if dropcore.info()["cython_kernels"] else "numba")
    assert body["numba_imported"] is (body["kernels"] == "numba")


def test_concurrent_predictions_equal_model_predict(served):
    base, model = served
    rng = np.random.default_rng(5)
    batches = [rng.random((int(n), 10, 10, 1), dtype=np.float32) for n in rng.integers(1, 12, 16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda xb: _call(base + "/predict", {"instances": xb.tolist()}), batches, timeout=120))
    for xb, (status, body) in zip(batches, answers):
        assert status == 200, body
        np.testing.assert_allclose(np.array(body["predictions"]), model.predict(xb), rtol=1e-4, atol=1e-5)
    health = _call(base + "/health")[1]
    assert health["numba_imported"] is (health["kernels"] == "numba")  # still no Numba after serving


def test_mc_dropout_over_http(served):
    base, model = served
    xb = np.random.default_rng(6).random((4, 10, 10, 1), dtype=np.float32)
    status, body = _call(base + "/predict", {"instances": xb.tolist(), "mc_samples": 5, "seed": 11})
    assert status == 200, body
    mean, std = model.predict(xb, mc_samples=5, seed=11)
    np.testing.assert_allclose(np.array(body["mean"]), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.array(body["std"]), std, rtol=1e-4, atol=1e-5)


def test_bad_requests_get_400_with_the_reason(served):
    base, _ = served
    status, body = _call(base + "/predict", {"inputs": []})
    assert status == 400 and "instances" in body["error"]
    status, body = _call(base + "/predict", {"instances": np.zeros((2, 4, 4, 1)).tolist()})
    assert status == 400 and "have shape (2, 4, 4, 1); expected (n, 10, 10, 1)" in body["error"]
    status, body = _call(base + "/predict", {"instances": np.zeros((1, 10, 10, 1)).tolist(), "mc_samples": 0})
    assert status == 400 and "`mc_samples` must be between 1 and 100, received mc_samples=0" in body["error"]
