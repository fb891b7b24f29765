"""Dense kernels: Numba vs the NumPy reference, and the reference backward vs finite differences."""
import numpy as np
import pytest

from dropcore.testing import check_gradient
from dropcore.kernels import blas
from dropcore.kernels import dense as nb
from dropcore.kernels.reference import dense as ref

# (N, in, out): every split of dense.py. Serial (BLAS): batch 1, tiny batches up to the one-row boundary, odd
# sizes; serial on the AVX-512 GEMM when built: (9, 50, 10), (77, 129, 65), (300, 40, 64). Larger: one-row
# blocks (5, 2000, 500); column blocks of w and of dx, uneven (40, 1100, 129); columns too few to split
# (200, 1100, 20); row blocks when x is the larger operand (600, 100, 80); dx by rows (300, 40, 64). Mid-sized
# backward passes on the AVX-512 GEMM run dx and dw side by side: (77, 129, 65), (300, 40, 64), (32, 400, 120).
SHAPES = [(1, 37, 5), (3, 100, 33), (nb.SMALL_BATCH, 64, 17), (nb.SMALL_BATCH + 1, 50, 10), (5, 2000, 500),
          (77, 129, 65), (64, 1000, 130), (40, 1100, 129), (200, 1100, 20), (300, 40, 64), (600, 100, 80),
          (32, 400, 120)]


@pytest.fixture(autouse=True, params=["fast-gemm", "blas"] if blas.HAVE_FAST_GEMM else ["blas"])
def gemm(request, monkeypatch):
    """Every test on both GEMMs the Numba kernels can use: dropcore's AVX-512 kernels (when built) and BLAS."""
    monkeypatch.setattr(nb, "HAVE_FAST_GEMM", request.param == "fast-gemm")
    return request.param


def _data(shape, seed, dtype=np.float32):
    n, k, o = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k)).astype(dtype)
    w = (rng.standard_normal((k, o)) / np.sqrt(k)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    dy = rng.standard_normal((n, o)).astype(dtype)
    return x, w, b, dy


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_forward_matches_reference(shape, relu, with_bias):
    x, w, b, _ = _data(shape, 1)
    b = b if with_bias else None
    got = nb.dense(x, w, b, relu)
    assert got.dtype == np.float32 and got.shape == (shape[0], shape[2])
    np.testing.assert_allclose(got, ref.dense(x, w, b, relu), rtol=1e-4, atol=1e-5)
    if relu:
        assert (got >= 0).all() and (got == 0).any()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("has_bias", [False, True])
def test_backward_matches_reference(shape, has_bias):
    x, w, _, dy = _data(shape, 2)
    dx, dw, db = nb.dense_backward(dy, x, w, has_bias)
    rdx, rdw, rdb = ref.dense_backward(dy, x, w, has_bias)
    np.testing.assert_allclose(dx, rdx, rtol=1e-4, atol=1e-5)
    # dw sums N products of O(1) terms
    np.testing.assert_allclose(dw, rdw, rtol=1e-4, atol=1e-5 * np.sqrt(shape[0]))
    if has_bias:
        np.testing.assert_allclose(db, rdb, rtol=1e-4, atol=1e-5 * np.sqrt(shape[0]))
    else:
        assert db is None and rdb is None


@pytest.mark.parametrize("shape", [(1, 3, 2), (4, 5, 3)])
@pytest.mark.parametrize("relu", [False, True])
def test_reference_backward_finite_differences(shape, relu):
    x, w, b, _ = _data(shape, 3, np.float64)
    proj = np.random.default_rng(4).standard_normal((shape[0], shape[2]))
    y = ref.dense(x, w, b, relu)

    def f():
        return np.sum(ref.dense(x, w, b, relu) * proj)

    # a fused ReLU is differentiated by masking dy first (what relu_backward does)
    dy = proj * (y > 0) if relu else proj
    dx, dw, db = ref.dense_backward(dy, x, w, True)
    check_gradient(f, dx, x)
    check_gradient(f, dw, w)
    check_gradient(f, db, b)


@pytest.mark.skipif(not blas.HAVE_FAST_GEMM, reason="dropcore's own GEMM is on the avx512 and avx2 targets only; "
                    "this variant is generic")
@pytest.mark.parametrize("shape", [(5, 2000, 500), (64, 1000, 130), (200, 1100, 20), (40, 1100, 129)])
def test_dx_has_the_same_bits_through_either_transposed_operand(shape, gemm):
    """dx = dy @ w.T on the GEMM, through dy.T (a batch no wider than the outputs) or through w.T (wider): the same
    products in the same order, so the same bits whichever the batch chooses."""
    x, w, b, dy = _data(shape, 5)
    blocks = nb._blocks(shape[1])
    np.testing.assert_array_equal(nb._dx_fast_t(dy, w, blocks), nb._dx_fast_cols(dy, w, blocks))
