"""Keras-named layers, channels-last.

Each module below defines and registers its layers (``registry.py``); this package exports every registered class,
so a new layer is one module added to the import line, and nothing else names it.
"""
from . import (block_dropout, conv, core, depthwise, dropout, elementwise, global_pooling, merge, noise,  # noqa: F401
               normalization, pooling, reshaping)
from .base import Context, Input, Layer, SymbolicTensor
from .registry import LAYERS

globals().update(LAYERS)

__all__ = ["Context", "Input", "Layer", "SymbolicTensor", *LAYERS]
