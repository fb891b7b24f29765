"""The importer's op converters: ``CONVERTERS[op_type](cx, node, attrs)`` returns the node's output value(s), or
raises ``Unsupported`` saying which attribute (or input) is at fault. See :mod:`.importer` for the values."""
import numpy as np
from onnx import helper, numpy_helper

from ..kernels.geometry import window_1d, window_2d
from ..layers import (Add, AveragePooling2D, BatchNormalization, Concatenate, Conv2D, Dense, DepthwiseConv2D,
                      Dropout, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D, ReLU, Rescaling,
                      Reshape, ZeroPadding2D)
from .import_activations import clip, elu, gelu, hard_sigmoid, leaky_relu, selu, simple, softmax
from .values import BROKEN, NCHW, Const, Tensor, Unsupported, _Broken, check_finite, optional_const, text


def _image(cx, node, i=0):
    """Input ``i`` as an NCHW image tensor (dropcore's NHWC underneath)."""
    t = cx.tensor(node, i)
    if t.axes != NCHW:
        raise Unsupported(f"input '{node.input[i]}' is not an NCHW image here (its axes are dropcore's {t.axes}); "
                          f"dropcore's image layers read NCHW tensors only")
    return t


def _auto_pad(attrs):
    auto_pad = text(attrs.get("auto_pad", "NOTSET"))
    if auto_pad == "SAME_LOWER":
        raise Unsupported("auto_pad=SAME_LOWER not supported (dropcore pads as SAME_UPPER, TensorFlow's 'same')")
    if auto_pad not in ("NOTSET", "SAME_UPPER", "VALID"):  # read as NOTSET, it would pad otherwise than ONNX says
        raise Unsupported(f"auto_pad={auto_pad!r}: expected NOTSET, SAME_UPPER, SAME_LOWER or VALID")
    return auto_pad


def _window(node, attrs, hw, window, strides):
    """``(padding, extra)``: "valid" or "same" when the node's padding is one of those (TensorFlow's rule), else
    ``(None, ((top, bottom), (left, right)))``."""
    auto_pad = _auto_pad(attrs)
    if auto_pad in ("SAME_UPPER", "VALID"):
        return ("same" if auto_pad == "SAME_UPPER" else "valid"), None
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4 or min(pads) < 0:
        raise Unsupported(f"pads={pads} not supported (2-D, non-negative)")
    top, left, bottom, right = pads
    if not any(pads):
        return "valid", None
    _, _, rows, cols = window_2d(hw[0], hw[1], window, strides, "same")
    if (rows, cols) == ((top, bottom), (left, right)):
        return "same", None
    return None, ((top, bottom), (left, right))


def _pair(attrs, key, default=(1, 1)):
    value = tuple(attrs.get(key, default))
    if len(value) != 2:
        raise Unsupported(f"{key}={list(value)} not supported (2-D only)")
    return value


# --- convolutions -----------------------------------------------------------------------------------------------
def conv(cx, node, attrs):
    w = cx.const(node, 1, "weights")
    if w.ndim != 4:
        raise Unsupported(f"weights of shape {list(w.shape)}: dropcore has 2-D convolutions only")
    out_c, per_group, kh, kw = w.shape
    group, strides, dil = attrs.get("group", 1), _pair(attrs, "strides"), _pair(attrs, "dilations")
    if tuple(attrs.get("kernel_shape", (kh, kw))) != (kh, kw):
        raise Unsupported(f"kernel_shape={list(attrs['kernel_shape'])} disagrees with the weights {list(w.shape)}")
    _auto_pad(attrs)
    b = optional_const(cx, node, 2, "bias")
    x = _image(cx, node)
    h, wd, c = x.st.shape
    if group < 1 or per_group * group != c or out_c % group:
        raise Unsupported(f"group={group} with weights {list(w.shape)} does not fit {c} input channels (expected "
                          f"{c} / group input channels per group, and outputs divisible by group)")
    # one input channel per group: DepthwiseConv2D (its kernels, dilated or strided); other groups: Conv2D(groups)
    depthwise = group == c and group != 1
    effective = ((kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1)
    padding, extra = _window(node, attrs, (h, wd), effective, strides)
    src = x.st
    if extra is not None:  # padding TensorFlow's rule does not give: explicit zeros, then a valid convolution
        src = cx.call(ZeroPadding2D(extra, name=cx.layer_name(node, "/pad")), src)
        padding = "valid"
    name = cx.layer_name(node)

    def make(activation="linear", bias=[] if b is None else [b.reshape(-1)]):
        if depthwise:
            mult = out_c // group
            layer = DepthwiseConv2D((kh, kw), strides, padding, depth_multiplier=mult, activation=activation,
                                    use_bias=bool(bias), name=name, dilation_rate=dil)
            return cx.call(layer, src, [w.reshape(c, mult, kh, kw).transpose(2, 3, 0, 1)] + bias)
        layer = Conv2D(out_c, (kh, kw), strides, padding, activation=activation, use_bias=bool(bias), name=name,
                       dilation_rate=dil, groups=group)
        return cx.call(layer, src, [w.transpose(2, 3, 1, 0)] + bias)

    remake = {"activation": lambda act: Tensor(make(act), NCHW)}
    if b is None:  # a bias added after it (Keras's exports) goes into it
        remake["bias"] = lambda vec: Tensor(make(bias=[vec]), NCHW,
                                            remake={"activation": lambda act: Tensor(make(act, [vec]), NCHW)})
    return Tensor(make(), NCHW, remake=remake)


# --- pooling ----------------------------------------------------------------------------------------------------
def _pool(cls, average):
    def convert(cx, node, attrs):
        kernel, strides = _pair(attrs, "kernel_shape", ()), _pair(attrs, "strides")
        if _pair(attrs, "dilations") != (1, 1):
            raise Unsupported(f"dilations={list(attrs['dilations'])} not supported")
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if average and attrs.get("count_include_pad", 0) and any(pads):
            raise Unsupported(f"count_include_pad=1 with pads={pads} not supported (dropcore averages over the "
                              f"input positions only)")
        size = cx.image_size(node)  # known even when the input could not be converted: every fault reported
        if size is None:
            size = _image(cx, node).onnx_shape[2:]
        h, w = size
        padding, extra = _window(node, attrs, (h, w), kernel, strides)
        if extra is not None:
            _, _, rows, cols = window_2d(h, w, kernel, strides, "same")
            raise Unsupported(f"pads={pads} not supported: dropcore pools pad as TensorFlow's 'same' "
                              f"({[rows[0], cols[0], rows[1], cols[1]]} here) or not at all")
        if attrs.get("ceil_mode", 0):
            _, _, rows, cols = window_2d(h, w, kernel, strides, padding)
            floor = [window_1d(n + sum(p), k, s, "valid")[0] for n, p, k, s in zip((h, w), (rows, cols), kernel,
                                                                                     strides)]
            ceil = [-(-(n + sum(p) - k) // s) + 1 for n, p, k, s in zip((h, w), (rows, cols), kernel, strides)]
            if floor != ceil:
                raise Unsupported(f"ceil_mode=1 not supported (here it gives a {ceil[0]}x{ceil[1]} output where "
                                  f"dropcore's floor rule gives {floor[0]}x{floor[1]})")
        x = _image(cx, node)
        return Tensor(cx.call(cls(kernel, strides, padding, name=cx.layer_name(node)), x.st), NCHW)
    return convert


def _global_pool(cls):
    def make(cx, node, x, keepdims, name):
        st = cx.call(cls(keepdims=keepdims, name=name), x.st)
        return Tensor(st, NCHW) if keepdims else Tensor(st, (0, 1))

    def convert(cx, node, attrs):
        x, name = _image(cx, node), cx.layer_name(node)
        return _pooled(cx, node, x, name, make)
    convert.make = make
    return convert


def _pooled(cx, node, x, name, make, keepdims=True):
    if not keepdims:
        return make(cx, node, x, False, name)
    return Tensor(make(cx, node, x, True, name).st, NCHW, remake={"flatten": lambda: make(cx, node, x, False, name)})


def _reduce(pool):
    def convert(cx, node, attrs):
        if cx.opset >= 18 and len(node.input) > 1 and node.input[1]:
            axes = cx.const(node, 1, "axes")
            if axes.ndim != 1 or axes.dtype.kind not in "iu":
                raise Unsupported(f"axes (input '{node.input[1]}') of shape {list(axes.shape)} and type {axes.dtype}: "
                                  f"expected a 1-D list of integer axes")
        else:
            axes = attrs.get("axes", [])
        if sorted(int(a) % 4 for a in axes) != [2, 3]:
            raise Unsupported(f"axes={list(map(int, axes))} not supported (only the spatial axes [2, 3] of an NCHW "
                              f"image: global pooling)")
        x, name = _image(cx, node), cx.layer_name(node)
        return _pooled(cx, node, x, name, pool.make, bool(attrs.get("keepdims", 1)))
    return convert


# --- normalization, dense ---------------------------------------------------------------------------------------
def _dropcore_rows(array, order):
    """Rows of ``array`` (indexed by ONNX flat position) moved to dropcore's flat order."""
    if order is None:
        return array
    out = np.empty_like(array)
    out[order] = array
    return out


def batch_norm(cx, node, attrs):
    if attrs.get("training_mode", 0):
        raise Unsupported("training_mode=1 not supported (inference only)")
    params = [cx.const(node, i, what).reshape(-1) for i, what in
              ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance"))]
    x = cx.tensor(node, 0)
    if len(x.axes) < 2 or x.axes[1] != len(x.axes) - 1:
        raise Unsupported(f"input '{node.input[0]}': its axis 1 is not dropcore's channels (the last axis)")
    params = [_dropcore_rows(p, x.order) for p in params]
    layer = BatchNormalization(momentum=float(attrs.get("momentum", 0.9)), epsilon=float(attrs.get("epsilon", 1e-5)),
                               name=cx.layer_name(node))
    return Tensor(cx.call(layer, x.st, params), x.axes, x.order)


def _dense(cx, node, x, w, bias):
    """A Dense layer on ``x``'s last axis, rebuildable with an activation and, without a bias, with one."""
    name, units = cx.layer_name(node), w.shape[1]
    w = _dropcore_rows(w, x.order)

    def make(activation="linear", b=bias):
        layer = Dense(units, activation=activation, use_bias=b is not None, name=name)
        return Tensor(cx.call(layer, x.st, [w] + ([] if b is None else [b])), x.axes)

    remake = {"activation": make}
    if bias is None:
        remake["bias"] = lambda b: Tensor(make(b=b).st, x.axes, remake={"activation": lambda act: make(act, b)})
    return Tensor(make().st, x.axes, remake=remake)


def gemm(cx, node, attrs):
    if attrs.get("transA", 0):
        raise Unsupported("transA=1 not supported")
    w = cx.const(node, 1, "weights")
    if w.ndim != 2:
        raise Unsupported(f"weights of shape {list(w.shape)} (expected a matrix)")
    w = (w.T if attrs.get("transB", 0) else w) * np.float32(attrs.get("alpha", 1.0))
    c = optional_const(cx, node, 2, "bias")
    bias = None
    if c is not None:
        if c.size not in (1, w.shape[1]) or c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1):
            raise Unsupported(f"a bias (C) of shape {list(c.shape)} not supported (one value per unit)")
        bias = np.broadcast_to(c.reshape(-1) * np.float32(attrs.get("beta", 1.0)), (w.shape[1],)).astype(np.float32)
    x = cx.tensor(node, 0)
    if len(x.axes) != 2 or x.st.shape[0] != w.shape[0]:
        raise Unsupported(f"input '{node.input[0]}' of shape {list(x.onnx_shape)} does not fit weights "
                          f"{list(w.shape)}")
    return _dense(cx, node, x, w, bias)


def matmul(cx, node, attrs):
    w = cx.const(node, 1, "weights")
    if w.ndim != 2:
        raise Unsupported(f"weights of shape {list(w.shape)} (expected a matrix)")
    x = cx.tensor(node, 0)
    last = len(x.axes) - 1
    if x.axes[-1] != last or x.st.shape[-1] != w.shape[0]:
        raise Unsupported(f"input '{node.input[0]}' of shape {list(x.onnx_shape)} (its last axis must be "
                          f"dropcore's last, of {w.shape[0]} features)")
    return _dense(cx, node, x, w, None)


# --- arithmetic -------------------------------------------------------------------------------------------------
def _channel_values(t, c):
    """Constant ``c`` broadcast on ``t``: a float, or one value per channel (dropcore's last axis), as Rescaling
    takes them."""
    rank = len(t.axes)
    if c.size == 1:
        return float(c.reshape(()))
    shape = (1,) * (rank - c.ndim) + tuple(c.shape)
    big = [i for i, d in enumerate(shape) if d != 1]
    if c.ndim > rank or len(big) != 1 or big[0] == 0 or t.axes[big[0]] != rank - 1 \
            or shape[big[0]] != t.onnx_shape[big[0]]:
        raise Unsupported(f"a constant of shape {list(c.shape)} on a tensor of shape {list(t.onnx_shape)} not "
                          f"supported (a scalar or one value per channel)")
    return [float(v) for v in _dropcore_rows(c.reshape(-1).astype(np.float32), t.order)]


def _add_tensors(cx, node, ts):
    keys = {(t.axes, t.st.shape, None if t.order is None else t.order.tobytes()) for t in ts}
    if len(keys) != 1:
        raise Unsupported(f"inputs of different shapes or layouts ({[list(t.onnx_shape) for t in ts]}): "
                          f"broadcasting not supported")
    return Tensor(cx.call(Add(name=cx.layer_name(node)), [t.st for t in ts]), ts[0].axes, ts[0].order)


def _arith(op):
    def convert(cx, node, attrs):
        a, b = cx.value(node, 0), cx.value(node, 1)
        if a is BROKEN or b is BROKEN:
            raise _Broken()
        if isinstance(a, Const) and isinstance(b, Const):
            if BATCH in a.array or BATCH in b.array:
                raise Unsupported("arithmetic on the batch size not supported")
            return Const({"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](a.array,
                                                                                                     b.array))
        if isinstance(a, Tensor) and isinstance(b, Tensor):
            if op != "Add":
                raise Unsupported(f"{op} of two computed tensors not supported (only Add)")
            return _add_tensors(cx, node, [a, b])
        t, c, t_first = (a, b.array, True) if isinstance(a, Tensor) else (b, a.array, False)
        if op == "Div" and not t_first:
            raise Unsupported("a constant divided by a computed tensor not supported")
        c = c.astype(np.float32)
        check_finite(c, f"the constant '{node.input[1 if t_first else 0]}'")
        sole, name = cx.sole_use(node.input[0 if t_first else 1]), cx.layer_name(node)
        if op in ("Add", "Sub"):
            values = _channel_values(t, -c if (op == "Sub" and t_first) else c)
            sign = -1.0 if (op == "Sub" and not t_first) else 1.0
            if sign == 1.0 and sole and "bias" in t.remake:  # MatMul + Add: one Dense
                return t.remake["bias"](np.broadcast_to(np.float32(values), (t.st.shape[-1],)).astype(np.float32))
            if sign == 1.0 and sole and "offset" in t.remake:  # Mul + Add: one Rescaling
                return t.remake["offset"](values)
            return Tensor(cx.call(Rescaling(sign, values, name=name), t.st), t.axes, t.order)
        scale = _channel_values(t, 1.0 / c if op == "Div" else c)

        def make(offset=0.0):
            return Tensor(cx.call(Rescaling(scale, offset, name=name), t.st), t.axes, t.order)
        return Tensor(make().st, t.axes, t.order, remake={"offset": make})
    return convert


def sum_(cx, node, attrs):
    ts = [cx.tensor(node, i) for i in range(len(node.input))]
    return ts[0] if len(ts) == 1 else _add_tensors(cx, node, ts)


# --- shapes and layout ------------------------------------------------------------------------------------------
#: the most features a flattened NCHW tensor may have: its (C, H, W) order is kept as an array (a Dense reading it
#: would need as many weight rows: 256 MiB of them per unit at this size)
MAX_REORDERED = 2**26


def _flatten(cx, node, x):
    if len(x.axes) == 2:
        return x
    if "flatten" in x.remake and cx.sole_use(node.input[0]):
        return x.remake["flatten"]()
    shape = x.st.shape
    size = int(np.prod(shape, dtype=np.float64))
    if size > MAX_REORDERED:  # the reordering below would take 8 bytes a feature
        raise Unsupported(f"input '{node.input[0]}' of shape {list(x.onnx_shape)} flattens to {size} features "
                          f"per sample; dropcore reorders at most {MAX_REORDERED} NCHW features into its order")
    order = np.arange(size).reshape(shape).transpose([a - 1 for a in x.axes[1:]]).ravel()
    order = None if np.array_equal(order, np.arange(order.size)) else order
    return Tensor(cx.call(Flatten(name=cx.layer_name(node)), x.st), (0, 1), order)


def flatten(cx, node, attrs):
    x = cx.tensor(node, 0)
    axis = int(attrs.get("axis", 1))
    if axis % len(x.axes) != 1:
        raise Unsupported(f"axis={axis} not supported (only 1: (batch, features))")
    return _flatten(cx, node, x)


def reshape(cx, node, attrs):
    target = [int(d) for d in cx.const(node, 1, "shape").reshape(-1)]
    allowzero = attrs.get("allowzero", 0)
    x = cx.tensor(node, 0)
    size = int(np.prod(x.st.shape))
    batch_kept = target[:1] in ([-1], [BATCH]) or (target[:1] == [0] and not allowzero) or \
        (cx.batch is not None and target[:1] == [cx.batch])
    if BATCH in target[1:]:
        raise Unsupported(f"shape={target} moves the batch size")
    if batch_kept and len(target) == 2 and target[1] in (-1, size):
        return _flatten(cx, node, x)
    if batch_kept and len(target) > 1 and x.axes == tuple(range(len(x.axes))) and x.order is None:
        dims = [x.onnx_shape[i] if d == 0 and not allowzero and i < len(x.axes) else d
                for i, d in enumerate(target)][1:]
        return Tensor(cx.call(Reshape(dims, name=cx.layer_name(node)), x.st), tuple(range(len(target))))
    raise Unsupported(f"shape={target} not supported (only (batch, -1) flattening, or a reshape of data in "
                      f"dropcore's channels-last layout keeping the batch)")


def transpose(cx, node, attrs):
    x = cx.tensor(node, 0)
    perm = [int(p) for p in attrs.get("perm", range(len(x.axes) - 1, -1, -1))]
    if sorted(perm) != list(range(len(x.axes))):
        raise Unsupported(f"perm={perm} on input '{node.input[0]}' of rank {len(x.axes)}: expected a permutation of "
                          f"{list(range(len(x.axes)))}")
    if perm[0] != 0 or (x.order is not None and perm != [0, 1]):
        raise Unsupported(f"perm={perm} not supported (the batch axis must stay first)")
    return _relabel(x, perm)


def _relabel(t, perm):
    """``t`` seen through a Transpose: the same dropcore tensor, its axes relabelled (no layer), its rebuilders
    too."""
    return Tensor(t.st, tuple(t.axes[p] for p in perm), t.order,
                  {k: (lambda *a, f=f: _relabel(f(*a), perm)) for k, f in t.remake.items()})


def gather(cx, node, attrs):
    """A permutation of a flat tensor's features (the exporter's way back to dropcore's order): no layer, its
    ``order`` changes."""
    indices = cx.const(node, 1, "indices")
    data = cx.value(node, 0)
    if isinstance(data, Const):  # shape arithmetic (the batch size of a Reshape)
        shape, axis = data.array.shape, int(attrs.get("axis", 0))
        if not -len(shape) <= axis < len(shape) or indices.dtype.kind not in "iu" or \
                (indices.size and not -shape[axis] <= indices.min() <= indices.max() < shape[axis]):
            raise Unsupported(f"axis={axis} with indices {indices.tolist()} on the constant '{node.input[0]}' of shape "
                              f"{list(shape)}: expected an axis of it and integer indices within its size there")
        return Const(np.take(data.array, indices, axis=axis))
    x = cx.tensor(node, 0)
    n = x.st.shape[-1] if len(x.axes) == 2 else 0
    if int(attrs.get("axis", 0)) % max(len(x.axes), 1) != 1 or indices.ndim != 1 or n == 0 \
            or not np.array_equal(np.sort(indices % n), np.arange(n)):
        raise Unsupported(f"axis={attrs.get('axis', 0)} with indices of shape {list(indices.shape)} not supported "
                          f"(only a permutation of the features of a (batch, features) tensor)")
    order = (np.arange(n) if x.order is None else x.order)[indices % n]
    return Tensor(x.st, x.axes, None if np.array_equal(order, np.arange(n)) else order)


def concat(cx, node, attrs):
    values = [cx.value(node, i) for i in range(len(node.input))]
    if values and all(isinstance(v, Const) for v in values):  # shape arithmetic
        arrays, axis = [v.array for v in values], int(attrs["axis"])
        rank = arrays[0].ndim
        if any(a.ndim != rank for a in arrays) or not -rank <= axis < rank or \
                len({a.shape[:axis % rank] + a.shape[axis % rank + 1:] for a in arrays}) != 1:
            raise Unsupported(f"axis={axis} on constants of shapes {[list(a.shape) for a in arrays]}: expected one "
                              f"rank, an axis of it, and the same sizes on the other axes")
        return Const(np.concatenate(arrays, axis=axis))
    ts = [cx.tensor(node, i) for i in range(len(node.input))]
    axis = int(attrs["axis"]) % len(ts[0].axes)
    if len({t.axes for t in ts}) != 1 or any(t.order is not None for t in ts) or axis == 0:
        raise Unsupported(f"axis={attrs['axis']} on inputs {[list(t.onnx_shape) for t in ts]} not supported")
    layer = Concatenate(axis=ts[0].axes[axis], name=cx.layer_name(node))
    return Tensor(cx.call(layer, [t.st for t in ts]), ts[0].axes)


def pad(cx, node, attrs):
    mode = text(attrs.get("mode", "constant"))
    if mode != "constant":
        raise Unsupported(f"mode={mode} not supported (zero padding only)")
    if cx.opset >= 11:
        pads, value = cx.const(node, 1, "pads"), cx.const(node, 2, "constant_value", default=0.0)
        if len(node.input) > 3 and node.input[3]:
            raise Unsupported("the axes input not supported")
    else:
        pads, value = np.asarray(attrs.get("pads", [])), np.asarray(attrs.get("value", 0.0))
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    if float(np.asarray(value).reshape(-1)[0] if np.asarray(value).size else 0.0) != 0.0:
        raise Unsupported(f"constant_value={float(np.asarray(value).reshape(-1)[0])} not supported (zeros only)")
    if len(pads) != 8 or min(pads) < 0 or pads[0] or pads[1] or pads[4] or pads[5]:
        raise Unsupported(f"pads={pads} not supported (non-negative, on the spatial axes of an NCHW image only)")
    x = _image(cx, node)
    layer = ZeroPadding2D(((pads[2], pads[6]), (pads[3], pads[7])), name=cx.layer_name(node))
    return Tensor(cx.call(layer, x.st), NCHW)


# --- shape arithmetic: constants, with the batch size as a marker ---------------------------------------------
#: the batch size in a Shape's result: unknown until run time, so only a Reshape may use it (to keep the batch)
BATCH = -(2 ** 62)


def shape(cx, node, attrs):
    v = cx.value(node, 0)
    if v is BROKEN:
        raise _Broken()
    dims = np.asarray(v.array.shape if isinstance(v, Const) else (BATCH,) + v.onnx_shape[1:], np.int64)
    return Const(dims[int(attrs.get("start", 0)):attrs.get("end", len(dims))])


def cast(cx, node, attrs):
    v = cx.value(node, 0)
    if v is BROKEN:
        raise _Broken()
    to = helper.tensor_dtype_to_np_dtype(attrs["to"])
    if isinstance(v, Const):
        if BATCH in v.array and to != np.int64:
            raise Unsupported(f"to={to} of a shape holding the batch size not supported")
        return Const(v.array.astype(to))
    if to != np.float32:
        raise Unsupported(f"to={to} not supported (dropcore computes in float32)")
    return v  # float32 to float32: nothing to do


def _axes(cx, node, attrs):
    if cx.opset >= 13:
        return [int(a) for a in cx.const(node, 1, "axes", default=[]).reshape(-1)]
    return [int(a) for a in attrs.get("axes", [])]


def unsqueeze(cx, node, attrs):
    v, axes = cx.value(node, 0), _axes(cx, node, attrs)
    if v is BROKEN:
        raise _Broken()
    if not isinstance(v, Const):
        raise Unsupported("Unsqueeze of a computed tensor not supported (shape arithmetic only)")
    out = v.array
    rank = out.ndim + len(axes)
    if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        raise Unsupported(f"axes={axes} on the constant '{node.input[0]}' of shape {list(out.shape)}: expected "
                          f"distinct axes of the rank-{rank} result")
    for a in sorted(a % rank for a in axes):
        out = np.expand_dims(out, a)
    return Const(out)


def squeeze(cx, node, attrs):
    v, axes = cx.value(node, 0), _axes(cx, node, attrs)
    if v is BROKEN:
        raise _Broken()
    if not isinstance(v, Const):
        raise Unsupported("Squeeze of a computed tensor not supported (shape arithmetic only)")
    shape = v.array.shape
    if any(not -len(shape) <= a < len(shape) or shape[a] != 1 for a in axes):
        raise Unsupported(f"axes={axes} on the constant '{node.input[0]}' of shape {list(shape)}: expected axes of "
                          f"it, each of size 1")
    return Const(np.squeeze(v.array, axis=tuple(a % len(shape) for a in axes) if axes else None))


# --- the rest ---------------------------------------------------------------------------------------------------
def dropout(cx, node, attrs):
    if cx.opset < 12:
        ratio = attrs.get("ratio", 0.5)
    else:
        ratio = cx.const(node, 1, "ratio", default=0.5)
    ratio = float(np.asarray(ratio).reshape(()))
    if not 0.0 <= ratio < 1.0:
        raise Unsupported(f"ratio={ratio} not supported (in [0, 1))")
    x = cx.tensor(node, 0)
    if ratio == 0.0:
        return x
    return Tensor(cx.call(Dropout(ratio, name=cx.layer_name(node)), x.st), x.axes, x.order)


def identity(cx, node, attrs):
    v = cx.value(node, 0)
    if v is BROKEN:
        raise _Broken()
    return v


def constant(cx, node, attrs):
    if "value" in attrs:
        return Const(numpy_helper.to_array(attrs["value"]))
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):
        if key in attrs:
            return Const(np.asarray(attrs[key], dtype))
    raise Unsupported(f"attribute {sorted(attrs)} not supported (value, value_float(s), value_int(s))")


_global_avg, _global_max = _global_pool(GlobalAveragePooling2D), _global_pool(GlobalMaxPooling2D)

CONVERTERS = {
    "Conv": conv, "MaxPool": _pool(MaxPooling2D, False), "AveragePool": _pool(AveragePooling2D, True),
    "GlobalAveragePool": _global_avg, "GlobalMaxPool": _global_max,
    "ReduceMean": _reduce(_global_avg), "ReduceMax": _reduce(_global_max),
    "BatchNormalization": batch_norm, "Gemm": gemm, "MatMul": matmul,
    "Relu": simple("relu", ReLU), "Sigmoid": simple("sigmoid"), "Tanh": simple("tanh"), "Softmax": softmax,
    "Selu": selu, "LeakyRelu": leaky_relu, "Elu": elu, "HardSigmoid": hard_sigmoid, "Gelu": gelu, "Clip": clip,
    "HardSwish": simple("hard_swish"), "Softplus": simple("softplus"), "Mish": simple("mish"),
    "Add": _arith("Add"), "Sub": _arith("Sub"), "Mul": _arith("Mul"), "Div": _arith("Div"), "Sum": sum_,
    "Flatten": flatten, "Reshape": reshape, "Transpose": transpose, "Gather": gather, "Concat": concat, "Pad": pad,
    "Dropout": dropout, "Identity": identity, "Constant": constant,
    "Shape": shape, "Cast": cast, "Unsqueeze": unsqueeze, "Squeeze": squeeze,
}
