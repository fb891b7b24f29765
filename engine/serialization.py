"""Config <-> object for model files: layers, constraints, optimizers and losses, from explicit allow-lists.

Reading never imports anything a file names: each class is looked up by name in an allow-list (the layer registry,
and the lists below). A config
must rebuild *exactly*: its keys are the constructor's parameters, no more and no fewer, and the rebuilt object's
``get_config()`` must equal the config read, so a value the constructor would quietly change ("RELU" -> "relu",
an axis of 1.5 -> 1) is refused rather than loaded as something else. Used by :mod:`dropcore.io`.
"""
import inspect
import numbers

from . import constraints, losses, optimizers
from .layers.registry import LAYERS


class Invalid(Exception):
    """A problem in a model file; the public functions re-raise it as ModelFileError naming the file."""


def _registry(*classes):
    return {cls.__name__: cls for cls in classes}


#: The layers are the registered ones (``layers/registry.py``): each registers itself where it is defined.
CONSTRAINTS = _registry(constraints.MaxNorm)
OPTIMIZERS = _registry(optimizers.SGD, optimizers.Adam, optimizers.RMSprop, optimizers.Adadelta,
                       optimizers.Adagrad)
LOSSES = _registry(losses.CategoricalCrossentropy, losses.SparseCategoricalCrossentropy, losses.BinaryCrossentropy,
                   losses.MeanSquaredError)
METRICS = ("accuracy",)


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def expect_dict(value, keys, where):
    """``value`` must be a JSON object with exactly ``keys``."""
    if not isinstance(value, dict):
        raise Invalid(f"{where} must be a JSON object, found {type(value).__name__}")
    missing = [k for k in keys if k not in value]
    unknown = sorted(k for k in value if k not in keys)
    if missing:
        raise Invalid(f"{where} is missing the key(s) {missing}")
    if unknown:
        raise Invalid(f"{where} has unknown key(s) {unknown}; expected only {list(keys)}")
    return value


def expect_int(value, where, low, high=None):
    """An integer (not a bool) in ``[low, high]``."""
    if not is_int(value) or value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise Invalid(f"{where} must be an integer {bound}, found {value!r}")
    return value


def expect_shape(value, where, low=0):
    if not isinstance(value, list) or not all(is_int(d) and d >= low for d in value):
        raise Invalid(f"{where} must be a list of integers >= {low}, found {value!r}")
    return tuple(value)


def expect_str(value, where):
    if not isinstance(value, str) or not value:
        raise Invalid(f"{where} must be a non-empty string, found {value!r}")
    return value


def to_config(obj, registry, what):
    """``{"class_name", "config"}`` for one of dropcore's own classes; anything else cannot be saved."""
    name = type(obj).__name__
    if registry.get(name) is not type(obj):
        raise ValueError(f"cannot save {what} {obj!r}: the model file holds only dropcore's own classes "
                         f"({', '.join(registry)}), so that loading never runs code from elsewhere")
    try:
        config = obj.get_config()
    except ValueError as exc:  # e.g. an initializer without a registered name
        raise ValueError(f"cannot save {what} {obj!r}: {exc}") from None
    return {"class_name": name, "config": config}


def layer_to_config(layer):
    """A layer's entry; refuses custom layer and constraint classes, naming the layer."""
    entry = to_config(layer, LAYERS, "layer")
    for attr, value in vars(layer).items():
        if attr.endswith("_constraint") and value is not None:
            to_config(value, CONSTRAINTS, f"the `{attr}` of {layer.label}:")
    return entry


def _parameters(cls):
    """The config keys: the constructor's named parameters (a ``**kwargs`` takes only deprecated aliases of them,
    Keras's, at call time; a config never holds those)."""
    return [name for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and p.kind is not p.VAR_KEYWORD]


def from_config(entry, registry, what, where, convert=None):
    """Rebuild an object from ``{"class_name", "config"}``; ``convert`` maps the config to constructor kwargs."""
    entry = expect_dict(entry, ("class_name", "config"), where)
    name = entry["class_name"]
    if not isinstance(name, str) or name not in registry:
        raise Invalid(f"{where}: unknown {what} class {name!r}; expected one of {sorted(registry)}")
    cls = registry[name]
    config = expect_dict(entry["config"], _parameters(cls), f"{where}: the config of {name}")
    try:
        obj = cls(**(convert(config, where) if convert else config))
    except (ValueError, TypeError) as exc:  # the constructors' own argument checks
        raise Invalid(f"{where}: invalid {name} config: {exc}") from None
    rebuilt = obj.get_config()
    if rebuilt != config:
        diff = {k: (config[k], rebuilt.get(k)) for k in config if rebuilt.get(k) != config[k]}
        raise Invalid(f"{where}: the {name} config does not rebuild exactly (read -> rebuilt: {diff})")
    return obj


def with_added_keys(entry):
    """A layer entry written before its class took a newer argument gets that argument's old value (the class's
    ``ADDED_CONFIG``), so older model files keep loading as what they were; anything else is left to
    :func:`from_config` to judge."""
    name = entry.get("class_name") if isinstance(entry, dict) else None
    cls = LAYERS.get(name) if isinstance(name, str) else None
    if cls is None or not isinstance(entry.get("config"), dict):
        return entry
    return {**entry, "config": {**cls.ADDED_CONFIG, **entry["config"]}}


def _convert_constraint(config, where):
    axis = config["axis"]
    if not (is_int(axis) or (isinstance(axis, list) and all(is_int(a) for a in axis))):
        raise Invalid(f"{where}: a constraint's axis must be an integer or a list of integers, found {axis!r}")
    return config


def convert_layer(config, where):
    out = dict(config)
    for key, value in config.items():
        if key.endswith("_constraint") and value is not None:
            out[key] = from_config(value, CONSTRAINTS, "constraint", f"{where}: `{key}`", _convert_constraint)
    return out


def optimizer_slots(optimizer):
    """How many state arrays the optimizer keeps per trainable weight once it has taken a step."""
    return optimizer.slots()


def json_default(value):
    """Let ``json.dumps`` write NumPy scalars a config may hold (a ``noise_shape`` of ``np.int64``)."""
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"a config value of type {type(value).__name__} cannot be written to a model file: {value!r}")
