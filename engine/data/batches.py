"""What ``fit`` and ``evaluate`` iterate over: arrays cut into batches, or the batches a data source yields.

A data source is what Keras's ``fit(x)`` takes besides arrays: a generator or iterator of batches, an iterable that
can be iterated again each epoch (a list of batches, a PyTorch ``DataLoader``), or a sequence with ``__len__`` and
``__getitem__`` returning batch ``i`` (``keras.utils.PyDataset``, ``keras.utils.Sequence``), whose
``on_epoch_end()`` is called after each epoch. Each batch is ``(x, y)`` or ``(x, y, sample_weight)``.
"""
import itertools

import numpy as np

from ..validation import invalid


def is_source(x):
    """Whether ``x`` is a data source rather than an array (a list or tuple is an array, as in Keras)."""
    if isinstance(x, (np.ndarray, list, tuple, str, bytes)) or np.isscalar(x):
        return False
    return hasattr(x, "__next__") or hasattr(x, "__iter__") or (hasattr(x, "__getitem__") and hasattr(x, "__len__"))


def sample_weights(y, sample_weight, class_weight, where):
    """float32 weights, one per sample (``None``: all 1), from ``sample_weight`` or ``class_weight``
    (``{class: weight}``, each sample weighted by its class: its label, its one-hot's argmax, or its 0/1 target)."""
    if sample_weight is not None and class_weight is not None:
        raise ValueError(f"{where}: give `class_weight` or `sample_weight`, not both (Keras refuses both too); to "
                         f"combine them, multiply the class weights into the sample weights")
    w = None
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.ndim == 2 and w.shape[1] == 1:
            w = w[:, 0]
        if w.shape != (len(y),):
            raise ValueError(f"{where}: `sample_weight` must hold one weight per sample, shape ({len(y)},); received "
                             f"shape {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError(f"{where}: `sample_weight` must be finite and >= 0")
    if class_weight is not None:
        if not isinstance(class_weight, dict) or not class_weight:
            raise invalid("class_weight", "a dict {class index: weight}", class_weight, where)
        labels = _classes(y)
        missing = sorted(set(np.unique(labels).tolist()) - set(int(k) for k in class_weight))
        if missing:
            raise ValueError(f"{where}: `class_weight` has no weight for class(es) {missing}; received keys "
                             f"{sorted(class_weight)}")
        table = {int(k): float(v) for k, v in class_weight.items()}
        if not all(np.isfinite(v) and v >= 0 for v in table.values()):
            raise ValueError(f"{where}: `class_weight` values must be finite and >= 0; received {class_weight}")
        w = np.array([table[int(c)] for c in labels], dtype=np.float64)
    return None if w is None else w.astype(np.float32)


def _classes(y):
    """Each sample's class: integer labels as they are, one-hot rows by argmax, one 0/1 target rounded."""
    y = np.asarray(y)
    if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
        return np.rint(y.reshape(-1)).astype(np.int64)
    return y.reshape(len(y), -1).argmax(axis=1)


class ArrayBatches:
    """``(x, y, w)`` arrays cut into batches, shuffled each epoch from ``rng`` when ``shuffle``."""

    def __init__(self, x, y, w, batch_size, shuffle, rng):
        self.x, self.y, self.w = x, y, w
        self.batch_size, self.shuffle, self.rng = batch_size, shuffle, rng
        self.steps = -(-len(x) // batch_size)

    def skip_epoch(self):
        """Draw what an epoch draws, without training (``initial_epoch``: the later epochs shuffle as they would
        have in an uninterrupted run)."""
        if self.shuffle:
            self.rng.permutation(len(self.x))

    def epoch(self):
        n, bs = len(self.x), self.batch_size
        order = self.rng.permutation(n) if self.shuffle else None
        for b in range(self.steps):
            sl = slice(b * bs, min(n, (b + 1) * bs))
            idx = order[sl] if order is not None else sl
            w = None if self.w is None else self.w[idx]
            yield np.ascontiguousarray(self.x[idx]), self.y[idx], w


class SourceBatches:
    """The batches of a data source (see the module docstring), checked by ``check(x, y)`` one by one. A sequence's
    batches come in a new order each epoch with ``shuffle`` (from ``rng``), as Keras does with a PyDataset."""

    def __init__(self, source, steps, check, where, epochs=1, shuffle=False, rng=None):
        self.source, self.check, self.where = source, check, where
        self.shuffle, self.rng = shuffle, rng
        self.sequence = hasattr(source, "__getitem__") and hasattr(source, "__len__") and \
            not hasattr(source, "__next__")
        self.one_shot = hasattr(source, "__next__")
        if self.one_shot and steps is None and epochs > 1:
            raise ValueError(f"{where}: a generator or iterator can be read once; give `steps_per_epoch` so that "
                             f"{epochs} epochs each take that many batches from it")
        self.steps = steps if steps is not None else (len(source) if self.sequence else None)
        self._iter = source if self.one_shot else None

    def skip_epoch(self):
        """Draw what an epoch draws (a sequence's shuffled order), without training."""
        if self.sequence and self.shuffle:
            self.rng.permutation(len(self.source))

    def epoch(self):
        if self.sequence:
            order = self.rng.permutation(len(self.source)) if self.shuffle else range(len(self.source))
            batches = (self.source[int(i)] for i in order)
        elif self.one_shot:
            batches = self._iter
        else:
            batches = iter(self.source)
        taken = 0
        for batch in itertools.islice(batches, self.steps):
            taken += 1
            yield self._unpack(batch, taken)
        if self.steps is not None and taken < self.steps and self.one_shot:
            raise ValueError(f"{self.where}: the generator ran out after {taken} of the {self.steps} batches "
                             f"`steps_per_epoch` asks for")
        if taken == 0:
            raise ValueError(f"{self.where}: the data source yielded no batch")
        if hasattr(self.source, "on_epoch_end"):
            self.source.on_epoch_end()

    def _unpack(self, batch, number):
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise ValueError(f"{self.where}: batch {number} of the data source is {type(batch).__name__}; expected "
                             f"a tuple (x, y) or (x, y, sample_weight)")
        x, y = self.check(batch[0], batch[1])
        w = None if len(batch) == 2 or batch[2] is None else sample_weights(y, batch[2], None, self.where)
        return x, y, w
