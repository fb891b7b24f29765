"""The Cython training kernels of the activation (with dropout), pool, norm and loss families, behind the kernel
contract's signatures (``contract.py``; semantics in ``README.md``).

Compiled ahead of time (``_cy_elementwise.pyx``, ``_cy_pool.pyx``), so a fresh process trains without waiting for
Numba to compile; the Numba kernels (``activation.py``, ``pool.py``, ``norm.py``, ``loss.py``) are the parallel
implementation, tested against the same NumPy reference. Like ``cython_ops``, this module imports no Numba, and
importing it raises ImportError when the extensions were not built. ``cython_ops`` imports these functions into
the Cython kernel set, and caps the extensions' OpenMP regions to the CPUs the process may use when it loads.

Every function takes float32 arrays (converted when they are not C-contiguous float32, as ``cython_ops`` does) and
returns new float32 C-contiguous arrays. Results do not depend on the number of OpenMP threads: work is split by
the shapes alone, and every sum runs in one task in a fixed order (batch statistics: float64 partials over fixed
chunks of rows, added in chunk order). Dropout masks are bit-identical to the reference's.
"""
import numpy as np

# The compiled variant for this CPU (or DROPCORE_ISA's): loading it raises ImportError when none is built.
from .compiled import elementwise as _ew
from .compiled import pool as _pool
from .activation_wrappers import define
from .geometry import window_2d
from .reference.dropout import dropout_scale
from .reference.rng import keep_threshold

_F32 = np.float32


def _c32(a):
    return np.ascontiguousarray(a, dtype=_F32)


# --- activation ------------------------------------------------------------------------------------------------------

def relu_backward(dy, y):
    """Pass ``dy`` where the ReLU output ``y`` is positive (0 elsewhere, and where ``y`` is NaN)."""
    dy, y = _c32(dy), _c32(y)
    dx = np.empty_like(dy)
    _ew.pass_positive(dy.reshape(-1), y.reshape(-1), _F32(1), dx.reshape(-1))
    return dx


def relu_dropout_backward(dy, y, rate):
    """Gradient of ``relu_dropout`` from its output: ``dy * scale`` exactly where ``y > 0`` (no stored mask: a unit
    with ``y > 0`` was positive and kept)."""
    dy, y = _c32(dy), _c32(y)
    dx = np.empty_like(dy)
    _ew.pass_positive(dy.reshape(-1), y.reshape(-1), dropout_scale(rate), dx.reshape(-1))
    return dx


def dropout_backward(dy, rate, key, per_channel=False, offset=0):
    """Gradient of ``dropout``: the same mask, recomputed from ``key`` (bit-identical to the reference's), and scale
    applied to ``dy``; ``per_channel`` drops whole channels per sample (noise shape ``(N, 1, ..., 1, C)``);
    ``offset``: the stream index of the first mask element. ``rate == 0`` returns a copy."""
    dy = _c32(dy)
    if rate == 0:
        return dy.copy()
    k0, k1, thr, scale = np.uint32(key[0]), np.uint32(key[1]), keep_threshold(rate), dropout_scale(rate)
    dx = np.empty_like(dy)
    if per_channel and dy.ndim >= 2:
        rows = (dy.shape[0], int(np.prod(dy.shape[1:-1])), dy.shape[-1])  # (a -1 cannot reshape an empty batch)
        _ew.dropout_channels_forward(dy.reshape(rows), dx.reshape(rows), k0, k1, thr, scale, False, offset)
    else:
        _ew.dropout_forward(dy.reshape(-1), dx.reshape(-1), k0, k1, thr, scale, False, offset)
    return dx


def gaussian_noise(shape, key, offset=0):
    """float32 standard normal noise of ``shape`` from the stream ``key``: element ``i`` is the Box-Muller transform
    of the hash values at stream indices ``2 (offset + i)`` and ``2 (offset + i) + 1``, in float64 and rounded once
    to float32 (the reference's construction: equal to it within one float32 ulp of a last-bit ``log``/``cos``
    difference)."""
    z = np.empty(tuple(shape), dtype=_F32)
    _ew.gaussian_noise(z.reshape(-1), np.uint32(key[0]), np.uint32(key[1]), offset)
    return z


def softmax_backward(dy, y):
    """Gradient of ``softmax`` from its output: ``y * (dy - sum(dy * y))`` per row of the last axis."""
    dy, y = _c32(dy), _c32(y)
    dx = np.empty_like(dy)
    rows = (-1, dy.shape[-1]) if dy.ndim else (1, 1)
    _ew.softmax_backward(dy.reshape(rows), y.reshape(rows), dx.reshape(rows))
    return dx


def sigmoid_backward(dy, y):
    """Gradient of ``sigmoid`` from its output: ``dy * y * (1 - y)``."""
    dy, y = _c32(dy), _c32(y)
    dx = np.empty_like(dy)
    _ew.sigmoid_backward(dy.reshape(-1), y.reshape(-1), dx.reshape(-1))
    return dx


# --- pool ------------------------------------------------------------------------------------------------------------

def max_pool2d_backward(dy, x, y, pool, strides, padding):
    """Gradient of ``max_pool2d``: each window's ``dy`` goes to its first (row-major) tap equal to its max (a NaN max
    to none); overlapping windows add up, in the reference's order."""
    dy, x, y = _c32(dy), _c32(x), _c32(y)
    h, w = x.shape[1:3]
    _, _, (pt, _), (pl, _) = window_2d(h, w, pool, strides, padding)
    dx = np.empty_like(x)  # every element written by the task that owns it
    _pool.max_pool2d_backward(dy, x, y, pool[0], pool[1], strides[0], strides[1], pt, pl, dx)
    return dx


def avg_pool2d_backward(dy, x_shape, pool, strides, padding):
    """Gradient of ``avg_pool2d`` for an input of shape ``x_shape``: each window spreads ``dy / count`` over its
    non-padded positions (bit-identical to the reference)."""
    dy = _c32(dy)
    n, h, w, c = x_shape
    _, _, (pt, _), (pl, _) = window_2d(h, w, pool, strides, padding)
    dx = np.empty((n, h, w, c), dtype=_F32)
    _pool.avg_pool2d_backward(dy, pool[0], pool[1], strides[0], strides[1], pt, pl, dx)
    return dx


def global_avg_pool2d_backward(dy, x_shape):
    """Gradient of ``global_avg_pool2d`` for an input of shape ``x_shape``: ``dy / (H * W)`` everywhere."""
    dy = _c32(dy)
    n, h, w, c = x_shape
    dx = np.empty((n, h, w, c), dtype=_F32)
    _pool.global_avg_pool2d_backward(dy, dx.reshape(n, h * w, c))
    return dx


def global_max_pool2d_backward(dy, x, y):
    """Gradient of ``global_max_pool2d``: each (sample, channel)'s ``dy`` goes to its first (row-major) position
    equal to its max; a NaN max passes no gradient."""
    dy, x, y = _c32(dy), _c32(x), _c32(y)
    n, h, w, c = x.shape
    dx = np.empty_like(x)
    _pool.global_max_pool2d_backward(dy, x.reshape(n, h * w, c), y, dx.reshape(n, h * w, c))
    return dx


# --- norm ------------------------------------------------------------------------------------------------------------

def batch_norm_train(x, gamma, beta, eps):
    """Normalize ``x`` with its batch statistics over every axis but the last -> ``(y, mean, var, inv_std)``:
    ``var`` the biased batch variance, ``inv_std = 1/sqrt(var + eps)`` (shape ``(C,)``), statistics taken in float64
    on the data shifted by its first row (a constant channel comes out exactly: ``var == 0``, ``y == beta``)."""
    x = _c32(x)
    c = x.shape[-1]
    y = np.empty_like(x)
    mean, var, inv_std = (np.empty(c, dtype=_F32) for _ in range(3))
    _ew.batch_norm_train(x.reshape(-1, c), _c32(gamma), _c32(beta), eps, y.reshape(-1, c), mean, var, inv_std)
    return y, mean, var, inv_std


def batch_norm_relu_train(x, gamma, beta, eps, cap=0.0):
    """:func:`batch_norm_train` with ReLU (capped at ``cap`` when ``cap > 0``) applied as each value is stored ->
    ``(y, mean, var, inv_std)``."""
    x = _c32(x)
    c = x.shape[-1]
    y = np.empty_like(x)
    mean, var, inv_std = (np.empty(c, dtype=_F32) for _ in range(3))
    _ew.batch_norm_train(x.reshape(-1, c), _c32(gamma), _c32(beta), eps, y.reshape(-1, c), mean, var, inv_std,
                         True, cap)
    return y, mean, var, inv_std


def batch_norm_relu_backward(dy, y, x, mean, inv_std, gamma, cap=0.0):
    """Gradients of :func:`batch_norm_relu_train` from its output ``y`` -> ``(dx, dgamma, dbeta)``: the ReLU's mask
    taken as each gradient value is read, no pass of its own."""
    dy, y, x = _c32(dy), _c32(y), _c32(x)
    c = x.shape[-1]
    dx = np.empty_like(x)
    dgamma, dbeta = np.empty(c, dtype=_F32), np.empty(c, dtype=_F32)
    _ew.batch_norm_backward(dy.reshape(-1, c), x.reshape(-1, c), _c32(mean), _c32(inv_std), _c32(gamma),
                            dx.reshape(-1, c), dgamma, dbeta, y.reshape(-1, c), cap)
    return dx, dgamma, dbeta


def batch_norm_backward(dy, x, mean, inv_std, gamma):
    """Gradients of :func:`batch_norm_train` through the batch statistics -> ``(dx, dgamma, dbeta)``."""
    dy, x = _c32(dy), _c32(x)
    c = x.shape[-1]
    dx = np.empty_like(x)
    dgamma, dbeta = np.empty(c, dtype=_F32), np.empty(c, dtype=_F32)
    _ew.batch_norm_backward(dy.reshape(-1, c), x.reshape(-1, c), _c32(mean), _c32(inv_std), _c32(gamma),
                            dx.reshape(-1, c), dgamma, dbeta)
    return dx, dgamma, dbeta


# --- loss (per-sample losses, gradients of their sum: the engine divides by the batch size) ------------------------

def softmax_cross_entropy(logits, labels):
    """Categorical cross-entropy on ``(N, K)`` logits and float targets (rows sum to 1) -> ``(loss (N,),
    dlogits = softmax(logits) - labels)``, stable (log-sum-exp after subtracting the row max)."""
    logits, labels = _c32(logits), _c32(labels)
    loss, grad = np.empty(logits.shape[0], dtype=_F32), np.empty_like(logits)
    _ew.softmax_cross_entropy(logits, labels, loss, grad)
    return loss, grad


def sparse_softmax_cross_entropy(logits, labels):
    """Cross-entropy on ``(N, K)`` logits and integer class indices ``(N,)`` -> ``(loss (N,), softmax - onehot)``."""
    logits = _c32(logits)
    loss, grad = np.empty(logits.shape[0], dtype=_F32), np.empty_like(logits)
    _ew.sparse_softmax_cross_entropy(logits, np.ascontiguousarray(labels, dtype=np.intp), loss, grad)
    return loss, grad


def sigmoid_binary_cross_entropy(logits, targets):
    """Binary cross-entropy on ``(N, K)`` logits, the mean over the last axis -> ``(loss (N,), (sigmoid(logits) -
    targets) / K)``; never overflows (``max(z, 0) - z t + log1p(exp(-|z|))``)."""
    logits, targets = _c32(logits), _c32(targets)
    loss, grad = np.empty(logits.shape[0], dtype=_F32), np.empty_like(logits)
    _ew.sigmoid_binary_cross_entropy(logits, targets, loss, grad)
    return loss, grad


def mean_squared_error(y, targets):
    """Squared error averaged over every non-batch axis -> ``(loss (N,), dy = 2 (y - targets) / K)``."""
    y, targets = _c32(y), _c32(targets)
    n = y.shape[0]
    k = y.size // n if n else 0
    loss, grad = np.empty(n, dtype=_F32), np.empty_like(y)
    if y.ndim != 2:  # (a reshape costs more than this small op's arithmetic)
        y, targets, grad2 = y.reshape(n, k), targets.reshape(n, k), grad.reshape(n, k)
    else:
        grad2 = grad
    # the reference's factor: a Python float times a float32 array is float32(2 / K), as this double is rounded
    _ew.mean_squared_error(y, targets, 2 / k if k else 0.0, loss, grad2)
    return loss, grad


# --- element-wise activations (``_act.h``: the loops the convolution and dense epilogues run too) ---------------

def _act(code, x, alpha=0.0, hi=0.0, th=0.0):
    x = _c32(x)
    y = np.empty_like(x)
    _ew.act_forward(x.reshape(-1), y.reshape(-1), code, alpha, hi, th)
    return y


def _act_backward(code, dy, v, alpha=0.0, hi=0.0, th=0.0):
    dy, v = _c32(dy), _c32(v)
    dx = np.empty_like(dy)
    _ew.act_backward(dy.reshape(-1), v.reshape(-1), dx.reshape(-1), code, alpha, hi, th)
    return dx


# tanh, selu, elu, leaky_relu, relu6, hard_sigmoid, hard_swish, gelu, softplus, silu, clipped_relu and their
# backwards, with the contract's signatures (``activation_wrappers.py``)
LOOP_OPS = define(globals(), _act, _act_backward)
