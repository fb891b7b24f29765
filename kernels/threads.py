"""Every thread pool dropcore touches, looked after in one place: BLAS, Numba's and the Cython kernels' OpenMP.

- **BLAS** runs one thread while dropcore's own threads call it (a multi-threaded BLAS under them oversubscribes
  the cores). The Numba kernels hold it with :func:`blas_single_thread` around each engine call; the Cython
  kernels, which call SciPy's OpenBLAS through ``cython_blas``, set it once when they load
  (:func:`hold_cython_blas`): their GEMMs check its count on every call.
- **Numba** and **OpenMP** thread counts: :func:`pool_threads` and :func:`set_pool_threads` (for the calling
  thread, as Numba and OpenMP define them; ``dropcore.set_num_threads`` is :func:`set_process_threads`).
- **How many**: :func:`get_num_threads`, at most the CPUs this process may really use (``cpus.available_cpus``:
  its affinity mask and cgroup CPU quota), not the host's core count that Numba and OpenMP count by default.

Importing this module imports neither Numba nor the Cython kernels.
"""
import ctypes
import os
import threading
from contextlib import contextmanager

from .cpus import available_cpus

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


def _requested(name):
    """A thread count from environment variable ``name``, or ``None`` when it is not set."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"Invalid value for `{name}`: expected a positive int. Received: {name}={value!r}")
    return int(value)


_count = None  # the process-wide count (None: not worked out yet)
_numba_env_ours = False  # NUMBA_NUM_THREADS was set by numba_default, not asked for
_capped_warned = set()
_openmp_modules = []  # the loaded Cython kernel modules, each with its own OpenMP cap


def _capped(n, asked_by):
    """``n``, at most the CPUs available; says so once when it was more (more threads only oversubscribe)."""
    cpus = available_cpus()
    if n > cpus and asked_by not in _capped_warned:
        import warnings

        _capped_warned.add(asked_by)
        warnings.warn(f"dropcore: {asked_by} asks for {n} threads, but this process may use {cpus} CPUs (its "
                      f"affinity mask and cgroup CPU quota); dropcore's kernels run {cpus} threads, since more "
                      f"would only oversubscribe the cores", RuntimeWarning, stacklevel=3)
    return min(n, cpus)


def get_num_threads():
    """The threads dropcore's kernels use: the last :func:`set_process_threads`, else ``NUMBA_NUM_THREADS`` or
    ``OMP_NUM_THREADS`` where set (the smaller), else the CPUs this process may use; never more than those."""
    global _count
    if _count is None:
        names = ("OMP_NUM_THREADS",) + (() if _numba_env_ours else ("NUMBA_NUM_THREADS",))
        asked = [(n, name) for name in names if (n := _requested(name))]
        _count = _capped(*min(asked)) if asked else available_cpus()
    return _count


def set_process_threads(n):
    """Set the threads dropcore's kernels use, process-wide: Numba's (applied at each engine call), the Cython
    kernels' OpenMP regions and BLAS outside them (threadpoolctl). At most the CPUs available (a warning says so).
    Returns the previous count."""
    global _count
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"Invalid value for `n`: expected a positive int. Received: n={n!r}")
    before = get_num_threads()
    _count = _capped(n, f"set_num_threads({n})")
    for module in _openmp_modules:
        module.set_max_threads(_count)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=_count, user_api="blas")  # the reference engine's NumPy BLAS
    return before


def cap_openmp(modules):
    """Hold the OpenMP regions of the Cython kernel ``modules`` to :func:`get_num_threads` (called once, when they
    load): OpenMP counts the host's cores, not a container's quota."""
    for module in modules:
        if module not in _openmp_modules:
            _openmp_modules.append(module)
        module.set_max_threads(get_num_threads())


def _openmp_module():
    """A Cython kernel module, for the OpenMP thread counts (one runtime serves them all): a loaded one, else this
    process's elementwise module, loaded and capped here."""
    if not _openmp_modules:
        from .isa import elementwise

        cap_openmp((elementwise,))
    return _openmp_modules[0]


def numba_default():
    """Size Numba's pool to the CPUs available before Numba starts (it counts the host's cores), unless
    ``NUMBA_NUM_THREADS`` says otherwise: set as an environment default, read when Numba is first imported."""
    import sys

    global _numba_env_ours
    if "numba" not in sys.modules and _requested("NUMBA_NUM_THREADS") is None:
        os.environ["NUMBA_NUM_THREADS"] = str(available_cpus())
        _numba_env_ours = True


@contextmanager
def engine_call(kernels, cap=None):
    """Around one engine call on kernel set ``kernels``: with Numba, its thread count for this thread (Numba's
    count is per calling thread; ``cap``: at most that many) and BLAS at one thread; nothing for the others (the
    Cython kernels are capped when they load, the reference runs NumPy's BLAS)."""
    if kernels != "numba":
        yield
        return
    import numba

    n = min(get_num_threads(), cap or get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    before = numba.get_num_threads()
    if n != before:
        numba.set_num_threads(n)
    try:
        with blas_single_thread():
            yield
    finally:
        if n != before:
            numba.set_num_threads(before)


def pool_threads(pool="numba"):
    """Threads the ``pool`` ("numba", or "openmp": the Cython kernels' regions started from this thread) uses."""
    if pool == "openmp":
        return _openmp_module().get_max_threads()
    import numba

    return numba.get_num_threads()


def set_pool_threads(n, pool="numba"):
    """Set ``pool``'s thread count for the calling thread (Numba: 1..NUMBA_NUM_THREADS; OpenMP: within the
    process-wide cap). Returns the previous count."""
    if pool == "openmp":
        return _openmp_module().set_num_threads(int(n))
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(int(n))
    return before


@contextmanager
def threads(n, pool="numba", exact=False):
    """``n`` threads of ``pool`` for the calling thread in the ``with`` block, then the previous count again.

    OpenMP's regions stay within the process-wide cap unless ``exact`` (tests and benchmarks that oversubscribe
    on purpose), which lifts it for the block.
    """
    lift = exact and pool == "openmp"
    if lift:
        for module in _openmp_modules:
            module.set_max_threads(0)
    before = set_pool_threads(n, pool)
    try:
        yield
    finally:
        set_pool_threads(before, pool)
        if lift:
            for module in _openmp_modules:
                module.set_max_threads(get_num_threads())
