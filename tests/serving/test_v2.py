"""The Open Inference Protocol (KServe v2) of ``dropcore serve``: tritonclient against the real server (metadata,
readiness, JSON and binary tensors, Monte-Carlo parameters, refusals), then malformed v2 requests over raw HTTP.
Every answer must equal ``dropcore.Predictor(path).predict`` bit for bit."""
import gzip
import json
import re
import struct

import numpy as np
import pytest

import dropcore
from dropcore.serving import create_app

from .conftest import SHAPE, Client, needs_exact_batching, server

MAX_BODY = 256 * 1024
MODEL = "small"  # the small model's name (conftest.small_model): what the v2 paths name
INFER = f"/v2/models/{MODEL}/infer"


@pytest.fixture(scope="module")
def v2_server(saved_model):
    """``(port, predictor)`` of a two-worker ``dropcore serve``, with limits low enough to reach."""
    path, _ = saved_model
    with server(path, "--workers", 2, "--threads", 4, "--max-instances", 32, "--max-body-bytes", MAX_BODY,
                "--max-mc-samples", 50) as (proc, port):
        yield port, dropcore.Predictor(path)
        assert proc.poll() is None  # no request killed a worker's master


@pytest.fixture(scope="module")
def triton(v2_server):
    """``(tritonclient.http module, client, predictor)`` (tritonclient comes with the test extra)."""
    httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed (pip install "
                                     "'tritonclient[http]', in dropcore's test extra)")
    port, predictor = v2_server
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{port}")
    yield httpclient, client, predictor
    client.close()


def batch(n, seed=0):
    return np.random.default_rng(seed).random((n,) + SHAPE, dtype=np.float32)


# --- tritonclient -------------------------------------------------------------------------------------------------

def test_health_and_readiness(triton):
    _, client, _ = triton
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, model_version="1")
    assert not client.is_model_ready("other") and not client.is_model_ready(MODEL, model_version="2")
    meta = client.get_server_metadata()
    assert meta["name"] == "dropcore" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata(triton):
    _, client, predictor = triton
    meta = client.get_model_metadata(MODEL)
    assert meta == {
        "name": MODEL, "versions": ["1"], "platform": "dropcore",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, *SHAPE]}],
        "outputs": [{"name": n, "datatype": "FP32", "shape": [-1, 3]} for n in ("predictions", "mean", "std")]}
    assert predictor.input_name == "input"


def _infer(httpclient, client, x, input_binary, outputs, **kwargs):
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=input_binary)
    requested = None if outputs is None else [httpclient.InferRequestedOutput(name, binary_data=binary)
                                              for name, binary in outputs]
    return client.infer(MODEL, [tensor], outputs=requested, **kwargs)


@pytest.mark.parametrize("input_binary, output_binary", [(False, False), (True, True), (False, True), (True, False)],
                         ids=["json", "binary", "json-in-binary-out", "binary-in-json-out"])
def test_inference_equals_the_predictor(triton, input_binary, output_binary):
    httpclient, client, predictor = triton
    x = batch(5, seed=1)
    result = _infer(httpclient, client, x, input_binary, [("predictions", output_binary)], request_id="req-7")
    got = result.as_numpy("predictions")
    assert got.dtype == np.float32 and np.array_equal(got, predictor.predict(x))
    response = result.get_response()
    assert response["id"] == "req-7" and response["model_name"] == MODEL and response["model_version"] == "1"
    output = response["outputs"][0]
    assert output["shape"] == [5, 3] and output["datatype"] == "FP32"
    assert ("parameters" in output) == output_binary and ("data" in output) == (not output_binary)
    if output_binary:
        assert output["parameters"] == {"binary_data_size": 5 * 3 * 4}


def test_no_outputs_named_answers_all_in_binary(triton):
    httpclient, client, predictor = triton
    x = batch(2, seed=2)
    result = _infer(httpclient, client, x, True, None)  # tritonclient sends parameters.binary_data_output
    output = result.get_response()["outputs"]
    assert [o["name"] for o in output] == ["predictions"] and "binary_data_size" in output[0]["parameters"]
    assert np.array_equal(result.as_numpy("predictions"), predictor.predict(x))


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_monte_carlo_parameters_answer_mean_and_std(triton, binary):
    httpclient, client, predictor = triton
    x = batch(4, seed=3)
    result = _infer(httpclient, client, x, binary, [("mean", binary), ("std", binary)],
                    parameters={"mc_samples": 7, "seed": 11})
    mean, std = predictor.predict(x, mc_samples=7, seed=11)
    assert np.array_equal(result.as_numpy("mean"), mean) and np.array_equal(result.as_numpy("std"), std)
    assert std.max() > 0  # dropout does vary the passes: the std is not trivially zero
    only_std = _infer(httpclient, client, x, binary, [("std", binary)], parameters={"mc_samples": 7, "seed": 11})
    assert [o["name"] for o in only_std.get_response()["outputs"]] == ["std"]
    assert np.array_equal(only_std.as_numpy("std"), std)
    all_outputs = _infer(httpclient, client, x, binary, None, parameters={"mc_samples": 7, "seed": 11})
    assert np.array_equal(all_outputs.as_numpy("mean"), mean) and np.array_equal(all_outputs.as_numpy("std"), std)


def test_refused_shape_raises_with_the_400_reason(triton):
    httpclient, client, _ = triton
    x = batch(2)[..., 0]  # (2, 10, 10): the channel axis missing
    with pytest.raises(httpclient.InferenceServerException) as info:
        _infer(httpclient, client, x, True, [("predictions", True)])
    assert info.value.status() == "400"
    assert "input 'input': shape [2, 10, 10]; expected [-1, 10, 10, 1]" in info.value.message()


def test_unknown_model_is_404(triton):
    httpclient, client, _ = triton
    tensor = httpclient.InferInput("input", [1, *SHAPE], "FP32")
    tensor.set_data_from_numpy(batch(1))
    with pytest.raises(httpclient.InferenceServerException) as info:
        client.infer("resnet50", [tensor])
    assert info.value.status() == "404" and "model 'resnet50' is not served here" in info.value.message()
    with pytest.raises(httpclient.InferenceServerException) as info:
        client.get_model_metadata("resnet50")
    assert info.value.status() == "404"
    with pytest.raises(httpclient.InferenceServerException) as info:
        client.infer(MODEL, [tensor], model_version="3")
    assert info.value.status() == "404" and "no version '3'" in info.value.message()


def test_mc_samples_over_the_limit_raises_with_the_reason(triton):
    httpclient, client, _ = triton
    with pytest.raises(httpclient.InferenceServerException) as info:
        _infer(httpclient, client, batch(1), True, None, parameters={"mc_samples": 51})
    assert info.value.status() == "400" and "between 1 and 50, received mc_samples=51" in info.value.message()


# --- malformed v2 requests over raw HTTP ---------------------------------------------------------------------------

def _request(n=1, data=None, **fields):
    """A v2 inference request for ``n`` samples, as a dict, with ``fields`` overriding the input's."""
    x = batch(n)
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
    if data is not None:
        tensor["data"] = data
    tensor.update(fields)
    return {"inputs": [tensor]}


def _binary(x, size=None, json_length=None, cut=0, doc=None):
    """``(body, headers)`` of a binary-data request for ``x``: ``size`` overrides binary_data_size,
    ``json_length`` the Inference-Header-Content-Length, ``cut`` drops bytes from the end."""
    raw = x.astype("<f4").tobytes()
    doc = doc or {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                              "parameters": {"binary_data_size": len(raw) if size is None else size}}]}
    head = json.dumps(doc).encode()
    body = head + raw
    body = body[:len(body) - cut]
    return body, {"Inference-Header-Content-Length": str(len(head) if json_length is None else json_length),
                  "Content-Type": "application/octet-stream"}


_NAN = batch(1)
_NAN[0, 3, 4, 0] = np.nan
_INF = batch(2)
_INF[1, 9, 9, 0] = np.inf

#: (id, body, headers, status, words of the reason)
MALFORMED = [
    ("wrong-datatype", _request(datatype="FP64"), {}, 400, "datatype 'FP64'; expected 'FP32'"),
    ("int-datatype", _request(datatype="INT32"), {}, 400, "datatype 'INT32'; expected 'FP32'"),
    ("data-shorter-than-shape", _request(2, data=[0.5] * 199), {}, 400,
     "`data` has 199 elements at its top level; shape [2, 10, 10, 1] expects 200 numbers"),
    ("nested-data-off-shape", _request(1, data=[[[[0.5]] * 10] * 9]), {}, 400,
     "`data` has shape [1, 9, 10, 1] (90 numbers); expected 100 numbers for shape [1, 10, 10, 1]"),
    ("wrong-shape", _request(shape=[1, 100]), {}, 400, "shape [1, 100]; expected [-1, 10, 10, 1]"),
    ("batch-of-minus-one", _request(shape=[-1, 10, 10, 1]), {}, 400, "has a batch of -1"),
    ("no-samples", _request(0, data=[], shape=[0, 10, 10, 1]), {}, 400, "holds no samples"),
    ("too-many-samples", _request(33), {}, 400, "33 samples; at most 32 per request"),
    ("non-finite-json", _request(1, data=_NAN.ravel().tolist()), {}, 400,
     "non-finite value (nan at index (0, 3, 4, 0))"),
    ("beyond-float32", _request(1, data=[1e39] + [0.0] * 99), {}, 400, "non-finite value (inf at index (0, 0, 0, 0))"),
    ("string-in-data", _request(1, data=[0.5] * 99 + ["x"]), {}, 400,
     "Expected `float | array`, got `str` - at `$.inputs[0].data[99]`; received \"x\""),
    ("shape-of-strings", _request(shape=["1", 10, 10, 1]), {}, 400,
     "Expected `int`, got `str` - at `$.inputs[0].shape[0]`; received \"1\""),
    ("unknown-input-field", _request(contents=[1]), {}, 400, "unknown field `contents` - at `$.inputs[0]`"),
    ("unknown-request-field", {**_request(), "model": "x"}, {}, 400, "unknown field `model`"),
    ("unknown-input-name", _request(name="images"), {}, 400, "`inputs` names ['images']; expected exactly one input"),
    ("two-inputs", {"inputs": _request()["inputs"] * 2}, {}, 400, "`inputs` names ['input', 'input']"),
    ("no-data", {"inputs": [{"name": "input", "shape": [1, *SHAPE], "datatype": "FP32"}]}, {}, 400,
     "has no `data` and no `parameters.binary_data_size`"),
    ("unknown-output", {**_request(), "outputs": [{"name": "logits"}]}, {}, 400,
     "`outputs[0].name` is 'logits'; expected one of ['predictions']"),
    ("mc-output-without-mc", {**_request(), "outputs": [{"name": "mean"}]}, {}, 400,
     "come with `parameters.mc_samples`"),
    ("output-twice", {**_request(), "outputs": [{"name": "predictions"}] * 2}, {}, 400, "names 'predictions' twice"),
    ("mc-as-string", {**_request(), "parameters": {"mc_samples": "5"}}, {}, 400,
     "`parameters.mc_samples` must be a JSON integer, received the string '5'"),
    ("seed-without-mc", {**_request(), "parameters": {"seed": 3}}, {}, 400, "it needs `mc_samples`"),
    ("binary-data-output-not-bool", {**_request(), "parameters": {"binary_data_output": 1}}, {}, 400,
     "`parameters.binary_data_output` must be true or false, received 1"),
    ("classification", {**_request(), "outputs": [{"name": "predictions", "parameters": {"classification": 2}}]},
     {}, 400, "the classification extension"),
    ("shared-memory", _request(parameters={"shared_memory_region": "r0", "shared_memory_byte_size": 400}), {}, 400,
     "`inputs[0].parameters.shared_memory_region` asks for the shared-memory extension"),
    ("unknown-parameters-ignored-but-typed", {**_request(), "parameters": {"priority": [1]}}, {}, 400,
     "Expected `bool | int | float | str`, got `array` - at `$.parameters[...]`"),
    ("not-json", b"{inputs", {}, 400, "not valid JSON"),
    ("deep-nesting", b'{"inputs":[{"name":"input","shape":[1],"datatype":"FP32","data":' + b"[" * 100_000, {}, 400,
     "does not follow the Open Inference Protocol"),
    ("too-large", b"0" * (MAX_BODY + 1), {}, 413, f"at most {MAX_BODY} (max_body_bytes)"),
    ("gzip", gzip.compress(json.dumps(_request()).encode()), {"Content-Encoding": "gzip"}, 415,
     "Content-Encoding 'gzip' is not supported"),
    ("binary-size-beyond-body", *_binary(batch(2), cut=8), 400,
     "`parameters.binary_data_size` is 800 bytes, but 792 bytes follow the JSON"),
    ("binary-size-off-shape", *_binary(batch(2), size=796), 400,
     "`parameters.binary_data_size` is 796 bytes; shape [2, 10, 10, 1] of FP32 takes 800"),
    ("binary-size-negative", *_binary(batch(1), size=-4), 400, "must be a byte count >= 0, received -4"),
    ("header-length-beyond-body", *_binary(batch(1), json_length=10**6), 400,
     "says the JSON has 1000000 bytes; expected between 1 and the body's"),
    ("header-length-not-a-number", *_binary(batch(1), json_length="12a"), 400,
     "Inference-Header-Content-Length header is '12a'"),
    ("unclaimed-binary", *_binary(batch(1), doc=_request(1)), 400,
     "400 bytes of binary tensor data follow the JSON, but no input has `parameters.binary_data_size`"),
    ("binary-and-data", *_binary(batch(1), doc={"inputs": [{**_request(1)["inputs"][0],
                                                             "parameters": {"binary_data_size": 400}}]}), 400,
     "has both `data` and `parameters.binary_data_size`"),
    ("non-finite-binary", *_binary(_INF), 400, "non-finite value (inf at index (1, 9, 9, 0))"),
]


@pytest.mark.parametrize("body, headers, status, reason", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_v2_request_gets_4xx_json(v2_server, body, headers, status, reason):
    port, predictor = v2_server
    client = Client(port)
    if isinstance(body, dict):
        body = json.dumps(body).encode()  # (NaN and Infinity as Python writes them)
    got, ctype, data = client.call("POST", INFER, body, {"Content-Type": "application/json", **headers})
    assert (got, ctype) == (status, "application/json"), data[:300]
    assert reason in json.loads(data)["error"], data[:400]
    client.close()
    x = batch(1, seed=9)  # the worker keeps serving the right answers
    ok, answer = Client(port).json(INFER, _request(1, data=x.ravel().tolist()))
    assert ok == 200 and np.array_equal(np.asarray(answer["outputs"][0]["data"], np.float32).reshape(1, 3),
                                        predictor.predict(x))


def test_routes_methods_and_names(v2_server):
    port, _ = v2_server
    client = Client(port)
    status, _, data = client.call("GET", INFER)
    assert status == 405 and "takes POST, received GET" in json.loads(data)["error"]
    status, _, data = client.call("POST", f"/v2/models/{MODEL}", b"{}")
    assert status == 405 and "takes GET, received POST" in json.loads(data)["error"]
    for path, reason in [("/v2/models/other/infer", "model 'other' is not served here; this server serves "
                                                     f"'{MODEL}'"),
                         (f"/v2/models/{MODEL}/versions/2/ready", "has no version '2'"),
                         (f"/v2/models/{MODEL}/explain", "no Open Inference Protocol route"),
                         ("/v2/repository/index", "no Open Inference Protocol route")]:
        status, _, data = client.call("GET", path)
        assert status == 404 and reason in json.loads(data)["error"], (path, data)
    # the server's own routes are untouched
    assert client.call("GET", "/health")[0] == 200
    assert client.json("/predict", {"instances": batch(1).tolist()})[0] == 200
    client.close()


def test_binary_request_over_raw_http(v2_server):
    """The binary extension byte for byte: the answer's JSON header, then the little-endian float32 bytes."""
    port, predictor = v2_server
    x = batch(3, seed=4)
    body, headers = _binary(x, doc={"id": "raw", "parameters": {"mc_samples": 5, "seed": 2, "trace": "ignored"},
                                    "inputs": [{"name": "input", "shape": [3, *SHAPE], "datatype": "FP32",
                                                "parameters": {"binary_data_size": x.nbytes}}],
                                    "outputs": [{"name": "std", "parameters": {"binary_data": True}},
                                                {"name": "mean"}]})
    client = Client(port)
    client.conn.request("POST", INFER, body=body, headers=headers)
    resp = client.conn.getresponse()
    data = resp.read()
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/octet-stream"
    length = int(resp.getheader("Inference-Header-Content-Length"))
    head = json.loads(data[:length])
    mean, std = predictor.predict(x, mc_samples=5, seed=2)
    assert head["id"] == "raw" and [o["name"] for o in head["outputs"]] == ["std", "mean"]
    assert head["outputs"][0]["parameters"] == {"binary_data_size": std.nbytes} and len(data) == length + std.nbytes
    assert np.array_equal(np.frombuffer(data[length:], "<f4").reshape(3, 3), std)
    assert np.array_equal(np.asarray(head["outputs"][1]["data"], np.float32).reshape(3, 3), mean)
    assert struct.unpack("<f", data[length:length + 4])[0] == std[0, 0]
    client.close()


def test_v2_metrics_name_route_templates(v2_server):
    port, _ = v2_server
    client = Client(port)
    assert client.json(INFER, _request(1))[0] == 200
    client.call("GET", "/v2/models/some-other-model")
    text = client.call("GET", "/metrics")[2].decode()
    assert re.search(r'dropcore_http_requests_total\{method="POST",route="/v2/models/<name>/infer",status="200"\}',
                     text)
    assert 'route="/v2/models/<name>",status="404"' in text and "some-other-model" not in text
    client.close()


@needs_exact_batching
def test_batching_app_answers_v2_like_the_predictor(saved_model):
    predictor = dropcore.Predictor(saved_model[0])
    client = create_app(saved_model[0], batching=True, max_batch=8).test_client()
    x = batch(2, seed=6)
    doc = _request(2, data=x.tolist()) | {"parameters": {"mc_samples": 3, "seed": 1}}  # nested data this time
    answer = client.post(INFER, data=json.dumps(doc)).get_json()
    mean, std = predictor.predict(x, mc_samples=3, seed=1)
    got = {o["name"]: np.asarray(o["data"], np.float32).reshape(o["shape"]) for o in answer["outputs"]}
    assert np.array_equal(got["mean"], mean) and np.array_equal(got["std"], std)


def test_deadline_is_503_json_on_v2_too(saved_model):
    client = create_app(saved_model[0], timeout_ms=1, max_mc_samples=10**6, max_instances=256).test_client()
    doc = _request(256) | {"parameters": {"mc_samples": 10**6, "seed": 0}}
    resp = client.post(INFER, data=json.dumps(doc))
    assert resp.status_code == 503 and "compute deadline of 1 ms passed" in resp.get_json()["error"]
