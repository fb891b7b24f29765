"""What is active in this process: versions, thread counts, whether the Cython kernels are built and for which
instruction set, and where the Numba kernels are cached.

``dropcore.info()`` answers without importing Numba (its version is read from the installed package's metadata),
so a serving process can report itself without loading the JIT.
"""
import glob
import os
import platform
import threading
import warnings
from importlib import metadata

import numpy as np

from .kernels import isa
from .version import __version__

_warn_lock = threading.Lock()
_warned = False


class NoCythonKernelsWarning(RuntimeWarning):
    """The Cython kernels are not built: training and inference run on the Numba kernels instead."""


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


def numba_cache():
    """Where the Numba kernels are cached and what is there: ``{"dir", "writable", "cached"}``, ``cached`` the
    number of kernel index files (one per compiled kernel). Numba writes beside the sources, or under
    ``NUMBA_CACHE_DIR`` when set; where neither is writable it falls back to a per-user directory. Only the
    "numba" kernel set reads it: the default "cython" set compiles nothing at run time."""
    kernels = os.path.dirname(os.path.abspath(isa.__file__))
    root = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(kernels, "__pycache__")
    found = glob.glob(os.path.join(root, "**", "*.nbi"), recursive=True) if os.path.isdir(root) else []
    probe = root if os.path.isdir(root) else os.path.dirname(root)
    return {"dir": root, "writable": os.access(probe, os.W_OK), "cached": len(found)}


def info():
    """A dict describing the engine: versions, the kernel sets training and inference use, the Cython kernels'
    compiled target (``isa``), the targets the CPU runs (``cpu_isas``) and those built, OpenMP and BLAS threads,
    and the Numba cache (``numba_cache``)."""
    built, reason = cython_status()
    out = {
        "dropcore": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": _dist_version("scipy"),
        "numba": _dist_version("numba"),
        "cython_kernels": built,
        "cython_error": reason,
        "training_kernels": "cython" if built else "numba",  # dropcore.ops.default_name()
        "inference_kernels": "cython" if built else "numba",
        "numba_cache": numba_cache(),
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
        out["openmp_threads"] = threads.pool_threads("openmp")
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
                "dropcore: the Cython kernels are not built (" + reason + "); running on the Numba kernels "
                "instead, which compile on first use (30-60 s, then cached). Reinstall with a C compiler available "
                "(`pip install -e .` or `python setup.py build_ext --inplace`) to get them.",
                NoCythonKernelsWarning, stacklevel=3)
    return False
