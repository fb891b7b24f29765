"""The merge ops (NumPy reference): Keras's ``Concatenate`` and ``Add`` on several arrays.

``concatenate`` joins arrays along ``axis`` (an axis of the arrays, the batch axis counted); its backward splits the
gradient back into one contiguous part per input. ``add`` sums two or more arrays of one shape in the order given
(``((x0 + x1) + x2) + ...``): the fast sets add in that order too, so they give the same bits. Its gradient is
``dy`` for every input, which needs no op.
"""
import numpy as np


def concatenate(xs, axis):
    """``xs`` (a list of arrays agreeing on every axis but ``axis``) joined along ``axis``."""
    return np.concatenate(xs, axis=axis)


def concatenate_backward(dy, x_shapes, axis):
    """The gradient of :func:`concatenate` with respect to each input: ``dy`` split along ``axis`` into parts of
    the inputs' shapes ``x_shapes``, each C-contiguous (a tuple: one output per input)."""
    cuts = np.cumsum([s[axis] for s in x_shapes[:-1]])
    return tuple(np.ascontiguousarray(d) for d in np.split(dy, cuts, axis))


def add(xs):
    """The sum of the arrays of ``xs`` (two or more, one shape), added in order."""
    y = xs[0] + xs[1]
    for x in xs[2:]:
        y += x
    return y
