"""Kernel benchmark cases at the shapes the reference models run, shared by ``test_kernels.py`` and the runner.

Each case is one kernel call (forward or backward) of one plan step of a reference model, with the options the
fused plan really uses (ReLU fused into a convolution, ReLU+dropout fused, the first convolution without input
gradient). Inputs are made once, deterministically; ``Case.bind(ops)`` returns a zero-argument callable.
"""
import importlib
from dataclasses import dataclass

import numpy as np

from dropcore.layers import Conv2D, Dense, Dropout, MaxPooling2D
from dropcore.ops import get_ops
from dropcore.kernels.reference.rng import dropout_key

from . import models

IMPLS = ("reference", "numba", "cython")


def kernel_sets():
    """``{name: namespace}`` of the kernel sets present: the NumPy reference, Numba, and Cython when built."""
    sets = {"reference": get_ops("reference"), "numba": get_ops("numba")}
    try:
        sets["cython"] = importlib.import_module("dropcore.kernels.cython_ops")
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


def _shape(s):
    return "x".join(map(str, s))


def _layer_cases(step, in_shape, n, rng, ref):
    la, f32 = step.layer, np.float32
    x = rng.standard_normal((n,) + tuple(in_shape)).astype(f32)
    if isinstance(la, Conv2D):
        w, b = la.weights["kernel"], la.weights["bias"]
        relu = step.activation == "relu"
        need_dx = step.opts.get("need_dx", True)
        tag = f"{_shape(x.shape)} k{_shape(w.shape)} s{la.strides[0]} {la.padding}{' relu' if relu else ''}"
        pool = step.opts.get("pool")
        if pool is not None:  # the max pooling after it, fused (training's conv2d_max_pool)
            y, arg = ref.conv2d_max_pool(x, w, b, la.strides, la.padding, pool, relu=relu)
            dy = rng.standard_normal(y.shape).astype(f32)
            tag += f" p{_shape(pool)}"
            return [Case(f"conv2d_max_pool[{tag}]", "conv2d_max_pool", (x, w, b, la.strides, la.padding, pool),
                         {"relu": relu}, "forward"),
                    Case(f"conv2d_max_pool_backward[{tag}{'' if need_dx else ' no-dx'}]", "conv2d_max_pool_backward",
                         (dy, arg, y, x, w, la.strides, la.padding, pool, True, need_dx, relu), {}, "backward")]
        z = ref.conv2d(x, w, b, la.strides, la.padding, relu=relu)
        dy = rng.standard_normal(z.shape).astype(f32)
        return [Case(f"conv2d[{tag}]", "conv2d", (x, w, b, la.strides, la.padding), {"relu": relu}, "forward"),
                Case(f"conv2d_backward[{tag}{'' if need_dx else ' no-dx'}]", "conv2d_backward",
                     (dy, x, w, la.strides, la.padding, True, need_dx, z if relu else None), {}, "backward")]
    if isinstance(la, MaxPooling2D):
        y = ref.max_pool2d(x, la.pool_size, la.strides, la.padding)
        dy = rng.standard_normal(y.shape).astype(f32)
        tag = f"{_shape(x.shape)} p{_shape(la.pool_size)}"
        return [Case(f"max_pool2d[{tag}]", "max_pool2d", (x, la.pool_size, la.strides, la.padding), {}, "forward"),
                Case(f"max_pool2d_backward[{tag}]", "max_pool2d_backward",
                     (dy, x, y, la.pool_size, la.strides, la.padding), {}, "backward")]
    if isinstance(la, Dropout):
        key = dropout_key(0, 0, 0)
        dy = rng.standard_normal(x.shape).astype(f32)
        tag = f"{_shape(x.shape)} rate{la.rate}"
        if step.opts.get("relu"):
            y = ref.relu_dropout(x, la.rate, key)
            return [Case(f"relu_dropout[{tag}]", "relu_dropout", (x, la.rate, key), {}, "forward"),
                    Case(f"relu_dropout_backward[{tag}]", "relu_dropout_backward", (dy, y, la.rate), {}, "backward")]
        return [Case(f"dropout[{tag}]", "dropout", (x, la.rate, key), {}, "forward"),
                Case(f"dropout_backward[{tag}]", "dropout_backward", (dy, la.rate, key), {}, "backward")]
    if isinstance(la, Dense):
        w, b = la.weights["kernel"], la.weights["bias"]
        relu = step.activation == "relu"
        dy = rng.standard_normal((n, la.units)).astype(f32)
        tag = f"{_shape(x.shape)} w{_shape(w.shape)}{' relu' if relu else ''}"
        return [Case(f"dense[{tag}]", "dense", (x, w, b), {"relu": relu}, "forward"),
                Case(f"dense_backward[{_shape(x.shape)} w{_shape(w.shape)}]", "dense_backward", (dy, x, w, True), {},
                     "backward")]
    return []  # Flatten: a reshape, no kernel


def model_cases(name, n=32, seed=0):
    """The kernel calls of one training step of reference model ``name`` at batch ``n``."""
    model = models.build(name, seed=seed)
    ref = get_ops("reference")
    rng = np.random.default_rng(seed)
    cases, shape = [], model.input_shape[1:]
    for step in model._plan.steps:  # a Sequential plan: one step per layer, in order
        cases += _layer_cases(step, shape, n, rng, ref)
        shape = step.layer.output_shape_for(shape)
        if step.opts.get("pool") is not None:  # a fused max pooling: the step's output is the pooled one
            (ph, pw), (oh, ow, c) = step.opts["pool"], shape
            shape = (oh // ph, ow // pw, c)
    logits = rng.standard_normal((n,) + tuple(shape)).astype(np.float32)
    labels = rng.integers(0, shape[-1], n).astype(np.int64)
    cases.append(Case(f"sparse_softmax_cross_entropy[{_shape(logits.shape)}]", "sparse_softmax_cross_entropy",
                      (logits, labels), {}, "forward"))
    return cases


def all_cases(names=tuple(models.MODELS), n=32):
    """Every distinct kernel case of the given models (a shape shared by two models is benchmarked once)."""
    seen, out = set(), []
    for name in names:
        for c in model_cases(name, n):
            if c.id not in seen:
                seen.add(c.id)
                out.append(c)
    return out
