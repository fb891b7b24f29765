"""MNIST and Fashion-MNIST from local IDX files or from Keras's ``mnist.npz``, found in the data set caches or, with
``download=True`` only, downloaded into dropcore's (see :mod:`dropcore.data.cache`)."""
import os
import zipfile

import numpy as np

from . import cache
from ._files import check_directory, check_kind, find_file
from .errors import DataError
from .idx import load_idx

#: kind -> (images file, labels file), the standard names shared by MNIST and Fashion-MNIST.
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _candidates(stem):
    return (stem, stem + ".gz")


def _to_float_images(images):
    """uint8 (N, H, W) -> float32 (N, H, W, 1) in [0, 1], without an intermediate float64 copy."""
    x = images.astype(np.float32)
    x /= np.float32(255.0)
    return x.reshape(x.shape + (1,))


def load_mnist(path=None, kind="test", download=False):
    """Load MNIST from a local directory of IDX files, from Keras's ``mnist.npz``, or from the data set caches.

    Args:
        path: directory holding the standard files for ``kind``, raw or gzipped (either name is accepted,
            compression is detected from the content): ``t10k-images-idx3-ubyte[.gz]`` and
            ``t10k-labels-idx1-ubyte[.gz]`` for ``"test"``, ``train-images-idx3-ubyte[.gz]`` and
            ``train-labels-idx1-ubyte[.gz]`` for ``"train"``. If ``path`` is an ``.npz`` file instead, it is
            read with :func:`load_mnist_npz`. ``None`` (default): Keras's ``mnist.npz`` from dropcore's cache
            (``$DROPCORE_DATA``, else ``~/.dropcore/datasets``), else from Keras's (``~/.keras/datasets``).
        kind: ``"test"`` (10,000 samples) or ``"train"`` (60,000 samples).
        download: with ``path=None`` and ``mnist.npz`` in neither cache, download it (11 MB, SHA-256 checked)
            into dropcore's cache. Never needed when ``path`` is given.

    Returns:
        ``(x, y)``: ``x`` float32 of shape ``(N, 28, 28, 1)`` (channels-last) scaled to [0, 1], ``y`` int64 of
        shape ``(N,)``.

    Raises:
        DataError: a file is missing, truncated or malformed, the images are not a 3-D ubyte IDX array (magic
            0x00000803), the labels not a 1-D ubyte one (magic 0x00000801), or their counts differ; with
            ``path=None``, the data set is in no cache and ``download`` is false (the message says where it looked),
            or the download failed (see :func:`dropcore.data.download.fetch`).
    """
    check_kind(kind)
    if path is None:
        return load_mnist_npz(_cached_mnist_npz(download), kind)
    return _load_mnist_dir(path, kind)


def load_fashion_mnist(path=None, kind="test", download=False):
    """Load Fashion-MNIST: with a ``path``, exactly :func:`load_mnist` (same file names and IDX format).

    With ``path=None`` the images and labels files of ``kind`` are looked for in ``fashion-mnist/`` in dropcore's
    cache, then in Keras's (where ``keras.datasets.fashion_mnist.load_data()`` puts them); ``download=True`` fetches
    the ``.gz`` files missing (26 MB for ``"train"``, 4 MB for ``"test"``, SHA-256 checked) into dropcore's cache
    when neither cache has them. Returns ``(x, y)`` as :func:`load_mnist` does; raises :class:`DataError` as it does.
    """
    check_kind(kind)
    if path is None:
        path = _cached_fashion_dir(kind, download)
    return _load_mnist_dir(path, kind)


def _cached_mnist_npz(download):
    looked = [os.path.join(root, "mnist.npz") for root in cache.roots()]
    for candidate in looked:
        if os.path.isfile(candidate):
            return candidate
    if not download:
        raise cache.not_found("MNIST (mnist.npz)", looked)
    return cache.fetch_source("mnist.npz")


def _cached_fashion_dir(kind, download):
    stems = MNIST_FILES[kind]
    looked = [os.path.join(root, "fashion-mnist") for root in cache.roots()]

    def has(directory, stem):
        return any(os.path.isfile(os.path.join(directory, n)) for n in _candidates(stem))

    for directory in looked:
        if all(has(directory, stem) for stem in stems):
            return directory
    if not download:
        raise cache.not_found(f"Fashion-MNIST {kind} files ({', '.join(s + '.gz' for s in stems)})", looked)
    for stem in stems:
        if not has(looked[0], stem):
            cache.fetch_source(f"fashion-mnist/{stem}.gz")
    return looked[0]


def _load_mnist_dir(path, kind):
    """MNIST or Fashion-MNIST from ``path``, a directory of IDX files or an ``.npz`` file (load_mnist's reader)."""
    name = os.fspath(path)
    if os.path.isfile(name) and name.endswith(".npz"):
        return load_mnist_npz(name, kind)
    directory = check_directory(name)
    images_stem, labels_stem = MNIST_FILES[kind]
    images_path = find_file(directory, _candidates(images_stem), f"MNIST {kind} images")
    labels_path = find_file(directory, _candidates(labels_stem), f"MNIST {kind} labels")
    images = load_idx(images_path)
    labels = load_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{images_path}: holds a {images.ndim}-D {images.dtype} array, expected 3-D ubyte images "
            "(IDX magic 0x00000803)"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{labels_path}: holds a {labels.ndim}-D {labels.dtype} array, expected 1-D ubyte labels "
            "(IDX magic 0x00000801)"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path}: has {images.shape[0]} images but {labels_path} has {labels.shape[0]} labels, "
            "expected the same count"
        )
    return _to_float_images(images), labels.astype(np.int64)


def load_mnist_npz(path, kind="test"):
    """Load MNIST from Keras's ``mnist.npz`` (keys ``x_train``, ``y_train``, ``x_test``, ``y_test``).

    The archive is opened with ``allow_pickle=False``: object arrays are refused, so loading it cannot run code.

    Args:
        path: the ``.npz`` file.
        kind: ``"test"`` or ``"train"``.

    Returns:
        ``(x, y)`` as for :func:`load_mnist`: ``x`` float32 ``(N, 28, 28, 1)`` in [0, 1], ``y`` int64 ``(N,)``.

    Raises:
        DataError: the file is missing, not an npz archive, lacks the keys for ``kind``, holds object arrays, or
            the arrays have unexpected types or shapes.
    """
    check_kind(kind)
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise DataError(f"{name}: no such file (expected Keras's mnist.npz)")
    if os.path.getsize(name) == 0:
        raise DataError(f"{name}: file is empty (0 bytes), expected an .npz archive")
    xkey, ykey = f"x_{kind}", f"y_{kind}"
    try:
        archive = np.load(name, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{name}: cannot read as an .npz archive without pickles ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{name}: holds a single .npy array, expected an .npz archive with x_/y_ arrays")
    with archive:
        missing = [k for k in (xkey, ykey) if k not in archive.files]
        if missing:
            raise DataError(
                f"{name}: missing key(s) {', '.join(missing)}; expected x_train, y_train, x_test, y_test, "
                f"found {', '.join(archive.files) or 'none'}"
            )
        try:
            images, labels = archive[xkey], archive[ykey]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{name}: cannot read {xkey}/{ykey} without pickles ({exc})") from None
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3:
        raise DataError(f"{name}: {xkey} has shape {images.shape}, expected (N, 28, 28) or (N, 28, 28, 1)")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{name}: {ykey} is {labels.dtype} of shape {labels.shape}, expected {images.shape[0]} integer labels"
        )
    if images.dtype == np.uint8:
        return _to_float_images(images), labels.astype(np.int64)
    if np.issubdtype(images.dtype, np.floating) and images.size and 0.0 <= images.min() and images.max() <= 1.0:
        return images.astype(np.float32).reshape(images.shape + (1,)), labels.astype(np.int64)
    raise DataError(f"{name}: {xkey} is {images.dtype}, expected uint8 pixels (or floats already in [0, 1])")
