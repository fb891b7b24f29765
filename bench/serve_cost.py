"""In process, for ``python -m bench serve``: where a request's CPU goes, and what batching can save at most.

The request-cost breakdown times each stage of one single-image request on one thread, many times over (median of
repeats, warm-up excluded), for ``dropcore serve``'s app and for the Flask + ONNX Runtime endpoint
(``bench.serve_peer``): parsing the body, predicting, encoding the answer, and the whole WSGI call of the app (so the
app's own cost is the whole less those three). What the HTTP server itself costs is the server's CPU per request
measured under load (``bench.serve_load``) less the whole app call measured here; a bare endpoint answering a
constant gives the floor.

The batching bound: what a batch saves per image is the CPU time of predicting one image alone over the per-image
CPU time inside a batch of the size batching reached; batching's measured gain over unbatched callers in CPU per
image served, in the same run, is reported as a fraction of that bound (``bench.serve.batching_bench``).
"""
import io
import json
import statistics
import time

import numpy as np


def per_call_us(fn, seconds=0.3, repeats=5):
    """Median over ``repeats`` of the CPU microseconds of this thread one call of ``fn`` takes (each repeat calls it
    for ~``seconds`` of CPU). CPU time, not wall time: on a machine other processes load, a thread's wall time
    counts their turns too. Every stage timed here runs on the calling thread (one kernel thread per prediction,
    as ``dropcore serve`` and the Flask + ORT endpoint give one)."""
    t0, n = time.thread_time(), 0
    while time.thread_time() - t0 < 0.1 or n < 20:  # warm-up, and a call count for ~seconds per repeat
        fn()
        n += 1
    calls = max(20, int(n * seconds / (time.thread_time() - t0)))
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        for _ in range(calls):
            fn()
        times.append((time.thread_time() - t0) / calls * 1e6)
    return statistics.median(times)


def _environ(body, content_type):
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "SCRIPT_NAME": "", "QUERY_STRING": "",
            "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body)), "HTTP_ACCEPT": content_type,
            "HTTP_HOST": "127.0.0.1", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0)}


def wsgi_call(app, body, content_type):
    """A function making one whole WSGI call of ``app`` (as a server would: iterate the answer, close it)."""
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    def call():
        result = app(_environ(body, content_type), start_response)
        b"".join(result)
        if hasattr(result, "close"):
            result.close()
        if not statuses.pop().startswith("200"):
            raise RuntimeError(f"the app refused the benchmark's request: {b''.join(result)[:200]!r}")

    return call


def bodies(x):
    """``{"npy": (body, content type), "json": ...}`` for the batch ``x``."""
    buffer = io.BytesIO()
    np.save(buffer, x)
    return {"npy": (buffer.getvalue(), "application/x-npy"),
            "json": (json.dumps({"instances": x.tolist()}).encode(), "application/json")}


def breakdown(model_path, onnx_path, x, predict_threads=1, seconds=0.3, repeats=5):
    """``{payload: {endpoint: {stage: us}}}`` for one request with the single image ``x``: endpoints "dropcore",
    "flask-ort" and "bare"; stages parse, predict, encode, app (the whole WSGI call); each :func:`per_call_us`
    over ``repeats`` of ``seconds``."""
    import dropcore
    from dropcore.serving import create_app, payloads
    from dropcore.serving.limits import Limits

    from .serve_peer import bare_app, flask_ort_app

    predictor = dropcore.Predictor(model_path, threads=predict_threads)
    app = create_app(predictor)
    peer = flask_ort_app(onnx_path, predict_threads)
    session = peer_session(onnx_path, predict_threads)
    bare = bare_app()
    limits, shape = Limits(), x.shape[1:]
    y = predictor.predict(x)
    out = {}

    def us(fn):
        return per_call_us(fn, seconds, repeats)

    for payload, (body, content_type) in bodies(x).items():
        if payload == "npy":
            parse = lambda: payloads.parse_npy(body, {}, shape, limits)  # noqa: E731
            encode = lambda: payloads.result_npy(y)  # noqa: E731
            peer_parse = lambda: np.load(io.BytesIO(body), allow_pickle=False)  # noqa: E731
            peer_encode = lambda: _npy(y)  # noqa: E731
        else:
            parse = lambda: payloads.parse_json(body, shape, limits)  # noqa: E731
            encode = lambda: payloads.json_bytes(y)  # noqa: E731
            peer_parse = lambda: np.asarray(json.loads(body)["instances"], dtype=np.float32)  # noqa: E731
            peer_encode = lambda: json.dumps({"predictions": y.tolist()}).encode()  # noqa: E731
        out[payload] = {
            "dropcore": {"parse": us(parse), "predict": us(lambda: predictor.predict(x)),
                         "encode": us(encode), "app": us(wsgi_call(app, body, content_type))},
            "flask-ort": {"parse": us(peer_parse),
                          "predict": us(lambda: session.run(None, {"input": x})),
                          "encode": us(peer_encode), "app": us(wsgi_call(peer, body, content_type))},
            "bare": {"app": us(wsgi_call(bare, body, content_type))},
        }
    return out


def peer_session(onnx_path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])


def _npy(y):
    buffer = io.BytesIO()
    np.save(buffer, y)
    return buffer.getvalue()
