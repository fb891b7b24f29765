"""The 8x8 handwritten digits bundled with scikit-learn (read from its package data, nothing is downloaded)."""
import numpy as np


def load_digits():
    """Return scikit-learn's 8x8 digits as ``(x, y)``.

    Returns:
        ``x`` float32 of shape ``(1797, 8, 8, 1)`` (channels-last), the 0..16 pixel counts scaled to [0, 1];
        ``y`` int64 of shape ``(1797,)`` with values 0..9.

    Raises:
        ImportError: scikit-learn is not installed; ``pip install scikit-learn`` (or ``pip install dropcore[digits]``).
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:
        raise ImportError(
            "dropcore.data.load_digits needs scikit-learn, which ships the 8x8 digits data: "
            "pip install scikit-learn (or pip install dropcore[digits])"
        ) from exc
    bunch = _sk_load_digits()
    x = (np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0)).reshape(-1, 8, 8, 1)
    return x, np.asarray(bunch.target, dtype=np.int64)
