"""BLAS thread control: nested holders share one limit, restored by the last one out."""
import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba's np.dot uses)
from threadpoolctl import threadpool_info

from dropcore.kernels.threads import blas_single_thread


def blas_threads():
    return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})


def test_nested_holders_restore_on_last_exit():
    before = blas_threads()
    with blas_single_thread():
        assert blas_threads() == [1]
        with blas_single_thread():
            assert blas_threads() == [1]
        assert blas_threads() == [1]  # the outer holder still needs one thread
    assert blas_threads() == before
