"""Built-in models (the classic dropout networks) and models built from a JSON description.

Each zoo function takes ``input_shape`` (channels-last, batch omitted), ``num_classes``, ``dropout`` and
``placement`` (and the CNNs ``kind``) and returns an uncompiled :class:`dropcore.Sequential`:

- ``dropout=None`` keeps the reference rates, a float in [0, 1) replaces every dropout rate, ``0`` removes the
  dropout layers (the same network without dropout);
- ``placement`` (``None``: the reference network's own places) chooses where dropout goes, any of
  ``"visible"`` (on the inputs), ``"conv"`` (after each convolution block, i.e. after its pooling) and
  ``"dense"`` (after each hidden dense layer). A place the reference network has no dropout at takes the rate of
  the dropout paper (Srivastava et al., 2014): 0.2 on the inputs, 0.25 after convolutions, 0.5 after dense layers;
- ``kind`` (CNNs) chooses the dropout at the ``"conv"`` place from :data:`KINDS`: ``Dropout`` (default),
  ``SpatialDropout2D``, ``GaussianDropout``, ``AlphaDropout`` or ``DropBlock2D`` after each block's pooling, or
  ``"maxpool"``: ``MaxPoolingDropout2D`` as the block's pooling. The other places always take ``Dropout``.

The layers are built in the same order whatever the dropout (dropout has no weights), so after
``dropcore.set_random_seed(s)`` every variant starts from the same initial weights.
"""
import json
import os

from . import constraints, optimizers
from . import layers as L
from .layers import registry
from .model import Sequential
from .serialization import CONSTRAINTS
from .validation import check_float, check_int, invalid

PLACES = ("visible", "conv", "dense")
DEFAULT_RATES = {"visible": 0.2, "conv": 0.25, "dense": 0.5}
#: the kinds of dropout a CNN's ``"conv"`` place can take (``kind=``); ``"maxpool"`` replaces the block's max
#: pooling by :class:`~dropcore.layers.MaxPoolingDropout2D` instead of adding a layer after it
KINDS = ("dropout", "spatial", "gaussian", "alpha", "dropblock", "maxpool")
#: DropBlock's block size in the zoo: 3 (or the map's side, when smaller), since the zoo's feature maps after pooling
#: are 5 to 15 pixels wide on MNIST and CIFAR-10 (the paper's 7 is for ImageNet's 14x14 to 56x56 maps)
BLOCK_SIZE = 3


def _check_shape(input_shape, name, images, min_size=1):
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise invalid("input_shape", "a tuple of positive ints", input_shape, name) from None
    if not shape or any(d < 1 for d in shape):
        raise invalid("input_shape", "a tuple of positive ints", input_shape, name)
    if images and len(shape) != 3:
        raise invalid("input_shape", "(height, width, channels) images", input_shape, name)
    if images and min(shape[:2]) < min_size:
        raise invalid("input_shape", f"images of at least {min_size}x{min_size} pixels", input_shape, name)
    return shape


def _resolve(name, dropout, placement, reference, allowed):
    """Map each place to its rate (0: no dropout there) from the reference rates and the overrides."""
    if dropout is not None:
        dropout = check_float(dropout, "dropout", 0.0, 1.0, high_open=True, where=name)
    if placement is None:
        places = {p for p, r in reference.items() if r > 0}
    else:
        if isinstance(placement, str):
            placement = [placement]
        try:
            places = set(placement)
        except TypeError:
            raise invalid("placement", f"None or a list of {allowed}", placement, name) from None
        bad = places - set(allowed)
        if bad:
            raise invalid("placement", f"None or a list of {allowed}", sorted(bad), name)
    rates = {}
    for p in allowed:
        if p not in places:
            rates[p] = 0.0
        elif dropout is not None:
            rates[p] = dropout
        else:
            rates[p] = reference.get(p) or DEFAULT_RATES[p]
    return rates


def _drop(rate):
    return [L.Dropout(rate)] if rate > 0 else []


def _check_kind(kind, name):
    if kind not in KINDS:
        raise invalid("kind", f"one of {KINDS}", kind, name)
    return kind


def _pool_drop(rate, kind, side):
    """A convolution block's 2x2 max pooling and the dropout of ``kind`` at ``rate`` after it (none at rate 0);
    ``side``: the smaller side of the pooled feature map, which DropBlock's blocks must fit in."""
    if rate == 0:
        return [L.MaxPooling2D(2)]
    if kind == "maxpool":  # dropout inside the pooling (Wu & Gu 2015), not after it
        return [L.MaxPoolingDropout2D(rate, pool_size=2)]
    after = {"dropout": L.Dropout, "spatial": L.SpatialDropout2D, "gaussian": L.GaussianDropout,
             "alpha": L.AlphaDropout, "dropblock": lambda r: L.DropBlock2D(r, min(BLOCK_SIZE, side))}[kind]
    return [L.MaxPooling2D(2), after(rate)]


def mnist_cnn(input_shape=(28, 28, 1), num_classes=10, dropout=None, placement=None, kind="dropout"):
    """The Keras MNIST example: Conv2D(32,3) → Conv2D(64,3) → MaxPool(2) → Dropout(.25) → Flatten →
    Dense(128) → Dropout(.5) → Dense(num_classes, softmax). Needs images of at least 6x6."""
    shape = _check_shape(input_shape, "mnist_cnn", images=True, min_size=6)
    classes = check_int(num_classes, "num_classes", 2, "mnist_cnn")
    r = _resolve("mnist_cnn", dropout, placement, {"conv": 0.25, "dense": 0.5}, PLACES)
    kind = _check_kind(kind, "mnist_cnn")
    return Sequential(
        [L.Input(shape)] + _drop(r["visible"]) + [
            L.Conv2D(32, 3, activation="relu"), L.Conv2D(64, 3, activation="relu")]
        + _pool_drop(r["conv"], kind, (min(shape[:2]) - 4) // 2)
        + [L.Flatten(), L.Dense(128, activation="relu")] + _drop(r["dense"])
        + [L.Dense(classes, activation="softmax")], name="mnist_cnn")


def cifar_cnn(input_shape=(32, 32, 3), num_classes=10, dropout=None, placement=None, kind="dropout"):
    """A small CIFAR-10 network with heavy dropout: [Conv2D(64,3) → MaxPool(2) → Dropout(.5)] x 2 → Flatten →
    Dense(256) → Dropout(.5) → Dense(num_classes, softmax). Needs images of at least 10x10."""
    shape = _check_shape(input_shape, "cifar_cnn", images=True, min_size=10)
    classes = check_int(num_classes, "num_classes", 2, "cifar_cnn")
    r = _resolve("cifar_cnn", dropout, placement, {"conv": 0.5, "dense": 0.5}, PLACES)
    kind = _check_kind(kind, "cifar_cnn")
    body = [L.Input(shape)] + _drop(r["visible"])
    side = min(shape[:2])
    for _ in range(2):
        side = (side - 2) // 2
        body += [L.Conv2D(64, 3, activation="relu")] + _pool_drop(r["conv"], kind, side)
    body += [L.Flatten(), L.Dense(256, activation="relu")] + _drop(r["dense"])
    return Sequential(body + [L.Dense(classes, activation="softmax")], name="cifar_cnn")


def lenet5(input_shape=(28, 28, 1), num_classes=10, dropout=None, placement=None, kind="dropout"):
    """LeNet-5 with ReLU and max pooling: Conv2D(6,5,same) → MaxPool(2) → Conv2D(16,5) → MaxPool(2) →
    Flatten → Dense(120) → Dense(84) → Dense(num_classes, softmax); no dropout unless ``placement`` asks for it.
    Needs images of at least 12x12."""
    shape = _check_shape(input_shape, "lenet5", images=True, min_size=12)
    classes = check_int(num_classes, "num_classes", 2, "lenet5")
    r = _resolve("lenet5", dropout, placement, {}, PLACES)
    kind = _check_kind(kind, "lenet5")
    return Sequential(
        [L.Input(shape)] + _drop(r["visible"])
        + [L.Conv2D(6, 5, padding="same", activation="relu")] + _pool_drop(r["conv"], kind, min(shape[:2]) // 2)
        + [L.Conv2D(16, 5, activation="relu")] + _pool_drop(r["conv"], kind, (min(shape[:2]) // 2 - 4) // 2)
        + [L.Flatten(), L.Dense(120, activation="relu")] + _drop(r["dense"])
        + [L.Dense(84, activation="relu")] + _drop(r["dense"])
        + [L.Dense(classes, activation="softmax")], name="lenet5")


def mlp(input_shape, num_classes=2, dropout=None, placement=None, kind="dropout"):
    """The classic tabular dropout tutorial: Dropout(.2) on the visible layer → Dense(60, relu, max_norm(3)) →
    Dense(30, relu, max_norm(3)) → Dense(num_classes, softmax). Image inputs are flattened first.
    Places: ``"visible"`` and ``"dense"`` (after each hidden layer, 0.5 unless ``dropout`` says otherwise)."""
    shape = _check_shape(input_shape, "mlp", images=False)
    classes = check_int(num_classes, "num_classes", 2, "mlp")
    r = _resolve("mlp", dropout, placement, {"visible": 0.2}, ("visible", "dense"))
    if kind != "dropout":
        raise invalid("kind", "'dropout' (the MLP has no convolution place for another kind)", kind, "mlp")
    body = [L.Input(shape)] + ([L.Flatten()] if len(shape) > 1 else []) + _drop(r["visible"])
    for units in (60, 30):
        body += [L.Dense(units, activation="relu", kernel_constraint=constraints.MaxNorm(3))] + _drop(r["dense"])
    return Sequential(body + [L.Dense(classes, activation="softmax")], name="mlp")


#: name -> (builder, a factory of the optimizer the reference trains it with)
MODELS = {
    "mnist_cnn": (mnist_cnn, lambda: optimizers.Adam()),
    "cifar_cnn": (cifar_cnn, lambda: optimizers.Adam()),
    "lenet5": (lenet5, lambda: optimizers.Adam()),
    "mlp": (mlp, lambda: optimizers.SGD(0.1, momentum=0.9)),
}


def names():
    """The built-in model names."""
    return tuple(MODELS)


def build(name, input_shape, num_classes, dropout=None, placement=None, kind="dropout"):
    """Build the zoo model ``name`` (see :data:`MODELS`) for data of ``input_shape`` and ``num_classes``;
    ``kind`` (one of :data:`KINDS`) is the dropout at the ``"conv"`` place of the CNNs."""
    if name not in MODELS:
        raise invalid("model", f"one of {names()} or a .json model description", name)
    return MODELS[name][0](input_shape, num_classes, dropout=dropout, placement=placement, kind=kind)


def default_optimizer(name):
    """The optimizer the reference trains zoo model ``name`` with (Adam; SGD(0.1, momentum 0.9) for mlp)."""
    if name not in MODELS:
        return optimizers.Adam()
    return MODELS[name][1]()


# --- JSON descriptions --------------------------------------------------------------------------------------
#: the layers a description may use: the registered ones that take one input (a description is a Sequential), by
#: class name; nothing else a file names is looked up
LAYER_CLASSES = tuple(name for name in registry.names() if registry.LAYERS[name].n_inputs == 1)


def _constraint(value, key, where):
    """A ``{"class_name": ..., "config": {...}}`` constraint (the form ``get_config`` writes) from the allow-list."""
    cls = CONSTRAINTS.get(value.get("class_name"))
    if cls is None or not set(value) <= {"class_name", "config"} or not isinstance(value.get("config", {}), dict):
        raise ValueError(f"{where} has {key} {value!r}; expected one of {sorted(CONSTRAINTS)} as "
                         '{"class_name": "MaxNorm", "config": {"max_value": 3}}')
    return cls(**value.get("config", {}))


def _layer_from_entry(entry, index, where):
    """One layer of a description: ``{"class_name": ..., "config": {constructor keyword arguments}}``
    (``"class"`` is accepted for ``"class_name"``)."""
    if isinstance(entry, dict) and "class" in entry and "class_name" not in entry:
        entry = {("class_name" if k == "class" else k): v for k, v in entry.items()}
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) or \
            not set(entry) <= {"class_name", "config"}:
        raise ValueError(f"{where}: layers[{index}] is {entry!r}; expected an object like "
                         '{"class": "Dense", "config": {"units": 10}}')
    cls, config = entry["class_name"], entry.get("config") or {}
    if cls not in LAYER_CLASSES:
        raise ValueError(f"{where}: layers[{index}] has class_name {cls!r}; expected one of {LAYER_CLASSES}")
    if not isinstance(config, dict):
        raise ValueError(f"{where}: layers[{index}] ({cls}) has config {config!r}; expected an object")
    config = dict(config)
    try:
        for key, value in config.items():
            if key.endswith("_constraint") and isinstance(value, dict):
                config[key] = _constraint(value, key, f"{where}: layers[{index}] ({cls})")
        return registry.LAYERS[cls](**config)
    except (TypeError, ValueError) as exc:  # an unknown keyword or a bad value: say which layer of the file
        if str(exc).startswith(where):
            raise
        raise ValueError(f"{where}: layers[{index}] ({cls}): {exc}") from None


def from_description(desc, input_shape=None, dropout=None, where="model description"):
    """Build a Sequential model from a JSON-style description::

        {"name": "tiny", "input_shape": [8, 8, 1], "layers": [
            {"class_name": "Conv2D", "config": {"filters": 8, "kernel_size": 3, "activation": "relu"}},
            {"class_name": "MaxPooling2D", "config": {"pool_size": 2}},
            {"class_name": "Dropout", "config": {"rate": 0.25}},
            {"class_name": "Flatten"},
            {"class_name": "Dense", "config": {"units": 10, "activation": "softmax"}}]}

    The layer configs are the keyword arguments of the dropcore layers (what ``layer.get_config()`` returns).
    ``input_shape`` (from the data) is used when the description has none, and must agree when it has one.
    ``dropout`` replaces every Dropout/SpatialDropout2D rate; 0 removes those layers.
    """
    if not isinstance(desc, dict) or not isinstance(desc.get("layers"), list) or not desc["layers"]:
        raise ValueError(f"{where}: expected a JSON object with a non-empty \"layers\" list; received "
                         f"{type(desc).__name__}{' with keys ' + str(sorted(desc)) if isinstance(desc, dict) else ''}")
    if dropout is not None:
        dropout = check_float(dropout, "dropout", 0.0, 1.0, high_open=True, where=where)
    shape = desc.get("input_shape")
    if shape is not None:
        shape = _check_shape(shape, where, images=False)
        if input_shape is not None and tuple(input_shape) != shape:
            raise ValueError(f"{where}: input_shape {list(shape)} does not match the data's samples of shape "
                             f"{list(input_shape)}")
    elif input_shape is not None:
        shape = tuple(input_shape)
    else:
        raise ValueError(f"{where}: no \"input_shape\" and no data to take it from")
    stack = [L.Input(shape)]
    for i, entry in enumerate(desc["layers"]):
        layer = _layer_from_entry(entry, i, where)
        if layer.rate_is_dropout and dropout is not None:  # the dropout family, subclasses included
            if dropout == 0:
                continue
            layer.rate = dropout
        stack.append(layer)
    name = desc.get("name")
    return Sequential(stack, name=name if isinstance(name, str) and name else None)


def load_description(path, input_shape=None, dropout=None):
    """Build a model from a JSON description file: an object with a ``"layers"`` list (see
    :func:`from_description`) or a bare list of layers (see :func:`from_json`)."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as fh:
            desc = json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: no such model description file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name}: not valid JSON ({exc}); expected a model description") from None
    if isinstance(desc, list):  # a bare list of layers (the from_json form)
        desc = {"layers": desc}
    return from_description(desc, input_shape, dropout, where=name)


def from_json(path_or_dict, input_shape=None, dropout=None):
    """Build a Sequential model from a JSON description: a file path, a list of layer objects, or an object with
    a ``"layers"`` list (for JSON text, pass ``json.loads(text)``)::

        [{"class": "Conv2D", "config": {"filters": 8, "kernel_size": 3, "activation": "relu"}},
         {"class": "MaxPooling2D", "config": {"pool_size": 2}},
         {"class": "Flatten"},
         {"class": "Dense", "config": {"units": 10, "activation": "softmax"}}]

    Only the layer classes in ``LAYER_CLASSES`` are built (nothing else a file names is looked up). A bare list
    has no input shape, so ``input_shape`` is required with it; see :func:`from_description` for the rest.
    """
    if isinstance(path_or_dict, (str, os.PathLike)):
        return load_description(path_or_dict, input_shape=input_shape, dropout=dropout)
    if isinstance(path_or_dict, list):
        return from_description({"layers": path_or_dict}, input_shape, dropout, where="from_json")
    if isinstance(path_or_dict, dict):
        return from_description(path_or_dict, input_shape, dropout, where="from_json")
    raise invalid("path_or_dict", "a JSON file path, a list of layer objects or a dict with a \"layers\" list",
                  type(path_or_dict).__name__, "from_json")


def make_optimizer(optimizer=None, learning_rate=None, model_name=None, momentum=None):
    """An optimizer instance: ``optimizer`` by name (``optimizers.NAMES``) or, when ``None``, the one the zoo
    model ``model_name`` is trained with; ``learning_rate`` and (SGD only) ``momentum`` override its defaults."""
    if optimizer is None:
        opt = default_optimizer(model_name)
    else:
        opt = optimizers.get(optimizer)
    if learning_rate is not None:
        opt.learning_rate = check_float(learning_rate, "learning_rate", 0.0, None, low_open=True,
                                        where=type(opt).__name__)
    if momentum is not None:
        if not isinstance(opt, optimizers.SGD):
            raise invalid("momentum", "no value unless the optimizer is SGD", momentum, type(opt).__name__)
        opt.momentum = check_float(momentum, "momentum", 0.0, 1.0, high_open=True, where="SGD")
    return opt
