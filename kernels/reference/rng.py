"""Counter-based random bits for dropout masks (NumPy reference).

A mask bit is a pure function of ``(seed, step, layer, element index)``: no generator state, so the same seed gives
the same mask whatever the number of threads, the order of evaluation, or the backend (NumPy, Numba, Cython).

The stream key ``(k0, k1)`` is derived once per (seed, step, layer) in Python; each element's 32-bit value is
``mix32(mix32(index ^ k0) + k1)`` where ``mix32`` is the "lowbias32" integer hash (C. Wellons), and the element is
kept when that value is ``>= threshold`` with ``threshold = round(rate * 2**32)``.
"""
import numpy as np

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def mix32_int(x):
    """lowbias32 on a Python int (used for key derivation)."""
    x &= _M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _M32
    x ^= x >> 16
    return x


def dropout_key(seed, step, layer):
    """The two 32-bit stream keys for one dropout layer at one training step."""
    seed, step, layer = int(seed) & _M32, int(step) & _M32, int(layer) & _M32
    k0 = mix32_int(seed ^ mix32_int(step * _GOLDEN + mix32_int(layer + 0x632BE5AB)))
    k1 = mix32_int(k0 + _GOLDEN + (layer << 7) + (step << 1))
    return np.uint32(k0), np.uint32(k1)


def keep_threshold(rate):
    """32-bit threshold: an element is kept when its hash is >= this value (so P(keep) = 1 - rate)."""
    return np.uint32(min(int(round(float(rate) * 2.0**32)), _M32))


def mix32(x):
    """lowbias32 on a uint64 array holding 32-bit values (vectorized)."""
    x = x & np.uint64(_M32)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & np.uint64(_M32)
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & np.uint64(_M32)
    x ^= x >> np.uint64(16)
    return x


def random_bits(n, key, offset=0):
    """The 32-bit hash values for element indices ``offset..offset+n-1`` of a stream (uint64 array). Only an
    index's low 32 bits enter the hash: a stream repeats after 2**32 elements."""
    k0, k1 = (np.uint64(k) for k in key)
    idx = np.arange(offset, offset + n, dtype=np.uint64)
    return mix32((mix32(idx ^ k0) + k1) & np.uint64(_M32))


def keep_mask(shape, rate, key, offset=0):
    """Boolean keep-mask of ``shape``, element ``i`` (C order) kept when ``random_bits(offset + i) >= threshold``."""
    n = int(np.prod(shape))
    return (random_bits(n, key, offset) >= np.uint64(keep_threshold(rate))).reshape(shape)
