"""Prometheus metrics of a dropcore server: requests and errors by route and status, latency by route.

Under gunicorn every worker is its own process with its own counters; a scrape of ``/metrics`` reaches one of
them. So ``dropcore serve`` runs prometheus_client's multiprocess mode: the master sets ``PROMETHEUS_MULTIPROC_DIR``
to a fresh temporary directory before the workers fork, each worker's metrics live in files there, and
``/metrics`` (in any worker) adds them all up. Without that variable (``create_app`` on its own server, one
process) each app keeps its metrics in a registry of its own.
"""
import os

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Latency buckets (seconds): a batch-1 prediction takes ~0.1-1 ms, a big MC request seconds.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def multiprocess_dir():
    """The multiprocess directory in use, or None."""
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())


def enable_multiprocess(path):
    """Put prometheus_client in multiprocess mode on ``path``: call before forking workers. prometheus_client
    picks the mode when it is imported, so it is picked again here in case it was imported already."""
    os.environ[MULTIPROC_ENV] = str(path)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()


def worker_exited(pid):
    """Tell prometheus_client that worker ``pid`` is gone (its live gauges are dropped; counters stay summed)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


class Metrics:
    """The server's metrics, in a registry of its own."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("dropcore_http_requests", "HTTP requests answered, by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.errors = Counter("dropcore_http_errors", "HTTP requests answered with a 4xx or 5xx, by route, status "
                              "and kind", ["route", "status", "kind"], registry=self.registry)
        self.latency = Histogram("dropcore_http_request_seconds", "Time from a request's arrival to its answer, by "
                                 "route", ["route"], buckets=BUCKETS, registry=self.registry)
        self.instances = Counter("dropcore_predicted_instances", "Samples predicted", registry=self.registry)
        self._children = {}  # (route, method, status, kind) -> the labelled metrics one answer updates

    def observe(self, route, method, status, seconds, kind=None):
        key = (route, method, status, kind)
        children = self._children.get(key)
        if children is None:  # labels() looks its child up under a lock each call: once per label set here
            children = (self.requests.labels(route, method, str(status)), self.latency.labels(route),
                        self.errors.labels(route, str(status), kind or "error") if status >= 400 else None)
            if len(self._children) < 4096:  # routes, methods, statuses and kinds are few; bounded all the same
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if children[2] is not None:
            children[2].inc()

    def render(self):
        """``(body, content_type)`` of a scrape: every worker's metrics in multiprocess mode, else this app's."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if multiprocess_dir():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
