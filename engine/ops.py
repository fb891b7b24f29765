"""Kernel sets the engine runs on: the ahead-of-time Cython kernels (the default where they are built), the Numba
kernels (the same ops compiled just in time: the default without a C compiler) or the plain NumPy reference
(Thinc's ``Ops``).

A model holds one ``Ops``; layers call ``ops.conv2d(...)`` and never import kernels themselves, so the same model
runs on any set — the reference set is the benchmarks' baseline engine and a debugging aid. Each set is built from
the kernel contract (``dropcore.kernels.contract``): an op the set's modules do not implement falls back to the
reference, explicitly, and is listed in the set's ``fallbacks``.

Why Cython by default (``docs/architecture.md``, "First run"): a process that trains on the Numba kernels compiles
them first, 35-45 s for a small CNN on an empty cache, and the cache is lost with every new environment, upgrade or
CPU model. The Cython kernels are compiled when the package is built: a fresh process trains its first batch without
compiling, and never imports Numba. The Numba set stays as the parallel implementation of the same contract, tested
against the same reference, and as the default where no C compiler built the extensions.
"""
import importlib
from types import SimpleNamespace

from .kernels.contract import OPS

NAMES = ("cython", "numba", "reference")
_cache = {}


def default_name():
    """The kernel set a model runs on unless told otherwise: "cython" where the compiled extensions load, else
    "numba" (:func:`dropcore.info` says which, and warns once when the extensions are missing)."""
    global _default
    if _default is None:
        try:
            _module_for("cython", "conv")
            _default = "cython"
        except ImportError:
            from .info import warn_if_no_cython

            warn_if_no_cython()  # says why, once: no silent fallback
            _default = "numba"
    return _default


_default = None


def get_ops(name=None):
    """The kernel set ``name`` ("cython", "numba" or "reference"; ``None``: :func:`default_name`) as a namespace:
    one function per op of the contract, plus ``name`` and ``fallbacks`` (the ops taken from the reference).

    ``"cython"`` raises ImportError when the compiled extensions are missing (see ``dropcore.info()``).
    """
    if name is None:
        name = default_name()
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
