"""Downloading one official data set file: :func:`fetch`, and :data:`SOURCES`, the files the loaders may fetch.

``fetch(url, dest, sha256)`` streams the file into a temporary file beside ``dest`` (with a progress bar), checks its
SHA-256 and only then renames it over ``dest`` with ``os.replace`` (:func:`dropcore.utils.atomic_write`): ``dest``
is either absent or complete and verified, never a partial or unverified download. The temporary file is removed on
any failure (a refused HTTP status, a timeout, a dropped connection, a checksum mismatch, Ctrl-C).

Only the standard library's ``urllib`` is used. Nothing in dropcore opens a network connection unless a loader is
called with ``download=True`` (see :mod:`dropcore.data.cache`).
"""
import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
from typing import NamedTuple

from ..utils import atomic_write
from .errors import DataError

#: Seconds to wait for the connection, and then for each block of data, before giving up.
DEFAULT_TIMEOUT = 30.0
CHUNK_BYTES = 1 << 16
TMP_SUFFIX = ".dropcore-download"


class Source(NamedTuple):
    """Where an official file is downloaded from and the SHA-256 digest (64 hex digits) it must have."""

    url: str
    sha256: str


_KERAS_BASE = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

#: The files the loaders fetch with ``download=True``, keyed by their path inside dropcore's cache directory
#: (``/``-separated). The loaders read this mapping when they download, so tests (or a mirror) may point an entry
#: at another URL, e.g. ``monkeypatch.setitem(SOURCES, "mnist.npz", Source(url, digest))``.
#:
#: The URLs are the ones Keras 3 downloads from (keras/src/datasets/mnist.py, fashion_mnist.py and cifar10.py), so
#: the files are the same bytes ``keras.datasets.*.load_data()`` stores. The MNIST and CIFAR-10 digests are the
#: ``file_hash`` values in those Keras files. Keras gives no hash for Fashion-MNIST: its four digests are those of
#: the official Zalando Research files (the ones whose MD5s the Fashion-MNIST README publishes, 8d4fb7e6...,
#: 25c81989..., bef4ecab..., bb300cfd..., and whose SHA-256 torchvision's dataset code pins); Keras's copies have
#: the same sizes to the byte (26,421,880, 29,515, 4,422,102 and 5,148 bytes).
SOURCES = {
    "mnist.npz": Source(
        _KERAS_BASE + "mnist.npz", "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
    ),
    "fashion-mnist/train-labels-idx1-ubyte.gz": Source(
        _KERAS_BASE + "train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
    ),
    "fashion-mnist/train-images-idx3-ubyte.gz": Source(
        _KERAS_BASE + "train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
    ),
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": Source(
        _KERAS_BASE + "t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
    ),
    "fashion-mnist/t10k-images-idx3-ubyte.gz": Source(
        _KERAS_BASE + "t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
    ),
    "cifar-10-python.tar.gz": Source(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    ),
}

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def fetch(url, dest, sha256, progress=True, timeout=DEFAULT_TIMEOUT):
    """Download ``url`` to the file ``dest``, atomically and only if its SHA-256 is ``sha256``.

    Args:
        url: an ``http://`` or ``https://`` URL.
        dest: the file to write; its directory is created if needed. An existing file is replaced only by a
            complete, verified download.
        sha256: the expected SHA-256 digest, 64 hex digits (either case).
        progress: show a tqdm progress bar (bytes, rate, ETA) on stderr while downloading.
        timeout: seconds to wait for the connection, then for each block of data.

    Returns:
        ``dest`` as an absolute path.

    Raises:
        DataError: naming ``url`` and what went wrong: an HTTP error status, a timeout, a failed or dropped
            connection, fewer bytes than the server announced, or a digest other than ``sha256`` (the message shows
            the expected and the received digests). Nothing is left at ``dest`` or beside it.
        ValueError: ``sha256`` is not 64 hex digits.
    """
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    expected = sha256.lower()
    dest = os.path.abspath(os.fspath(dest))
    directory, base = os.path.split(dest)
    os.makedirs(directory, exist_ok=True)
    with atomic_write(dest, suffix=TMP_SUFFIX) as out:  # raising inside: the partial file is removed
        received = _download(url, out, base, progress, timeout)
        if received != expected:
            raise DataError(
                f"{url}: SHA-256 mismatch: expected {expected}, received {received}; the download was discarded "
                "(the file on the server differs from the official one, or it was corrupted on the way)"
            )
    return dest


def _download(url, out, name, progress, timeout):
    """Stream ``url`` into the open file ``out``; return the SHA-256 hex digest of what was received."""
    from tqdm.auto import tqdm

    digest, done = hashlib.sha256(), 0
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (OSError, ValueError, http.client.HTTPException) as exc:  # HTTPError and URLError are OSErrors
        raise _network_error(url, exc, timeout, done) from None
    with response:
        if response.status != 200:
            raise DataError(f"{url}: HTTP status {response.status} {response.reason}, expected 200 OK")
        total = _content_length(response)
        with tqdm(total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
                  leave=True, dynamic_ncols=True) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as exc:
                    raise _network_error(url, exc, timeout, done) from None
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                bar.update(len(chunk))
    if total is not None and done != total:
        raise DataError(f"{url}: the connection closed after {done} of the {total} bytes announced; "
                        "expected the whole file (try again)")
    return digest.hexdigest()


def _content_length(response):
    value = response.headers.get("Content-Length", "")
    return int(value) if value.strip().isdigit() else None


def _network_error(url, exc, timeout, done):
    """A :class:`DataError` naming ``url`` for what urllib raised while connecting or reading."""
    if isinstance(exc, urllib.error.HTTPError):
        exc.close()
        return DataError(f"{url}: HTTP error {exc.code} {exc.reason}, expected 200 OK with the file")
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    after = f" after {done} bytes" if done else ""
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return DataError(f"{url}: timed out{after}: no data for {timeout:g} s")
    if isinstance(exc, ValueError):
        return DataError(f"{url}: not a URL that can be downloaded ({exc})")
    return DataError(f"{url}: download failed{after} ({type(reason).__name__}: {reason})")
