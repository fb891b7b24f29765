"""The element-wise activations of a kernel set whose fast path is the code-switched loops, made from the contract.

``tanh``, ``elu``, ``leaky_relu``, ... (``reference.activation.loop_ops``) each run in the Cython set as one loop
over ``_act.h``'s element function picked by a code, and in the Numba set as one loop over ``_act1``: their
``name`` and ``name_backward`` functions differ only in the code and the parameter. :func:`define` makes them for a
set from the contract's entries, with the contract's signatures and the reference's docstrings, so that adding such
an activation writes no wrapper (``docs/architecture.md``, "Adding an op").
"""
from .contract import by_name, signature
from .reference import activation as reference
from .reference.activation import kernel_args, loop_ops


def _params(op, skip):
    """The op's parameter names after its first ``skip`` arrays."""
    return [p[0] for p in op.params][skip:]


def _forward(op, act):
    sig = signature(op)
    if not _params(op, 1):  # no parameter: nothing to bind on each call
        code, alpha, hi, th = kernel_args(op.name, {})

        def forward(x):
            return act(code, x, alpha, hi, th)
    else:
        def forward(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            x = bound.arguments.pop("x")
            code, alpha, hi, th = kernel_args(op.name, bound.arguments)
            return act(code, x, alpha, hi, th)
    return forward


def _backward(op, name, act_backward):
    sig = signature(op)
    dy_name, v_name = _params(op, 0)[:2]  # dy, and the forward's output ("y") or input ("x")

    def backward(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        dy, v = bound.arguments.pop(dy_name), bound.arguments.pop(v_name)
        code, alpha, hi, th = kernel_args(name, bound.arguments)
        return act_backward(code, dy, v, alpha, hi, th)
    return backward


def define(namespace, act, act_backward):
    """Put ``name`` and ``name_backward`` of every loop op into ``namespace`` (a kernel module's ``globals()``),
    running on ``act(code, x, alpha, hi, th)`` and ``act_backward(code, dy, v, alpha, hi, th)``: the set's loops.
    Returns the names defined."""
    made = []
    for name in loop_ops():
        for op, make in ((by_name(name), lambda o: _forward(o, act)),
                         (by_name(f"{name}_backward"), lambda o: _backward(o, name, act_backward))):
            fn = make(op)
            fn.__name__ = fn.__qualname__ = op.name
            fn.__module__ = namespace["__name__"]
            fn.__signature__ = signature(op)
            fn.__doc__ = getattr(reference, op.name).__doc__
            namespace[op.name] = fn
            made.append(op.name)
    return made
