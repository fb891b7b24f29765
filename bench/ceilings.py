"""What a layer's time is read against in the per-layer profile: this machine's ceilings, measured here.

- FLOP/s: dropcore's own GEMM (the Cython dense kernel, on every thread the profile uses) on operands that stay in
  cache, the rate the convolutions and dense layers could reach if they were nothing but matrix products.
- bytes/s: a copy of 64 MiB arrays on one thread (read and write counted), the rate an elementwise layer (dropout,
  pooling) could reach if it were nothing but its memory traffic.

A layer's own rate against them says which one bounds it and how far it is from it. The FLOPs are those of the
direct products (2 per multiply-add), also for a layer that runs on Winograd's tiles, which does fewer: its rate can
exceed the GEMM's.
"""
import numpy as np

from .timing import median_seconds


def gemm_flops(repeats=20):
    """FLOP/s of dropcore's dense kernel on a (384 x 256) x (256 x 256) product (1 MB of operands: in L2 and L3)
    on the threads the process uses, or None without the Cython kernels."""
    try:
        from dropcore.kernels import cython_ops
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((384, 256), dtype=np.float32), rng.standard_normal((256, 256), dtype=np.float32)
    run, shape = cython_ops.dense_kernel(x.shape, w, None)
    y = np.empty(shape, dtype=np.float32)
    return 2.0 * 384 * 256 * 256 / median_seconds(lambda: run(x, y), repeats, warmup=3)


def copy_bytes(repeats=7, size=64 << 20):
    """Bytes/s (read plus written) of one thread copying ``size`` bytes between two arrays."""
    src = np.ones(size // 4, dtype=np.float32)
    dst = np.empty_like(src)
    return 2.0 * size / median_seconds(lambda: np.copyto(dst, src), repeats, warmup=2)


def measure():
    """``{"gemm_flops": ..., "copy_bytes": ...}`` for this process's threads."""
    return {"gemm_flops": gemm_flops(), "copy_bytes": copy_bytes()}


def layer_work(layer, x_shape, y_shape, first, view=False):
    """``(forward FLOPs, backward FLOPs, forward bytes, backward bytes)`` of one training step of ``layer`` on an
    input of ``x_shape`` giving ``y_shape``: FLOPs for the convolutions and dense layers (their direct products;
    the backward's two products, one where the first layer skips its input gradient), bytes for every layer (each
    array read or written once: input, output and weights forward; the output's gradient, the input, the input's
    gradient and the weights and their gradient backward; nothing for a ``view`` of the input, such as Flatten).
    ``x_shape``: a list of shapes for a layer of several inputs (Add, Concatenate), whose bytes count each input."""
    from dropcore.kernels.geometry import window_2d

    def size(shape):
        return sum(int(np.prod(s)) for s in shape) if isinstance(shape, list) else int(np.prod(shape))

    weights = sum(int(np.size(w)) for w in getattr(layer, "weights", {}).values())
    kernel = getattr(layer, "weights", {}).get("kernel")
    flops = 0.0
    if kernel is not None and kernel.ndim == 4 and not isinstance(x_shape, list) and len(x_shape) == 4:
        kh, kw, cin, cout = kernel.shape
        oh, ow, _, _ = window_2d(x_shape[1], x_shape[2], (kh, kw), layer.strides, layer.padding)
        flops = 2.0 * x_shape[0] * oh * ow * kh * kw * cin * cout
    elif kernel is not None and kernel.ndim == 2:
        flops = 2.0 * size(x_shape) * kernel.shape[1]
    if view:
        return flops, 0.0, 0.0, 0.0
    fwd_bytes = 4.0 * (size(x_shape) + size(y_shape) + weights)
    bwd_bytes = 4.0 * (size(y_shape) + (1 if first else 2) * size(x_shape) + 2 * weights)
    return flops, flops * (1 if first else 2), fwd_bytes, bwd_bytes


def timed_rate(work, seconds):
    return work / seconds if work and seconds > 0 else None
