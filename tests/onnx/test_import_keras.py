"""Keras 3 (torch backend) -> ONNX (``model.export(format="onnx")``) -> dropcore agrees with Keras and onnxruntime.

Keras writes NHWC graphs: Transposes around each convolution and pooling, Casts, the bias as a separate Add and
batch normalization as Sub/Mul/Add; the importer absorbs the transposes and casts and folds the constants."""
import os
import warnings

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the ONNX converters need onnx (pip install 'dropcore[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="running ONNX models needs onnxruntime (dropcore[onnx])")
pytest.importorskip("torch", reason="Keras's ONNX export on its torch backend needs torch (dropcore[torch])")
os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras", reason="the Keras round trip needs keras (dropcore[keras])")

import dropcore.onnx as dx  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    if keras.backend.backend() != "torch":
        pytest.skip(f"Keras runs on {keras.backend.backend()}; this test exports through its torch backend")
    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((12, 12, 3)), layers.Conv2D(8, 3, activation="relu"), layers.BatchNormalization(),
        layers.MaxPooling2D(2), layers.Conv2D(6, 3, strides=2, padding="same"), layers.Dropout(0.3),
        layers.Flatten(), layers.Dense(16, activation="relu"), layers.Dense(4, activation="softmax")])
    bn = model.layers[1]
    rng = np.random.default_rng(0)
    bn.set_weights([rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.3, 8), rng.normal(0, 0.3, 8), rng.uniform(0.5, 2, 8)])
    model.predict(np.zeros((1, 12, 12, 3), np.float32), verbose=0)  # Keras exports called models only
    path = tmp_path_factory.mktemp("keras") / "k.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.export(str(path), format="onnx", verbose=False)
    return model, path


def test_keras_export_imports_and_agrees(exported):
    model, path = exported
    imported = dx.load(path)
    assert imported.input_shape == (None, 12, 12, 3)  # Keras's NHWC input taken as it is
    kinds = [type(la).__name__ for la in imported.layers]
    assert kinds.count("Conv2D") == 2 and "Transpose" not in kinds
    assert imported.layers[0].activation == "relu" and imported.layers[0].use_bias  # Conv + Add + Relu: one layer
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for n in (1, 7, 256):
        x = np.random.default_rng(n).normal(size=(n, 12, 12, 3)).astype(np.float32)
        got = imported.predict(x)
        np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=0, atol=1e-4)
        np.testing.assert_allclose(got, session.run(None, {name: x})[0], rtol=0, atol=1e-4)
