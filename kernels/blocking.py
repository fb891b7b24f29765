"""The blocks every training sum is formed in, shared by the Numba kernels (``conv.py``, ``dense.py``) and their
Cython ports (``cython_train_gemm.py``): they fix the order of each sum, and so the bits the two share. None
depends on the thread count: a sweep's or a data-parallel run's workers run fewer threads than one process on all
cores, and must train as it does. Imports no Numba.
"""
import numpy as np

#: Target size in bytes of one thread's im2col panel: small enough to stay in L2 between im2col and the matmul.
PANEL_BYTES = 256 * 1024
#: The convolution's weight gradient is summed over samples in this many chunks (fewer for smaller batches), each
#: into its own partial, whatever the thread count. 32 keeps 32 threads busy; the partials cost 32 x K x Cout floats
#: (2.4 MB for a 3x3x64->64 layer) and their sum is a few percent of the backward's products.
BACKWARD_CHUNKS = 32
#: Dense products of at most this many multiply-adds run on one thread (with dropcore's GEMM, which is faster on one
#: core than OpenBLAS on two up to about this size: ``SMALL_WORK_FAST``).
SMALL_WORK = 1 << 19
SMALL_WORK_FAST = 1 << 22
#: Fewest columns (or rows) of a block of a dense layer's ``w``: narrower blocks make BLAS inefficient.
MIN_BLOCK = 32
#: Most blocks an axis is split into, whatever the thread count. BLAS sums a product's elements in an order that can
#: depend on the block's size (OpenBLAS runs small blocks on other kernels), so a split by thread count gave other
#: bits on 1 thread than on 2 (measured: dx of a 100 x 9216 x 128 backward).
MAX_BLOCKS = 8


def blocks(extent):
    """Blocks of an axis of length ``extent``: ``MAX_BLOCKS``, or fewer so that none is narrower than
    ``MIN_BLOCK`` (the threads share them out)."""
    return max(1, min(MAX_BLOCKS, extent // MIN_BLOCK))


def winograd_weights_grad(du):
    """The kernel's gradient ``G^T dU G`` (3, 3, cin, cout) from the gradient ``du`` (4, 4, cin, cout) of its
    Winograd transform ``U = G g G^T`` (``dc_wino_weights``), G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2],
    [0, 0, 1]]: in float32, element-wise over the channel pairs (a fixed order: no BLAS, whose blocking may follow
    the thread count)."""
    half = np.float32(0.5)
    s = np.stack([du[0] + half * du[1] + half * du[2], half * du[1] - half * du[2],
                  half * du[1] + half * du[2] + du[3]])  # G^T dU: (3, 4, cin, cout)
    return np.ascontiguousarray(np.stack([s[:, 0] + half * s[:, 1] + half * s[:, 2], half * s[:, 1] - half * s[:, 2],
                                          half * s[:, 1] + half * s[:, 2] + s[:, 3]], axis=1))
