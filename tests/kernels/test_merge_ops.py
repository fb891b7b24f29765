"""The merge ops (``concatenate``, ``concatenate_backward``, ``add``) on every set, bit for bit against NumPy:
a copy moves the same bits and a sum added in NumPy's order rounds the same way, so nothing here is approximate.
Every axis, two to four inputs, empty parts, non-contiguous inputs, sizes over many parallel chunks and rows."""
import numpy as np
import pytest

from dropcore.ops import get_ops

SETS = ["reference", "numba", "cython"]


def _set(name):
    if name == "cython":
        pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")
    return get_ops(name)


def _xs(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


# (input shapes, axis): channels last (the fast case), every other axis, three inputs, an empty part, 2-D, and
# a big one (many rows: several threads, each row a few channels, as a 1x1 branch of an inception block).
CONCATS = [
    ([(2, 5, 4, 3), (2, 5, 4, 6)], 3),
    ([(2, 5, 4, 3), (2, 5, 4, 1), (2, 5, 4, 7)], 3),
    ([(2, 5, 4, 3), (2, 5, 2, 3)], 2),
    ([(2, 5, 4, 3), (2, 1, 4, 3), (2, 3, 4, 3)], 1),
    ([(2, 5, 4, 3), (2, 5, 4, 0), (2, 5, 4, 2)], 3),
    ([(3, 5), (3, 2)], 1),
    ([(64, 16, 16, 16), (64, 16, 16, 24), (64, 16, 16, 8), (64, 16, 16, 16)], 3),
]


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("shapes,axis", CONCATS)
def test_concatenate_and_its_split_are_numpys_bits(name, shapes, axis):
    ops = _set(name)
    xs = _xs(shapes)
    y = ops.concatenate(xs, axis)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=axis))
    dy = _xs([y.shape], 1)[0]
    parts = ops.concatenate_backward(dy, [x.shape for x in xs], axis)
    cuts = np.cumsum([x.shape[axis] for x in xs[:-1]])
    assert len(parts) == len(xs)
    for part, expected in zip(parts, np.split(dy, cuts, axis)):
        assert part.flags.c_contiguous and part.dtype == np.float32
        np.testing.assert_array_equal(part, expected)


@pytest.mark.parametrize("name", SETS)
def test_concatenate_takes_non_contiguous_inputs_and_gradients(name):
    ops = _set(name)
    a, b = _xs([(2, 6, 5, 4), (2, 6, 5, 6)])
    a, b = a[:, ::2], b[:, ::2, :, 1:]  # strided views
    np.testing.assert_array_equal(ops.concatenate([a, b], 3), np.concatenate([a, b], axis=3))
    dy = _xs([(2, 3, 9, 5)])[0][:, :, ::3]  # (2, 3, 3, 5), strided
    parts = ops.concatenate_backward(dy, [(2, 3, 3, 2), (2, 3, 3, 3)], 3)
    np.testing.assert_array_equal(parts[1], dy[..., 2:])


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("n_inputs,shape", [(2, (2, 5, 4, 3)), (3, (2, 5, 4, 3)), (4, (3, 7)),
                                            (3, (64, 16, 16, 40))])  # the last: many chunks over the threads
def test_add_is_numpys_sum_in_order(name, n_inputs, shape):
    ops = _set(name)
    xs = _xs([shape] * n_inputs, n_inputs)
    expected = xs[0] + xs[1]
    for x in xs[2:]:
        expected += x
    got = ops.add(xs)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_the_bound_kernels_write_the_callers_buffer():
    cy = pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    base = (3, 4, 5, 2)
    for axis in (1, 2, 3):
        shapes = [base[:axis] + (k,) + base[axis + 1:] for k in (base[axis], 1, 2)]  # three parts on the axis
        parts = _xs(shapes, axis)
        run, y_shape = cy.concatenate_kernel(shapes, axis)
        y = np.full(y_shape, np.nan, dtype=np.float32)
        run(*parts, y)
        np.testing.assert_array_equal(y, np.concatenate(parts, axis=axis))
    xs = _xs([base])
    run, y_shape = cy.add_kernel([base] * 3)
    y = np.full(y_shape, np.nan, dtype=np.float32)
    run(xs[0], xs[0] * 2, xs[0] * 3, y)
    np.testing.assert_array_equal(y, (xs[0] + xs[0] * 2) + xs[0] * 3)
