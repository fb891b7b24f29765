"""Zero padding (NumPy reference): Keras's ``ZeroPadding2D`` on channels-last ``(N, H, W, C)`` arrays.

``padding`` is ``((top, bottom), (left, right))``. The backward is the crop of the gradient back to the input's
rows and columns, C-contiguous.
"""
import numpy as np


def zero_pad2d(x, padding):
    """``x`` with ``top``/``bottom`` zero rows and ``left``/``right`` zero columns around each sample."""
    (top, bottom), (left, right) = padding
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))


def zero_pad2d_backward(dy, padding):
    """The gradient of :func:`zero_pad2d` with respect to ``x``: ``dy`` cropped, C-contiguous."""
    (top, bottom), (left, right) = padding
    n, h, w, c = dy.shape
    return np.ascontiguousarray(dy[:, top:h - bottom, left:w - right])
