"""Convolution kernels: the reference against a naive loop and finite differences, Numba against the reference."""
import numba
import numpy as np
import pytest

from dropcore.kernels import blas
from dropcore.kernels import conv as nb
from dropcore.kernels.blocking import winograd_weights_grad
from dropcore.kernels.geometry import direct_dw_pays, window_2d
from dropcore.kernels.reference import conv as ref
from dropcore.kernels.threads import threads as pool_threads
from dropcore.testing import check_gradient

# (N, H, W, Cin, kernel, Cout, strides, padding, bias, relu): kernel sizes 1, 2, 3, 5 and (2, 3); strides 1, 2,
# (2, 1); both paddings; Cin 1 and > 1; odd sizes (7x9, 5x5 stride 2 same, 6x6 stride 2 same is asymmetric).
CASES = [
    (2, 7, 9, 3, (3, 3), 4, (1, 1), "same", True, False),
    (3, 7, 9, 1, (3, 3), 5, (1, 1), "valid", False, True),
    (2, 5, 5, 2, (3, 3), 3, (2, 2), "same", True, True),
    (2, 6, 6, 3, (3, 3), 2, (2, 2), "same", False, False),
    (3, 8, 7, 4, (1, 1), 6, (1, 1), "valid", True, False),
    (2, 9, 8, 1, (1, 1), 3, (2, 2), "same", True, True),
    (2, 7, 6, 3, (2, 2), 4, (2, 2), "valid", False, True),
    (3, 6, 7, 2, (2, 2), 3, (1, 1), "same", True, False),
    (2, 9, 11, 1, (5, 5), 6, (1, 1), "same", True, True),
    (2, 11, 9, 3, (5, 5), 4, (2, 1), "valid", True, False),
    (3, 7, 9, 2, (2, 3), 5, (2, 1), "same", False, True),
    (2, 8, 9, 3, (2, 3), 3, (1, 2), "valid", True, True),
]


# Channel-rich cases: the AVX-512 GEMM's full 6x64 tile, a second 64-column block and a masked tail; without
# padding and with >= 8 channels, the implicit GEMM (no im2col), also with strides. Layers whose weights fit in L1
# (geometry.direct_conv_pays: all the small cases above) run on the direct convolution, also with padding and
# batches of 8 or more (a whole sample per task).
CASES += [
    (2, 9, 8, 16, (3, 3), 70, (1, 1), "valid", True, True),  # implicit GEMM, a second column block
    (1, 7, 7, 40, (3, 3), 64, (1, 1), "same", False, False),  # im2col panels
    (2, 10, 9, 32, (2, 3), 48, (2, 1), "valid", True, True),  # no padding, strided: the implicit GEMM
    (2, 9, 8, 1, (3, 3), 32, (1, 1), "valid", True, True),  # one channel, wide output: direct
    (9, 12, 13, 1, (5, 5), 6, (1, 1), "same", True, True),  # LeNet's first layer: direct, padded, whole samples
    (8, 7, 30, 2, (3, 3), 70, (2, 1), "same", True, False),  # direct: two column blocks, rows of 30 pixels
]
# The direct weight gradient (geometry.direct_dw_pays: the small cases above, LeNet's first layer among them) on
# LeNet's 28x28 digits at stride 2 with both paddings, channels over one vector of 8 (13), kernels of more rows
# than a tile holds (7x7) and kernel rows of more taps than a tile holds (3 channels x 5 columns).
CASES += [
    (5, 28, 28, 1, (5, 5), 6, (2, 2), "same", True, True),
    (3, 28, 28, 1, (5, 5), 6, (2, 2), "valid", False, False),
    (3, 9, 10, 2, (3, 3), 13, (2, 2), "same", True, True),
    (2, 12, 11, 1, (7, 7), 5, (1, 1), "same", False, True),
    (2, 13, 12, 3, (5, 5), 16, (1, 2), "same", True, False),
]


@pytest.fixture(autouse=True, params=["fast-gemm", "blas"] if blas.HAVE_FAST_GEMM else ["blas"])
def gemm(request, monkeypatch):
    """Every test on both kernel sets the Numba convolutions can use: dropcore's AVX-512 kernels (when built: the
    direct convolution and the GEMM) and BLAS."""
    monkeypatch.setattr(nb, "HAVE_FAST_GEMM", request.param == "fast-gemm")
    monkeypatch.setattr(nb, "HAVE_DIRECT_CONV", request.param == "fast-gemm" and blas.HAVE_DIRECT_CONV)
    # Winograd's tiles with dropcore's GEMM, and on targets where BLAS is the only GEMM (avx2) as they run there
    monkeypatch.setattr(nb, "HAVE_WINOGRAD", blas.HAVE_WINOGRAD and (request.param == "fast-gemm" or
                                                                    not blas.HAVE_FAST_GEMM))
    return request.param


def _data(case, dtype, seed):
    n, h, w, cin, (kh, kw), cout, _, _, bias, _ = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, cin)).astype(dtype)
    k = rng.standard_normal((kh, kw, cin, cout)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype) if bias else None
    return x, k, b


def _naive_conv(x, w, b, strides, padding, relu):
    """Direct 7-nested-loop convolution with TensorFlow's padding, written out independently of geometry.py."""
    n, h, wd, cin = x.shape
    kh, kw, _, cout = w.shape
    sh, sw = strides
    if padding == "valid":
        oh, ow, pt, pl = (h - kh) // sh + 1, (wd - kw) // sw + 1, 0, 0
    else:
        oh, ow = -(-h // sh), -(-wd // sw)
        pt = max((oh - 1) * sh + kh - h, 0) // 2
        pl = max((ow - 1) * sw + kw - wd, 0) // 2
    y = np.zeros((n, oh, ow, cout))
    for s in range(n):
        for oy in range(oh):
            for ox in range(ow):
                for co in range(cout):
                    acc = 0.0 if b is None else float(b[co])
                    for i in range(kh):
                        for j in range(kw):
                            for c in range(cin):
                                iy, ix = oy * sh - pt + i, ox * sw - pl + j
                                if 0 <= iy < h and 0 <= ix < wd:
                                    acc += x[s, iy, ix, c] * w[i, j, c, co]
                    y[s, oy, ox, co] = max(acc, 0.0) if relu else acc
    return y


def _close(got, want, rtol=1e-4, atol=1e-5):
    """float32 against a float64 truth; the absolute floor scales with the result's magnitude."""
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("case", CASES[:4] + CASES[8:11])
def test_reference_matches_naive_loops(case):
    x, w, b = _data(case, np.float64, 1)
    strides, padding, relu = case[6], case[7], case[9]
    np.testing.assert_allclose(ref.conv2d(x, w, b, strides, padding, relu), _naive_conv(x, w, b, strides, padding,
                                                                                          relu), rtol=1e-12,
                               atol=1e-12)


def test_same_padding_is_asymmetric_like_tensorflow():
    # 6x6, k=3, s=2, "same": out 3, total padding 1 -> 0 before, 1 after. The last output reads rows/cols 4, 5
    # and one padded zero, so it only sees kernel taps 0..1.
    x, w, _ = _data((1, 6, 6, 2, (3, 3), 3, (2, 2), "same", False, False), np.float64, 2)
    want = np.einsum("hwc,hwco->o", x[0, 4:6, 4:6], w[:2, :2])
    for mod in (ref, nb):
        xx, ww = (x, w) if mod is ref else (x.astype(np.float32), w.astype(np.float32))
        y = mod.conv2d(xx, ww, None, (2, 2), "same")
        np.testing.assert_allclose(y[0, -1, -1], want, rtol=1e-5)
        np.testing.assert_allclose(y[0, 0, 0], np.einsum("hwc,hwco->o", x[0, :3, :3], w), rtol=1e-5)


@pytest.mark.parametrize("h,w,k,strides", [(7, 9, (3, 3), (2, 2)), (5, 5, (3, 3), (2, 2)), (8, 11, (5, 2), (3, 2)),
                                           (6, 7, (1, 1), (2, 1)), (9, 4, (2, 3), (4, 3))])
def test_same_output_size_is_ceil_of_input_over_stride(h, w, k, strides):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, h, w, 2)).astype(np.float32)
    kern = rng.standard_normal(k + (2, 3)).astype(np.float32)
    want = (2, -(-h // strides[0]), -(-w // strides[1]), 3)
    assert ref.conv2d(x, kern, None, strides, "same").shape == want
    y = nb.conv2d(x, kern, None, strides, "same")
    assert y.shape == want
    dy = rng.standard_normal(want).astype(np.float32)
    dx, dw, db = nb.conv2d_backward(dy, x, kern, strides, "same", False)
    assert dx.shape == x.shape and dw.shape == kern.shape and db is None


@pytest.mark.parametrize("case", [
    (2, 4, 5, 2, (3, 3), 3, (1, 1), "valid", True, False),
    (2, 5, 5, 2, (3, 3), 2, (2, 2), "same", True, False),
    (1, 5, 4, 1, (2, 3), 2, (2, 1), "same", False, False),
])
def test_reference_backward_finite_differences(case):
    x, w, b = _data(case, np.float64, 4)
    strides, padding = case[6], case[7]
    g = np.random.default_rng(5).standard_normal(ref.conv2d(x, w, b, strides, padding).shape)

    def loss():
        return float(np.sum(ref.conv2d(x, w, b, strides, padding) * g))

    dx, dw, db = ref.conv2d_backward(g, x, w, strides, padding, b is not None)
    check_gradient(loss, dx, x)
    check_gradient(loss, dw, w)
    if b is None:
        assert db is None
    else:
        check_gradient(loss, db, b)


@pytest.mark.parametrize("case", CASES)
def test_numba_forward_matches_reference(case):
    x, w, b = _data(case, np.float32, 6)
    strides, padding, relu = case[6], case[7], case[9]
    want = ref.conv2d(x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64),
                      strides, padding, relu)
    _close(nb.conv2d(x, w, b, strides, padding, relu), want)


@pytest.mark.parametrize("case", CASES)
def test_numba_backward_matches_reference(case):
    x, w, b = _data(case, np.float32, 7)
    strides, padding, has_bias = case[6], case[7], case[8]
    y = ref.conv2d(x, w, b, strides, padding)
    dy = np.random.default_rng(8).standard_normal(y.shape).astype(np.float32)
    want = ref.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), strides, padding,
                               has_bias)
    got = nb.conv2d_backward(dy, x, w, strides, padding, has_bias)
    for g, r in zip(got[:2], want[:2]):
        _close(g, r)
    if has_bias:
        _close(got[2], want[2])
    else:
        assert got[2] is None
    # fused ReLU backward: the same as masking dy first
    yr = ref.conv2d(x, w, b, strides, padding, relu=True)
    masked = np.where(yr > 0, dy, 0).astype(np.float32)
    want_r = ref.conv2d_backward(masked.astype(np.float64), x.astype(np.float64), w.astype(np.float64), strides,
                                 padding, has_bias)
    for impl in (nb, ref):
        got_r = impl.conv2d_backward(dy, x, w, strides, padding, has_bias, relu_output=yr)
        for g, r in zip(got_r, want_r):
            if r is not None:
                _close(g, r)
    # without the input gradient (first layer): the same weight gradients, dx skipped
    for impl in (nb, ref):
        dx, dw, db = impl.conv2d_backward(dy, x, w, strides, padding, has_bias, need_dx=False)
        assert dx is None
        _close(dw, want[1])
        if has_bias:
            _close(db, want[2])


@pytest.mark.parametrize("panel_bytes", [1, 3000])
def test_numba_row_blocks_and_uneven_chunks(monkeypatch, panel_bytes):
    # A tiny panel budget forces the im2col panel to cover one (or a few, unevenly) output rows at a time, and an
    # odd batch splits unevenly over the threads; results must not change.
    monkeypatch.setattr(nb, "PANEL_BYTES", panel_bytes)
    case = (5, 11, 10, 3, (3, 3), 4, (1, 1), "same", True, True)
    x, w, b = _data(case, np.float32, 9)
    x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    _close(nb.conv2d(x, w, b, (1, 1), "same", relu=True), ref.conv2d(x64, w64, b64, (1, 1), "same", relu=True))
    dy = np.random.default_rng(10).standard_normal((5, 11, 10, 4)).astype(np.float32)
    want = ref.conv2d_backward(dy.astype(np.float64), x64, w64, (1, 1), "same", True)
    for g, r in zip(nb.conv2d_backward(dy, x, w, (1, 1), "same", True), want):
        _close(g, r)


@pytest.mark.parametrize("n,threads", [(1, 2), (1, 1), (3, 2)])
def test_numba_forward_splits_rows_for_small_batches(n, threads):
    # Fewer samples than threads: the forward splits output rows across threads; every row is written once.
    case = (n, 7, 9, 3, (3, 3), 5, (1, 1), "same", True, True)
    x, w, b = _data(case, np.float32, 11)
    with pool_threads(min(threads, numba.config.NUMBA_NUM_THREADS)):
        got = nb.conv2d(x, w, b, (1, 1), "same", relu=True)
    x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    _close(got, ref.conv2d(x64, w64, b64, (1, 1), "same", relu=True))


@pytest.mark.parametrize("padding,rows", [("same", (2, 7)), ("valid", (0, 3))])
def test_direct_conv_fallback_matches_reference(padding, rows):
    """The NumPy stand-in registered behind the direct convolution's symbol when the extension has no AVX-512
    kernels (so that cached Numba code still links) computes the rows it is asked for."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 9, 8, 2)).astype(np.float32)
    w = rng.standard_normal((3, 3, 2, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    expected = ref.conv2d(x, w, b, (1, 1), padding, relu=True)
    oy0, oy1 = rows
    ow = expected.shape[2]
    y = np.zeros((oy1 - oy0, ow, 5), dtype=np.float32)
    pad = 1 if padding == "same" else 0
    blas._direct_fallback(x.ctypes.data, 9, 8, 2, w.ctypes.data, 3, 3, 5, b.ctypes.data, 1, 1, pad, pad, ow, 1, oy0,
                          oy1, y.ctypes.data, 0, 1, 1, int(padding == "same"))
    np.testing.assert_allclose(y, expected[1, oy0:oy1], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not blas.HAVE_WINOGRAD, reason="the loaded Cython variant has no Winograd kernels (generic)")
@pytest.mark.parametrize("pool", [False, True])
def test_winograd_numpy_stand_in_matches_the_c_kernel(pool):
    """Code Numba cached where the Winograd kernel was loaded links to a NumPy stand-in elsewhere: it keeps the
    contract (outputs, pooled maxima, taps)."""
    import ctypes

    from dropcore.kernels.isa import gemm

    rng = np.random.default_rng(3)
    (n, h, w, cin, cout), (pt, pl) = (2, 9, 11, 5, 7), ((0, 0) if pool else (1, 1))
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    u = np.empty((16, cin, cout), np.float32)
    gemm.winograd_weights(rng.standard_normal((3, 3, cin, cout)).astype(np.float32), u)
    b = rng.standard_normal(cout).astype(np.float32)
    oh, ow = (h - 2, w - 2) if pool else (h, w)
    shape = (oh // 2, ow // 2, cout) if pool else (oh, ow, cout)
    th = oh // 2 if pool else (oh + 1) // 2
    c_rows = blas._WINO_PROTO(gemm.winograd_rows_address())
    for ni in range(n):
        outs = []
        for fn in (c_rows, blas._numpy_wino_rows):
            y, arg = np.zeros(shape, np.float32), np.zeros(shape, np.uint8)
            for ty0, ty1 in ((0, 2), (2, th)):  # two bands of tile rows
                scratch = np.empty(16 * (ty1 - ty0) * ((ow + 1) // 2) * (cin + cout), np.float32)
                fn(x.ctypes.data, h, w, cin, u.ctypes.data, cout, b.ctypes.data, 1, pt, pl, oh, ow, ni, ty0, ty1,
                   y.ctypes.data, int(pool), 1, scratch.ctypes.data, arg.ctypes.data, int(pool))
            outs.append((y, arg))
        (y_c, arg_c), (y_np, arg_np) = outs
        np.testing.assert_allclose(y_c, y_np, rtol=1e-5, atol=1e-5)
        assert (y_c != 0).any()
        if pool:
            np.testing.assert_array_equal(arg_c, arg_np)


@pytest.mark.skipif(not blas.HAVE_WINOGRAD, reason="the loaded Cython variant has no Winograd kernels (generic)")
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_winograd_weight_gradient_stand_in_matches_the_c_kernel_and_the_reference(padding):
    """dU from the C kernel (two bands of tile rows, both samples) and from its NumPy stand-in agree, and G^T dU G is
    the reference's weight gradient: odd output sizes leave a last tile half outside the output."""
    from dropcore.kernels import conv as nb_conv
    from dropcore.kernels.isa import gemm

    rng = np.random.default_rng(4)
    n, h, w, cin, cout = 2, 9, 11, 5, 7
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    k = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
    pt = pl = 1 if padding == "same" else 0
    oh, ow = (h, w) if padding == "same" else (h - 2, w - 2)
    dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
    th = (oh + 1) // 2
    c_rows = blas._WINO_DW_PROTO(gemm.winograd_dw_address())
    dus = []
    for fn in (c_rows, blas._numpy_wino_dw_rows):
        du = np.zeros((16, cin, cout), np.float32)
        for ni in range(n):
            for ty0, ty1 in ((0, 2), (2, th)):
                scratch = np.empty(16 * (ty1 - ty0) * ((ow + 1) // 2) * (cin + cout), np.float32)
                fn(x.ctypes.data, h, w, cin, dy[ni].ctypes.data, cout, pt, pl, oh, ow, ni, ty0, ty1, du.ctypes.data,
                   scratch.ctypes.data)
        dus.append(du)
    np.testing.assert_allclose(dus[0], dus[1], rtol=1e-5, atol=1e-4)
    want = ref.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), k.astype(np.float64), (1, 1), padding,
                               False, need_dx=False)[1]
    _close(winograd_weights_grad(dus[0].reshape(4, 4, cin, cout)), want)


def test_cases_cover_the_direct_weight_gradient():
    """Cases that take the direct weight gradient: LeNet's first layer, strides 1 and 2, both paddings, with and
    without a bias (test_conv_pool.py's cases add the pooled ones), and cases that do not."""
    taken = [c for c in CASES if direct_dw_pays((*c[4], c[3], c[5]))]
    assert (9, 12, 13, 1, (5, 5), 6, (1, 1), "same", True, True) in taken
    assert {(c[6][0], c[7]) for c in taken} >= {(1, "same"), (1, "valid"), (2, "same"), (2, "valid")}
    assert {c[8] for c in taken} == {True, False} and len(taken) < len(CASES)


def _naive_dw(x, g, kh, kw, strides, pads):
    """dW[i, j, ci, co] = sum over samples and outputs of x[n, oy*sh + i - pt, ox*sw + j - pl, ci] * g[n, oy, ox, co]
    (zero outside the input) and db = the sum of g, in float64 loops written out independently of the kernels."""
    n, h, wd, cin = x.shape
    _, oh, ow, cout = g.shape
    dw = np.zeros((kh, kw, cin, cout))
    for s in range(n):
        for oy in range(oh):
            for ox in range(ow):
                for i in range(kh):
                    for j in range(kw):
                        iy, ix = oy * strides[0] + i - pads[0], ox * strides[1] + j - pads[1]
                        if 0 <= iy < h and 0 <= ix < wd:
                            dw[i, j] += np.outer(x[s, iy, ix], g[s, oy, ox])
    return dw, g.sum(axis=(0, 1, 2), dtype=np.float64)


@pytest.mark.parametrize("shape,kernel,strides,padding", [
    ((2, 28, 28, 1), (5, 5, 1, 6), (1, 1), "same"),  # LeNet's first layer: one tile on AVX-512, three on AVX2
    ((2, 28, 28, 1), (5, 5, 1, 6), (2, 2), "valid"),
    ((2, 11, 13, 3), (7, 2, 3, 40), (2, 1), "same"),  # row groups, two blocks of channels and a partial vector
    ((1, 9, 10, 6), (5, 5, 6, 16), (1, 2), "valid"),  # LeNet's second layer: 30 taps a kernel row
    ((2, 6, 5, 2), (3, 3, 2, 9), (2, 2), "same"),
])
def test_direct_weight_gradient_matches_naive_loops(shape, kernel, strides, padding):
    """The C kernel (dc_conv_dw_rows_flagged, through the address the Numba kernels link to) against naive loops,
    called per sample on two blocks of output rows added into the same dW and db, and its NumPy stand-in too. The
    kernel takes any shape; geometry.direct_dw_pays chooses which layers it runs."""
    from dropcore.kernels.isa import gemm

    rng = np.random.default_rng(5)
    kh, kw, cin, cout = kernel
    x = rng.standard_normal(shape).astype(np.float32)
    oh, ow, (pt, _), (pl, _) = window_2d(shape[1], shape[2], (kh, kw), strides, padding)
    g = rng.standard_normal((shape[0], oh, ow, cout)).astype(np.float32)
    want_dw, want_db = _naive_dw(x.astype(np.float64), g.astype(np.float64), kh, kw, strides, (pt, pl))
    address = gemm.direct_dw_address()
    kernels = [blas._DW_PROTO(address)] if address else []
    for fn in kernels + [blas._dw_fallback]:
        dw, db = np.zeros(kernel, np.float32), np.zeros(cout, np.float32)
        for s in range(shape[0]):
            for oy0, oy1 in ((0, oh // 2), (oh // 2, oh)):
                pad = np.full(max(1, 2 * (oy1 - oy0 + kh) * (shape[2] + 2 * kw) * cin), np.nan, np.float32)
                fn(x.ctypes.data, shape[1], shape[2], cin, g[s, oy0:].ctypes.data, kh, kw, cout, *strides, pt, pl, ow,
                   s, oy0, oy1, dw.ctypes.data, db.ctypes.data, pad.ctypes.data, 1, int(padding == "same"))
        _close(dw, want_dw)
        _close(db, want_db)
