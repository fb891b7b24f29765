"""``/predict`` as a plain WSGI handler in front of the Flask app (which serves every other route).

Why not a Flask view: with a small model, Flask's per-request machinery (request context, URL adapter, hooks,
Response object) cost more than parsing the body and predicting together; measured in process (2 shared cores,
median of repeats), a single-sample ``.npy`` request took ~230 us through a Flask view against ~90 us for a bare
Flask endpoint returning a constant. The handler below reads the body, checks it, predicts and answers with the
same limits, errors and metrics, without that machinery.
"""
import logging
import time
from urllib.parse import parse_qsl

from ..errors import DeadlineExceeded, WorkspaceLimitError
from . import payloads
from .body import read_body

_REASONS = {200: "200 OK", 400: "400 BAD REQUEST", 405: "405 METHOD NOT ALLOWED", 408: "408 REQUEST TIMEOUT",
            413: "413 REQUEST ENTITY TOO LARGE", 500: "500 INTERNAL SERVER ERROR", 503: "503 SERVICE UNAVAILABLE"}
_KINDS = {408: "body_timeout", 413: "too_large"}  # the metrics' error kind of a BadRequest's status (else bad_request)
_log = logging.getLogger("dropcore.serving")
#: The environ key of a request's ``time.monotonic()`` once whole, set by a front that queues whole requests for
#: the request threads (:class:`dropcore.serving.asgi.AsgiFront`): the time spent queued counts toward the deadline.
ARRIVED = "dropcore.arrived"


class PredictRoute:
    """WSGI middleware: ``POST /predict`` here, anything else to ``app`` (the Flask app's ``wsgi_app``)."""

    def __init__(self, app, predictor, limits, metrics, input_shape):
        self.app, self.predictor, self.limits, self.metrics = app, predictor, limits, metrics
        self.input_shape = input_shape

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != "/predict":
            return self.app(environ, start_response)
        started = environ.get(ARRIVED) or time.monotonic()  # the deadline and latency count from arrival
        method = environ.get("REQUEST_METHOD", "")
        headers = []
        if method != "POST":
            status, ctype, body, kind = 405, "application/json", _error(f"/predict takes POST, received {method}"), \
                "http"
            headers.append(("Allow", "POST"))
        else:
            try:
                status, ctype, body, kind = self.predict(environ, started)
            except Exception:  # a bug, not the client's fault: logged with its traceback, answered 500
                _log.exception("dropcore: POST /predict failed")
                status, ctype, body, kind = 500, "application/json", _error("internal error"), "internal"
        headers += [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        start_response(_REASONS[status], headers)
        self.metrics.observe("/predict", method, status, time.monotonic() - started, kind)
        return [body]

    def predict(self, environ, started):
        """``(status, content type, body, error kind)`` for one POST /predict."""
        limits = self.limits
        deadline = started + limits.timeout_ms / 1000.0
        query_string = environ.get("QUERY_STRING")
        query = dict(parse_qsl(query_string, keep_blank_values=True)) if query_string else {}
        try:
            body = read_body(environ, limits)
            if environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower() == payloads.NPY:
                x, mc, seed = payloads.parse_npy(body, query, self.input_shape, limits)
            else:
                if query:
                    raise payloads.BadRequest(f"query parameters {sorted(query)} apply to .npy bodies; with JSON "
                                              f"put them in the body")
                x, mc, seed = payloads.parse_json(body, self.input_shape, limits)
            result = self.predictor.predict(x, mc_samples=mc, seed=seed, deadline=deadline)
        except CLIENT_ERRORS as exc:
            status, message, kind = client_error(exc, limits)
            return status, "application/json", _error(message), kind
        self.metrics.instances.inc(len(x))
        if payloads.NPY in environ.get("HTTP_ACCEPT", ""):
            return 200, payloads.NPY, payloads.result_npy(result), None
        return 200, "application/json", payloads.json_bytes(result), None


#: What reading, checking or predicting a request raises when the request is at fault (anything else is a bug)
CLIENT_ERRORS = (payloads.BadRequest, DeadlineExceeded, WorkspaceLimitError, ValueError, TypeError)


def client_error(exc, limits):
    """``(status, message, metrics error kind)`` for one of :data:`CLIENT_ERRORS` (shared by every predicting
    route, so a request gets the same status and reason whichever protocol it speaks)."""
    if isinstance(exc, payloads.BadRequest):
        return exc.status, str(exc), _KINDS.get(exc.status, "bad_request")
    if isinstance(exc, DeadlineExceeded):
        return 503, (f"the request's compute deadline of {limits.timeout_ms:g} ms passed: {exc}; send fewer "
                     f"instances or mc_samples"), "deadline"
    if isinstance(exc, WorkspaceLimitError):
        return 413, str(exc), "workspace"
    return 400, str(exc), "bad_request"  # the predictor's own checks: the request's fault, with the reason


def _error(message):
    return payloads.json_dumps({"error": message})

