"""The IDX format used by MNIST and Fashion-MNIST.

An IDX file is a big-endian header followed by the raw values, in C order:

* 4-byte magic: two zero bytes, a type byte and the number of dimensions, so ``0x00000801`` is a 1-D ubyte
  array (MNIST labels) and ``0x00000803`` a 3-D ubyte array (MNIST images);
* one big-endian uint32 per dimension;
* the data, ``prod(dims)`` values of the type, big-endian.
"""
import numpy as np

from ._files import read_bytes
from .errors import DataError

#: IDX type byte -> (big-endian numpy dtype, name used in messages).
IDX_DTYPES = {
    0x08: (np.dtype(">u1"), "ubyte"),
    0x09: (np.dtype(">i1"), "byte"),
    0x0B: (np.dtype(">i2"), "short"),
    0x0C: (np.dtype(">i4"), "int"),
    0x0D: (np.dtype(">f4"), "float"),
    0x0E: (np.dtype(">f8"), "double"),
}

_TYPES_HELP = ", ".join(f"0x{code:02X} {name}" for code, (_, name) in IDX_DTYPES.items())


def load_idx(path):
    """Read one IDX file and return its contents as a native-endian numpy array.

    Args:
        path: file name (``str`` or path-like). The file may be raw or gzip-compressed; compression is detected
            from the magic bytes, not from the name.

    Returns:
        A writable ``numpy.ndarray`` with the shape and type given by the header: type byte 0x08 -> uint8,
        0x09 -> int8, 0x0B -> int16, 0x0C -> int32, 0x0D -> float32, 0x0E -> float64.

    Raises:
        DataError: the file is missing, empty, a truncated/corrupt gzip, has a bad magic number or unknown type
            byte, or its header dimensions disagree with the number of data bytes (too few *or* too many).
    """
    data, gz = read_bytes(path)
    name = str(path)
    size = len(data)
    described = "decompressed data" if gz else "file"
    if size < 4:
        raise DataError(f"{name}: {described} is {size} bytes, shorter than the 4-byte IDX magic number")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    magic = int.from_bytes(data[:4], "big")
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"{name}: bad magic number 0x{magic:08X}: an IDX file starts with two zero bytes, then a type byte "
            f"and a dimension count (e.g. 0x00000801 for labels, 0x00000803 for images)"
        )
    if code not in IDX_DTYPES:
        raise DataError(
            f"{name}: bad magic number 0x{magic:08X}: unknown IDX type byte 0x{code:02X}, "
            f"expected one of {_TYPES_HELP}"
        )
    if ndim == 0:
        raise DataError(f"{name}: magic number 0x{magic:08X} declares 0 dimensions, expected at least 1")
    header = 4 + 4 * ndim
    if size < header:
        raise DataError(
            f"{name}: magic number 0x{magic:08X} declares {ndim} dimensions, so the header is {header} bytes, "
            f"but the {described} has only {size}"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype, type_name = IDX_DTYPES[code]
    count = 1
    for d in dims:
        count *= d
    expected = count * dtype.itemsize
    actual = size - header
    if actual != expected:
        shape = "x".join(str(d) for d in dims)
        per = "" if dtype.itemsize == 1 else f" {type_name}s of {dtype.itemsize} bytes"
        problem = "truncated" if actual < expected else "unexpected trailing bytes"
        raise DataError(
            f"{name}: header says {shape}{per} = {expected} bytes of data, "
            f"file has {actual}{' after decompression' if gz else ''} ({problem})"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)
