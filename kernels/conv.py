"""2-D convolution (Numba): per-sample im2col panels fed to a float32 GEMM, bias and ReLU fused while the tile is hot.

The GEMM is dropcore's own micro-kernel (AVX-512 or AVX2) when the Cython extension has it
(:mod:`dropcore.kernels.blas`), else BLAS through ``np.dot``.

Same contract as :mod:`dropcore.kernels.reference.conv`. Work is split into one chunk of samples per thread; each
thread owns its im2col panel (a block of output rows at a time, sized to stay in L2), so nothing races except the
weight/bias gradients, which are summed into per-chunk partials and reduced serially after the parallel region.
"""
import numba
import numpy as np

from .alignment import aligned_empty
from .blocking import BACKWARD_CHUNKS, PANEL_BYTES, winograd_weights_grad
from .blas import (HAVE_DIRECT_CONV, HAVE_DIRECT_DW, HAVE_FAST_GEMM, HAVE_WINOGRAD, HAVE_WINOGRAD4, conv_direct_rows,
                   conv_dw_rows, fast_gemm, matmul, matmul_tn_add, max_pool_arg_rows, wino4_dx_rows, wino_dw_rows,
                   wino_rows)
from .config import njit, pjit
from .geometry import (conv_path, direct_dw_pays, direct_dx_pays, direct_scratch, window_2d, windows_inside,
                       winograd4_dx_pays, winograd_pays)
from .reference.conv import NO_TAP, check_pool_taps
from .threads import blas_single_thread



@njit
def _im2col_rows(xf, pf, oy0, oy1, h, w, c, kh, kw, sh, sw, pt, pl, ow):
    """Fill the flat panel ``pf`` with the receptive fields of output rows ``oy0..oy1`` of one sample.

    ``xf`` is the sample flattened from ``(H, W, C)``; panel row ``r`` holds ``kh * kw * C`` values ordered
    ``(i, j, c)``. For one kernel row the in-bounds taps are one contiguous run of ``xf`` (taps ``a..e`` of the
    row, in flat units), so each (output pixel, kernel row) is a zero fill, one copy, a zero fill.
    """
    kwc = kw * c
    k = kh * kwc
    zero = np.float32(0.0)
    for oy in range(oy0, oy1):
        for ox in range(ow):
            d0 = ((oy - oy0) * ow + ox) * k
            ix0 = ox * sw - pl
            a = max(0, -ix0) * c
            e = min(kw, w - ix0) * c
            for i in range(kh):
                iy = oy * sh - pt + i
                d = d0 + i * kwc
                if iy < 0 or iy >= h or e <= a:
                    for q in range(kwc):
                        pf[d + q] = zero
                    continue
                for q in range(a):
                    pf[d + q] = zero
                # Copy through views indexed from 0: with a possibly negative offset inside the index, Numba's
                # negative-index wraparound check stays in the loop and blocks vectorization (about 9x slower).
                dst = pf[d + a:d + e]
                src = xf[(iy * w + ix0) * c + a:(iy * w + ix0) * c + e]
                for q in range(e - a):
                    dst[q] = src[q]
                for q in range(e, kwc):
                    pf[d + q] = zero


@njit
def _col2im_rows(dpf, dxf, oy0, oy1, h, w, c, kh, kw, sh, sw, pt, pl, ow):
    """Adjoint of :func:`_im2col_rows`: add the flat panel gradient ``dpf`` into the flat sample gradient ``dxf``."""
    kwc = kw * c
    k = kh * kwc
    for oy in range(oy0, oy1):
        for ox in range(ow):
            d0 = ((oy - oy0) * ow + ox) * k
            ix0 = ox * sw - pl
            a = max(0, -ix0) * c
            e = min(kw, w - ix0) * c
            for i in range(kh):
                iy = oy * sh - pt + i
                if iy < 0 or iy >= h or e <= a:
                    continue
                src = dpf[d0 + i * kwc + a:d0 + i * kwc + e]
                dst = dxf[(iy * w + ix0) * c + a:(iy * w + ix0) * c + e]
                for q in range(e - a):
                    dst[q] += src[q]


@njit
def _bias_relu(ys, b, has_bias, relu):
    """Add the bias and/or clamp at zero, in place, on a ``(rows, Cout)`` output tile."""
    zero = np.float32(0.0)
    for r in range(ys.shape[0]):
        for co in range(ys.shape[1]):
            v = ys[r, co]
            if has_bias:
                v += b[co]
            if relu and v < zero:
                v = zero
            ys[r, co] = v


@njit
def _relu_mask(dy, y, out):
    """``out = dy`` where ``y > 0``, else 0, on one ``(rows, Cout)`` tile."""
    zero = np.float32(0.0)
    for r in range(dy.shape[0]):
        for co in range(dy.shape[1]):
            out[r, co] = dy[r, co] if y[r, co] > zero else zero


@pjit
def _conv2d_fwd(x2, w2d, b, has_bias, relu, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, rows_blk, nchunks, fast):
    """Forward driver: one chunk of (sample, row block) items per thread, one im2col panel per thread,
    ``(N, OH * OW, Cout)``."""
    n = x2.shape[0]
    cout = w2d.shape[1]
    y = np.empty((n, oh * ow, cout), dtype=np.float32)
    nblk = (oh + rows_blk - 1) // rows_blk
    items = n * nblk  # (sample, block of output rows) pairs: small batches still use every thread
    for t in numba.prange(nchunks):
        panel = np.empty((rows_blk * ow, w2d.shape[0]), dtype=np.float32)
        pf = panel.reshape(-1)
        for item in range(t * items // nchunks, (t + 1) * items // nchunks):
            s = item // nblk
            oy0 = (item % nblk) * rows_blk
            oy1 = min(oh, oy0 + rows_blk)
            m = (oy1 - oy0) * ow
            _im2col_rows(x2[s], pf, oy0, oy1, h, w, c, kh, kw, sh, sw, pt, pl, ow)
            ys = y[s, oy0 * ow:oy0 * ow + m]
            matmul(panel[:m], w2d, ys, fast)
            if has_bias or relu:
                _bias_relu(ys, b, has_bias, relu)
    return y


@pjit
def _conv2d_fwd_implicit(x2, w2d, b, has_bias, relu, h, w, c, kh, kw, sh, sw, oh, ow):
    """Forward without padding and without im2col, on dropcore's GEMM: in NHWC the ``kw * c`` inputs a kernel
    row sees are contiguous and neighbouring windows start ``sw * c`` floats apart, so for each output row the
    patches of kernel row ``i`` are a matrix with overlapping rows that the GEMM reads in place; the ``kh``
    products accumulate into the output row, then bias and ReLU while it is in cache."""
    n = x2.shape[0]
    cout = w2d.shape[1]
    span = kw * c
    y = np.empty((n, oh * ow, cout), dtype=np.float32)
    wf = w2d.reshape(-1)
    for t in numba.prange(n * oh):
        s = t // oh
        oy = t % oh
        xs = x2[s]
        yrow = y[s, oy * ow:(oy + 1) * ow]
        yf = yrow.reshape(-1)
        for i in range(kh):
            fast_gemm(xs[(oy * sh + i) * w * c:], sw * c, 1, wf[i * span * cout:], cout, yf, cout, ow, cout, span,
                      i > 0)
        if has_bias or relu:
            _bias_relu(yrow, b, has_bias, relu)
    return y


@pjit
def _conv2d_fwd_direct(x, w, b, has_bias, relu, sh, sw, pt, pl, padded, oh, ow, block, scratch):
    """Forward on the direct convolution (``_direct_conv.h``) for layers whose weights fit in L1: one task
    per block of ``block`` output rows of a sample, each with its own scratch for zero-padded input rows."""
    n, h, wd, cin = x.shape
    kh, kw, _, cout = w.shape
    y = np.empty((n, oh, ow, cout), dtype=np.float32)
    blocks = (oh + block - 1) // block
    for t in numba.prange(n * blocks):
        pad = np.empty(scratch, dtype=np.float32)
        s = t // blocks
        oy0 = (t % blocks) * block
        conv_direct_rows(x.ctypes, np.int32(h), np.int32(wd), np.int32(cin), w.ctypes, np.int32(kh), np.int32(kw),
                         np.int32(cout), b.ctypes, np.int32(sh), np.int32(sw), np.int32(pt), np.int32(pl),
                         np.int32(ow), np.int64(s), np.int32(oy0), np.int32(min(oy0 + block, oh)),
                         y[s, oy0:].ctypes, pad.ctypes, np.int32(relu), np.int32(has_bias), np.int32(padded))
    return y


_PATHS = ("im2col", "implicit", "direct")


@njit
def _aligned_floats(n):
    """``n`` float32 starting on a 64-byte boundary (Numba's arrays start on 32): what the AVX-512 kernels read as
    whole vectors."""
    raw = np.empty(n + 16, dtype=np.float32)
    first = (-raw.ctypes.data) % 64 // 4
    return raw[first:first + n]


@njit
def _pool_rows(conv, ow, cout, ph, pw, y, arg):
    """Max-pool the ``(rows * ow, Cout)`` convolution rows ``conv`` into the pooled rows ``y`` and ``arg`` (each
    ``(rows // ph, OW // pw, Cout)``): the first maximum of each window and its tap, NaN and ``NO_TAP`` where a
    NaN is in it (``max_pool2d`` propagates NaN)."""
    # Selects, not branches, over the contiguous channels: LLVM vectorizes them (the branches ran cifar_cnn's
    # first layer + pool at 16.5 ms against 5.2 for the convolution alone, batch 128, 2 threads, Zen 3).
    no_tap = np.uint8(NO_TAP)
    for py in range(y.shape[0]):
        for px in range(y.shape[1]):
            yv = y[py, px]
            av = arg[py, px]
            first = conv[py * ph * ow + px * pw]
            for co in range(cout):
                v = first[co]
                yv[co] = v
                av[co] = np.uint8(0) if v == v else no_tap
            for i in range(ph):
                for j in range(pw):
                    if i == 0 and j == 0:
                        continue
                    tap = conv[(py * ph + i) * ow + px * pw + j]
                    k = np.uint8(i * pw + j)
                    for co in range(cout):
                        v = tap[co]
                        best = yv[co]
                        a = av[co]
                        nan = v != v
                        take = nan | ((v > best) & (a != no_tap))  # a NaN window keeps its NaN and NO_TAP
                        yv[co] = v if take else best
                        av[co] = no_tap if nan else (k if take else a)


@pjit
def _conv2d_max_pool_fwd(x, w, b, has_bias, relu, sh, sw, pt, pl, oh, ow, ph, pw, band, rows_blk, path, padded,
                         scratch, fast, nchunks):
    """Forward of ``conv2d_max_pool``: tasks of ``band`` pooled rows of a sample, in ``nchunks`` chunks each with
    its own scratch (allocated once: a scratch per task was an mmap and its page faults each); a task's
    convolution rows go to the scratch (on the direct kernel, the implicit GEMM or im2col panels, as ``conv2d``
    would run the layer), then are pooled into ``y`` and ``arg``."""
    n, h, wd, c = x.shape
    kh, kw, _, cout = w.shape
    poh, pow_ = oh // ph, ow // pw
    k = kh * kw * c
    span = kw * c
    y = np.empty((n, poh, pow_, cout), dtype=np.float32)
    arg = np.empty((n, poh, pow_, cout), dtype=np.uint8)
    x2 = x.reshape(n, h * wd * c)
    w2d = w.reshape(k, cout)
    wf = w.reshape(-1)
    bands = (poh + band - 1) // band
    tasks = n * bands
    for ch in numba.prange(nchunks):
        conv_all = np.empty((band * ph * ow, cout), dtype=np.float32)
        pad = np.empty(scratch, dtype=np.float32)
        panel = np.empty((rows_blk * ow if path == 0 else 0, k), dtype=np.float32)
        pf = panel.reshape(-1)
        for t in range(ch * tasks // nchunks, (ch + 1) * tasks // nchunks):
            s = t // bands
            p0 = (t % bands) * band
            p1 = min(p0 + band, poh)
            oy0, oy1 = p0 * ph, p1 * ph
            conv = conv_all[:(oy1 - oy0) * ow]
            if path == 2:  # direct
                conv_direct_rows(x.ctypes, np.int32(h), np.int32(wd), np.int32(c), w.ctypes, np.int32(kh),
                                 np.int32(kw), np.int32(cout), b.ctypes, np.int32(sh), np.int32(sw), np.int32(pt),
                                 np.int32(pl), np.int32(ow), np.int64(s), np.int32(oy0), np.int32(oy1), conv.ctypes,
                                 pad.ctypes, np.int32(relu), np.int32(has_bias), np.int32(padded))
            elif path == 1:  # implicit GEMM: each kernel row's windows read in place (see _conv2d_fwd_implicit)
                xs = x2[s]
                for oy in range(oy0, oy1):
                    cf = conv[(oy - oy0) * ow:(oy - oy0 + 1) * ow].reshape(-1)
                    for i in range(kh):
                        fast_gemm(xs[(oy * sh + i) * wd * c:], sw * c, 1, wf[i * span * cout:], cout, cf, cout, ow,
                                  cout, span, i > 0)
                if has_bias or relu:
                    _bias_relu(conv, b, has_bias, relu)
            else:  # im2col panels
                for r0 in range(oy0, oy1, rows_blk):
                    r1 = min(oy1, r0 + rows_blk)
                    m = (r1 - r0) * ow
                    _im2col_rows(x2[s], pf, r0, r1, h, wd, c, kh, kw, sh, sw, pt, pl, ow)
                    rows = conv[(r0 - oy0) * ow:(r0 - oy0) * ow + m]
                    matmul(panel[:m], w2d, rows, fast)
                    if has_bias or relu:
                        _bias_relu(rows, b, has_bias, relu)
            if fast:  # the vector kernels' pooling (the same comparisons in the same order)
                max_pool_arg_rows(conv.ctypes, np.int32(ow), np.int32(cout), np.int32(ph), np.int32(pw),
                                  np.int32(p1 - p0), np.int32(pow_), y[s, p0:p1].ctypes, arg[s, p0:p1].ctypes)
            else:
                _pool_rows(conv, ow, cout, ph, pw, y[s, p0:p1], arg[s, p0:p1])
    return y, arg


@njit
def _unpool_rows(dyp, arg, yp, relu, oy0, oy1, ow, ph, pw, out):
    """Rows ``oy0..oy1`` of one sample's convolution gradient, from its pooled gradient ``dyp`` and the forward's
    ``arg`` and ``yp`` (see ``conv2d_max_pool``), into ``out`` (``(rows * ow, Cout)``): each window's gradient at
    its tap ``arg`` (with ``relu``, where the window's maximum is positive), zero elsewhere. Written ``0 + dy``,
    the value ``max_pool2d_backward`` gives (a -0.0 becomes +0.0), so the products after it have the same bits."""
    zero = np.float32(0.0)
    poh, pow_, cout = dyp.shape
    for r in range(out.shape[0]):
        for co in range(cout):
            out[r, co] = zero
    # Every tap of every window written with a select over the contiguous channels (LLVM vectorizes it; a scatter
    # to each window's tap did not: cifar_cnn's first layer, backward without dx at batch 128, 15 -> 7-10 ms on the
    # Zen 3). Rows and columns past the last whole window stay zero: no window reads them.
    for py in range(oy0 // ph, min(poh, (oy1 + ph - 1) // ph)):
        for i in range(ph):
            oy = py * ph + i
            if oy < oy0 or oy >= oy1:  # this row of the window is in another block of rows
                continue
            for px in range(pow_):
                av, dv, yv = arg[py, px], dyp[py, px], yp[py, px]
                for j in range(pw):
                    tap = np.uint8(i * pw + j)  # NO_TAP is never a tap
                    o = out[(oy - oy0) * ow + px * pw + j]
                    for co in range(cout):
                        hit = (av[co] == tap) & ((not relu) | (yv[co] > zero))
                        o[co] = (zero + dv[co]) if hit else zero


@pjit
def _conv2d_bwd(dy3, y3, relu, x2, w2dt, has_bias, need_dx, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, rows_blk, nchunks,
                fast, pool_dy, pool_arg, pool_y, ph, pw, flipped, band, wino_dw, direct_dw, padded, pad_floats,
                flipped_direct, direct_dx, dx_pad):
    """Backward driver: dx per sample (owned by one thread), dW/db as per-chunk partials reduced afterwards.
    Without ``need_dx`` (the first layer: nobody needs the input gradient) the dx products are skipped.
    With ``relu``, the ReLU backward is fused: each tile of ``dy`` is masked where the output ``y3`` is not
    positive while it is in cache, instead of a separate pass over the whole gradient. With ``ph > 0`` (a
    ``conv2d_max_pool``) the tiles of ``dy`` come from the pooled gradient instead (``_unpool_rows``): the
    convolution's full-size gradient and output are never read. With a non-empty ``flipped`` (the Winograd
    transform of the kernel turned 180 degrees, channels swapped: F(2x2)'s, or F(4x4)'s with 36 planes) the input
    gradient is a Winograd convolution of the sample's whole ``dy``, kept for it, instead of panel products and
    col2im. With ``wino_dw`` (a 3x3 stride-1 layer, Winograd kernels loaded) the weight gradient is formed in
    Winograd's domain from the same ``dy``
    (``dc_wino_dw_rows``): the fourth value returned, ``dU`` (16, cin, cout), of which the caller takes
    ``G^T dU G``; no im2col panel is built then. With ``direct_dw`` (``geometry.direct_dw_pays``, vector kernels
    loaded) the weight and bias gradients of each block of rows are one call of the direct kernel
    (``dc_conv_dw_rows``), which reads zero-padded copies of the input rows (``pad_floats`` of scratch) when
    ``padded``; no im2col panel either. With ``direct_dx`` the input gradient is the direct kernel's convolution of
    the sample's whole ``dy`` with ``flipped_direct`` (the kernel turned 180 degrees, channels swapped), reading
    zero-padded copies of its rows (``dx_pad`` floats of scratch)."""
    n = x2.shape[0]
    cout = w2dt.shape[0]
    k = w2dt.shape[1]
    wino = need_dx and flipped.shape[0] > 0
    wino4 = flipped.shape[0] == 36  # F(4x4)'s transform (dc_wino4_dx_rows), else F(2x2)'s
    tw = (w + 1) // 2
    th = (h + 1) // 2
    th4 = (h + 3) // 4
    dx = np.empty((n if need_dx else 0, h * w * c), dtype=np.float32)
    dwp = np.zeros((nchunks, 0 if wino_dw else k, cout), dtype=np.float32)
    dup = np.zeros((nchunks, 16 * c * cout if wino_dw else 0), dtype=np.float32)
    dbp = np.zeros((nchunks, cout), dtype=np.float32)
    whole = wino or wino_dw or direct_dx  # the sample's whole dy is kept: these read rows across blocks
    for t in numba.prange(nchunks):
        # the panels only where a product reads them: im2col for the weight gradient, col2im for the input's
        panel = np.empty((0 if wino_dw or direct_dw else rows_blk * ow, k), dtype=np.float32)
        dpanel = np.empty((rows_blk * ow if need_dx and not wino and not direct_dx else 0, k), dtype=np.float32)
        pf = panel.reshape(-1)
        dpf = dpanel.reshape(-1)
        dwt = np.empty((0 if wino_dw else k, cout), dtype=np.float32)
        # the sample's whole dy with Winograd (its input gradient reads rows across blocks), else a block's
        rows = oh * ow if whole else (rows_blk * ow if relu or ph > 0 else 0)
        dmask = _aligned_floats(rows * cout).reshape(rows, cout)
        scratch = _aligned_floats(max(16 * band * tw, 36 * WINOGRAD4_BAND * ((w + 3) // 4)) * (c + cout)
                                  if whole else 0)
        pad = np.empty(pad_floats if direct_dw and padded else 1, dtype=np.float32)
        dxpad = np.empty(dx_pad, dtype=np.float32)
        dwsum = dwp[t]
        dbsum = dbp[t]
        for s in range(t * n // nchunks, (t + 1) * n // nchunks):
            if need_dx and not wino and not direct_dx:
                dx[s, :] = np.float32(0.0)  # each sample belongs to exactly one thread: zero it here, in parallel
            for oy0 in range(0, oh, rows_blk):
                oy1 = min(oh, oy0 + rows_blk)
                m = (oy1 - oy0) * ow
                tile = dmask[oy0 * ow:oy0 * ow + m] if whole else dmask[:m]
                dys = dy3[s, oy0 * ow:oy0 * ow + m] if ph == 0 else tile
                if ph > 0:
                    _unpool_rows(pool_dy[s], pool_arg[s], pool_y[s], relu, oy0, oy1, ow, ph, pw, tile)
                elif relu:
                    _relu_mask(dys, y3[s, oy0 * ow:oy0 * ow + m], tile)
                    dys = tile
                if direct_dw:  # dW and db in one pass over the rows' gradient
                    conv_dw_rows(x2.ctypes, np.int32(h), np.int32(w), np.int32(c), dys.ctypes, np.int32(kh),
                                 np.int32(kw), np.int32(cout), np.int32(sh), np.int32(sw), np.int32(pt), np.int32(pl),
                                 np.int32(ow), np.int64(s), np.int32(oy0), np.int32(oy1), dwsum.ctypes,
                                 dbsum.ctypes, pad.ctypes, np.int32(has_bias), np.int32(padded))
                elif not wino_dw:
                    _im2col_rows(x2[s], pf, oy0, oy1, h, w, c, kh, kw, sh, sw, pt, pl, ow)
                    matmul_tn_add(panel[:m], dys, dwsum, dwt, fast)
                if need_dx and not wino and not direct_dx:
                    matmul(dys, w2dt, dpanel[:m], fast)
                    _col2im_rows(dpf, dx[s], oy0, oy1, h, w, c, kh, kw, sh, sw, pt, pl, ow)
                if has_bias and not direct_dw:
                    for r in range(m):
                        for co in range(cout):
                            dbsum[co] += dys[r, co]
            src = dmask if relu or ph > 0 else dy3[s]
            if wino_dw:  # dU += this sample's tiles, band by band of the output's tile rows
                for ty0 in range(0, (oh + 1) // 2, band):
                    wino_dw_rows(x2.ctypes, np.int32(h), np.int32(w), np.int32(c), src.ctypes, np.int32(cout),
                                 np.int32(pt), np.int32(pl), np.int32(oh), np.int32(ow), np.int64(s), np.int32(ty0),
                                 np.int32(min(ty0 + band, (oh + 1) // 2)), dup[t].ctypes, scratch.ctypes)
            if direct_dx:  # dx[s]: every pixel written
                conv_direct_rows(src.ctypes, np.int32(oh), np.int32(ow), np.int32(cout), flipped_direct.ctypes,
                                 np.int32(kh), np.int32(kw), np.int32(c), src.ctypes, np.int32(1), np.int32(1),
                                 np.int32(kh - 1 - pt), np.int32(kw - 1 - pl), np.int32(w), np.int64(0), np.int32(0),
                                 np.int32(h), dx[s].ctypes, dxpad.ctypes, np.int32(0), np.int32(0), np.int32(1))
            if wino and wino4:  # dx[s] on F(4x4): every pixel written, WINOGRAD4_BAND tile rows at a time
                for ty0 in range(0, th4, WINOGRAD4_BAND):
                    wino4_dx_rows(src.ctypes, np.int32(oh), np.int32(ow), np.int32(cout), flipped.ctypes, np.int32(c),
                                  np.int32(pt), np.int32(pl), np.int32(h), np.int32(w), np.int32(ty0),
                                  np.int32(min(ty0 + WINOGRAD4_BAND, th4)), dx[s].ctypes, scratch.ctypes)
            elif wino:  # dx[s]: every pixel written, tile row band by band
                for ty0 in range(0, th, band):
                    wino_rows(src.ctypes, np.int32(oh), np.int32(ow), np.int32(cout), flipped.ctypes, np.int32(c),
                              src.ctypes, np.int32(0), np.int32(2 - pt), np.int32(2 - pl), np.int32(h), np.int32(w),
                              np.int64(0), np.int32(ty0), np.int32(min(ty0 + band, th)), dx[s].ctypes, np.int32(0),
                              np.int32(0), scratch.ctypes, src.ctypes, np.int32(0))
    dw = dwp[0].copy()
    du = dup[0].copy()
    db = dbp[0].copy()
    for t in range(1, nchunks):
        dw += dwp[t]
        du += dup[t]
        db += dbp[t]
    return dx, dw, db, du


def _plan(x_shape, w_shape, strides, padding, split_rows=False):
    """Geometry plus the panel's block of output rows and the number of chunks.

    The backward splits over samples only (each sample's dx is owned by one thread), in ``BACKWARD_CHUNKS``
    chunks whatever the thread count, so that its weight-gradient sum is the same on any machine. The forward, with
    ``split_rows``, splits over (sample, row block) items, with blocks small enough that a batch smaller than
    the thread count still keeps every thread busy (batch-1 latency).
    """
    n, h, w = x_shape[:3]
    kh, kw, cin, _ = w_shape
    oh, ow, (pt, _), (pl, _) = window_2d(h, w, (kh, kw), strides, padding)
    rows_blk = max(1, min(oh, PANEL_BYTES // (4 * ow * kh * kw * cin)))
    threads = numba.get_num_threads()
    if not split_rows:
        return oh, ow, pt, pl, rows_blk, max(1, min(n, BACKWARD_CHUNKS))
    if n < threads:
        rows_blk = max(1, min(rows_blk, oh // max(1, 2 * threads // n)))
    items = n * -(-oh // rows_blk)
    return oh, ow, pt, pl, rows_blk, max(1, min(items, threads))


def _winograd(w, strides):
    """Whether the layer runs on Winograd F(2x2, 3x3) here (``geometry.winograd_pays``, with the Cython
    extension's Winograd kernels, as the inference programs do): forward, and the input gradient's full
    convolution (3x3 at stride 1 too)."""
    return winograd_pays(w.shape, strides, HAVE_WINOGRAD)


def _winograd_weights(w, tile=2):
    """The Winograd F(``tile`` x ``tile``, 3x3) transform of the 3x3 kernel ``w`` (``(3, 3, cin, cout)``): ``(16,
    cin, cout)``, or ``(36, cin, cout)`` for ``tile=4``."""
    from .isa import gemm  # the Cython extension has them: HAVE_WINOGRAD (HAVE_WINOGRAD4) said so

    u = aligned_empty((16 if tile == 2 else 36,) + w.shape[2:])  # the GEMMs read it as vectors
    (gemm.winograd_weights if tile == 2 else gemm.winograd4_weights)(np.ascontiguousarray(w, dtype=np.float32), u)
    return u


#: Tile rows (2 output rows each) per Winograd call: 16 x tiles x (cin + cout) floats of transforms stay in L2
#: (4 rows of 13 tiles, 32 + 64 channels: 320 KB).
WINOGRAD_BAND = 4
#: Tile rows (4 input-gradient rows each) per F(4x4) call of the backward (the Cython backward's WINO4_BAND).
WINOGRAD4_BAND = 2


@pjit
def _conv2d_fwd_winograd(x, u, b, has_bias, relu, pt, pl, oh, ow, pool, band, nchunks):
    """Forward on Winograd F(2x2, 3x3) (``_winograd.h``): tasks of ``band`` tile rows of a sample, each
    chunk with its own scratch. With ``pool``, the 2x2 max pooling of the output and each window's tap (``arg``)
    instead (``conv2d_max_pool``)."""
    n, h, wd, cin = x.shape
    cout = u.shape[2]
    tw = (ow + 1) // 2
    th = oh // 2 if pool else (oh + 1) // 2
    if pool:
        y = np.empty((n, oh // 2, ow // 2, cout), dtype=np.float32)
        arg = np.empty((n, oh // 2, ow // 2, cout), dtype=np.uint8)
    else:
        y = np.empty((n, oh, ow, cout), dtype=np.float32)
        arg = np.empty((n, 0, 0, cout), dtype=np.uint8)
    bands = (th + band - 1) // band
    tasks = n * bands
    for ch in numba.prange(nchunks):
        scratch = _aligned_floats(16 * band * tw * (cin + cout))
        for t in range(ch * tasks // nchunks, (ch + 1) * tasks // nchunks):
            s = t // bands
            ty0 = (t % bands) * band
            wino_rows(x.ctypes, np.int32(h), np.int32(wd), np.int32(cin), u.ctypes, np.int32(cout), b.ctypes,
                      np.int32(has_bias), np.int32(pt), np.int32(pl), np.int32(oh), np.int32(ow), np.int64(s),
                      np.int32(ty0), np.int32(min(ty0 + band, th)), y[s].ctypes, np.int32(pool), np.int32(relu),
                      scratch.ctypes, arg[s].ctypes, np.int32(pool))
    return y, arg


def _winograd_forward(x, w, bias, has_bias, relu, pt, pl, oh, ow, pool):
    n = x.shape[0]
    th = oh // 2 if pool else (oh + 1) // 2
    band = min(WINOGRAD_BAND, th if n >= 8 else max(1, -(-th // 8)))
    tasks = n * -(-th // band)
    return _conv2d_fwd_winograd(np.ascontiguousarray(x), _winograd_weights(w), np.ascontiguousarray(bias), has_bias,
                                relu, pt, pl, oh, ow, pool, band, max(1, min(tasks, numba.get_num_threads())))


def conv2d(x, w, b, strides, padding, relu=False):
    """Convolve channels-last float32 ``x`` with ``w`` (``(kh, kw, Cin, Cout)``), add ``b`` (``None``: no bias),
    optionally fuse ReLU. Returns ``(N, OH, OW, Cout)`` float32."""
    n, h, wdim, cin = x.shape
    kh, kw, _, cout = w.shape
    oh, ow, pt, pl, rows_blk, nchunks = _plan(x.shape, w.shape, strides, padding, split_rows=True)
    has_bias = b is not None
    bias = b if has_bias else np.zeros(cout, dtype=np.float32)
    if _winograd(w, strides):
        return _winograd_forward(x, w, bias, has_bias, relu, pt, pl, oh, ow, False)[0]
    x2, w2d = x.reshape(n, h * wdim * cin), w.reshape(kh * kw * cin, cout)
    path = conv_path((h, wdim), w.shape, strides, padding, HAVE_DIRECT_CONV and HAVE_FAST_GEMM)
    if path == "direct":
        # A whole sample per task for batches of 8 or more, else about an eighth of one (batch-1 latency).
        block = oh if n >= 8 else max(1, -(-oh // 8))
        inside = windows_inside((h, wdim), w.shape, strides, (pt, pl), (oh, ow))
        scratch = 1 if inside else direct_scratch(block, w.shape, strides, wdim, pl, ow)
        x4, w4, b1 = np.ascontiguousarray(x), np.ascontiguousarray(w), np.ascontiguousarray(bias)
        return _conv2d_fwd_direct(x4, w4, b1, has_bias, relu, strides[0], strides[1], pt, pl, not inside, oh, ow,
                                  block, scratch)
    # Without padding, the windows are read in place (geometry.conv_path); only the forward: the same
    # idea in the backward measured no faster than im2col panels.
    if path == "implicit":
        y = _conv2d_fwd_implicit(x2, w2d, bias, has_bias, relu, h, wdim, cin, kh, kw, strides[0], strides[1], oh, ow)
        return y.reshape(n, oh, ow, cout)
    with blas_single_thread():
        y = _conv2d_fwd(x2, w2d, bias, has_bias, relu, h, wdim, cin, kh, kw, strides[0], strides[1], pt, pl, oh,
                        ow, rows_blk, nchunks, HAVE_FAST_GEMM)
    return y.reshape(n, oh, ow, cout)


def conv2d_backward(dy, x, w, strides, padding, has_bias, need_dx=True, relu_output=None):
    """Gradients of :func:`conv2d` w.r.t. ``x``, ``w`` and the bias (``None`` if no bias).
    ``need_dx=False`` skips the input gradient (returned as ``None``). ``relu_output``: the forward's output when
    it fused ReLU; the ReLU backward is fused in (``dy`` passes only where the output is positive)."""
    return _backward(x, w, strides, padding, has_bias, need_dx, relu_output is not None, dy, relu_output)


def _backward(x, w, strides, padding, has_bias, need_dx, relu, dy=None, relu_output=None, pooled=None):
    """The backward driver on the layer's geometry, from the convolution's gradient ``dy`` (and, with ``relu``,
    its output ``relu_output``) or from ``pooled`` = ``(dy, arg, y, (ph, pw))`` of a ``conv2d_max_pool``, when the
    driver reads no full-size tensor."""
    n, h, wdim, cin = x.shape
    kh, kw, _, cout = w.shape
    oh, ow, pt, pl, rows_blk, nchunks = _plan(x.shape, w.shape, strides, padding)
    full = (n, oh * ow, cout) if dy is not None else (n, 0, cout)
    dy3 = np.empty(full, dtype=np.float32) if dy is None else dy.reshape(full)
    y3 = relu_output.reshape(full) if relu_output is not None else dy3
    # The panel gradient dy @ w2d^T is written straight into a C-contiguous buffer; a C-contiguous (Cout, K)
    # copy of w2d^T is tiny next to the products.
    w2dt = np.ascontiguousarray(w.reshape(kh * kw * cin, cout).T)
    pool_dy, pool_arg, pool_y, (ph, pw) = _NO_POOL if pooled is None else pooled
    # The input gradient of a 3x3 stride-1 convolution is the 3x3 stride-1 convolution of dy with the kernel
    # turned 180 degrees and its channels swapped, padded by 2 - pad: Winograd's tiles, per sample.
    # F(4x4)'s tiles where they pay (geometry.winograd4_dx_pays), else F(2x2)'s: the plane count tells the driver.
    wino = _winograd(w, strides)
    turned = w[::-1, ::-1].transpose(0, 1, 3, 2)
    dx_f4 = need_dx and winograd4_dx_pays(w.shape, strides, HAVE_WINOGRAD4)
    flipped = _winograd_weights(turned, 4) if dx_f4 else _winograd_weights(turned) if need_dx and wino else \
        np.empty((0, 0, 0), dtype=np.float32)
    # The weight and bias gradients of layers with few channels on the direct kernel (geometry.direct_dw_pays)
    direct_dw = HAVE_DIRECT_DW and HAVE_DIRECT_CONV and HAVE_FAST_GEMM and \
        direct_dw_pays(w.shape, strides, (pt, pl))
    padded = not windows_inside((h, wdim), w.shape, strides, (pt, pl), (oh, ow))
    pad_floats = direct_scratch(rows_blk, w.shape, strides, wdim, pl, ow) if direct_dw and padded else 1
    # The input gradient of other stride-1 layers with few channels: the direct kernel's convolution of dy with the
    # kernel turned 180 degrees, channels swapped (geometry.direct_dx_pays), on zero-padded copies of dy's rows.
    direct_dx = need_dx and flipped.shape[0] == 0 and HAVE_DIRECT_CONV and HAVE_FAST_GEMM and \
        direct_dx_pays(w.shape, strides, (pt, pl))
    flipped_direct = np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2)) if direct_dx else _NO_WEIGHTS
    dx_pad = direct_scratch(h, (kh, kw, cout, cin), (1, 1), ow, kw - 1 - pl, wdim) if direct_dx else 1
    x2 = np.ascontiguousarray(x).reshape(n, h * wdim * cin)  # the direct kernel reads it through its address
    with blas_single_thread():
        dx, dw, db, du = _conv2d_bwd(dy3, y3, relu, x2, w2dt, has_bias, need_dx, h, wdim, cin, kh, kw, strides[0],
                                     strides[1], pt, pl, oh, ow, rows_blk, nchunks, HAVE_FAST_GEMM, pool_dy, pool_arg,
                                     pool_y, ph, pw, flipped, WINOGRAD_BAND, wino, direct_dw, padded, pad_floats,
                                     flipped_direct, direct_dx, dx_pad)
    dw = winograd_weights_grad(du.reshape(4, 4, cin, cout)) if wino else dw.reshape(w.shape)
    return (dx.reshape(x.shape) if need_dx else None), dw, (db if has_bias else None)


_NO_WEIGHTS = np.empty((0, 0, 0, 0), np.float32)
_NO_POOL = (np.empty((0, 0, 0, 0), np.float32), np.empty((0, 0, 0, 0), np.uint8), np.empty((0, 0, 0, 0), np.float32),
            (0, 0))


def conv2d_max_pool(x, w, b, strides, padding, pool, relu=False):
    """``max_pool2d(conv2d(x, w, b, strides, padding, relu), pool, pool, "valid")`` and each window's first
    maximum ``arg`` (see ``reference.conv.conv2d_max_pool``): ``(y, arg)``, with the bits of the two kernels.

    Why: the convolution's output is the largest tensor of a block (mnist_cnn's second layer: 19 MB at batch
    128); written, read back by the pooling and by the backward's ReLU mask, and its gradient written by the
    pooling's backward and read back, it cost more than the pooling's work. Here each task computes the
    convolution rows of a band of pooled rows into a scratch that stays in cache and pools them; the backward
    (:func:`conv2d_max_pool_backward`) rebuilds each tile of the convolution's gradient from ``arg``.
    """
    check_pool_taps(pool)
    n, h, wdim, cin = x.shape
    kh, kw, _, cout = w.shape
    oh, ow, pt, pl, rows_blk, _ = _plan(x.shape, w.shape, strides, padding)
    ph, pw = pool
    has_bias = b is not None
    bias = np.ascontiguousarray(b if has_bias else np.zeros(cout, dtype=np.float32))
    if tuple(pool) == (2, 2) and _winograd(w, strides):  # a 2x2 tile of outputs is a window
        return _winograd_forward(x, w, bias, has_bias, relu, pt, pl, oh, ow, True)
    path = conv_path((h, wdim), w.shape, strides, padding, HAVE_DIRECT_CONV and HAVE_FAST_GEMM)
    poh = oh // ph
    band = poh if n >= 8 else max(1, -(-poh // 8))  # pooled rows per task: a sample, or an eighth at small batches
    inside = windows_inside((h, wdim), w.shape, strides, (pt, pl), (oh, ow))
    scratch = direct_scratch(band * ph, w.shape, strides, wdim, pl, ow) if path == "direct" and not inside else 1
    x4, w4 = np.ascontiguousarray(x), np.ascontiguousarray(w)
    tasks = n * -(-poh // band)
    with blas_single_thread():
        return _conv2d_max_pool_fwd(x4, w4, bias, has_bias, relu, strides[0], strides[1], pt, pl, oh, ow, ph, pw,
                                    band, rows_blk, _PATHS.index(path), not inside, scratch, HAVE_FAST_GEMM,
                                    max(1, min(tasks, numba.get_num_threads())))


def conv2d_max_pool_backward(dy, arg, y, x, w, strides, padding, pool, has_bias, need_dx=True, relu=False):
    """Gradients of :func:`conv2d_max_pool` w.r.t. ``x``, ``w`` and the bias, from the pooled gradient ``dy`` and
    the forward's ``(y, arg)``: the bits of ``max_pool2d_backward`` then ``conv2d_backward``, without either
    full-size tensor."""
    return _backward(x, w, strides, padding, has_bias, need_dx, relu,
                     pooled=(np.ascontiguousarray(dy), np.ascontiguousarray(arg), np.ascontiguousarray(y), tuple(pool)))
