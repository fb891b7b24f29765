"""Weight initializers (Keras names and formulas): he_uniform, he_normal, glorot_uniform, glorot_normal, lecun_normal,
zeros, ones.

Fan-in and fan-out follow Keras: for a kernel ``(..., in, out)`` the receptive field is the product of the leading
dimensions. Draws come from a NumPy ``Generator``: pass ``seed`` for a reproducible initializer, or call
:func:`dropcore.set_random_seed` once.
"""
import numpy as np

from .validation import invalid

_default_rng = np.random.default_rng()


def set_random_seed(seed):
    """Seed the generator that initializers without their own seed draw from."""
    global _default_rng
    _default_rng = np.random.default_rng(seed)


def _fans(shape):
    if len(shape) < 2:
        return shape[0] if shape else 1, shape[0] if shape else 1
    field = int(np.prod(shape[:-2]))
    return shape[-2] * field, shape[-1] * field


class Initializer:
    """Base class: ``init(shape) -> float32 array``."""

    def __init__(self, seed=None):
        self.seed = seed
        self._rng = None if seed is None else np.random.default_rng(seed)

    def _generator(self):
        return self._rng if self._rng is not None else _default_rng

    def get_config(self):
        return {"seed": self.seed}

    def __call__(self, shape):
        raise NotImplementedError


class Zeros(Initializer):
    def __call__(self, shape):
        return np.zeros(shape, np.float32)


class Ones(Initializer):
    def __call__(self, shape):
        return np.ones(shape, np.float32)


class _VarianceScaling(Initializer):
    scale, mode, distribution = 1.0, "fan_in", "uniform"

    def __call__(self, shape):
        fan_in, fan_out = _fans(tuple(shape))
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        var = self.scale / max(1.0, n)
        rng = self._generator()
        if self.distribution == "uniform":
            limit = np.sqrt(3.0 * var)
            return rng.uniform(-limit, limit, size=shape).astype(np.float32)
        # truncated normal at 2 stddev, with Keras's correction so the variance is `var`
        std = np.sqrt(var) / 0.87962566103423978
        out = rng.normal(0.0, std, size=shape)
        bad = np.abs(out) > 2 * std
        while bad.any():
            out[bad] = rng.normal(0.0, std, size=int(bad.sum()))
            bad = np.abs(out) > 2 * std
        return out.astype(np.float32)


class HeUniform(_VarianceScaling):
    scale, mode, distribution = 2.0, "fan_in", "uniform"


class HeNormal(_VarianceScaling):
    scale, mode, distribution = 2.0, "fan_in", "normal"


class GlorotUniform(_VarianceScaling):
    scale, mode, distribution = 1.0, "fan_avg", "uniform"


class GlorotNormal(_VarianceScaling):
    scale, mode, distribution = 1.0, "fan_avg", "normal"


class LecunNormal(_VarianceScaling):
    """Keras's ``VarianceScaling(1.0, "fan_in", "truncated_normal")``: for SELU networks."""

    scale, mode, distribution = 1.0, "fan_in", "normal"


he_uniform, he_normal, glorot_uniform, glorot_normal = HeUniform, HeNormal, GlorotUniform, GlorotNormal
lecun_normal = LecunNormal
zeros, ones = Zeros, Ones

_BY_NAME = {
    "he_uniform": HeUniform,
    "he_normal": HeNormal,
    "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal,
    "lecun_normal": LecunNormal,
    "zeros": Zeros,
    "ones": Ones,
}


def get(identifier, arg="kernel_initializer"):
    """An Initializer from a name, a class, an instance or a callable ``shape -> array``."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    raise invalid(arg, f"one of {tuple(_BY_NAME)} or an Initializer", identifier)


def name_of(init):
    """The registered name of an initializer instance (for model files)."""
    for name, cls in _BY_NAME.items():
        if type(init) is cls:
            return name
    raise ValueError(f"initializer {init!r} has no registered name")
