"""Reading an ONNX file safely: parse it, refuse external data outside the model's folder, load the rest, check the
model and infer its shapes. Anything wrong raises :class:`OnnxImportError` naming the file, never a crash."""
import os

import onnx
from onnx import external_data_helper

from .errors import OnnxImportError


def _external_tensors(proto):
    """Every tensor of the main graph that may keep its data outside the file: initializers and Constant values."""
    yield from proto.graph.initializer
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t


def check_external_paths(proto, folder, where):
    """Raise unless every external-data location of ``proto`` is a relative path inside ``folder`` (symbolic links
    resolved): a model file must not make the reader open files elsewhere."""
    root = os.path.realpath(folder)
    for tensor in _external_tensors(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        target = os.path.realpath(os.path.join(root, location))
        if not location or os.path.isabs(location) or os.path.commonpath([root, target]) != root:
            raise OnnxImportError(f"{where}: tensor '{tensor.name}' keeps its data at {location!r}, outside the "
                                  f"model's folder {folder!r}; refused (external data must lie beside the model)")


def read(path):
    """The ``onnx.ModelProto`` of the file at ``path``, external data loaded (:func:`checked` checks it)."""
    path = os.fspath(path)
    where = f"ONNX model '{path}'"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: no such file")
    try:
        proto = onnx.load_model(path, load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and kin: a malformed or truncated file
        raise OnnxImportError(f"{where} cannot be parsed (malformed or truncated): {type(exc).__name__}: "
                              f"{exc}") from None
    folder = os.path.dirname(os.path.abspath(path))
    check_external_paths(proto, folder, where)
    try:
        external_data_helper.load_external_data_for_model(proto, folder)
    except (OSError, ValueError) as exc:
        raise OnnxImportError(f"{where}: cannot read its external data: {exc}") from None
    return proto


def checked(proto, where):
    """``proto`` checked by ``onnx.checker`` and with its shapes inferred; an OnnxImportError if it is not valid."""
    try:
        onnx.checker.check_model(proto)
        return onnx.shape_inference.infer_shapes(proto, check_type=True)
    except Exception as exc:  # ValidationError, InferenceError, and whatever a damaged proto makes them raise
        raise OnnxImportError(f"{where} is not a valid ONNX model (malformed or truncated?): "
                              f"{type(exc).__name__}: {exc}") from None
