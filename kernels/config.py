"""Numba flags in one place.

Every Numba kernel in dropcore is compiled with one of the two decorators below so that the flags (fastmath subset,
error model, caching, threading layer) never drift between files.

- ``fastmath``: only the flags that cannot change a finite result's NaN/Inf behaviour visibly for our ops
  (no ``nnan``/``ninf``: a NaN must propagate so the Python layer can detect it).
- ``error_model="numpy"``: division by zero gives inf/NaN instead of raising, and lets LLVM vectorize divisions.
- ``cache=True``: compiled kernels are written next to the source (``__pycache__``) so a second process starts fast.
- Threading layer ``omp``: one OpenMP pool owns the cores; BLAS is held to one thread while it runs
  (``threads.blas_single_thread``, where every thread pool is looked after).
- Compiling says so: the first time a process compiles one of dropcore's kernels (an empty or stale cache), one
  line on stderr names it and how long the whole set may take, instead of a progress bar sitting at 0%.
"""
import os
import sys

import numba
import numpy as np

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

#: Decorator options for serial kernels (the inner loops).
JIT = dict(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
#: Decorator options for the thin ``prange`` drivers.
PJIT = dict(JIT, parallel=True)

F32 = np.float32

if os.environ.get("NUMBA_THREADING_LAYER") is None:
    numba.config.THREADING_LAYER = "omp"


class CompileNotice(numba.core.event.Listener):
    """Says once per process, when Numba starts compiling one of dropcore's kernels (a cache miss: loading a cached
    kernel fires no compile event), what is compiled, how long it may take and where it is cached."""

    def __init__(self, stream=None):
        self.stream = stream
        self.said = False

    def on_start(self, event):
        dispatcher = event.data["dispatcher"]
        module = getattr(dispatcher.py_func, "__module__", "") or ""
        if self.said or not module.startswith("dropcore."):
            return
        self.said = True
        print(f"dropcore: compiling the Numba kernels for this CPU ({module}.{dispatcher.py_func.__name__} first): "
              f"up to 30-60 s the first time, cached afterwards in {cache_dir()}",
              file=self.stream or sys.stderr, flush=True)

    def on_end(self, event):
        pass


def cache_dir():
    """Where Numba caches dropcore's compiled kernels: ``NUMBA_CACHE_DIR`` when set, else beside the sources."""
    return numba.config.CACHE_DIR or os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")


NOTICE = CompileNotice()
numba.core.event.register("numba:compile", NOTICE)


def njit(fn=None, **overrides):
    """``numba.njit`` with the project's serial flags."""
    opts = dict(JIT, **overrides)
    return numba.njit(**opts)(fn) if fn is not None else numba.njit(**opts)


def pjit(fn=None, **overrides):
    """``numba.njit`` with the project's parallel flags (use ``numba.prange`` inside)."""
    opts = dict(PJIT, **overrides)
    return numba.njit(**opts)(fn) if fn is not None else numba.njit(**opts)


def num_threads():
    """Threads the Numba pool uses."""
    return numba.get_num_threads()
