"""Which of each layer's paths run on compiled kernels, found by running them: the table of ``docs/layers.md``.

A layer has up to three paths: training (its ``forward`` and the backward it returns, on the default kernel set),
inference (its steps in a compiled program) and Monte-Carlo inference (the same with dropout active; only the
stochastic layers differ there). Each is one of:

- ``compiled``: all the work on the activations runs in the kernels (``dropcore.kernels``);
- ``NumPy``: some of it runs NumPy code of the layer's own (the operations seen are listed): a path still to move
  onto kernels;
- ``view``: a reshape, no work; ``identity``: no step at all (a dropout layer outside Monte-Carlo inference).

How: training runs the layer's forward and backward on inputs of an ``ndarray`` subclass that notes every NumPy
ufunc or array function applied to it (or to an array derived from it) from code outside ``dropcore.kernels``; the
inference paths compile the layer alone into a program (:meth:`dropcore.program.Program.step_calls` says where
each bound kernel is defined) and run any step defined outside the kernels on tripwired inputs the same way. A copy
made by slice assignment calls no NumPy function and is not seen: a layer whose only work is one (ZeroPadding2D)
reads "NumPy (a copy)". Nothing is declared by hand: a layer that moves onto kernels changes the table, and
``tests/engine/test_compiled_paths.py`` asks for ``docs/layers.md`` to be written again
(``python -m dropcore.compiled_paths docs/layers.md``).
"""
import pathlib
import sys
from collections import namedtuple

import numpy as np

from .layers.base import Context
from .layers.registry import LAYERS

#: One example of a layer: the table's row ``label``, the registered ``cls`` name, its constructor ``kwargs`` and
#: the sample shape of each input (two, the same, for the merge layers).
Example = namedtuple("Example", "label cls kwargs inputs")

_IMAGE = (6, 6, 4)
EXAMPLES = (
    Example("Conv2D", "Conv2D", dict(filters=4, kernel_size=3, padding="same"), (_IMAGE,)),
    Example("Conv2D, groups=2", "Conv2D", dict(filters=4, kernel_size=3, groups=2), (_IMAGE,)),
    Example("Conv2D, dilation_rate=2", "Conv2D", dict(filters=4, kernel_size=3, dilation_rate=2), (_IMAGE,)),
    Example("DepthwiseConv2D", "DepthwiseConv2D", dict(kernel_size=3, padding="same"), (_IMAGE,)),
    Example("SeparableConv2D", "SeparableConv2D", dict(filters=4, kernel_size=3), (_IMAGE,)),
    Example("Dense", "Dense", dict(units=3), ((8,),)),
    Example("MaxPooling2D", "MaxPooling2D", dict(pool_size=2), (_IMAGE,)),
    Example("AveragePooling2D", "AveragePooling2D", dict(pool_size=2), (_IMAGE,)),
    Example("GlobalAveragePooling2D", "GlobalAveragePooling2D", {}, (_IMAGE,)),
    Example("GlobalMaxPooling2D", "GlobalMaxPooling2D", {}, (_IMAGE,)),
    Example("BatchNormalization", "BatchNormalization", {}, (_IMAGE,)),
    Example("Activation, relu", "Activation", dict(activation="relu"), (_IMAGE,)),
    Example("Activation, tanh", "Activation", dict(activation="tanh"), (_IMAGE,)),
    Example("Activation, sigmoid", "Activation", dict(activation="sigmoid"), (_IMAGE,)),
    Example("Activation, selu", "Activation", dict(activation="selu"), (_IMAGE,)),
    Example("Activation, gelu", "Activation", dict(activation="gelu"), (_IMAGE,)),
    Example("Activation, hard_swish", "Activation", dict(activation="hard_swish"), (_IMAGE,)),
    Example("ReLU", "ReLU", {}, (_IMAGE,)),
    Example("ReLU, max_value=6", "ReLU", dict(max_value=6.0), (_IMAGE,)),
    Example("LeakyReLU", "LeakyReLU", dict(negative_slope=0.1), (_IMAGE,)),
    Example("ELU", "ELU", {}, (_IMAGE,)),
    Example("Softmax", "Softmax", {}, ((8,),)),
    Example("Rescaling", "Rescaling", dict(scale=0.5, offset=0.1), (_IMAGE,)),
    Example("ZeroPadding2D", "ZeroPadding2D", dict(padding=1), (_IMAGE,)),
    Example("Flatten", "Flatten", {}, (_IMAGE,)),
    Example("Reshape", "Reshape", dict(target_shape=(-1,)), (_IMAGE,)),
    Example("Add", "Add", {}, (_IMAGE, _IMAGE)),
    Example("Concatenate", "Concatenate", {}, (_IMAGE, _IMAGE)),
    Example("Dropout", "Dropout", dict(rate=0.5), (_IMAGE,)),
    Example("SpatialDropout2D", "SpatialDropout2D", dict(rate=0.5), (_IMAGE,)),
    Example("DropBlock2D", "DropBlock2D", dict(rate=0.2, block_size=3), (_IMAGE,)),
    Example("MaxPoolingDropout2D", "MaxPoolingDropout2D", dict(rate=0.3), (_IMAGE,)),
    Example("GaussianDropout", "GaussianDropout", dict(rate=0.3), (_IMAGE,)),
    Example("GaussianNoise", "GaussianNoise", dict(stddev=0.2), (_IMAGE,)),
    Example("AlphaDropout", "AlphaDropout", dict(rate=0.2), (_IMAGE,)),
)

PATHS = ("training", "inference", "monte_carlo")
_KERNELS = "dropcore.kernels"


class _Tripwire(np.ndarray):
    """An array that notes, in ``_Tripwire.seen``, each NumPy operation applied to it from outside the kernels."""

    seen = None  # set of operation names while a path runs

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _note(ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}")
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        return _wrap(getattr(ufunc, method)(*(_plain(a) for a in inputs), **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        _note(func.__name__)
        return _wrap(func(*_plain_tree(args), **{k: _plain_tree(v) for k, v in kwargs.items()}))


def _note(name):
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "numpy":
        frame = frame.f_back  # a NumPy function implemented in Python: whoever called it
    module = frame.f_globals.get("__name__", "") if frame is not None else ""
    if not module.startswith(_KERNELS) and _Tripwire.seen is not None:
        _Tripwire.seen.add(name)


def _plain(a):
    return a.view(np.ndarray) if isinstance(a, _Tripwire) else a


def _plain_tree(a):
    if isinstance(a, (list, tuple)):
        return type(a)(_plain_tree(v) for v in a)
    return _plain(a)


def _wrap(result):
    if isinstance(result, np.ndarray) and not isinstance(result, _Tripwire):
        return result.view(_Tripwire)
    if isinstance(result, (list, tuple)):
        return type(result)(_wrap(r) for r in result)
    return result


class _CountingOps:
    """A kernel set that counts the op calls made through it, and tripwires the activations they return (arrays of
    ``batch`` rows: what the layer then does with a kernel's output is seen too; a batch norm's per-channel
    statistics are not activations)."""

    def __init__(self, ops, batch):
        self._ops, self._batch, self.calls = ops, batch, []

    def _activations(self, result):
        if isinstance(result, np.ndarray) and result.ndim >= 2 and result.shape[0] == self._batch:
            return _wrap(result)
        if isinstance(result, (list, tuple)):
            return type(result)(self._activations(r) for r in result)
        return result

    def __getattr__(self, name):
        fn = getattr(self._ops, name)
        if not callable(fn):
            return fn

        def call(*args, **kwargs):
            self.calls.append(name)
            return self._activations(fn(*args, **kwargs))

        return call


def _built(example):
    """A built model of ``Input(s) -> layer`` and the layer."""
    import dropcore
    from dropcore import layers

    x = layers.Input(example.inputs[0])  # a model has one input: a merge layer takes it twice
    layer = LAYERS[example.cls](**example.kwargs)
    out = layer([x] * len(example.inputs) if len(example.inputs) > 1 else x)
    return dropcore.Model(x, out), layer


def _verdict(layer, xs, ctx, ops, backward):
    """Run ``layer.forward`` (and, with ``backward``, its backprop) on tripwired inputs: "compiled", "NumPy (...)"
    with the operations seen, or "view" when nothing ran and the output is a view of the input."""
    rng = np.random.default_rng(0)
    xs = [x.view(_Tripwire) for x in xs]
    counting = _CountingOps(ops, len(xs[0]))
    _Tripwire.seen = set()
    try:
        y, backprop = layer.forward(counting, xs if len(xs) > 1 else xs[0], ctx)
        pairs = [(y, x) for x in xs]
        if backward:
            dy = rng.standard_normal(y.shape).astype(np.float32).view(_Tripwire)
            dxs = backprop(dy)
            pairs += [(dx, dy) for dx in (dxs if len(xs) > 1 else [dxs])]
        seen = sorted(_Tripwire.seen)
    finally:
        _Tripwire.seen = None
    views = all(np.shares_memory(_plain(a), _plain(b)) for a, b in pairs)
    if seen:
        return "NumPy (" + ", ".join(seen) + ")"
    if counting.calls:
        return "compiled"
    return "view" if views else "NumPy (a copy)"  # a slice assignment: no NumPy function, no kernel


def _inputs(example):
    rng = np.random.default_rng(0)
    return [rng.standard_normal((2,) + s).astype(np.float32) for s in example.inputs]


def _inference(model, layer, example, mc):
    from dropcore import lowering
    from dropcore.ops import get_ops
    from dropcore.program import compile_program

    program = compile_program(model.graph, example.inputs[0], mc=mc)
    if program is None:
        raise ImportError("the Cython kernels are not built: the inference paths cannot be examined")
    ctx = Context(dropout=mc)
    own = [call for call in program.step_calls(_inputs(example)[0], ctx) if call.layer == layer.name]
    if not own:
        return "identity"
    if all(call.run is None for call in own):
        return "view"
    verdicts = set()
    for call in own:
        if call.run is None or call.source.startswith(_KERNELS):
            continue
        if call.source == lowering.__name__:  # the layer's own forward, on the inference kernel set
            verdicts.add(_verdict(layer, [a.copy() for a in call.inputs], ctx, get_ops("cython"), False))
        else:  # kernels called from the layer's own code: which NumPy work it adds
            verdicts.add(_run_verdict(call))
    return "; ".join(sorted(verdicts)) or "compiled"


def _run_verdict(call):
    _Tripwire.seen = set()
    try:
        call._replace(inputs=tuple(a.view(_Tripwire) for a in call.inputs))()
        seen = sorted(_Tripwire.seen)
    finally:
        _Tripwire.seen = None
    return f"NumPy ({', '.join(seen)})" if seen else "compiled"


def paths(example):
    """``{path: verdict}`` for one :class:`Example` (see the module docstring)."""
    from dropcore.ops import get_ops

    model, layer = _built(example)
    found = {"training": _verdict(layer, _inputs(example), Context(training=True, dropout=True), get_ops(), True),
             "inference": _inference(model, layer, example, mc=False)}
    found["monte_carlo"] = _inference(model, layer, example, mc=True) if layer.stochastic else "as inference"
    return found


def markdown():
    """The table of ``docs/layers.md``: one row per :data:`EXAMPLES` entry."""
    rows = ["| layer | training (forward and backward) | inference | Monte-Carlo inference |",
            "| --- | --- | --- | --- |"]
    for example in EXAMPLES:
        found = paths(example)
        rows.append(f"| {example.label} | " + " | ".join(found[p] for p in PATHS) + " |")
    return "\n".join(rows) + "\n"


BEGIN, END = "<!-- paths: written by `python -m dropcore.compiled_paths docs/layers.md` -->", "<!-- paths: end -->"


def update(path):
    """Replace the table between the marker comments of the file ``path`` with :func:`markdown`."""
    text = pathlib.Path(path).read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    pathlib.Path(path).write_text(f"{head}{BEGIN}\n{markdown()}{END}{tail}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        update(sys.argv[1])
        print(f"wrote the table of {sys.argv[1]}")
    else:
        print(markdown(), end="")
