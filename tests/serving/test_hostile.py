"""``dropcore serve`` against hostile clients, over raw sockets: every malformed request gets a 4xx with a JSON
``{"error": ...}`` naming the problem (never a 5xx, a hang or a dead worker), and valid requests keep getting the
Predictor's answers. Then a Hypothesis fuzzer of whole requests, checked against the in-process parsers."""
import io
import json
import os
import socket
import time
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy_format

import dropcore
from dropcore.serving import payloads
from dropcore.serving.limits import Limits

from .conftest import NPY, SHAPE, npy, server

BODY_TIMEOUT_S = 1
LIMITS = Limits(max_body_bytes=256 * 1024, max_instances=32, max_mc_samples=20, body_timeout_s=BODY_TIMEOUT_S)
ANSWER_S = 10  # the deadline for any answer: a request still unanswered then is a hang


@pytest.fixture(scope="module", params=["asgi", "gthread"])
def server_mode(request):
    """``dropcore serve --server``: every attack is made on both gunicorn workers."""
    return request.param


@pytest.fixture(scope="module")
def hostile(saved_model, server_mode):
    """``(port, predictor, worker pid)`` of a one-worker server, as attacked."""
    path, _ = saved_model
    with server(path, "--server", server_mode, "--workers", 1, "--threads", 4, "--body-timeout-s", BODY_TIMEOUT_S,
                "--max-body-bytes", LIMITS.max_body_bytes, "--max-instances", LIMITS.max_instances,
                "--max-mc-samples", LIMITS.max_mc_samples) as (proc, port):
        status, _, body = exchange(port, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        assert status == 200
        yield port, dropcore.Predictor(path), json.loads(body)["pid"]
        assert proc.poll() is None


def exchange(port, data, half_close=False, timeout=ANSWER_S):
    """Send ``data`` on a new connection, optionally shut our side (EOF after it), and read one response:
    ``(status, headers, body)``. Fails if no complete answer comes within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking it all (431, 413): its answer is still there
        received = b""
        while True:
            head, sep, rest = received.partition(b"\r\n\r\n")
            if sep:
                lines = head.decode("latin-1").split("\r\n")
                headers = dict((k.strip().lower(), v.strip()) for k, _, v in (h.partition(":") for h in lines[1:]))
                length = int(headers.get("content-length", -1))
                if 0 <= length <= len(rest):
                    return int(lines[0].split()[1]), headers, rest[:length]
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(1 << 16)
            except socket.timeout:
                pytest.fail(f"no complete answer within {timeout} s (a hang); received {received[:300]!r}")
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                pytest.fail(f"the server closed the connection without a complete answer: {received[:300]!r}")
            received += chunk


def post(body, content_type="application/json", path="/predict", extra=b"", length=None):
    """The bytes of a POST with ``body`` (Content-Length ``length``, default the body's)."""
    length = len(body) if length is None else length
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n"
            .encode() + extra + b"\r\n" + body)


def chunked(chunks, content_type="application/json"):
    """A POST whose body is sent as the given chunk lines and data, already framed (``chunks`` is bytes)."""
    return (f"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
            .encode() + chunks)


def frame(body, sizes):
    """``body`` as valid chunked framing, cut into pieces of ``sizes`` (the rest in one more chunk)."""
    out, start = b"", 0
    for size in sizes:
        piece = body[start:start + size]
        if piece:
            out += b"%x\r\n" % len(piece) + piece + b"\r\n"
        start += size
    if start < len(body):
        out += b"%x\r\n" % (len(body) - start) + body[start:] + b"\r\n"
    return out + b"0\r\n\r\n"


def assert_refused(answer, statuses, reason, mode=None):
    """``reason``: words the error must hold, or ``{server mode: words}`` where gunicorn's workers word it apart."""
    if isinstance(reason, dict):
        reason = reason[mode]
    status, headers, body = answer
    assert status in statuses, (status, body[:300])
    assert headers.get("content-type") == "application/json", headers
    error = json.loads(body)["error"]
    assert reason in error, error


def assert_still_serves(port, predictor, worker_pid):
    """A valid request on a new connection gets the Predictor's answer, from the same worker process."""
    x = np.random.default_rng(worker_pid).random((2,) + SHAPE, dtype=np.float32)
    status, _, body = exchange(port, post(json.dumps({"instances": x.tolist()}).encode()))
    assert status == 200, body[:300]
    assert np.array_equal(np.asarray(json.loads(body)["predictions"], np.float32), predictor.predict(x))
    status, _, body = exchange(port, post(npy(x), NPY, extra=b"Accept: application/x-npy\r\n"))
    assert status == 200 and np.array_equal(np.load(io.BytesIO(body)), predictor.predict(x))
    status, _, body = exchange(port, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 200 and json.loads(body)["pid"] == worker_pid  # the worker did not die and restart


def npy_header(shape, descr="<f4", fortran_order=False):
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": fortran_order, "shape": shape})
    return buffer.getvalue()


ONE = np.random.default_rng(0).random((1,) + SHAPE)
DEEP = b"[" * 100_000 + b"]" * 100_000
NAN_ONE = ONE.copy()
NAN_ONE[0, 2, 3, 0] = np.nan

# (id, request bytes, send EOF after it, accepted statuses, words the error must contain)
CASES = [
    ("json-nested-100000-deep", post(b'{"instances": ' + DEEP + b"}"), False, {400}, "deeper than"),
    ("json-document-100000-deep", post(DEEP), False, {400}, 'expected a JSON object with "instances"'),
    ("json-unknown-field-100000-deep", post(b'{"x": ' + DEEP + b"}"), False, {400}, "deeper than"),
    ("npy-header-claims-1e9-rows", post(npy_header((10**9,) + SHAPE) + npy(ONE.astype(np.float32))[128:], NPY),
     False, {400}, "declares shape (1000000000, 10, 10, 1) of float32, 400000000000 bytes of data; 400 bytes"),
    ("npy-header-claims-fewer-bytes", post(npy_header((1, 10, 5, 1)) + bytes(400), NPY), False, {400},
     "200 bytes of data; 400 bytes follow the header"),
    ("content-length-over-the-body-then-silence", post(b'{"instances": []}', length=1000), False, {408},
     f"nothing for {BODY_TIMEOUT_S} s"),
    ("content-length-over-the-body-then-eof", post(b'{"instances": []}', length=1000), True, {400},
     {"gthread": "ended after 17 bytes; its Content-Length declared 1000",
      "asgi": "ended before its Content-Length of 1000 bytes: the client closed its side"}),
    ("content-length-not-a-number", post(b"{}", length="12abc"), False, {400},
     {"gthread": "Invalid HTTP Header: 'CONTENT-LENGTH'", "asgi": "Invalid Content-Length value"}),
    ("content-length-twice", post(b"{}", extra=b"Content-Length: 5\r\n"), False, {400},
     {"gthread": "Invalid HTTP Header: 'CONTENT-LENGTH'", "asgi": "Duplicate Content-Length header"}),
    ("chunk-size-not-hex", chunked(b"zz\r\nabc\r\n0\r\n\r\n"), False, {400},
     {"gthread": "Invalid chunk size", "asgi": "Invalid character in chunk size"}),
    ("chunk-size-negative", chunked(b"-5\r\nabc\r\n0\r\n\r\n"), False, {400},
     {"gthread": "Invalid chunk size", "asgi": "Invalid character in chunk size"}),
    ("chunk-size-empty", chunked(b"\r\nabc\r\n0\r\n\r\n"), False, {400},
     {"gthread": "Invalid chunk size", "asgi": "Empty chunk size"}),
    ("chunk-size-over-the-data", chunked(b"5\r\nabc\r\n0\r\n\r\n"), False, {400}, "chunk"),
    ("chunk-size-huge-then-eof", chunked(b"ffffffffffff\r\nabc"), True, {400}, "could not be read"),
    ("chunked-without-last-chunk", chunked(b"3\r\nabc\r\n"), True, {400}, "could not be read"),
    ("header-line-20000-bytes", b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", False,
     {431}, "Request Header Fields Too Large"),
    ("headers-200-lines", b"GET /health HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(200))
     + b"\r\n", False, {431}, "Request Header Fields Too Large"),
    ("request-line-10000-bytes", b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", False, {414},
     {"gthread": "Request Line is too large", "asgi": "URI Too Long: Request line is too large"}),
    ("request-line-garbage", b"\x00\x01\x02 \xff HTTP/1.1\r\n\r\n", False, {400}, "Invalid"),
    ("body-over-max-body-bytes", post(b"0" * (LIMITS.max_body_bytes + 1), NPY), False, {413}, "max_body_bytes"),
    ("json-not-utf8", post(b'{"instances": [\xff\xfe]}'), False, {400}, "not valid JSON"),
    ("json-string-not-utf8", post(b'{"instances": [[[["\xff"]]]]}'), False, {400}, "not UTF-8 text"),
    ("json-nan", post(json.dumps({"instances": NAN_ONE.tolist()}).encode()), False, {400},
     "non-finite value (nan at index (0, 2, 3, 0))"),
    ("json-infinity", post(json.dumps({"instances": (ONE * np.inf).tolist()}).encode()), False, {400},
     "non-finite value (inf at index (0, 0, 0, 0))"),
    ("json-beyond-float64", post(b'{"instances": [[[[1e999]]]]}'), False, {400}, "beyond float64's range"),
    ("json-wrong-shape", post(b'{"instances": [[1, 2]]}'), False, {400}, "have shape (1, 2); expected (n, 10, 10, 1)"),
    ("json-too-deep-for-the-model", post(b'{"instances": [[[[[1]]]]]}'), False, {400},
     "lists nested deeper than (n, 10, 10, 1)"),
    ("json-booleans", post(json.dumps({"instances": (ONE > 0.5).tolist()}).encode()), False, {400}, "booleans"),
    ("npy-nan", post(npy(NAN_ONE), NPY), False, {400}, "non-finite value (nan at index (0, 2, 3, 0))"),
    ("npy-inf", post(npy(ONE * np.inf), NPY), False, {400}, "non-finite value (inf at index (0, 0, 0, 0))"),
    ("npy-int32", post(npy(ONE.astype(np.int32)), NPY), False, {400}, "dtype int32; expected float32 or float64"),
    ("npy-int64", post(npy(ONE.astype(np.int64)), NPY), False, {400}, "dtype int64; expected float32 or float64"),
    ("npy-bool", post(npy(ONE > 0.5), NPY), False, {400}, "dtype bool; expected float32 or float64"),
    ("npy-float16", post(npy(ONE.astype(np.float16)), NPY), False, {400}, "dtype float16"),
    ("npy-complex", post(npy(ONE.astype(np.complex64)), NPY), False, {400}, "dtype complex64"),
    ("npy-strings", post(npy(np.array([["a", "b"]])), NPY), False, {400}, "dtype <U1"),
    ("npy-object-pickle", post(npy(np.array([{"a": 1}], dtype=object)), NPY), False, {400},
     "dtype object holds Python objects"),
    ("npy-wrong-rank", post(npy(ONE[0]), NPY), False, {400}, "have shape (10, 10, 1); expected (n, 10, 10, 1)"),
    ("npy-wrong-shape", post(npy(np.zeros((1, 10, 9, 1))), NPY), False, {400}, "have shape (1, 10, 9, 1)"),
    ("npy-truncated", post(npy(ONE)[:-3], NPY), False, {400}, "not a readable .npy"),
    ("npy-format-3", post(npy(ONE).replace(b"\x01\x00", b"\x03\x00", 1), NPY), False, {400}, "format version 3.0"),
]


@pytest.mark.parametrize("data, half_close, statuses, reason", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_request_gets_4xx_json(hostile, server_mode, data, half_close, statuses, reason):
    port, predictor, worker_pid = hostile
    assert_refused(exchange(port, data, half_close), statuses, reason, server_mode)
    assert_still_serves(port, predictor, worker_pid)


def test_body_timeout_answers_near_its_limit(hostile):
    port, _, _ = hostile
    start = time.monotonic()
    assert_refused(exchange(port, post(b"{", length=10)), {408}, "stopped arriving")
    assert BODY_TIMEOUT_S <= time.monotonic() - start < BODY_TIMEOUT_S + 3


@pytest.mark.parametrize("array", [ONE.astype(np.float32), ONE, np.asfortranarray(np.concatenate([ONE, ONE / 2])),
                                   ONE.astype(">f4"), np.asfortranarray(ONE.astype(">f8"))],
                         ids=["float32", "float64", "fortran-order", "big-endian", "fortran-big-endian-float64"])
def test_every_float_npy_layout_gets_the_predictors_answer(hostile, array):
    port, predictor, _ = hostile
    status, _, body = exchange(port, post(npy(array), NPY, extra=b"Accept: application/x-npy\r\n"))
    assert status == 200, body[:300]
    assert np.array_equal(np.load(io.BytesIO(body)), predictor.predict(np.ascontiguousarray(array, np.float32)))


def test_valid_chunked_body_gets_the_predictors_answer(hostile):
    port, predictor, _ = hostile
    x = np.random.default_rng(5).random((3,) + SHAPE, dtype=np.float32)
    status, _, body = exchange(port, chunked(frame(npy(x), [1, 7, 100, 3000]), NPY))
    assert status == 200 and np.array_equal(np.asarray(json.loads(body)["predictions"], np.float32),
                                            predictor.predict(x))


# --- the fuzzer -----------------------------------------------------------------------------------------------------
# Each example is one request on a new connection. Where the HTTP framing is valid, the oracle is the in-process
# parser and Predictor on the same body: the server must answer exactly what they give (their 4xx and its reason's
# status, or 200 with the Predictor's answer). Where the framing is broken on purpose, any 4xx with a JSON error.

FUZZ_EXAMPLES = int(os.environ.get("DROPCORE_FUZZ_EXAMPLES", "60"))

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                         st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                  st.dictionaries(st.text(max_size=6), inner,
                                                                                  max_size=3)), max_leaves=30)
finite_or_not = st.one_of(st.floats(-10, 10), st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e39]))


@st.composite
def json_documents(draw):
    """A JSON body (bytes): random documents, or instances of the model's shape with random extras."""
    kind = draw(st.sampled_from(["any", "instances", "instances+fields"]))
    if kind == "any":
        doc = draw(json_values)
    else:
        n = draw(st.integers(0, 3))
        x = np.array(draw(st.lists(finite_or_not, min_size=n * 100, max_size=n * 100)) or [], np.float64)
        if draw(st.booleans()):
            x = np.full(n * 100, 0.5)
        doc = {"instances": x.reshape((n,) + SHAPE).tolist()}
        if kind == "instances+fields":
            doc.update(draw(st.dictionaries(st.sampled_from(["mc_samples", "seed", "x"]),
                                            st.one_of(st.integers(-2, 25), json_scalars), max_size=3)))
    text = json.dumps(doc, separators=draw(st.sampled_from([(",", ":"), (", ", ": ")]))).encode()
    if draw(st.integers(0, 3)) == 0:  # byte edits: deletions, insertions, replacements
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.binary(max_size=3)) + text[at + draw(st.integers(0, 3)):]
    return text


NPY_DTYPES = ["<f4", "<f8", ">f4", "<i4", "<i8", "|u1", "|b1", "<f2", "<c8", "<U3", "|O", [("a", "<f4")]]


@st.composite
def npy_bodies(draw):
    """A .npy body (bytes): random dtypes, shapes and orders, headers that lie about the size, cut or edited."""
    dtype = np.dtype(draw(st.sampled_from(NPY_DTYPES)))
    shape = draw(st.one_of(st.just(SHAPE), st.lists(st.integers(0, 4), max_size=4).map(tuple)))
    shape = (draw(st.integers(0, 3)),) + shape if draw(st.booleans()) else shape
    count = int(np.prod(shape))
    if dtype.kind == "f" and draw(st.booleans()):
        values = np.array(draw(st.lists(finite_or_not, min_size=count, max_size=count)), np.float64)
    else:
        values = np.arange(count) % 3
    with np.errstate(invalid="ignore", over="ignore"):  # nan or inf cast to an integer dtype: any value will do
        array = values.reshape(shape).astype(dtype)
    if draw(st.booleans()):
        array = np.asfortranarray(array)
    body = npy(array)
    edit = draw(st.sampled_from(["none", "none", "lying-header", "cut", "extend", "bytes"]))
    if edit == "lying-header":
        claimed = draw(st.lists(st.integers(0, 10**9), min_size=1, max_size=5).map(tuple))
        body = npy_header(claimed, dtype.descr if dtype.names else dtype.str) + body[len(npy_header(shape)):]
    elif edit == "cut":
        body = body[:draw(st.integers(0, len(body)))]
    elif edit == "extend":
        body += draw(st.binary(min_size=1, max_size=8))
    elif edit == "bytes":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=4)) + body[at + draw(st.integers(0, 4)):]
    return body


NON_HEX = st.text(st.characters(codec="latin-1", exclude_characters="0123456789abcdefABCDEF\r\n;"), min_size=1,
                  max_size=6)


@st.composite
def requests(draw):
    """``(request bytes, send EOF after it, oracle)``; the oracle is ``("parse", content type, body)`` for valid
    framing or ``("refuse", None, None)`` for framing broken on purpose."""
    content_type = draw(st.sampled_from(["application/json", NPY]))
    body = draw(json_documents() if content_type == "application/json" else npy_bodies())
    framing = draw(st.sampled_from(["length", "length", "chunked", "bad-chunk", "short-length", "header", "big-header"]))
    parse = ("parse", content_type, body)
    if framing == "chunked":
        sizes = draw(st.lists(st.integers(1, 500), max_size=5))
        return chunked(frame(body, sizes), content_type), False, parse
    if framing == "bad-chunk":
        junk = draw(NON_HEX).encode("latin-1")
        return chunked(junk + b"\r\n" + body + b"\r\n0\r\n\r\n", content_type), True, ("refuse", None, None)
    if framing == "short-length":  # declares more than it sends, then EOF
        return post(body, content_type, length=len(body) + draw(st.integers(1, 100))), True, ("refuse", None, None)
    if framing == "header":  # an extra header of random bytes: gunicorn refuses some, the rest change nothing
        name = b"X-" + draw(st.binary(max_size=8)).replace(b"\r", b"").replace(b"\n", b"")
        value = draw(st.binary(max_size=20)).replace(b"\r", b"").replace(b"\n", b"")
        return post(body, content_type, extra=name + b": " + value + b"\r\n"), False, ("parse-or-refuse", content_type,
                                                                                        body)
    if framing == "big-header":
        value = b"v" * draw(st.integers(4000, 12000))
        return post(body, content_type, extra=b"X-Big: " + value + b"\r\n"), False, ("parse-or-refuse", content_type,
                                                                                   body)
    return post(body, content_type), False, parse


def expected(content_type, body, predictor):
    """``(status, answer or None)`` the in-process parser and Predictor give for ``body``."""
    try:
        if content_type == NPY:
            x, mc, seed = payloads.parse_npy(body, {}, SHAPE, LIMITS)
        else:
            x, mc, seed = payloads.parse_json(body, SHAPE, LIMITS)
    except payloads.BadRequest as exc:
        return exc.status, None
    if mc is not None and seed is None:
        return 200, None  # a random seed: the answer is only checked for its shape
    result = predictor.predict(x, mc_samples=mc, seed=seed)
    return 200, ({"mean": result[0], "std": result[1]} if mc else {"predictions": result})


@settings(max_examples=FUZZ_EXAMPLES, deadline=timedelta(seconds=ANSWER_S + 5), database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(request=requests())
def test_fuzzed_requests_get_4xx_json_or_the_right_answer(hostile, request):
    port, predictor, _ = hostile
    data, half_close, (oracle, content_type, body) = request
    status, headers, answer = exchange(port, data, half_close)
    assert status < 500, (status, answer[:300])
    if status != 200:
        assert 400 <= status < 500 and headers.get("content-type") == "application/json", (status, headers)
        assert json.loads(answer)["error"], answer
    if oracle == "refuse" or (oracle == "parse-or-refuse" and status != 200 and status != expected(
            content_type, body, predictor)[0]):
        assert status != 200, answer[:300]
        return
    want_status, want = expected(content_type, body, predictor)
    assert status == want_status, (status, answer[:300])
    if status == 200:
        got = json.loads(answer)
        if want is None:
            assert len(got["mean"]) == len(got["std"]) > 0
        else:
            assert got.keys() == want.keys()
            for key, value in want.items():
                assert np.array_equal(np.asarray(got[key], np.float32), value), key


def test_the_worker_survived_the_fuzzer(hostile):
    assert_still_serves(*hostile)
