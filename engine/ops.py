"""Kernel sets the engine runs on: the fast Numba kernels or the plain NumPy reference (Thinc's ``Ops``).

A model holds one ``Ops``; layers call ``ops.conv2d(...)`` and never import kernels themselves, so the same model
runs on either set — the reference set is the benchmarks' baseline engine and a debugging aid.
"""
import importlib
from types import SimpleNamespace

FAMILIES = ("conv", "pool", "activation", "dense", "norm", "loss")
NAMES = ("numba", "reference")
_cache = {}


def get_ops(name="numba"):
    """The kernel set ``name`` ("numba" or "reference") as a namespace of functions."""
    if not isinstance(name, str) or name not in NAMES:
        raise ValueError(f"Invalid value for `ops`: expected one of {NAMES}. Received: ops={name!r}")
    if name not in _cache:
        pkg = "dropcore.kernels" if name == "numba" else "dropcore.kernels.reference"
        funcs = {}
        for family in FAMILIES:
            module = importlib.import_module(f"{pkg}.{family}")
            funcs.update({k: v for k, v in vars(module).items() if callable(v) and not k.startswith("_")})
        _cache[name] = SimpleNamespace(name=name, **funcs)
    return _cache[name]
