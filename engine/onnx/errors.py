"""The errors of the ONNX converters. Both are ValueErrors, so the ``dropcore`` command reports them as such."""


class OnnxImportError(ValueError):
    """An ONNX model dropcore cannot convert (every unsupported node listed), or a file that is not a readable,
    safe ONNX model (malformed, truncated, external data outside the model's folder)."""


class OnnxExportError(ValueError):
    """A dropcore model with a layer that has no ONNX equivalent (the message names the layer)."""
