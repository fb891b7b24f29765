"""An inference program: a model's plan compiled into a flat list of Cython kernel calls on reused buffers.

Why: a service's requests are small, and at batch 1 the per-layer Python of the training executor (the plan's
bookkeeping, each layer's ``forward`` and closure, each kernel wrapper's checks and allocations: 3-5 us a layer)
was a third of a prediction. A program works the geometry out once per batch size and binds each step to the
kernel that suits it; a prediction is then one loop of kernel calls on preallocated buffers. It also fuses what
only inference allows: a convolution and the max pooling after it run in one pass (the convolution's output never
goes to memory: cifar's first layer writes 59 MB at batch 256 otherwise), and a ReLU that the executor moved into a
Dropout (the identity in inference) goes back into the kernel before it.

A program covers chains of Conv2D, Dense, MaxPooling2D, AveragePooling2D, BatchNormalization (moving statistics),
Flatten, Dropout and relu, softmax, sigmoid or linear activations; for anything else (branches, tanh),
:func:`compile_program` returns ``None`` and the Predictor runs the plan as ``Model.predict`` does.

Weights are bound by reference and whatever derives from them (batch normalization's scale) is worked out per
call, so a program stays right while its model trains: every weight update in dropcore is in place.

Thread safety: the bound kernels are shared and read-only; the buffers are per thread (each thread keeps those of
its last two batch sizes, up to ``KEEP_BYTES`` each: a service holds its intermediate activations per serving
thread).
"""
import threading

import numpy as np

from .layers.conv import Conv2D
from .layers.core import Activation, Dense, Flatten
from .layers.dropout import Dropout
from .layers.normalization import BatchNormalization
from .layers.pooling import AveragePooling2D, MaxPooling2D

#: Per thread, the buffers of at most this many batch sizes are kept between calls, and only sets of at most
#: ``KEEP_BYTES`` (``mnist_cnn`` at batch 256 needs about 30 MB).
KEEP_SIZES = 2
KEEP_BYTES = 128 * 2**20
#: Activations a program applies (after the kernel of the layer, or as a layer of their own).
ACTIVATIONS = ("linear", "relu", "softmax", "sigmoid")


def _chain(plan):
    """The plan's steps when they form one chain from the input to the output, else ``None``."""
    current = plan.input_id
    for step in plan.steps:
        if step.inputs != (current,):
            return None
        current = step.output
    return plan.steps if current == plan.output_id else None


def _reshape(rows_of):
    """A reshape step: ``rows_of(shape)`` gives the new shape; it runs no kernel (``run`` is ``None``)."""
    return "reshape", lambda shape: (None, rows_of(shape))


def _fusable_pool(step):
    """The pool size of a max pooling that the fused convolution + pooling kernel covers (windows = strides, no
    padding: Keras's ``MaxPooling2D(2)``), else ``None``."""
    la = step.layer if step is not None else None
    if isinstance(la, MaxPooling2D) and la.padding == "valid" and la.strides == la.pool_size:
        return la.pool_size
    return None


def _compile(cy, steps, sample_shape):
    """``(name, bind)`` pairs (``bind: shape -> (run, y_shape)``) for ``steps`` and the output shape of a sample, or
    ``None`` when a step has no equivalent.

    Fusion decisions use the shapes at batch 1: what a kernel can run depends on the sample, not the batch size.
    """
    binds, shape = [], (1,) + tuple(sample_shape)
    i = 0
    while i < len(steps):
        layer, act = steps[i].layer, steps[i].activation
        nxt = steps[i + 1] if i + 1 < len(steps) else None
        relu, skip = act == "relu", 1
        if isinstance(layer, (Conv2D, Dense, Activation)) and act not in ACTIVATIONS:
            return None
        if isinstance(layer, (Conv2D, Dense)) and act == "linear" and nxt is not None and \
                isinstance(nxt.layer, Dropout) and nxt.opts.get("relu"):
            relu, skip = True, 2  # the Dropout (the identity here) only carried this layer's ReLU
        new = []
        if isinstance(layer, Conv2D):
            w, b, la = layer.weights["kernel"], layer.weights.get("bias"), layer
            pool = _fusable_pool(nxt) if act in ("linear", "relu") and skip == 1 else None
            if pool is not None and cy.conv2d_max_pool_kernel(shape, w, b, la.strides, la.padding, relu, pool):
                new.append(("conv2d+max_pool2d", lambda s, w=w, b=b, la=la, r=relu, p=pool:
                            cy.conv2d_max_pool_kernel(s, w, b, la.strides, la.padding, r, p)))
                skip = 2
            else:
                new.append(("conv2d", lambda s, w=w, b=b, la=la, r=relu:
                            cy.conv2d_kernel(s, w, b, la.strides, la.padding, r)))
        elif isinstance(layer, Dense):
            w, b = layer.weights["kernel"], layer.weights.get("bias")
            lead = shape[1:-1]
            if lead:  # Dense acts on rows of features
                new.append(_reshape(lambda s: (int(np.prod(s[:-1])), s[-1])))
            new.append(("dense", lambda s, w=w, b=b, r=relu: cy.dense_kernel(s, w, b, r)))
            if lead:
                new.append(_reshape(lambda s, lead=lead: (s[0] // int(np.prod(lead)),) + lead + (s[-1],)))
        elif isinstance(layer, (MaxPooling2D, AveragePooling2D)):
            average = isinstance(layer, AveragePooling2D)
            new.append(("avg_pool2d" if average else "max_pool2d", lambda s, la=layer, a=average:
                        cy.pool2d_kernel(s, la.pool_size, la.strides, la.padding, a)))
        elif isinstance(layer, BatchNormalization):
            wt, eps = layer.weights, np.float32(layer.epsilon)
            new.append(("batch_norm", lambda s, wt=wt, eps=eps: cy.batch_norm_kernel(
                s, wt["gamma"], wt["beta"], wt["moving_mean"], wt["moving_variance"], eps)))
        elif isinstance(layer, Flatten):
            new.append(_reshape(lambda s: (s[0], int(np.prod(s[1:])))))
        elif isinstance(layer, Dropout):  # the identity in inference, or the ReLU fused into it
            if steps[i].opts.get("relu"):
                new.append(("relu", lambda s: cy.activation_kernel(s, "relu")))
        elif not isinstance(layer, Activation):
            return None
        if act in ("softmax", "sigmoid") or (isinstance(layer, Activation) and act == "relu"):
            new.append((act, lambda s, a=act: cy.activation_kernel(s, a)))
        for _, bind in new:
            shape = bind(shape)[1]
        binds += new
        i += skip
    return binds, shape[1:]


class Program:
    """A compiled inference program (see the module docstring); built by :func:`compile_program`."""

    def __init__(self, binds, sample_shape, output_shape):
        self._names = [name for name, _ in binds]
        self._binds = [bind for _, bind in binds]
        self._sample_shape = tuple(sample_shape)
        self._output_shape = tuple(output_shape)
        self._bound = {}  # batch size -> [(run, y_shape)], shared by all threads
        self._local = threading.local()

    @property
    def steps(self):
        """The kernel calls (and reshapes) a prediction runs, in order: e.g. ``["conv2d+max_pool2d", "reshape",
        "dense", "softmax"]``."""
        return list(self._names)

    def _bind(self, n):
        bound = self._bound.get(n)
        if bound is None:
            shape, bound = (n,) + self._sample_shape, []
            for bind in self._binds:
                run, shape = bind(shape)
                bound.append((run, tuple(shape)))
            self._bound[n] = bound  # two threads racing here both bind the same thing
        return bound

    def _buffers(self, n, bound):
        """This thread's intermediate buffers for batches of ``n``: kept for the next call (fresh 30-60 MB
        outputs cost page faults on every call) for the last ``KEEP_SIZES`` batch sizes (full batches and the
        last, partial one), unless they are larger than ``KEEP_BYTES`` (a one-off huge batch is not held)."""
        kept = getattr(self._local, "buffers", None)
        if kept is None:
            kept = self._local.buffers = {}
        buffers = kept.pop(n, None)
        if buffers is None:
            buffers = [None if run is None else np.empty(shape, dtype=np.float32) for run, shape in bound]
        if sum(b.nbytes for b in buffers if b is not None) <= KEEP_BYTES:
            kept[n] = buffers  # most recently used last
            while len(kept) > KEEP_SIZES:
                del kept[next(iter(kept))]
        return buffers

    def predict(self, x, batch_size):
        """The outputs for the checked float32 batch ``x``, in batches of ``batch_size``."""
        out = np.empty((len(x),) + self._output_shape, dtype=np.float32)
        for start in range(0, len(x), batch_size):
            self.run(x[start:start + batch_size], out[start:start + batch_size])
        return out

    def run(self, x, out):
        """Fill ``out`` (C-contiguous float32, the model's output shape for ``len(x)`` samples) with the outputs
        for the checked float32 batch ``x``."""
        bound = self._bind(len(x))
        buffers = self._buffers(len(x), bound)
        kernels = [i for i, (run, _) in enumerate(bound) if run is not None]
        last = kernels[-1] if kernels else -1
        h = np.ascontiguousarray(x)
        for i, (run, shape) in enumerate(bound):
            if run is None:
                h = h.reshape(shape)
                continue
            y = out.reshape(shape) if i == last else buffers[i]  # the last kernel writes the caller's array
            run(h, y)
            h = y
        if last < 0:  # nothing but reshapes
            out[...] = h.reshape(out.shape)


def compile_program(plan, sample_shape):
    """Compile the plan of a built model into a :class:`Program` on the Cython kernels, or ``None`` when they are
    not built or the plan has a step a program cannot run."""
    try:
        from .kernels import cython_ops as cy
    except ImportError:
        return None
    steps = _chain(plan)
    if not steps:
        return None
    compiled = _compile(cy, steps, sample_shape)
    return None if compiled is None else Program(compiled[0], sample_shape, compiled[1])
