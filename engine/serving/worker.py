"""The gunicorn worker class of ``dropcore serve``: gunicorn's threaded worker (``gthread``) whose own error answers
are JSON like the app's.

gunicorn answers what never reaches the app itself (a malformed request line, headers over its limits, a chunked
body it cannot decode after the app answered) with an HTML page from ``gunicorn.util.write_error``, the one function
its workers' ``handle_error`` writes through: this worker replaces it, in its own process, with one that writes
``{"error": reason}``. Status codes and the choice of what is a client error stay gunicorn's.
"""
import json

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker


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
