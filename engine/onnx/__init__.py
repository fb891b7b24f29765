"""ONNX in and out: :func:`export` writes a dropcore model as an ONNX file, :func:`load` builds a dropcore model from
one (docs/onnx.md).

Both need the optional ``onnx`` package (``pip install "dropcore[onnx]"``). ``import dropcore`` never imports it, and
neither does importing this package: the converters load on first use, so the CLI's ``export``/``import`` commands
(:mod:`.commands`) exist without the extra and say how to install it when run. Serving an imported model never
needs onnx: import converts once, to a dropcore model file.
"""
import importlib

from .errors import OnnxExportError, OnnxImportError

#: public function -> the module defining it, imported on first use
_LAZY = {"export": "export", "to_proto": "export", "load": "importer", "from_proto": "importer"}

__all__ = ["OnnxExportError", "OnnxImportError", *_LAZY]


def require_onnx():
    """The ``onnx`` package (the real one: imports here are absolute), or an ImportError saying how to install it."""
    try:
        import onnx
    except ImportError as exc:
        raise ImportError('dropcore.onnx needs the onnx package: pip install "dropcore[onnx]"') from exc
    return onnx


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    require_onnx()
    for function, module in _LAZY.items():
        # importing submodule .export binds the package attribute "export" to it: the function replaces it
        globals()[function] = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    return globals()[name]
