"""The gunicorn worker classes of ``dropcore serve``: gunicorn's threaded worker (``gthread``) and its asyncio
worker (``--server asgi``), whose own error answers are JSON like the app's.

gunicorn answers what never reaches the app itself (a malformed request line, headers over its limits, a chunked
body it cannot decode after the app answered) with an HTML page from ``gunicorn.util.write_error``, the one function
its workers' ``handle_error`` writes through: the threaded worker replaces it, in its own process, with one that writes
``{"error": reason}``. Status codes and the choice of what is a client error stay gunicorn's.
"""
import json
from http import HTTPStatus

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

try:  # gunicorn >= 24: the asyncio worker (dropcore serve --server asgi)
    from gunicorn.asgi import protocol as _asgi_protocol
    from gunicorn.workers.gasgi import ASGIWorker
except ImportError:
    ASGIWorker = None


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn's ``util.write_error``, answering ``{"error": "<reason>: <message>"}`` instead of an HTML page."""
    body = json.dumps({"error": f"{reason}: {mesg}" if mesg else reason}, separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


class JsonErrorThreadWorker(ThreadWorker):
    """``gthread`` with JSON error answers (see the module's docstring)."""

    def init_process(self):
        util.write_error = write_json_error  # in this worker process only, before it serves anything
        super().init_process()


def _json_error_response(protocol, status, message, extra_headers=()):
    """gunicorn's ``ASGIProtocol._send_error_response`` (malformed request line or headers, over its limits),
    answering ``{"error": "<reason>: <message>"}`` instead of plain text."""
    reason = _asgi_protocol._REASON_PHRASES.get(status) or _phrase(status)
    body = json.dumps({"error": f"{reason}: {message}" if message else reason}, separators=(",", ":")).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in extra_headers)
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n").encode("latin-1")
    protocol._safe_write(head + body)


def _eof_received(protocol):
    """A client that shuts its side of the connection (EOF) after sending a request still reads the answer, as
    gthread gives it: keep the transport open while a request is under way (gunicorn's asyncio protocol closes it),
    and if the body was not all there, tell the app it ended (``http.disconnect``: :class:`AsgiFront` answers 400)."""
    receiver = getattr(protocol, "_body_receiver", None)
    if receiver is None:  # between requests: the client is done, close
        return None
    if not getattr(receiver, "_complete", True):
        receiver.signal_disconnect()
    return True  # asyncio: keep the transport open for writing


def _phrase(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


if ASGIWorker is not None:
    class JsonErrorAsgiWorker(ASGIWorker):
        """gunicorn's asyncio worker with JSON error answers, answering clients that shut their side after a request;
        the app is a :class:`dropcore.serving.asgi.AsgiFront`."""

        def init_process(self):
            protocol = _asgi_protocol.ASGIProtocol  # patched in this worker process only, before it serves
            protocol._send_error_response = _json_error_response
            protocol.eof_received = _eof_received
            super().init_process()
