"""The Dask worker plugin of :mod:`dropcore.distributed.workers` (imports ``distributed``: loaded on first use)."""
from distributed import WorkerPlugin

from .workers import worker_threads


class ThreadsPlugin(WorkerPlugin):
    """Sizes a worker's kernel threads to the cores it was given (its ``nthreads``) when it starts."""

    def setup(self, worker):
        self.threads = worker_threads(worker.state.nthreads)
