"""The ``dropcore serve`` subcommand: :func:`add_commands` adds it to the CLI's subparsers."""
import argparse

from ..argtypes import float_in, int_at_least, positive_float, positive_int
from .limits import Limits

_DEFAULTS = Limits()


def add_commands(sub):
    """Add ``serve`` to argparse's subparsers object ``sub``."""
    p = sub.add_parser("serve", help="serve a saved model over HTTP (gunicorn + Flask; needs dropcore[serve])",
                       description="Serve a model file over HTTP: POST /predict (JSON or .npy), GET /health, "
                                   "/metadata, /metrics, and the Open Inference Protocol (KServe v2: /v2/health/*, "
                                   "/v2/models/NAME[/ready|/infer], binary tensors). SIGTERM drains requests under "
                                   "way, then exits.")
    p.add_argument("model", help="a model file written by dropcore.save_model")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: the CPUs "
                   "this process may use)")
    p.add_argument("--threads", type=positive_int, default=4, help="request threads per worker (default 4)")
    p.add_argument("--server", choices=["asgi", "gthread"], default="asgi", help="asgi (default): gunicorn's "
                   "asyncio worker reads requests whole in its event loop, then a request thread runs each (slow "
                   "clients hold no thread); gthread: gunicorn's threaded worker, a request thread reads each "
                   "connection")
    p.add_argument("--max-connections", type=positive_int, default=1000, help="open connections per worker "
                   "(default 1000)")
    p.add_argument("--predict-threads", type=positive_int, default=None, help="kernel threads of one prediction "
                   "(default: the CPUs shared out so that workers x threads do not oversubscribe them)")
    p.add_argument("--batching", action="store_true", help="coalesce concurrent requests into shared batches "
                   "(answers identical to unbatched ones)")
    p.add_argument("--inexact-batching", action="store_true", help="with --batching, batch even where the kernels "
                   "give a sample other bits in other batches (the generic target's BLAS; answers then differ "
                   "from unbatched ones in the last bits)")
    p.add_argument("--max-batch", type=positive_int, help="with --batching: rows per coalesced batch (default 64)")
    p.add_argument("--max-delay-ms", type=float_in(0.0, 60_000.0, high_open=False),
                   help="with --batching: how long a request waits for others to batch with (default 2)")
    p.add_argument("--max-body-bytes", type=positive_int, default=_DEFAULTS.max_body_bytes,
                   help=f"larger bodies get 413 (default {_DEFAULTS.max_body_bytes})")
    p.add_argument("--max-instances", type=positive_int, default=_DEFAULTS.max_instances,
                   help=f"more samples per request get 400 (default {_DEFAULTS.max_instances})")
    p.add_argument("--max-mc-samples", type=positive_int, default=_DEFAULTS.max_mc_samples,
                   help=f"a larger mc_samples gets 400 (default {_DEFAULTS.max_mc_samples})")
    p.add_argument("--timeout-ms", type=positive_float, default=_DEFAULTS.timeout_ms,
                   help=f"compute deadline per request; past it the answer is 503 (default {_DEFAULTS.timeout_ms:g})")
    p.add_argument("--body-timeout-s", type=positive_float, default=_DEFAULTS.body_timeout_s,
                   help="longest wait for the next bytes of a request body; past it the answer is 408 "
                        f"(default {_DEFAULTS.body_timeout_s:g})")
    p.add_argument("--grace", type=float_in(0.0, None), default=30.0,
                   help="seconds requests under way get to finish after SIGTERM (default 30)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error", "critical"])
    p.set_defaults(handler=run)
    return p


def _port(text):
    port = int_at_least(0)(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"expected a port in [0, 65535], received {text!r}")
    return port


def run(args):
    """The ``serve`` handler: runs until SIGTERM/SIGINT; returns the exit status."""
    unused = [flag for flag, value in (("--max-batch", args.max_batch), ("--max-delay-ms", args.max_delay_ms),
                                       ("--inexact-batching", args.inexact_batching or None)) if value is not None]
    if unused and not args.batching:
        raise ValueError(f"{', '.join(unused)}: only with --batching")
    try:
        import flask  # noqa: F401
        import gunicorn  # noqa: F401
        import msgspec  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"dropcore serve needs the serve extra: pip install 'dropcore[serve]' ({exc})") from None
    from .server import serve

    return serve(args.model, host=args.host, port=args.port, workers=args.workers, threads=args.threads,
                 batching=args.batching, max_batch=args.max_batch or 64,
                 max_delay_ms=2.0 if args.max_delay_ms is None else args.max_delay_ms,
                 grace_s=args.grace, predict_threads=args.predict_threads, log_level=args.log_level,
                 exact=not args.inexact_batching, server=args.server, max_connections=args.max_connections,
                 max_body_bytes=args.max_body_bytes, max_instances=args.max_instances,
                 max_mc_samples=args.max_mc_samples, timeout_ms=args.timeout_ms,
                 body_timeout_s=args.body_timeout_s)

