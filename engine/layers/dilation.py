"""Dilated convolutions (stride 1) as ordinary ones on the input's phases, the kernel never zero-filled.

Output row ``oy`` of a convolution dilated by ``d`` reads padded input rows ``oy + i * d``: all in the phase
``oy mod d`` of the rows. So the input (padded as TensorFlow's rule says for the dilated size) is split into its
``dh * dw`` phases, stacked along the batch (``(dh * dw * N, R / dh, S / dw, C)``: one copy), convolved with the
compact ``kh x kw`` kernel ("valid", on whichever kernel suits it: a 3x3 kernel dilated 2 runs on Winograd's tiles),
and the outputs interleaved back (one copy). A 3x3 kernel dilated 2 through a zero-filled 5x5 kernel took 2.8x its
multiply-adds; here it takes its own. Each phase is padded at the end to the same size; the few outputs past the
layer's are dropped (and get no gradient). The bias and ReLU stay fused in the convolution; the weight gradient is
the compact kernel's. (TensorFlow's ``atrous_conv2d`` does the same with ``space_to_batch``.)
"""
import threading

import numpy as np

from ..kernels.geometry import window_2d


class Phases:
    """The geometry of a dilated convolution of an ``(h, w)`` input: ``oh, ow`` (the layer's output), ``pt, pl``
    (padding before), ``q, p`` (outputs per phase), ``rows, cols`` (input rows and columns per phase)."""

    def __init__(self, hw, kernel, rate, padding):
        (kh, kw), (self.dh, self.dw) = kernel, rate
        eff = ((kh - 1) * self.dh + 1, (kw - 1) * self.dw + 1)
        self.oh, self.ow, (self.pt, _), (self.pl, _) = window_2d(hw[0], hw[1], eff, (1, 1), padding)
        self.h, self.w = hw
        self.q, self.p = -(-self.oh // self.dh), -(-self.ow // self.dw)
        self.rows, self.cols = self.q + kh - 1, self.p + kw - 1

    def padded_shape(self, n, c):
        return (n, self.rows * self.dh, self.cols * self.dw, c)

    def split(self, x, out=None, padded=None):
        """``x`` (N, H, W, C) as its phases ``(dh * dw * N, rows, cols, C)`` (into ``out`` when given), through the
        zero-padded image ``padded`` (a zeroed buffer of :meth:`padded_shape` whose padding stays zero, or a new
        one)."""
        n, c = x.shape[0], x.shape[3]
        dh, dw = self.dh, self.dw
        if padded is None:
            padded = np.zeros(self.padded_shape(n, c), x.dtype)
        # the input's part of the padded image (a larger padding than the layer's is cut off: zeros past the end)
        h, w = min(self.h, self.rows * dh - self.pt), min(self.w, self.cols * dw - self.pl)
        padded[:, self.pt:self.pt + h, self.pl:self.pl + w] = x[:, :h, :w]
        phases = padded.reshape(n, self.rows, dh, self.cols, dw, c).transpose(2, 4, 0, 1, 3, 5)
        if out is None:
            return np.ascontiguousarray(phases).reshape(dh * dw * n, self.rows, self.cols, c)
        out.reshape(dh, dw, n, self.rows, self.cols, c)[...] = phases
        return out

    def merge(self, z, out=None):
        """The phases' outputs ``z`` (dh * dw * N, q, p, F) interleaved back into ``(N, oh, ow, F)``."""
        dh, dw, f = self.dh, self.dw, z.shape[3]
        n = z.shape[0] // (dh * dw)
        full = z.reshape(dh, dw, n, self.q, self.p, f).transpose(2, 3, 0, 4, 1, 5).reshape(
            n, self.q * dh, self.p * dw, f)[:, :self.oh, :self.ow]
        if out is None:
            return np.ascontiguousarray(full)
        out[...] = full
        return out

    def split_grad(self, dy):
        """The layer's output gradient as the phases' (zero past the layer's outputs): :meth:`merge`'s adjoint."""
        n, f = dy.shape[0], dy.shape[3]
        full = np.zeros((n, self.q * self.dh, self.p * self.dw, f), dy.dtype)
        full[:, :self.oh, :self.ow] = dy
        return np.ascontiguousarray(full.reshape(n, self.q, self.dh, self.p, self.dw, f).transpose(
            2, 4, 0, 1, 3, 5)).reshape(self.dh * self.dw * n, self.q, self.p, f)

    def merge_grad(self, dxp):
        """The phases' input gradient summed back into the input's: :meth:`split`'s adjoint."""
        dh, dw, c = self.dh, self.dw, dxp.shape[3]
        n = dxp.shape[0] // (dh * dw)
        padded = dxp.reshape(dh, dw, n, self.rows, self.cols, c).transpose(2, 3, 0, 4, 1, 5).reshape(
            n, self.rows * dh, self.cols * dw, c)
        dx = np.zeros((n, self.h, self.w, c), dxp.dtype)
        h, w = min(self.h, self.rows * dh - self.pt), min(self.w, self.cols * dw - self.pl)
        dx[:, :h, :w] = padded[:, self.pt:self.pt + h, self.pl:self.pl + w]
        return dx


def forward(ops, x, w, b, rate, padding, relu, need_dx, has_bias):
    """``(z, backprop)``: the dilated convolution (stride 1) of ``x`` on the phases, the bias and (with ``relu``)
    ReLU fused; ``backprop(dz) -> (dx, dw, db)`` (``dz`` before ReLU's mask: the kernels apply it)."""
    geo = Phases(x.shape[1:3], w.shape[:2], rate, padding)
    xp = geo.split(x)
    zp = ops.conv2d(xp, w, b, (1, 1), "valid", relu=relu)

    def backprop(dz):
        dxp, dw, db = ops.conv2d_backward(geo.split_grad(dz), xp, w, (1, 1), "valid", has_bias, need_dx,
                                          zp if relu else None)
        return (geo.merge_grad(dxp) if need_dx else None), dw, db

    return geo.merge(zp), backprop


def bind(cy, shape, w, b, rate, padding, relu, **epilogue):
    """``(run, y_shape)`` of the dilated convolution for inputs of ``shape``: the bound ``conv2d_kernel`` of the
    phases (with its ``activation`` epilogue) on buffers of the calling thread's (a program's kernels are shared by
    the threads that predict), the weights and bias read by reference."""
    n, h, wd, c = shape
    geo = Phases((h, wd), w.shape[:2], rate, padding)
    phase_shape = (rate[0] * rate[1] * n, geo.rows, geo.cols, c)
    run_phases, z_shape = cy.conv2d_kernel(phase_shape, w, b, (1, 1), "valid", relu, **epilogue)
    local = threading.local()

    def run(x, y):
        bufs = getattr(local, "bufs", None)
        if bufs is None:
            bufs = local.bufs = (np.zeros(geo.padded_shape(n, c), np.float32), np.empty(phase_shape, np.float32),
                                 np.empty(z_shape, np.float32))
        padded, xp, zp = bufs
        run_phases(geo.split(x, xp, padded), zp)
        geo.merge(zp, y)

    return run, (n, geo.oh, geo.ow, w.shape[3])


def dilated(w, rate):
    """The effective kernel of a dilated convolution: ``w``'s taps ``rate`` apart, zeros between, so that an
    ordinary convolution with it is the dilated one. ``w`` itself (no copy) at rate ``(1, 1)``."""
    if rate == (1, 1):
        return w
    (kh, kw), (dh, dw) = w.shape[:2], rate
    eff = np.zeros(((kh - 1) * dh + 1, (kw - 1) * dw + 1) + w.shape[2:], dtype=w.dtype)
    eff[::dh, ::dw] = w
    return eff
