"""The contract's cases (``contract.Case``) made into calls: the arguments, deterministically, in float32 for the
kernel sets or float64 for finite differences.

The generic kernel tests (``tests/kernels/test_contract_cases.py``) and the pytest-benchmark cases
(``bench/cases.py``) both start here, so an op's test and benchmark come from its one contract entry.
"""
import zlib

import numpy as np

from .contract import DY, Spec, by_name
from .reference.rng import dropout_key


def _rng(op_name, salt=0):
    """A generator seeded from the op's name: every run, every set and every process sees the same inputs."""
    return np.random.default_rng([zlib.crc32(op_name.encode()), salt])


def _array(spec, rng, dtype):
    kind, value = spec
    if kind == "normal":
        return rng.standard_normal(value).astype(dtype)
    if kind == "uniform":
        low, high, shape = value
        return rng.uniform(low, high, shape).astype(dtype)
    if kind == "labels":
        classes, n = value
        return rng.integers(0, classes, n).astype(np.int64)
    if kind == "onehot":
        classes, n = value
        return np.eye(classes, dtype=dtype)[rng.integers(0, classes, n)]
    if kind == "key":
        return dropout_key(*value)
    if kind == "list":  # the inputs of an op of several (contract.arrays)
        return [_array(s, rng, dtype) for s in value]
    raise ValueError(f"spec {kind!r} needs the forward call (a backward case's spec)")


def forward_args(op, dtype=np.float32):
    """The keyword arguments of forward op ``op``'s case (``op``: an :class:`~dropcore.kernels.contract.Op` or
    its name)."""
    op = by_name(op) if isinstance(op, str) else op
    if op.case.grad_of is not None:
        raise ValueError(f"{op.name} is a backward op: use backward_args")
    rng = _rng(op.name)
    return {k: _array(v, rng, dtype) if isinstance(v, Spec) else v for k, v in op.case.args.items()}


def outputs(result):
    """A kernel's result as a tuple (ops return one array or a tuple)."""
    return result if isinstance(result, tuple) else (result,)


def backward_args(op, reference, dtype=np.float32):
    """``(forward_kwargs, forward_outputs, dy, backward_kwargs)`` of backward op ``op``'s case: the forward runs on
    ``reference`` (the NumPy kernel set) at ``dtype``, ``dy`` is a deterministic cotangent of its first output."""
    op = by_name(op) if isinstance(op, str) else op
    fwd_op = by_name(op.case.grad_of)
    fargs = forward_args(fwd_op, dtype)
    fouts = outputs(getattr(reference, fwd_op.name)(**fargs))
    dy = _rng(op.name, 1).standard_normal(fouts[0].shape).astype(dtype)
    kwargs = {}
    for k, v in op.case.args.items():
        if v is DY:
            kwargs[k] = dy
        elif isinstance(v, Spec) and v.kind == "fwd":
            kwargs[k] = fargs[v.value]
        elif isinstance(v, Spec) and v.kind == "out":
            kwargs[k] = fouts[v.value]
        elif isinstance(v, Spec) and v.kind == "shape_of":
            a = fargs[v.value]
            kwargs[k] = [x.shape for x in a] if isinstance(a, list) else a.shape
        else:
            kwargs[k] = v
    return fargs, fouts, dy, kwargs


def call_args(op, reference, dtype=np.float32):
    """The keyword arguments of ``op``'s case, forward or backward."""
    op = by_name(op) if isinstance(op, str) else op
    if op.case.grad_of is None:
        return forward_args(op, dtype)
    return backward_args(op, reference, dtype)[3]
