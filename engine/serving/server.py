"""``dropcore serve``: the app of :func:`create_app` under gunicorn, run in-process (no separate command).

Why gunicorn: its master drains workers on SIGTERM (``graceful_timeout``) and restarts any that die, and several
worker processes overlap the Python parts of requests (parsing, JSON) that hold the GIL. Within a worker, requests
run on ``threads`` request threads side by side (the Cython kernels release the GIL). In front of them, by
default (``server="asgi"``), gunicorn's asyncio worker with :class:`dropcore.serving.asgi.AsgiFront`: the event loop
reads every request whole before a request thread runs it, so slow clients hold connections but no thread.
``server="gthread"``: gunicorn's threaded worker, in which a request thread reads its connection's request itself
(32 clients sending a header line a second starved it: valid requests waited 9.5 s at p99, against 11 ms with the
asyncio front; ``python -m bench serve`` measures both).

Each worker builds its own predictor after the fork (gunicorn loads the app per worker: no ``preload_app``), so
no OpenMP pool or kernel state ever crosses a fork; the master only reads and checks the model file once and hands
the workers its bytes. Each worker sizes its kernel threads so that all of them together fit the CPUs.
"""
import math
import os
import shutil
import tempfile

from ..kernels.cpus import available_cpus
from ..validation import check_float, check_int
from . import metrics
from .limits import Limits


def thread_plan(workers, threads, batching, cpus=None):
    """``(process_threads, predict_threads)`` for each worker: the worker's kernel thread cap (its share of the
    CPUs) and the threads of one prediction. Without batching, up to ``threads`` requests predict at once in each
    worker, so each gets ``cpus / (workers * threads)`` (at least 1): busy, the server runs about as many kernel
    threads as CPUs instead of ``threads`` times more. With batching one runner thread per worker predicts, with
    the worker's whole share."""
    cpus = available_cpus() if cpus is None else cpus
    share = max(1, cpus // workers)
    return share, share if batching else max(1, cpus // (workers * threads))


def _read_model(model_path):
    """The model file's bytes, checked to load (weights and graph only: no kernel runs before the fork)."""
    from ..io import load_model

    with open(model_path, "rb") as f:  # OSError when missing or unreadable: the CLI prints it
        data = f.read()
    load_model(data, compile=False)  # ModelFileError (a ValueError) for a file that is not a dropcore model
    return data


SERVERS = ("gthread", "asgi")  # gunicorn worker kinds: threads reading whole requests, or an asyncio front


def serve(model_path, host="127.0.0.1", port=8000, workers=None, threads=4, batching=False, max_batch=64,
          max_delay_ms=2.0, grace_s=30.0, predict_threads=None, log_level="info", exact=True, server="asgi",
          max_connections=1000, **limits):
    """Serve the model file ``model_path`` with gunicorn until SIGTERM/SIGINT, then drain: requests under way
    finish (within ``grace_s`` seconds) and the call returns gunicorn's exit status (0 after a clean drain).

    ``workers`` processes (default: the CPUs available) of ``threads`` request threads each; ``batching``,
    ``max_batch``, ``max_delay_ms``, ``exact`` and ``limits`` as for :func:`create_app`; ``predict_threads``
    overrides the kernel threads of one prediction (default: :func:`thread_plan`). ``server``: "gthread" (gunicorn's
    threaded worker) or "asgi" (its asyncio worker, the request threads behind it); ``max_connections``: open
    connections per worker (gunicorn's ``worker_connections``; past it, new ones wait in the listen backlog).
    """
    from gunicorn.app.base import BaseApplication

    workers = available_cpus() if workers is None else check_int(workers, "workers", 1, "serve")
    threads = check_int(threads, "threads", 1, "serve")
    port = check_int(port, "port", 0, "serve")
    grace_s = check_float(grace_s, "grace_s", 0.0, None, where="serve")
    max_connections = check_int(max_connections, "max_connections", 1, "serve")
    if server not in SERVERS:
        raise ValueError(f"serve: server must be one of {', '.join(SERVERS)}, received {server!r}")
    limits = Limits(**limits)  # checked here, in the master: a bad limit fails before any worker starts
    process_threads, per_predict = thread_plan(workers, threads, batching)
    if predict_threads is not None:
        per_predict = check_int(predict_threads, "predict_threads", 1, "serve")
    model = _read_model(model_path)
    app_kwargs = dict(batching=batching, max_batch=max_batch, max_delay_ms=max_delay_ms, threads=per_predict,
                      max_callers=threads if batching else None, exact=exact, **limits.as_dict())
    prom_dir = tempfile.mkdtemp(prefix="dropcore-metrics-")
    metrics.enable_multiprocess(prom_dir)

    def post_fork(server, worker):
        from ..kernels.threads import set_process_threads

        set_process_threads(process_threads)  # before the predictor exists: its kernels load under this cap

    def worker_exit(server, worker):
        app = getattr(worker, "wsgi", None) or getattr(worker, "asgi", None)  # none when the app failed to load
        predictor = getattr(app, "extensions", {}).get("dropcore", {}).get("predictor")
        if hasattr(predictor, "close"):  # a BatchingPredictor: runs what is queued, stops its thread
            predictor.close(timeout=grace_s)

    def child_exit(server, worker):
        metrics.worker_exited(worker.pid)

    class Server(BaseApplication):
        def load_config(self):
            options = {
                "bind": f"{host}:{port}", "workers": workers, "worker_connections": max_connections,
                # gthread, or the asyncio worker whose app runs requests on its own threads; error pages as JSON
                "threads": threads if server == "gthread" else 1,
                "worker_class": "dropcore.serving.worker." + ("JsonErrorThreadWorker" if server == "gthread"
                                                              else "JsonErrorAsgiWorker"),
                "graceful_timeout": math.ceil(grace_s),  # gunicorn takes whole seconds
                # the heartbeat timeout: gthread's main loop beats while request threads compute, so this only
                # catches a hung worker; requests themselves are bounded by the compute deadline
                "timeout": max(30, int(limits.timeout_ms / 1000) * 2 + 10),
                "keepalive": 5, "preload_app": False, "loglevel": log_level, "accesslog": None,
                "errorlog": "-", "proc_name": "dropcore-serve", "post_fork": post_fork,
                "worker_exit": worker_exit, "child_exit": child_exit,
                # gunicorn 27's control socket sits at one path per user: two servers on a host would contend
                "control_socket_disable": True,
            }
            if "control_socket_disable" not in self.cfg.settings:  # gunicorn before 27 has no control socket
                del options["control_socket_disable"]
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):  # in each worker, after the fork and post_fork
            from .app import create_app

            app = create_app(model, **app_kwargs)
            if server == "asgi":
                from .asgi import AsgiFront

                return AsgiFront(app, threads, limits)
            return app

    try:
        Server().run()  # gunicorn's arbiter ends with sys.exit(status)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        shutil.rmtree(prom_dir, ignore_errors=True)
        os.environ.pop(metrics.MULTIPROC_ENV, None)
    return 0
