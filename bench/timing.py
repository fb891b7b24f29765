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
    """Hold dropcore and NumPy's BLAS (the reference engine) to ``n`` threads; restore them after.

    dropcore's own count goes through its public ``set_num_threads``, which never runs more threads than the CPUs
    this process may use (asked for more, it warns and runs those): the oversubscribed rows measure that rule.
    """
    import warnings

    import scipy.linalg.cython_blas  # noqa: F401  (SciPy's OpenBLAS, which Numba's np.dot uses, must be loaded)
    from threadpoolctl import threadpool_limits

    import dropcore

    with threadpool_limits(limits=n):  # on leaving, NumPy's BLAS gets its own counts back
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the cap is what an oversubscribed row shows
            before = dropcore.set_num_threads(n)  # dropcore's pools, and BLAS for the reference engine
        try:
            yield
        finally:
            dropcore.set_num_threads(before)
