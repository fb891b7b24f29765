"""Timing helpers: warm-up excluded, the median of repeats, and thread control for every engine at once."""
import statistics
import time
from contextlib import contextmanager


def median_seconds(fn, repeats, warmup=1):
    """Median wall time of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@contextmanager
def threads(n):
    """Hold Numba's pool and NumPy's BLAS (the reference engine) to ``n`` threads; restore them after."""
    import numba
    import scipy.linalg.cython_blas  # noqa: F401  (SciPy's OpenBLAS, which Numba's np.dot uses, must be loaded)
    from threadpoolctl import threadpool_limits

    before = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        numba.set_num_threads(before)
