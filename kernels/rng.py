"""Counter-based random bits for dropout masks (Numba), bit-identical to ``reference.rng``.

See :mod:`dropcore.kernels.reference.rng` for the definition. Kernels call :func:`keep` per element with the
element's flat index in the noise shape, so no mask array is needed in the forward pass.
"""
import numpy as np

from .config import njit
from .reference.rng import dropout_key, keep_threshold  # noqa: F401  (the key is derived in Python)

_M32 = np.uint64(0xFFFFFFFF)


@njit(inline="always")
def mix32(x):
    x = x & _M32
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & _M32
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & _M32
    x ^= x >> np.uint64(16)
    return x


@njit(inline="always")
def random_bits(index, k0, k1):
    """The 32-bit hash value of element ``index`` in the stream ``(k0, k1)`` (all uint64)."""
    return mix32((mix32(np.uint64(index) ^ k0) + k1) & _M32)


@njit(inline="always")
def keep(index, k0, k1, threshold):
    """True when element ``index`` survives dropout (``threshold`` from :func:`keep_threshold`, as uint64)."""
    return random_bits(index, k0, k1) >= threshold
