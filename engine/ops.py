"""Kernel sets the engine runs on: the fast Numba kernels, the plain NumPy reference (Thinc's ``Ops``), or the
ahead-of-time Cython inference kernels.

A model holds one ``Ops``; layers call ``ops.conv2d(...)`` and never import kernels themselves, so the same model
runs on any set — the reference set is the benchmarks' baseline engine and a debugging aid. Each set is built from
the kernel contract (``dropcore.kernels.contract``): an op the set's modules do not implement falls back to the
reference, explicitly, and is listed in the set's ``fallbacks``. The "cython" set implements the contract's
inference ops (``dropcore.kernels.cython_ops``) and falls back for the backward passes, the losses and batch-norm
training: it never imports Numba, so an inference service starts without compiling anything.
"""
import importlib
from types import SimpleNamespace

from .kernels.contract import OPS

NAMES = ("numba", "reference", "cython")
_cache = {}


def get_ops(name="numba"):
    """The kernel set ``name`` ("numba", "reference" or "cython") as a namespace: one function per op of the
    contract, plus ``name`` and ``fallbacks`` (the ops taken from the reference).

    ``"cython"`` raises ImportError when the compiled extensions are missing (see ``dropcore.info()``).
    """
    if not isinstance(name, str) or name not in NAMES:
        raise ValueError(f"Invalid value for `ops`: expected one of {NAMES}. Received: ops={name!r}")
    if name not in _cache:
        _cache[name] = _build(name)
    return _cache[name]


def _module_for(name, family):
    if name == "cython":
        try:
            return importlib.import_module("dropcore.kernels.cython_ops")
        except ImportError as exc:
            raise ImportError(f"the Cython kernels of dropcore are not built ({exc}); build them with `python "
                              f"setup.py build_ext --inplace` (needs a C compiler) or use ops='numba' or "
                              f"'reference'") from exc
    return importlib.import_module(f"dropcore.kernels{'.reference' if name == 'reference' else ''}.{family}")


def _build(name):
    funcs, fallbacks = {}, []
    for op in OPS:
        fn = getattr(_module_for(name, op.family), op.name, None)
        if fn is None:
            fn = getattr(_module_for("reference", op.family), op.name)
            fallbacks.append(op.name)
        funcs[op.name] = fn
    return SimpleNamespace(name=name, fallbacks=tuple(fallbacks), **funcs)
