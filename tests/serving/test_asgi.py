"""``dropcore serve --server asgi``: the ASGI front in process (answers equal the WSGI app's and the Predictor's, the
body limits in the event loop), and over HTTP, slow clients that hold connections without starving valid requests."""
import asyncio
import io
import json
import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import dropcore
from dropcore.serving import create_app
from dropcore.serving.asgi import AsgiFront
from dropcore.serving.limits import Limits

from .conftest import NPY, SHAPE, Client, npy, server


def _call(front, method, path, body=b"", headers=(), chunks=None, query=b""):
    """One HTTP request through ``front``: ``(status, headers dict, body)``. ``chunks``: the body's pieces as the
    server would hand them (default one piece); None in it: nothing more ever arrives."""
    pieces = list(chunks) if chunks is not None else [body]
    sent = []

    async def receive():
        if not pieces:
            return {"type": "http.disconnect"}
        piece = pieces.pop(0)
        if piece is None:
            await asyncio.Event().wait()  # a client that stopped sending: only the front's timeout ends this
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": query, "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers], "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 5000), "scheme": "http", "http_version": "1.1"}
    asyncio.run(front(scope, receive, send))
    start, body_message = sent
    return start["status"], dict(start["headers"]), body_message["body"]


@pytest.fixture(scope="module")
def front(saved_model):
    path, _ = saved_model
    predictor = dropcore.Predictor(path)
    limits = Limits(max_body_bytes=64 * 1024, body_timeout_s=0.2)
    app = AsgiFront(create_app(predictor, **limits.as_dict()), 2, limits)
    yield app, predictor
    app.pool.shutdown()


def test_answers_equal_the_predictor(front):
    app, predictor = front
    x = np.random.default_rng(0).random((3,) + SHAPE, dtype=np.float32)
    status, headers, body = _call(app, "POST", "/predict", npy(x), [("Content-Type", NPY), ("Accept", NPY)])
    assert status == 200 and headers[b"content-type"] == NPY.encode()
    assert int(headers[b"content-length"]) == len(body)
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), predictor.predict(x))
    doc = json.dumps({"instances": x.tolist()}).encode()
    status, _, body = _call(app, "POST", "/predict", headers=[("Content-Type", "application/json")],
                            chunks=[doc[:100], doc[100:2000], doc[2000:]])  # a body in pieces, joined
    assert status == 200
    np.testing.assert_array_equal(np.asarray(json.loads(body)["predictions"], np.float32), predictor.predict(x))
    mc = _call(app, "POST", "/predict", npy(x), [("Content-Type", NPY), ("Accept", NPY)],
               query=b"mc_samples=4&seed=2")
    np.testing.assert_array_equal(np.load(io.BytesIO(mc[2])), np.stack(predictor.predict(x, mc_samples=4, seed=2)))


def test_other_routes_and_errors_pass_through(front):
    app, _ = front
    status, _, body = _call(app, "GET", "/health")
    assert status == 200 and json.loads(body)["input_shape"] == list(SHAPE)
    status, _, body = _call(app, "GET", "/v2/models/small/ready")
    assert status == 200 and json.loads(body) == {"name": "small", "ready": True}
    status, _, body = _call(app, "POST", "/predict", b"{instances", [("Content-Type", "application/json")])
    assert status == 400 and "not valid JSON" in json.loads(body)["error"]
    status, _, body = _call(app, "GET", "/nowhere")
    assert status == 404 and "error" in json.loads(body)


def test_body_over_the_limit_is_refused_before_reading(front):
    app, _ = front
    status, headers, body = _call(app, "POST", "/predict", headers=[("Content-Length", str(10**9))],
                                  chunks=[None])  # never read: the declared size is refused first
    assert status == 413 and "1000000000 bytes; at most 65536" in json.loads(body)["error"]
    assert headers[b"connection"] == b"close"
    status, _, body = _call(app, "POST", "/predict", chunks=[b"0" * 40_000, b"0" * 40_000])  # chunked, no length
    assert status == 413 and "more than 65536 bytes" in json.loads(body)["error"]


def test_a_body_that_stops_arriving_gets_408(front):
    app, _ = front
    status, _, body = _call(app, "POST", "/predict", headers=[("Content-Length", "100")], chunks=[b"x" * 10, None])
    assert status == 408 and "nothing for 0.2 s (body_timeout_s)" in json.loads(body)["error"]


def _hold_slow_connections(port, n):
    """``n`` connections, each with a request line and one header sent, never finished."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: slow\r\nX-Slow: 1\r\n")
        socks.append(s)
    return socks


def test_slow_clients_do_not_starve_valid_requests(saved_model):
    """More unfinished requests than request threads: under gthread every thread would wait on one of them, and
    the valid requests below would not be answered until the slow clients gave up (never, here)."""
    path, _ = saved_model
    predictor = dropcore.Predictor(path)
    with server(path, "--server", "asgi", "--workers", 1, "--threads", 2) as (proc, port):
        socks = _hold_slow_connections(port, 16)
        try:
            # the slow connections are accepted and parsing (a /health on a later connection was answered)
            assert Client(port, timeout=30).call("GET", "/health")[0] == 200
            x = np.random.default_rng(1).random((2,) + SHAPE, dtype=np.float32)

            def valid(_):
                client = Client(port, timeout=30)  # far above the milliseconds it takes: never a timing check
                try:
                    return client.call("POST", "/predict", npy(x), {"Content-Type": NPY, "Accept": NPY})
                finally:
                    client.close()

            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(valid, range(32)))
            for status, _, data in answers:
                assert status == 200, data[:200]
                np.testing.assert_array_equal(np.load(io.BytesIO(data)), predictor.predict(x))
        finally:
            for s in socks:
                s.close()
        assert proc.poll() is None


def test_time_queued_for_a_request_thread_counts_toward_the_deadline(saved_model):
    """The front stamps each whole request's arrival; /predict and /v2 count their deadline from it, so a request
    that waited longer than ``timeout_ms`` for a thread is answered 503 without predicting."""
    import time

    from dropcore.serving.predict_route import ARRIVED

    path, _ = saved_model
    app = create_app(dropcore.Predictor(path), timeout_ms=5000)
    seen = []
    front = AsgiFront(lambda environ, start: seen.append(environ[ARRIVED]) or app(environ, start), 1, Limits())
    before = time.monotonic()
    assert _call(front, "GET", "/health")[0] == 200
    assert before <= seen[0] <= time.monotonic()
    front.pool.shutdown()
    x = np.zeros((1,) + SHAPE, np.float32)
    for route in ("/predict", "/v2/models/small/infer"):
        body = npy(x) if route == "/predict" else json.dumps(
            {"inputs": [{"name": "input", "shape": [1, *SHAPE], "datatype": "FP32", "data": x.ravel().tolist()}]})
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": route, "QUERY_STRING": "", "SERVER_NAME": "t",
                   "SERVER_PORT": "80", "CONTENT_TYPE": NPY if route == "/predict" else "application/json",
                   "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body if isinstance(body, bytes)
                                                                             else body.encode()),
                   "wsgi.url_scheme": "http", ARRIVED: time.monotonic() - 10.0}  # queued for 10 s
        statuses = []
        answer = b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
        assert statuses[0].startswith("503"), (route, answer[:200])
        assert "deadline of 5000 ms" in json.loads(answer)["error"]


def test_bodies_beyond_the_budget_get_503_and_the_budget_is_released(saved_model):
    """Any number of connections may send bodies at once: past ``body_budget`` bytes held, a request gets 503."""
    path, _ = saved_model
    limits = Limits(max_body_bytes=64 * 1024, body_timeout_s=30)
    front = AsgiFront(create_app(dropcore.Predictor(path), **limits.as_dict()), 1, limits, body_budget=100_000)
    scope = {"type": "http", "method": "POST", "path": "/predict", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json")], "server": ("t", 80), "client": ("t", 1)}

    async def request(pieces, sent, before=None, after_first=None):
        """One request whose body comes in ``pieces``; ``before``: wait for it first; ``after_first``: set once
        the first piece was handed over, then wait for ``release`` before ending the body."""
        if before is not None:
            await before.wait()
        queue, answer = list(pieces), []

        async def receive():
            piece = queue.pop(0)
            if after_first is not None and not after_first[0].is_set():
                after_first[0].set()
            elif after_first is not None:
                await after_first[1].wait()  # holds its first piece until released
            return {"type": "http.request", "body": piece, "more_body": bool(queue)}

        async def send(message):
            answer.append(message)

        await front(scope, receive, send)
        sent.append((answer[0]["status"], json.loads(answer[1]["body"])["error"]))

    async def main():
        first_in, release, sent_a, sent_b = asyncio.Event(), asyncio.Event(), [], []
        a = asyncio.create_task(request([b"x" * 60_000, b""], sent_a, after_first=(first_in, release)))
        await request([b"y" * 50_000], sent_b, before=first_in)  # 60,000 held + 50,000 > 100,000
        held_meanwhile = front.held
        release.set()
        await a
        sent_c = []
        await request([b"z" * 50_000], sent_c)  # A's bytes are released: within the budget again
        return sent_a, sent_b, sent_c, held_meanwhile

    sent_a, sent_b, sent_c, held_meanwhile = asyncio.run(main())
    assert sent_b[0][0] == 503 and "budget of 100000" in sent_b[0][1]
    assert held_meanwhile == 60_000  # B's refused piece was never counted
    assert sent_a[0][0] == 400 and "not valid JSON" in sent_a[0][1]  # A went on to the app
    assert sent_c[0][0] == 400 and "not valid JSON" in sent_c[0][1]
    assert front.held == 0
    front.pool.shutdown()
