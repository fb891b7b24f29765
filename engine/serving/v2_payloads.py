"""Open Inference Protocol (KServe v2) inference requests to arrays, and results to answers: JSON tensors and the
binary tensor data extension (Triton's), every bad request a :class:`BadRequest` naming the field, what it held and
what was expected.

The request's JSON is decoded by msgspec against typed structs (one pass in C, as :mod:`.payloads` does): unknown
fields of the request, its inputs and its outputs are refused (the protocol defines them all), while ``parameters``
objects take any keys (the protocol leaves them open: a parameter this server does not know is ignored, unless it
asks for an extension it does not implement, see ``_UNSUPPORTED``). ``data`` nests at most as deep as the model's
input, so no body can nest deep enough to exhaust the stack.

Binary tensor data: with an ``Inference-Header-Content-Length: L`` header, the body's first ``L`` bytes are the
JSON and the rest holds, in the inputs' order, the raw little-endian bytes of every input whose ``parameters``
carry ``binary_data_size`` (and no ``data``). Outputs asked for with ``binary_data: true`` (or all outputs, with the
request parameter ``binary_data_output: true``, which tritonclient sends when it names no outputs) are answered
the same way: ``binary_data_size`` in the output's parameters, the bytes after the JSON.
"""
import json
import math
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

import msgspec
import numpy as np

from .bad_request import BadRequest
from .payloads import _has_non_finite_token, check_batch, mc_params

FP32 = "FP32"
#: The output of a plain prediction, named as ``POST /predict`` names it in its JSON answer
PREDICTIONS = "predictions"
#: The outputs of a Monte-Carlo dropout prediction (``parameters.mc_samples``), as ``/predict`` names them
MC_OUTPUTS = ("mean", "std")
OUTPUTS = (PREDICTIONS,) + MC_OUTPUTS
HEADER_LENGTH = "Inference-Header-Content-Length"
_LITTLE_FP32 = np.dtype("<f4")  # the binary extension's byte order, whatever this machine's

# Extensions whose parameters change what an answer means, which this server does not implement: ignoring them
# would answer something else than what was asked (class labels, data in a shared-memory region), so they are refused
_UNSUPPORTED = {
    "classification": "the classification extension (class labels instead of the output tensor)",
    "shared_memory_region": "the shared-memory extension", "shared_memory_byte_size": "the shared-memory extension",
    "shared_memory_offset": "the shared-memory extension",
}

_Scalar = Union[bool, int, float, str]  # a parameter's value: $string, $number or $boolean
_Parameters = Union[Dict[str, _Scalar], msgspec.UnsetType]
_UNSET = msgspec.UNSET


class RequestOutput(msgspec.Struct, forbid_unknown_fields=True):
    """``$request_output``: an output asked for, by name."""

    name: str
    parameters: _Parameters = _UNSET


_INPUT_FIELDS = ("name", "shape", "datatype", "parameters", "data")
_REQUEST_FIELDS = ("id", "parameters", "inputs", "outputs")
_OUTPUT_FIELDS = ("name", "parameters")
_types = {}  # input rank -> (decoder, request struct type)


def _request_type(rank):
    """``(msgspec decoder, struct type)`` of ``$inference_request`` for a model input of ``rank`` axes: ``data`` is a
    flat list of numbers, or lists nested as deep as the tensor's shape (``rank + 1`` axes), numbers at the leaves."""
    entry = _types.get(rank)
    if entry is None:
        data = float
        for _ in range(rank):
            data = Union[float, List[data]]
        request_input = msgspec.defstruct("RequestInput", [
            ("name", str), ("shape", List[int]), ("datatype", str), ("parameters", _Parameters, _UNSET),
            ("data", Union[List[data], msgspec.UnsetType], _UNSET)], forbid_unknown_fields=True)
        request = msgspec.defstruct("InferenceRequest", [
            ("inputs", List[request_input]), ("id", Union[str, msgspec.UnsetType], _UNSET),
            ("parameters", _Parameters, _UNSET),
            ("outputs", Union[List[RequestOutput], msgspec.UnsetType], _UNSET)], forbid_unknown_fields=True)
        entry = _types[rank] = (msgspec.json.Decoder(request), request)
    return entry


@dataclass(frozen=True)
class InferRequest:
    """A checked inference request: the float32 batch ``x``, the Monte-Carlo parameters, the outputs to answer
    (``(name, binary)`` pairs, in the order asked) and the request's ``id`` (None when it gave none)."""

    x: np.ndarray
    mc_samples: Optional[int]
    seed: Optional[int]
    outputs: Tuple[Tuple[str, bool], ...]
    id: Optional[str]


def parse_infer(body, header_length, input_name, input_shape, limits):
    """The :class:`InferRequest` in ``body`` (bytes): JSON, or JSON then binary tensor data when ``header_length``
    (the ``Inference-Header-Content-Length`` header's text, or None) says where the JSON ends."""
    json_part, binary = _split(body, header_length)
    doc = _decode(json_part, len(input_shape))
    parameters = _parameters(doc.parameters, "parameters")
    mc_samples, seed = mc_params(_int_parameter(parameters, "mc_samples"), _int_parameter(parameters, "seed"),
                                 limits, "request parameters")
    binary_default = _bool_parameter(parameters, "binary_data_output", "parameters")
    x = _input(doc.inputs, binary, input_name, input_shape, limits)
    outputs = _outputs(doc.outputs, mc_samples is not None, binary_default)
    return InferRequest(x, mc_samples, seed, outputs, None if doc.id is _UNSET else doc.id)


def _split(body, header_length):
    """``(JSON bytes, binary tensor data)`` of the body."""
    if header_length is None:
        return body, memoryview(b"")
    text = header_length.strip()
    if not text.isdigit():
        raise BadRequest(f"the {HEADER_LENGTH} header is {header_length!r}; expected the size in bytes of the JSON "
                         f"at the start of the body")
    length = int(text)
    if not 0 < length <= len(body):
        raise BadRequest(f"the {HEADER_LENGTH} header says the JSON has {length} bytes; expected between 1 and the "
                         f"body's {len(body)} bytes")
    view = memoryview(body)
    return view[:length], view[length:]


def _decode(json_part, rank):
    decoder, request = _request_type(rank)
    try:
        return decoder.decode(json_part)
    except msgspec.ValidationError as exc:  # (before DecodeError: it is one)
        raise _schema_error(exc, json_part) from None
    except msgspec.DecodeError as exc:
        if not _has_non_finite_token(json_part):
            raise BadRequest(f"the inference request is not valid JSON: {exc}") from None
    # NaN and Infinity are not JSON, but Python's json.dumps writes them (tritonclient's JSON tensors among others):
    # read by the standard library so that check_batch names the value and where it is, as /predict does
    try:
        doc = json.loads(bytes(json_part))
    except (ValueError, RecursionError) as exc:  # (UnicodeDecodeError is a ValueError)
        raise BadRequest(f"the inference request is not valid JSON: {exc}") from None
    try:
        return msgspec.convert(doc, request)
    except msgspec.ValidationError as exc:
        raise _schema_error(exc, json_part) from None


_PATH = re.compile(r"`(\$[^`]*)`")
_STEP = re.compile(r"\.(\w+)|\[(\d+)\]|\[\.\.\.\]")


def _schema_error(exc, json_part):
    """The BadRequest for a request the structs refused: msgspec's reason (what was expected, what was found, at
    which JSON path), the value found there, and for an unknown field the fields the protocol defines there."""
    message = str(exc)
    match = _PATH.search(message)
    path = match.group(1) if match else "$"
    if "unknown field" in message:
        fields = {"$": _REQUEST_FIELDS}.get(path) or (_INPUT_FIELDS if path.startswith("$.inputs[")
                                                      else _OUTPUT_FIELDS)
        message += f"; expected only {', '.join(fields)} there (any keys go in `parameters`)"
    elif match:
        received = _received(json_part, path)
        if received is not None:
            message += f"; received {received}"
    return BadRequest(f"the inference request does not follow the Open Inference Protocol: {message}")


def _received(json_part, path):
    """The JSON text at ``path`` (``$.inputs[0].shape``), cut to 80 characters, or None where it cannot be told:
    each level is decoded alone (``msgspec.Raw`` below it), so a deeply nested body costs no recursion here."""
    raw = msgspec.Raw(bytes(json_part))
    try:
        for key, index in ((m.group(1), m.group(2)) for m in _STEP.finditer(path, 1)):
            if key is None and index is None:  # `[...]`: a key msgspec does not name
                return None
            level = msgspec.json.decode(raw, type=Dict[str, msgspec.Raw] if key else List[msgspec.Raw])
            raw = level[key] if key else level[int(index)]
    except (msgspec.DecodeError, KeyError, IndexError, RecursionError):
        return None
    text = bytes(raw).decode("utf-8", "replace")
    return text if len(text) <= 80 else text[:77] + "..."


def _parameters(params, where):
    """A ``parameters`` object as a dict, refusing the extensions this server does not implement."""
    params = {} if params is _UNSET else params
    for name in params:
        if name in _UNSUPPORTED:
            raise BadRequest(f"`{where}.{name}` asks for {_UNSUPPORTED[name]}, which this server does not "
                             f"implement; expected only binary tensor data and mc_samples/seed")
    return params


def _int_parameter(params, name):
    """The request parameter ``name`` for :func:`mc_params` (which checks integers and ranges), or None; strings
    are refused here, unlike in a query string, since JSON has numbers."""
    value = params.get(name)
    if isinstance(value, str):
        raise BadRequest(f"`parameters.{name}` must be a JSON integer, received the string {value!r}")
    return value


def _bool_parameter(params, name, where):
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"`{where}.{name}` must be true or false, received {value!r}")
    return value


def _input(inputs, binary, input_name, input_shape, limits):
    """The float32 batch of the request's one input, its shape, datatype, data and binary size checked."""
    if len(inputs) != 1 or inputs[0].name != input_name:
        received = [i.name for i in inputs]
        raise BadRequest(f"`inputs` names {received}; expected exactly one input, {input_name!r} (the model's)")
    tensor = inputs[0]
    where = f"input {input_name!r}"
    if tensor.datatype != FP32:
        raise BadRequest(f"{where}: datatype {tensor.datatype!r}; expected {FP32!r} (the model's input type)")
    shape, expected = tensor.shape, [-1, *input_shape]
    if len(shape) != len(expected) or list(shape[1:]) != expected[1:]:
        raise BadRequest(f"{where}: shape {shape}; expected {expected}, n samples of the model's input shape")
    if shape[0] < 0:  # the metadata's -1 stands for "any n": a request gives its own
        raise BadRequest(f"{where}: shape {shape} has a batch of {shape[0]}; expected the number of samples sent")
    if shape[0] == 0:
        raise BadRequest(f"{where}: shape {shape} holds no samples; expected {expected} with n >= 1")
    if shape[0] > limits.max_instances:  # before reading any data: the limit bounds the work too
        raise BadRequest(f"{where}: {shape[0]} samples; at most {limits.max_instances} per request")
    count = math.prod(shape)
    params = _parameters(tensor.parameters, "inputs[0].parameters")
    size = params.get("binary_data_size")
    if size is None:
        if len(binary):
            raise BadRequest(f"{len(binary)} bytes of binary tensor data follow the JSON, but no input has "
                             f"`parameters.binary_data_size`; expected them to be claimed by {input_name!r}")
        if tensor.data is _UNSET:
            raise BadRequest(f"{where} has no `data` and no `parameters.binary_data_size`; expected one of them")
        x = _json_data(tensor.data, shape, count, where)
    else:
        if tensor.data is not _UNSET:
            raise BadRequest(f"{where} has both `data` and `parameters.binary_data_size`; expected one of them")
        x = _binary_data(size, binary, shape, count, where)
    return check_batch(x, input_shape, limits, where)


def _json_data(data, shape, count, where):
    """``data`` (flat, or nested as ``shape``) as a float32 array of ``shape``."""
    if len(data) not in (count, shape[0]):  # before converting: flat holds count numbers, nested shape[0] lists
        raise BadRequest(f"{where}: `data` has {len(data)} elements at its top level; shape {shape} expects "
                         f"{count} numbers (flat) or {shape[0]} nested lists")
    try:
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf: refused in check_batch
            array = np.asarray(data, dtype=np.float32)
    except ValueError as exc:  # ragged lists
        raise BadRequest(f"{where}: `data` must be a flat list of numbers or lists nested as {shape}: "
                         f"{exc}") from None
    if array.shape not in ((count,), tuple(shape)):
        raise BadRequest(f"{where}: `data` has shape {list(array.shape)} ({array.size} numbers); expected {count} "
                         f"numbers for shape {shape}, flat or nested as it")
    return array.reshape(shape)


def _binary_data(size, binary, shape, count, where):
    """The input's ``size`` bytes of binary tensor data, as a float32 array of ``shape`` (a view of the body)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BadRequest(f"{where}: `parameters.binary_data_size` must be a byte count >= 0, received {size!r}")
    expected = count * _LITTLE_FP32.itemsize
    if size != expected:
        raise BadRequest(f"{where}: `parameters.binary_data_size` is {size} bytes; shape {shape} of FP32 takes "
                         f"{expected}")
    if size > len(binary):
        raise BadRequest(f"{where}: `parameters.binary_data_size` is {size} bytes, but {len(binary)} bytes follow "
                         f"the JSON ({HEADER_LENGTH})")
    if size < len(binary):
        raise BadRequest(f"{len(binary)} bytes of binary tensor data follow the JSON; the inputs claim {size} "
                         f"(`binary_data_size`)")
    return np.frombuffer(binary, _LITTLE_FP32, count).reshape(shape)


def _outputs(requested, mc, binary_default):
    """``((name, binary), ...)``: the outputs asked for (all of this kind of prediction's, when none are)."""
    available = MC_OUTPUTS if mc else (PREDICTIONS,)
    if requested is _UNSET:
        return tuple((name, binary_default) for name in available)
    seen = []
    for i, out in enumerate(requested):
        if out.name not in available:
            why = (f"Monte-Carlo dropout answers {list(MC_OUTPUTS)}" if mc else
                   f"a plain prediction answers {PREDICTIONS!r}; {list(MC_OUTPUTS)} come with "
                   f"`parameters.mc_samples`")
            raise BadRequest(f"`outputs[{i}].name` is {out.name!r}; expected one of {list(available)} ({why})")
        if out.name in (name for name, _ in seen):
            raise BadRequest(f"`outputs` names {out.name!r} twice; expected each output at most once")
        params = _parameters(out.parameters, f"outputs[{i}].parameters")
        binary = _bool_parameter(params, "binary_data", f"outputs[{i}].parameters") if "binary_data" in params \
            else binary_default
        seen.append((out.name, binary))
    if not seen:
        raise BadRequest(f"`outputs` is empty; expected some of {list(available)}, or no `outputs` for all")
    return tuple(seen)


def infer_answer(request, result, model_name, model_version):
    """``(body, header length or None)`` answering ``request`` with ``result`` (the predictions, or Monte-Carlo
    ``(mean, std)``): a JSON ``$inference_response``, then the binary outputs' bytes when any were asked for."""
    tensors = dict(zip(MC_OUTPUTS, result)) if isinstance(result, tuple) else {PREDICTIONS: result}
    doc = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        doc["id"] = request.id
    outputs, chunks = [], []
    for name, binary in request.outputs:
        array = tensors[name]
        out = {"name": name, "datatype": FP32, "shape": list(array.shape)}
        if binary:
            data = np.ascontiguousarray(array, _LITTLE_FP32).tobytes()
            out["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:  # row-major and flat, as the protocol's examples and Triton answer; float32 -> double is exact
            out["data"] = array.ravel().tolist()
        outputs.append(out)
    doc["outputs"] = outputs
    head = json.dumps(doc, separators=(",", ":")).encode()
    if not chunks:
        return head, None
    return b"".join([head, *chunks]), len(head)
