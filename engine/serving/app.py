"""``create_app``: the Flask app serving one model (``/predict``, ``/health``, ``/metadata``, ``/metrics``, and the
Open Inference Protocol's ``/v2`` routes)."""
import os
import sys
import time

from . import payloads
from .limits import Limits
from .metrics import Metrics
from .predict_route import PredictRoute
from .v2_route import V2Route


def _predictor(model, batching, max_batch, max_delay_ms, threads, max_callers, exact):
    from ..batching import BatchingPredictor
    from ..predictor import Predictor

    if isinstance(model, (Predictor, BatchingPredictor)):
        if batching or threads is not None:
            raise ValueError("create_app: `batching` and `threads` apply when the app builds its predictor; a "
                             f"{type(model).__name__} was given (configure it instead)")
        return model
    if batching:
        return BatchingPredictor(model, max_batch=max_batch, max_delay_ms=max_delay_ms, threads=threads,
                                 max_callers=max_callers, exact=exact)
    return Predictor(model, threads=threads)


def create_app(model, *, batching=False, max_batch=64, max_delay_ms=2.0, threads=None, max_callers=None,
               exact=True, **limits):
    """The Flask app serving ``model``: a model file path, its bytes, a built Model, a Predictor or a
    BatchingPredictor (built in the calling process: under a forking server, call this in each worker).

    ``batching``: coalesce concurrent requests with :class:`dropcore.batching.BatchingPredictor` (``max_batch``
    rows, ``max_delay_ms``; ``max_callers``: the server's request threads, so a batch holding a request from each
    runs at once; ``exact=False``: batch even where the kernels are not batch-invariant, see BatchingPredictor).
    ``threads``: kernel threads per prediction (``Predictor(threads=)``).
    ``limits``: the :class:`~dropcore.serving.limits.Limits` fields (``max_body_bytes``, ``max_instances``,
    ``max_mc_samples``, ``timeout_ms``, ``body_timeout_s``).

    ``POST /predict`` takes JSON ``{"instances": [...], "mc_samples"?, "seed"?}`` or a ``.npy`` body
    (``Content-Type: application/x-npy``, MC parameters in the query string) and answers JSON, or ``.npy`` with
    ``Accept: application/x-npy``. Bad requests get 4xx with ``{"error": reason}``; a request past its deadline 503.
    The Open Inference Protocol (KServe v2: ``/v2/health/*``, ``/v2/models/<name>[/ready|/infer]``, binary tensor
    data, Monte-Carlo dropout as the request parameters ``mc_samples`` and ``seed``) is served beside these, see
    :mod:`dropcore.serving.v2_route`.
    """
    try:
        from flask import Flask, Response, g, request
        from werkzeug.exceptions import HTTPException
    except ImportError as exc:
        raise ImportError("dropcore serving needs Flask: pip install 'dropcore[serve]'") from exc
    limits = Limits(**limits)
    predictor = _predictor(model, batching, max_batch, max_delay_ms, threads, max_callers, exact)
    input_shape = tuple(predictor.input_shape[1:])
    metrics = Metrics()
    app = Flask("dropcore.serving")
    app.config["MAX_CONTENT_LENGTH"] = limits.max_body_bytes  # for any body a Flask view would read
    app.extensions["dropcore"] = {"predictor": predictor, "limits": limits, "metrics": metrics}

    def answer(status, body, content_type="application/json", kind=None):
        response = Response(body, status=status, content_type=content_type)
        response.dropcore_kind = kind
        return response

    def error(status, message, kind):
        return answer(status, payloads.json_dumps({"error": message}), kind=kind)

    @app.before_request
    def arrived():
        g.started = time.monotonic()

    @app.after_request
    def observed(response):
        rule = request.url_rule
        metrics.observe(rule.rule if rule is not None else "unmatched", request.method, response.status_code,
                        time.monotonic() - g.get("started", time.monotonic()), getattr(response, "dropcore_kind",
                                                                                        None))
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc):  # 404, 405, 413 (body too large) ... as JSON with the reason
        return error(exc.code, exc.description, "http")

    @app.errorhandler(Exception)
    def internal_error(exc):  # a bug, not the client's fault: logged with its traceback, answered 500
        app.logger.exception("dropcore: %s %s failed", request.method, request.path)
        return error(500, f"internal error: {type(exc).__name__}", "internal")

    @app.get("/health")
    def health():
        return answer(200, payloads.json_dumps({
            "status": "ok", "model": predictor.name, "kernels": predictor.kernels,
            "input_shape": list(input_shape), "numba_imported": "numba" in sys.modules, "pid": os.getpid()}))

    @app.get("/metadata")
    def metadata():
        from ..version import __version__

        return answer(200, payloads.json_dumps({
            "model": predictor.name, "input_shape": [None, *input_shape],
            "output_shape": [None, *predictor.output_shape[1:]], "kernels": predictor.kernels,
            "engine": predictor.engine, "dropcore_version": __version__, "threads": predictor.threads,
            "batching": ({"max_batch": predictor.max_batch, "max_delay_ms": predictor.max_delay * 1000,
                          "max_callers": predictor.max_callers, "runners": predictor.runners}
                         if hasattr(predictor, "max_batch") else None),
            "limits": limits.as_dict(), "content_types": ["application/json", payloads.NPY]}))

    @app.get("/metrics")
    def scrape():
        body, content_type = metrics.render()
        return answer(200, body, content_type)

    # POST /predict bypasses Flask's per-request machinery (see predict_route); the routes above stay Flask views
    app.wsgi_app = PredictRoute(app.wsgi_app, predictor, limits, metrics, input_shape)
    app.wsgi_app = V2Route(app.wsgi_app, predictor, limits, metrics)  # /v2/...: the same way, for the same reason
    return app

