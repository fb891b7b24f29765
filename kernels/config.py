"""Numba flags in one place.

Every Numba kernel in dropcore is compiled with one of the two decorators below so that the flags (fastmath subset,
error model, caching, threading layer) never drift between files.

- ``fastmath``: only the flags that cannot change a finite result's NaN/Inf behaviour visibly for our ops
  (no ``nnan``/``ninf``: a NaN must propagate so the Python layer can detect it).
- ``error_model="numpy"``: division by zero gives inf/NaN instead of raising, and lets LLVM vectorize divisions.
- ``cache=True``: compiled kernels are written next to the source (``__pycache__``) so a second process starts fast.
- Threading layer ``omp``: one OpenMP pool owns the cores; BLAS is held to one thread while it runs
  (see :func:`blas_single_thread`).
"""
import os
import threading
from contextlib import contextmanager

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


_blas = None  # threadpoolctl's controllers of the loaded BLAS libraries, found once
_saved = None  # their thread counts before the first holder limited them
_holders = 0
_lock = threading.Lock()


def _blas_libraries():
    global _blas
    if _blas is None:
        # Numba's np.dot calls SciPy's own OpenBLAS, loaded lazily: load it before threadpoolctl scans the
        # libraries, or that BLAS is never limited and each Numba thread spawns BLAS threads of its own.
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import ThreadpoolController

        _blas = [lc for lc in ThreadpoolController().lib_controllers if lc.user_api == "blas"]
    return _blas


@contextmanager
def blas_single_thread():
    """Hold BLAS to one thread while Numba ``prange`` regions call ``np.dot`` from every thread.

    The limit is process-wide (BLAS thread counts are), so nested and concurrent holders share it: the first
    sets it and the last restores the previous counts. Inside an engine call, every kernel's own use costs a
    counter bump, not a threadpoolctl round trip (~15 us each, which mattered at batch 1).
    """
    global _saved, _holders
    with _lock:
        if _holders == 0:
            libs = _blas_libraries()
            _saved = [lc.get_num_threads() for lc in libs]
            for lc in libs:
                lc.set_num_threads(1)
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                for lc, n in zip(_blas, _saved):
                    lc.set_num_threads(n)


def num_threads():
    """Threads the Numba pool uses."""
    return numba.get_num_threads()


def set_num_threads(n):
    """Set the Numba pool's thread count (1..NUMBA_NUM_THREADS)."""
    numba.set_num_threads(int(n))
