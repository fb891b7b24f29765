"""Request bodies to arrays and arrays to response bodies: JSON and ``.npy``, every bad input a :class:`BadRequest`.

Why both: JSON is what any client can send, but nested lists of floats cost more to parse and print than the
prediction itself; a ``.npy`` body is the array's bytes behind a short header (``np.save`` on the client).
"""
import io
import json
import re
import sys
from itertools import chain
from typing import Dict, List, Union

import msgspec
import numpy as np

from .bad_request import BadRequest
from .npy_reader import read_npy

NPY = "application/x-npy"


def _int_param(value, name, low, high, source):
    """``value`` (a JSON number, or a query string's text) as an int in ``[low, high]``, else a BadRequest."""
    if isinstance(value, str):
        text = value.strip()
        if not text.lstrip("-").isdigit():
            raise BadRequest(f"`{name}` must be an integer, received {name}={value!r} ({source})")
        value = int(text)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"`{name}` must be an integer, received {name}={value!r} ({source})")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise BadRequest(f"`{name}` must be {bound}, received {name}={value} ({source})")
    return value


def mc_params(mc_samples, seed, limits, source):
    """The checked ``(mc_samples, seed)``; either may be None (no MC dropout; a random seed)."""
    if mc_samples is not None:
        mc_samples = _int_param(mc_samples, "mc_samples", 1, limits.max_mc_samples, source)
    if seed is not None:
        seed = _int_param(seed, "seed", 0, 2**63 - 1, source)
        if mc_samples is None:
            raise BadRequest(f"`seed` selects Monte-Carlo dropout masks: it needs `mc_samples`, received "
                             f"seed={seed} alone ({source})")
    return mc_samples, seed


def check_batch(x, input_shape, limits, source):
    """``x`` as the float32 batch the model takes: shape ``(n, *input_shape)``, ``n`` within the limit, finite."""
    expected = "(n, " + ", ".join(map(str, input_shape)) + ")"
    if x.ndim != len(input_shape) + 1 or x.shape[1:] != tuple(input_shape):
        raise BadRequest(f"{source}: the instances have shape {x.shape}; expected {expected}, one row per sample")
    if x.shape[0] == 0:
        raise BadRequest(f"{source}: no instances; expected {expected} with n >= 1")
    if x.shape[0] > limits.max_instances:
        raise BadRequest(f"{source}: {x.shape[0]} instances; at most {limits.max_instances} per request")
    if x.dtype != np.float32:
        with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf: refused just below
            x = x.astype(np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        where = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise BadRequest(f"{source}: the instances hold a non-finite value ({float(x[where])!r} at index {where}); "
                         f"expected finite numbers within float32's range")
    return x


# JSON bodies are decoded by msgspec against a typed schema (_request_type): one pass in C that refuses what is not
# JSON, unknown fields and anything but numbers or lists inside "instances", with the nesting of "instances" bounded
# by the model's input rank, so no body can nest deep enough to exhaust the stack, and no hand-written pre-parser.
# A body the schema refuses is decoded again, field by field, only to word the reason (_schema_error).
_FIELDS = ("instances", "mc_samples", "seed")
_SCALAR = Union[None, bool, int, float, str]  # mc_samples and seed: checked by _int_param, with its messages
_decoders = {}  # input rank -> (msgspec decoder of the request, the type of "instances")


def _request_type(rank):
    """``(Struct type of a request, type of "instances")`` for inputs of ``rank`` axes: "instances" is a number or
    a list nested at most ``rank + 1`` deep whose leaves are numbers (JSON integers become floats)."""
    instances = float
    for _ in range(rank + 1):
        instances = Union[float, List[instances]]
    request = msgspec.defstruct("Request", [("instances", instances), ("mc_samples", _SCALAR, None),
                                            ("seed", _SCALAR, None)], forbid_unknown_fields=True)
    return request, instances


def _decoder(rank):
    entry = _decoders.get(rank)
    if entry is None:
        request, instances = _request_type(rank)
        entry = _decoders[rank] = (msgspec.json.Decoder(request), request, instances)
    return entry


# NaN, Infinity and -Infinity are not JSON, but Python's json.dumps writes them for non-finite floats: a body holding
# them is read by the standard library instead, so its client learns which value is not finite and where. Strings
# are matched too, so that the words inside them are skipped; an unterminated string runs to the end (\Z) so the
# scan stays linear.
_NON_FINITE_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\Z)|(-?Infinity|NaN)', re.DOTALL)


def _has_non_finite_token(body):
    return any(match.group(1) for match in _NON_FINITE_TOKEN.finditer(body))


def parse_json(body, input_shape, limits):
    """``(x, mc_samples, seed)`` from a JSON body ``{"instances": [...], "mc_samples"?, "seed"?}``."""
    if isinstance(body, str):
        body = body.encode()
    decoder, request, instances_type = _decoder(len(input_shape))
    try:
        doc = decoder.decode(body)
    except msgspec.ValidationError:  # (a DecodeError too) the schema stopped the decoding: the rest may not be JSON
        _check_utf8(body)  # msgspec checks the UTF-8 of what it decodes, and it stopped early
        try:
            fields = _raw_fields(body, input_shape)
        except msgspec.DecodeError as exc:
            doc = _not_json(body, exc, request, instances_type, input_shape)
        else:
            raise _schema_error(fields, instances_type, input_shape,
                                lambda raw, kind: msgspec.json.decode(raw, type=kind)) from None
    except msgspec.DecodeError as exc:
        doc = _not_json(body, exc, request, instances_type, input_shape)
    mc_samples, seed = mc_params(doc.mc_samples, doc.seed, limits, "JSON body")
    return check_batch(_instances(doc.instances, limits, input_shape), input_shape, limits, "JSON body"), \
        mc_samples, seed


def _check_utf8(body):
    try:
        body.decode()
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: it is not UTF-8 text ({exc})") from None


def _not_json(body, exc, request, instances_type, input_shape):
    """The request in a body msgspec could not decode because of NaN or Infinity (see _NON_FINITE_TOKEN), else
    a BadRequest."""
    if not _has_non_finite_token(body):
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    return _python_json(body, request, instances_type, input_shape)


def _python_json(body, request, instances_type, input_shape):
    """The request in a body with NaN or Infinity: read by ``json.loads``, then checked against the same schema."""
    _check_utf8(body)
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # json.loads's C scanner refuses nesting past the interpreter's recursion limit so
        raise _too_deep(input_shape) from None
    try:
        return msgspec.convert(doc, request)
    except msgspec.ValidationError:
        fields = doc if isinstance(doc, dict) else _NotAnObject(_NAMES.get(type(doc).__name__, "a value"))
        raise _schema_error(fields, instances_type, input_shape, msgspec.convert) from None


class _NotAnObject:
    """Stands for the fields of a JSON document that is not an object: ``kind`` names what it is."""

    def __init__(self, kind):
        self.kind = kind


def _too_deep(input_shape):
    return BadRequest(f"the body nests JSON arrays or objects deeper than {sys.getrecursionlimit()} levels; "
                      f'expected at most {len(input_shape) + 2}: an object whose "instances" nest '
                      f"{len(input_shape) + 1} deep")


def _raw_fields(body, input_shape):
    """The top-level fields of ``body`` undecoded, or a _NotAnObject (msgspec.DecodeError: not JSON)."""
    try:
        return msgspec.json.decode(body, type=Dict[str, msgspec.Raw])
    except msgspec.ValidationError as exc:  # "Expected `object`, got `array`"
        got = _GOT.search(str(exc))
        return _NotAnObject(_NAMES.get(got.group(1), "a value") if got is not None else str(exc))
    except RecursionError:  # msgspec refuses nesting past the interpreter's recursion limit so (the typed decoding
        # of the request stopped where it went deeper than the schema, or at an unknown field's name)
        raise _too_deep(input_shape) from None


# What msgspec's messages ("Expected `float`, got `str`") and Python's type names call a JSON value, in words
_KINDS = {"str": "strings", "bool": "booleans", "null": "nulls", "object": "objects", "int": "integers"}
_NAMES = {"array": "an array", "list": "an array", "str": "a string", "int": "a number", "float": "a number",
          "bool": "a boolean", "null": "null", "NoneType": "null", "object": "an object", "dict": "an object"}
_GOT = re.compile(r"got `(\w+)`")


def _schema_error(fields, instances_type, input_shape, convert):
    """The BadRequest for a request the schema refused: which field, what it held, what was expected."""
    expected = "(n, " + ", ".join(map(str, input_shape)) + ")"
    if isinstance(fields, _NotAnObject):
        return BadRequest('expected a JSON object with "instances": a list of inputs (or a .npy body with '
                          f"Content-Type: {NPY}), received {fields.kind}")
    if "instances" not in fields:
        return BadRequest('expected a JSON object with "instances": a list of inputs (or a .npy body with '
                          f"Content-Type: {NPY}), received the fields {sorted(fields)}")
    unknown = sorted(set(fields) - set(_FIELDS))
    if unknown:
        return BadRequest(f"unknown fields {unknown}; expected {', '.join(_FIELDS)}")
    for name, kind in (("instances", instances_type), ("mc_samples", _SCALAR), ("seed", _SCALAR)):
        if name not in fields:
            continue
        try:
            convert(fields[name], kind)
        except msgspec.ValidationError as exc:
            where = str(exc).replace("`$", f"`{name}", 1)
            got = _GOT.search(where)
            if name != "instances":
                received = _NAMES.get(got.group(1), got.group(1)) if got is not None else where
                return BadRequest(f"`{name}` must be an integer, received {received} (JSON body)")
            if got is not None and got.group(1) == "array":
                held = f"lists nested deeper than {expected}"
            elif got is not None:
                held = _KINDS.get(got.group(1), got.group(1))
            else:  # msgspec's "Number out of range": a float literal past 1.8e308
                held = "a number beyond float64's range" if "range" in where else "a value of another kind"
            return BadRequest(f'"instances" must be a rectangular nested list of numbers of shape {expected}; '
                              f"it holds {held} ({where})")
    raise AssertionError(f"msgspec refused a request whose fields {sorted(fields)} each convert")  # a bug: 500


def _instances(instances, limits, input_shape):
    """The float32 array of a decoded "instances": a number or nested lists of numbers, by the schema."""
    if not isinstance(instances, list):
        raise BadRequest(f'"instances" must be a list of inputs, received a number ({instances!r})')
    if len(instances) > limits.max_instances:  # before converting: the limit bounds the work too
        raise BadRequest(f"{len(instances)} instances; at most {limits.max_instances} per request")
    x = _rectangular(instances, input_shape)
    if x is not None:
        return x
    try:  # anything else: numpy finds the shape (check_batch then names what is wrong with it)
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf: refused in check_batch
            return np.asarray(instances, dtype=np.float32)
    except ValueError as exc:  # ragged lists: the only thing left that numpy refuses
        raise BadRequest(f'"instances" must be a rectangular nested list of numbers: {exc}') from None


def _rectangular(instances, input_shape):
    """``instances`` as a float32 array of shape ``(n, *input_shape)`` when it is exactly that, else None. Why: the
    lists are flattened a level at a time in C (``map(len)`` checks each level's lengths, ``chain`` joins it), then
    one flat list becomes the array, where ``np.asarray`` on the nested lists discovers the shape element by
    element (1.7x slower on one 28x28x1 image, 1.4x on a 32x32x3 one)."""
    level = instances
    for dim in input_shape:
        try:
            if set(map(len, level)) != {dim}:  # ragged, or no instances
                return None
        except TypeError:  # a number where a list belongs
            return None
        level = list(chain.from_iterable(level))
    try:
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf: refused in check_batch
            flat = np.array(level, dtype=np.float32)
    except (ValueError, TypeError):
        return None
    if flat.ndim != 1:  # lists nested deeper than the input
        return None
    return flat.reshape((len(instances),) + tuple(input_shape))


def parse_npy(body, query, input_shape, limits):
    """``(x, mc_samples, seed)`` from a ``.npy`` body (float32 or float64) and the query's MC parameters."""
    x = read_npy(body)
    if x.dtype.kind != "f" or x.dtype.itemsize not in (4, 8):  # either byte order: check_batch converts
        raise BadRequest(f".npy body has dtype {x.dtype}; expected float32 or float64")
    mc_samples, seed = mc_params(query.get("mc_samples"), query.get("seed"), limits, "query parameters")
    return check_batch(x, input_shape, limits, ".npy body"), mc_samples, seed


_headers = {}  # (shape, dtype) -> the .npy header np.save writes for it


def npy_bytes(array):
    """``array`` as the bytes of a ``.npy`` file (np.save's header, worked out once per shape)."""
    array = np.require(array, requirements="C")  # (ascontiguousarray would make a 0-d array 1-d)
    key = (array.shape, array.dtype.str)
    header = _headers.get(key)
    if header is None:
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(array.shape, array.dtype), allow_pickle=False)
        header = buffer.getvalue()[:buffer.tell() - array.nbytes]
        if len(_headers) > 4096:  # shapes vary with the instances per request (at most max_instances of them)
            _headers.clear()
        _headers[key] = header
    return header + array.tobytes()


def json_bytes(result):
    """``{"predictions": [...]}``, or ``{"mean": [...], "std": [...]}`` for a Monte-Carlo ``(mean, std)``:
    ``tolist()`` turns the whole array into Python floats in C, and compact separators keep the body short."""
    if isinstance(result, tuple):
        doc = {"mean": result[0].tolist(), "std": result[1].tolist()}
    else:
        doc = {"predictions": result.tolist()}
    return json.dumps(doc, separators=(",", ":")).encode()


def result_npy(result):
    """The ``.npy`` answer: the predictions, or mean and std stacked on a new first axis."""
    return npy_bytes(np.stack(result) if isinstance(result, tuple) else result)


def json_dumps(doc):
    """A small JSON document as compact bytes."""
    return json.dumps(doc, separators=(",", ":")).encode()
