"""A restricted unpickler for pickled *data* files (the CIFAR-10 "python version" batches).

Why restricted: unpickling is not parsing. A pickle names Python callables (any importable ``module.name``) and the
unpickler imports and calls them, so a pickle file can run arbitrary code (``os.system``, ``eval``, ...) the moment
it is loaded. A data set found on disk or downloaded by someone else is data, not a trusted model file, and the
CIFAR-10 batches only ever need a dict of bytes/str keys, a list of int labels, a list of byte-string file names and
one uint8 numpy array. So :class:`RestrictedUnpickler` overrides ``find_class`` (the single hook through which
``GLOBAL``/``STACK_GLOBAL``/``INST``/``OBJ``/``EXT`` opcodes obtain callables) and answers only from a fixed table:

* the builtins ``dict``, ``list``, ``bytes``, ``str`` and ``int`` (under ``builtins`` or Python 2's ``__builtin__``);
* ``_codecs.encode``, which Python 3 pickles use to rebuild ``bytes`` at protocols 0-2 (it only encodes a string);
* numpy array reconstruction: ``numpy.ndarray``, ``numpy.dtype``, ``numpy[._]core.multiarray._reconstruct``,
  ``numpy[._]core.multiarray.scalar`` and ``numpy[._]core.numeric._frombuffer`` (protocol 5 arrays).

Anything else raises :class:`UnsafePickleError` before the name is imported, so nothing in the file is executed.
Dict and list values are built by opcodes, not by calls, and need no entry. Python 2 pickles are read with
``encoding="bytes"`` (their ``str`` values become ``bytes``), as the CIFAR-10 page recommends.
"""
import builtins
import codecs
import io
import pickle

import numpy as np

from .errors import DataError, UnsafePickleError


def _numpy_attr(submodule, attr):
    """Find ``numpy._core.<submodule>.<attr>`` (numpy 2) or ``numpy.core.<submodule>.<attr>`` (numpy 1)."""
    import importlib

    for base in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{base}.{submodule}"), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {submodule}.{attr}")  # pragma: no cover - every numpy >= 1.24 has them


def _allowed():
    table = {}
    for mod in ("builtins", "__builtin__"):
        for name in ("dict", "list", "bytes", "str", "int"):
            table[(mod, name)] = getattr(builtins, name)
    table[("_codecs", "encode")] = codecs.encode
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    for base in ("numpy.core", "numpy._core"):
        table[(f"{base}.multiarray", "_reconstruct")] = _numpy_attr("multiarray", "_reconstruct")
        table[(f"{base}.multiarray", "scalar")] = _numpy_attr("multiarray", "scalar")
        table[(f"{base}.numeric", "_frombuffer")] = _numpy_attr("numeric", "_frombuffer")
    return table


_ALLOWED = _allowed()


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the allow-listed globals above; ``name`` is used in messages."""

    def __init__(self, file, name="<pickle>"):
        super().__init__(file, encoding="bytes")
        self._name = name

    def find_class(self, module, name):
        """Return an allow-listed global, or refuse with :class:`UnsafePickleError` without importing it."""
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._name}: refusing to unpickle {module}.{name}: a data pickle may only contain dicts, lists, "
                "bytes, str, int and numpy arrays (anything else could run code when loaded)"
            ) from None

    def persistent_load(self, pid):
        """Persistent ids never occur in data pickles; refuse them."""
        raise UnsafePickleError(f"{self._name}: refusing a persistent id in a data pickle")


def restricted_loads(data, name="<pickle>"):
    """Unpickle ``data`` (bytes) with :class:`RestrictedUnpickler`; any failure becomes a :class:`DataError`."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), name).load()
    except DataError:
        raise
    except Exception as exc:  # malformed pickles raise many types: UnpicklingError, EOFError, TypeError, ...
        raise DataError(f"{name}: not a valid pickle ({type(exc).__name__}: {exc})") from None
