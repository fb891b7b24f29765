"""Serving a dropcore model over HTTP: :func:`create_app` (a Flask app, for any WSGI server) and ``dropcore
serve`` (that app under gunicorn, see :mod:`dropcore.serving.server`). Needs the ``serve`` extra:
``pip install 'dropcore[serve]'``. See docs/serving.md."""
from .app import create_app
from .limits import Limits

__all__ = ["Limits", "create_app"]
