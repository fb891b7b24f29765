"""The model zoo: reference architectures, dropout overrides and placements, JSON descriptions."""
import json

import numpy as np
import pytest

import dropcore
from dropcore import zoo
from dropcore.constraints import MaxNorm
from dropcore.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D


def kinds(model):
    return [type(la).__name__ for la in model.layers]


def rates(model):
    return [la.rate for la in model.layers if isinstance(la, Dropout)]


@pytest.mark.parametrize("name, shape, params, layers", [
    ("mnist_cnn", (28, 28, 1), 1_199_882,  # the Keras MNIST example's count
     ["Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense"]),
    ("cifar_cnn", (32, 32, 3), 631_370,
     ["Conv2D", "MaxPooling2D", "Dropout", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout",
      "Dense"]),
    ("lenet5", (28, 28, 1), 61_706,
     ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense", "Dense"]),
    ("mlp", (60,), 5_552, ["Dropout", "Dense", "Dense", "Dense"]),  # the sonar tutorial, 2-way softmax
])
def test_reference_architectures(name, shape, params, layers):
    model = zoo.build(name, shape, 10 if name != "mlp" else 2)
    assert kinds(model) == layers
    assert model.count_params() == params
    assert model.input_shape == (None,) + shape
    assert model.output_shape == (None, 10 if name != "mlp" else 2)
    assert model.layers[-1].activation == "softmax"


def test_reference_rates_and_shapes():
    m = zoo.mnist_cnn()
    assert rates(m) == [0.25, 0.5]
    convs = [la for la in m.layers if isinstance(la, Conv2D)]
    assert [(c.filters, c.kernel_size) for c in convs] == [(32, (3, 3)), (64, (3, 3))]
    assert [la.units for la in m.layers if isinstance(la, Dense)] == [128, 10]
    assert rates(zoo.cifar_cnn()) == [0.5, 0.5, 0.5]
    assert rates(zoo.lenet5()) == []
    lenet_conv = next(la for la in zoo.lenet5().layers if isinstance(la, Conv2D))
    assert lenet_conv.padding == "same" and lenet_conv.kernel_size == (5, 5)
    mlp = zoo.mlp((60,))
    assert rates(mlp) == [0.2]
    hidden = [la for la in mlp.layers if isinstance(la, Dense)][:2]
    assert [d.units for d in hidden] == [60, 30]
    assert all(isinstance(d.kernel_constraint, MaxNorm) and d.kernel_constraint.max_value == 3 for d in hidden)
    assert kinds(zoo.mlp((8, 8, 1), 10))[:2] == ["Flatten", "Dropout"]  # images are flattened first


def test_dropout_override_replaces_or_removes():
    assert rates(zoo.mnist_cnn(dropout=0.3)) == [0.3, 0.3]
    no_drop = zoo.cifar_cnn(dropout=0)
    assert rates(no_drop) == [] and kinds(no_drop).count("MaxPooling2D") == 2
    assert zoo.cifar_cnn(dropout=0).count_params() == zoo.cifar_cnn().count_params()


def test_placements():
    m = zoo.mnist_cnn((8, 8, 1), placement=["visible"])
    assert kinds(m)[0] == "Dropout" and rates(m) == [0.2]
    m = zoo.mnist_cnn((8, 8, 1), placement=("visible", "conv", "dense"))
    assert rates(m) == [0.2, 0.25, 0.5]
    assert kinds(m) == ["Dropout", "Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout",
                        "Dense"]
    m = zoo.lenet5(placement="conv", dropout=0.1)
    assert kinds(m) == ["Conv2D", "MaxPooling2D", "Dropout", "Conv2D", "MaxPooling2D", "Dropout", "Flatten",
                        "Dense", "Dense", "Dense"]
    assert rates(m) == [0.1, 0.1]
    assert rates(zoo.mlp((10,), placement=["dense"])) == [0.5, 0.5]
    assert rates(zoo.mnist_cnn(placement=[])) == []


def test_same_seed_same_initial_weights_whatever_the_dropout():
    dropcore.set_random_seed(3)
    a = zoo.mnist_cnn((8, 8, 1), placement=[]).get_weights()
    dropcore.set_random_seed(3)
    b = zoo.mnist_cnn((8, 8, 1), placement=["visible", "conv", "dense"]).get_weights()
    assert len(a) == len(b) == 8
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize("call, match", [
    (lambda: zoo.lenet5((8, 8, 1)), r"lenet5: Invalid value for `input_shape`: expected images of at least 12x12"),
    (lambda: zoo.cifar_cnn((28, 28)), r"expected \(height, width, channels\) images"),
    (lambda: zoo.mnist_cnn(dropout=1.0), r"Invalid value for `dropout`: expected a float in \[0.0, 1.0\)"),
    (lambda: zoo.mnist_cnn(placement=["input"]), r"Invalid value for `placement`"),
    (lambda: zoo.mlp((10,), placement=["conv"]), r"mlp: Invalid value for `placement`"),
    (lambda: zoo.mlp((10,), num_classes=1), r"Invalid value for `num_classes`"),
    (lambda: zoo.build("resnet", (8, 8, 1), 10), r"Invalid value for `model`: expected one of \('mnist_cnn'"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_zoo_models_train(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 12, 12, 1), dtype=np.float32), rng.integers(0, 3, 32)
    for name in ("mnist_cnn", "cifar_cnn", "lenet5", "mlp"):
        dropcore.set_random_seed(0)
        shape = (12, 12, 3) if name == "cifar_cnn" else (12, 12, 1)
        xs = np.repeat(x, 3, axis=3) if name == "cifar_cnn" else x
        model = zoo.build(name, shape, 3)
        model.compile(zoo.make_optimizer(None, None, name), "sparse_categorical_crossentropy", ["accuracy"])
        h = model.fit(xs, y, epochs=2, batch_size=16, verbose=0, seed=0)
        assert np.isfinite(h.history["loss"]).all() and len(h.epoch) == 2


def test_make_optimizer():
    opt = zoo.make_optimizer(None, None, "mlp")
    assert isinstance(opt, dropcore.optimizers.SGD) and opt.learning_rate == 0.1 and opt.momentum == 0.9
    assert isinstance(zoo.make_optimizer(None, None, "mnist_cnn"), dropcore.optimizers.Adam)
    opt = zoo.make_optimizer("sgd", 0.05, "mnist_cnn", momentum=0.5)
    assert (opt.learning_rate, opt.momentum) == (0.05, 0.5)
    assert zoo.make_optimizer("rmsprop", 0.002).learning_rate == 0.002
    with pytest.raises(ValueError, match="Invalid value for `momentum`"):
        zoo.make_optimizer("adam", momentum=0.9)
    with pytest.raises(ValueError, match="Invalid value for `learning_rate`"):
        zoo.make_optimizer("adam", -1.0)


# --- JSON descriptions --------------------------------------------------------------------------------------
DESC = {"name": "tiny", "input_shape": [8, 8, 1], "layers": [
    {"class_name": "Conv2D", "config": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
    {"class_name": "MaxPooling2D", "config": {"pool_size": 2}},
    {"class_name": "Dropout", "config": {"rate": 0.25}},
    {"class_name": "Flatten"},
    {"class_name": "Dense", "config": {"units": 8, "activation": "relu",
                                       "kernel_constraint": {"class_name": "MaxNorm", "config": {"max_value": 2}}}},
    {"class_name": "Dense", "config": {"units": 10, "activation": "softmax"}}]}


def test_description_builds_the_model(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(DESC))
    model = zoo.load_description(path)
    assert model.name == "tiny"
    assert [type(la) for la in model.layers] == [Conv2D, MaxPooling2D, Dropout, Flatten, Dense, Dense]
    assert model.output_shape == (None, 10) and model.count_params() == 40 + 8 * 36 + 8 + 90
    assert model.layers[4].kernel_constraint.max_value == 2.0
    assert rates(zoo.from_description(DESC, dropout=0.4)) == [0.4]
    assert Dropout not in [type(la) for la in zoo.from_description(DESC, dropout=0).layers]
    no_shape = {k: v for k, v in DESC.items() if k != "input_shape"}
    assert zoo.from_description(no_shape, input_shape=(10, 10, 1)).input_shape == (None, 10, 10, 1)


@pytest.mark.parametrize("desc, input_shape, match", [
    ({"layers": []}, (8, 8, 1), r'expected a JSON object with a non-empty "layers" list'),
    ({"layers": [{"class_name": "Lambda"}]}, (8, 8, 1), r"layers\[0\] has class_name 'Lambda'; expected one of"),
    ({"layers": [{"class_name": "Dense", "config": {"unit": 3}}]}, (4,), r"layers\[0\] \(Dense\).*'unit'"),
    ({"layers": [{"class_name": "Dense", "config": {"units": 0}}]}, (4,), r"layers\[0\] \(Dense\).*`units`"),
    ({"layers": [{"class_name": "Dense", "units": 3}]}, (4,), r"layers\[0\] is .*expected an object like"),
    (DESC, (28, 28, 1), r"input_shape \[8, 8, 1\] does not match the data's samples of shape \[28, 28, 1\]"),
    ({"layers": [{"class_name": "Flatten"}]}, None, r'no "input_shape"'),
])
def test_description_errors(desc, input_shape, match):
    with pytest.raises(ValueError, match=match):
        zoo.from_description(desc, input_shape)


def test_description_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model description file"):
        zoo.load_description(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad.json: not valid JSON"):
        zoo.load_description(bad)


LAYER_LIST = [
    {"class": "Conv2D", "config": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
    {"class": "MaxPooling2D", "config": {"pool_size": 2}},
    {"class": "Dropout", "config": {"rate": 0.25}},
    {"class": "Flatten"},
    {"class": "Dense", "config": {"units": 10, "activation": "softmax"}}]


def test_from_json_takes_a_list_a_dict_or_a_file(tmp_path):
    from_list = zoo.from_json(LAYER_LIST, input_shape=(8, 8, 1))
    assert [type(la) for la in from_list.layers] == [Conv2D, MaxPooling2D, Dropout, Flatten, Dense]
    assert from_list.output_shape == (None, 10) and from_list.count_params() == 40 + 4 * 9 * 10 + 10
    assert rates(from_list) == [0.25]
    path = tmp_path / "net.json"
    path.write_text(json.dumps({"input_shape": [8, 8, 1], "layers": LAYER_LIST}))
    from_file = zoo.from_json(path)
    from_dict = zoo.from_json({"input_shape": [8, 8, 1], "layers": LAYER_LIST}, dropout=0)
    assert kinds(from_file) == kinds(from_list) and from_file.input_shape == (None, 8, 8, 1)
    assert Dropout not in [type(la) for la in from_dict.layers]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(LAYER_LIST))  # a bare list in a file takes its input shape from the caller
    assert kinds(zoo.from_json(bare, input_shape=(8, 8, 1))) == kinds(from_list)
    with pytest.raises(ValueError, match=r'bare.json: no "input_shape" and no data to take it from'):
        zoo.from_json(bare)
    x = np.random.default_rng(0).random((3, 8, 8, 1), np.float32)
    probs = from_file.predict(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("desc, match", [
    ([{"class": "Lambda", "config": {"function": "os.system"}}],
     r"layers\[0\] has class_name 'Lambda'; expected one of"),
    ([{"class": "Dense", "config": {"units": 3}}, "Flatten"], r"layers\[1\] is 'Flatten'; expected an object like"),
    ("{not a path}.json", r"no such model description file"),
    (42, r"Invalid value for `path_or_dict`.*Received: path_or_dict='int'"),
])
def test_from_json_refuses_unknown_classes_and_bad_input(desc, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        zoo.from_json(desc, input_shape=(8, 8, 1))
    assert "Lambda" not in zoo.LAYER_CLASSES


def test_cnn_geometry_on_small_inputs():
    """mnist_cnn fits the 8x8 digits (8 -> 6 -> 4 -> 2); the others refuse with the size they need."""
    model = zoo.mnist_cnn((8, 8, 1), 10)
    assert model.count_params() == 320 + 18_496 + (2 * 2 * 64) * 128 + 128 + 1290
    with pytest.raises(ValueError, match=r"lenet5: Invalid value for `input_shape`: expected images of at least "
                                         r"12x12 pixels"):
        zoo.lenet5((8, 8, 1))
    with pytest.raises(ValueError, match=r"cifar_cnn: .*at least 10x10 pixels"):
        zoo.cifar_cnn((8, 8, 3))
    assert zoo.lenet5((12, 12, 1)).output_shape == (None, 10)
    assert zoo.cifar_cnn((10, 10, 3)).output_shape == (None, 10)


@pytest.mark.parametrize("name, shape", [("mnist_cnn", (28, 28, 1)), ("cifar_cnn", (32, 32, 3)),
                                         ("lenet5", (28, 28, 1))])
def test_kinds_change_only_the_convolution_place(name, shape):
    """Each kind puts its layer after every block's pooling (maxpool: as the pooling); the rest and the initial
    weights stay as with plain Dropout."""
    from dropcore.layers import (AlphaDropout, DropBlock2D, GaussianDropout, MaxPoolingDropout2D,
                                 SpatialDropout2D)

    after = {"dropout": Dropout, "spatial": SpatialDropout2D, "gaussian": GaussianDropout, "alpha": AlphaDropout,
             "dropblock": DropBlock2D}
    dropcore.set_random_seed(4)
    plain = zoo.build(name, shape, 10, dropout=0.3, placement=["conv", "dense"])
    for kind in zoo.KINDS:
        dropcore.set_random_seed(4)
        model = zoo.build(name, shape, 10, dropout=0.3, placement=["conv", "dense"], kind=kind)
        for a, b in zip(plain.get_weights(), model.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        expected = []
        for prev, layer in zip([None] + plain.layers[:-1], plain.layers):
            t = type(layer)
            if t is Dropout and type(prev) is MaxPooling2D:  # the convolution place
                if kind == "maxpool":
                    expected[-1] = MaxPoolingDropout2D
                    continue
                t = after[kind]
            expected.append(t)
        assert [type(la) for la in model.layers] == expected
        assert {la.rate for la in model.layers if hasattr(la, "rate")} == {0.3}
        assert type(model.layers[-2]) is Dropout  # the dense place keeps plain dropout


def test_kind_is_checked():
    with pytest.raises(ValueError, match=r"Invalid value for `kind`: expected one of \('dropout', 'spatial'"):
        zoo.build("mnist_cnn", (28, 28, 1), 10, kind="block")
    with pytest.raises(ValueError, match=r"Invalid value for `kind`: expected 'dropout' \(the MLP has no conv"):
        zoo.build("mlp", (5,), 2, kind="gaussian")
