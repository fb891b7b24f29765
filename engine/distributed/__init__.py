"""``dropcore.distributed``: dropcore past one machine, on existing engines rather than a home-made one.

- **Scoring** on Dask: :func:`predict` scores a ``dask.array`` chunk by chunk on the workers, each of which builds
  one :class:`dropcore.Predictor` from the model file's bytes (scattered once); the answer equals a one-process
  ``Predictor.predict`` exactly, Monte-Carlo dropout included (``pip install 'dropcore[dask]'``).
- **Data-parallel training** on MPI: ``model.fit(x, y, ..., comm=MPIComm())`` under ``mpiexec -n N``
  (``pip install 'dropcore[mpi]'``).

The core is free of either engine: pure task functions (:mod:`.scoring`), a small communicator interface
(:class:`Comm`, :class:`LocalComm`, :class:`MPIComm`) and the training hooks (:mod:`.training`). Importing this
package imports neither Dask nor mpi4py; each is imported when first used.
"""
from .comm import Comm, LocalComm, MPIComm
from .commands import comm_from_environment
from .scoring import predict, score_chunk
from .workers import register_threads_plugin

__all__ = ["Comm", "LocalComm", "MPIComm", "comm_from_environment", "predict", "register_threads_plugin",
           "score_chunk"]


def __getattr__(name):
    if name == "ThreadsPlugin":  # subclasses distributed's WorkerPlugin: imported on first use
        from ._dask_plugin import ThreadsPlugin

        return ThreadsPlugin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
