"""A ``.npy`` request body to the array it holds, a view of the body's bytes, or a :class:`BadRequest` saying why not.

Why not ``np.load``: it allocates whatever the header declares before reading (a header claiming 10^9 rows over a
few bytes is a MemoryError), and its header reader (``ast.literal_eval``, then ``tokenize`` for Python 2 headers)
raises TypeError, tokenize.TokenError or OverflowError on some hostile headers. The header is a Python dict literal
with three keys; this reads exactly that, strictly: ``'descr'`` a dtype string (structured dtypes, which are lists,
are refused), ``'fortran_order'`` True or False, ``'shape'`` a tuple of non-negative integers, in any order. Then
the shape and dtype must account for exactly the bytes that follow the header.
"""
import math
import re

import numpy as np

from .bad_request import BadRequest

_MAGIC = b"\x93NUMPY"
_MAX_HEADER = 10_000  # numpy's own bound (max_header_size): np.save writes ~120 bytes
_MAX_RANK = 32  # numpy 1.x's limit on axes (2.x allows 64)
_VALUE = r"'[^']*'|True|False|\((?:\s*-?\d{1,20}\s*,)*\s*(?:-?\d{1,20}\s*)?\)"  # (at most 20 digits: int() is quick)
_ITEM = re.compile(r"\s*'(descr|fortran_order|shape)'\s*:\s*(" + _VALUE + r")\s*(?:,|$)")  # ($: before the })
_STRUCTURED = re.compile(r"'descr'\s*:\s*\[")
_DESCR = re.compile(r"[<>|=]?[a-zA-Z]\d{0,4}")  # a dtype string: byte order, kind letter, item size


def _refuse(reason):
    return BadRequest(f"the body is not a readable .npy array: {reason}")


_parsed = {}  # header bytes -> (shape, fortran_order, dtype): a client sends the same few headers again and again


def read_header(body):
    """``(shape, fortran_order, dtype, offset of the data)`` from a ``.npy`` body's header (format 1.0 or 2.0)."""
    if body[:6] != _MAGIC or len(body) < 10:
        raise _refuse(f"it does not start with the .npy magic string \\x93NUMPY and a version; received "
                      f"{body[:10]!r}")
    version = (body[6], body[7])
    if version == (1, 0):
        start, length = 10, int.from_bytes(body[8:10], "little")
    elif version == (2, 0) and len(body) >= 12:
        start, length = 12, int.from_bytes(body[8:12], "little")
    else:
        raise _refuse(f"format version {version[0]}.{version[1]}; expected 1.0 or 2.0")
    if length > _MAX_HEADER or start + length > len(body):
        raise _refuse(f"its header declares {length} bytes; the body holds {len(body) - start} after the "
                      f"preamble, and at most {_MAX_HEADER} are read")
    raw = bytes(body[start:start + length])
    parsed = _parsed.get(raw)
    if parsed is None:  # only a header that parses is kept (a refused one raises here)
        parsed = _parse_header(raw.decode("latin-1"))
        if len(_parsed) >= 1024:  # headers vary with the instances per request: bounded
            _parsed.clear()
        _parsed[raw] = parsed
    return (*parsed, start + length)


def _parse_header(header):
    text = header.rstrip(" \n")
    if not (text.startswith("{") and text.endswith("}")):
        raise _refuse(f"its header is not a dict literal: {header[:200]!r}")
    if _STRUCTURED.search(text):
        raise _refuse("it holds a structured dtype (a list of fields); expected float32 or float64")
    items, at = {}, 1
    while at < len(text) - 1 and text[at:len(text) - 1].strip():
        match = _ITEM.match(text, at, len(text) - 1)
        if match is None or match.group(1) in items:
            raise _refuse(f"its header is not {{'descr': ..., 'fortran_order': ..., 'shape': (...)}} at "
                          f"{text[at:at + 60]!r}")
        items[match.group(1)] = match.group(2)
        at = match.end()
    if set(items) != {"descr", "fortran_order", "shape"}:
        raise _refuse(f"its header has the keys {sorted(items)}; expected descr, fortran_order, shape")
    descr, fortran_order, shape = items["descr"], items["fortran_order"], items["shape"]
    if not descr.startswith("'") or not _DESCR.fullmatch(descr[1:-1]):
        raise _refuse(f"its dtype {descr} is not a dtype string like '<f4'; expected float32 or float64")
    try:
        dtype = np.dtype(descr[1:-1])
    except TypeError:  # numpy's answer to a kind letter it does not know ("data type '<z4' not understood")
        raise _refuse(f"its dtype {descr} is not one numpy knows; expected float32 or float64") from None
    if fortran_order not in ("True", "False"):
        raise _refuse(f"its fortran_order is {fortran_order}; expected True or False")
    if not shape.startswith("("):
        raise _refuse(f"its shape is {shape}; expected a tuple of integers")
    dims = tuple(int(d) for d in shape[1:-1].split(",") if d.strip())
    if any(d < 0 for d in dims):
        raise _refuse(f"its header declares shape {dims}; expected dimensions >= 0")
    return dims, fortran_order == "True", dtype


def read_npy(body):
    """The array in ``body``, a view of its bytes. Nothing is allocated for what the header declares: its shape and
    dtype must account for exactly the bytes that follow it."""
    shape, fortran_order, dtype, offset = read_header(body)
    if dtype.hasobject:  # np.save pickles object arrays: never unpickle a request
        raise _refuse(f"dtype {dtype} holds Python objects (pickled); expected float32 or float64")
    if dtype.itemsize == 0:
        raise _refuse(f"dtype {dtype} has items of 0 bytes; expected float32 or float64")
    if len(shape) > _MAX_RANK:
        raise _refuse(f"its header declares {len(shape)} axes; numpy takes at most {_MAX_RANK}")
    count = math.prod(shape)
    declared, held = count * dtype.itemsize, len(body) - offset
    if declared != held:
        raise _refuse(f"its header declares shape {shape} of {dtype}, {declared} bytes of data; {held} bytes follow "
                      f"the header")
    if count == 0:
        if max(shape) > np.iinfo(np.intp).max:
            raise _refuse(f"its header declares shape {shape}: an axis longer than numpy allows")
        return np.empty(shape, dtype)
    flat = np.frombuffer(body, dtype, count=count, offset=offset)
    return flat.reshape(shape[::-1]).T if fortran_order else flat.reshape(shape)
