"""Numba flags in one place.

Every Numba kernel in dropcore is compiled with one of the two decorators below so that the flags (fastmath subset,
error model, caching, threading layer) never drift between files.

- ``fastmath``: only the flags that cannot change a finite result's NaN/Inf behaviour visibly for our ops
  (no ``nnan``/``ninf``: a NaN must propagate so the Python layer can detect it).
- ``error_model="numpy"``: division by zero gives inf/NaN instead of raising, and lets LLVM vectorize divisions.
- ``cache=True``: compiled kernels are written next to the source (``__pycache__``) so a second process starts fast.
- Threading layer ``omp``: one OpenMP pool owns the cores; BLAS is held to one thread while it runs
  (``threads.blas_single_thread``, where every thread pool is looked after).
"""
import os

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
