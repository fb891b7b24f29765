"""CIFAR-10 from a local directory, binary or python version, or from the data set caches (the python version, which
``download=True`` fetches into dropcore's cache when no cache has it; see :mod:`dropcore.data.cache`).

Binary version (``cifar-10-batches-bin``): ``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin``,
each a sequence of 3073-byte records: 1 label byte (0..9) then 3072 pixel bytes, the 32x32 red plane, then green,
then blue (CHW, row-major).

Python version (``cifar-10-batches-py``): ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``, each a pickled
dict with ``b"data"`` (uint8 array of shape (N, 3072), same CHW layout) and ``b"labels"`` (N ints). These are read
with the restricted unpickler of :mod:`dropcore.data.safe_pickle`, never with plain ``pickle.load``.
"""
import os

import numpy as np

from . import cache
from ._files import check_directory, check_kind, read_bytes
from .errors import DataError
from .safe_pickle import restricted_loads

RECORD_BYTES = 1 + 3 * 32 * 32
NUM_CLASSES = 10
_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_SUBDIRS = ("cifar-10-batches-bin", "cifar-10-batches-py")
_ARCHIVE = "cifar-10-python.tar.gz"  # the download.SOURCES entry, which holds cifar-10-batches-py/


def _read_binary_batch(path):
    data, _ = read_bytes(path)
    n, rem = divmod(len(data), RECORD_BYTES)
    if rem:
        raise DataError(
            f"{path}: {len(data)} bytes is not a whole number of {RECORD_BYTES}-byte records (1 label byte + "
            f"3072 pixel bytes): {n} full records and {rem} bytes left over"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(n, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    pixels = records[:, 1:].reshape(n, 3, 32, 32)
    _check_labels(path, labels)
    return pixels, labels


def _get(batch, key):
    for k in (key.encode("ascii"), key):
        if k in batch:
            return batch[k]
    return None


def _read_python_batch(path):
    raw, _ = read_bytes(path)
    batch = restricted_loads(raw, str(path))
    if not isinstance(batch, dict):
        raise DataError(f"{path}: unpickled a {type(batch).__name__}, expected a dict with b'data' and b'labels'")
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if data is None or labels is None:
        raise DataError(f"{path}: dict has keys {sorted(map(repr, batch))}, expected b'data' and b'labels'")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: b'data' is a {desc}, expected a uint8 array of shape (N, 3072)")
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError):  # e.g. a ragged nested list
        labels = np.asarray([], dtype=object)
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: b'labels' should be {data.shape[0]} integers, got {labels.dtype} {labels.shape}")
    labels = labels.astype(np.int64)
    _check_labels(path, labels)
    return data.reshape(-1, 3, 32, 32), labels


def _check_labels(path, labels):
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{path}: record {i} has label {int(labels[i])}, expected 0..{NUM_CLASSES - 1} "
            "(CIFAR-100 files are not supported)"
        )


def _locate(directory, kind):
    """Pick the format and files: binary if all its batches are present, else python, else a DataError."""
    roots = [directory] + [os.path.join(directory, s) for s in _SUBDIRS if os.path.isdir(os.path.join(directory, s))]
    stems = _BATCHES[kind]
    partial = None
    for root in roots:
        for suffix, reader in ((".bin", _read_binary_batch), ("", _read_python_batch)):
            paths = [os.path.join(root, s + suffix) for s in stems]
            present = [os.path.isfile(p) for p in paths]
            if all(present):
                return paths, reader
            if any(present) and partial is None:
                partial = (root, [os.path.basename(p) for p, ok in zip(paths, present) if not ok])
    if partial is not None:
        root, missing = partial
        raise DataError(f"{root}: incomplete CIFAR-10 {kind} set: missing {', '.join(missing)}")
    wanted = ", ".join(s + ".bin" for s in stems) + " (binary) or " + ", ".join(stems) + " (python)"
    raise DataError(f"{directory}: no CIFAR-10 {kind} files found: expected {wanted}")


def load_cifar10(path=None, kind="train", download=False):
    """Load CIFAR-10 from a local directory of the binary or the python version, or from the data set caches.

    Args:
        path: directory holding the batch files, or its parent containing ``cifar-10-batches-bin`` /
            ``cifar-10-batches-py`` as extracted from the official archives. The binary version is preferred when
            both are complete. Files may also be gzipped (detected from content). ``None`` (default): the python
            version's ``cifar-10-batches-py`` in dropcore's cache (``$DROPCORE_DATA``, else
            ``~/.dropcore/datasets``), else where Keras extracts it (``~/.keras/datasets``, Keras 3's
            ``cifar-10-batches-py-target/`` or older Keras's layout).
        kind: ``"train"`` (``data_batch_1`` .. ``5``, 50,000 images) or ``"test"`` (``test_batch``, 10,000).
        download: with ``path=None`` and the batches in no cache, download the official python tarball (163 MB,
            SHA-256 checked), extract it safely and keep its ``cifar-10-batches-py`` in dropcore's cache.

    Returns:
        ``(x, y)``: ``x`` float32 of shape ``(N, 32, 32, 3)`` (channels-last) in [0, 1], ``y`` int64 ``(N,)``.

    Raises:
        DataError: a batch is missing, empty, not a whole number of 3073-byte records (binary), not a valid or
            allowed pickle (python; see :mod:`dropcore.data.safe_pickle`), or holds labels outside 0..9; with
            ``path=None``, the data set is in no cache and ``download`` is false (the message says where it looked),
            or the download or the extraction failed.
            :class:`UnsafePickleError` (a ``DataError``) when a pickle references anything but the allowed types.
    """
    check_kind(kind)
    directory = _cached_dir(kind, download) if path is None else check_directory(path)
    paths, reader = _locate(directory, kind)
    pixels, labels = zip(*(reader(p) for p in paths))
    chw = np.concatenate(pixels) if len(pixels) > 1 else pixels[0]
    x = chw.transpose(0, 2, 3, 1).astype(np.float32, order="C")
    x /= np.float32(255.0)
    y = np.concatenate(labels) if len(labels) > 1 else labels[0]
    return x, y.astype(np.int64, copy=False)


def _cached_dir(kind, download):
    """The cached ``cifar-10-batches-py`` holding ``kind``'s batches: dropcore's, Keras 3's, older Keras's."""
    ours, keras = cache.roots()
    looked = [
        os.path.join(ours, "cifar-10-batches-py"),
        os.path.join(keras, "cifar-10-batches-py-target", "cifar-10-batches-py"),  # keras.datasets.cifar10, Keras 3
        os.path.join(keras, "cifar-10-batches-py"),  # Keras 2 / tf.keras
    ]
    for directory in looked:
        if all(os.path.isfile(os.path.join(directory, stem)) for stem in _BATCHES[kind]):
            return directory
    if not download:
        raise cache.not_found(f"CIFAR-10 {kind} batches ({', '.join(_BATCHES[kind])})", looked)
    return cache.fetch_archive(_ARCHIVE, "cifar-10-batches-py")
