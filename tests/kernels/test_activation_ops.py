"""The element-wise activation ops (tanh, selu, elu, leaky_relu, relu6, hard_sigmoid, hard_swish, gelu, softplus,
silu, clipped_relu, mish: every op of ``reference.activation.loop_ops``): the reference against an independent
float64 formula, each fast set against the reference over a wide range with the error bound it was measured to
hold, every backward against finite differences, NaN propagation, the Cython set bit-equal on 1 and 2 threads, and
the convolution and dense epilogues bit-equal to the stand-alone op on every kernel path.

Tolerances, measured on 300,000 inputs spanning [-20, 20] plus edge values (float32 results against the float64
reference rounded to float32):
- Numba: every element computed in float64 and rounded once: at most 0.5 ulp (tested: 1 ulp).
- Cython: Cephes's float32 polynomials for exp and tanh (vectorized, ``kernels/_act.h``: a loop of glibc's tanhf
  took 19 ns an element, this 1.0): at most 1.2 ulps (tanh), 1.6 (elu), 1.9 (selu, hard_swish) where the result
  is not near 0 (tested: 3 ulps, i.e. ``rtol = 3 * 2**-23``).
- Where the result is near 0 the error is absolute: at most 4e-7 measured for GELU (the Cython set's normal CDF is
  Numerical Recipes' erfc, 3e-6 relative in the left tail; Keras and PyTorch compute ``1 + erf(x)`` in float32,
  which cancels there), 5e-7 for SiLU and softplus (``atol`` 1e-6).
- Results below float32's normal range (exp of less than -87.3) are flushed to 0 by the Cython set's exp.
"""
import math

import numpy as np
import pytest

from dropcore.kernels.contract import by_name
from dropcore.kernels.reference import activation as ref
from dropcore.ops import get_ops
from dropcore.testing import check_gradient

ULP = 2.0**-23


def _case_params(name):
    """The contract case's parameters of op ``name`` (its literal arguments but the input)."""
    return {k: v for k, v in by_name(name).case.args.items() if k != "x"}


#: more parameter sets than the contract case's, where an op has parameters
MORE_PARAMS = {
    "elu": [{}, {"alpha": 2.5}],
    "leaky_relu": [{}, {"negative_slope": 1.5}],
    "gelu": [{"approximate": True}],
    "clipped_relu": [{}, {"max_value": 6.0}, {"negative_slope": 0.3, "threshold": 1.0}],
}
#: op -> the parameter sets tested: the contract case's first, for every op of the loops (an op added to them is
#: tested here with nothing written but its textbook formula in ``_formula``)
PARAMS = {name: [_case_params(name)] + MORE_PARAMS.get(name, []) for name in ref.loop_ops()}
#: absolute tolerance where the formula cancels near 0 (see the module docstring); mish's ``x e**x`` at x = -88,
#: 5e-37, is a normal float32 but the Cython set's e**-88 is flushed to 0 (below -87.3)
ATOL = {"gelu": 1e-6, "silu": 1e-6, "softplus": 1e-6, "mish": 1e-35}
CASES = [(name, p) for name, ps in PARAMS.items() for p in ps]


def _id(case):
    name, p = case
    return name + "".join(f"-{k}={v}" for k, v in p.items())


SA = ref.SELU_SCALE * ref.SELU_ALPHA
C = math.sqrt(2 / math.pi)


def _formula(name, v, p):
    """``name`` at the float ``v``, from its textbook definition (Python's float64 math)."""
    if math.isnan(v):
        return v
    if name == "tanh":
        return math.tanh(v)
    if name == "selu":
        return ref.SELU_SCALE * v if v > 0 else SA * math.expm1(v)
    if name == "elu":
        return v if v > 0 else p.get("alpha", 1.0) * math.expm1(v)
    if name == "leaky_relu":
        return v if v >= 0 else p.get("negative_slope", 0.2) * v
    if name == "relu6":
        return min(max(v, 0.0), 6.0)
    if name == "hard_sigmoid":
        return min(max(v / 6 + 0.5, 0.0), 1.0)
    if name == "hard_swish":
        return v * min(max(v / 6 + 0.5, 0.0), 1.0)
    if name == "gelu":
        if p.get("approximate"):
            return 0.5 * v * (1 + math.tanh(C * (v + 0.044715 * v ** 3)))
        return v * 0.5 * math.erfc(-v / math.sqrt(2))
    if name == "softplus":
        return math.log1p(math.exp(v)) if v < 30 else v + math.log1p(math.exp(-v))
    if name == "silu":
        return v / (1 + math.exp(-v)) if v > -700 else 0.0
    if name == "clipped_relu":
        hi = p.get("max_value") or math.inf
        t = p.get("threshold", 0.0)
        return min(v, hi) if v > t else p.get("negative_slope", 0.0) * (v - t)
    if name == "mish":
        return v * math.tanh(math.log1p(math.exp(v)) if v < 30 else v)
    raise AssertionError(f"no textbook formula for {name!r}: add one to _formula")


def _wide(n=40000, seed=0):
    """Normal values at several scales, a dense sweep of [-20, 20], values near 0 and the edges."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.standard_normal(n) * s for s in (0.01, 1, 4, 15)] + [
        np.linspace(-20, 20, 20001), np.linspace(-1e-3, 1e-3, 2001),
        [0.0, -0.0, 3.0, -3.0, 6.0, 0.5, 2.0, 1.0, 50.0, -50.0, 88.0, -88.0, 100.0, -100.0, 1e-30, -1e-30]])


def _sets():
    sets = ["numba"]
    try:
        import dropcore.kernels.cython_ops  # noqa: F401
        sets.append("cython")
    except ImportError:
        pass
    return sets


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_reference_is_the_float64_formula(case):
    name, p = case
    x = _wide(2000)
    expected = np.array([_formula(name, float(v), p) for v in x])
    # the tanh form of GELU, 1 + tanh(u) (Keras's, the reference's), cancels for negative x even in float64
    approximate = name == "gelu" and p.get("approximate")
    np.testing.assert_allclose(getattr(ref, name)(x, **p), expected, rtol=1e-12, atol=1e-15 if approximate else 1e-300)


@pytest.mark.parametrize("kernels", _sets())
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_fast_sets_within_the_measured_error(kernels, case):
    name, p = case
    ops = get_ops(kernels)
    x64 = _wide()
    x = x64.astype(np.float32)
    y = getattr(ops, name)(x, **p)
    assert y.dtype == np.float32 and y.shape == x.shape
    expected = getattr(ref, name)(x.astype(np.float64), **p)
    ulps = 1 if kernels == "numba" else 3
    np.testing.assert_allclose(y, expected, rtol=ulps * ULP, atol=ATOL.get(name, 1e-37))


@pytest.mark.parametrize("kernels", _sets())
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_backward_against_the_reference(kernels, case):
    name, p = case
    ops = get_ops(kernels)
    x = _wide(5000, seed=1).astype(np.float32)
    dy = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    from_output = by_name(f"{name}_backward").params[1][0] == "y"
    v = getattr(ops, name)(x, **p) if from_output else x
    got = getattr(ops, f"{name}_backward")(dy, v, **p)
    expected = getattr(ref, f"{name}_backward")(dy.astype(np.float64), v.astype(np.float64), **p)
    # the derivative's factors cancel like the forwards (1 - y**2 near y = 1, ...): absolute near 0
    np.testing.assert_allclose(got, expected, rtol=4 * ULP, atol=2e-6 * np.abs(dy).max())


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_backward_matches_finite_differences(case):
    """On float64 points away from each op's kinks (0, 6, +-3, the threshold, the maximum)."""
    name, p = case
    rng = np.random.default_rng(3)
    x = rng.uniform(-5, 8, size=(4, 25))
    kinks = [0.0, 6.0, 3.0, -3.0, p.get("threshold", 0.0), p.get("max_value") or 0.0]
    for k in kinks:
        x[np.abs(x - k) < 1e-3] += 0.01
    r = rng.standard_normal(x.shape)
    from_output = by_name(f"{name}_backward").params[1][0] == "y"
    v = getattr(ref, name)(x, **p) if from_output else x
    analytic = getattr(ref, f"{name}_backward")(r, v, **p)
    check_gradient(lambda: float(np.sum(getattr(ref, name)(x, **p) * r)), analytic, x, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kernels", ["reference"] + _sets())
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_nan_propagates(kernels, case):
    name, p = case
    x = np.array([np.nan, 1.0, -1.0, np.nan], dtype=np.float32)
    y = getattr(get_ops(kernels), name)(x, **p)
    assert np.isnan(y[[0, 3]]).all() and np.isfinite(y[[1, 2]]).all()


def test_cython_set_is_bit_equal_on_one_and_two_threads():
    """Every op and backward, and a convolution with the activation in its output pass."""
    cython = pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    from dropcore.kernels.threads import threads

    x = _wide(100000, seed=4).astype(np.float32)  # several tasks of 16384 elements, a ragged last one
    dy = np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
    img = np.random.default_rng(6).standard_normal((4, 20, 20, 16)).astype(np.float32)
    w = (np.random.default_rng(7).standard_normal((3, 3, 16, 24)) / 12).astype(np.float32)
    results = []
    for n in (1, 2):
        with threads(n):
            out = []
            for name, p in CASES:
                y = getattr(cython, name)(x, **p)
                out += [y, getattr(cython, f"{name}_backward")(dy, x, **p)]
            for act in ("tanh", "gelu", "leaky_relu"):  # an epilogue, on the direct kernel's blocks of rows
                run, shape = cython.conv2d_kernel(img.shape, w, None, (1, 1), "valid", activation=act)
                out.append(np.empty(shape, np.float32))
                run(img, out[-1])
            results.append(out)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


# --- epilogues: the convolution and dense kernels apply the activation in their output pass ----------------------
#: every code of ``_act.h`` a kernel's epilogue takes (all but linear, relu's own flag and the three-parameter
#: clipped ReLU), with the contract case's parameter as ``alpha`` where the op has one
EPILOGUES = [(name, next(iter(_case_params(name).values()), None) if name in ref.ACTIVATION_ALPHA else None)
             for name in ref.CODES if name not in ("linear", "relu", "clipped_relu")]


def conv_path(xs, ws, strides, padding):
    from dropcore.kernels import cython_ops, geometry

    if geometry.winograd_pays(ws, strides, cython_ops._gemm.HAVE_WINOGRAD):
        return "winograd"
    return geometry.conv_path(xs[1:3], ws, strides, padding, cython_ops._gemm.HAVE_FAST_GEMM)


def _conv_cases():
    """(x shape, w shape, strides, padding): one layer on each path of ``geometry.conv_path`` (and Winograd)."""
    return {
        "direct": ((2, 12, 12, 1), (5, 5, 1, 6), (1, 1), "same"),
        "winograd": ((1, 9, 9, 32), (3, 3, 32, 32), (1, 1), "same"),  # odd: a last tile row of one output row
        "implicit": ((2, 9, 9, 24), (3, 3, 24, 40), (2, 2), "valid"),
        "im2col": ((2, 9, 9, 24), (3, 3, 24, 40), (2, 2), "same"),
    }


@pytest.mark.parametrize("act,alpha", EPILOGUES)
@pytest.mark.parametrize("path", list(_conv_cases()))
def test_conv_epilogue_has_the_stand_alone_ops_bits(path, act, alpha):
    cython = pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    xs, ws, strides, padding = _conv_cases()[path]
    # the generic target (DROPCORE_ISA=generic) has no direct, Winograd or implicit kernel: each layer runs on
    # im2col panels there, and its epilogue is checked on them
    assert conv_path(xs, ws, strides, padding) == (path if cython._gemm.HAVE_FAST_GEMM else "im2col")
    rng = np.random.default_rng(6)
    x = rng.standard_normal(xs).astype(np.float32)
    w = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[:3]))).astype(np.float32)
    b = rng.standard_normal(ws[3]).astype(np.float32)
    run, shape = cython.conv2d_kernel(xs, w, b, strides, padding)
    z = np.empty(shape, np.float32)
    run(x, z)
    act_run, _ = cython.activation_kernel(shape, act, alpha)
    expected = np.empty_like(z)
    act_run(z, expected)
    run, _ = cython.conv2d_kernel(xs, w, b, strides, padding, activation=act, alpha=alpha)
    y = np.full(shape, np.nan, np.float32)
    run(x, y)
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("path", list(_conv_cases()) + ["pointwise"])
def test_conv_residual_epilogue_has_the_separate_add_and_relus_bits(path, relu):
    # a residual Add (and the ReLU after it) inside the convolution's pass over its rows: the bits of the
    # convolution, then np.add, then the stand-alone ReLU (-0 becomes 0, NaN passes), at batch 1 and 5
    cython = pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    xs, ws, strides, padding = _conv_cases().get(path, ((1, 6, 7, 16), (1, 1, 16, 32), (1, 1), "valid"))
    rng = np.random.default_rng(8)
    w = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[:3]))).astype(np.float32)
    b = rng.standard_normal(ws[3]).astype(np.float32)
    for n in (1, 5):
        x = rng.standard_normal((n,) + xs[1:]).astype(np.float32)
        run, shape = cython.conv2d_kernel(x.shape, w, b, strides, padding)
        z = np.empty(shape, np.float32)
        run(x, z)
        r = rng.standard_normal(shape).astype(np.float32)
        r.flat[::7] = -z.flat[::7]  # sums of exactly 0 (and -0)
        r.flat[3] = np.nan
        expected = z + r
        if relu:
            act, _ = cython.activation_kernel(shape, "relu")
            act(expected, expected)
        fused, _ = cython.residual_kernel((run, shape), relu)
        assert getattr(run, "takes_residual", False)
        y = np.full(shape, 7.0, np.float32)
        fused(x, r, y)
        np.testing.assert_array_equal(y, expected)
        assert np.array_equal(np.signbit(y), np.signbit(expected))
        with pytest.raises(ValueError, match=r"residual operand: shape \(%d, " % n):
            run(x, y, np.ascontiguousarray(r[:, :-1] if shape[1] > 1 else r[:, :, :-1]))


@pytest.mark.parametrize("act,alpha", EPILOGUES[:4])
@pytest.mark.parametrize("rows", [1, 3, 40])  # split over w's rows (<= 6), column blocks, row blocks
def test_dense_epilogue_has_the_stand_alone_ops_bits(rows, act, alpha):
    cython = pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((rows, 300)).astype(np.float32)
    w = (rng.standard_normal((300, 200)) / 17).astype(np.float32)
    b = rng.standard_normal(200).astype(np.float32)
    z = cython.dense(x, w, b)
    act_run, _ = cython.activation_kernel(z.shape, act, alpha)
    expected = np.empty_like(z)
    act_run(z, expected)
    run, shape = cython.dense_kernel(x.shape, w, b, activation=act, alpha=alpha)
    y = np.empty(shape, np.float32)
    run(x, y)
    np.testing.assert_array_equal(y, expected)
