"""``python -m bench serve``'s pieces, small and fast: the Flask + ONNX Runtime peer answers what the Predictor
answers, the in-process breakdown times every stage, and the report renders every table. Speed is never asserted."""
import io
import json
import os
import sys

import numpy as np
import pytest

import dropcore

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (optional extra: dropcore[onnx])")

from bench import serve, serve_cost  # noqa: E402
from bench.serve_peer import bare_app, flask_ort_app  # noqa: E402

from .conftest import SHAPE  # noqa: E402


@pytest.fixture(scope="module")
def exported(saved_model, tmp_path_factory):
    from dropcore.onnx import export

    path, model = saved_model
    onnx_path = tmp_path_factory.mktemp("bench-serve") / "small.onnx"
    export(model, str(onnx_path))
    return path, str(onnx_path)


def _post(app, body, content_type):
    statuses = []
    environ = serve_cost._environ(body, content_type)
    data = b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    return statuses[0], data


def test_flask_ort_peer_answers_like_the_predictor(exported):
    path, onnx_path = exported
    x = np.random.default_rng(0).random((3,) + SHAPE, dtype=np.float32)
    want = dropcore.Predictor(path).predict(x)
    bodies = serve_cost.bodies(x)
    status, data = _post(flask_ort_app(onnx_path, 1), *bodies["npy"])
    assert status.startswith("200")
    np.testing.assert_allclose(np.load(io.BytesIO(data)), want, rtol=1e-5, atol=1e-6)  # another engine: close
    status, data = _post(flask_ort_app(onnx_path, 1), *bodies["json"])
    np.testing.assert_allclose(json.loads(data)["predictions"], want, rtol=1e-5, atol=1e-6)
    status, data = _post(bare_app(), *bodies["npy"])
    assert status.startswith("200") and json.loads(data) == {"predictions": [[0.1] * 10]}


def test_breakdown_times_every_stage(exported):
    path, onnx_path = exported
    x = np.random.default_rng(1).random((1,) + SHAPE, dtype=np.float32)
    out = serve_cost.breakdown(path, onnx_path, x, seconds=0.01, repeats=1)
    assert set(out) == {"npy", "json"}
    for by_endpoint in out.values():
        assert set(by_endpoint["dropcore"]) == set(by_endpoint["flask-ort"]) == {"parse", "predict", "encode", "app"}
        assert set(by_endpoint["bare"]) == {"app"}
        assert all(v > 0 for stages in by_endpoint.values() for v in stages.values())


def test_the_report_renders_every_table(exported):
    path, onnx_path = exported
    report = {"rps": 100.0, "p99_ms": 5.0, "cpu_us": 900.0, "statuses": {"200": 300}}
    http = {"small": {name: {p: [report, report] for p in ("npy", "json")}
                      for name in ("flask-ort", "bare", "dropcore asgi", "dropcore gthread")}}
    costs = {"small": serve_cost.breakdown(path, onnx_path, np.zeros((1,) + SHAPE, np.float32), seconds=0.01,
                                             repeats=1)}
    batch = [{"unbatched_ips": 1000, "batched_ips": 1500, "unbatched_cpu": 300, "batched_cpu": 220, "batch": 16,
              "one_us": 300, "batch_us": 190, "gain": 300 / 220, "bound": 300 / 190, "fraction": 0.86,
              "unbatched_p99": 20.0, "batched_p99": 10.0}]
    slow = [{"flags": "--server asgi", "slow": 32, "seconds": 10.0, "requests": 2000, "failed": 0, "p50_ms": 2.0,
             "p99_ms": 11.0, "max_ms": 50.0}]
    meta = {"date": "d", "cpus": 2, "command": "python -m bench serve", "repeats": 2, "seconds": 2.0, "clients": 16,
            "workers": 2, "threads": 4, "load": (1.0, 1.0), "elapsed": 60.0, "batch_model": "cifar_cnn",
            "modes": ["asgi", "gthread"], "max_batch": 16, "max_delay_ms": 2.0}
    text = serve.markdown(http, costs, batch, slow, meta)
    assert "| small | npy | dropcore asgi | 100 | **1.00x** |" in text
    assert "| small | json | dropcore | " in text and "| 900 |" in text  # the breakdown's HTTP total
    assert "Median gain / bound: **0.86**" in text and "`--server asgi`" in text


def test_server_modes_are_checked():
    assert serve.parser().parse_args(["--server-modes", "gthread,asgi"]).server_modes == ["gthread", "asgi"]
    with pytest.raises(SystemExit):
        serve.parser().parse_args(["--server-modes", "tornado"])
