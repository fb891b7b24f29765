"""What is active in this process: versions, thread counts, whether the Cython inference kernels are built and
for which instruction set.

``dropcore.info()`` answers without importing Numba (its version is read from the installed package's metadata),
so a serving process can report itself without loading the JIT.
"""
import platform
import threading
import warnings
from importlib import metadata

import numpy as np

from . import __version__
from .kernels import isa

_warn_lock = threading.Lock()
_warned = False


class NoCythonKernelsWarning(RuntimeWarning):
    """The Cython inference kernels are not built: inference runs on the Numba kernels instead."""


def _dist_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cython_status():
    """``(built, reason)``: whether ``dropcore.kernels.cython_ops`` imports, and why not when it does not."""
    try:
        from .kernels import cython_ops  # noqa: F401
    except ImportError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, None


def info():
    """A dict describing the engine: versions, the kernel set inference uses and its compiled target (``isa``),
    the targets the CPU runs (``cpu_isas``) and those built, OpenMP and BLAS threads."""
    built, reason = cython_status()
    out = {
        "dropcore": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": _dist_version("scipy"),
        "numba": _dist_version("numba"),
        "cython_kernels": built,
        "cython_error": reason,
        "inference_kernels": "cython" if built else "numba",
        "openmp_threads": None,
        "blas_single_thread": None,
        "own_gemm": False,
        "isa": None,  # the compiled target the Cython kernels run (dropcore.kernels.isa; DROPCORE_ISA forces one)
        "cpu_isas": isa.cpu_isas(),  # the targets this CPU runs, best first
        "built_isas": isa.built_isas(),
    }
    if built:
        from .kernels import cython_ops, threads

        out["isa"] = isa.ISA
        out["openmp_threads"] = threads.num_threads("openmp")
        out["blas_single_thread"] = cython_ops.BLAS_SINGLE_THREAD
        # dropcore's own matrix, direct-convolution and pooling kernels (the avx512 and avx2 targets; both kernel
        # sets use them): a sample's outputs then do not depend on its batch or the thread count
        out["own_gemm"] = bool(cython_ops.HAVE_FAST_GEMM)
    return out


def warn_if_no_cython():
    """Warn once per process when the Cython kernels are missing (inference then runs on Numba). Returns built."""
    global _warned
    built, reason = cython_status()
    if built:
        return True
    with _warn_lock:
        if not _warned:
            _warned = True
            warnings.warn(
                "dropcore: the Cython inference kernels are not built (" + reason + "); running on the Numba "
                "kernels instead, which compile on first use. Reinstall with a C compiler available "
                "(`pip install -e .` or `python setup.py build_ext --inplace`) to get them.",
                NoCythonKernelsWarning, stacklevel=3)
    return False
