"""dropcore -> ONNX -> onnxruntime agrees with model.predict; dropcore -> ONNX -> dropcore keeps weights and answers."""
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX converters need onnx (pip install 'dropcore[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="running exported models needs onnxruntime (dropcore[onnx])")

import dropcore  # noqa: E402
import dropcore.onnx as dx  # noqa: E402
import dropcore.zoo  # noqa: E402
from dropcore import layers as L  # noqa: E402

BATCHES = (1, 7, 256)


def session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def randomize(model, seed=0):
    """Non-trivial weights everywhere: batch normalization's moving statistics too (variance > 0)."""
    rng = np.random.default_rng(seed)
    weights = []
    for layer in model.layers:
        for name, w in layer.weights.items():
            if name == "moving_variance":
                weights.append(rng.uniform(0.5, 2.0, w.shape))
            elif name in ("gamma", "moving_mean", "beta", "bias"):
                weights.append(rng.normal(0, 0.5, w.shape))
            else:
                weights.append(rng.normal(0, 1.0 / np.sqrt(max(1, w.size // w.shape[-1])), w.shape))
    model.set_weights([w.astype(np.float32) for w in weights])
    return model


def data(model, n, seed=1):
    return np.random.default_rng(seed).normal(size=(n,) + model.input_shape[1:]).astype(np.float32)


def image_model(body, shape=(9, 10, 3)):
    x = L.Input(shape)
    return dropcore.Model(x, body(x))


def _convs(x):
    h = L.Conv2D(4, 3, strides=2, padding="same", activation="tanh")(x)
    h = L.Conv2D(6, 3, padding="same", groups=2, dilation_rate=(1, 2), activation="relu")(h)  # ONNX Conv group=2
    h = L.Conv2D(5, 3, padding="same", dilation_rate=2, activation="sigmoid")(h)
    h = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, activation="relu", dilation_rate=2)(h)
    h = L.SeparableConv2D(6, 2, depth_multiplier=2, activation="selu")(h)
    h = L.Conv2D(3, 1, use_bias=False, activation="softmax")(h)
    return L.Dense(4, activation="softmax")(L.Flatten()(h))


def _pools(x):
    a = L.MaxPooling2D(3, strides=2, padding="same")(x)
    b = L.AveragePooling2D(3, strides=2, padding="same")(x)  # edge windows average fewer cells
    h = L.Concatenate()([a, b])
    h = L.AveragePooling2D(2)(L.MaxPooling2D(2, strides=1)(h))
    return L.Flatten()(h)


def _norms(x):
    h = L.BatchNormalization(epsilon=1e-2)(L.Conv2D(4, 3)(x))
    h = L.ELU(0.5)(L.LeakyReLU(0.2)(h))
    f = L.Flatten()(h)
    f = L.BatchNormalization()(f)  # on a flattened NCHW tensor: its parameters reordered
    f = L.Rescaling([float(i) / 10 for i in range(f.shape[0])], 0.5)(f)
    d = L.Dense(f.shape[0])(L.Dropout(0.3)(L.Flatten()(L.Conv2D(4, 3)(x))))
    return L.Softmax()(L.Dense(3)(L.Add()([f, d])))  # Add of two flat orders: one put back for the other


def _globals(x):
    h = L.Conv2D(6, 3, activation="relu")(L.Rescaling(1 / 255.0, [0.1, -0.2, 0.3])(x))
    a = L.GlobalAveragePooling2D()(h)
    b = L.GlobalMaxPooling2D()(h)
    c = L.Flatten()(L.GlobalAveragePooling2D(keepdims=True)(h))
    return L.Dense(2, activation="sigmoid")(L.Concatenate()([a, b, c]))


def _shapes(x):
    h = L.ZeroPadding2D(((1, 2), (0, 3)))(x)
    h = L.Conv2D(4, 3, activation="relu")(h)
    r = L.Add()([h, L.Conv2D(4, 3, padding="same")(h), L.ReLU()(h)])
    r = L.Concatenate(axis=1)([r, h])  # along the height
    r = L.Reshape((-1, 4))(r)  # (rows, channels): rank 2
    r = L.BatchNormalization()(r)  # channels last on rank 2: transposed around ONNX's
    r = L.Dense(5, activation="tanh")(r)
    r = L.Reshape((r.shape[0] // 2, 2, 5))(r)  # back to an image
    r = L.Dense(3)(r)  # Dense on the channels of an image
    r = L.Activation("softmax")(r)
    return L.Activation("linear")(r)


def _dropouts(x):
    h = L.SpatialDropout2D(0.3)(L.Conv2D(4, 3)(x))
    h = L.DropBlock2D(0.2, 2)(h)
    h = L.GaussianDropout(0.2)(L.GaussianNoise(0.1)(h))
    h = L.AlphaDropout(0.1)(L.Dropout(0.5, noise_shape=(None, 1, 1, 4))(h))
    return L.Dense(3)(L.Dropout(0.5)(L.Flatten()(h)))


def _weighted_pool(x):
    """MaxPoolingDropout2D's inference: probabilistic weighted pooling, "same" windows at the edges included."""
    h = L.MaxPoolingDropout2D(0.3, pool_size=3, strides=2, padding="same")(x)
    return L.Flatten()(L.MaxPoolingDropout2D(0.5)(h))


LAYER_MODELS = {"convs": _convs, "pools": _pools, "norms": _norms, "globals": _globals, "shapes": _shapes,
                "dropouts": _dropouts, "weighted_pool": _weighted_pool}
EXPORT_ONLY = {"weighted_pool"}  # its graph (Slice, TopK, Where) is beyond what the importer reads


def all_models():
    for name in dropcore.zoo.names():
        shape = (10,) if name == "mlp" else (28, 28, 1)
        yield name, lambda name=name, shape=shape: dropcore.zoo.build(name, shape, 5)
    for name, body in LAYER_MODELS.items():
        yield name, lambda body=body: image_model(body)


MODELS = dict(all_models())


def test_every_exportable_layer_is_covered():
    covered = {type(la).__name__ for make in MODELS.values() for la in make().layers}
    assert set(dropcore.layers.LAYERS) <= covered


@pytest.mark.parametrize("name", MODELS)
def test_onnxruntime_agrees_with_predict(name):
    model = randomize(MODELS[name]())
    proto = dx.to_proto(model)
    assert proto.ir_version == 8 and proto.opset_import[0].version == 17
    run = session(proto)
    for n in BATCHES:
        x = data(model, n)
        got = run.run(["output"], {"input": x})[0]
        assert got.shape == (n,) + model.output_shape[1:]
        np.testing.assert_allclose(got, model.predict(x), rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", sorted(set(MODELS) - EXPORT_ONLY))
def test_round_trip_keeps_weights_and_answers(name, tmp_path):
    model = randomize(MODELS[name]())
    path = tmp_path / "m.onnx"
    dx.export(model, path)
    back = dx.load(path)
    assert back.input_shape == model.input_shape and back.output_shape == model.output_shape
    original, loaded = model.get_weights(), back.get_weights()
    assert len(original) == len(loaded)
    for a, b in zip(original, loaded):
        np.testing.assert_array_equal(a, b)
    for n in BATCHES:
        x = data(model, n)
        np.testing.assert_allclose(back.predict(x), model.predict(x), rtol=0, atol=1e-5)


def test_one_channel_per_group_comes_back_as_depthwise(tmp_path):
    """Conv2D(groups=C) and DepthwiseConv2D export alike (ONNX Conv, group=C): the import reads it back as the
    DepthwiseConv2D with the same answers, its kernel the grouped one reshaped."""
    model = randomize(image_model(lambda x: L.Conv2D(6, 3, padding="same", groups=3, dilation_rate=2)(x)))
    dx.export(model, tmp_path / "m.onnx")
    back = dx.load(tmp_path / "m.onnx")
    assert [type(la).__name__ for la in back.layers][-1] == "DepthwiseConv2D"
    np.testing.assert_array_equal(back.layers[-1].weights["depthwise_kernel"],
                                  model.layers[-1].weights["kernel"].reshape(3, 3, 3, 2))
    x = data(model, 4)
    np.testing.assert_allclose(back.predict(x), model.predict(x), rtol=0, atol=1e-5)


def test_flatten_then_dense_needs_no_runtime_transpose():
    model = randomize(dropcore.zoo.build("mnist_cnn", (28, 28, 1), 10))
    ops = [n.op_type for n in dx.to_proto(model).graph.node]
    assert ops.count("Transpose") == 1  # the input's, once
    assert "Gather" not in ops


def test_mc_dropout_export_drives_onnx_dropout(tmp_path):
    model = randomize(dropcore.zoo.build("mnist_cnn", (28, 28, 1), 10))
    proto = dx.to_proto(model, mc_dropout=True)
    drops = [n for n in proto.graph.node if n.op_type == "Dropout"]
    ratios = {init.name: onnx.numpy_helper.to_array(init) for init in proto.graph.initializer}
    assert sorted(float(ratios[n.input[1]]) for n in drops) == [0.25, 0.5]
    assert all(n.input[2] == "training_mode" for n in drops)
    # onnxruntime's optimizer removes Dropout nodes whatever training_mode says: keep them
    run = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"],
                               disabled_optimizers=["EliminateDropout"])
    x = data(model, 7)
    off = run.run(["output"], {"input": x, "training_mode": np.array(False)})[0]
    np.testing.assert_allclose(off, model.predict(x), rtol=0, atol=1e-4)
    samples = np.stack([run.run(["output"], {"input": x, "training_mode": np.array(True)})[0] for _ in range(8)])
    assert samples.std(axis=0).max() > 1e-3  # the masks differ between runs
    # imported back, the Dropout layers keep their rates and Monte-Carlo dropout works
    dx.export(model, tmp_path / "mc.onnx", mc_dropout=True)
    back = dx.load(tmp_path / "mc.onnx")
    assert [la.rate for la in back.layers if type(la) is L.Dropout] == [0.25, 0.5]
    mean, std = back.predict(x, mc_samples=5, seed=3)
    assert std.max() > 0


@pytest.mark.parametrize("layer", [lambda: L.SpatialDropout2D(0.2), lambda: L.GaussianDropout(0.2),
                                   lambda: L.Dropout(0.2, noise_shape=(None, 1, 1, 4)),
                                   lambda: L.DropBlock2D(0.2, 2), lambda: L.AlphaDropout(0.2),
                                   lambda: L.GaussianNoise(0.2)])
def test_mc_dropout_refuses_noise_onnx_cannot_draw(layer):
    la = layer()
    model = image_model(lambda x: L.Flatten()(la(L.Conv2D(4, 3)(x))))
    dx.to_proto(model)  # the identity without Monte-Carlo dropout
    with pytest.raises(dx.OnnxExportError, match=f"layer '{la.name}' \\({type(la).__name__}\\)"):
        dx.to_proto(model, mc_dropout=True)


def test_weighted_pool_exports_but_does_not_import_back(tmp_path):
    model = image_model(_weighted_pool)
    dx.export(model, tmp_path / "w.onnx")
    with pytest.raises(dx.OnnxImportError, match=r"\(TopK, opset 17\): op type not supported"):
        dx.load(tmp_path / "w.onnx")
    la = model.layers[0]
    with pytest.raises(dx.OnnxExportError, match=f"layer '{la.name}' \\(MaxPoolingDropout2D\\)"):
        dx.to_proto(model, mc_dropout=True)


class Cube(L.Layer):
    """A layer of the user's own: no ONNX equivalent the exporter knows."""

    def forward(self, ops, x, ctx):
        return x ** 3, lambda dy: 3 * x ** 2 * dy


def test_layer_without_equivalent_is_named():
    la = Cube(name="cube")
    model = image_model(lambda x: L.Flatten()(la(x)))
    with pytest.raises(dx.OnnxExportError, match=r"layer 'cube' \(Cube\): no ONNX equivalent"):
        dx.export(model, "never-written.onnx")


def test_bad_opset_is_refused():
    model = dropcore.zoo.build("mlp", (4,), 2)
    with pytest.raises(dx.OnnxExportError, match="opset"):
        dx.to_proto(model, opset=11)
    assert dx.to_proto(model, opset=13).opset_import[0].version == 13


def test_import_dropcore_does_not_import_onnx():
    code = "import sys, dropcore, dropcore.zoo; dropcore.zoo.build('mlp', (4,), 2); print('onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_without_onnx_the_converters_say_how_to_install_it():
    """The package and its CLI commands import without onnx; using a converter says what to install."""
    code = ("import sys, argparse; sys.modules['onnx'] = None\n"
            "import dropcore.onnx\nfrom dropcore.onnx.commands import add_commands\n"
            "p = argparse.ArgumentParser(); add_commands(p.add_subparsers())\n"
            "try:\n dropcore.onnx.load\nexcept ImportError as e:\n print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install "dropcore[onnx]"' in out


def test_onnx_inside_dropcore_onnx_is_the_real_package():
    import importlib

    export_module = importlib.import_module("dropcore.onnx.export")  # the module, not the function it exports
    assert export_module.onnx is onnx and hasattr(export_module.onnx, "checker")
