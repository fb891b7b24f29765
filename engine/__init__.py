"""dropcore: a CPU engine for training and running small convolutional networks.

Keras-style API::

    import dropcore
    from dropcore.layers import Input, Conv2D, MaxPooling2D, Dropout, Flatten, Dense

    model = dropcore.Sequential([Input((28, 28, 1)), Conv2D(32, 3, activation="relu"), MaxPooling2D(2),
                                 Dropout(0.25), Flatten(), Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=3)
"""
from .version import __version__  # noqa: F401

from . import callbacks, constraints, initializers, layers, losses, optimizers, utils  # noqa: E402
from .errors import ModelFileError, NotCompiledError, NumericalError, WorkspaceLimitError  # noqa: E402
from .initializers import set_random_seed  # noqa: E402
from .io import load_model, model_to_bytes, save_model  # noqa: E402
from .info import info  # noqa: E402
from .kernels.threads import get_num_threads  # noqa: E402
from .kernels.threads import set_process_threads as set_num_threads  # noqa: E402
from .model import Model, Sequential  # noqa: E402
from .predictor import Predictor  # noqa: E402
from .batching import BatchingPredictor  # noqa: E402
from .workspace import set_workspace_limit  # noqa: E402

__all__ = [
    "BatchingPredictor", "Model", "ModelFileError", "NotCompiledError", "NumericalError", "Predictor", "Sequential",
    "WorkspaceLimitError",
    "callbacks", "constraints", "get_num_threads", "info", "initializers", "layers", "load_model", "losses",
    "model_to_bytes", "optimizers", "save_model", "set_num_threads", "set_random_seed", "set_workspace_limit",
    "utils",
]

#: Subpackages imported on first use, so that ``import dropcore`` stays light (the ONNX converters import nothing of
#: onnx until they run, the distributed ones nothing of Dask or MPI) while ``dropcore.onnx.load(...)`` works without
#: ``import dropcore.onnx`` first.
_LAZY = ("onnx", "distributed", "serving", "data")


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
