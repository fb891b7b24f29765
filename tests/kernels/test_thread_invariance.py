"""The training kernels give the same bits on any number of threads: how work is split depends on the shapes only.

A sweep's or a data-parallel run's workers run fewer threads than one process on every core; their weights must
still equal that process's. Each kernel runs at every thread count Numba was started with, against one thread.
"""
import numba
import numpy as np
import pytest

from dropcore.ops import get_ops

THREADS = list(range(2, numba.config.NUMBA_NUM_THREADS + 1))
pytestmark = pytest.mark.skipif(not THREADS, reason="needs Numba started with 2 or more threads (2 CPUs)")
RNG = np.random.default_rng(0)
OPS = get_ops("numba")


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def assert_same_bits_at_any_thread_count(call):
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        expected = call()
        for n in THREADS:
            numba.set_num_threads(n)
            got = call()
            for e, g in zip(expected, got, strict=True):
                if e is None:
                    assert g is None
                else:
                    np.testing.assert_array_equal(g, e, err_msg=f"{n} threads")
    finally:
        numba.set_num_threads(before)


# (n, k_in, m): small (serial), mid-sized (dx and dw side by side), and large with each operand the larger
DENSE = [(4, 64, 10), (32, 400, 120), (100, 9216, 128), (512, 256, 64)]


@pytest.mark.parametrize("n, k_in, m", DENSE)
def test_dense_forward_and_backward(n, k_in, m):
    x, w, b, dy = rand(n, k_in), rand(k_in, m, scale=0.05), rand(m), rand(n, m)
    assert_same_bits_at_any_thread_count(lambda: (OPS.dense(x, w, b, True),))
    assert_same_bits_at_any_thread_count(lambda: OPS.dense_backward(dy, x, w, True))


@pytest.mark.parametrize("n, shape, kernel, padding", [(40, (26, 26, 32), (3, 3, 32, 64), "valid"),
                                                       (5, (12, 12, 3), (5, 5, 3, 8), "same"),
                                                       (40, (9, 9, 4), (3, 3, 4, 6), "valid")])
def test_conv_forward_and_backward(n, shape, kernel, padding):
    x, w, b = rand(n, *shape), rand(*kernel, scale=0.1), rand(kernel[-1])
    y = OPS.conv2d(x, w, b, (1, 1), padding, True)
    dy = rand(*y.shape)
    assert_same_bits_at_any_thread_count(lambda: (OPS.conv2d(x, w, b, (1, 1), padding, True),))
    assert_same_bits_at_any_thread_count(lambda: OPS.conv2d_backward(dy, x, w, (1, 1), padding, True,
                                                                     relu_output=y))


def test_batch_norm_pooling_and_loss():
    x, g, beta = rand(48, 12, 12, 16), rand(16), rand(16)
    assert_same_bits_at_any_thread_count(lambda: OPS.batch_norm_train(x, g, beta, 1e-3))
    _, mean, _, inv_std = OPS.batch_norm_train(x, g, beta, 1e-3)
    assert_same_bits_at_any_thread_count(lambda: OPS.batch_norm_backward(x, x, mean, inv_std, g))
    assert_same_bits_at_any_thread_count(lambda: (OPS.max_pool2d(x, (2, 2), (2, 2), "valid")[0],))
    logits, labels = rand(300, 10), RNG.integers(0, 10, 300)
    assert_same_bits_at_any_thread_count(lambda: OPS.sparse_softmax_cross_entropy(logits, labels))
