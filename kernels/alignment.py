"""Arrays whose data starts on a 64-byte boundary: the weights and buffers the micro-kernels read as vectors.

Why: NumPy aligns an array's data to 16 bytes only, and a large one (memory-mapped by malloc) typically starts 16
or 32 bytes past a cache line, so every 64-byte AVX-512 load of it spans two lines and costs two. Measured on
``mnist_cnn``'s 9216x128 dense kernel at batch 1 (4.7 MB of weights read for every image): 35 us unaligned against
27 us aligned on 2 threads; on one thread, the GEMM alone in C, 67 against 39 us.
"""
import math

import numpy as np

#: Bytes: one cache line, one AVX-512 vector.
ALIGNMENT = 64


def is_aligned(a):
    """Whether ``a``'s data starts on an ``ALIGNMENT`` boundary."""
    return a.ctypes.data % ALIGNMENT == 0


def aligned_empty(shape, dtype=np.float32):
    """An uninitialized C-contiguous array of ``shape`` whose data starts on an ``ALIGNMENT`` boundary."""
    dtype = np.dtype(dtype)
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(shape)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    offset = -raw.ctypes.data % ALIGNMENT
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


def aligned(a, dtype=None):
    """``a`` as a C-contiguous array of ``dtype`` (default: its own) on an ``ALIGNMENT`` boundary: ``a`` itself
    when it already is one, else an aligned copy (writeable)."""
    a = np.asarray(a)
    dtype = a.dtype if dtype is None else np.dtype(dtype)
    if a.dtype == dtype and a.flags.c_contiguous and is_aligned(a):
        return a
    out = aligned_empty(a.shape, dtype)
    out[...] = a
    return out
