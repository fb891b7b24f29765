"""The kernel contract, the index of every op: its family, its signature, its inference form and one case.

A kernel set (``dropcore.ops.get_ops``) is built from this list and nothing else: for each op it takes the
function of that name from the set's module for the family, or, where the module has none, the NumPy reference's,
and records the op in the set's ``fallbacks``. Helpers a kernel module defines for itself (``njit``, ``im2col``,
``direct_conv_pays``) never enter a set, and two families cannot collide. Every op exists in every set of
:data:`SETS`: the NumPy reference (``kernels/reference/<family>.py``, the ground truth), Numba
(``kernels/<family>.py``) and Cython (``cython_ops``, training included); neither fast set falls back.

``inference``: the op runs in inference programs (``dropcore.program``), where a layer binds it once per batch
size to its bound form (``bound``: a :func:`bind` of a kernel of :data:`BOUND`, in ``dropcore.kernels.cython_ops``),
or, without one, calls the op itself.

``case``: one representative call (:class:`Case`). From the cases come, with nothing written per op:

- ``tests/kernels/test_contract_cases.py``: every set against the reference, every backward against finite
  differences of its forward (float64 reference), every bound kernel against its op;
- the pytest-benchmark cases of ``bench/test_kernels.py`` (``bench.cases.contract_cases``);
- the op list of ``kernels/README.md`` (:func:`markdown` writes it; a test checks that it lists every op).

Adding an op: write it in the reference and in each set's family module, add one ``_op(...)`` here with its
case; the tests and benchmarks follow.
"""
import inspect
from collections import namedtuple

# The one way a layer keys its random stream (``dropout_key(seed, step, layer)``): the dropout family's ops draw
# every mask and noise value from it (``kernels/README.md``, "Dropout randomness").
from .reference.rng import dropout_key  # noqa: F401

Op = namedtuple("Op", "name family params inference case bound")

_REQUIRED = object()

#: Every kernel set that implements the whole contract (``dropcore.ops.NAMES``).
SETS = ("reference", "numba", "cython")

FAMILIES = ("conv", "depthwise", "pool", "activation", "dropout", "dense", "norm", "loss", "merge", "elementwise",
            "pad")


class Case(namedtuple("Case", "args grad_of wrt tol")):
    """One call of an op.

    ``args``: parameter name -> value spec (:func:`normal`, :func:`uniform`, :func:`labels`, :func:`onehot`,
    :data:`KEY`, :func:`fwd`, :data:`DY`, :func:`out`, :func:`shape_of`) or a literal; omitted parameters take
    their default. ``grad_of``: for a backward op, the forward op whose case supplies :func:`fwd`, :func:`out`,
    :data:`DY` and whose derivative it computes; ``wrt``: the forward parameters the backward's outputs are the
    gradients of, in the backward's return order (``None`` for an output with no forward counterpart). A forward
    op whose outputs include its own gradient (the fused losses) names ``grad_of=None`` and ``wrt`` as
    ``{output index: parameter}``, the gradient of the sum of output 0. ``tol``: ``(rtol, atol)`` of a fast set
    against the reference, float32."""

    __slots__ = ()

    def __new__(cls, grad_of=None, wrt=(), tol=(1e-4, 1e-5), **args):
        return super().__new__(cls, args, grad_of, wrt, tol)


Spec = namedtuple("Spec", "kind value")


def normal(*shape):
    """A float32 array of standard normal values."""
    return Spec("normal", shape)


def uniform(low, high, *shape):
    """A float32 array, uniform in ``[low, high)``."""
    return Spec("uniform", (low, high, shape))


def labels(classes, n):
    """``n`` int64 class indices below ``classes``."""
    return Spec("labels", (classes, n))


def onehot(classes, n):
    """``n`` one-hot float32 rows of ``classes``."""
    return Spec("onehot", (classes, n))


def fwd(name):
    """The forward case's argument ``name``."""
    return Spec("fwd", name)


def out(index):
    """Output ``index`` of the forward call (the first output of a single-output op is 0)."""
    return Spec("out", index)


def shape_of(name):
    """The shape of the forward case's argument ``name`` (a list of shapes for a list of arrays)."""
    return Spec("shape_of", name)


def arrays(*specs):
    """A list of arrays, one per spec: the argument of an op of several inputs (``concatenate``, ``add``). A
    backward differentiating it (named once in ``wrt``) returns one gradient output per array, in order."""
    return Spec("list", specs)


#: A dropout key (``rng.dropout_key(7, 3, 1)``).
KEY = Spec("key", (7, 3, 1))
#: A random cotangent shaped like the forward's first output.
DY = Spec("dy", None)


Bind = namedtuple("Bind", "kernel run after extra")


def bind(kernel, run=("x",), after=(), **extra):
    """An op's bound form: kernel ``kernel`` of :data:`BOUND`, bound with the case's arguments of the same names
    (``x_shape``: the shape of ``x``; ``x_shapes``: those of the list ``xs``) and ``extra``; its ``run`` takes
    the case's arguments named by ``run`` (a list's arrays one by one), the output buffer, then those named by
    ``after``."""
    return Bind(kernel, tuple(run), tuple(after), extra)


def _op(name, family, params, case, inference=False, bound=None):
    """``params``: parameter names, or ``(name, default)`` pairs."""
    return Op(name, family, tuple(p if isinstance(p, tuple) else (p, _REQUIRED) for p in params), inference, case,
              bound)


_IMG = (2, 10, 9, 8)  # batch, height, width, channels: odd width, so no path relies on even sizes
_CONV = dict(x=normal(*_IMG), w=normal(3, 3, 8, 12), b=normal(12), strides=(1, 1), padding="same")
_POOL = dict(pool=(2, 2), strides=(2, 2), padding="valid")
_CONV_POOL = dict(x=normal(2, 10, 10, 4), w=normal(3, 3, 4, 6), b=normal(6), strides=(1, 1), padding="same",
                  pool=(2, 2))
_BATCH = dict(x=normal(16, 20), gamma=uniform(0.5, 1.5, 20), beta=normal(20), eps=1e-3)
_LOGITS = normal(6, 5)
#: Three inputs of a concatenation along the channels, of 8, 3 and 5 channels (odd sizes: no path relies on even).
_PARTS = arrays(normal(*_IMG), normal(2, 10, 9, 3), normal(2, 10, 9, 5))
#: The element-wise activations' fast sets against the reference: the Cython set's exp and tanh are Cephes's float32
#: polynomials (within a few ulps, tests/kernels/test_activation_ops.py), the Numba set rounds float64 once.
_ACT_TOL = (1e-5, 1e-6)


def _elementwise(name, params, grad_from, case, bound=True, **extra):
    """An element-wise activation and its backward: ``name(x, *params)`` (with ``bound``, bound as
    ``activation_kernel(x_shape, name, **extra)``; else a layer's forward calls it in programs), and
    ``name_backward(dy, v, *params)``, ``v`` its output (``grad_from`` "y") or its input ("x")."""
    kept = {p: fwd(p) for p, _ in params if p in case.args}
    v = out(0) if grad_from == "y" else fwd("x")
    backward = Case(grad_of=name, wrt=("x",), tol=case.tol, dy=DY, **{grad_from: v}, **kept)
    return (_op(name, "activation", ("x",) + params, case, inference=True,
                bound=bind("activation_kernel", name=name, **extra) if bound else None),
            _op(f"{name}_backward", "activation", ("dy", grad_from) + params, backward))

OPS = (
    _op("conv2d", "conv", ("x", "w", "b", "strides", "padding", ("relu", False)), Case(**_CONV, relu=True),
        inference=True, bound=bind("conv2d_kernel")),
    _op("conv2d_backward", "conv", ("dy", "x", "w", "strides", "padding", "has_bias", ("need_dx", True),
                                    ("relu_output", None)),
        Case(grad_of="conv2d", wrt=("x", "w", "b"), dy=DY, x=fwd("x"), w=fwd("w"), strides=fwd("strides"),
             padding=fwd("padding"), has_bias=True, relu_output=out(0))),
    _op("conv2d_max_pool", "conv", ("x", "w", "b", "strides", "padding", "pool", ("relu", False)),
        Case(**_CONV_POOL, relu=True), inference=True, bound=bind("conv2d_max_pool_kernel")),
    _op("conv2d_max_pool_backward", "conv", ("dy", "arg", "y", "x", "w", "strides", "padding", "pool", "has_bias",
                                             ("need_dx", True), ("relu", False)),
        Case(grad_of="conv2d_max_pool", wrt=("x", "w", "b"), dy=DY, arg=out(1), y=out(0), x=fwd("x"), w=fwd("w"),
             strides=fwd("strides"), padding=fwd("padding"), pool=fwd("pool"), has_bias=True, relu=True)),
    _op("depthwise_conv2d", "depthwise", ("x", "w", "b", "strides", "padding", ("relu", False), ("dilation", (1, 1))),
        Case(x=normal(*_IMG), w=normal(3, 3, 8, 2), b=normal(16), strides=(2, 1), padding="same", relu=True,
             dilation=(1, 2)), inference=True, bound=bind("depthwise_conv2d_kernel")),
    _op("depthwise_conv2d_backward", "depthwise", ("dy", "x", "w", "strides", "padding", "has_bias",
                                                   ("need_dx", True), ("relu_output", None), ("dilation", (1, 1))),
        Case(grad_of="depthwise_conv2d", wrt=("x", "w", "b"), dy=DY, x=fwd("x"), w=fwd("w"), strides=fwd("strides"),
             padding=fwd("padding"), has_bias=True, relu_output=out(0), dilation=fwd("dilation"))),
    _op("max_pool2d", "pool", ("x", "pool", "strides", "padding"), Case(x=normal(*_IMG), **_POOL),
        inference=True, bound=bind("pool2d_kernel", average=False)),
    _op("max_pool2d_backward", "pool", ("dy", "x", "y", "pool", "strides", "padding"),
        Case(grad_of="max_pool2d", wrt=("x",), dy=DY, x=fwd("x"), y=out(0), pool=fwd("pool"),
             strides=fwd("strides"), padding=fwd("padding"))),
    _op("avg_pool2d", "pool", ("x", "pool", "strides", "padding"),
        Case(x=normal(*_IMG), pool=(3, 3), strides=(2, 2), padding="same"), inference=True,
        bound=bind("pool2d_kernel", average=True)),
    _op("avg_pool2d_backward", "pool", ("dy", "x_shape", "pool", "strides", "padding"),
        Case(grad_of="avg_pool2d", wrt=("x",), dy=DY, x_shape=shape_of("x"), pool=fwd("pool"),
             strides=fwd("strides"), padding=fwd("padding"))),
    _op("global_avg_pool2d", "pool", ("x",), Case(x=normal(*_IMG)), inference=True,
        bound=bind("global_pool2d_kernel", average=True)),
    _op("global_avg_pool2d_backward", "pool", ("dy", "x_shape"),
        Case(grad_of="global_avg_pool2d", wrt=("x",), dy=DY, x_shape=shape_of("x"))),
    _op("global_max_pool2d", "pool", ("x",), Case(x=normal(*_IMG)), inference=True,
        bound=bind("global_pool2d_kernel", average=False)),
    _op("global_max_pool2d_backward", "pool", ("dy", "x", "y"),
        Case(grad_of="global_max_pool2d", wrt=("x",), dy=DY, x=fwd("x"), y=out(0))),
    _op("relu", "activation", ("x",), Case(x=normal(*_IMG)), inference=True,
        bound=bind("activation_kernel", name="relu")),
    _op("relu_backward", "activation", ("dy", "y"), Case(grad_of="relu", wrt=("x",), dy=DY, y=out(0))),
    _op("dropout", "dropout", ("x", "rate", "key", ("per_channel", False), ("offset", 0)),
        Case(x=normal(*_IMG), rate=0.3, key=KEY, offset=5), inference=True,
        bound=bind("dropout_kernel", after=("key", "offset"))),
    _op("dropout_backward", "dropout", ("dy", "rate", "key", ("per_channel", False), ("offset", 0)),
        Case(grad_of="dropout", wrt=("x",), dy=DY, rate=fwd("rate"), key=fwd("key"), offset=fwd("offset"))),
    _op("dropout_mask", "dropout", ("noise_shape", "rate", "key", ("offset", 0)),
        Case(noise_shape=(2, 1, 1, 8), rate=0.5, key=KEY), inference=True),
    _op("gaussian_noise", "dropout", ("shape", "key", ("offset", 0)),
        Case(shape=(3, 5, 7), key=KEY, offset=11, tol=(1e-6, 1e-6))),
    _op("relu_dropout", "dropout", ("x", "rate", "key", ("per_channel", False), ("offset", 0)),
        Case(x=normal(*_IMG), rate=0.5, key=KEY, per_channel=True), inference=True,
        bound=bind("dropout_kernel", after=("key",), relu=True)),
    _op("relu_dropout_backward", "dropout", ("dy", "y", "rate"),
        Case(grad_of="relu_dropout", wrt=("x",), dy=DY, y=out(0), rate=fwd("rate"))),
    _op("gaussian_dropout", "dropout", ("x", "rate", "key", ("offset", 0)),
        Case(x=normal(*_IMG), rate=0.3, key=KEY, offset=7), inference=True,
        bound=bind("gaussian_dropout_kernel", after=("key", "offset"))),
    _op("gaussian_dropout_backward", "dropout", ("dy", "m"),
        Case(grad_of="gaussian_dropout", wrt=("x",), dy=DY, m=out(1))),
    _op("add_gaussian_noise", "dropout", ("x", "stddev", "key", ("offset", 0)),
        Case(x=normal(*_IMG), stddev=0.4, key=KEY, offset=3), inference=True,
        bound=bind("gaussian_noise_kernel", after=("key", "offset"))),
    _op("alpha_dropout", "dropout", ("x", "rate", "key", ("per_channel", False), ("offset", 0)),
        Case(x=normal(*_IMG), rate=0.2, key=KEY, per_channel=True, offset=4), inference=True,
        bound=bind("alpha_dropout_kernel", after=("key", "offset"))),
    _op("alpha_dropout_backward", "dropout", ("dy", "rate", "key", ("per_channel", False), ("offset", 0)),
        Case(grad_of="alpha_dropout", wrt=("x",), dy=DY, rate=fwd("rate"), key=fwd("key"),
             per_channel=fwd("per_channel"), offset=fwd("offset"))),
    _op("drop_block2d", "dropout", ("x", "rate", "block_size", "key", ("offset", 0)),
        Case(x=normal(*_IMG), rate=0.3, block_size=3, key=KEY, offset=5), inference=True,
        bound=bind("drop_block2d_kernel", after=("key", "offset"))),
    _op("drop_block2d_backward", "dropout", ("dy", "rate", "block_size", "key", ("offset", 0)),
        Case(grad_of="drop_block2d", wrt=("x",), dy=DY, rate=fwd("rate"), block_size=fwd("block_size"),
             key=fwd("key"), offset=fwd("offset"))),
    _op("max_pool_dropout2d", "dropout", ("x", "rate", "key", "pool", "strides", "padding", ("offset", 0)),
        Case(x=normal(*_IMG), rate=0.4, key=KEY, pool=(3, 2), strides=(2, 1), padding="same", offset=5),
        inference=True, bound=bind("max_pool_dropout2d_kernel", after=("key", "offset"))),
    _op("max_pool_dropout2d_backward", "dropout", ("dy", "arg", "x_shape", "pool", "strides", "padding"),
        Case(grad_of="max_pool_dropout2d", wrt=("x",), dy=DY, arg=out(1), x_shape=shape_of("x"), pool=fwd("pool"),
             strides=fwd("strides"), padding=fwd("padding"))),
    _op("weighted_pool2d", "dropout", ("x", "rate", "pool", "strides", "padding"),
        Case(x=normal(*_IMG), rate=0.3, pool=(3, 3), strides=(2, 2), padding="same"), inference=True,
        bound=bind("weighted_pool2d_kernel")),
    _op("weighted_pool2d_backward", "dropout", ("dy", "x", "rate", "pool", "strides", "padding"),
        Case(grad_of="weighted_pool2d", wrt=("x",), dy=DY, x=fwd("x"), rate=fwd("rate"), pool=fwd("pool"),
             strides=fwd("strides"), padding=fwd("padding"))),
    _op("softmax", "activation", ("x",), Case(x=normal(6, 10)), inference=True,
        bound=bind("activation_kernel", name="softmax")),
    _op("softmax_backward", "activation", ("dy", "y"), Case(grad_of="softmax", wrt=("x",), dy=DY, y=out(0))),
    _op("sigmoid", "activation", ("x",), Case(x=normal(*_IMG)), inference=True,
        bound=bind("activation_kernel", name="sigmoid")),
    _op("sigmoid_backward", "activation", ("dy", "y"), Case(grad_of="sigmoid", wrt=("x",), dy=DY, y=out(0))),
    *_elementwise("tanh", (), "y", Case(x=normal(*_IMG), tol=_ACT_TOL)),
    *_elementwise("selu", (), "y", Case(x=normal(*_IMG), tol=_ACT_TOL)),
    *_elementwise("elu", (("alpha", 1.0),), "x", Case(x=normal(*_IMG), alpha=0.7, tol=_ACT_TOL), alpha=0.7),
    *_elementwise("leaky_relu", (("negative_slope", 0.2),), "x", Case(x=normal(*_IMG), negative_slope=0.1),
                  alpha=0.1),
    *_elementwise("relu6", (), "x", Case(x=uniform(-8, 8, *_IMG))),
    *_elementwise("hard_sigmoid", (), "x", Case(x=uniform(-5, 5, *_IMG))),
    *_elementwise("hard_swish", (), "x", Case(x=uniform(-5, 5, *_IMG))),
    *_elementwise("gelu", (("approximate", False),), "x", Case(x=normal(*_IMG), tol=_ACT_TOL)),
    *_elementwise("softplus", (), "x", Case(x=normal(*_IMG), tol=_ACT_TOL)),
    *_elementwise("silu", (), "x", Case(x=normal(*_IMG), tol=_ACT_TOL)),
    *_elementwise("mish", (), "x", Case(x=normal(*_IMG), tol=_ACT_TOL)),
    *_elementwise("clipped_relu", (("max_value", None), ("negative_slope", 0.0), ("threshold", 0.0)), "x",
                  Case(x=uniform(-3, 3, *_IMG), max_value=2.0, negative_slope=0.1, threshold=0.5), bound=False),
    _op("dense", "dense", ("x", "w", "b", ("relu", False)), Case(x=normal(5, 40), w=normal(40, 24), b=normal(24)),
        inference=True, bound=bind("dense_kernel")),
    _op("dense_backward", "dense", ("dy", "x", "w", "has_bias"),
        Case(grad_of="dense", wrt=("x", "w", "b"), dy=DY, x=fwd("x"), w=fwd("w"), has_bias=True)),
    _op("batch_norm_train", "norm", ("x", "gamma", "beta", "eps"), Case(**_BATCH)),
    _op("batch_norm_backward", "norm", ("dy", "x", "mean", "inv_std", "gamma"),
        Case(grad_of="batch_norm_train", wrt=("x", "gamma", "beta"), dy=DY, x=fwd("x"), mean=out(1),
             inv_std=out(3), gamma=fwd("gamma"))),
    # training's BatchNormalization -> ReLU (or ReLU6: cap 6) as one op; the case's cap clips a few values
    _op("batch_norm_relu_train", "norm", ("x", "gamma", "beta", "eps", ("cap", 0.0)), Case(**_BATCH, cap=1.5)),
    _op("batch_norm_relu_backward", "norm", ("dy", "y", "x", "mean", "inv_std", "gamma", ("cap", 0.0)),
        Case(grad_of="batch_norm_relu_train", wrt=("x", "gamma", "beta"), dy=DY, y=out(0), x=fwd("x"), mean=out(1),
             inv_std=out(3), gamma=fwd("gamma"), cap=fwd("cap"))),
    _op("batch_norm_infer", "norm", ("x", "gamma", "beta", "moving_mean", "moving_var", "eps"),
        Case(x=normal(*_IMG), gamma=uniform(0.5, 1.5, 8), beta=normal(8), moving_mean=normal(8),
             moving_var=uniform(0.5, 2.0, 8), eps=1e-3), inference=True, bound=bind("batch_norm_kernel")),
    _op("softmax_cross_entropy", "loss", ("logits", "labels"),
        Case(wrt={1: "logits"}, logits=_LOGITS, labels=onehot(5, 6))),
    _op("sparse_softmax_cross_entropy", "loss", ("logits", "labels"), Case(logits=_LOGITS, labels=labels(5, 6))),
    _op("sigmoid_binary_cross_entropy", "loss", ("logits", "targets"),
        Case(wrt={1: "logits"}, logits=_LOGITS, targets=uniform(0, 1, 6, 5))),
    _op("mean_squared_error", "loss", ("y", "targets"), Case(wrt={1: "y"}, y=_LOGITS, targets=normal(6, 5))),
    _op("concatenate", "merge", ("xs", "axis"), Case(xs=_PARTS, axis=3, tol=(0, 0)), inference=True,
        bound=bind("concatenate_kernel", run=("xs",))),
    _op("concatenate_backward", "merge", ("dy", "x_shapes", "axis"),
        Case(grad_of="concatenate", wrt=("xs",), dy=DY, x_shapes=shape_of("xs"), axis=fwd("axis"), tol=(0, 0))),
    _op("add", "merge", ("xs",), Case(xs=arrays(normal(*_IMG), normal(*_IMG), normal(*_IMG)), tol=(0, 0)),
        inference=True, bound=bind("add_kernel", run=("xs",))),
    _op("rescale", "elementwise", ("x", "scale", "offset"),
        Case(x=normal(*_IMG), scale=uniform(-2, 2, 8), offset=normal(8), tol=(0, 0)), inference=True,
        bound=bind("rescale_kernel")),
    _op("rescale_backward", "elementwise", ("dy", "scale"),
        Case(grad_of="rescale", wrt=("x",), dy=DY, scale=fwd("scale"), tol=(0, 0))),
    _op("zero_pad2d", "pad", ("x", "padding"), Case(x=normal(*_IMG), padding=((1, 2), (3, 0)), tol=(0, 0)),
        inference=True, bound=bind("zero_pad2d_kernel")),
    _op("zero_pad2d_backward", "pad", ("dy", "padding"),
        Case(grad_of="zero_pad2d", wrt=("x",), dy=DY, padding=fwd("padding"), tol=(0, 0))),
)

#: The bound kernels of ``cython_ops`` that inference programs run: name -> parameters. ``bind`` returns
#: ``(run, y_shape)`` (``dropcore.lowering``); each serves the ``inference`` ops whose ``bound`` names it.
BOUND = {
    "conv2d_kernel": ("x_shape", "w", "b", "strides", "padding", ("relu", False), ("activation", None),
                      ("alpha", None)),
    "conv2d_max_pool_kernel": ("x_shape", "w", "b", "strides", "padding", "relu", "pool"),
    "depthwise_conv2d_kernel": ("x_shape", "w", "b", "strides", "padding", ("relu", False), ("dilation", (1, 1)),
                                ("activation", None), ("alpha", None)),
    "dense_kernel": ("x_shape", "w", "b", ("relu", False), ("activation", None), ("alpha", None)),
    "pool2d_kernel": ("x_shape", "pool", "strides", "padding", "average"),
    "global_pool2d_kernel": ("x_shape", "average"),
    "activation_kernel": ("x_shape", "name", ("alpha", None)),
    "dropout_kernel": ("x_shape", "rate", ("per_channel", False), ("relu", False)),
    "gaussian_dropout_kernel": ("x_shape", "rate"),
    "gaussian_noise_kernel": ("x_shape", "stddev"),
    "alpha_dropout_kernel": ("x_shape", "rate", ("per_channel", False)),
    "drop_block2d_kernel": ("x_shape", "rate", "block_size"),
    "max_pool_dropout2d_kernel": ("x_shape", "rate", "pool", "strides", "padding"),
    "weighted_pool2d_kernel": ("x_shape", "rate", "pool", "strides", "padding"),
    "batch_norm_kernel": ("x_shape", "gamma", "beta", "moving_mean", "moving_var", "eps"),
    "concatenate_kernel": ("x_shapes", "axis"),
    "add_kernel": ("x_shapes",),
    "rescale_kernel": ("x_shape", "scale", "offset"),
    "zero_pad2d_kernel": ("x_shape", "padding"),
}


def by_name(name):
    """The :class:`Op` called ``name`` (KeyError naming the known ops otherwise)."""
    for op in OPS:
        if op.name == name:
            return op
    raise KeyError(f"no op {name!r} in the kernel contract; it has {[op.name for op in OPS]}")


def _signature(params):
    return inspect.Signature([
        inspect.Parameter(p[0] if isinstance(p, tuple) else p, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default=(p[1] if isinstance(p, tuple) and p[1] is not _REQUIRED
                                   else inspect.Parameter.empty))
        for p in params])


def signature(op):
    """The :class:`inspect.Signature` an implementation of ``op`` must have."""
    return _signature(op.params)


def bound_signature(name):
    """The :class:`inspect.Signature` of bound kernel ``name`` of :data:`BOUND`."""
    return _signature(BOUND[name])


def markdown():
    """The op list of ``kernels/README.md``: one row per op, with its family, whether inference runs it (and
    through which bound kernel) and its case's call."""
    rows = ["| op | family | inference | case |", "| --- | --- | --- | --- |"]
    for op in OPS:
        inf = f"yes (`{op.bound.kernel}`)" if op.bound else ("yes" if op.inference else "")
        args = ", ".join(f"{k}={_spec_text(v)}" for k, v in op.case.args.items())
        rows.append(f"| `{op.name}` | {op.family} | {inf} | {args} |")
    return "\n".join(rows)


def _spec_text(v):
    if not isinstance(v, Spec):
        return repr(v)
    if v.kind in ("normal",):
        return "x".join(map(str, v.value))
    if v.kind == "list":
        return "[" + ", ".join(_spec_text(s) for s in v.value) + "]"
    if v.kind == "uniform":
        return f"U({v.value[0]},{v.value[1]}) " + "x".join(map(str, v.value[2]))
    if v.kind in ("labels", "onehot"):
        return f"{v.kind}({v.value[1]} rows, {v.value[0]} classes)"
    if v.kind == "key":
        return "key"
    if v.kind == "dy":
        return "dy"
    return f"{v.kind}({v.value})"
