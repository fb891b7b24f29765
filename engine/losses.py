"""Losses by name and as objects (Keras names). Each reduces to the mean over the batch.

When the model ends in softmax (sigmoid) and the loss is (binary) cross-entropy on probabilities, the trainer asks
the plan for logits and uses the fused, numerically stable kernel: the gradient is ``softmax - onehot``.
"""
import numpy as np

from .validation import invalid

_EPS = np.float32(1e-7)


class Loss:
    """Base class. ``loss(y_true, y_pred)`` is the batch mean; the trainer uses :meth:`per_sample`."""

    name = "loss"
    fuses_with = None  # "softmax" / "sigmoid": the output activation this loss can fuse with

    def __init__(self, from_logits=False):
        if not isinstance(from_logits, bool):
            raise invalid("from_logits", "a bool", from_logits, type(self).__name__)
        self.from_logits = from_logits

    def check_targets(self, y, out_shape):
        """Validate and convert targets for an output of ``out_shape`` (batch included)."""
        y = np.asarray(y)
        if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
            raise TypeError(f"{self.name}: `y` must be numeric; received dtype {y.dtype}")
        if out_shape[-1] == 1 and y.shape == tuple(out_shape[:-1]):
            y = y.reshape(out_shape)  # (N,) labels for a one-unit output, as every tabular tutorial passes them
        if y.shape != tuple(out_shape):
            raise ValueError(f"{self.name}: `y` must have shape {tuple(out_shape)} to match the model output; "
                             f"received {y.shape}")
        y = np.ascontiguousarray(y, dtype=np.float32)
        if not np.isfinite(y).all():
            raise ValueError(f"{self.name}: `y` contains non-finite values")
        return y

    def per_sample(self, ops, out, y, logits):
        """``(loss per sample, d loss / d out per sample)``; ``logits``: ``out`` is pre-activation."""
        raise NotImplementedError

    def __call__(self, y_true, y_pred):
        from .ops import get_ops

        y_pred = np.ascontiguousarray(y_pred, dtype=np.float32)
        y = self.check_targets(y_true, y_pred.shape)
        return float(np.mean(self.per_sample(get_ops("reference"), y_pred, y, self.from_logits)[0]))

    def get_config(self):
        return {"from_logits": self.from_logits}


class CategoricalCrossentropy(Loss):
    """Cross-entropy with one-hot (or soft) targets shaped like the output."""

    name, fuses_with = "categorical_crossentropy", "softmax"

    def per_sample(self, ops, out, y, logits):
        if logits:
            return ops.softmax_cross_entropy(out, y)
        total = out.sum(axis=-1, keepdims=True)
        p = np.clip(out / total, _EPS, 1 - _EPS)
        loss = -np.sum(y * np.log(p), axis=-1)
        # d/dout of -sum(y log(out/total)) = -y/out + sum(y)/total (zero where clipped, as Keras)
        inside = (out / total > _EPS) & (out / total < 1 - _EPS)
        grad = (-y / np.maximum(out, _EPS)) * inside + y.sum(axis=-1, keepdims=True) / total
        return loss.astype(np.float32), grad.astype(np.float32)


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy with integer class labels, shape ``(N,)`` or ``(N, 1)``."""

    name, fuses_with = "sparse_categorical_crossentropy", "softmax"

    def check_targets(self, y, out_shape):
        y = np.asarray(y)
        n, k = out_shape[0], out_shape[-1]
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(f"{self.name}: `y` must hold {n} integer labels, shape ({n},); received shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            if not np.issubdtype(y.dtype, np.floating) or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
                raise TypeError(f"{self.name}: labels must be integers 0..{k - 1}; received dtype {y.dtype}")
        yi = y.astype(np.int64)
        bad = (yi < 0) | (yi >= k)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{self.name}: labels must be in [0, {k - 1}] for a {k}-unit output; "
                             f"label {yi[i]} at index {i}")
        return np.ascontiguousarray(yi)

    def per_sample(self, ops, out, y, logits):
        if logits:
            return ops.sparse_softmax_cross_entropy(out, y)
        onehot = np.zeros(out.shape, np.float32)
        onehot[np.arange(len(y)), y] = 1
        return CategoricalCrossentropy.per_sample(self, ops, out, onehot, False)


class BinaryCrossentropy(Loss):
    """Binary cross-entropy per output unit, averaged over the last axis."""

    name, fuses_with = "binary_crossentropy", "sigmoid"

    def per_sample(self, ops, out, y, logits):
        if logits:
            return ops.sigmoid_binary_cross_entropy(out, y)
        p = np.clip(out, _EPS, 1 - _EPS)
        k = out.shape[-1]
        loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p), axis=-1)
        inside = (out > _EPS) & (out < 1 - _EPS)
        grad = (p - y) / (p * (1 - p)) / k * inside
        return loss.reshape(len(out), -1).mean(axis=1).astype(np.float32), grad.astype(np.float32)


class MeanSquaredError(Loss):
    """Mean squared error over every non-batch axis."""

    name = "mean_squared_error"

    def __init__(self):
        super().__init__(False)

    def per_sample(self, ops, out, y, logits):
        return ops.mean_squared_error(out, y)

    def get_config(self):
        return {}


_BY_NAME = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}


def get(identifier):
    """A Loss from a name or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise invalid("loss", f"one of {tuple(_BY_NAME)} or a dropcore.losses.Loss", identifier)
