"""Loss kernels: Numba vs the NumPy reference, naive formulas, extreme logits, and finite differences."""
import numpy as np
import pytest

from dropcore.testing import check_gradient
from dropcore.kernels import loss as nb
from dropcore.kernels.reference import loss as ref

SHAPES = [(1, 10), (7, 3), (33, 17), (64, 1000), (5, 1)]


def _logits(shape, seed, scale=3.0, dtype=np.float32):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def _onehot(labels, k, dtype=np.float32):
    return np.eye(k, dtype=dtype)[labels]


def _soft_targets(shape, seed, dtype=np.float32):
    t = np.random.default_rng(seed).random(shape)
    return (t / t.sum(axis=-1, keepdims=True)).astype(dtype)


def _assert_pair(got, want, rtol=1e-5, atol=1e-6):
    assert got[0].dtype == np.float32 and got[1].dtype == np.float32 and got[0].shape == want[0].shape
    np.testing.assert_allclose(got[0], want[0], rtol=rtol, atol=atol)
    np.testing.assert_allclose(got[1], want[1], rtol=rtol, atol=atol)


@pytest.mark.parametrize("shape", SHAPES)
def test_numba_matches_reference(shape):
    n, k = shape
    z = _logits(shape, 1)
    labels = np.random.default_rng(2).integers(0, k, n)
    onehot = _onehot(labels, k)
    bits = (np.random.default_rng(3).random(shape) < 0.5).astype(np.float32)
    _assert_pair(nb.softmax_cross_entropy(z, onehot), ref.softmax_cross_entropy(z, onehot))
    soft = _soft_targets(shape, 4)
    _assert_pair(nb.softmax_cross_entropy(z, soft), ref.softmax_cross_entropy(z, soft))
    _assert_pair(nb.sparse_softmax_cross_entropy(z, labels), ref.sparse_softmax_cross_entropy(z, labels))
    _assert_pair(nb.sigmoid_binary_cross_entropy(z, bits), ref.sigmoid_binary_cross_entropy(z, bits))
    _assert_pair(nb.mean_squared_error(z, bits), ref.mean_squared_error(z, bits))


@pytest.mark.parametrize("shape", [(6,), (4, 5, 3), (2, 4, 4, 3)])
def test_mse_any_rank(shape):
    y, t = _logits(shape, 5), _logits(shape, 6)
    got = nb.mean_squared_error(y, t)
    assert got[1].shape == shape
    _assert_pair(got, ref.mean_squared_error(y, t))


@pytest.mark.parametrize("impl", [ref, nb], ids=["reference", "numba"])
def test_sparse_equals_onehot(impl):
    z = _logits((9, 6), 7)
    labels = np.random.default_rng(8).integers(0, 6, 9)
    sparse = impl.sparse_softmax_cross_entropy(z, labels)
    dense = impl.softmax_cross_entropy(z, _onehot(labels, 6))
    np.testing.assert_allclose(sparse[0], dense[0], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(sparse[1], dense[1])


@pytest.mark.parametrize("impl", [ref, nb], ids=["reference", "numba"])
def test_naive_formulas(impl):
    z = _logits((8, 5), 9, scale=2.0)
    z64 = z.astype(np.float64)
    labels = np.random.default_rng(10).integers(0, 5, 8)
    t = np.random.default_rng(11).random((8, 5)).astype(np.float32)  # soft binary targets
    p = np.exp(z64) / np.exp(z64).sum(axis=1, keepdims=True)
    onehot = _onehot(labels, 5, np.float64)
    np.testing.assert_allclose(impl.softmax_cross_entropy(z, onehot.astype(np.float32))[0],
                               -(onehot * np.log(p)).sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(impl.sparse_softmax_cross_entropy(z, labels)[1], p - onehot, atol=1e-6)
    s = 1 / (1 + np.exp(-z64))
    bce = impl.sigmoid_binary_cross_entropy(z, t)
    np.testing.assert_allclose(bce[0], -(t * np.log(s) + (1 - t) * np.log(1 - s)).mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(bce[1], (s - t) / 5, atol=1e-7)
    y4 = _logits((3, 2, 2, 5), 12)
    t4 = _logits((3, 2, 2, 5), 13)
    mse = impl.mean_squared_error(y4, t4)
    d = y4.astype(np.float64) - t4
    np.testing.assert_allclose(mse[0], (d ** 2).mean(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(mse[1], 2 * d / 20, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("impl", [ref, nb], ids=["reference", "numba"])
def test_extreme_logits(impl):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]], dtype=np.float32)
    labels = np.array([1, 2, 0])
    loss, grad = impl.sparse_softmax_cross_entropy(z, labels)
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    # exact answers: the winning logit takes all the probability (or half of it, for a tie)
    np.testing.assert_allclose(loss, [2e4, 0.0, np.log(2.0)], rtol=1e-6)
    np.testing.assert_allclose(grad, [[1, -1, 0], [0, 0, 0], [-0.5, 0.5, 0]], atol=1e-7)
    loss2, grad2 = impl.softmax_cross_entropy(z, _onehot(labels, 3))
    np.testing.assert_allclose(loss2, loss, rtol=1e-6)
    np.testing.assert_allclose(grad2, grad, atol=1e-7)
    t = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=np.float32)
    loss, grad = impl.sigmoid_binary_cross_entropy(z, t)
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    # per element: |z| when the sign is wrong, log(2) at z = 0 with t = 1, 0 when right
    np.testing.assert_allclose(loss, [(1e4 + 1e4 + np.log(2.0)) / 3, 1e4 / 3, 0.0], rtol=1e-6)
    np.testing.assert_allclose(grad, [[1 / 3, -1 / 3, -1 / 6], [-1 / 3, 0, 0], [0, 0, 0]], atol=1e-7)


def test_reference_gradients_finite_differences():
    rng = np.random.default_rng(14)
    z = rng.standard_normal((4, 5)) * 2
    labels = rng.integers(0, 5, 4)
    for targets in (_onehot(labels, 5, np.float64), _soft_targets((4, 5), 15, np.float64)):
        check_gradient(lambda: ref.softmax_cross_entropy(z, targets)[0].sum(),
                       ref.softmax_cross_entropy(z, targets)[1], z)
    check_gradient(lambda: ref.sparse_softmax_cross_entropy(z, labels)[0].sum(),
                   ref.sparse_softmax_cross_entropy(z, labels)[1], z)
    t = rng.random((4, 5))
    check_gradient(lambda: ref.sigmoid_binary_cross_entropy(z, t)[0].sum(),
                   ref.sigmoid_binary_cross_entropy(z, t)[1], z)
    y, t4 = rng.standard_normal((2, 3, 2, 2)), rng.standard_normal((2, 3, 2, 2))
    check_gradient(lambda: ref.mean_squared_error(y, t4)[0].sum(), ref.mean_squared_error(y, t4)[1], y)
