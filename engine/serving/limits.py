"""The request limits a dropcore server enforces, so no single request can hold a worker or its memory."""
from dataclasses import asdict, dataclass

from ..validation import check_float, check_int


@dataclass(frozen=True)
class Limits:
    """Per-request limits of :func:`dropcore.serving.create_app` and ``dropcore serve``.

    ``max_body_bytes``: larger request bodies get 413 (16 MiB: 1,024 CIFAR images as float32 ``.npy`` are 12 MiB).
    ``max_instances``: more samples in one request get 400.
    ``max_mc_samples``: a larger ``mc_samples`` gets 400 (each pass is a full prediction).
    ``timeout_ms``: the compute deadline from the request's arrival; past it the prediction stops between passes
    or batches and the answer is 503.
    ``body_timeout_s``: the longest wait for the next bytes of a request body (under gunicorn); past it the answer
    is 408 and the connection closes (a client that declared more than it sends cannot hold a request thread).
    """

    max_body_bytes: int = 16 * 2**20
    max_instances: int = 1024
    max_mc_samples: int = 100
    timeout_ms: float = 5000.0
    body_timeout_s: float = 10.0

    def __post_init__(self):
        check_int(self.max_body_bytes, "max_body_bytes", 1, "Limits")
        check_int(self.max_instances, "max_instances", 1, "Limits")
        check_int(self.max_mc_samples, "max_mc_samples", 1, "Limits")
        object.__setattr__(self, "timeout_ms", check_float(self.timeout_ms, "timeout_ms", 0.0, None, low_open=True,
                                                           where="Limits"))
        object.__setattr__(self, "body_timeout_s", check_float(self.body_timeout_s, "body_timeout_s", 0.0, None,
                                                               low_open=True, where="Limits"))

    def as_dict(self):
        return asdict(self)
