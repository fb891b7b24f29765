"""Keras's small utilities: ``to_categorical``; and ``atomic_write``, the one way dropcore writes a file atomically
(model files and checkpoints, training histories, downloads, ONNX exports, the CLI's results)."""
import contextlib
import os
import re
import secrets

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


# --- files ----------------------------------------------------------------------------------------------------------
#: The end of the temporary name :func:`atomic_write` writes under, unless told another.
TMP_SUFFIX = ".dropcore-tmp"


@contextlib.contextmanager
def atomic_write(path, mode="wb", *, encoding=None, newline=None, suffix=TMP_SUFFIX, remove_stale=False):
    """Write the file ``path`` atomically: ``with atomic_write(path, "w", encoding="utf-8") as f: ...``.

    ``mode`` is ``"wb"`` or ``"w"`` (text, with ``encoding`` and ``newline`` as :func:`open` takes them).

    ``f`` is a temporary file in ``path``'s directory, named ``.<name>.<pid>.<random hex><suffix>``. When the
    ``with`` block ends normally it is flushed, fsync'ed and renamed over ``path`` (``os.replace``), then the
    directory is fsync'ed; when the block raises, the temporary file is removed and ``path`` is left as it was. A
    reader of ``path`` sees either the previous file or the whole new one, never half of it, even after a crash or
    a kill. ``remove_stale``: first delete the temporary files earlier writes to ``path`` left when their process
    was killed mid-write.
    """
    directory, base = os.path.split(os.path.abspath(os.fspath(path)))
    if remove_stale:
        _remove_stale_temporaries(directory, base, suffix)
    # The pid in the name lets a later write recognise (and delete) what a killed process left behind.
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")
    f = open(tmp, mode.replace("w", "x"), encoding=encoding, newline=newline)  # "x": a new file, never another's
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_directory(directory)


def _remove_stale_temporaries(directory, base, suffix):
    """Delete temporary files of earlier writes to ``base`` whose process is gone (killed mid-write)."""
    if os.name != "posix":  # os.kill(pid, 0) only probes a process on POSIX
        return
    pattern = re.compile(rf"\.{re.escape(base)}\.(\d+)\.[0-9a-f]+{re.escape(suffix)}")
    for name in os.listdir(directory):
        m = pattern.fullmatch(name)
        if m is None or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # still running: perhaps writing right now
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError):
            continue
        with contextlib.suppress(OSError):
            os.remove(os.path.join(directory, name))


def _fsync_directory(directory):
    """Make the rename itself durable (POSIX); some file systems refuse, and the rename is atomic regardless."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
