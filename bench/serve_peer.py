"""The endpoints ``python -m bench serve`` puts beside ``dropcore serve``, each under gunicorn with the same shape.

- ``flask-ort``: the endpoint a user would write instead of ``dropcore serve``: Flask, one ONNX Runtime session
  on the model exported with ``dropcore.onnx.export``, ``np.load`` / ``request.get_json`` in, ``np.save`` /
  ``jsonify`` out. Its session gets the same kernel threads per prediction as ``dropcore serve`` gives one
  (:func:`dropcore.serving.server.thread_plan`), so that neither oversubscribes the cores the other does not.
- ``bare``: a Flask endpoint that reads the body and answers a constant: what the framework and server alone cost
  per request (the floor of any Flask app on this server).
"""
import io
import json

import numpy as np

CONSTANT = json.dumps({"predictions": [[0.1] * 10]}, separators=(",", ":")).encode()


def flask_ort_app(onnx_path, intra_op_threads):
    """The Flask + ONNX Runtime app: ``POST /predict`` (JSON ``{"instances": ...}`` or ``.npy``), ``GET /health``."""
    import onnxruntime as ort
    from flask import Flask, Response, jsonify, request

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    app = Flask("flask_ort")

    @app.get("/health")
    def health():
        return jsonify(status="ok")

    @app.post("/predict")
    def predict():
        if request.content_type == "application/x-npy":
            x = np.load(io.BytesIO(request.get_data()), allow_pickle=False).astype(np.float32, copy=False)
        else:
            x = np.asarray(request.get_json()["instances"], dtype=np.float32)
        y = session.run(None, {"input": x})[0]
        if "application/x-npy" in request.headers.get("Accept", ""):
            buffer = io.BytesIO()
            np.save(buffer, y)
            return Response(buffer.getvalue(), content_type="application/x-npy")
        return jsonify(predictions=y.tolist())

    return app


def bare_app():
    """The Flask app that reads the body and answers :data:`CONSTANT`."""
    from flask import Flask, Response, request

    app = Flask("bare")

    @app.get("/health")
    def health():
        return Response(b'{"status":"ok"}', content_type="application/json")

    @app.post("/predict")
    def predict():
        request.get_data()
        return Response(CONSTANT, content_type="application/json")

    return app


def run(kind, port, workers, threads, onnx_path=None, intra_op_threads=1):
    """Serve ``kind`` ("flask-ort" or "bare") under gunicorn gthread, ``workers`` x ``threads``, like
    ``dropcore serve`` (app built in each worker after the fork)."""
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self):
            for key, value in {"bind": f"127.0.0.1:{port}", "workers": workers, "threads": threads,
                               "worker_class": "gthread", "loglevel": "warning", "accesslog": None,
                               "keepalive": 5, "control_socket_disable": True}.items():
                self.cfg.set(key, value)

        def load(self):
            return flask_ort_app(onnx_path, intra_op_threads) if kind == "flask-ort" else bare_app()

    Server().run()
