"""Grouped convolutions (``Conv2D(groups=...)``, ONNX ``Conv`` with ``group``): ``groups`` convolutions side by
side, group ``g`` reading input channels ``g * C / groups`` onwards and writing filters ``g * filters / groups``
onwards; the kernel is ``(kh, kw, C / groups, filters)`` (Keras's layout, ONNX's up to a transpose).

One input channel per group (``groups == C``) is a depthwise convolution: it runs on the ``depthwise_conv2d``
kernels, the layer's kernel viewed as ``(kh, kw, C, filters / C)`` (filter ``c * M + m`` of group ``c`` is the
depthwise kernel's ``(c, m)``: no copy), dilated in the kernels' window. Other groupings (ResNeXt's) run the
ordinary convolution kernels once per group, on contiguous copies of the group's input channels and weights (a
pass over the input: small next to the group's products), split and joined by the ``concatenate`` kernels.
"""
import threading

import numpy as np

from ..lowering import Kernel
from .core import lower_activation
from .dilation import dilated

_F32 = np.float32


def depthwise_view(w, cin):
    """The grouped kernel ``w`` ``(kh, kw, 1, filters)`` of a layer with one input channel per group, as the
    depthwise kernel ``(kh, kw, cin, filters / cin)`` (a view: the weights' in-place updates show through)."""
    kh, kw, _, filters = w.shape
    return w.reshape(kh, kw, cin, filters // cin)


def _slices(groups, size):
    per = size // groups
    return [slice(g * per, (g + 1) * per) for g in range(groups)]


def forward(layer, ops, x, relu, need_dx):
    """``(z, backprop)`` of the grouped convolution of ``layer`` on ``x``, the bias and (with ``relu``) ReLU fused;
    ``backprop(dz) -> (dx, dw, db)`` with ``dw`` in the layer's kernel shape (``dz`` taken before the ReLU's mask:
    the kernels apply it)."""

    w, b, rate = layer.weights["kernel"], layer.weights.get("bias"), layer.dilation_rate
    strides, padding, has_bias, cin = layer.strides, layer.padding, layer.use_bias, x.shape[3]
    if cin == layer.groups:
        wd = depthwise_view(w, cin)
        z = ops.depthwise_conv2d(x, wd, b, strides, padding, relu, rate)

        def backprop_depthwise(dz):
            dx, dw, db = ops.depthwise_conv2d_backward(dz, x, wd, strides, padding, has_bias, need_dx,
                                                       z if relu else None, rate)
            return dx, dw.reshape(w.shape), db

        return z, backprop_depthwise
    ins, outs = _slices(layer.groups, cin), _slices(layer.groups, w.shape[3])
    xs = ops.concatenate_backward(x, tuple(x.shape[:3] + (s.stop - s.start,) for s in ins), 3)  # the groups' inputs
    ws = [np.ascontiguousarray(dilated(w[..., s], rate)) for s in outs]
    zs = [ops.conv2d(xg, wg, None if b is None else b[s], strides, padding, relu=relu)
          for xg, wg, s in zip(xs, ws, outs)]
    z = ops.concatenate(zs, 3)

    def backprop(dz):
        dzs = ops.concatenate_backward(dz, tuple(zg.shape for zg in zs), 3)
        parts = [ops.conv2d_backward(dzg, xg, wg, strides, padding, has_bias, need_dx, zg if relu else None)
                 for dzg, xg, wg, zg in zip(dzs, xs, ws, zs)]
        dx = ops.concatenate([p[0] for p in parts], 3) if need_dx else None
        dw = np.concatenate([p[1][::rate[0], ::rate[1]] for p in parts], axis=3)
        db = np.concatenate([p[2] for p in parts]) if has_bias else None
        return dx, np.ascontiguousarray(dw), db

    return z, backprop


def lower(layer, lowering, act, params=None):
    """The grouped convolution's bound kernels, ``act`` (with its ``params``) after it (a ReLU fused into it)."""
    cy, cin = lowering.kernels, layer.input_shape[2]
    if cin == layer.groups:
        return lower_activation(lowering, act, lambda relu, **epilogue: Kernel("depthwise_conv2d", lambda shape: (
            cy.depthwise_conv2d_kernel(shape, depthwise_view(layer.weights["kernel"], cin), layer.weights.get("bias"),
                                       layer.strides, layer.padding, relu, layer.dilation_rate, **epilogue))),
            epilogue=True, params=params)
    return lower_activation(lowering, act, lambda relu, **epilogue: Kernel(
        "grouped_conv2d", lambda shape: _bind_groups(layer, cy, tuple(shape), relu, epilogue)), epilogue=True,
        params=params)


def _bind_groups(layer, cy, shape, relu, epilogue):
    """``(run, y_shape)``: each group's bound ``conv2d_kernel`` on buffers of the calling thread's (a program's
    bound kernels are shared by the threads that predict), the group's input channels and weights copied into them
    on each call (the weights change in place while a model trains)."""
    n, h, wd, cin = shape
    w, b, rate, groups = layer.weights["kernel"], layer.weights.get("bias"), layer.dilation_rate, layer.groups
    outs = _slices(groups, w.shape[3])
    eff = tuple((k - 1) * d + 1 for k, d in zip(w.shape[:2], rate)) + (cin // groups, w.shape[3] // groups)
    x_shape = (n, h, wd, cin // groups)
    _, y_shape = cy.conv2d_kernel(x_shape, np.zeros(eff, _F32), None, layer.strides, layer.padding, relu)
    local = threading.local()

    join, out_shape = cy.concatenate_kernel([tuple(y_shape)] * groups, 3)  # the groups' outputs into y

    def state():
        s = getattr(local, "s", None)
        if s is None:
            ws = [np.zeros(eff, _F32) for _ in range(groups)]
            runs = [cy.conv2d_kernel(x_shape, wg, None if b is None else b[o], layer.strides, layer.padding, relu,
                                     **epilogue)[0] for wg, o in zip(ws, outs)]
            s = local.s = (ws, runs, [np.empty(y_shape, _F32) for _ in range(groups)])
        return s

    def run(x, y):
        ws, runs, ygs = state()
        xgs = cy.concatenate_backward(x, (x_shape,) * groups, 3)  # each group's input channels, contiguous
        for xg, o, wg, run_group, yg in zip(xgs, outs, ws, runs, ygs):
            wg[::rate[0], ::rate[1]] = w[..., o]
            run_group(xg, yg)
        join(*ygs, y)

    return run, tuple(out_shape)
