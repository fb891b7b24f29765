"""Inference folding (``dropcore.fusion``'s NORM_INTO_KERNEL and RESIDUAL_INTO_CONV, ``dropcore.folding``): each
rule fires where it should (``Program.steps`` lists the fused step), leaves alone what it must, and the fused program
gives what the unfused forward gives: the executor's plan on the NumPy reference kernels, within float32 tolerance
(rtol 1e-4, atol 1e-5: folding moves the batch norm's scale into the products, a different rounding order), also
after the model trained on (folded weights are derived from the current ones) and on a Predictor's frozen weights."""
import numpy as np
import pytest

import dropcore
from dropcore.inference import predict_outputs
from dropcore.layers import (ELU, Add, BatchNormalization, Conv2D, Dense, Flatten, GlobalAveragePooling2D, Input,
                             LeakyReLU, MaxPooling2D, ReLU)
from dropcore.ops import get_ops

pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")
from dropcore.kernels import cython_ops  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5


def _compiled(inp, out, seed=0):
    model = dropcore.Model(inp, out)
    model.compile(optimizer=dropcore.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # statistics and scales far from the identity: a missed fold shows
        if isinstance(layer, BatchNormalization):
            c = layer.weights["gamma"].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.uniform(-0.5, 0.5, c), rng.uniform(-0.5, 0.5, c),
                               rng.uniform(0.5, 2.0, c)])
        elif "bias" in layer.weights:
            layer.weights["bias"][...] = rng.uniform(-0.3, 0.3, layer.weights["bias"].shape)
    return model


def _x(model, n, seed=1):
    return np.random.default_rng(seed).standard_normal((n,) + model.input_shape[1:]).astype(np.float32)


def _unfused(model, x):
    return predict_outputs(model._plan, get_ops("reference"), x, 256)


def _check(model, steps, n=9):
    """The program's steps are ``steps``; it equals the unfused forward, before and after training, and so does a
    Predictor's (folded once, on read-only weights)."""
    program = model._inference_program()
    assert program.steps == steps
    x = _x(model, n)
    for batch_size in (None, 4, 1):
        np.testing.assert_allclose(model.predict(x, batch_size=batch_size), _unfused(model, x), rtol=RTOL, atol=ATOL)
    y = np.arange(n) % model.output_shape[-1]
    before = model.predict(x)
    for _ in range(2):
        model.train_on_batch(x, y)
    after = model.predict(x)
    assert model._inference_program() is program and not np.allclose(before, after, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(after, _unfused(model, x), rtol=RTOL, atol=ATOL)
    predictor = dropcore.Predictor(model)
    assert predictor._inference.program().steps == steps
    np.testing.assert_allclose(predictor.predict(x, batch_size=3), _unfused(model, x), rtol=RTOL, atol=ATOL)
    return program


def _conv_bn(h, filters, kernel=3, strides=1, use_bias=False, dilation_rate=1):
    h = Conv2D(filters, kernel, strides, padding="same", use_bias=use_bias, dilation_rate=dilation_rate)(h)
    return BatchNormalization()(h)


POOL = ["conv2d+batch_norm+max_pool2d"] if cython_ops.HAVE_FAST_GEMM else ["conv2d+batch_norm", "max_pool2d"]


@pytest.mark.parametrize("use_bias", [False, True])
def test_batch_norm_folds_into_the_convolution_and_dense_before_it(use_bias):
    dropcore.set_random_seed(1)
    inp = Input((10, 10, 3))
    h = ReLU()(_conv_bn(inp, 8, use_bias=use_bias))  # the ReLU after the norm goes into the folded kernel
    h = MaxPooling2D(2)(ReLU()(_conv_bn(h, 12, use_bias=use_bias)))
    h = _conv_bn(h, 6, kernel=1, use_bias=use_bias)  # no activation after it
    h = Dense(16, use_bias=use_bias)(Flatten()(h))
    out = Dense(4, activation="softmax")(ReLU()(BatchNormalization()(h)))
    model = _compiled(inp, out)
    program = _check(model, ["conv2d+batch_norm", *POOL, "conv2d+batch_norm", "reshape", "dense+batch_norm",
                             "dense", "softmax"])
    assert [r for r, _, _ in program.fused].count("kernel->batch_norm (folded)") == 4


def test_dilated_convolution_folds_and_follows_training():
    dropcore.set_random_seed(2)
    inp = Input((9, 9, 2))
    h = ReLU()(_conv_bn(inp, 5, use_bias=True, dilation_rate=2))
    out = Dense(3, activation="softmax")(GlobalAveragePooling2D()(h))
    _check(_compiled(inp, out), ["conv2d+batch_norm", "global_avg_pool2d", "dense", "softmax"])


def test_batch_norm_stays_where_it_cannot_fold():
    """After an activation, after a value read twice, and first in the model: a step of its own."""
    dropcore.set_random_seed(3)
    inp = Input((8, 8, 2))
    a = BatchNormalization()(inp)
    h = BatchNormalization()(Conv2D(4, 3, padding="same", activation="relu")(a))
    c = Conv2D(4, 3, padding="same")(h)
    y = Add()([BatchNormalization()(c), ReLU()(c)])  # c has two readers: its norm cannot fold
    out = Dense(2, activation="softmax")(Flatten()(y))
    model = _compiled(inp, out)
    _check(model, ["batch_norm", "conv2d", "batch_norm", "conv2d", "batch_norm", "relu", "add", "reshape", "dense",
                   "softmax"])
    assert all(rule != "kernel->batch_norm (folded)" for rule, _, _ in model._inference_program().fused)


def _block(h, filters, strides=1, norm=True):
    """A ResNet basic block: conv-bn-relu, conv-bn, + the shortcut (a 1x1 projection at a new size), relu."""
    def conv(t, f, k, s):
        t = Conv2D(f, k, s, padding="same", use_bias=not norm)(t)
        return BatchNormalization()(t) if norm else t

    r = conv(ReLU()(conv(h, filters, 3, strides)), filters, 3, 1)
    short = h if strides == 1 and h.shape[-1] == filters else conv(h, filters, 1, strides)
    return ReLU()(Add()([r, short]))


@pytest.mark.parametrize("norm", [False, True])
def test_residual_add_and_relu_run_in_the_convolution_step(norm):
    dropcore.set_random_seed(4)
    inp = Input((12, 12, 3))
    h = _block(_block(ReLU()(Conv2D(8, 3, padding="same")(inp)), 8, norm=norm), 12, strides=2, norm=norm)
    out = Dense(5, activation="softmax")(GlobalAveragePooling2D()(h))
    model = _compiled(inp, out, seed=5)
    c = "conv2d+batch_norm" if norm else "conv2d"
    # the projection shortcut (the block's last conv in the graph) runs before the add's step, which the first
    # operand's convolution takes
    _check(model, ["conv2d", c, f"{c}+add+relu", c, c, f"{c}+add+relu", "global_avg_pool2d", "dense", "softmax"])
    assert [r for r, _, _ in model._inference_program().fused].count("conv->add (residual)") == 2


class Halve(dropcore.layers.Layer):
    """A layer with no lowering of its own: programs run its forward on the NumPy reference."""

    def forward(self, ops, x, ctx):
        return x * np.float32(0.5), lambda dy: dy * np.float32(0.5)


def test_residual_add_as_the_model_output_and_before_a_layer_without_a_kernel():
    for seed, after in ((5, None), (6, Halve())):
        dropcore.set_random_seed(seed)
        inp = Input((6, 6, 4))
        out = Add()([Conv2D(4, 3, padding="same")(inp), inp])
        model = _regression(inp, out if after is None else after(out))
        program = model._inference_program()
        assert program.steps == (["conv2d+add"] if after is None else ["conv2d+add", "halve"])
        assert program.uncompiled == ([] if after is None else ["halve"])
        x = _x(model, 5)
        for batch_size in (None, 2):
            np.testing.assert_allclose(model.predict(x, batch_size=batch_size), _unfused(model, x), rtol=RTOL,
                                       atol=ATOL)


def _regression(inp, out):
    model = dropcore.Model(inp, out)
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_uncompiled_lists_the_steps_running_numpy():
    dropcore.set_random_seed(7)
    inp = Input((6, 6, 2))
    model = _regression(inp, Dense(2)(Flatten()(Conv2D(4, 3, activation="relu")(inp))))
    program = model._inference_program()
    assert program.steps == ["conv2d", "reshape", "dense"] and program.uncompiled == []
    halve = Halve()
    model = _regression(inp, Dense(2)(Flatten()(halve(Conv2D(4, 3)(inp)))))
    program = model._inference_program()
    assert program.uncompiled == ["halve"] and program.uncompiled_layers == [("halve", halve.name)]


def test_an_activation_layer_goes_into_the_folded_kernel_before_it():
    """conv -> batch norm -> tanh (an Activation layer): one step; the same with an activation the kernels apply
    after themselves."""
    from dropcore.layers import Activation

    dropcore.set_random_seed(8)
    inp = Input((8, 8, 3))
    h = Activation("tanh")(_conv_bn(inp, 6))
    h = Activation("sigmoid")(Dense(7)(Flatten()(h)))
    model = _compiled(inp, Dense(3, activation="softmax")(h))
    program = _check(model, model._inference_program().steps)
    assert [r for r, _, _ in program.fused] == ["kernel->batch_norm (folded)", "linear kernel->activation",
                                                "linear kernel->activation"]
    assert "conv2d+batch_norm" in program.steps and "batch_norm" not in program.steps


@pytest.mark.parametrize("multiplier", [1, 2])
def test_batch_norm_folds_into_a_depthwise_convolution(multiplier):
    """DepthwiseConv2D's kernel is (kh, kw, C, multiplier), output channel c * multiplier + m: the fold scales the
    kernel's last two axes flattened."""
    from dropcore.layers import DepthwiseConv2D

    dropcore.set_random_seed(9)
    inp = Input((8, 8, 3))
    h = ReLU()(BatchNormalization()(DepthwiseConv2D(3, padding="same", depth_multiplier=multiplier,
                                                    use_bias=False)(inp)))
    model = _compiled(inp, Dense(3, activation="softmax")(Flatten()(h)))
    program = _check(model, model._inference_program().steps)
    assert program.fused[0][0] == "kernel->batch_norm (folded)" and "batch_norm" not in program.steps



@pytest.mark.parametrize("make, fused", [
    (lambda: LeakyReLU(0.1), True), (lambda: ELU(0.7), True), (lambda: ReLU(negative_slope=0.2), True),
    # three parameters (Keras's clipped ReLU): not what a kernel's epilogue takes, so a step of its own
    (lambda: ReLU(max_value=2.0, negative_slope=0.1, threshold=0.5), False)])
def test_an_activation_layer_with_a_parameter_goes_into_the_kernel_with_it(make, fused):
    """conv -> batch norm -> LeakyReLU(0.1) / ELU(0.7), then dense -> the same: each kernel applies the activation
    with the layer's parameter, and the answers equal the unfused forward's."""
    dropcore.set_random_seed(11)
    inp = Input((8, 8, 3))
    h = make()(_conv_bn(inp, 6))
    h = make()(Dense(7)(Flatten()(h)))
    model = _compiled(inp, Dense(3, activation="softmax")(h))
    own = [] if fused else ["re_lu"]  # the layer's own forward, as a step
    program = _check(model, ["conv2d+batch_norm", *own, "reshape", "dense", *own, "dense", "softmax"])
    assert [r for r, _, _ in program.fused].count("linear kernel->activation") == (2 if fused else 0)
