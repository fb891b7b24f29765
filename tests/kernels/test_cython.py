"""The Cython inference kernels against the NumPy reference and the Numba kernels (same inputs, same results)."""
import numpy as np
import pytest

cy = pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")

from dropcore.kernels import activation as nb_act  # noqa: E402
from dropcore.kernels import dropout as nb_drop  # noqa: E402
from dropcore.kernels import conv as nb_conv  # noqa: E402
from dropcore.kernels import dense as nb_dense  # noqa: E402
from dropcore.kernels import norm as nb_norm  # noqa: E402
from dropcore.kernels import pool as nb_pool  # noqa: E402
from dropcore.kernels.geometry import conv_path, winograd4_pays, winograd_pays  # noqa: E402
from dropcore.kernels.threads import threads  # noqa: E402
from dropcore.kernels.reference import activation as ref_act  # noqa: E402
from dropcore.kernels.reference import dropout as ref_drop  # noqa: E402
from dropcore.kernels.reference import conv as ref_conv  # noqa: E402
from dropcore.kernels.reference import dense as ref_dense  # noqa: E402
from dropcore.kernels.reference import norm as ref_norm  # noqa: E402
from dropcore.kernels.reference import pool as ref_pool  # noqa: E402
from dropcore.kernels.reference import rng as ref_rng  # noqa: E402
from dropcore.kernels.reference.rng import dropout_key  # noqa: E402

TOL = dict(rtol=1e-4, atol=1e-5)
RNG = np.random.default_rng(7)


def _rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _close_to_both(y, ref, nb):
    # float32 sums in different orders: the absolute error grows with the size of the terms, so an output that
    # cancels to near 0 among values of 40 is compared at the scale of the output, not at its own.
    atol = TOL["atol"] * max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(y, ref, rtol=TOL["rtol"], atol=atol)
    np.testing.assert_allclose(y, nb, rtol=TOL["rtol"], atol=atol)


CONV_CASES = [  # (x shape, kernel shape, strides, padding, the path cython_ops.conv2d takes)
    ((1, 5, 5, 1), (3, 3, 1, 4), (1, 1), "valid", "direct"),
    ((2, 9, 7, 3), (3, 3, 3, 5), (1, 1), "same", "direct"),  # padded: zero-padded scratch rows
    ((3, 11, 9, 5), (3, 2, 5, 7), (2, 3), "same", "direct"),  # strides with asymmetric padding
    ((2, 10, 10, 4), (5, 5, 4, 3), (2, 2), "valid", "direct"),
    ((2, 6, 6, 8), (1, 1, 8, 6), (1, 1), "valid", "direct"),
    ((1, 28, 28, 1), (3, 3, 1, 32), (1, 1), "valid", "direct"),  # batch 1: tasks are blocks of rows
    ((9, 30, 30, 1), (5, 5, 1, 6), (1, 1), "same", "direct"),  # LeNet's first layer, whole samples per task
    ((8, 9, 40, 2), (3, 3, 2, 70), (1, 1), "same", "direct"),  # 2 column blocks (64 + 6), rows of 40 pixels
    ((2, 9, 11, 3), (3, 3, 3, 40), (1, 2), "valid", "direct"),  # 3 vectors of channels, the last masked
    ((4, 13, 13, 32), (3, 2, 32, 64), (1, 1), "valid", "implicit"),  # several rows; no padding: implicit GEMM
    ((2, 10, 9, 32), (2, 3, 32, 70), (2, 1), "valid", "implicit"),  # strides, a masked column tail
    ((2, 9, 9, 32), (3, 2, 32, 64), (1, 1), "same", "im2col"),  # padding and large weights: im2col panels
    ((3, 8, 7, 48), (3, 2, 48, 50), (2, 2), "same", "im2col"),
    # 3x3 at stride 1 with 8+ inputs and cin * cout >= 384: Winograd F(4x4, 3x3) tiles (geometry.winograd4_pays)
    ((1, 26, 26, 32), (3, 3, 32, 64), (1, 1), "valid", "winograd4"),  # mnist_cnn's second layer at batch 1
    ((4, 13, 13, 32), (3, 3, 32, 64), (1, 1), "valid", "winograd4"),  # 11 x 11 out: the last tiles 3/4 outside
    ((3, 7, 9, 17), (3, 3, 17, 70), (1, 1), "same", "winograd4"),  # padded; masked channel vectors in and out
    ((9, 16, 16, 32), (3, 3, 32, 64), (1, 1), "same", "winograd4"),  # tasks of whole tile rows
    ((7, 6, 5, 16), (3, 3, 16, 24), (1, 1), "same", "winograd4"),  # under the direct bound; tasks span samples
    ((2, 9, 9, 8), (3, 3, 8, 48), (1, 1), "valid", "winograd4"),  # 8 inputs: one vector
    ((2, 9, 9, 16), (3, 3, 16, 16), (1, 1), "same", "direct"),  # 16 -> 16 stays direct (faster at batch 64)
    # 1x1 at stride 1 with 16+ inputs and 32+ outputs: one product on the input rows in place (geometry.wide_pointwise)
    ((2, 6, 6, 160), (1, 1, 160, 96), (1, 1), "valid", "im2col"),  # beyond the direct kernel's weight bound
    ((3, 8, 7, 32), (1, 1, 32, 64), (1, 1), "same", "im2col"),  # within it
]


def _path(xs, ws, strides, padding):
    """The kernel ``cy.conv2d`` runs a layer on, on the vector targets."""
    if winograd4_pays(ws, strides, True):
        return "winograd4"
    return "winograd" if winograd_pays(ws, strides, True) else conv_path(xs[1:3], ws, strides, padding, True)


@pytest.mark.parametrize("xs,ws,strides,padding,path", CONV_CASES)
@pytest.mark.parametrize("relu", [False, True])
def test_conv2d_matches_reference_and_numba(xs, ws, strides, padding, path, relu):
    if cy.HAVE_FAST_GEMM:  # each case covers the path it names
        assert _path(xs, ws, strides, padding) == path
    x, w, b = _rand(*xs), _rand(*ws), _rand(ws[3])
    y = cy.conv2d(x, w, b, strides, padding, relu=relu)
    _close_to_both(y, ref_conv.conv2d(x, w, b, strides, padding, relu=relu),
                   nb_conv.conv2d(x, w, b, strides, padding, relu=relu))
    if relu:
        assert y.min() >= 0 and (y == 0).any()


@pytest.mark.parametrize("ws", [(3, 3, 2, 8), (3, 3, 32, 64)])
def test_conv2d_relu_keeps_nan(ws):
    """A NaN in the input reaches the outputs whose windows contain it, through the fused ReLU (never a 0). On
    F(4x4)'s tiles it reaches the whole 4x4 tile whose 6x6 input block holds it (the transforms mix the block: its
    zero coefficients still multiply a NaN), and no other tile."""
    x, w = _rand(1, 12, 12, ws[2]), _rand(*ws)
    x[0, 2, 3, 0] = np.nan
    y = cy.conv2d(x, w, None, (1, 1), "valid", relu=True)
    expected = np.isnan(ref_conv.conv2d(x, w, None, (1, 1), "valid", relu=True))
    assert expected.any()
    if cy.HAVE_FAST_GEMM and winograd4_pays(ws, (1, 1), True):
        expected[0, :4, :4] = True  # tile (0, 0): input rows and columns 0..5 hold (2, 3); tile (0, 1) starts at 4
    np.testing.assert_array_equal(np.isnan(y), expected)


def test_conv2d_without_bias():
    x, w = _rand(2, 8, 8, 3), _rand(3, 3, 3, 4)
    _close_to_both(cy.conv2d(x, w, None, (1, 1), "same"), ref_conv.conv2d(x, w, None, (1, 1), "same"),
                   nb_conv.conv2d(x, w, None, (1, 1), "same"))


CONV_POOL_CASES = [  # (x shape, kernel shape, strides, padding, pool): the convolution and the pool in one pass
    ((9, 28, 28, 1), (5, 5, 1, 6), (1, 1), "same", (2, 2)),  # LeNet: direct, padded, whole samples per task
    ((1, 32, 32, 3), (3, 3, 3, 64), (1, 1), "valid", (2, 2)),  # cifar at batch 1: bands of rows, odd 15x15 out
    ((2, 15, 15, 64), (3, 3, 64, 64), (1, 1), "valid", (2, 2)),  # F(4x4), the 13th row and column dropped
    ((1, 26, 26, 32), (3, 3, 32, 64), (1, 1), "valid", (2, 2)),  # mnist_cnn at batch 1: F(4x4), 4 windows a tile
    ((5, 10, 10, 16), (3, 3, 16, 32), (1, 1), "same", (2, 2)),  # F(4x4): 5 x 5 pooled, tasks span samples
    ((2, 15, 15, 40), (3, 2, 40, 64), (1, 1), "valid", (2, 2)),  # implicit GEMM, the 13th row dropped
    ((3, 11, 13, 2), (3, 3, 2, 70), (2, 1), "same", (2, 3)),  # strided, two column blocks, a 2x3 pool
]


@pytest.mark.parametrize("xs,ws,strides,padding,pool", CONV_POOL_CASES)
@pytest.mark.parametrize("relu", [False, True])
def test_conv2d_max_pool_matches_the_two_kernels(xs, ws, strides, padding, pool, relu):
    x, w, b = _rand(*xs), _rand(*ws), _rand(ws[3])
    kernel = cy.conv2d_max_pool_kernel(x.shape, w, b, strides, padding, relu, pool)
    # one pass on dropcore's own kernels (avx512, avx2), and on Winograd's tiles for 3x3 stride-1 layers and 2x2 pools
    if not (cy.HAVE_FAST_GEMM or (tuple(pool) == (2, 2) and winograd_pays(ws, strides, cy._gemm.HAVE_WINOGRAD))):
        assert kernel is None
        return
    run, shape = kernel
    y = np.full(shape, np.nan, dtype=np.float32)
    run(x, y)
    ref = ref_pool.max_pool2d(ref_conv.conv2d(x, w, b, strides, padding, relu=relu), pool, pool, "valid")
    separate = cy.max_pool2d(cy.conv2d(x, w, b, strides, padding, relu=relu), pool, pool, "valid")
    np.testing.assert_array_equal(y, separate)  # the same sums: bit-identical to the separate kernels
    atol = TOL["atol"] * max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(y, ref, rtol=TOL["rtol"], atol=atol)


def test_conv2d_max_pool_declines_im2col_layers():
    """A padded layer with large weights runs on im2col panels, which the fused kernel does not cover."""
    assert cy.conv2d_max_pool_kernel((2, 9, 9, 32), _rand(3, 2, 32, 64), None, (1, 1), "same", True, (2, 2)) is None


@pytest.mark.skipif(not cy._gemm.HAVE_WINOGRAD, reason="Winograd's tiles are on the avx512 and avx2 kernels only")
@pytest.mark.parametrize("pool", [None, (2, 2)])
def test_winograd_rows_do_not_depend_on_the_batch_or_the_threads(pool):
    """Each F(2x2) tile is computed alone: a sample's output is the same in any batch, on any number of threads
    (what dynamic batching and a sweep's workers rely on), and closer to float64 sums than the direct float32 ones.
    (Inference runs such layers on F(4x4) now, tests/kernels/test_winograd4.py; training's pooled forward and the
    gradients keep F(2x2).)"""
    x, w, b = _rand(9, 16, 15, 32), _rand(3, 3, 32, 64) / 17, _rand(64)
    u = np.empty((16, 32, 64), np.float32)
    cy._gemm.winograd_weights(w, u)

    def run(xs, t):
        y = np.empty((len(xs), 8, 7, 64) if pool else (len(xs), 16, 15, 64), dtype=np.float32)
        with threads(t, "openmp", exact=True):
            cy._gemm.conv2d_winograd(xs, u, b, True, 1, 1, 16, 15, y, True, pool is not None)
        return y

    whole = run(x, 2)
    np.testing.assert_array_equal(whole, run(x, 1))
    for i in (0, 4, 8):
        np.testing.assert_array_equal(run(x[i:i + 1], 2), whole[i:i + 1])
    exact = ref_conv.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), (1, 1), "same", True)
    if pool is not None:
        exact = ref_pool.max_pool2d(exact, pool, pool, "valid")
    scale = np.abs(exact).max()
    assert np.abs(whole - exact).max() / scale < 1e-6


POOL_CASES = [((1, 5, 5, 2), (2, 2), (2, 2), "valid"), ((2, 7, 9, 3), (3, 3), (2, 2), "same"),
              ((3, 6, 5, 4), (3, 2), (1, 3), "same"), ((2, 8, 8, 1), (2, 3), (1, 1), "valid"),
              ((2, 6, 6, 16), (2, 2), (2, 2), "valid"),  # one full vector of channels
              ((2, 7, 6, 70), (3, 3), (2, 2), "same")]  # 64 channels in four vectors, then 6 in a masked one


@pytest.mark.parametrize("xs,pool,strides,padding", POOL_CASES)
def test_pools_match_reference_and_numba(xs, pool, strides, padding):
    x = _rand(*xs)
    _close_to_both(cy.max_pool2d(x, pool, strides, padding), ref_pool.max_pool2d(x, pool, strides, padding),
                   nb_pool.max_pool2d(x, pool, strides, padding))
    _close_to_both(cy.avg_pool2d(x, pool, strides, padding), ref_pool.avg_pool2d(x, pool, strides, padding),
                   nb_pool.avg_pool2d(x, pool, strides, padding))


@pytest.mark.parametrize("c,k", [(1, 0), (40, 37), (70, 66)])
def test_max_pool_propagates_nan(c, k):
    x = _rand(1, 4, 4, c)
    x[0, 1, 1, k] = np.nan
    y = cy.max_pool2d(x, (2, 2), (2, 2), "valid")
    expected = np.zeros(y.shape, dtype=bool)
    expected[0, 0, 0, k] = True  # only the window holding it, only its channel
    np.testing.assert_array_equal(np.isnan(y), expected)


# Global pools: odd H and W, C not a multiple of 16 (a masked vector tail), N = 1, a 1x1 map, and batches past
# SERIAL_WORK (16384 element operations) so that an OpenMP team splits the samples.
GLOBAL_POOL_SHAPES = [(1, 1, 1, 1), (2, 7, 9, 3), (1, 7, 7, 70), (3, 5, 4, 16), (4, 3, 3, 300), (16, 7, 9, 70),
                      (64, 7, 7, 64)]


@pytest.mark.parametrize("xs", GLOBAL_POOL_SHAPES)
def test_global_pools_match_reference_and_numba(xs):
    x = _rand(*xs)
    y = cy.global_avg_pool2d(x)
    assert y.shape == (xs[0], xs[3]) and y.dtype == np.float32
    _close_to_both(y, ref_pool.global_avg_pool2d(x), nb_pool.global_avg_pool2d(x))
    np.testing.assert_allclose(y, ref_pool.global_avg_pool2d(x.astype(np.float64)), rtol=1e-6,
                               atol=1e-6 * np.abs(x).max())
    y = cy.global_max_pool2d(x)
    np.testing.assert_array_equal(y, ref_pool.global_max_pool2d(x))  # a max is exact
    np.testing.assert_array_equal(y, nb_pool.global_max_pool2d(x))


@pytest.mark.parametrize("average", [False, True])
def test_global_pool_kernel_fills_preallocated_output(average):
    xs = (5, 6, 7, 40)
    run, shape = cy.global_pool2d_kernel(xs, average)
    assert shape == (5, 40)
    expected = ref_pool.global_avg_pool2d if average else ref_pool.global_max_pool2d
    y = np.full(shape, np.nan, dtype=np.float32)  # every element must be overwritten
    for _ in range(2):  # bound once, run on successive batches into the same output
        x = _rand(*xs)
        run(x, y)
        np.testing.assert_allclose(y, expected(x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("c,k", [(1, 0), (40, 37), (70, 66)])
@pytest.mark.parametrize("pos", [(0, 0), (2, 1), (3, 4)])
def test_global_max_pool_propagates_nan(c, k, pos):
    x = _rand(2, 4, 5, c)
    x[1, pos[0], pos[1], k] = np.nan  # at the first, a middle and the last position of its channel
    y = cy.global_max_pool2d(x)
    expected = np.zeros(y.shape, dtype=bool)
    expected[1, k] = True  # only its sample, only its channel
    np.testing.assert_array_equal(np.isnan(y), expected)


def test_global_pools_do_not_depend_on_thread_count():
    x = _rand(33, 7, 7, 70)  # past SERIAL_WORK: the samples are split between the threads
    runs = []
    for n in (1, 2, 3):
        with threads(n, "openmp", exact=True):
            runs.append((cy.global_avg_pool2d(x), cy.global_max_pool2d(x)))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


def test_random_bits_match_reference_hash():
    k0, k1 = dropout_key(2024, 3, 5)
    np.testing.assert_array_equal(cy._ew.random_bits(5000, k0, k1), ref_rng.random_bits(5000, (k0, k1)))


@pytest.mark.parametrize("shape", [(1, 7), (3, 5, 5, 4), (2, 33, 17, 3), (1, 40000)])
@pytest.mark.parametrize("rate", [0.25, 0.5, 0.9])
@pytest.mark.parametrize("per_channel", [False, True])
def test_dropout_masks_bit_identical(shape, rate, per_channel):
    x, key = _rand(*shape), dropout_key(11, 2, 1)
    for fn in ("dropout", "relu_dropout"):
        y = getattr(cy, fn)(x, rate, key, per_channel)
        np.testing.assert_array_equal(y, getattr(ref_drop, fn)(x, rate, key, per_channel))
        np.testing.assert_array_equal(y, getattr(nb_drop, fn)(x, rate, key, per_channel))


def test_dropout_mask_general_noise_shape():
    key = dropout_key(5, 0, 2)
    np.testing.assert_array_equal(cy.dropout_mask((3, 1, 4, 2), 0.3, key),
                                  ref_drop.dropout_mask((3, 1, 4, 2), 0.3, key))


def test_relu_softmax_sigmoid():
    x = _rand(5, 3, 11) * 20
    np.testing.assert_array_equal(cy.relu(x), ref_act.relu(x))
    _close_to_both(cy.softmax(x), ref_act.softmax(x), nb_act.softmax(x))
    _close_to_both(cy.sigmoid(x), ref_act.sigmoid(x), nb_act.sigmoid(x))
    np.testing.assert_allclose(cy.softmax(x).sum(-1), 1, rtol=1e-5)


# Small batches split the columns into blocks of about 64 ((7, 33, 10), (8, 50, 200); on BLAS they run one
# matrix-vector product per row up to GEMV_ROWS = 8 rows, and so do (1, 300, 129) and (5, 700, 256)); on
# dropcore's own GEMM (avx512, avx2) batches up to SPLIT_K_ROWS split the rows of w (see test_dense_split_k_*); 130
# and 300 rows split the rows of x.
@pytest.mark.parametrize("n,k,m", [(1, 5, 3), (7, 33, 10), (130, 64, 17), (1, 300, 129), (3, 40, 100), (300, 20, 70),
                                   (5, 700, 256), (8, 50, 200)])
@pytest.mark.parametrize("relu", [False, True])
def test_dense_matches_reference_and_numba(n, k, m, relu):
    x, w, b = _rand(n, k), _rand(k, m), _rand(m)
    _close_to_both(cy.dense(x, w, b, relu=relu), ref_dense.dense(x, w, b, relu=relu),
                   nb_dense.dense(x, w, b, relu=relu))
    _close_to_both(cy.dense(x, w, None), ref_dense.dense(x, w, None), nb_dense.dense(x, w, None))


@pytest.mark.skipif(not cy.HAVE_FAST_GEMM, reason="the split over w's rows is on dropcore's own GEMM (avx512, avx2); "
                    "this variant is generic")
@pytest.mark.parametrize("k,m", [(5, 3), (128, 64), (129, 17), (300, 129), (9216, 128), (1000, 10)])
@pytest.mark.parametrize("relu", [False, True])
def test_dense_split_k_has_the_bits_of_the_whole_product(k, m, relu):
    """Small batches sum a partial product per block of w's rows and add them in order: the same bits as the GEMM
    over the whole K (then bias and ReLU), as each row of a large batch, on any number of threads."""
    from dropcore.kernels.isa import gemm

    big, w, b = _rand(40, k), _rand(k, m), _rand(m)
    whole = gemm.matmul(big, w) + b
    whole = np.maximum(whole, 0) if relu else whole
    np.testing.assert_array_equal(cy.dense(big, w, b, relu=relu), whole)  # 40 rows: split over the columns
    for n in range(1, gemm.SPLIT_K_ROWS + 1):
        for t in (1, 2, 3):
            with threads(t, "openmp", exact=True):
                np.testing.assert_array_equal(cy.dense(big[:n], w, b, relu=relu), whole[:n])


def test_dense_split_k_threads_follow_the_bytes_of_w():
    """A memory-bound product gets a thread per GRAIN_BYTES of weights (capped by its blocks of rows and the
    threads there are), not per its few flops."""
    from dropcore.kernels.isa import gemm

    if not cy.HAVE_FAST_GEMM:
        pytest.skip("the split over w's rows is on dropcore's own GEMM (avx512, avx2); this variant is generic")
    most = gemm.split_k_threads(10**6, 256, 1)  # every thread this process may use
    assert most >= 1
    assert gemm.split_k_threads(9216, 128, 1) == min(most, 18)  # 4.7 MB / 256 KiB
    assert gemm.split_k_threads(5, 3, 1) == 1  # one block
    assert gemm.split_k_threads(128 * 3, 10, 1) == 1  # 15 KB: not worth a second thread


@pytest.mark.parametrize("shape", [(1, 3), (4, 5, 5, 6)])
def test_batch_norm_infer(shape):
    c = shape[-1]
    x, gamma, beta, mean = _rand(*shape), _rand(c), _rand(c), _rand(c)
    var = np.abs(_rand(c)) + 0.1
    eps = np.float32(1e-3)
    _close_to_both(cy.batch_norm_infer(x, gamma, beta, mean, var, eps),
                   ref_norm.batch_norm_infer(x, gamma, beta, mean, var, eps),
                   nb_norm.batch_norm_infer(x, gamma, beta, mean, var, eps))


def test_results_do_not_depend_on_thread_count():
    x, w, b = _rand(5, 17, 15, 16), _rand(3, 3, 16, 24), _rand(24)
    key = dropout_key(1, 0, 0)
    wd = _rand(8 * 7 * 24, 9)  # the flattened (8, 7, 24) maps below
    runs = []
    for n in (1, 2, 3):
        with threads(n, "openmp", exact=True):
            h = cy.conv2d(x, w, b, (1, 1), "same", relu=True)
            p = cy.max_pool2d(h, (2, 2), (2, 2), "valid")
            d = cy.relu_dropout(cy.avg_pool2d(p, (2, 2), (1, 1), "same"), 0.5, key, True)
            flat = d.reshape(len(d), -1)
            runs.append([h, p, d, cy.softmax(cy.dense(flat, wd, b[:9], relu=True))])
    for other in runs[1:]:
        for a, b_ in zip(runs[0], other):
            np.testing.assert_array_equal(a, b_)


def test_mismatched_operands_raise_before_any_kernel_runs():
    """The C kernels trust their shapes (a wrong one reads out of bounds), so the bound kernels check them."""
    with pytest.raises(ValueError, match="dense: x has 12 features, w has 10 rows"):
        cy.dense(_rand(3, 12), _rand(10, 4), None)
    with pytest.raises(ValueError, match="conv2d: x has 3 channels, w takes 2"):
        cy.conv2d(_rand(1, 6, 6, 3), _rand(3, 3, 2, 4), None, (1, 1), "valid")


def test_cython_kernel_set_uses_the_cython_forward_kernels():
    from dropcore.ops import get_ops

    ops = get_ops("cython")
    assert ops.name == "cython"
    for name in ("conv2d", "dense", "max_pool2d", "avg_pool2d", "relu", "relu_dropout", "softmax", "batch_norm_infer",
                 "global_avg_pool2d", "global_max_pool2d"):
        assert getattr(ops, name) is getattr(cy, name)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6, 7, 13, 100])
@pytest.mark.parametrize("n", [1, 3, 5, 6, 7, 10, 12, 16, 17, 23, 33, 64, 65, 130])  # every tail of 8 and 16 lanes
@pytest.mark.parametrize("k", [1, 5, 127, 128, 129, 300])
def test_gemm_matches_numpy(m, n, k):
    """The GEMM of the conv and dense kernels (dropcore's own on avx512 and avx2): every tail of its tiles (6 x 64 on
    AVX-512; 6 x 16 up to 1 x 64 on AVX2) and 128-deep K blocks, against float64 NumPy; also as the Numba kernels call
    it (transposed, accumulating)."""
    from dropcore.kernels import blas
    from dropcore.kernels.isa import gemm as _cy_gemm  # the compiled variant in use

    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a, b = _rand(m, k), _rand(k, n)
    exact = a.astype(np.float64) @ b
    scale = np.abs(a).astype(np.float64) @ np.abs(b)  # the error bound grows with the sum of |terms|
    np.testing.assert_array_less(np.abs(_cy_gemm.matmul(a, b) - exact), 1e-6 * k * scale + 1e-30)
    out = np.empty((m, n), np.float32)
    blas.matmul(a, b, out, blas.HAVE_FAST_GEMM)
    np.testing.assert_array_less(np.abs(out - exact), 1e-6 * k * scale + 1e-30)
    # c += a2.T @ b2 with a2 (m x k), b2 (m x n): the weight-gradient product of the convolution backward.
    a2, b2 = _rand(m, k), _rand(m, n)
    c0 = rng.standard_normal((k, n)).astype(np.float32)
    acc = c0.copy()
    blas.matmul_tn_add(a2, b2, acc, np.empty_like(acc), blas.HAVE_FAST_GEMM)
    exact = c0 + a2.T.astype(np.float64) @ b2
    scale = np.abs(c0) + np.abs(a2.T).astype(np.float64) @ np.abs(b2)
    np.testing.assert_array_less(np.abs(acc - exact), 1e-6 * m * scale + 1e-30)


@pytest.mark.skipif(not cy.HAVE_FAST_GEMM, reason="the generic variant multiplies on BLAS, whose sums depend on the "
                    "rows it is given; dropcore's own GEMM is on avx512 and avx2")
@pytest.mark.parametrize("n, k", [(10, 300), (130, 9216 // 8), (64, 129)])
def test_gemm_rows_do_not_depend_on_the_rows_beside_them(n, k):
    """A row of the product has the same bits whatever rows are multiplied with it: every row count takes another
    register tile (on AVX2 also another width), and each must form the contract's sums (k ascending in blocks)."""
    from dropcore.kernels.isa import gemm as _cy_gemm

    a, b = _rand(20, k), _rand(k, n)
    whole = _cy_gemm.matmul(a, b)
    for start in range(0, 20, 3):
        for rows in range(1, 8):
            part = a[start:start + rows]
            np.testing.assert_array_equal(_cy_gemm.matmul(np.ascontiguousarray(part), b),
                                          whole[start:start + len(part)])


@pytest.mark.parametrize("path", ["im2col", "direct", "winograd4"])
def test_bound_convolutions_check_their_arrays(path):
    """The convolution kernels take plain arrays (no typed memoryviews: ~0.3 us each per call) and check them as a
    memoryview would: float32, C-contiguous, the right rank, a writable output; the error names the argument."""
    cin, cout, k = {"im2col": (32, 64, 1), "direct": (3, 8, 3), "winograd4": (32, 32, 3)}[path]
    shape = (1, 8, 8, cin)
    w, b = _rand(k, k, cin, cout), _rand(cout)
    run, y_shape = cy.conv2d_kernel(shape, w, b, (1, 1), "same", True)
    assert run.__code__.co_names[-1] == {"im2col": "conv2d_forward", "direct": "conv2d_direct",
                                         "winograd4": "conv2d_winograd4"}[path] or not cy.HAVE_FAST_GEMM
    x, y = _rand(*shape), np.empty(y_shape, np.float32)
    run(x, y)
    ref = ref_conv.conv2d(x, w, b, (1, 1), "same", True)
    np.testing.assert_allclose(y, ref, rtol=TOL["rtol"], atol=TOL["atol"] * np.abs(ref).max())  # at its scale
    # an input that does not start on a float's boundary (as Dask unpickles them) is read all the same
    odd = np.empty(x.nbytes + 1, np.uint8)[1:].view(np.float32).reshape(x.shape)
    odd[...] = x
    assert not odd.flags.aligned
    y2 = np.empty(y_shape, np.float32)
    run(odd, y2)
    np.testing.assert_array_equal(y2, y)
    with pytest.raises(ValueError, match=r": x: expected a C-contiguous float32 array of 4 dimensions, got float64"):
        run(x.astype(np.float64), y)
    with pytest.raises(ValueError, match=r": x: .*\(C-contiguous False"):
        run(np.asfortranarray(x), y)
    with pytest.raises(ValueError, match=r": y: expected a C-contiguous writable float32 array .* writable False"):
        y.flags.writeable = False
        run(x, y)
    with pytest.raises(ValueError, match=rf": x: expected .* 4 dimensions, got float32 of shape \(8, 8, {cin}\)"):
        run(x[0], np.empty(y_shape, np.float32))
    with pytest.raises(TypeError):
        run(None, np.empty(y_shape, np.float32))


def test_depthwise_kernel_checks_its_arrays():
    from dropcore.kernels.cython_depthwise import depthwise_conv2d_kernel

    run, y_shape = depthwise_conv2d_kernel((2, 7, 7, 4), _rand(3, 3, 4, 1), None, (1, 1), "same", False, (1, 1))
    with pytest.raises(ValueError, match=r"depthwise_forward: x: expected .* got float64"):
        run(np.zeros((2, 7, 7, 4)), np.empty(y_shape, np.float32))


def test_element_wise_forwards_take_any_shape_and_check_sizes():
    """softmax_forward, relu_forward and act_forward run on arrays of any shape (no reshape per call) as they do
    on the rows of the flattened array, and refuse an output of another size or last axis."""
    from dropcore.kernels.compiled import elementwise as ew

    x = _rand(2, 3, 5, 7)
    y = np.empty_like(x)
    ew.softmax_forward(x, y)
    np.testing.assert_array_equal(y.reshape(-1, 7), cy.softmax(x.reshape(-1, 7)))
    ew.relu_forward(x, y)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    run, _ = cy.activation_kernel(x.shape, "tanh")
    run(x, y)
    np.testing.assert_allclose(y, np.tanh(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"softmax_forward: y has shape \(2, 3, 7, 5\), x \(2, 3, 5, 7\)"):
        ew.softmax_forward(x, np.empty((2, 3, 7, 5), np.float32))
    with pytest.raises(ValueError, match=r"relu_forward: y has shape \(4,\), x \(2, 3, 5, 7\)"):
        ew.relu_forward(x, np.empty(4, np.float32))
    with pytest.raises(ValueError, match=r"act_forward: y: expected a C-contiguous writable float32 array"):
        ew.act_forward(x, y[..., ::2], 1, 0.0)
