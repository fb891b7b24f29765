"""A pooling that reads a Concatenate along the channels (``fusion.POOL_OF_CONCAT``): every channel is pooled on its
own, so the pooling reads each part where it is and the concatenated copy is never written. Checked: the kernel
against concatenate-then-pool, bit for bit (max and average, "valid" and "same", odd channel counts, a NaN), and
programs: where the rule fires, where it must not, and their answers against the unfused forward."""
import numpy as np
import pytest

import dropcore
from dropcore.inference import predict_outputs
from dropcore.layers import (AveragePooling2D, Concatenate, Conv2D, Flatten, GlobalAveragePooling2D, Input,
                             MaxPooling2D)
from dropcore.ops import get_ops

pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")
from dropcore.kernels import cython_ops  # noqa: E402

RULE = "concat->pool (parts)"


@pytest.mark.parametrize("average", [False, True])
@pytest.mark.parametrize("pool,strides,padding", [((2, 2), (2, 2), "valid"), ((3, 3), (1, 1), "same"),
                                                  ((3, 2), (2, 1), "same")])
@pytest.mark.parametrize("n", [1, 3])
def test_parts_kernel_has_the_bits_of_concatenate_then_pool(n, pool, strides, padding, average):
    rng = np.random.default_rng(n)
    parts = [rng.standard_normal((n, 7, 9, c)).astype(np.float32) for c in (8, 3, 21)]
    parts[1][0, 2, 3, 1] = np.nan
    joined = np.empty((n, 7, 9, 32), np.float32)
    run, shape = cython_ops.concatenate_kernel([p.shape for p in parts], 3)
    run(*parts, joined)
    pool_run, pool_shape = cython_ops.pool2d_kernel(joined.shape, pool, strides, padding, average)
    want = np.empty(pool_shape, np.float32)
    pool_run(joined, want)
    parts_run, parts_shape = cython_ops.pool2d_parts_kernel([p.shape for p in parts], pool, strides, padding, average)
    assert parts_shape == pool_shape
    got = np.full(parts_shape, 5.0, np.float32)
    parts_run(*parts, got)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got).any()


def test_parts_kernel_rejects_parts_that_do_not_line_up():
    shapes = [(2, 6, 6, 4), (2, 6, 5, 4)]
    with pytest.raises(ValueError, match=r"pool2d_parts_kernel: the parts have shapes .*\(2, 6, 5, 4\)"):
        cython_ops.pool2d_parts_kernel(shapes, (2, 2), (2, 2), "valid", True)
    run, shape = cython_ops.pool2d_parts_kernel([(2, 6, 6, 4), (2, 6, 6, 3)], (2, 2), (2, 2), "valid", True)
    with pytest.raises(ValueError, match="the parts have 7 channels in all, y has 8"):
        run(np.zeros((2, 6, 6, 4), np.float32), np.zeros((2, 6, 6, 3), np.float32), np.zeros((2, 3, 3, 8), np.float32))


def _model(pool, axis=-1, second_reader=False):
    dropcore.set_random_seed(3)
    inp = Input((8, 8, 3))
    a = Conv2D(4, 1, activation="relu")(inp)
    b = Conv2D(6 if axis == -1 else 4, 3, padding="same")(inp)
    joined = Concatenate(axis=axis)([a, b, a])
    h = Flatten()(pool(joined))
    if second_reader:  # the concatenation is read twice: it must exist
        h = Concatenate()([h, GlobalAveragePooling2D()(joined)])
    model = dropcore.Model(inp, h)
    model.compile(optimizer="sgd", loss="mse")
    return model


@pytest.mark.parametrize("pool,name", [(lambda: MaxPooling2D(2), "max_pool2d"),
                                       (lambda: AveragePooling2D(3, strides=1, padding="same"), "avg_pool2d")])
def test_pooling_reads_the_parts_of_the_concatenation(pool, name):
    model = _model(pool())
    program = model._inference_program()
    assert program.steps == ["conv2d", "conv2d", f"concatenate+{name}", "reshape"]
    assert program.uncompiled == []
    assert [r for r, _, _ in program.fused].count(RULE) == 1
    x = np.random.default_rng(0).standard_normal((5, 8, 8, 3)).astype(np.float32)
    for batch_size in (None, 2):
        np.testing.assert_allclose(model.predict(x, batch_size=batch_size),
                                   predict_outputs(model._plan, get_ops("reference"), x, 256), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["two readers", "width axis"])
def test_concatenation_kept_where_the_parts_cannot_be_read(case):
    model = _model(MaxPooling2D(2), **({"second_reader": True} if case == "two readers" else {"axis": 2}))
    program = model._inference_program()
    assert "concatenate" in program.steps and RULE not in [r for r, _, _ in program.fused]
    x = np.random.default_rng(1).standard_normal((3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), predict_outputs(model._plan, get_ops("reference"), x, 256),
                               rtol=1e-5, atol=1e-6)
