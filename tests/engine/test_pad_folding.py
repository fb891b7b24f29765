"""A ZeroPadding2D folded into the convolution after it (``fusion.PADS_INTO_CONV``): every convolution path takes
explicit pads (``geometry.window_2d``), so a program reads the unpadded input with the pads and writes no padded
copy. Checked: the kernels with explicit pads against the reference on the padded input (every set, the bound
kernels, each conv path: direct, Winograd, im2col; depthwise), and programs against the unfused forward."""
import numpy as np
import pytest

import dropcore
from dropcore.inference import predict_outputs
from dropcore.layers import (Conv2D, DepthwiseConv2D, Flatten, GlobalAveragePooling2D, Input, MaxPooling2D,
                             SeparableConv2D, ZeroPadding2D)
from dropcore.ops import get_ops

pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")
from dropcore.kernels import cython_ops  # noqa: E402

REFERENCE = get_ops("reference")
# (size, cin, cout, kernel, stride, pads): PyTorch's symmetric pads at stride 2 on even sizes (not TF's "same"),
# asymmetric pads, and the direct (3 channels), Winograd (3x3 stride 1, 32 channels) and im2col paths
GEOMETRIES = [(16, 3, 8, 3, 2, ((1, 1), (1, 1))), (16, 32, 32, 3, 1, ((1, 1), (1, 1))),
              (15, 16, 24, 3, 2, ((1, 1), (0, 1))), (12, 6, 16, 5, 1, ((2, 2), (2, 2))),
              (16, 64, 64, 3, 2, ((1, 1), (1, 1))), (9, 8, 8, 1, 2, ((0, 0), (1, 0))),
              (14, 32, 48, 3, 1, ((0, 1), (1, 0)))]


def _padded(x, pads):
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


@pytest.mark.parametrize("size,cin,cout,k,s,pads", GEOMETRIES)
def test_every_set_takes_explicit_pads(size, cin, cout, k, s, pads):
    rng = np.random.default_rng(size * cin)
    x = rng.standard_normal((2, size, size, cin)).astype(np.float32)
    # weights at a trained layer's scale (unit-variance outputs): the tolerances below are then relative to the
    # outputs' scale for every path (F(4x4)'s rounding is a few 1e-6 of it)
    w = (rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    want = REFERENCE.conv2d(_padded(x, pads), w, b, (s, s), "valid", relu=True)
    for name in ("reference", "numba", "cython"):
        np.testing.assert_allclose(get_ops(name).conv2d(x, w, b, (s, s), pads, relu=True), want, rtol=1e-4,
                                   atol=1e-4, err_msg=name)
    run, shape = cython_ops.conv2d_kernel(x.shape, w, b, (s, s), pads, True)
    y = np.full(shape, np.nan, np.float32)
    run(x, y)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    wd = rng.standard_normal((k, k, cin, 1)).astype(np.float32)
    want = REFERENCE.depthwise_conv2d(_padded(x, pads), wd, b[:cin] if cout >= cin else None, (s, s), "valid", True)
    for name in ("reference", "numba", "cython"):
        got = get_ops(name).depthwise_conv2d(x, wd, b[:cin] if cout >= cin else None, (s, s), pads, True)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=name)


def _model(layers, shape):
    model = dropcore.Sequential([Input(shape)] + layers)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("make,step", [
    (lambda: [ZeroPadding2D(1), Conv2D(8, 3, strides=2, activation="relu")], "conv2d"),
    (lambda: [ZeroPadding2D(((0, 1), (1, 0))), Conv2D(8, 3, activation="relu"), MaxPooling2D(2)],
     "conv2d+max_pool2d" if cython_ops.HAVE_FAST_GEMM else "conv2d"),  # (the generic target pools apart)
    (lambda: [ZeroPadding2D(1), DepthwiseConv2D(3, strides=2, activation="relu")], "depthwise_conv2d"),
    (lambda: [ZeroPadding2D(2), SeparableConv2D(8, 5)], "depthwise_conv2d"),
])
def test_a_zero_padding_folds_into_the_convolution_after_it(make, step):
    model = _model(make() + [GlobalAveragePooling2D()], (12, 12, 4))
    program = model._inference_program()
    assert "zero_padding2d" not in " ".join(program.steps) and program.steps[0] == step, program.steps
    x = np.random.default_rng(3).standard_normal((5, 12, 12, 4)).astype(np.float32)
    want = predict_outputs(model.plan, REFERENCE, x, 256)
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dropcore.Predictor(model).predict(x, batch_size=2), want, rtol=1e-4, atol=1e-5)


def test_a_padding_stays_before_what_cannot_take_it():
    """A padded ("same") or dilated convolution, and a pooling, keep the ZeroPadding2D step."""
    for layer in (Conv2D(8, 3, padding="same"), Conv2D(8, 3, dilation_rate=2), MaxPooling2D(2)):
        model = _model([ZeroPadding2D(1), layer, Flatten()], (10, 10, 4))
        assert model._inference_program().steps[0] == "zero_padding2d", layer
        x = np.random.default_rng(4).standard_normal((3, 10, 10, 4)).astype(np.float32)
        np.testing.assert_allclose(model.predict(x), predict_outputs(model.plan, REFERENCE, x, 256), rtol=1e-4,
                                   atol=1e-5)


@pytest.mark.parametrize("make", [
    lambda: [ZeroPadding2D(1), Conv2D(8, 3, strides=2, activation="relu")],
    lambda: [ZeroPadding2D(((0, 1), (1, 0))), Conv2D(8, 3, activation="relu"), MaxPooling2D(2)],
    lambda: [ZeroPadding2D(1), DepthwiseConv2D(3, strides=2, activation="relu")],
    lambda: [ZeroPadding2D(2), SeparableConv2D(8, 5)],
    lambda: [Conv2D(6, 1), ZeroPadding2D(((1, 2), (0, 1))), Conv2D(8, 3, strides=2)],  # a padding mid-model
])
@pytest.mark.parametrize("kernels", ["reference", "numba", "cython"])
def test_training_reads_the_unpadded_input_with_the_pads(make, kernels, monkeypatch):
    """The training plan has no padded copy, and its outputs and every gradient equal the unfused plan's."""
    from dropcore import fusion
    from dropcore.graph import lower_training
    from dropcore.layers.base import Context

    model = _model(make() + [GlobalAveragePooling2D()], (12, 12, 4))
    fused = model.plan
    assert not any(type(s.layer).__name__ == "ZeroPadding2D" for s in fused.steps)
    monkeypatch.setattr(fusion, "TRAINING", tuple(r for r in fusion.TRAINING if r is not fusion.PADS_INTO_CONV))
    unfused = lower_training(model._graph)
    assert any(type(s.layer).__name__ == "ZeroPadding2D" for s in unfused.steps)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 12, 12, 4)).astype(np.float32)
    ops, ctx = get_ops(kernels), Context(training=True, dropout=True)
    grads = []
    for plan in (unfused, fused):
        y, tape = plan.forward(ops, x, ctx, keep_backprop=True)
        plan.backward(tape, np.linspace(-1, 1, y.size, dtype=np.float32).reshape(y.shape), ops)
        grads.append([y] + [la.grads[n].copy() for la in model.layers for n in la.grads])
    assert len(grads[1]) > 1
    for want, got in zip(*grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
