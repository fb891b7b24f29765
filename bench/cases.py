"""Kernel benchmark cases, shared by ``test_kernels.py`` and the runner, from two sources and no per-layer code:

- the contract's cases (``contract_cases``): one call of every op at its declared shape;
- the reference models' training steps (``model_cases``): every kernel call one training step of a reference model
  makes, with the options its fused plan really uses (ReLU fused into a convolution, ReLU+dropout fused, the first
  convolution without input gradient), recorded by running the step on a kernel set that records its calls. A new
  layer's kernels appear here with nothing added.

Inputs are made once, deterministically; ``Case.bind(ops)`` returns a zero-argument callable.
"""
import importlib
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from dropcore.kernels.contract import OPS, by_name, signature
from dropcore.kernels.contract_cases import call_args
from dropcore.layers import Context
from dropcore.ops import get_ops

from . import models

IMPLS = ("reference", "numba", "cython")


def kernel_sets():
    """``{name: namespace}`` of the kernel sets present: the NumPy reference, Numba, and Cython when built."""
    sets = {"reference": get_ops("reference"), "numba": get_ops("numba")}
    try:
        importlib.import_module("dropcore.kernels.cython_ops")
        sets["cython"] = get_ops("cython")
    except ImportError:
        pass  # the Cython extensions are optional (not built without a C compiler)
    return sets


@dataclass
class Case:
    """One kernel call: ``getattr(ops, func)(*args, **kwargs)``."""

    id: str
    func: str
    args: tuple
    kwargs: dict
    direction: str  # "forward" or "backward"

    def supported_by(self, ops):
        return callable(getattr(ops, self.func, None))

    def bind(self, ops):
        fn, args, kwargs = getattr(ops, self.func), self.args, self.kwargs
        return lambda: fn(*args, **kwargs)


def _direction(name):
    return "backward" if name.endswith("_backward") else "forward"


def _describe(value):
    if isinstance(value, np.ndarray):
        return "x".join(map(str, value.shape))
    return str(value)


def _case_id(name, args, kwargs):
    """``name[...]``: the arrays' shapes, then every other argument that differs from its default (``key`` left
    out: every case draws from the same)."""
    params = signature(by_name(name)).bind(*args, **kwargs).arguments
    defaults = {p: d for p, d in by_name(name).params}
    arrays = [_describe(v) for v in params.values() if isinstance(v, np.ndarray)]
    others = [f"{k}={_describe(v)}" for k, v in params.items()
              if not isinstance(v, np.ndarray) and k != "key" and (k not in defaults or defaults[k] != v)]
    return f"{name}[{' '.join(arrays + others)}]"


def contract_cases():
    """One case per op of the kernel contract, at its declared shape (``kernels/contract.py``)."""
    reference = get_ops("reference")
    cases = []
    for op in OPS:
        kwargs = call_args(op, reference)
        cases.append(Case(_case_id(op.name, (), kwargs), op.name, (), kwargs, _direction(op.name)))
    return cases


def _recording(ops, calls):
    """A kernel set that runs ``ops`` and appends each call's ``(name, args, kwargs)`` to ``calls``."""
    def wrap(name, fn):
        def call(*args, **kwargs):
            calls.append((name, args, kwargs))
            return fn(*args, **kwargs)
        return call

    return SimpleNamespace(name=ops.name, fallbacks=ops.fallbacks,
                           **{op.name: wrap(op.name, getattr(ops, op.name)) for op in OPS})


def model_cases(name, n=32, seed=0):
    """The kernel calls of one training step of reference model ``name`` at batch ``n`` (forward, loss,
    backward), as its fused training plan makes them."""
    model = models.build(name, seed=seed)
    x, y = models.batch(name, n, seed)
    calls = []
    ops = _recording(get_ops("reference"), calls)
    fused = model.fuses_loss
    out, tape = model.plan.forward(ops, x, Context(training=True, dropout=True, seed=seed), keep_backprop=True,
                                   logits=fused)
    _, dout = model.loss.per_sample(ops, out, y, fused or model.loss.from_logits)
    model.plan.backward(tape, dout)
    return [Case(_case_id(func, args, kwargs), func, args, kwargs, _direction(func)) for func, args, kwargs in calls]


def all_cases(names=tuple(models.MODELS), n=32):
    """Every distinct kernel case of the given models (a shape shared by two models is benchmarked once)."""
    seen, out = set(), []
    for name in names:
        for c in model_cases(name, n):
            if c.id not in seen:
                seen.add(c.id)
                out.append(c)
    return out
