"""``dropcore serve --server asgi``: the same WSGI app (every route, limit, error and metric of :func:`create_app`)
behind an asyncio front, so that slow clients cost a connection, never a request thread.

Why: gunicorn's threaded worker hands a connection to a request thread once its first bytes arrive, and that
thread reads the headers and body to the end; 32 clients sending a header line a second held all of a worker's
threads, and valid requests waited 9.5 s (p99). Under gunicorn's asyncio worker (``gunicorn.workers.gasgi``) the
event loop parses every connection's request line, headers and body as the bytes come; :class:`AsgiFront` (this
module) receives a request's whole body in the event loop too, within ``max_body_bytes`` and ``body_timeout_s``
for each next piece, and only then hands the complete request to one of ``threads`` request threads, which run the
WSGI app on it (parsing, predicting, encoding: the Cython kernels release the GIL). A slow client holds an idle
coroutine and a socket until it finishes or gives up.

This is not an HTTP server: gunicorn's ASGI worker is. This adapts its ASGI calls to the WSGI app, as a2wsgi does.
"""
import asyncio
import io
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from .bad_request import BadRequest
from .predict_route import ARRIVED

_log = logging.getLogger("dropcore.serving")
_PLAIN_HEADERS = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}


class AsgiFront:
    """The ASGI app running the WSGI app ``wsgi_app`` (a Flask app from :func:`create_app`) on ``threads`` request
    threads, each request's body received whole first within ``limits`` (a :class:`Limits`).

    ``body_budget``: the bytes of request bodies the front holds at once, received or queued or running (default
    ``(threads + 1) * max_body_bytes``). Under a threaded server the threads bounded that; here any number of
    connections may send bodies at once, so a request whose next piece would pass the budget is answered 503 and
    its bytes dropped: many large bodies at once cannot exhaust the worker's memory.
    """

    def __init__(self, wsgi_app, threads, limits, body_budget=None):
        self.wsgi_app, self.limits = wsgi_app, limits
        self.extensions = getattr(wsgi_app, "extensions", {})  # the predictor, for the server's exit hook
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="dropcore-request")
        self.body_budget = (threads + 1) * limits.max_body_bytes if body_budget is None else body_budget
        self.held = 0  # bytes of bodies held now (the event loop's thread alone changes it)

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # anything else (websocket) is not served: returning without accepting makes the server refuse it

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":  # after the connections drained: no request is running
                self.pool.shutdown(wait=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope, receive, send):
        held = [0]  # this request's share of self.held
        try:
            try:
                body = await self._body(scope, receive, held)
            except BadRequest as exc:
                return await _answer(send, exc.status, [(b"content-type", b"application/json"),
                                                        (b"connection", b"close")],
                                     json.dumps({"error": str(exc)}, separators=(",", ":")).encode())
            environ = _environ(scope, body)
            environ[ARRIVED] = time.monotonic()  # whole now; it may wait for a request thread, within its deadline
            status, headers, chunks = await asyncio.get_running_loop().run_in_executor(self.pool, self._call,
                                                                                       environ)
            await _answer(send, status, headers, chunks)
        finally:
            self.held -= held[0]

    async def _body(self, scope, receive, held):
        """The whole request body, read in the event loop: 413 past ``max_body_bytes`` (from Content-Length before
        reading, else as the chunks come), 408 when nothing arrives for ``body_timeout_s``, 503 past the front's
        ``body_budget``. ``held[0]`` counts the bytes this request holds of it."""
        limit, timeout = self.limits.max_body_bytes, self.limits.body_timeout_s
        declared = None  # (gunicorn has refused a Content-Length that is not one number)
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                declared = int(value)
                if declared > limit:
                    raise BadRequest(f"the request body has {declared} bytes; at most {limit} (max_body_bytes)", 413)
        parts, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), timeout)
            except asyncio.TimeoutError:
                raise BadRequest(f"the request body stopped arriving: nothing for {timeout:g} s (body_timeout_s)",
                                 408) from None
            if message["type"] == "http.disconnect":  # the client shut its side (it may still read an answer;
                # gunicorn drops the bytes it had not handed over yet, so no count is given)
                if declared is not None:
                    raise BadRequest(f"the request body ended before its Content-Length of {declared} bytes: the "
                                     f"client closed its side of the connection")
                raise BadRequest("the request body could not be read: the client closed its side of the connection "
                                 "before the chunked body's last chunk")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BadRequest(f"the request body has more than {limit} bytes (max_body_bytes)", 413)
            if self.held + len(chunk) > self.body_budget:
                raise BadRequest(f"the server is holding {self.held} bytes of request bodies, its budget of "
                                 f"{self.body_budget}: retry later", 503)
            self.held += len(chunk)
            held[0] += len(chunk)
            parts.append(chunk)
            if not message.get("more_body", False):
                return parts[0] if len(parts) == 1 else b"".join(parts)

    def _call(self, environ):
        """One WSGI call on a request thread: ``(status, headers, body)``."""
        answer = []

        def start_response(status, headers, exc_info=None):
            answer[:] = [status, headers]

        try:
            result = self.wsgi_app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        except Exception:  # the app answers its own errors: only a bug gets here
            _log.exception("dropcore: %s %s failed", environ["REQUEST_METHOD"], environ["PATH_INFO"])
            return 500, [(b"content-type", b"application/json")], b'{"error":"internal error"}'
        status, headers = answer
        return int(status[:3]), [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers], body


async def _answer(send, status, headers, body):
    if not any(name == b"content-length" for name, _ in headers):  # else the server would send it chunked
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _environ(scope, body):
    """The WSGI environ of an ASGI HTTP ``scope`` whose body, already received, is ``body``."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ = {
        "REQUEST_METHOD": scope["method"], "SCRIPT_NAME": scope.get("root_path", "").encode().decode("latin-1"),
        "PATH_INFO": scope["path"].encode().decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]), "SERVER_PORT": str(server[1]), "REMOTE_ADDR": str(client[0]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}", "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"), "wsgi.input": io.BytesIO(body),
        "wsgi.errors": _ERRORS, "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    for name, value in scope["headers"]:
        key = _PLAIN_HEADERS.get(name) or "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        value = value.decode("latin-1")
        environ[key] = environ[key] + "," + value if key in environ and key.startswith("HTTP_") else value
    environ["CONTENT_LENGTH"] = str(len(body))  # the body as received (a chunked one is decoded by now)
    return environ


class _Errors:
    """``wsgi.errors``: what an app writes there goes to the log."""

    def write(self, text):
        _log.error("%s", text.rstrip())

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass


_ERRORS = _Errors()
