"""Row-major float32 GEMM with leading dimensions, callable from Numba kernels (SciPy's BLAS ``sgemm``).

Numba's ``np.dot`` needs contiguous operands, so a kernel cannot ask BLAS for a block of columns of a matrix (or
write one) without copying it. :func:`gemm` passes the leading dimensions through instead: a thread can multiply
by its own columns of ``w`` in place. It calls the same ``sgemm`` that ``np.dot`` uses inside Numba (SciPy's
``cython_blas``), found through the module's C-API capsule and registered with LLVM under a symbol name, so the
compiled kernels refer to it by name and stay cacheable (a ctypes pointer would be baked into the cache).

Operands are 1-D views whose first element is the block's first element (``m.reshape(-1)[offset:]``).
"""
import ctypes

import numpy as np

from .config import njit


def _capsule_pointer(capsule):
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, get_name(capsule))


def _bind_sgemm():
    import llvmlite.binding as llvm
    from numba import types
    from scipy.linalg import cython_blas

    llvm.add_symbol("dropcore_sgemm", _capsule_pointer(cython_blas.__pyx_capi__["sgemm"]))
    return types.ExternalFunction("dropcore_sgemm", types.void(*([types.voidptr] * 13)))


_sgemm = _bind_sgemm()
_N, _T = 78, 84  # ord("N"), ord("T")


@njit
def gemm(a, b, c, m, n, k, lda, ldb, ldc, trans_a=False, trans_b=False):
    """``C = op(A) @ op(B)`` for row-major blocks: ``C`` is ``m x n`` (rows ``ldc`` apart), ``op(A)`` is ``m x k``
    and ``op(B)`` is ``k x n``; ``op`` transposes when ``trans_*`` (then ``A`` is stored ``k x m``, and so on).

    Row-major ``C = op(A) op(B)`` is column-major ``C^T = op(B)^T op(A)^T``: the same flags, operands swapped.
    """
    ints = np.empty(6, dtype=np.int32)
    ints[0], ints[1], ints[2], ints[3], ints[4], ints[5] = n, m, k, ldb, lda, ldc
    scalars = np.empty(2, dtype=np.float32)
    scalars[0], scalars[1] = 1.0, 0.0
    flags = np.empty(2, dtype=np.uint8)
    flags[0] = _T if trans_b else _N
    flags[1] = _T if trans_a else _N
    _sgemm(flags[0:].ctypes, flags[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes,
           scalars[0:].ctypes, b.ctypes, ints[3:].ctypes, a.ctypes, ints[4:].ctypes, scalars[1:].ctypes, c.ctypes,
           ints[5:].ctypes)
