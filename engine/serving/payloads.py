"""Request bodies to arrays and arrays to response bodies: JSON and ``.npy``, every bad input a :class:`BadRequest`.

Why both: JSON is what any client can send, but nested lists of floats cost more to parse and print than the
prediction itself; a ``.npy`` body is the array's bytes behind a short header (``np.save`` on the client).
"""
import io
import json
import re

import numpy as np

NPY = "application/x-npy"


class BadRequest(ValueError):
    """The client's request is wrong: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


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


# JSON's float parsing is most of a JSON request (a 32x32x3 image: ~0.9 ms of json.loads and np.asarray on 2
# shared cores). The fast path parses "instances" as one flat list (no nested lists to build) after checking, with
# C-speed string operations, that its brackets and commas are exactly those of a (n, *input_shape) array; anything
# else (other layouts, NaN, strings, malformed JSON) goes the general way below, which gives the errors.
_NOT_STRUCTURE = str.maketrans("", "", "0123456789.eE+- \t\n\r")
_BRACKETS = str.maketrans("[]", "  ")
_skeletons = {}  # input shape -> one instance's brackets and commas, e.g. "[[,],[,]]" for (2, 2)


def _skeleton(shape):
    text = _skeletons.get(shape)
    if text is None:
        text = "[" + "," * (shape[-1] - 1) + "]"
        for d in reversed(shape[:-1]):
            text = "[" + ",".join([text] * d) + "]"
        _skeletons[shape] = text
    return text


def _fast_json(text, input_shape, limits):
    """``(x, rest of the document)``, or None when the body is not laid out as expected."""
    key = text.find('"instances"')
    if key < 0 or text.find('"instances"', key + 1) >= 0:
        return None
    start = text.find("[", key)
    if start < 0 or text[key + 11:start].strip() != ":":
        return None
    stops = [p for p in (text.find('"', start), text.find("}", start)) if p >= 0]
    end = text.rfind("]", start, min(stops) if stops else len(text)) + 1
    if end <= start:
        return None
    values = text[start:end]
    skeleton, one = values.translate(_NOT_STRUCTURE), _skeleton(input_shape)
    n = (len(skeleton) - 1) // (len(one) + 1)
    if n < 1 or n > limits.max_instances or skeleton != "[" + ",".join([one] * n) + "]":
        return None
    try:
        flat = json.loads("[" + values.translate(_BRACKETS) + "]")  # also checks each slot holds one number
        rest = json.loads(text[:start] + "null" + text[end:])
    except ValueError:
        return None
    if not isinstance(rest, dict):
        return None
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf: refused in check_batch
        x = np.array(flat, dtype=np.float32).reshape((n,) + tuple(input_shape))
    return x, rest


def parse_json(body, input_shape, limits):
    """``(x, mc_samples, seed)`` from a JSON body ``{"instances": [...], "mc_samples"?, "seed"?}``."""
    try:
        text = body.decode() if isinstance(body, (bytes, bytearray)) else body
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    fast = _fast_json(text, tuple(input_shape), limits)
    if fast is not None:
        x, doc = fast
    else:
        x, doc = None, _loads(text)
    unknown = sorted(set(doc) - {"instances", "mc_samples", "seed"})
    if unknown:
        raise BadRequest(f"unknown fields {unknown}; expected instances, mc_samples, seed")
    mc_samples, seed = mc_params(doc.get("mc_samples"), doc.get("seed"), limits, "JSON body")
    if x is None:
        x = _instances(doc["instances"], limits)
    return check_batch(x, input_shape, limits, "JSON body"), mc_samples, seed


def _loads(text):
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or "instances" not in doc:
        raise BadRequest('expected a JSON object with "instances": a list of inputs (or a .npy body with '
                         f'Content-Type: {NPY}), received {type(doc).__name__}')
    return doc


def _instances(instances, limits):
    if not isinstance(instances, list):
        raise BadRequest(f'"instances" must be a list of inputs, received {type(instances).__name__}')
    if len(instances) > limits.max_instances:  # before converting: the limit bounds the work too
        raise BadRequest(f"{len(instances)} instances; at most {limits.max_instances} per request")
    try:
        x = np.asarray(instances)  # no dtype yet: np.asarray(["1"], np.float32) would turn a string into 1.0
    except (ValueError, TypeError, OverflowError) as exc:  # ragged lists
        raise BadRequest(f'"instances" must be a rectangular nested list of numbers: {exc}') from None
    if x.dtype.kind not in "fiu":
        held = {"U": "strings", "b": "booleans"}.get(x.dtype.kind, "nulls, objects or ragged lists")
        raise BadRequest(f'"instances" must be a rectangular nested list of numbers; it holds {held}')
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf: refused in check_batch
        return x.astype(np.float32)


# The header np.save writes for a little-endian float32/float64 C-order array (format 1.0): read without
# ``ast.literal_eval`` (np.load's way, ~30 us of a ~100 us request). Any other header goes to np.load.
_NPY_HEADER = re.compile(rb"\{'descr': '<(f4|f8)', 'fortran_order': False, 'shape': \(((?:\d+, ?)*\d*)\), \} *\n")
_NPY_DTYPES = {b"f4": np.dtype("<f4"), b"f8": np.dtype("<f8")}


def _load_npy(body):
    """The array in ``body``: the common header directly, anything else through ``np.load``."""
    if body[:8] == b"\x93NUMPY\x01\x00" and len(body) >= 10:
        end = 10 + int.from_bytes(body[8:10], "little")
        match = _NPY_HEADER.fullmatch(body, 10, end)
        if match is not None:
            dtype = _NPY_DTYPES[match.group(1)]
            shape = tuple(int(d) for d in match.group(2).split(b",") if d.strip())
            if len(body) - end == int(np.prod(shape)) * dtype.itemsize:
                return np.frombuffer(body, dtype, offset=end).reshape(shape)
    try:
        return np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # bad magic, truncated data, object arrays (pickles refused)
        raise BadRequest(f"the body is not a readable .npy array: {exc}") from None


def parse_npy(body, query, input_shape, limits):
    """``(x, mc_samples, seed)`` from a ``.npy`` body (float32 or float64) and the query's MC parameters."""
    x = _load_npy(body)
    if not isinstance(x, np.ndarray):
        raise BadRequest(f"expected one .npy array, received {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
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
