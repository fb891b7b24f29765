"""Serve a saved dropcore model over HTTP with Flask (optional extra: ``pip install dropcore[serve]``).

    python examples/serve_flask.py MODEL_PATH --port 8000

``POST /predict`` with JSON ``{"instances": [...]}`` (each instance shaped like one model input), optionally
``"mc_samples"`` and ``"seed"`` for Monte-Carlo dropout, returns ``{"predictions": [...]}`` (with MC dropout,
``{"mean": [...], "std": [...]}``). ``GET /health`` returns the model's name, the kernels in use and whether Numba
was ever imported.
One :class:`dropcore.Predictor` serves every request thread; it holds no per-request state.
"""
import argparse
import sys

import numpy as np

import dropcore


def create_app(model_path):
    """The Flask app serving the model file ``model_path``."""
    try:
        from flask import Flask, jsonify, request
    except ImportError:
        sys.exit("serve_flask needs Flask: pip install 'dropcore[serve]' (or pip install flask)")
    predictor = dropcore.Predictor(model_path)
    app = Flask(__name__)

    @app.get("/health")
    def health():
        return jsonify(status="ok", model=predictor.name, kernels=predictor.kernels,
                       input_shape=list(predictor.input_shape[1:]), numba_imported="numba" in sys.modules)

    @app.post("/predict")
    def predict():
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or "instances" not in body:
            return jsonify(error='expected a JSON object with "instances": a list of inputs'), 400
        try:
            x = np.asarray(body["instances"], dtype=np.float32)
            mc = body.get("mc_samples")
            if mc is None:
                return jsonify(predictions=predictor.predict(x).tolist())
            mean, std = predictor.predict(x, mc_samples=mc, seed=body.get("seed"))
            return jsonify(mean=mean.tolist(), std=std.tolist())
        except (ValueError, TypeError) as exc:  # bad shapes or arguments: the client's fault, with the reason
            return jsonify(error=str(exc)), 400

    return app


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_path", help="a model file written by dropcore.save_model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    create_app(args.model_path).run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
