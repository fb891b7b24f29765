"""Every thread pool dropcore touches, looked after in one place: BLAS, Numba's and the Cython kernels' OpenMP.

- **BLAS** runs one thread while dropcore's own threads call it (a multi-threaded BLAS under them oversubscribes
  the cores). The Numba kernels hold it with :func:`blas_single_thread` around each engine call; the Cython
  kernels, which call SciPy's OpenBLAS through ``cython_blas``, set it once when they load
  (:func:`hold_cython_blas`): their GEMMs check its count on every call.
- **Numba** and **OpenMP** thread counts: :func:`num_threads` and :func:`set_num_threads` (Numba's pool for the
  whole process; OpenMP's for the calling thread, as OpenMP defines it).

Importing this module imports neither Numba nor the Cython kernels.
"""
import ctypes
import threading
from contextlib import contextmanager

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


def hold_cython_blas(library_path):
    """Set the OpenBLAS that SciPy's ``cython_blas`` (at ``library_path``) calls to one thread, once, for the
    process: done when the Cython kernels load, not per call, so the request path changes no process state. This
    leaves NumPy's own BLAS alone; SciPy's linear algebra in this process then runs on one thread.

    Returns ``(held, getter_address)``: whether that worked, and the address of the BLAS's thread-count getter
    (0 when it has none), which the GEMM kernels check on every call.
    """
    lib = ctypes.CDLL(library_path)  # symbol lookups also search the BLAS it links
    for prefix in ("scipy_openblas", "openblas"):
        setter = getattr(lib, prefix + "_set_num_threads", None)
        getter = getattr(lib, prefix + "_get_num_threads", None)
        if setter is not None and getter is not None:
            setter.argtypes, setter.restype = [ctypes.c_int], None
            setter(1)
            return True, ctypes.cast(getter, ctypes.c_void_p).value
    return False, 0  # another BLAS: the GEMM kernels keep to one OpenMP thread and let it parallelize


def num_threads(pool="numba"):
    """Threads the ``pool`` ("numba", or "openmp": the Cython kernels' regions started from this thread) uses."""
    if pool == "openmp":
        from . import _cy_elementwise

        return _cy_elementwise.get_max_threads()
    import numba

    return numba.get_num_threads()


def set_num_threads(n, pool="numba"):
    """Set ``pool``'s thread count: Numba's for the process (1..NUMBA_NUM_THREADS), or OpenMP's for the calling
    thread. Returns the previous count."""
    before = num_threads(pool)
    if pool == "openmp":
        from . import _cy_elementwise

        _cy_elementwise.set_num_threads(int(n))
    else:
        import numba

        numba.set_num_threads(int(n))
    return before


@contextmanager
def threads(n, pool="numba"):
    """``set_num_threads(n, pool)`` for the ``with`` block, then the previous count again."""
    before = set_num_threads(n, pool)
    try:
        yield
    finally:
        set_num_threads(before, pool)
