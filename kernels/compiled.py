"""The compiled (Cython) kernel modules of the target this process runs, set up once: BLAS bound for the generic
target's products and held to one thread, every OpenMP region capped at the CPUs the process may use.

``cython_ops`` (the forwards and bound kernels) and ``cython_train_gemm`` / ``cython_train_elementwise`` (the
training ops) take ``elementwise``, ``gemm`` and ``pool`` from here, so whichever loads first does the setup and
none depends on another. Importing this module raises ImportError when no variant is built (no C compiler).
"""
import importlib.machinery
import importlib.util
import os
import sys

# The compiled variant for this CPU (or DROPCORE_ISA's): loading it raises ImportError when none is built.
from .isa import depthwise, elementwise, gemm, pool
from .threads import cap_openmp, hold_cython_blas

#: Whether the loaded variant is the AVX-512 one.
HAVE_AVX512 = gemm.HAVE_AVX512
#: Whether the products, the direct convolution and the max pooling run on dropcore's own vector kernels (the avx512
#: and avx2 variants): their results do not depend on the batch or the thread count. The generic variant uses BLAS.
HAVE_FAST_GEMM = gemm.HAVE_FAST_GEMM


def _cython_blas():
    """SciPy's ``scipy.linalg.cython_blas`` module, loaded without running ``scipy.linalg/__init__`` (0.5 s)."""
    name = "scipy.linalg.cython_blas"
    if name in sys.modules:
        return sys.modules[name]
    linalg_dir = os.path.join(os.path.dirname(importlib.util.find_spec("scipy").origin), "linalg")
    spec = importlib.machinery.PathFinder.find_spec(name, [linalg_dir])
    if spec is None:
        raise ImportError(f"{name} not found in {linalg_dir}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module  # a later `import scipy.linalg` reuses it
    return module


gemm.bind_blas(_cython_blas().__pyx_capi__["sgemm"], _cython_blas().__pyx_capi__["sgemv"])
#: Whether the BLAS the generic target calls was held to one thread (``threads.hold_cython_blas``).
BLAS_SINGLE_THREAD, _blas_getter = hold_cython_blas(_cython_blas().__file__)
gemm.set_parallel_panels(BLAS_SINGLE_THREAD, _blas_getter)
# their regions held to the CPUs this process may use (kernels/threads.py)
cap_openmp((elementwise, gemm, pool, depthwise))
