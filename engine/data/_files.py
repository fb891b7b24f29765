"""Reading a data file into memory: existence and emptiness checks, gzip detected by its magic bytes."""
import os
import zlib

from .errors import DataError

GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path):
    """Return ``(data, was_gzipped)`` for the file at ``path``, decompressing it when it starts with gzip magic.

    Compression is detected from the first two bytes (``1f 8b``), never from the file name. A missing, empty,
    truncated or corrupt file raises :class:`DataError` naming the file.
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise DataError(f"{name}: no such file")
    if not os.path.isfile(name):
        raise DataError(f"{name}: not a regular file (expected a data file, found a directory or device)")
    with open(name, "rb") as fh:
        raw = fh.read()
    if not raw:
        raise DataError(f"{name}: file is empty (0 bytes)")
    if raw[:2] != GZIP_MAGIC:
        return raw, False
    data = _gunzip(raw, name)
    if not data:
        raise DataError(f"{name}: gzip stream decompresses to 0 bytes, expected data")
    return data, True


def _gunzip(raw, name):
    """Decompress a whole (possibly multi-member) gzip file; truncation or corruption becomes a DataError."""
    parts, total, rest = [], 0, raw
    while rest:
        stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip wrapper: header, CRC32 and size checked
        try:
            chunk = stream.decompress(rest)
        except zlib.error as exc:
            raise DataError(
                f"{name}: corrupt gzip data after {total} decompressed bytes ({exc}); expected a valid gzip stream"
            ) from None
        parts.append(chunk)
        total += len(chunk)
        if not stream.eof:
            raise DataError(
                f"{name}: truncated gzip file: the {len(raw)}-byte compressed stream ends after {total} bytes of "
                "data, before the end-of-stream marker and CRC (expected a complete .gz file; re-copy it)"
            )
        rest = stream.unused_data
        if rest[:2] != GZIP_MAGIC:
            if rest.strip(b"\0"):
                raise DataError(f"{name}: {len(rest)} bytes of trailing garbage after the gzip stream")
            break
    return b"".join(parts)


def find_file(directory, names, what):
    """Return the first of ``names`` that exists in ``directory``, else raise :class:`DataError` listing them."""
    for n in names:
        candidate = os.path.join(directory, n)
        if os.path.isfile(candidate):
            return candidate
    raise DataError(f"{os.fspath(directory)}: missing {what}: expected one of {', '.join(names)}")


def check_directory(path):
    """Raise :class:`DataError` unless ``path`` is an existing directory; return it as a string."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise DataError(f"{name}: no such directory")
    if not os.path.isdir(name):
        raise DataError(f"{name}: not a directory (expected a directory holding the data set files)")
    return name


def check_kind(kind, allowed=("train", "test")):
    """Validate the ``kind`` argument shared by the data set loaders."""
    if kind not in allowed:
        raise ValueError(f"kind must be one of {', '.join(repr(k) for k in allowed)}, got {kind!r}")
    return kind
