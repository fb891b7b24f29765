"""Metrics: "accuracy" resolves to the right variant for the loss, as in Keras."""
import numpy as np

from .validation import invalid


def sparse_categorical_accuracy(y, out):
    return (np.argmax(out, axis=-1) == y).astype(np.float32)


def categorical_accuracy(y, out):
    return (np.argmax(out, axis=-1) == np.argmax(y, axis=-1)).astype(np.float32)


def binary_accuracy(y, out, threshold=0.5):
    return np.mean((out > threshold) == (y > 0.5), axis=tuple(range(1, out.ndim))).astype(np.float32)


def resolve(name, loss, out_logits_head=None):
    """Return ``(name, fn(y, out) -> per-sample values)`` for the metric ``name`` given the loss."""
    if not isinstance(name, str) or name.lower() not in ("accuracy", "acc"):
        raise invalid("metrics", "a list containing 'accuracy'", name)
    lname = loss.name
    if lname == "sparse_categorical_crossentropy":
        return "accuracy", sparse_categorical_accuracy
    if lname == "binary_crossentropy":
        return "accuracy", binary_accuracy
    return "accuracy", categorical_accuracy
