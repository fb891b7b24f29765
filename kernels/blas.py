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


# --- dropcore's own GEMM (the Cython extension's dc_gemm: AVX-512 or AVX2), for the convolutions -------------------
def _fast_gemm_address():
    try:
        from .isa import gemm  # the variant the Cython kernels load: both follow one choice of target
    except ImportError:  # the Cython extension is optional
        return 0
    return gemm.gemm_address()


def _numpy_gemm(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate):
    """The same contract as ``dc_gemm`` in NumPy, behind the symbol when the extension has no vector kernels: the
    kernels never call it then (they check :data:`HAVE_FAST_GEMM`), but code Numba cached where they were loaded
    (another machine, or another ``DROPCORE_ISA``) still links, and stays correct."""
    f32 = ctypes.POINTER(ctypes.c_float)

    def view(ptr, rows, cols, rs, cs):
        base = np.ctypeslib.as_array(ctypes.cast(ptr, f32), shape=((rows - 1) * rs + (cols - 1) * cs + 1,))
        return np.lib.stride_tricks.as_strided(base, (rows, cols), (4 * rs, 4 * cs))

    out = view(c, m, n, ldc, 1)
    prod = view(a, m, k, ars, acs) @ view(b, k, n, ldb, 1)
    out[...] = out + prod if accumulate else prod


_FAST_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_long,
                               ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                               ctypes.c_int)
_fast_fallback = _FAST_PROTO(_numpy_gemm)  # kept alive for as long as the symbol may be called


def _bind_fast_gemm():
    import llvmlite.binding as llvm
    from numba import types

    address = _fast_gemm_address()
    llvm.add_symbol("dropcore_fast_gemm", address or ctypes.cast(_fast_fallback, ctypes.c_void_p).value)
    i32, i64 = types.int32, types.int64
    sig = types.void(i32, i32, i32, types.voidptr, i64, i64, types.voidptr, i32, types.voidptr, i32, i32)
    return bool(address), types.ExternalFunction("dropcore_fast_gemm", sig)


#: Whether :func:`matmul` and :func:`matmul_tn_add` run on dropcore's own micro-kernels (``_gemm.h``, AVX-512 or AVX2)
#: (about twice OpenBLAS's speed where OpenBLAS runs its AVX2 kernels); otherwise they use Numba's ``np.dot``.
HAVE_FAST_GEMM, _fast_gemm = _bind_fast_gemm()


def _direct_conv_address():
    try:
        from .isa import gemm
    except ImportError:
        return 0
    return gemm.direct_conv_address()


def _numpy_direct_rows(x, h, wd, cin, w, kh, kw, cout, bias, sh, sw, pt, pl, ow, ni, oy0, oy1, y, pad, relu,
                       has_bias, padded):
    """The contract of ``dc_conv_direct_rows_flagged`` on the NumPy reference, behind the symbol when the extension
    has no vector kernels: never called then (the kernels check :data:`HAVE_DIRECT_CONV`), but code Numba cached
    where they were loaded (another machine, or another ``DROPCORE_ISA``) still links, and stays correct."""
    from .reference.conv import conv2d

    f32 = ctypes.POINTER(ctypes.c_float)

    def view(ptr, shape):
        return np.ctypeslib.as_array(ctypes.cast(ptr, f32), shape=shape)

    sample = view(x, ((ni + 1) * h, wd, cin))[ni * h:][None]
    weights = view(w, (kh, kw, cin, cout))
    b = view(bias, (cout,)) if has_bias else None
    # The layer's "same" padding is implied by its pads; recompute the whole sample and keep the rows asked for.
    full = conv2d(np.pad(sample, ((0, 0), (pt, kh), (pl, kw), (0, 0))), weights, b, (sh, sw), "valid", bool(relu))
    view(y, (oy1 - oy0, ow, cout))[...] = full[0, oy0:oy1, :ow]


_DIRECT_PROTO = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] + [ctypes.c_int] * 3 + [ctypes.c_void_p]
                                         + [ctypes.c_int] * 3 + [ctypes.c_void_p] + [ctypes.c_int] * 5
                                         + [ctypes.c_long, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                                            ctypes.c_void_p] + [ctypes.c_int] * 3))
_direct_fallback = _DIRECT_PROTO(_numpy_direct_rows)


def _bind_direct_conv():
    import llvmlite.binding as llvm
    from numba import types

    address = _direct_conv_address()
    llvm.add_symbol("dropcore_conv_direct_rows", address or ctypes.cast(_direct_fallback, ctypes.c_void_p).value)
    i32, p = types.int32, types.voidptr
    sig = types.void(p, i32, i32, i32, p, i32, i32, i32, p, i32, i32, i32, i32, i32, types.int64, i32, i32, p, p,
                     i32, i32, i32)
    return bool(address), types.ExternalFunction("dropcore_conv_direct_rows", sig)


#: Whether the direct convolution of the Cython extension (``_direct_conv.h``) is there for the Numba kernels.
HAVE_DIRECT_CONV, conv_direct_rows = _bind_direct_conv()


def _direct_dw_address():
    try:
        from .isa import gemm
    except ImportError:
        return 0
    return gemm.direct_dw_address()


def _numpy_dw_rows(x, h, wd, cin, g, kh, kw, cout, sh, sw, pt, pl, ow, ni, oy0, oy1, dw, db, pad, has_bias, padded):
    """The contract of ``dc_conv_dw_rows_flagged`` in NumPy (``dw += `` the rows' weight-gradient terms, ``db +=``
    their bias terms), behind the symbol when the extension has no vector kernels: never called then (the kernels
    check :data:`HAVE_DIRECT_DW`), but code Numba cached where they were loaded still links, and stays correct."""
    rows = oy1 - oy0
    sample = _c_view(x, ((ni + 1) * h, wd, cin))[ni * h:]
    padded_x = np.zeros((h + pt + kh + rows * sh, wd + pl + kw + ow * sw, cin), dtype=np.float32)
    padded_x[pt:pt + h, pl:pl + wd] = sample
    grad = _c_view(g, (rows, ow, cout))
    dwv = _c_view(dw, (kh, kw, cin, cout))
    for i in range(kh):
        for j in range(kw):
            win = padded_x[oy0 * sh + i:(oy1 - 1) * sh + i + 1:sh, j:(ow - 1) * sw + j + 1:sw]  # (rows, ow, cin)
            dwv[i, j] += np.einsum("yxc,yxo->co", win, grad).astype(np.float32)
    if has_bias:
        _c_view(db, (cout,))[...] += grad.sum(axis=(0, 1), dtype=np.float32)


_DW_PROTO = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] + [ctypes.c_int] * 3 + [ctypes.c_void_p] + [ctypes.c_int] * 8
                                     + [ctypes.c_long, ctypes.c_int, ctypes.c_int] + [ctypes.c_void_p] * 3
                                     + [ctypes.c_int] * 2))
_dw_fallback = _DW_PROTO(_numpy_dw_rows)


def _bind_direct_dw():
    import llvmlite.binding as llvm
    from numba import types

    address = _direct_dw_address()
    llvm.add_symbol("dropcore_conv_dw_rows", address or ctypes.cast(_dw_fallback, ctypes.c_void_p).value)
    i32, p = types.int32, types.voidptr
    sig = types.void(p, i32, i32, i32, p, i32, i32, i32, i32, i32, i32, i32, i32, types.int64, i32, i32, p, p, p,
                     i32, i32)
    return bool(address), types.ExternalFunction("dropcore_conv_dw_rows", sig)


#: Whether the direct weight gradient of the Cython extension (``_direct_conv_dw.h``) is there for the Numba
#: kernels, and the symbol it is reached through.
HAVE_DIRECT_DW, conv_dw_rows = _bind_direct_dw()


def _winograd_address():
    try:
        from .isa import gemm
    except ImportError:
        return 0
    return gemm.winograd_rows_address()


def _c_view(ptr, shape, kind=ctypes.c_float):
    """A NumPy view of ``shape`` on the C array at address ``ptr``."""
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(kind)), shape=shape)


def _numpy_wino_blocks(x, h, wd, cin, pt, pl, ni, ty0, ty1, tw):
    """The 4x4 input blocks of Winograd's tiles in tile rows ``ty0 .. ty1`` of sample ``ni`` (``dc_wino_input``'s,
    zero outside the input): ``(tile rows, tiles, 4, 4, cin)``."""
    rows = ty1 - ty0
    sample = np.zeros((2 * rows + 2, 2 * tw + 2, cin), dtype=np.float32)  # the band's input, zero-padded
    xs = _c_view(x, ((ni + 1) * h, wd, cin))[ni * h:]
    for r in range(sample.shape[0]):
        iy = 2 * ty0 - pt + r
        if 0 <= iy < h:
            lo, hi = max(0, pl), min(sample.shape[1], wd + pl)
            sample[r, lo:hi] = xs[iy, lo - pl:hi - pl]
    return np.stack([np.stack([sample[r:r + 2 * rows - 1:2, c:c + 2 * tw - 1:2] for c in range(4)], 2)
                     for r in range(4)], 2)


def _numpy_wino_rows(x, h, wd, cin, u, cout, bias, has_bias, pt, pl, oh, ow, ni, ty0, ty1, y, pool, relu, scratch,
                     arg, has_arg):
    """The contract of ``dc_wino_rows_flagged`` in NumPy (the same transforms, in float32), behind the symbol when the
    extension has no Winograd kernels: never called then (the kernels check :data:`HAVE_WINOGRAD`), but code Numba
    cached where they were loaded still links, and stays correct."""
    tw = (ow + 1) // 2
    d = _numpy_wino_blocks(x, h, wd, cin, pt, pl, ni, ty0, ty1, tw)  # (tile rows, tiles, 4, 4, cin)
    bt = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float32)
    at = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float32)
    v = np.einsum("ar,tsrcz,bc->tsabz", bt, d, bt)
    m = np.einsum("tsabz,abzo->tsabo", v, _c_view(u, (4, 4, cin, cout)))
    out = np.einsum("ia,tsabo,jb->tsijo", at, m, at)  # (tile rows, tiles, 2, 2, cout)
    if has_bias:
        out = out + _c_view(bias, (cout,))
    if relu:
        out = np.where(out < 0, np.float32(0), out)
    if pool:
        ph, pw = oh // 2, ow // 2
        win = out[:max(0, min(ty1, ph) - ty0), :pw].reshape(-1, pw, 4, cout)
        yv = _c_view(y, (ph, pw, cout))[ty0:ty0 + len(win)]
        nan = np.isnan(win).any(axis=2)
        yv[...] = np.where(nan, np.float32(np.nan), win.max(axis=2))
        if has_arg:
            taps = np.where(nan, 255, np.argmax(win, axis=2))
            _c_view(arg, (ph, pw, cout), ctypes.c_uint8)[ty0:ty0 + len(win)] = taps
    else:
        full = out.transpose(0, 2, 1, 3, 4).reshape(2 * (ty1 - ty0), 2 * tw, cout)
        rows = min(oh, 2 * ty1) - 2 * ty0
        _c_view(y, (oh, ow, cout))[2 * ty0:2 * ty0 + rows] = full[:rows, :ow]


_WINO_PROTO = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] + [ctypes.c_int] * 3 + [ctypes.c_void_p, ctypes.c_int,
                                                                              ctypes.c_void_p] + [ctypes.c_int] * 5
                                       + [ctypes.c_long, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                          ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]))
_wino_fallback = _WINO_PROTO(_numpy_wino_rows)


def _bind_winograd():
    import llvmlite.binding as llvm
    from numba import types

    address = _winograd_address()
    llvm.add_symbol("dropcore_wino_rows", address or ctypes.cast(_wino_fallback, ctypes.c_void_p).value)
    i32, p = types.int32, types.voidptr
    sig = types.void(p, i32, i32, i32, p, i32, p, i32, i32, i32, i32, i32, types.int64, i32, i32, p, i32, i32, p, p,
                     i32)
    return bool(address), types.ExternalFunction("dropcore_wino_rows", sig)


#: Whether Winograd F(2x2, 3x3) of the Cython extension (``_winograd.h``: its avx512 and avx2 variants) is there for
#: the Numba kernels.
HAVE_WINOGRAD, wino_rows = _bind_winograd()


def _winograd_dw_address():
    try:
        from .isa import gemm
    except ImportError:
        return 0
    return gemm.winograd_dw_address()


def _numpy_wino_dw_rows(x, h, wd, cin, dy, cout, pt, pl, oh, ow, ni, ty0, ty1, du, scratch):
    """The contract of ``dc_wino_dw_rows`` in NumPy (the same transforms, in float32), behind the symbol when the
    extension has no Winograd kernels: never called then (the kernels check :data:`HAVE_WINOGRAD`), but code Numba
    cached where they were loaded still links, and stays correct."""
    tw, rows = (ow + 1) // 2, ty1 - ty0
    d = _numpy_wino_blocks(x, h, wd, cin, pt, pl, ni, ty0, ty1, tw)  # (tile rows, tiles, 4, 4, cin)
    g = np.zeros((2 * rows, 2 * tw, cout), dtype=np.float32)  # the band's output gradient, zero past the output
    part = _c_view(dy, (oh, ow, cout))[2 * ty0:2 * ty1]
    g[:part.shape[0], :ow] = part
    g = g.reshape(rows, 2, tw, 2, cout).transpose(0, 2, 1, 3, 4)  # (tile rows, tiles, 2, 2, cout)
    bt = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float32)
    a = np.array([[1, 0], [1, 1], [1, -1], [0, -1]], dtype=np.float32)
    v = np.einsum("ar,tsrcz,bc->tsabz", bt, d, bt)
    q = np.einsum("ai,tsijo,bj->tsabo", a, g, a)
    du_view = _c_view(du, (4, 4, cin, cout))
    du_view += np.einsum("tsabz,tsabo->abzo", v, q)


_WINO_DW_PROTO = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] + [ctypes.c_int] * 3 + [ctypes.c_void_p]
                                          + [ctypes.c_int] * 5 + [ctypes.c_long, ctypes.c_int, ctypes.c_int,
                                                                  ctypes.c_void_p, ctypes.c_void_p]))
_wino_dw_fallback = _WINO_DW_PROTO(_numpy_wino_dw_rows)


def _bind_winograd_dw():
    import llvmlite.binding as llvm
    from numba import types

    address = _winograd_dw_address()
    llvm.add_symbol("dropcore_wino_dw_rows", address or ctypes.cast(_wino_dw_fallback, ctypes.c_void_p).value)
    i32, p = types.int32, types.voidptr
    sig = types.void(p, i32, i32, i32, p, i32, i32, i32, i32, i32, types.int64, i32, i32, p, p)
    return types.ExternalFunction("dropcore_wino_dw_rows", sig)


#: The weight gradient of 3x3 stride-1 layers in Winograd's domain (``dc_wino_dw_rows``); with :data:`HAVE_WINOGRAD`.
wino_dw_rows = _bind_winograd_dw()


def _winograd4_dx_address():
    try:
        from .isa import gemm
    except ImportError:
        return 0
    return gemm.winograd4_dx_address()


# F(4x4, 3x3)'s matrices (_winograd4.h), for the NumPy stand-in
_BT4 = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
                 [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=np.float32)
_AT4 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                dtype=np.float32)


def _numpy_wino4_dx_rows(dy, oh, ow, cout, u, c, pt, pl, h, wd, ty0, ty1, dx, scratch):
    """The contract of ``dc_wino4_dx_rows`` in NumPy (the same transforms, in float32), behind the symbol when the
    extension has no vector kernels: never called then (the kernels check :data:`HAVE_WINOGRAD4`), but code Numba
    cached where they were loaded still links, and stays correct."""
    tw, rows = (wd + 3) // 4, ty1 - ty0
    band = np.zeros((4 * rows + 2, 4 * tw + 2, cout), dtype=np.float32)  # dy padded by 2 - pt, 2 - pl
    src = _c_view(dy, (oh, ow, cout))
    for r in range(band.shape[0]):
        iy = 4 * ty0 - (2 - pt) + r
        if 0 <= iy < oh:
            lo, hi = max(0, 2 - pl), min(band.shape[1], ow + 2 - pl)
            band[r, lo:hi] = src[iy, lo - (2 - pl):hi - (2 - pl)]
    d = np.stack([np.stack([band[r:r + 4 * rows - 3:4, q:q + 4 * tw - 3:4] for q in range(6)], 2)
                  for r in range(6)], 2)  # (tile rows, tiles, 6, 6, cout)
    v = np.einsum("ar,tsrqz,bq->tsabz", _BT4, d, _BT4)
    m = np.einsum("tsabz,abzo->tsabo", v, _c_view(u, (6, 6, cout, c)))
    out = np.einsum("ia,tsabo,jb->tsijo", _AT4, m, _AT4)  # (tile rows, tiles, 4, 4, c)
    full = out.transpose(0, 2, 1, 3, 4).reshape(4 * rows, 4 * tw, c)
    n = min(h, 4 * ty1) - 4 * ty0
    _c_view(dx, (h, wd, c))[4 * ty0:4 * ty0 + n] = full[:n, :wd]


_WINO4_DX_PROTO = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] + [ctypes.c_int] * 3 + [ctypes.c_void_p]
                                           + [ctypes.c_int] * 7 + [ctypes.c_void_p, ctypes.c_void_p]))
_wino4_dx_fallback = _WINO4_DX_PROTO(_numpy_wino4_dx_rows)


def _bind_winograd4_dx():
    import llvmlite.binding as llvm
    from numba import types

    address = _winograd4_dx_address()
    llvm.add_symbol("dropcore_wino4_dx_rows", address or ctypes.cast(_wino4_dx_fallback, ctypes.c_void_p).value)
    i32, p = types.int32, types.voidptr
    sig = types.void(p, i32, i32, i32, p, i32, i32, i32, i32, i32, i32, i32, p, p)
    return bool(address), types.ExternalFunction("dropcore_wino4_dx_rows", sig)


#: Whether training's input gradient can run on F(4x4)'s tiles (``dc_wino4_dx_rows`` of ``_winograd4.h``: the
#: avx512 and avx2 variants), and the symbol the Numba kernels reach it through.
HAVE_WINOGRAD4, wino4_dx_rows = _bind_winograd4_dx()


def _max_pool_arg_address():
    try:
        from .isa import gemm
    except ImportError:
        return 0
    return gemm.max_pool_arg_address()


def _numpy_max_pool_arg_rows(conv, ow, c, ph, pw, prows, pow_, y, arg):
    """The contract of ``dc_max_pool_arg_rows_c`` in NumPy, behind the symbol when the extension has no vector
    kernels: never called then (the kernels check :data:`HAVE_FAST_GEMM`), but code Numba cached where they were
    loaded still links, and stays correct."""
    rows = _c_view(conv, (prows * ph, ow, c))[:, :pow_ * pw]
    win = rows.reshape(prows, ph, pow_, pw, c).transpose(0, 2, 1, 3, 4).reshape(prows, pow_, ph * pw, c)
    nan = np.isnan(win).any(axis=2)
    _c_view(y, (prows, pow_, c))[...] = np.where(nan, np.float32(np.nan), win.max(axis=2))
    _c_view(arg, (prows, pow_, c), ctypes.c_uint8)[...] = np.where(nan, 255, np.argmax(win, axis=2))


_POOL_ARG_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_void_p, *([ctypes.c_int] * 6), ctypes.c_void_p, ctypes.c_void_p)
_pool_arg_fallback = _POOL_ARG_PROTO(_numpy_max_pool_arg_rows)


def _bind_max_pool_arg():
    import llvmlite.binding as llvm
    from numba import types

    address = _max_pool_arg_address()
    llvm.add_symbol("dropcore_max_pool_arg_rows", address or ctypes.cast(_pool_arg_fallback, ctypes.c_void_p).value)
    i32, p = types.int32, types.voidptr
    return types.ExternalFunction("dropcore_max_pool_arg_rows", types.void(p, i32, i32, i32, i32, i32, i32, p, p))


#: Training's max pooling with each window's tap (``dc_max_pool_arg_rows_c``), with :data:`HAVE_FAST_GEMM`.
max_pool_arg_rows = _bind_max_pool_arg()


@njit
def fast_gemm(a, ars, acs, b, ldb, c, ldc, m, n, k, accumulate=False):
    """``C (+)= op(A) @ B`` on dropcore's own GEMM (only when :data:`HAVE_FAST_GEMM`), for 1-D views whose first
    element is the block's first: element (i, j) of op(A) is ``a[i * ars + j * acs]``; B and C are row-major with
    leading dimensions ``ldb`` and ``ldc``."""
    _fast_gemm(np.int32(m), np.int32(n), np.int32(k), a.ctypes, np.int64(ars), np.int64(acs), b.ctypes,
               np.int32(ldb), c.ctypes, np.int32(ldc), np.int32(1 if accumulate else 0))


@njit
def matmul(a, b, c, fast):
    """``c[...] = a @ b`` for 2-D float32 arrays with unit inner strides; on the fast GEMM when ``fast``."""
    if fast:
        _fast_gemm(np.int32(a.shape[0]), np.int32(b.shape[1]), np.int32(a.shape[1]), a.ctypes,
                   np.int64(a.strides[0] // 4), np.int64(1), b.ctypes, np.int32(b.strides[0] // 4), c.ctypes,
                   np.int32(c.strides[0] // 4), np.int32(0))
    else:
        np.dot(a, b, c)


@njit
def matmul_tn_add(a, b, c, tmp, fast):
    """``c += a.T @ b`` (``tmp``: a scratch shaped like ``c``, used without the fast GEMM)."""
    if fast:
        _fast_gemm(np.int32(a.shape[1]), np.int32(b.shape[1]), np.int32(a.shape[0]), a.ctypes, np.int64(1),
                   np.int64(a.strides[0] // 4), b.ctypes, np.int32(b.strides[0] // 4), c.ctypes,
                   np.int32(c.strides[0] // 4), np.int32(1))
    else:
        np.dot(a.T, b, tmp)
        c += tmp
