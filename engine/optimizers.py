"""Optimizers with Keras 3's update rules and defaults: SGD (momentum, Nesterov), Adam, RMSprop, Adadelta (the classic
Keras MNIST CNN's) and Adagrad.

An optimizer updates float32 weights in place; state (velocities, moments) is keyed by position in the list of
trainable weights, and ``iterations`` counts the updates (it also numbers the dropout masks).
"""
import numpy as np

from .validation import check_float, invalid


class Optimizer:
    #: State arrays kept per trainable weight once a step was taken (the model file stores them).
    SLOTS = 0

    def __init__(self, learning_rate):
        self.learning_rate = check_float(learning_rate, "learning_rate", 0.0, None, low_open=True,
                                         where=type(self).__name__)
        self.iterations = 0
        self.state = []

    def _ensure_state(self, params, n_slots):
        if len(self.state) != len(params):
            self.state = [[np.zeros_like(p) for _ in range(n_slots)] for p in params]

    def slots(self):
        """How many state arrays this optimizer keeps per trainable weight once it has taken a step."""
        return self.SLOTS

    def apply(self, params, grads):
        """Update each array in ``params`` in place with the matching gradient."""
        self.iterations += 1
        self._update(params, grads)

    def get_config(self):
        return {"learning_rate": self.learning_rate}

    def get_state(self):
        return [a for slots in self.state for a in slots]

    def set_state(self, arrays, params, iterations):
        n = len(arrays) // max(len(params), 1) if params else 0
        if arrays and (n == 0 or n * len(params) != len(arrays)):
            raise ValueError(f"{type(self).__name__}: optimizer state has {len(arrays)} arrays for "
                             f"{len(params)} weights")
        self.state = [list(arrays[i * n:(i + 1) * n]) for i in range(len(params))] if arrays else []
        self.iterations = int(iterations)


class SGD(Optimizer):
    """``v = momentum * v - lr * g``; ``w += v`` (Nesterov: ``w += momentum * v - lr * g``)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        super().__init__(learning_rate)
        self.momentum = check_float(momentum, "momentum", 0.0, 1.0, high_open=True, where="SGD")
        if not isinstance(nesterov, bool):
            raise invalid("nesterov", "a bool", nesterov, "SGD")
        self.nesterov = nesterov

    def slots(self):
        return 1 if self.momentum else 0

    def _update(self, params, grads):
        lr, mom = np.float32(self.learning_rate), np.float32(self.momentum)
        if mom == 0:
            for p, g in zip(params, grads):
                p -= lr * g
            return
        self._ensure_state(params, 1)
        for p, g, (v,) in zip(params, grads, self.state):
            v *= mom
            v -= lr * g
            if self.nesterov:
                p += mom * v - lr * g
            else:
                p += v

    def get_config(self):
        return {"learning_rate": self.learning_rate, "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Keras defaults: lr 0.001, beta_1 0.9, beta_2 0.999, epsilon 1e-7)."""

    SLOTS = 2

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        self.beta_1 = check_float(beta_1, "beta_1", 0.0, 1.0, high_open=True, where="Adam")
        self.beta_2 = check_float(beta_2, "beta_2", 0.0, 1.0, high_open=True, where="Adam")
        self.epsilon = check_float(epsilon, "epsilon", 0.0, None, low_open=True, where="Adam")

    def _update(self, params, grads):
        self._ensure_state(params, 2)
        t = self.iterations
        b1, b2 = np.float32(self.beta_1), np.float32(self.beta_2)
        alpha = np.float32(self.learning_rate * np.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t))
        eps = np.float32(self.epsilon)
        for p, g, (m, v) in zip(params, grads, self.state):
            m += (g - m) * (1 - b1)
            v += (g * g - v) * (1 - b2)
            p -= alpha * m / (np.sqrt(v) + eps)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """RMSprop (Keras defaults: lr 0.001, rho 0.9, epsilon 1e-7, no momentum)."""

    SLOTS = 1

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-7):
        super().__init__(learning_rate)
        self.rho = check_float(rho, "rho", 0.0, 1.0, high_open=True, where="RMSprop")
        self.epsilon = check_float(epsilon, "epsilon", 0.0, None, low_open=True, where="RMSprop")

    def _update(self, params, grads):
        self._ensure_state(params, 1)
        lr, rho, eps = np.float32(self.learning_rate), np.float32(self.rho), np.float32(self.epsilon)
        for p, g, (v,) in zip(params, grads, self.state):
            v *= rho
            v += (1 - rho) * g * g
            p -= lr * g / (np.sqrt(v) + eps)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "rho": self.rho, "epsilon": self.epsilon}


class Adadelta(Optimizer):
    """Adadelta (Keras 3 defaults: lr 0.001, rho 0.95, epsilon 1e-7): ``a = rho a + (1 - rho) g^2``,
    ``d = -sqrt(b + eps) / sqrt(a + eps) g``, ``b = rho b + (1 - rho) d^2``, ``w += lr d``. The classic Keras MNIST
    CNN trains with it (at ``learning_rate=1.0``, Keras 2's default, as Zeiler's paper has no learning rate)."""

    SLOTS = 2

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7):
        super().__init__(learning_rate)
        self.rho = check_float(rho, "rho", 0.0, 1.0, high_open=True, where="Adadelta")
        self.epsilon = check_float(epsilon, "epsilon", 0.0, None, low_open=True, where="Adadelta")

    def _update(self, params, grads):
        self._ensure_state(params, 2)
        lr, rho, eps = np.float32(self.learning_rate), np.float32(self.rho), np.float32(self.epsilon)
        for p, g, (a, b) in zip(params, grads, self.state):
            a *= rho
            a += (1 - rho) * g * g
            d = -(np.sqrt(b + eps) * g) / np.sqrt(a + eps)
            b *= rho
            b += (1 - rho) * d * d
            p += lr * d

    def get_config(self):
        return {"learning_rate": self.learning_rate, "rho": self.rho, "epsilon": self.epsilon}


class Adagrad(Optimizer):
    """Adagrad (Keras 3 defaults: lr 0.001, initial_accumulator_value 0.1, epsilon 1e-7):
    ``a += g^2``, ``w -= lr g / sqrt(a + eps)``."""

    SLOTS = 1

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7):
        super().__init__(learning_rate)
        self.initial_accumulator_value = check_float(initial_accumulator_value, "initial_accumulator_value", 0.0,
                                                     None, where="Adagrad")
        self.epsilon = check_float(epsilon, "epsilon", 0.0, None, low_open=True, where="Adagrad")

    def _update(self, params, grads):
        if len(self.state) != len(params):
            self.state = [[np.full_like(p, self.initial_accumulator_value)] for p in params]
        lr, eps = np.float32(self.learning_rate), np.float32(self.epsilon)
        for p, g, (a,) in zip(params, grads, self.state):
            a += g * g
            p -= lr * g / np.sqrt(a + eps)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


_BY_NAME = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop, "adadelta": Adadelta, "adagrad": Adagrad}
#: The names :func:`get` (and ``compile(optimizer=...)``, ``--optimizer``) accept.
NAMES = tuple(_BY_NAME)


def get(identifier):
    """An Optimizer from a name or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise invalid("optimizer", f"one of {tuple(_BY_NAME)} or a dropcore.optimizers.Optimizer", identifier)
