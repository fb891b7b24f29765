"""Every op of the kernel contract, from its one declared case (``contract.Case``), with nothing written per op:

- each fast set (Numba, Cython) against the NumPy reference, inputs left untouched;
- each backward of the reference against central finite differences of its forward, in float64 (directional: the
  change of ``sum(forward(p + e v) * dy)`` along a random ``v`` of each differentiated parameter ``p``);
- each loss's own gradient output likewise;
- each bound kernel (what inference programs run) against its op.

The op-specific tests (``test_conv.py``, ``test_pool.py``, ...) keep what a generic case cannot say: independent
naive loops, every geometry path, edge cases, NaN handling, bit-exactness between sets.
"""
import inspect

import numpy as np
import pytest

from dropcore.kernels import contract
from dropcore.kernels.contract import BOUND, OPS
from dropcore.kernels.contract_cases import backward_args, call_args, forward_args, outputs
from dropcore.ops import get_ops

REFERENCE = get_ops("reference")
BACKWARDS = [op for op in OPS if op.case.grad_of is not None]
SELF_GRADIENTS = [op for op in OPS if op.case.grad_of is None and op.case.wrt]
BOUND_OPS = [op for op in OPS if op.bound is not None]


def _set(name):
    if name == "cython":
        pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")
    return get_ops(name)


def _copy(v):
    if isinstance(v, list):  # the inputs of an op of several (contract.arrays)
        return [_copy(a) for a in v]
    return v.copy() if isinstance(v, np.ndarray) else v


def _copies(kwargs):
    return {k: _copy(v) for k, v in kwargs.items()}


def _flat(results):
    """Values with a list of arrays (an op's several inputs, contract.arrays) spread out, one array each."""
    return [a for r in results for a in (r if isinstance(r, list) else [r])]


def _assert_outputs_match(got, expected, tol, where):
    got, expected = outputs(got), outputs(expected)
    assert len(got) == len(expected), f"{where}: {len(got)} outputs, the reference gives {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected)):
        if e is None:
            assert g is None, f"{where}: output {i} should be None"
            continue
        g, e = np.asarray(g), np.asarray(e)
        assert g.shape == e.shape, f"{where}: output {i} has shape {g.shape}, the reference {e.shape}"
        if e.dtype.kind in "iub":  # indices, taps, masks: exactly
            np.testing.assert_array_equal(g, e, err_msg=f"{where}: output {i}")
        else:
            assert g.dtype == np.float32, f"{where}: output {i} is {g.dtype}, expected float32"
            np.testing.assert_allclose(g, e, rtol=tol[0], atol=tol[1], err_msg=f"{where}: output {i}")


def test_every_op_has_a_case_and_every_backward_a_forward():
    names = {op.name for op in OPS}
    for op in OPS:
        assert isinstance(op.case, contract.Case), op.name
        assert set(op.case.args) <= {p for p, _ in op.params}, f"{op.name}: case names unknown parameters"
        required = {p for p, d in op.params if d is contract._REQUIRED}
        assert required <= set(op.case.args), f"{op.name}: case misses {required - set(op.case.args)}"
        if op.case.grad_of is not None:
            assert op.case.grad_of in names, op.name
            forward = contract.by_name(op.case.grad_of)
            assert set(w for w in op.case.wrt if w) <= {p for p, _ in forward.params}, op.name
        if op.bound is not None:
            assert op.inference and op.bound.kernel in BOUND, op.name


@pytest.mark.parametrize("name", ["numba", "cython"])
@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_each_fast_set_matches_the_reference(name, op):
    ops = _set(name)
    kwargs = call_args(op, REFERENCE)
    expected = getattr(REFERENCE, op.name)(**_copies(kwargs))
    before = _copies(kwargs)
    got = getattr(ops, op.name)(**kwargs)
    _assert_outputs_match(got, expected, op.case.tol, f"{name}.{op.name}")
    for k, v in kwargs.items():  # a kernel never writes its inputs
        for a, b in zip(_flat([v]), _flat([before[k]])):
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b, err_msg=f"{name}.{op.name} changed its input {k!r}")


def _directional(f, value, direction, eps):
    return (f(value + eps * direction) - f(value - eps * direction)) / (2 * eps)


@pytest.mark.parametrize("op", BACKWARDS, ids=lambda op: op.name)
def test_each_backward_matches_finite_differences(op):
    forward = getattr(REFERENCE, op.case.grad_of)
    fargs, _, dy, bargs = backward_args(op, REFERENCE, np.float64)
    grads = outputs(getattr(REFERENCE, op.name)(**bargs))
    # a list of arrays (contract.arrays) has one gradient output per array: (param, index) pairs in output order
    targets = [(p, i) for p in op.case.wrt
               for i in (range(len(fargs[p])) if p is not None and isinstance(fargs[p], list) else [None])]
    assert len(grads) == len(targets), f"{op.name}: {len(grads)} outputs, the case names {op.case.wrt}"
    rng = np.random.default_rng(len(op.name))
    for (param, i), grad in zip(targets, grads):
        if param is None:
            continue
        value = np.asarray(fargs[param] if i is None else fargs[param][i], dtype=np.float64)
        v = rng.standard_normal(value.shape)

        def loss(p, param=param, i=i):
            arg = p if i is None else [p if j == i else a for j, a in enumerate(fargs[param])]
            return float(np.sum(outputs(forward(**{**fargs, param: arg}))[0] * dy))

        numeric = _directional(loss, value, v, 1e-6)
        analytic = float(np.sum(np.asarray(grad, dtype=np.float64) * v))
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-7), f"{op.name}: d/d{param}[{i}]"


@pytest.mark.parametrize("op", SELF_GRADIENTS, ids=lambda op: op.name)
def test_each_loss_gradient_matches_finite_differences(op):
    fn = getattr(REFERENCE, op.name)
    args = forward_args(op, np.float64)
    result = outputs(fn(**args))
    rng = np.random.default_rng(len(op.name))
    for index, param in op.case.wrt.items():
        value = args[param]
        v = rng.standard_normal(value.shape)
        numeric = _directional(lambda p: float(np.sum(fn(**{**args, param: p})[0])), value, v, 1e-6)
        assert float(np.sum(result[index] * v)) == pytest.approx(numeric, rel=1e-5, abs=1e-7), op.name


def test_the_bound_kernels_are_the_contracts():
    cy = pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    for name in BOUND:
        assert inspect.signature(getattr(cy, name)) == contract.bound_signature(name), name
    assert {op.bound.kernel for op in BOUND_OPS} == set(BOUND), "a bound kernel that no op declares"


@pytest.mark.parametrize("op", BOUND_OPS, ids=lambda op: op.name)
def test_each_bound_kernel_matches_its_op(op):
    cy = pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    kwargs = call_args(op, REFERENCE)
    expected = outputs(getattr(REFERENCE, op.name)(**_copies(kwargs)))[0]
    params = [p[0] if isinstance(p, tuple) else p for p in BOUND[op.bound.kernel]]
    shapes = {"x_shape": kwargs["x"].shape} if "x" in kwargs else {"x_shapes": [a.shape for a in kwargs["xs"]]}
    given = {**kwargs, **shapes, **op.bound.extra}
    kernel = getattr(cy, op.bound.kernel)(**{p: given[p] for p in params if p in given})
    if kernel is None:  # conv2d_max_pool_kernel: only on the paths that fuse (geometry.conv_path says which)
        from dropcore.kernels.geometry import conv_path

        assert conv_path(kwargs["x"].shape[1:3], kwargs["w"].shape, kwargs["strides"], kwargs["padding"],
                         cy._gemm.HAVE_FAST_GEMM) == "im2col", f"{op.name}: no bound kernel on a fusing path"
        return
    run, y_shape = kernel
    assert tuple(y_shape) == expected.shape, op.name
    y = np.full(y_shape, np.nan, dtype=np.float32)
    run(*_flat([kwargs[a] for a in op.bound.run]), y, *[kwargs[a] for a in op.bound.after])
    np.testing.assert_allclose(y, expected, rtol=op.case.tol[0], atol=op.case.tol[1], err_msg=op.name)


def test_the_kernels_readme_lists_every_op():
    """``kernels/README.md`` lists every op and nothing else (``python -m dropcore.kernels.readme`` rewrites it)."""
    import pathlib
    import re

    text = (pathlib.Path(contract.__file__).parent / "README.md").read_text()
    listed = set(re.findall(r"^\| `([a-z0-9_]+)` \|", text, flags=re.M))
    assert listed == {op.name for op in OPS}
