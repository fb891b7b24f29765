"""Keras's small utilities: ``to_categorical``."""
import numpy as np

from .validation import check_int, invalid


def to_categorical(x, num_classes=None):
    """One-hot float rows for integer class labels, as ``keras.utils.to_categorical``: ``x`` of shape ``(N,)`` (or
    ``(N, 1)``, squeezed) gives ``(N, num_classes)``; ``num_classes`` defaults to ``max(x) + 1``."""
    x = np.asarray(x)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.integer) or (
            np.issubdtype(x.dtype, np.floating) and np.isfinite(x).all() and np.all(x == np.round(x)))):
        raise invalid("x", "integer class labels", f"an array of dtype {x.dtype}", "to_categorical")
    labels = x.astype(np.int64)
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels.reshape(labels.shape[:-1])
    if labels.size and labels.min() < 0:
        raise invalid("x", "labels >= 0", int(labels.min()), "to_categorical")
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    else:
        num_classes = check_int(num_classes, "num_classes", 1, "to_categorical")
        if labels.size and labels.max() >= num_classes:
            raise ValueError(f"to_categorical: label {int(labels.max())} does not fit num_classes={num_classes} "
                             f"(labels must be in [0, {num_classes - 1}])")
    out = np.zeros(labels.shape + (num_classes,), dtype=np.float64)
    np.put_along_axis(out, labels[..., None], 1.0, axis=-1)
    return out
