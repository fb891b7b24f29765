"""Keras-named layers, channels-last."""
from .base import Context, Input, Layer, SymbolicTensor
from .conv import Conv2D
from .core import Activation, Dense, Flatten, ReLU, Softmax
from .dropout import Dropout, SpatialDropout2D
from .merge import Add
from .normalization import BatchNormalization
from .pooling import AveragePooling2D, MaxPooling2D

__all__ = [
    "Activation", "Add", "AveragePooling2D", "BatchNormalization", "Context", "Conv2D", "Dense", "Dropout",
    "Flatten", "Input", "Layer", "MaxPooling2D", "ReLU", "Softmax", "SpatialDropout2D", "SymbolicTensor",
]
