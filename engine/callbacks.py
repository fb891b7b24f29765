"""Training callbacks with Keras semantics: History, EarlyStopping, ModelCheckpoint, LearningRateScheduler (with the
StepDecay and CosineDecay schedules), CSVLogger and JSONLogger; ``save_history`` / ``load_history``; and
EpochCheckpoint, the run checkpoints ``dropcore train --out DIR`` resumes from (``checkpoints`` lists them).

``fit`` calls ``on_epoch_end`` of History first, then the others in the order given.
"""
import csv
import inspect
import json
import math
import os
from pathlib import Path

from .utils import atomic_write
from .validation import check_float, check_int, invalid


class Callback:
    """Hooks called by ``fit``. ``self.model`` is set before training starts; ``logs`` is a dict of floats."""

    def __init__(self):
        self.model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass


class History(Callback):
    """Per-epoch logs: ``history.history["loss"]``, ``["accuracy"]``, ``["val_loss"]``, ... and ``history.epoch``."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))


# --- stopping, checkpoints, schedules, logs ----------------------------------------------------------------
def _resolve_mode(mode, monitor, where):
    """``"min"``/``"max"``; ``"auto"`` maximizes accuracies and minimizes everything else (Keras's rule)."""
    if mode not in ("auto", "min", "max"):
        raise invalid("mode", "one of ('auto', 'min', 'max')", mode, where)
    if mode == "auto":
        return "max" if monitor.endswith(("acc", "accuracy", "auc")) else "min"
    return mode


def _monitored(logs, monitor, where):
    value = (logs or {}).get(monitor)
    if value is None:
        raise ValueError(f"{where}: the monitored quantity '{monitor}' is not in the epoch's logs; available: "
                         f"{', '.join(sorted(logs or {})) or 'none'} (val_* needs validation data)")
    return float(value)


class _Monitor(Callback):
    """Tracks the best value of ``monitor`` with ``mode`` and ``min_delta``."""

    def __init__(self, monitor, mode, min_delta=0.0):
        super().__init__()
        where = type(self).__name__
        if not isinstance(monitor, str) or not monitor:
            raise invalid("monitor", "a metric name such as 'val_loss'", monitor, where)
        self.monitor = monitor
        self.mode = _resolve_mode(mode, monitor, where)
        self.min_delta = abs(check_float(min_delta, "min_delta", None, None, where=where))
        self.best = None

    def _improves(self, value):
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(_Monitor):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs (Keras semantics).

    An epoch improves when the value beats the best so far by more than ``min_delta``. With
    ``restore_best_weights=True`` the model ends training with the weights of its best epoch (also when training
    ran to the end without stopping, as in Keras 3). After training, ``stopped_epoch`` is the 0-based epoch at which
    training was stopped (0 if it was not) and ``best_epoch`` the best one.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 restore_best_weights=False):
        super().__init__(monitor, mode, min_delta)
        self.patience = check_int(patience, "patience", 0, "EarlyStopping")
        self.verbose = verbose
        self.restore_best_weights = bool(restore_best_weights)

    def on_train_begin(self, logs=None):
        self.best = None
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        value = _monitored(logs, self.monitor, "EarlyStopping")
        if self._improves(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:  # `patience` epochs in a row without improvement
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        if self.verbose and self.stopped_epoch:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping; best {self.monitor} "
                  f"{self.best:.4f} at epoch {self.best_epoch + 1}", flush=True)


class ModelCheckpoint(_Monitor):
    """Save the model through ``model.save`` (atomic) after each epoch, or only when ``monitor`` improved.

    ``filepath`` may hold ``str.format`` fields: ``{epoch}`` (1-based) and the epoch's logs, e.g.
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.dropcore"``.
    ``saved`` lists the paths written, in order.
    """

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto", verbose=0):
        super().__init__(monitor, mode)
        if not isinstance(filepath, (str, os.PathLike)) or not os.fspath(filepath):
            raise invalid("filepath", "a file path", filepath, "ModelCheckpoint")
        self.filepath = os.fspath(filepath)
        self.save_best_only = bool(save_best_only)
        self.verbose = verbose
        self.saved = []

    def on_train_begin(self, logs=None):
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = _monitored(logs, self.monitor, "ModelCheckpoint")
            if not self._improves(value):
                return
            self.best = value
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint: cannot fill filepath {self.filepath!r} from epoch and "
                             f"{sorted(logs)} ({exc!r})") from None
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self.model.save(path)  # atomic: written under a temporary name, then renamed over the target
        self.saved.append(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved the model to {path}", flush=True)


#: The name of the checkpoint :class:`EpochCheckpoint` writes after ``epoch`` epochs.
CHECKPOINT = "checkpoint-{epoch:04d}.dropcore"


def checkpoints(out):
    """``[(epochs done, path)]`` of the checkpoints :class:`EpochCheckpoint` wrote in ``out``, oldest first."""
    found = []
    for path in Path(out).glob("checkpoint-*.dropcore"):
        stem = path.stem.split("-", 1)[1]
        if stem.isdigit():
            found.append((int(stem), path))
    return sorted(found)


class EpochCheckpoint(Callback):
    """After each epoch: the model with its optimizer state saved as ``checkpoint-<epochs done>.dropcore``
    (atomically), then the older checkpoints removed: a killed run resumes from the newest with ``--resume``."""

    def __init__(self, out):
        super().__init__()
        self.out = Path(out)

    def on_epoch_end(self, epoch, logs=None):
        path = self.out / CHECKPOINT.format(epoch=epoch + 1)
        self.model.save(path)
        for done, old in checkpoints(self.out):
            if done < epoch + 1:
                old.unlink(missing_ok=True)


class StepDecay:
    """``initial_lr * drop ** floor(epoch / epochs_drop)``: the rate falls by ``drop`` every ``epochs_drop``."""

    def __init__(self, initial_lr, drop=0.5, epochs_drop=10):
        self.initial_lr = check_float(initial_lr, "initial_lr", 0.0, None, low_open=True, where="StepDecay")
        self.drop = check_float(drop, "drop", 0.0, 1.0, low_open=True, where="StepDecay")
        self.epochs_drop = check_int(epochs_drop, "epochs_drop", 1, "StepDecay")

    def __call__(self, epoch, lr=None):
        return self.initial_lr * self.drop ** (epoch // self.epochs_drop)


class CosineDecay:
    """Cosine annealing per epoch from ``initial_lr`` down to ``alpha * initial_lr`` at ``decay_epochs``:
    ``initial_lr * ((1 - alpha) * 0.5 * (1 + cos(pi * min(epoch, decay_epochs) / decay_epochs)) + alpha)``."""

    def __init__(self, initial_lr, decay_epochs, alpha=0.0):
        self.initial_lr = check_float(initial_lr, "initial_lr", 0.0, None, low_open=True, where="CosineDecay")
        self.decay_epochs = check_int(decay_epochs, "decay_epochs", 1, "CosineDecay")
        self.alpha = check_float(alpha, "alpha", 0.0, 1.0, where="CosineDecay")

    def __call__(self, epoch, lr=None):
        t = min(epoch, self.decay_epochs) / self.decay_epochs
        return self.initial_lr * ((1.0 - self.alpha) * 0.5 * (1.0 + math.cos(math.pi * t)) + self.alpha)


class LearningRateScheduler(Callback):
    """Set ``model.optimizer.learning_rate = schedule(epoch, lr)`` at the start of each epoch (0-based epoch).

    ``schedule`` may also take the epoch alone. ``rates`` lists the rate used at each epoch.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise invalid("schedule", "a callable schedule(epoch, lr) -> float", schedule, "LearningRateScheduler")
        self.schedule = schedule
        try:
            self._two_args = len(inspect.signature(schedule).parameters) >= 2
        except (TypeError, ValueError):  # a builtin without a signature: Keras's two-argument form
            self._two_args = True
        self.verbose = verbose
        self.rates = []

    def on_train_begin(self, logs=None):
        self.rates = []

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        lr = self.schedule(epoch, opt.learning_rate) if self._two_args else self.schedule(epoch)
        opt.learning_rate = check_float(lr, "learning_rate", 0.0, None,
                                        where=f"LearningRateScheduler (the schedule's value at epoch {epoch})")
        self.rates.append(opt.learning_rate)
        if self.verbose:
            print(f"Epoch {epoch + 1}: learning rate {opt.learning_rate:.6g}", flush=True)


class CSVLogger(Callback):
    """Write one CSV row per epoch (``epoch`` then the logs' keys, sorted), flushed as it goes (Keras's format).

    ``append=True`` continues an existing file (no second header). ``initial``: the earlier epochs of a resumed run
    (as :func:`load_history` returns them), written first, as they were logged.
    """

    def __init__(self, filename, separator=",", append=False, initial=None):
        super().__init__()
        if not isinstance(filename, (str, os.PathLike)) or not os.fspath(filename):
            raise invalid("filename", "a file path", filename, "CSVLogger")
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = bool(append)
        self.initial = initial
        self._file = self._writer = self._keys = None

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.isfile(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, delimiter=self.separator)
        self._keys = None
        self._has_header = exists
        for i, epoch in enumerate((self.initial or {}).get("epoch", [])):
            self.on_epoch_end(int(epoch), {k: v[i] for k, v in self.initial.items() if k != "epoch"})

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._keys is None:
            self._keys = sorted(logs)
            if not self._has_header:
                self._writer.writerow(["epoch"] + self._keys)
        self._writer.writerow([epoch] + [repr(float(logs[k])) if k in logs else "NA" for k in self._keys])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


def save_history(history, path):
    """Write a history (a :class:`History` or its ``.history`` dict) as JSON, atomically; returns ``path``.

    The file is the dict ``{"loss": [...], "accuracy": [...], "val_loss": [...], ...}`` that Keras users dump,
    plus ``"epoch"`` (0-based epoch numbers).
    """
    if isinstance(history, History):
        data = {"epoch": list(history.epoch), **history.history}
    elif isinstance(history, dict):
        data = dict(history)
    else:
        raise invalid("history", "a dropcore History or a dict of lists", type(history).__name__, "save_history")
    path = os.fspath(path)
    with atomic_write(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
    return path


def load_history(path):
    """Read a history written by :func:`save_history` / :class:`JSONLogger` (.json) or :class:`CSVLogger` (.csv)
    into a dict of lists of floats."""
    path = os.fspath(path)
    if path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            raise ValueError(f"{path}: no epochs in the CSV history; expected a header and one row per epoch")
        return {k: [int(r[k]) if k == "epoch" else float(r[k]) for r in rows] for k in rows[0]}
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc}); expected a training history") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ValueError(f"{path}: expected a JSON object of lists such as {{\"loss\": [...]}}")
    return data


class JSONLogger(Callback):
    """Rewrite the whole history as JSON (see :func:`save_history`) at the end of every epoch, so an interrupted
    run keeps what it learned about its curves. ``initial``: the earlier epochs of a resumed run (as
    :func:`load_history` returns them), kept ahead of the new ones."""

    def __init__(self, filename, initial=None):
        super().__init__()
        if not isinstance(filename, (str, os.PathLike)) or not os.fspath(filename):
            raise invalid("filename", "a file path", filename, "JSONLogger")
        self.filename = os.fspath(filename)
        self.initial = initial  # a resumed run's earlier epochs: {"epoch": [...], "loss": [...], ...}
        self.history = History()

    def on_train_begin(self, logs=None):
        self.history = History()
        if self.initial:
            self.history.epoch = [int(e) for e in self.initial.get("epoch", [])]
            self.history.history = {k: [float(v) for v in vals] for k, vals in self.initial.items() if k != "epoch"}

    def on_epoch_end(self, epoch, logs=None):
        self.history.on_epoch_end(epoch, logs)
        save_history(self.history, self.filename)
