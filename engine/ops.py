"""Kernel sets the engine runs on: the fast Numba kernels, the plain NumPy reference (Thinc's ``Ops``), or the
ahead-of-time Cython inference kernels.

A model holds one ``Ops``; layers call ``ops.conv2d(...)`` and never import kernels themselves, so the same model
runs on any set — the reference set is the benchmarks' baseline engine and a debugging aid. The "cython" set takes
its forward kernels from ``dropcore.kernels.cython_ops`` and everything else (backward passes, losses, batch-norm
training) from the reference: it never imports Numba, so an inference service starts without compiling anything.
"""
import importlib
from types import SimpleNamespace

FAMILIES = ("conv", "pool", "activation", "dense", "norm", "loss")
NAMES = ("numba", "reference", "cython")
_cache = {}


def get_ops(name="numba"):
    """The kernel set ``name`` ("numba", "reference" or "cython") as a namespace of functions.

    ``"cython"`` raises ImportError when the compiled extensions are missing (see ``dropcore.info()``).
    """
    if not isinstance(name, str) or name not in NAMES:
        raise ValueError(f"Invalid value for `ops`: expected one of {NAMES}. Received: ops={name!r}")
    if name == "cython" and name not in _cache:
        _cache[name] = _cython_ops()
    if name not in _cache:
        pkg = "dropcore.kernels" if name == "numba" else "dropcore.kernels.reference"
        funcs = {}
        for family in FAMILIES:
            module = importlib.import_module(f"{pkg}.{family}")
            funcs.update({k: v for k, v in vars(module).items() if callable(v) and not k.startswith("_")})
        _cache[name] = SimpleNamespace(name=name, **funcs)
    return _cache[name]


def _cython_ops():
    try:
        cython_ops = importlib.import_module("dropcore.kernels.cython_ops")
    except ImportError as exc:
        raise ImportError(f"the Cython kernels of dropcore are not built ({exc}); build them with `python setup.py "
                          f"build_ext --inplace` (needs a C compiler) or use ops='numba' or 'reference'") from exc
    funcs = dict(vars(get_ops("reference")))
    funcs.update({k: getattr(cython_ops, k) for k in cython_ops.FORWARD})
    funcs["name"] = "cython"
    return SimpleNamespace(**funcs)
