"""The training kernels give the same bits on any number of threads: how work is split depends on the shapes only.

A sweep's or a data-parallel run's workers run fewer threads than one process on every core; their weights must
still equal that process's. Each kernel runs against one thread: the Numba set at every thread count Numba was
started with, the Cython set at 2, 3, 4 and 8 OpenMP threads (beyond the cores: the split must not follow them).
``tests/e2e/test_thread_invariance.py`` does the same for a whole model, one process per thread count.
"""
import numba
import numpy as np
import pytest

from dropcore.kernels.threads import threads
from dropcore.ops import get_ops

NUMBA_THREADS = list(range(2, numba.config.NUMBA_NUM_THREADS + 1))
OPENMP_THREADS = [2, 3, 4, 8]
RNG = np.random.default_rng(0)


class Kernels:
    """A fast kernel set (``ops``) and the thread pool its kernels run on."""

    def __init__(self, name, counts, pool, exact):
        self.ops, self.counts, self.pool, self.exact = get_ops(name), counts, pool, exact

    def same_bits_at_any_thread_count(self, call):
        """``call()``'s arrays at each thread count equal its arrays on one thread, bit for bit."""
        with threads(1, self.pool, exact=self.exact):
            expected = call()
        for n in self.counts:
            with threads(n, self.pool, exact=self.exact):
                got = call()
            for e, g in zip(expected, got, strict=True):
                if e is None:
                    assert g is None
                else:
                    np.testing.assert_array_equal(g, e, err_msg=f"{n} threads")


@pytest.fixture(params=["numba", "cython"])
def k(request):
    """Each test on both fast sets."""
    if request.param == "numba":
        if not NUMBA_THREADS:
            pytest.skip("needs Numba started with 2 or more threads (2 CPUs)")
        return Kernels("numba", NUMBA_THREADS, "numba", False)
    pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    return Kernels("cython", OPENMP_THREADS, "openmp", True)


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


# (n, k_in, m): small (serial), mid-sized (dx and dw side by side), and large with each operand the larger
DENSE = [(4, 64, 10), (32, 400, 120), (100, 9216, 128), (512, 256, 64)]


@pytest.mark.parametrize("n, k_in, m", DENSE)
def test_dense_forward_and_backward(n, k_in, m, k):
    x, w, b, dy = rand(n, k_in), rand(k_in, m, scale=0.05), rand(m), rand(n, m)
    k.same_bits_at_any_thread_count(lambda: (k.ops.dense(x, w, b, True),))
    k.same_bits_at_any_thread_count(lambda: k.ops.dense_backward(dy, x, w, True))


@pytest.mark.parametrize("n, shape, kernel, padding", [(40, (26, 26, 32), (3, 3, 32, 64), "valid"),
                                                       (5, (12, 12, 3), (5, 5, 3, 8), "same"),
                                                       (40, (9, 9, 4), (3, 3, 4, 6), "valid"),
                                                       (33, (28, 28, 1), (5, 5, 1, 6), "same")])  # LeNet's first
def test_conv_forward_and_backward(n, shape, kernel, padding, k):
    x, w, b = rand(n, *shape), rand(*kernel, scale=0.1), rand(kernel[-1])
    y = k.ops.conv2d(x, w, b, (1, 1), padding, True)
    dy = rand(*y.shape)
    k.same_bits_at_any_thread_count(lambda: (k.ops.conv2d(x, w, b, (1, 1), padding, True),))
    k.same_bits_at_any_thread_count(lambda: k.ops.conv2d_backward(dy, x, w, (1, 1), padding, True,
                                                                  relu_output=y))
    yp, arg = k.ops.conv2d_max_pool(x, w, b, (1, 1), padding, (2, 2), True)  # a training step's fused pair
    dyp = rand(*yp.shape)
    k.same_bits_at_any_thread_count(lambda: k.ops.conv2d_max_pool(x, w, b, (1, 1), padding, (2, 2), True))
    k.same_bits_at_any_thread_count(lambda: k.ops.conv2d_max_pool_backward(dyp, arg, yp, x, w, (1, 1), padding,
                                                                           (2, 2), True, relu=True))


def test_dropout_forward_and_backward(k):
    x, dy = rand(64, 12, 12, 16), rand(64, 12, 12, 16)
    key = (np.uint32(7), np.uint32(11))
    k.same_bits_at_any_thread_count(lambda: (k.ops.relu_dropout(x, 0.4, key), k.ops.dropout(x, 0.3, key, True)))
    y = k.ops.relu_dropout(x, 0.4, key)
    k.same_bits_at_any_thread_count(lambda: (k.ops.relu_dropout_backward(dy, y, 0.4),
                                             k.ops.dropout_backward(dy, 0.3, key, True)))


def test_batch_norm_pooling_and_loss(k):
    x, g, beta = rand(48, 12, 12, 16), rand(16), rand(16)
    k.same_bits_at_any_thread_count(lambda: k.ops.batch_norm_train(x, g, beta, 1e-3))
    _, mean, _, inv_std = k.ops.batch_norm_train(x, g, beta, 1e-3)
    k.same_bits_at_any_thread_count(lambda: k.ops.batch_norm_backward(x, x, mean, inv_std, g))
    k.same_bits_at_any_thread_count(lambda: (k.ops.max_pool2d(x, (2, 2), (2, 2), "valid")[0],))
    logits, labels = rand(300, 10), RNG.integers(0, 10, 300)
    k.same_bits_at_any_thread_count(lambda: k.ops.sparse_softmax_cross_entropy(logits, labels))
