"""Serve a saved dropcore model with Flask's development server (optional extra: ``pip install dropcore[serve]``).

    python examples/serve_flask.py MODEL_PATH --port 8000

The app is :func:`dropcore.serving.create_app` (``POST /predict`` with JSON or ``.npy``, ``GET /health``,
``/metadata``, ``/metrics``, request limits); this script only runs it in one process for trying it out. For
production use ``dropcore serve MODEL_PATH`` (gunicorn workers, SIGTERM drain, optional dynamic batching), or
mount ``create_app(model_path)`` in your own WSGI server, one app per worker process (see docs/serving.md).
"""
import argparse

from dropcore.serving import create_app


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_path", help="a model file written by dropcore.save_model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--batching", action="store_true", help="coalesce concurrent requests (identical answers)")
    args = parser.parse_args(argv)
    create_app(args.model_path, batching=args.batching).run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
