"""Inference fusions that change what a step computes with, not only where: a batch normalization folded into the
kernel before it, a residual ``Add`` (and what follows it) in a convolution's step, a pooling that reads the parts of
the concatenation before it. The rules that apply them are in
``dropcore.fusion`` (``INFERENCE``); training never sees them (it needs the intermediate values).

A fused step's layer is the producer's, seen through a proxy: every attribute is the layer's (its capabilities, its
options, its name) except ``lower``, which lowers the layer itself and then adapts its kernels. The proxies live
only in a program's copy of the steps; the model's layers are never changed.

Weights stay bound by reference (see ``dropcore.program``): a folded kernel reads derived weights that are worked
out again before each call from the layer's and the normalization's current arrays (cheap: a kernel's weights are
small next to its activations), or once when every one of them is read-only (a Predictor's frozen weights).
"""
import copy

import numpy as np

from .kernels.alignment import aligned_empty
from .lowering import Kernel, activation_kernels


def folded_weight(layer):
    """The name of the weight a per-channel affine after ``layer`` folds into, or ``None``.

    It folds where the layer computes ``activation(f(x, W) + bias)`` with ``f`` linear in ``W`` (``fuses_relu``:
    the kernel applies the activation after the bias: Conv2D, Dense, DepthwiseConv2D), ``W`` is its only weight
    besides the bias and ``W``'s trailing axes, flattened, are the output channels (Conv2D's and Dense's last axis;
    DepthwiseConv2D's ``(C, multiplier)``, channel ``c * multiplier + m``): ``f(x, W * s) == f(x, W) * s`` for a
    vector ``s`` over them."""
    if not layer.fuses_relu or not layer.built:
        return None
    names = [n for n in layer.weights if n != "bias"]
    if len(names) != 1:
        return None
    cout, shape = layer.output_shape_for(layer.input_shape)[-1], layer.weights[names[0]].shape
    trailing = [int(np.prod(shape[k:])) for k in range(len(shape) - 1, 0, -1)]
    return names[0] if cout in trailing else None


class _Fused:
    """A layer seen through an inference fusion: its attributes are the layer's, ``lower`` is the proxy's."""

    def __init__(self, layer):
        self.layer = layer

    def __getattr__(self, name):
        if name == "layer":  # not set yet (a copy being rebuilt): no recursion
            raise AttributeError(name)
        return getattr(self.layer, name)

    def __repr__(self):
        return f"<{type(self).__name__} of {self.layer!r}>"


def _first_kernel(kernels):
    """The index of the first kernel that computes (not a reshape)."""
    return next(i for i, k in enumerate(kernels) if k.name != "reshape")


def _before_each_call(kernel, refresh):
    """``kernel`` whose bound ``run`` calls ``refresh()`` first."""
    def bind(shape):
        run, y_shape = kernel.bind(shape)

        def refreshed(*args):
            refresh()
            run(*args)

        refreshed.__wrapped__ = run  # what the step runs (``Program.uncompiled`` looks through the refresh)
        return refreshed, y_shape

    return Kernel(kernel.name, bind, kernel.uses_ctx)


class FoldedNorm(_Fused):
    """``layer`` followed by ``norm`` (a layer with ``channel_affine()``: ``x * scale + shift`` per channel) in
    one kernel: the layer's kernel on ``W * scale`` and bias ``bias * scale + shift``."""

    def __init__(self, layer, norm):
        super().__init__(layer)
        self.norm = norm

    def lower(self, lowering, step):
        layer, name = self.layer, folded_weight(self.layer)
        w, b = layer.weights[name], layer.weights.get("bias")
        cout = layer.output_shape_for(layer.input_shape)[-1]
        wf, bf = aligned_empty(w.shape), aligned_empty((cout,))
        w2, wf2 = w.reshape(-1, cout), wf.reshape(-1, cout)  # views: the output channels as the last axis

        def refresh():
            scale, shift = self.norm.channel_affine()
            np.multiply(w2, scale, out=wf2)
            if b is None:
                bf[...] = shift
            else:  # (b - mean) * scale + beta, as the two steps' float32 arithmetic orders it
                np.multiply(b, scale, out=bf)
                np.add(bf, shift, out=bf)

        inner = copy.copy(layer)
        inner.weights = dict(layer.weights, **{name: wf, "bias": bf})
        inner.use_bias = True
        sources = [w] + ([] if b is None else [b]) + list(self.norm.weights.values())
        frozen = not any(a.flags.writeable for a in sources)
        if frozen:  # nothing can change them: fold once (and the kernels may precompute from them too)
            refresh()
            wf.flags.writeable = bf.flags.writeable = False
        kernels = list(inner.lower(lowering, step))
        i = _first_kernel(kernels)
        k = kernels[i]
        head, *rest = k.name.split("+", 1)  # "conv2d+max_pool2d": the norm comes before the pooling
        k = Kernel("+".join([head, "batch_norm", *rest]), k.bind, k.uses_ctx)
        kernels[i] = k if frozen else _before_each_call(k, refresh)
        return kernels


class PartsInput(_Fused):
    """``layer`` (one that works on each channel on its own: a pooling) reading the inputs of the concatenation
    before it in place of their concatenation: ``layer.lower_parts``. Nothing else may fuse into it."""

    n_inputs = None
    OPTIONS = ()
    fusable_pool = None

    def lower(self, lowering, step):
        return self.layer.lower_parts(lowering, step)


class ResidualAdd(_Fused):
    """``layer`` (one kernel, linear) whose output gets the step's second input added, then the step's activation:
    ``activation(layer(x) + r)``, a residual ``Add`` (and the ReLU after it) in the convolution's step, with no
    buffer of its own (``kernels.cython_ops.residual_kernel``)."""

    n_inputs = None
    #: only the activation after the add may still fuse in (a pooling would have to come before the add)
    OPTIONS = ("activation", "activation_params")

    def lower(self, lowering, step):
        act = step.activation
        inner = copy.copy(step)
        inner.opts = dict(step.opts, activation="linear")
        kernels = self.layer.lower(lowering, inner)
        if len(kernels) != 1:
            raise ValueError(f"{self.layer.label}: a residual add fuses into a step of one kernel; this one lowers "
                             f"to {[k.name for k in kernels]}")
        k, relu = kernels[0], act == "relu"

        def bind(shapes):
            run, y_shape = k.bind(shapes[0])
            if tuple(shapes[1]) != tuple(y_shape):
                raise ValueError(f"{self.layer.label}: the residual operand has shape {tuple(shapes[1])}, the "
                                 f"layer's output {tuple(y_shape)}")
            return lowering.kernels.residual_kernel((run, y_shape), relu)

        name = k.name + "+add" + ("+relu" if relu else "")
        return [Kernel(name, bind)] + activation_kernels(lowering, "linear" if relu else act,
                                                         **(step.opts.get("activation_params") or {}))
