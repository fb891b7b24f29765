"""The Open Inference Protocol (KServe v2, as Triton, KServe and Seldon speak it) beside dropcore's own routes.

A plain WSGI handler in front of the Flask app, like ``/predict`` and for the same reason (Flask's per-request
machinery costs more than predicting a small model, see :mod:`.predict_route`): every path under ``/v2`` is
answered here, with the same limits, error statuses and metrics as ``/predict``; anything else goes on to the app.

Routes: ``GET /v2`` (server metadata), ``GET /v2/health/live``, ``GET /v2/health/ready``, and for the served
model ``GET /v2/models/{name}`` (metadata), ``GET /v2/models/{name}/ready`` and ``POST /v2/models/{name}/infer``,
each also under ``/v2/models/{name}/versions/{version}``. The server serves one model at one version,
:data:`MODEL_VERSION`. Errors are ``{"error": reason}``: 400 for a bad request, 404 for another model or version,
405 for another method, 408/413 as for ``/predict``, 503 past the compute deadline.
"""
import logging
import time
from http import HTTPStatus

from ..version import __version__
from . import v2_payloads
from .body import read_body
from .payloads import BadRequest, json_dumps
from .predict_route import ARRIVED, CLIENT_ERRORS, client_error

#: The one version of the one model a server serves (dropcore models carry no version of their own)
MODEL_VERSION = "1"
#: The protocol's optional extensions this server implements (as ``GET /v2`` lists them; Triton's names)
EXTENSIONS = ("binary_tensor_data", "parameters")
_JSON = "application/json"
_log = logging.getLogger("dropcore.serving")


def _status_line(status):
    return f"{status} {HTTPStatus(status).phrase.upper()}"


class V2Route:
    """WSGI middleware: the ``/v2`` paths here, anything else to ``app`` (the next WSGI app)."""

    def __init__(self, app, predictor, limits, metrics):
        self.app, self.predictor, self.limits, self.metrics = app, predictor, limits, metrics
        self.name = predictor.name
        self.input_name, self.input_shape = predictor.input_name, tuple(predictor.input_shape[1:])

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path != "/v2" and not path.startswith("/v2/"):
            return self.app(environ, start_response)
        started = environ.get(ARRIVED) or time.monotonic()  # the deadline and latency count from arrival
        method = environ.get("REQUEST_METHOD", "")
        headers = []
        route, name, version, action = _match(path)
        if route is None:
            status, body, kind = 404, _error(f"no Open Inference Protocol route {path!r}; expected /v2, "
                                             f"/v2/health/live, /v2/health/ready or /v2/models/{self.name}"
                                             f"[/ready|/infer]"), "http"
            route = "unmatched"
        elif name is not None and name != self.name:
            status, body, kind = 404, _error(f"model {name!r} is not served here; this server serves "
                                             f"{self.name!r}"), "http"
        elif version is not None and version != MODEL_VERSION:
            status, body, kind = 404, _error(f"model {name!r} has no version {version!r}; its versions are "
                                             f"[{MODEL_VERSION!r}]"), "http"
        elif method != ("POST" if action == "infer" else "GET"):
            allowed = "POST" if action == "infer" else "GET"
            status, body, kind = 405, _error(f"{route} takes {allowed}, received {method}"), "http"
            headers.append(("Allow", allowed))
        elif action == "infer":
            try:
                status, body, kind, extra = self.infer(environ, started)
            except Exception:  # a bug, not the client's fault: logged with its traceback, answered 500
                _log.exception("dropcore: POST %s failed", path)
                status, body, kind, extra = 500, _error("internal error"), "internal", []
            headers += extra
        else:
            status, body, kind = 200, json_dumps(self.describe(action)), None
        if not any(h == "Content-Type" for h, _ in headers):
            headers.append(("Content-Type", _JSON))
        headers.append(("Content-Length", str(len(body))))
        start_response(_status_line(status), headers)
        self.metrics.observe(route, method, status, time.monotonic() - started, kind)
        return [body]

    def describe(self, action):
        """The JSON document of a GET route: ``action`` is what :func:`_match` found."""
        if action == "server":
            return {"name": "dropcore", "version": __version__, "extensions": list(EXTENSIONS)}
        if action == "live":
            return {"live": True}
        if action in ("ready", "model_ready"):  # the predictor is built before the app serves anything
            return {"name": self.name, "ready": True} if action == "model_ready" else {"ready": True}
        output = [-1, *self.predictor.output_shape[1:]]
        return {"name": self.name, "versions": [MODEL_VERSION], "platform": "dropcore",
                "inputs": [{"name": self.input_name, "datatype": v2_payloads.FP32, "shape": [-1, *self.input_shape]}],
                # mean and std come with parameters.mc_samples (Monte-Carlo dropout), predictions without it
                "outputs": [{"name": n, "datatype": v2_payloads.FP32, "shape": output} for n in v2_payloads.OUTPUTS]}

    def infer(self, environ, started):
        """``(status, body, error kind, extra headers)`` for one POST .../infer."""
        limits = self.limits
        try:
            body = read_body(environ, limits)
            encoding = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
            if encoding not in ("", "identity"):
                raise BadRequest(f"Content-Encoding {encoding!r} is not supported; expected an uncompressed body",
                                 415)
            request = v2_payloads.parse_infer(body, environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH"),
                                              self.input_name, self.input_shape, limits)
            result = self.predictor.predict(request.x, mc_samples=request.mc_samples, seed=request.seed,
                                            deadline=started + limits.timeout_ms / 1000.0)
        except CLIENT_ERRORS as exc:
            status, message, kind = client_error(exc, limits)
            return status, _error(message), kind, []
        self.metrics.instances.inc(len(request.x))
        answer, header_length = v2_payloads.infer_answer(request, result, self.name, MODEL_VERSION)
        if header_length is None:
            return 200, answer, None, []
        return 200, answer, None, [("Content-Type", "application/octet-stream"),
                                   (v2_payloads.HEADER_LENGTH, str(header_length))]


def _match(path):
    """``(route for the metrics, model name, version, action)`` of a ``/v2`` path, or Nones when it is none of the
    protocol's. The route names the model and version as placeholders, so the metrics' labels stay few."""
    fixed = {"/v2": "server", "/v2/health/live": "live", "/v2/health/ready": "ready"}
    if path in fixed:
        return path, None, None, fixed[path]
    parts = path.split("/")[3:] if path.startswith("/v2/models/") else []
    if not parts or not parts[0]:
        return None, None, None, None
    name, rest, version, route = parts[0], parts[1:], None, "/v2/models/<name>"
    if len(rest) >= 2 and rest[0] == "versions" and rest[1]:
        version, rest, route = rest[1], rest[2:], route + "/versions/<version>"
    if rest == []:
        return route, name, version, "metadata"
    if rest in (["ready"], ["infer"]):
        return f"{route}/{rest[0]}", name, version, "model_ready" if rest[0] == "ready" else "infer"
    return None, None, None, None


def _error(message):
    return json_dumps({"error": message})
