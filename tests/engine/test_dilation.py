"""Dilated convolutions on the input's phases (``layers/dilation.py``) against the convolution with the zero-filled
kernel (the reference, float64), forward and backward, on every kernel set and in the bound program kernel; the
phase split and merge against their adjoints."""
import numpy as np
import pytest

from dropcore.layers import dilation
from dropcore.layers.dilation import dilated
from dropcore.ops import get_ops

# (N, H, W, C, kernel, F, rate, padding): odd sizes, both paddings, rates 2, 3 and mixed, outputs that do not fill
# the last phase, 3x3 layers whose phases run on Winograd's tiles (C, F >= 16), a 1-row kernel.
CASES = [
    (2, 9, 7, 3, (3, 3), 4, (2, 2), "same"),
    (1, 10, 11, 2, (3, 3), 5, (2, 2), "valid"),
    (3, 8, 9, 4, (2, 3), 3, (3, 2), "same"),
    (2, 12, 7, 3, (3, 2), 2, (1, 3), "valid"),
    (1, 13, 13, 16, (3, 3), 24, (2, 2), "same"),
    (2, 6, 8, 2, (1, 3), 3, (2, 2), "same"),
    (1, 16, 15, 32, (3, 3), 16, (4, 4), "same"),
]


def _data(case, dtype, seed=0):
    n, h, w, c, (kh, kw), f, _, _ = case
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, h, w, c)).astype(dtype), rng.standard_normal((kh, kw, c, f)).astype(dtype),
            rng.standard_normal(f).astype(dtype))


def _expected(case, x, w, b, relu, dy):
    """The zero-filled kernel's convolution and gradients on the reference, in float64."""
    ref, rate, padding = get_ops("reference"), case[6], case[7]
    f64 = [a.astype(np.float64) for a in (x, w, b, dy)]
    eff = dilated(f64[1], rate)
    y = ref.conv2d(f64[0], eff, f64[2], (1, 1), padding, relu)
    dx, dweff, db = ref.conv2d_backward(f64[3], f64[0], eff, (1, 1), padding, True, True, y if relu else None)
    return y, dx, dweff[::rate[0], ::rate[1]], db


@pytest.mark.parametrize("ops", ["reference", "numba", "cython"])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_phases_match_the_zero_filled_kernel(case, relu, ops):
    if ops == "cython":
        pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    x, w, b = _data(case, np.float32)
    rate, padding = case[6], case[7]
    z, backprop = dilation.forward(get_ops(ops), x, w, b, rate, padding, relu, True, True)
    dy = np.random.default_rng(1).standard_normal(z.shape).astype(np.float32)
    want = _expected(case, x, w, b, relu, dy)
    got = (z,) + backprop(dy)
    for g, e, name in zip(got, want, ("y", "dx", "dw", "db")):
        assert g.shape == e.shape, name
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-3, err_msg=name)
    assert backprop(dy)[0] is not None
    _, without_dx = dilation.forward(get_ops(ops), x, w, b, rate, padding, relu, False, True)
    assert without_dx(dy)[0] is None


@pytest.mark.parametrize("case", CASES)
def test_bound_kernel_matches_and_follows_the_weights(case):
    cy = pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    x, w, b = _data(case, np.float32, seed=2)
    rate, padding = case[6], case[7]
    run, y_shape = dilation.bind(cy, x.shape, w, b, rate, padding, True)
    for _ in range(2):  # the second time after the weights changed in place
        y = np.full(y_shape, np.nan, np.float32)
        run(x, y)
        want = _expected(case, x, w, b, True, np.zeros(y_shape, np.float32))[0]
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-3)
        w *= np.float32(-0.5)
        b += np.float32(1.0)


@pytest.mark.parametrize("case", CASES)
def test_split_and_merge_are_each_others_adjoints(case):
    """<split(x), p> == <x, merge_grad(p)> and <merge(z), g> == <z, split_grad(g)>: the backward is exact."""
    n, h, w, c, kernel, f, rate, padding = case
    geo = dilation.Phases((h, w), kernel, rate, padding)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, h, w, c))
    p = rng.standard_normal((rate[0] * rate[1] * n, geo.rows, geo.cols, c))
    np.testing.assert_allclose(np.sum(geo.split(x) * p), np.sum(x * geo.merge_grad(p)), rtol=1e-12)
    z = rng.standard_normal((rate[0] * rate[1] * n, geo.q, geo.p, f))
    g = rng.standard_normal((n, geo.oh, geo.ow, f))
    np.testing.assert_allclose(np.sum(geo.merge(z) * g), np.sum(z * geo.split_grad(g)), rtol=1e-12)
