"""The Layer base class, symbolic tensors for the functional API, and the execution context.

A layer owns its behaviour; the executor and the inference program ask it, never its class:
- ``forward(ops, x, ctx, **opts)`` returns ``(y, backprop)``: ``backprop(dy)`` returns the input gradient and stores
  the weight gradients in ``layer.grads``. The closure captures exactly what the backward needs. The mode travels
  in ``ctx`` (an explicit argument, inference by default); layers keep no global state.
- ``lower(lowering, step)``: the inference kernels it runs as (``dropcore.lowering``); by default its own forward.
- ``OPTIONS`` and the capability flags below: what the fusion rules (``dropcore.fusion``) may do with it.
- ``workspace_bytes``: scratch beyond its input and output, for the workspace estimate.
- ``get_config``: its constructor's arguments, for model files; ``@register`` (``layers/registry.py``) makes it
  loadable by name.
"""
import itertools
import re
from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np

from ..kernels.alignment import aligned
from ..kernels.geometry import window_2d
from ..validation import check_int, invalid

_name_counters = defaultdict(itertools.count)
_tensor_ids = itertools.count()
_eager_calls = itertools.count(1)  # each eager training call on arrays draws new dropout masks, as Keras does


def _snake(name):
    """Keras's CamelCase -> snake_case rule: Conv2D -> conv2d, MaxPooling2D -> max_pooling2d, ReLU -> re_lu."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(cls_name):
    base = _snake(cls_name)
    n = next(_name_counters[base])
    return base if n == 0 else f"{base}_{n}"


@dataclass(frozen=True)
class Context:
    """How a forward pass runs.

    ``training``: batch normalization uses batch statistics and updates its moving averages.
    ``dropout``: dropout layers drop (true in training; also true for Monte-Carlo dropout at inference).
    ``seed``, ``step``: select the counter-based dropout masks (same seed and step -> same masks).
    ``row``: the row, in the whole input, of this batch's first sample: a sample's dropout mask depends on its row,
    not on how the input was cut into batches (Monte-Carlo dropout gives the same answer at any batch size).
    ``segments``: for a batch made of several inputs (dynamic batching), ``((start, stop, row), ...)``: rows
    ``start:stop`` of the batch draw their masks as rows ``row...`` of an input of their own (inference programs).
    """

    training: bool = False
    dropout: bool = False
    seed: int = 0
    step: int = 0
    row: int = 0
    segments: tuple = None

    def at_row(self, offset):
        """This context for samples ``offset`` rows further into the input: only dropout's masks depend on it."""
        return replace(self, row=self.row + offset) if self.dropout else self


INFERENCE = Context()


class SymbolicTensor:
    """A placeholder flowing through layer calls in the functional API: a shape (batch omitted) and its producer."""

    def __init__(self, shape, layer=None, inputs=()):
        self.shape = tuple(shape)
        self.layer = layer
        self.inputs = tuple(inputs)
        self.id = next(_tensor_ids)

    def __repr__(self):
        src = self.layer.name if self.layer is not None else "Input"
        return f"<SymbolicTensor shape=(None, {', '.join(map(str, self.shape))}) from {src}>"


def Input(shape, name=None):
    """The model's input placeholder: ``shape`` without the batch dimension, e.g. ``Input((28, 28, 1))``."""
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise invalid("shape", "a tuple of positive ints (without the batch size)", shape, "Input") from None
    for d in shape:
        check_int(d, "shape", 1, "Input")
    if not shape:
        raise invalid("shape", "a tuple of positive ints (without the batch size)", shape, "Input")
    t = SymbolicTensor(shape)
    t.name = name or unique_name("Input")
    return t


class Layer:
    """Base class. Subclasses define ``build``, ``output_shape_for``, ``forward`` and ``get_config``."""

    #: number of inputs the layer takes (``None``: a list of any length >= 2)
    n_inputs = 1
    #: the options fusion rules may set on its step (keyword arguments of ``forward`` or read by ``lower``)
    OPTIONS = ()
    #: its kernel can apply a ReLU itself (Conv2D, Dense): a ReLU right after it moves into it
    fuses_relu = False
    #: it can take the ReLU right before it into its own kernel (Dropout's relu_dropout)
    absorbs_relu = False
    #: the activations right after it its training kernels apply themselves (BatchNormalization: relu, relu6)
    trains_with_activation = ()
    #: the layer is nothing but its activation: a fused softmax/sigmoid loss skips it when it comes last
    pure_activation = False
    #: a pool size when a convolution right before it can run this (max) pooling in its own kernel
    fusable_pool = None
    #: ``((top, bottom), (left, right))`` when the layer only pads with zeros (ZeroPadding2D): a convolution after
    #: it that ``takes_pads`` reads its input with those pads instead (training and inference; no padded copy)
    zero_pads = None
    #: its kernels, forward and backward, can take explicit pads as its ``padding`` option (an unpadded convolution)
    takes_pads = False
    #: the identity in inference unless Monte-Carlo dropout is on (the dropout family): no step at all there
    identity_in_inference = False
    #: it draws random numbers when ``ctx.dropout`` is on (training, Monte-Carlo predictions); the dropout family
    #: makes it a property of its rate, so that a model whose every rate is 0 has nothing to sample
    stochastic = False
    #: a dropout layer whose ``rate`` a whole-model override replaces (``zoo``'s ``dropout=``, ``--dropout``)
    rate_is_dropout = False
    #: it computes statistics over the batch in training (batch normalization): data-parallel training hands it the
    #: communicator (``sync_comm``) so that they are the global batch's, over every rank
    batch_statistics = False
    #: config keys (constructor arguments) added after model files were first written, with the value a file
    #: written before holds implicitly (their default): the reader fills them in (``serialization.with_added_keys``)
    ADDED_CONFIG = {}

    def __init__(self, name=None):
        if name is not None and (not isinstance(name, str) or not name):
            raise invalid("name", "a non-empty string", name, type(self).__name__)
        self.name = name or unique_name(type(self).__name__)
        self.built = False
        self.input_shape = None
        self.weights = {}  # name -> float32 array, in Keras order
        self.trainable_names = ()  # which weights the optimizer updates
        self.constraints = {}  # weight name -> Constraint
        self.grads = {}
        #: this layer's dropout stream: its position in the model (set by the model), so two builds of the same
        #: architecture draw the same masks for the same seed, and a saved model keeps them.
        self.stream = 0

    def __setstate__(self, state):
        # A copied or unpickled layer's weights land wherever NumPy puts them: aligned again for the kernels'
        # vector loads (kernels/alignment.py).
        self.__dict__.update(state)
        self.weights = {name: aligned(w) for name, w in self.weights.items()}

    # --- identity -------------------------------------------------------------------------------------------
    @property
    def label(self):
        return f"layer '{self.name}' ({type(self).__name__})"

    @property
    def step_name(self):
        """The class name in snake case ("conv2d"): what an inference step running this layer's forward is called
        (``Program.steps``)."""
        return _snake(type(self).__name__)

    def check_options(self, opts):
        """Raise a ValueError naming the layer and the option for any option it does not take."""
        unknown = sorted(set(opts) - set(self.OPTIONS))
        if unknown:
            raise ValueError(f"{self.label} takes no option {unknown[0]!r}; it takes "
                             f"{', '.join(map(repr, self.OPTIONS)) or 'none'}")

    def final_activation(self, opts):
        """The activation this layer applies last with step options ``opts`` (``None``: none to speak of)."""
        return None

    # --- shapes ---------------------------------------------------------------------------------------------
    def build(self, input_shape):
        """Create the weights for ``input_shape`` (batch omitted); check the shape."""
        self.input_shape = input_shape
        self.built = True

    def output_shape_for(self, input_shape):
        return input_shape

    def ensure_built(self, input_shape):
        if not self.built:
            self.build(input_shape)
        elif self.n_inputs == 1 and tuple(input_shape) != tuple(self.input_shape):
            raise ValueError(
                f"Input to {self.label} is incompatible: expected shape (None, "
                f"{', '.join(map(str, self.input_shape))}), received (None, {', '.join(map(str, input_shape))})"
            )

    def check_rank(self, input_shape, rank, meaning):
        if len(input_shape) != rank:
            raise ValueError(
                f"Input to {self.label} must have {rank + 1} dimensions {meaning}; received shape "
                f"(None, {', '.join(map(str, input_shape))})"
            )

    def window_output(self, input_shape, window, strides, padding, what, hint=""):
        """``(oh, ow)`` of a sliding window (convolution or pooling) on an ``(H, W, C)`` input; raises a ValueError
        naming the layer and ``what`` slides (e.g. "a 3x3 kernel") when the output would be empty."""
        h, w = input_shape[0], input_shape[1]
        oh, ow, _, _ = window_2d(h, w, window, strides, padding)
        if oh < 1 or ow < 1:
            raise ValueError(f"{self.label}: {what} with strides {strides} and padding '{padding}' on a {h}x{w} "
                             f"input gives an empty output ({oh}x{ow}){hint}")
        return oh, ow

    # --- weights --------------------------------------------------------------------------------------------
    def get_weights(self):
        return [w.copy() for w in self.weights.values()]

    def set_weights(self, arrays):
        arrays = list(arrays)
        if len(arrays) != len(self.weights):
            raise ValueError(f"{self.label} expects {len(self.weights)} weight arrays, received {len(arrays)}")
        for (name, old), new in zip(self.weights.items(), arrays):
            new = np.asarray(new)
            if new.shape != old.shape:
                raise ValueError(
                    f"{self.label}: weight '{name}' has shape {old.shape}, received an array of shape {new.shape}"
                )
            old[...] = new.astype(np.float32)

    def count_params(self):
        return int(sum(w.size for w in self.weights.values()))

    def add_weight(self, name, shape, initializer, trainable=True, constraint=None):
        self.weights[name] = aligned(initializer(tuple(shape)), np.float32)
        if trainable:
            self.trainable_names = tuple(self.trainable_names) + (name,)
        if constraint is not None:
            self.constraints[name] = constraint

    # --- execution ------------------------------------------------------------------------------------------
    def forward(self, ops, x, ctx, **opts):
        raise NotImplementedError

    def lower(self, lowering, step):
        """The inference kernels for this layer's ``step`` (see ``dropcore.lowering``). By default its own forward
        on the inference kernel set; layers with bound kernels override it."""
        from ..lowering import forward_kernel

        return [forward_kernel(self, lowering, step.opts)]

    def workspace_bytes(self, output_shape):
        """Scratch bytes one sample needs beyond its input and output (a convolution's im2col panel)."""
        return 0

    def get_config(self):
        return {"name": self.name}

    def __call__(self, inputs, training=False):
        """Symbolic call (functional API) on SymbolicTensors, or an eager forward on arrays."""
        items = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        if all(isinstance(t, SymbolicTensor) for t in items):
            if self.n_inputs == 1 and len(items) != 1:
                raise ValueError(f"{self.label} takes one input, received {len(items)}")
            shapes = [t.shape for t in items]
            self.ensure_built(shapes[0] if self.n_inputs == 1 else shapes)
            out_shape = self.output_shape_for(shapes[0] if self.n_inputs == 1 else shapes)
            return SymbolicTensor(out_shape, self, items)
        from ..ops import get_ops

        arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in items]
        shapes = [a.shape[1:] for a in arrays]
        self.ensure_built(shapes[0] if self.n_inputs == 1 else shapes)
        ctx = Context(training=bool(training), dropout=bool(training), seed=next(_eager_calls) if training else 0)
        y, _ = self.forward(get_ops(), arrays[0] if self.n_inputs == 1 else arrays, ctx)
        return y

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"
