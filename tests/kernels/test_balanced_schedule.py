"""The Cython kernels' regions of large tasks hand them out in claims (``_cy_threads.pxi``'s ``chunk``), so that a
core slowed by a neighbour or a CPU quota does fewer of them; which thread runs a task must never change its bits.

Each kernel runs with claims and with one equal share per thread (``set_balance(False)``, a static schedule), at
2 and 8 threads (8: more threads than this machine's cores, so the claims land on threads in any order), and the
results must be equal bit for bit. The shapes are a batch of 64, where the claims are small (checked first).
"""
import numpy as np
import pytest

pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")

from dropcore.kernels import compiled  # noqa: E402
from dropcore.kernels.threads import threads  # noqa: E402
from dropcore.ops import get_ops  # noqa: E402

OPS = get_ops("cython")
MODULES = (compiled.gemm, compiled.pool, compiled.depthwise, compiled.elementwise)
BALANCE_FLOPS = 1 << 20  # _cy_gemm.pyx's
RNG = np.random.default_rng(3)


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _balanced(on):
    for module in MODULES:
        module.set_balance(on)


def same_bits_with_and_without_claims(call):
    """``call()``'s arrays with claims equal its arrays with equal shares, at 2 and 8 threads."""
    try:
        _balanced(False)
        with threads(2, "openmp", exact=True):
            expected = call()
        _balanced(True)
        for n in (2, 8):
            with threads(n, "openmp", exact=True):
                got = call()
            for e, g in zip(expected, got, strict=True):
                if e is None:
                    assert g is None
                else:
                    np.testing.assert_array_equal(g, e, err_msg=f"with claims, {n} threads")
    finally:
        _balanced(True)


def test_claim_rule():
    claim = compiled.gemm.claim_size
    # batch 64 of a ResNet-8 layer (16 -> 16, 3x3 at 32x32: 4.7 MFLOP a sample): one sample a claim
    assert claim(64, 2, 4.7e6, BALANCE_FLOPS) == 1
    # small tasks are grouped into claims of the grain: 2048 depthwise rows of 9,216 operations
    assert claim(2048, 2, 9216, 8 * 16384) == 14
    # batch 1 of the same layer (8 tasks of 0.6 MFLOP): one equal share a thread, as a static schedule
    assert claim(8, 2, 0.6e6, BALANCE_FLOPS) == 4
    assert claim(5, 2, 0.6e6, BALANCE_FLOPS) == 3
    assert claim(1, 8, 1e3, BALANCE_FLOPS) == 1
    try:
        compiled.gemm.set_balance(False)
        assert claim(64, 2, 4.7e6, BALANCE_FLOPS) == 32
    finally:
        compiled.gemm.set_balance(True)


@pytest.mark.parametrize("shape, kernel, padding", [
    ((32, 32, 16), (3, 3, 16, 16), "same"),  # the direct kernel (or Winograd's tiles where it pays)
    ((16, 16, 32), (3, 3, 32, 32), "same"),  # Winograd's tiles on the vector targets
    ((16, 16, 32), (1, 1, 32, 64), "valid"),  # a pointwise layer: GEMM panels
    ((15, 15, 24), (5, 5, 24, 40), "valid"),  # im2col panels or the implicit GEMM
])
def test_conv_forward_backward_and_pooled(shape, kernel, padding):
    x, w, b = rand(64, *shape), rand(*kernel, scale=0.1), rand(kernel[-1])
    y = OPS.conv2d(x, w, b, (1, 1), padding, True)
    dy = rand(*y.shape)
    same_bits_with_and_without_claims(lambda: (OPS.conv2d(x, w, b, (1, 1), padding, True),))
    same_bits_with_and_without_claims(lambda: OPS.conv2d_backward(dy, x, w, (1, 1), padding, True, relu_output=y))
    same_bits_with_and_without_claims(lambda: OPS.conv2d_max_pool(x, w, b, (1, 1), padding, (2, 2), True))


def test_dense_forward():
    x, w, b = rand(512, 256), rand(256, 128, scale=0.05), rand(128)
    same_bits_with_and_without_claims(lambda: (OPS.dense(x, w, b, True),))


@pytest.mark.parametrize("strides", [(1, 1), (2, 2)])
def test_depthwise_forward_and_backward(strides):
    x, w, b = rand(64, 32, 32, 32), rand(3, 3, 32, 1, scale=0.3), rand(32)
    y = OPS.depthwise_conv2d(x, w, b, strides, "same", True)
    dy = rand(*y.shape)
    same_bits_with_and_without_claims(lambda: (OPS.depthwise_conv2d(x, w, b, strides, "same", True),))
    same_bits_with_and_without_claims(
        lambda: OPS.depthwise_conv2d_backward(dy, x, w, strides, "same", True, relu_output=y))


def test_pooling_and_pooling_of_parts():
    from dropcore.kernels.cython_ops import pool2d_kernel, pool2d_parts_kernel

    a, c = rand(64, 32, 32, 24), rand(64, 32, 32, 40)

    def pooled():
        out = []
        for average in (False, True):
            run, shape = pool2d_kernel(a.shape, (2, 2), (2, 2), "valid", average)
            y = np.empty(shape, np.float32)
            run(a, y)
            run, shape = pool2d_parts_kernel([a.shape, c.shape], (3, 3), (1, 1), "same", average)
            z = np.empty(shape, np.float32)
            run(a, c, z)
            out += [y, z]
        return out

    same_bits_with_and_without_claims(pooled)


def test_batch_norm_train_and_backward():
    x, g, beta = rand(64 * 32 * 32, 32), rand(32), rand(32)
    same_bits_with_and_without_claims(lambda: OPS.batch_norm_train(x, g, beta, 1e-3))
    y, mean, _, inv_std = OPS.batch_norm_train(x, g, beta, 1e-3)
    dy = rand(*x.shape)
    same_bits_with_and_without_claims(lambda: OPS.batch_norm_backward(dy, x, mean, inv_std, g))
