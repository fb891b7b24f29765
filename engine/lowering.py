"""What a layer lowers to for inference: a short chain of kernel calls that a :class:`dropcore.program.Program`
binds once per batch size.

A layer's ``lower(lowering, step)`` returns a list of :class:`Kernel`; the first receives the step's inputs, each
next one the previous one's output; an empty list is the identity. ``bind(shape)`` gets the input shape (batch
included; a list of shapes for a layer of several inputs) and returns ``(run, y_shape)``:

- ``run(*inputs, y)`` fills the preallocated float32 ``y`` (``run(*inputs, y, ctx)`` with ``uses_ctx``: the
  Monte-Carlo dropout kernels read the seed and pass from the :class:`~dropcore.layers.Context`);
- ``run`` is ``None`` for a view: the output is the input reshaped to ``y_shape``, and no kernel runs.
"""
from dataclasses import dataclass

from .activations import kernel_form


@dataclass(frozen=True)
class Kernel:
    name: str  # what the step runs, as Program.steps lists it: "conv2d", "reshape", "softmax", ...
    bind: object  # shape -> (run, y_shape)
    uses_ctx: bool = False


@dataclass(frozen=True)
class Lowering:
    """What lowering targets: the bound Cython kernels, the kernel set for ops without a bound kernel (the
    "cython" set: Cython forwards, the NumPy reference for the rest, never Numba), and whether dropout stays
    active (Monte-Carlo dropout)."""

    kernels: object  # dropcore.kernels.cython_ops
    ops: object
    mc: bool = False


def view(rows_of):
    """A reshape: ``rows_of(shape)`` gives the new shape."""
    return Kernel("reshape", lambda shape: (None, tuple(rows_of(shape))))


def activation_kernels(lowering, act, **params):
    """The kernels that apply activation ``act`` (with its parameter, ``activations.PARAMS``) after a layer's own
    kernel (none for "linear")."""
    if act == "linear":
        return []
    name, alpha = kernel_form(act, **params)
    return [Kernel(act, lambda shape: lowering.kernels.activation_kernel(shape, name, alpha))]


def forward_kernel(layer, lowering, opts):
    """Any layer's own ``forward`` as one kernel, on ``lowering.ops`` (for layers without a bound kernel)."""
    single = layer.n_inputs == 1

    def bind(shape):
        samples = shape[1:] if single else [s[1:] for s in shape]
        n = shape[0] if single else shape[0][0]
        y_shape = (n,) + tuple(layer.output_shape_for(samples))

        def run(*args):
            *xs, y, ctx = args
            y[...] = layer.forward(lowering.ops, xs[0] if single else list(xs), ctx, **opts)[0]

        return run, y_shape

    return Kernel(layer.step_name, bind, uses_ctx=True)
