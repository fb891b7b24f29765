"""Activations (Numba), same contract as :mod:`dropcore.kernels.reference.activation`; dropout and noise are
their own family (:mod:`.dropout`).

Element-wise kernels see their arrays flattened (a view, no copy) and split them into fixed-size chunks, one
``prange`` iteration each, so they run at memory speed.
"""
import math

import numpy as np
from numba import prange

from .activation_wrappers import define
from .config import njit, pjit
from .reference.activation import CODES, SELU_ALPHA, SELU_SCALE

#: Elements per parallel task: large enough to amortize scheduling, small enough to balance the threads.
CHUNK = 1 << 15

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


@njit
def _relu_span(x, y):
    for i in range(x.size):
        v = x[i]
        y[i] = _ZERO if v <= _ZERO else v  # written so that a NaN passes through


@njit
def _relu_backward_span(dy, y, dx):
    for i in range(dy.size):
        dx[i] = dy[i] if y[i] > _ZERO else _ZERO


@njit
def _sigmoid_span(x, y):
    for i in range(x.size):
        v = x[i]
        e = np.exp(-abs(v))
        r = _ONE / (_ONE + e)
        y[i] = r if v >= _ZERO else e * r


@njit
def _sigmoid_backward_span(dy, y, dx):
    for i in range(dy.size):
        dx[i] = dy[i] * y[i] * (_ONE - y[i])


# Thin prange drivers: task t covers elements [lo, hi) = [t * CHUNK, (t + 1) * CHUNK). The spans get slices and
# loop from 0: indexing the whole array from a variable start costs a negative-index check per element that stops
# LLVM from vectorizing (measured 10x slower).
@pjit
def _relu_par(x, y):
    n = x.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _relu_span(x[lo:hi], y[lo:hi])


@pjit
def _relu_backward_par(dy, y, dx):
    n = dy.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _relu_backward_span(dy[lo:hi], y[lo:hi], dx[lo:hi])


@pjit
def _sigmoid_par(x, y):
    n = x.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _sigmoid_span(x[lo:hi], y[lo:hi])


@pjit
def _sigmoid_backward_par(dy, y, dx):
    n = dy.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _sigmoid_backward_span(dy[lo:hi], y[lo:hi], dx[lo:hi])


@njit
def _softmax_row(x, y, r):
    xv, yv = x[r], y[r]
    m = xv[0]
    for k in range(1, xv.size):
        m = max(m, xv[k])
    total = _ZERO
    for k in range(xv.size):
        e = np.exp(xv[k] - m)
        yv[k] = e
        total += e
    inv = _ONE / total
    for k in range(xv.size):
        yv[k] *= inv


@njit
def _softmax_backward_row(dy, y, dx, r):
    dv, yv, out = dy[r], y[r], dx[r]
    dot = _ZERO
    for k in range(yv.size):
        dot += dv[k] * yv[k]
    for k in range(yv.size):
        out[k] = yv[k] * (dv[k] - dot)


@pjit
def _softmax_par(x, y):
    for r in prange(x.shape[0]):
        _softmax_row(x, y, r)


@pjit
def _softmax_backward_par(dy, y, dx):
    for r in prange(dy.shape[0]):
        _softmax_backward_row(dy, y, dx, r)


def _flat(a):
    return a.reshape(-1)


def relu(x):
    """``max(x, 0)`` of float32 ``x`` (NaN propagates)."""
    y = np.empty_like(x)
    _relu_par(_flat(x), _flat(y))
    return y


def relu_backward(dy, y):
    """Pass ``dy`` where the ReLU output ``y`` is positive."""
    dx = np.empty_like(dy)
    _relu_backward_par(_flat(dy), _flat(y), _flat(dx))
    return dx


def softmax(x):
    """Softmax of float32 ``x`` over the last axis (max-subtracted)."""
    y = np.empty_like(x)
    _softmax_par(x.reshape(-1, x.shape[-1]), y.reshape(-1, x.shape[-1]))
    return y


def softmax_backward(dy, y):
    """Gradient of :func:`softmax` from its output: ``y * (dy - sum(dy * y))`` per row."""
    dx = np.empty_like(dy)
    _softmax_backward_par(dy.reshape(-1, dy.shape[-1]), y.reshape(-1, y.shape[-1]), dx.reshape(-1, dy.shape[-1]))
    return dx


def sigmoid(x):
    """Logistic function of float32 ``x`` (through ``exp(-|x|)``: never overflows)."""
    y = np.empty_like(x)
    _sigmoid_par(_flat(x), _flat(y))
    return y


def sigmoid_backward(dy, y):
    """Gradient of :func:`sigmoid` from its output: ``dy * y * (1 - y)``."""
    dx = np.empty_like(dy)
    _sigmoid_backward_par(_flat(dy), _flat(y), _flat(dx))
    return dx


# --- element-wise activations (tanh, selu, elu, leaky_relu, relu6, hard_sigmoid, hard_swish, gelu, softplus,
# silu): one loop for all, the op a code (``reference.activation.CODES``, as the Cython kernels'), each element
# computed in float64 and rounded once to float32 (so within an ulp or so of the float32 reference).
_RELU6 = CODES['relu6']
_LEAKY_RELU = CODES['leaky_relu']
_ELU = CODES['elu']
_SELU = CODES['selu']
_TANH = CODES['tanh']
_HARD_SIGMOID = CODES['hard_sigmoid']
_HARD_SWISH = CODES['hard_swish']
_GELU = CODES['gelu']
_GELU_TANH = CODES['gelu_tanh']
_SOFTPLUS = CODES['softplus']
_SILU = CODES['silu']
_CLIPPED_RELU = CODES['clipped_relu']  # (Numba reads module constants, not a dict)
_MISH = CODES['mish']
_SELU_NEG = SELU_SCALE * SELU_ALPHA
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


@njit
def _sig64(x):
    e = math.exp(-abs(x))
    r = 1.0 / (1.0 + e)
    return r if x >= 0.0 else e * r


@njit
def _act1(op, a, hi, th, v):
    x = np.float64(v)
    if op == _RELU6:
        r = 0.0 if x < 0.0 else x  # NaN passes
        r = 6.0 if r > 6.0 else r
    elif op == _LEAKY_RELU:
        r = x * a if x < 0.0 else x
    elif op == _ELU:
        r = x if x > 0.0 else a * math.expm1(x)
    elif op == _SELU:
        r = SELU_SCALE * x if x > 0.0 else _SELU_NEG * math.expm1(x)
    elif op == _TANH:
        r = math.tanh(x)
    elif op == _HARD_SIGMOID:
        r = x + 3.0
        r = 0.0 if r < 0.0 else (6.0 if r > 6.0 else r)
        r = r / 6.0
    elif op == _HARD_SWISH:
        r = x + 3.0
        r = 0.0 if r < 0.0 else (6.0 if r > 6.0 else r)
        r = x * r / 6.0
    elif op == _GELU:
        r = 0.5 * x * (1.0 + math.erf(x * _INV_SQRT_2))
    elif op == _GELU_TANH:
        r = 0.5 * x * (1.0 + math.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
    elif op == _SOFTPLUS:
        r = max(x, 0.0) + math.log1p(math.exp(-abs(x)))
    elif op == _SILU:
        r = x * _sig64(x)
    elif op == _CLIPPED_RELU:
        r = (hi if x > hi else x) if x > th else a * (x - th)
    elif op == _MISH:
        r = x * math.tanh(max(x, 0.0) + math.log1p(math.exp(-abs(x))))
    else:
        r = x
    return np.float32(r)


@njit
def _grad1(op, a, hi, th, v):
    """The derivative at ``v`` (the output for tanh and selu, the input otherwise), as ``_act.h``."""
    x = np.float64(v)
    if op == _RELU6:
        g = 1.0 if (x > 0.0 and x < 6.0) else 0.0
    elif op == _LEAKY_RELU:
        g = 1.0 if x > 0.0 else a
    elif op == _ELU:
        g = 1.0 if x > 0.0 else a * math.exp(x)
    elif op == _SELU:
        g = SELU_SCALE if x > 0.0 else x + _SELU_NEG
    elif op == _TANH:
        g = 1.0 - x * x
    elif op == _HARD_SIGMOID:
        g = 1.0 / 6.0 if (x > -3.0 and x < 3.0) else 0.0
    elif op == _HARD_SWISH:
        g = 0.0 if x < -3.0 else (1.0 if x > 3.0 else (2.0 * x + 3.0) / 6.0)
    elif op == _GELU:
        g = 0.5 * (1.0 + math.erf(x * _INV_SQRT_2)) + x * _INV_SQRT_2PI * math.exp(-0.5 * x * x)
    elif op == _GELU_TANH:
        t = math.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
        g = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x)
    elif op == _SOFTPLUS:
        g = _sig64(x)
    elif op == _SILU:
        s = _sig64(x)
        g = s * (1.0 + x * (1.0 - s))
    elif op == _CLIPPED_RELU:
        g = (1.0 if x < hi else 0.0) if x > th else a
    elif op == _MISH:
        t = math.tanh(max(x, 0.0) + math.log1p(math.exp(-abs(x))))
        g = t + x * _sig64(x) * (1.0 - t * t)
    else:
        g = 1.0
    return g


@njit
def _act_span(x, y, op, a, hi, th):
    for i in range(x.size):
        y[i] = _act1(op, a, hi, th, x[i])


@njit
def _act_backward_span(dy, v, dx, op, a, hi, th):
    for i in range(dy.size):
        dx[i] = np.float32(dy[i] * _grad1(op, a, hi, th, v[i]))


@pjit
def _act_par(x, y, op, a, hi_, th):
    n = x.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _act_span(x[lo:hi], y[lo:hi], op, a, hi_, th)


@pjit
def _act_backward_par(dy, v, dx, op, a, hi_, th):
    n = dy.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _act_backward_span(dy[lo:hi], v[lo:hi], dx[lo:hi], op, a, hi_, th)


def _act(code, x, alpha=0.0, hi=0.0, th=0.0):
    y = np.empty_like(x)
    _act_par(_flat(x), _flat(y), code, np.float64(alpha), np.float64(hi), np.float64(th))
    return y


def _act_backward(code, dy, v, alpha=0.0, hi=0.0, th=0.0):
    dx = np.empty_like(dy)
    _act_backward_par(_flat(dy), _flat(v), _flat(dx), code, np.float64(alpha), np.float64(hi), np.float64(th))
    return dx


# tanh, selu, elu, ... and their backwards, with the contract's signatures (``activation_wrappers.py``)
LOOP_OPS = define(globals(), _act, _act_backward)
