"""The Dask worker plugin of :mod:`dropcore.distributed.workers` (imports ``distributed``: loaded on first use)."""
from distributed import WorkerPlugin

from ..kernels.threads import set_process_threads


class ThreadsPlugin(WorkerPlugin):
    """Sizes a worker's kernel threads to the cores it was given (its ``nthreads``) when it starts: dropcore's
    kernels then run that many threads, process-wide."""

    def setup(self, worker):
        self.threads = int(worker.state.nthreads)
        set_process_threads(self.threads)
