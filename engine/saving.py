"""Writing model files: ``save_model`` / ``model_to_bytes`` (and ``Model.save``), specified in docs/model-format.md;
:mod:`dropcore.io` reads them.

Saving is atomic: the archive is written under a temporary name in the target's directory, flushed and fsync'ed,
then renamed over the target, so a crash or a kill mid-save leaves the previous file as it was
(:func:`dropcore.utils.atomic_write`). Saving the same model twice gives the same bytes. This module reads a model
through its public attributes only and imports no model class: ``Model.save`` calls it.
"""
import io
import json
import os
import zipfile

import numpy as np

from . import serialization as ser
from .graph import _toposort
from .utils import atomic_write
from .validation import invalid
from .version import __version__

FORMAT_NAME = "dropcore"
FORMAT_VERSION = 1
JSON_MEMBER = "model.json"
_DATE = (1980, 1, 1, 0, 0, 0)  # a fixed timestamp: saving the same model twice gives the same bytes
_F32 = np.dtype("<f4")


def save_model(model, path, include_optimizer=True):
    """Write ``model`` to the file ``path`` (atomically: the previous file survives a crash mid-save).
    With ``path=None`` nothing is written and the file's bytes are returned (as :func:`model_to_bytes`).

    Saved: the layer graph with every layer's config and weights, the model's name and dropout seed, and the compile
    settings (loss, metrics, optimizer hyperparameters). ``include_optimizer=True`` also saves the optimizer's state
    (its step count and moments), so that training resumes exactly where it stopped.
    """
    if not isinstance(include_optimizer, bool):
        raise invalid("include_optimizer", "a bool", include_optimizer, "save_model")
    if path is not None and os.fspath(path).lower().endswith((".keras", ".h5", ".hdf5")):
        raise ValueError(f"save_model: {os.fspath(path)!r} names a Keras file, but dropcore writes its own format "
                         f"(docs/model-format.md), which Keras cannot read; save to a path ending in .dropcore")
    if "FILE_CLASS" not in vars(type(model)):  # declared by Model and Sequential, not inherited: a subclass of
        # them could not be rebuilt from the file as itself
        raise TypeError(f"save_model: expected a dropcore Model or Sequential, received {type(model).__name__}")
    if model.plan is None:
        raise ValueError(f"Model '{model.name}' is not built yet, so it has no weights to save: give it an Input "
                         f"or call it on data first")
    arrays = []

    def array(a):
        arrays.append((f"arrays/{len(arrays)}.npy", np.ascontiguousarray(a, dtype=_F32)))
        return arrays[-1][0]

    desc = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "dropcore_version": __version__,
            "model": _describe_graph(model, array), "compile": None, "optimizer_state": None}
    if model.loss is not None:
        desc["compile"] = {"optimizer": ser.to_config(model.optimizer, ser.OPTIMIZERS, "optimizer"),
                           "loss": ser.to_config(model.loss, ser.LOSSES, "loss"),
                           "metrics": [model.metric[0]] if model.metric is not None else []}
        if include_optimizer:
            desc["optimizer_state"] = {
                "iterations": int(model.optimizer.iterations),
                "arrays": [{"shape": list(a.shape), "array": array(a)} for a in model.optimizer.get_state()]}
    payload = json.dumps(desc, allow_nan=False, default=ser.json_default).encode("utf-8")
    if path is None:
        buffer = io.BytesIO()
        _write_archive(buffer, payload, arrays)
        return buffer.getvalue()
    _write_atomic(os.fspath(path), payload, arrays)
    return None


def model_to_bytes(model, include_optimizer=False):
    """The bytes :func:`save_model` would write for ``model``: what :func:`load_model` and
    ``Predictor.from_bytes`` read back, e.g. after shipping them to workers once. Without the optimizer's state by
    default, since receivers usually only predict."""
    return save_model(model, None, include_optimizer)


def _describe_graph(model, array):
    position = {model.input.id: -1}
    layers = []
    for t in _toposort(model.output):
        if t.layer is None:
            continue
        position[t.id] = len(layers)
        layers.append(dict(ser.layer_to_config(t.layer), inbound=[position[p.id] for p in t.inputs],
                           weights=[{"name": n, "shape": list(w.shape), "array": array(w)}
                                    for n, w in t.layer.weights.items()]))
    return {"class_name": type(model).FILE_CLASS, "name": model.name, "seed": int(model.seed),
            "input": {"name": getattr(model.input, "name", "input"), "shape": list(model.input.shape)},
            "layers": layers, "output": position[model.output.id]}


def _write_atomic(path, payload, arrays):
    # remove_stale: a later save deletes the temporary files a killed save left beside the target.
    with atomic_write(path, "wb", remove_stale=True) as f:
        _write_archive(f, payload, arrays)


def _write_archive(f, payload, arrays):
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(_member(JSON_MEMBER), payload)
        for name, a in arrays:
            with zf.open(_member(name), "w", force_zip64=a.nbytes > 2**30) as dst:
                np.save(dst, a, allow_pickle=False)


def _member(name):
    info = zipfile.ZipInfo(name, _DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info
