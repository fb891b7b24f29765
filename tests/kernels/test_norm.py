"""Batch-norm kernels: Numba vs the NumPy reference, stability, and the reference backward vs finite differences."""
import numpy as np
import pytest

from dropcore.testing import check_gradient
from dropcore.kernels import norm as nb
from dropcore.kernels.reference import norm as ref

# (N, C) and (N, H, W, C), batch 1, odd sizes, and more rows than one chunk
SHAPES = [(1, 5), (7, 3), (64, 130), (2, 5, 7, 3), (4, 9, 9, 16), (3, 26, 26, 32)]
EPS = 1e-3


def _data(shape, seed, offset=0.0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    c = shape[-1]
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 3.0, c) + offset).astype(dtype)
    gamma = rng.uniform(0.5, 2.0, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, dy


def _f64(*arrays):
    return [a.astype(np.float64) for a in arrays]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_train_matches_reference(shape, offset):
    x, gamma, beta, _ = _data(shape, 1, offset)
    got = nb.batch_norm_train(x, gamma, beta, EPS)
    assert all(a.dtype == np.float32 for a in got) and got[0].shape == shape
    # the float32 reference on the same input (ground truth for the contract) ...
    for a, r in zip(got, ref.batch_norm_train(x, gamma, beta, EPS)):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)
    # ... and in float64, with the tolerances of float32 rounding: a naive E[x^2] - E[x]^2 in float32 fails this at
    # offset 1000
    y, mean, var, inv_std = ref.batch_norm_train(*_f64(x, gamma, beta), EPS)
    np.testing.assert_allclose(got[1], mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[2], var, rtol=1e-4 if offset else 1e-5, atol=1e-6)
    np.testing.assert_allclose(got[3], inv_std, rtol=1e-4 if offset else 1e-5)
    np.testing.assert_allclose(got[0], y, rtol=1e-4, atol=1e-4 if offset else 1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_reference(shape):
    x, gamma, beta, dy = _data(shape, 2)
    _, mean, _, inv_std = ref.batch_norm_train(x, gamma, beta, EPS)
    dx, dgamma, dbeta = nb.batch_norm_backward(dy, x, mean, inv_std, gamma)
    assert dx.dtype == np.float32 and dx.shape == shape
    rdx, rdgamma, rdbeta = ref.batch_norm_backward(*_f64(dy, x, mean, inv_std, gamma))
    m = x.size // shape[-1]
    np.testing.assert_allclose(dx, rdx, rtol=1e-4, atol=1e-5)
    # dgamma, dbeta sum m terms of O(1)
    np.testing.assert_allclose(dgamma, rdgamma, rtol=1e-5, atol=1e-6 * np.sqrt(m))
    np.testing.assert_allclose(dbeta, rdbeta, rtol=1e-5, atol=1e-6 * np.sqrt(m))
    for a, r in zip((dx, dgamma, dbeta), ref.batch_norm_backward(dy, x, mean, inv_std, gamma)):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5 * np.sqrt(m))


@pytest.mark.parametrize("shape", [(7, 3), (4, 9, 9, 16)])
def test_infer_matches_reference(shape):
    x, gamma, beta, _ = _data(shape, 3)
    rng = np.random.default_rng(4)
    mm = rng.standard_normal(shape[-1]).astype(np.float32)
    mv = rng.uniform(0.1, 4.0, shape[-1]).astype(np.float32)
    got = nb.batch_norm_infer(x, gamma, beta, mm, mv, EPS)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, ref.batch_norm_infer(x, gamma, beta, mm, mv, EPS), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", [ref, nb], ids=["reference", "numba"])
@pytest.mark.parametrize("value", [0.1, 1234.567])
def test_constant_channel(impl, value):
    x, gamma, beta, dy = _data((3, 6, 5, 4), 5)
    x[..., 1] = value  # not exactly representable: a plain mean of it would round
    y, mean, var, inv_std = impl.batch_norm_train(x, gamma, beta, EPS)
    assert np.isfinite(y).all() and np.isfinite(inv_std).all()
    assert var[1] == 0 and mean[1] == np.float32(value)
    assert (y[..., 1] == beta[1]).all()
    dx, dgamma, dbeta = impl.batch_norm_backward(dy, x, mean, inv_std, gamma)
    assert np.isfinite(dx).all() and np.isfinite(dgamma).all() and np.isfinite(dbeta).all()


@pytest.mark.parametrize("impl", [ref, nb], ids=["reference", "numba"])
def test_train_output_statistics(impl):
    x, gamma, beta, _ = _data((16, 8, 8, 5), 6, offset=3.0)
    y = impl.batch_norm_train(x, gamma, beta, 1e-5)[0].astype(np.float64)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), beta, atol=1e-4)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), gamma.astype(np.float64) ** 2, rtol=1e-4)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 3, 2)])
def test_reference_backward_finite_differences(shape):
    x, gamma, beta, _ = _data(shape, 7, dtype=np.float64)
    proj = np.random.default_rng(8).standard_normal(shape)

    def f():
        return np.sum(ref.batch_norm_train(x, gamma, beta, EPS)[0] * proj)

    _, mean, _, inv_std = ref.batch_norm_train(x, gamma, beta, EPS)
    dx, dgamma, dbeta = ref.batch_norm_backward(proj, x, mean, inv_std, gamma)
    check_gradient(f, dx, x)
    check_gradient(f, dgamma, gamma)
    check_gradient(f, dbeta, beta)
