"""Model files: ``load_model`` (and ``save_model`` / ``model_to_bytes``, written by :mod:`dropcore.saving`), specified
in docs/model-format.md.

A model file is a ZIP archive (members stored uncompressed) holding ``model.json`` -- the format name and version,
the layer graph, the compile settings -- and one ``.npy`` file per array. Nothing in it can run code: layer,
optimizer and loss classes come from allow-lists (:mod:`dropcore.serialization`), arrays are float32 ``.npy`` read with
``allow_pickle=False`` once their header has been checked. Every problem found while reading raises
:class:`~dropcore.errors.ModelFileError` naming the file and what is wrong.

Saving is atomic: the archive is written under a temporary name in the target's directory, flushed and fsync'ed,
then renamed over the target, so a crash or a kill mid-save leaves the previous file as it was
(:func:`dropcore.utils.atomic_write`).
"""
import io
import json
import math
import os
import struct
import zipfile
import zlib

import numpy as np

from . import serialization as ser
from .errors import ModelFileError
from .layers.base import Input, Layer
from .model import Model, Sequential
from .saving import _F32, FORMAT_NAME, FORMAT_VERSION, JSON_MEMBER, model_to_bytes, save_model  # noqa: F401
from .serialization import Invalid
from .version import __version__

_TOP_KEYS = ("format", "format_version", "dropcore_version", "model", "compile", "optimizer_state")
_MODEL_KEYS = ("class_name", "name", "seed", "input", "layers", "output")
_LAYER_KEYS = ("class_name", "config", "inbound", "weights")
# What zipfile and zlib raise on damaged archives (a flipped flag bit can even claim encryption: RuntimeError).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError, NotImplementedError,
               struct.error, OverflowError, IndexError, KeyError)
_MAX_DEPTH = 16  # a valid description nests 8 levels deep; deeper values could exhaust the recursion limit later


# --- loading ----------------------------------------------------------------------------------------------------
def load_model(path, compile=True):
    """Read a model written by :func:`save_model` / ``Model.save``.

    ``path``: the file's path, or its bytes (``bytes``, ``bytearray``, ``memoryview``, as from
    :func:`model_to_bytes`), or a binary file object open for reading (read from its current position to the end).

    The model comes back with its weights, name and dropout seed; with ``compile=True`` (default) also compiled as
    it was saved (loss, metrics, optimizer -- with its state when the file holds it), ready to ``evaluate`` or to
    continue ``fit`` exactly. Raises ModelFileError for anything wrong in the file, FileNotFoundError when absent.
    """
    _, model, _ = _load(path, compile)
    return model


def read_model_file(path):
    """``(description, weights)`` of a model file, fully validated, without building anything to train.

    ``description`` is the parsed ``model.json`` (docs/model-format.md); ``weights`` are the float32 arrays in
    ``Model.get_weights()`` order (layer by layer, in each layer's ``weights`` order). For inference-only readers.
    """
    desc, _, weights = _load(path, False)
    return desc, weights


def _load(path, compile):
    """``(description, model, weights)`` of the file at ``path`` (or of its bytes, or of a binary file object); any
    fault in it raises ModelFileError."""
    if isinstance(path, (bytes, bytearray, memoryview)):
        source, what = io.BytesIO(path), f"from {len(path)} bytes"
    elif hasattr(path, "read"):
        data = path.read()
        if not isinstance(data, bytes):
            raise TypeError(f"load_model: the file object must be open in binary mode ('rb'); its read() returned "
                            f"{type(data).__name__}")
        source, what = io.BytesIO(data), f"from a file object ({len(data)} bytes)"
    elif isinstance(path, (str, os.PathLike)):
        source = os.fspath(path)
        what = f"'{source}'"
    else:
        raise TypeError(f"load_model: expected a path, bytes or a binary file object, received "
                        f"{type(path).__name__}")
    try:
        desc, members = _read_archive(source)
        model, weights = _rebuild(desc, members, compile)
    except Invalid as exc:
        raise ModelFileError(f"cannot load model file {what}: {exc}") from exc.__cause__
    return desc, model, weights


def _read_archive(source):
    """The parsed, header-checked ``model.json`` and every member's bytes (``source``: a path or a BytesIO)."""
    with (open(source, "rb") if isinstance(source, str) else source) as f:  # a missing file stays FileNotFoundError
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as zf:
                infos = zf.infolist()
                members = {}
                for info in infos:
                    _check_member(info, members, size)
                    try:
                        members[info.filename] = zf.read(info)  # zipfile checks each member's CRC-32
                    except _ZIP_ERRORS as exc:
                        raise Invalid(f"member '{info.filename}' is damaged ({exc})") from None
        except _ZIP_ERRORS as exc:
            raise Invalid(f"not a dropcore model file: not a readable ZIP archive ({type(exc).__name__}: {exc})") \
                from None
    if JSON_MEMBER not in members:
        raise Invalid(f"not a dropcore model file: no '{JSON_MEMBER}' in the archive")
    return _parse_json(members[JSON_MEMBER]), members


def _check_member(info, seen, archive_size):
    name = info.filename
    if name in seen:
        raise Invalid(f"the archive holds two members named '{name}'")
    if info.flag_bits & 0x1:
        raise Invalid(f"member '{name}' is marked encrypted; model files are not")
    if info.compress_type != zipfile.ZIP_STORED:
        raise Invalid(f"member '{name}' uses compression method {info.compress_type}; model files store members "
                      f"uncompressed")
    if info.file_size > archive_size:  # stored: a member cannot be larger than the archive holding it
        raise Invalid(f"member '{name}' claims {info.file_size} bytes in a {archive_size}-byte file")


def _parse_json(data):
    def unique_keys(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise Invalid(f"'{JSON_MEMBER}' repeats the key(s) {sorted({k for k in keys if keys.count(k) > 1})}")
        return dict(pairs)

    def no_constant(name):
        raise Invalid(f"'{JSON_MEMBER}' contains {name}, which is not a JSON number")

    try:
        desc = json.loads(data.decode("utf-8"), object_pairs_hook=unique_keys, parse_constant=no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Invalid(f"'{JSON_MEMBER}' is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(desc, dict):
        raise Invalid(f"'{JSON_MEMBER}' must hold a JSON object, found {type(desc).__name__}")
    if _depth(desc) > _MAX_DEPTH:
        raise Invalid(f"'{JSON_MEMBER}' nests values more than {_MAX_DEPTH} levels deep")
    if desc.get("format") != FORMAT_NAME:
        raise Invalid(f"not a dropcore model file (format {desc.get('format')!r}; expected {FORMAT_NAME!r})")
    version = desc.get("format_version")
    ser.expect_int(version, "format_version", 1)
    if version > FORMAT_VERSION:
        raise Invalid(f"written by a newer dropcore ({desc.get('dropcore_version')!r}, format version {version}); "
                      f"dropcore {__version__} reads format versions up to {FORMAT_VERSION}: upgrade dropcore")
    ser.expect_dict(desc, _TOP_KEYS, f"'{JSON_MEMBER}'")
    ser.expect_str(desc["dropcore_version"], "dropcore_version")
    return desc


def _depth(value):
    """How deeply lists and objects nest in ``value`` (without recursion: the value may be very deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            deepest = max(deepest, d)
            stack.extend((child, d + 1) for child in (v.values() if isinstance(v, dict) else v))
    return deepest


class _Arrays:
    """Hands out the archive's ``.npy`` members by the names the description gives, each used exactly once."""

    def __init__(self, members):
        self.members = members
        self.unused = set(members) - {JSON_MEMBER}

    def get(self, ref, shape, where):
        if not isinstance(ref, str) or ref not in self.members or ref == JSON_MEMBER:
            raise Invalid(f"{where}: array {ref!r} is not in the archive")
        if ref not in self.unused:
            raise Invalid(f"{where}: array '{ref}' is used twice")
        self.unused.discard(ref)
        return _decode_npy(self.members[ref], shape, f"{where} ('{ref}')")

    def check_all_used(self):
        if self.unused:
            raise Invalid(f"the archive holds member(s) the description does not use: {sorted(self.unused)}")


def _decode_npy(data, shape, where):
    """A float32 array from ``.npy`` bytes, after checking the header against what the description says."""
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f".npy version {version} is not 1.0 or 2.0")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        npy_shape, fortran, dtype = read_header(buf)
    except Exception as exc:  # noqa: BLE001 - NumPy parses the header with ast/tokenize: garbage raises many types
        raise Invalid(f"{where} is not a valid .npy array ({type(exc).__name__}: {exc})") from None
    if dtype != _F32:  # object arrays (pickles) included: refused before anything reads their data
        raise Invalid(f"{where} holds {dtype} data; expected float32 (little-endian '<f4')")
    if fortran:
        raise Invalid(f"{where} is stored in Fortran order; expected C order")
    if tuple(npy_shape) != shape:
        raise Invalid(f"{where} has shape {tuple(npy_shape)}, but the description says {shape}")
    if len(data) - buf.tell() != 4 * math.prod(shape):
        raise Invalid(f"{where} holds {len(data) - buf.tell()} data bytes; shape {shape} needs {4 * math.prod(shape)}")
    return np.ascontiguousarray(np.load(io.BytesIO(data), allow_pickle=False), dtype=np.float32)


def _rebuild(desc, members, compile):
    """The model a description builds, and its weights in ``get_weights`` order."""
    arrays = _Arrays(members)
    mdesc = ser.expect_dict(desc["model"], _MODEL_KEYS, "model")
    layers_desc = mdesc["layers"]
    if not isinstance(layers_desc, list):
        raise Invalid(f"model.layers must be a list, found {type(layers_desc).__name__}")
    layers, weights = [], []
    for i, entry in enumerate(layers_desc):
        where = f"layer {i}"
        entry = ser.expect_dict(entry, _LAYER_KEYS, where)
        if isinstance(entry["config"], dict) and isinstance(entry["config"].get("name"), str):
            where = f"layer {i} ('{entry['config']['name']}')"
        layer = ser.from_config(ser.with_added_keys({"class_name": entry["class_name"], "config": entry["config"]}),
                                ser.LAYERS, "layer", where, ser.convert_layer)
        wlist = entry["weights"]
        if not isinstance(wlist, list):
            raise Invalid(f"{where}: weights must be a list, found {type(wlist).__name__}")
        declared = []
        for j, w in enumerate(wlist):
            w = ser.expect_dict(w, ("name", "shape", "array"), f"{where}: weight {j}")
            shape = ser.expect_shape(w["shape"], f"{where}: the shape of weight {j}")
            declared.append((ser.expect_str(w["name"], f"{where}: the name of weight {j}"),
                             arrays.get(w["array"], shape, f"{where}: weight '{w['name']}'")))
        layers.append((layer, declared, where))
        weights += [a for _, a in declared]
    model = _build_graph(mdesc, layers)
    _restore_compile(model, desc, arrays, compile)
    arrays.check_all_used()
    return model, weights


def _build_graph(mdesc, layers):
    kind = mdesc["class_name"]
    if kind not in ("Model", "Sequential"):
        raise Invalid(f"model.class_name must be 'Model' or 'Sequential', found {kind!r}")
    name = ser.expect_str(mdesc["name"], "model.name")
    seed = ser.expect_int(mdesc["seed"], "model.seed", 0, 2**32 - 1)
    idesc = ser.expect_dict(mdesc["input"], ("name", "shape"), "model.input")
    shape = ser.expect_shape(idesc["shape"], "model.input.shape", low=1)
    if not shape:
        raise Invalid("model.input.shape must not be empty")
    inp = Input(shape, name=ser.expect_str(idesc["name"], "model.input.name"))
    output = ser.expect_int(mdesc["output"], "model.output", -1, len(layers) - 1)
    tensors = []
    pending = []
    try:
        for i, (layer, declared, where) in enumerate(layers):
            inbound = mdesc["layers"][i]["inbound"]
            if not isinstance(inbound, list) or not all(ser.is_int(k) and -1 <= k < i for k in inbound):
                raise Invalid(f"{where}: inbound must list earlier layers' positions (-1: the input), found "
                              f"{inbound!r}")
            if len(inbound) < (2 if layer.n_inputs is None else 1) or (layer.n_inputs == 1 and len(inbound) != 1):
                raise Invalid(f"{where}: a {type(layer).__name__} cannot take {len(inbound)} input(s)")
            if kind == "Sequential" and inbound != [i - 1]:
                raise Invalid(f"{where}: a Sequential layer's inbound must be [{i - 1}], found {inbound!r}")
            pending.append(_weights_from_file(layer, declared, where))
            parents = [inp if k == -1 else tensors[k] for k in inbound]
            tensors.append(layer(parents[0] if layer.n_inputs == 1 else parents))
        if kind == "Sequential":
            if output != len(layers) - 1 or not layers:
                raise Invalid("a Sequential model's output must be its last layer")
            model = Sequential([inp] + [la for la, _, _ in layers], name=name)
        else:
            model = Model(inp, inp if output == -1 else tensors[output], name=name)
    except (ValueError, TypeError) as exc:  # shape checks of the layers and the graph
        raise Invalid(f"the graph cannot be rebuilt: {exc}") from None
    finally:
        for layer, _, _ in layers:
            layer.__dict__.pop("add_weight", None)
    for (layer, declared, where), left in zip(layers, pending):
        if left:
            raise Invalid(f"{where}: the file has {len(declared)} weight(s) but the layer has {len(layer.weights)}")
    if [id(la) for la in model.layers] != [id(la) for la, _, _ in layers]:
        raise Invalid("the layers are not listed in the model's execution order (or some do not reach the output)")
    model._seed = seed
    return model


def _weights_from_file(layer, declared, where):
    """Make ``layer`` take its weights from the file when it builds: no random draws, no allocation, and shapes
    checked before any array the configs ask for exists (a damaged config cannot request gigabytes)."""
    left = list(declared)

    def add_weight(name, shape, initializer, trainable=True, constraint=None):
        if not left:
            raise Invalid(f"{where}: the layer has a weight '{name}' {tuple(shape)} the file does not hold")
        file_name, arr = left.pop(0)
        if file_name != name or arr.shape != tuple(shape):
            raise Invalid(f"{where}: the file's weight '{file_name}' {arr.shape} does not match the layer's weight "
                          f"'{name}' {tuple(shape)}")
        Layer.add_weight(layer, name, shape, lambda _: arr, trainable, constraint)

    layer.add_weight = add_weight  # an instance attribute, removed once the graph is built
    return left


def _restore_compile(model, desc, arrays, compile):
    cdesc, sdesc = desc["compile"], desc["optimizer_state"]
    if cdesc is None:
        if sdesc is not None:
            raise Invalid("optimizer_state is given but compile is null")
        return
    cdesc = ser.expect_dict(cdesc, ("optimizer", "loss", "metrics"), "compile")
    optimizer = ser.from_config(cdesc["optimizer"], ser.OPTIMIZERS, "optimizer", "compile.optimizer")
    loss = ser.from_config(cdesc["loss"], ser.LOSSES, "loss", "compile.loss")
    metrics = cdesc["metrics"]
    if not isinstance(metrics, list) or len(metrics) > 1 or any(m not in ser.METRICS for m in metrics):
        raise Invalid(f"compile.metrics must be [] or {list(ser.METRICS)}, found {metrics!r}")
    state = []
    if sdesc is not None:
        sdesc = ser.expect_dict(sdesc, ("iterations", "arrays"), "optimizer_state")
        iterations = ser.expect_int(sdesc["iterations"], "optimizer_state.iterations", 0)
        params = [la.weights[n] for la in model.layers for n in la.trainable_names]
        slots = ser.optimizer_slots(optimizer)
        entries = sdesc["arrays"]
        if not isinstance(entries, list) or len(entries) not in (0, slots * len(params)):
            count = len(entries) if isinstance(entries, list) else entries
            raise Invalid(f"optimizer_state.arrays must list 0 or {slots * len(params)} arrays ({slots} per "
                          f"trainable weight for {type(optimizer).__name__}), found {count!r}")
        for i, entry in enumerate(entries):
            where = f"optimizer_state.arrays[{i}]"
            entry = ser.expect_dict(entry, ("shape", "array"), where)
            expected = params[i // slots].shape
            if ser.expect_shape(entry["shape"], f"{where}.shape") != expected:
                raise Invalid(f"{where}: shape {tuple(entry['shape'])} does not match its weight's {expected}")
            state.append(arrays.get(entry["array"], expected, where))
        optimizer.set_state(state, params, iterations)
    if compile:
        model.compile(optimizer, loss, metrics)
