"""The executor: a model's layer graph planned once, then lowered for training (this module) or for inference
(``dropcore.program``).

``plan_graph`` orders the layers topologically into a :class:`Graph` of unfused steps. ``lower_training`` applies
the training fusion rules (``dropcore.fusion``):
- a stand-alone ReLU into the Conv2D/Dense before it (``conv2d(..., relu=True)``);
- a ReLU (stand-alone, or a Conv2D/Dense's own ``activation="relu"``) into a directly following Dropout, which then
  runs the fused ``relu_dropout`` kernel (its backward needs no stored mask).

``Plan.forward`` runs the steps; in training it keeps each step's ``backprop`` closure, and ``Plan.backward``
runs them in reverse, summing gradients where a value feeds several steps (residual connections).
"""
from dataclasses import dataclass, field

import numpy as np

from . import fusion
from .layers.base import INFERENCE


@dataclass
class Step:
    layer: object
    inputs: tuple  # tensor ids
    output: int
    opts: dict = field(default_factory=dict)

    @property
    def activation(self):
        """The activation this step applies last (after fusion)."""
        return self.layer.final_activation(self.opts)

    def set_option(self, name, value):
        """Set a fusion option; one the layer does not take is an error naming the layer and the option."""
        self.layer.check_options({name: value})
        self.opts[name] = value

    def copy(self):
        return Step(self.layer, self.inputs, self.output, dict(self.opts))


@dataclass(eq=False)  # compared (and cached on) by identity
class Graph:
    """A model's layers in execution order, unfused: what both lowerings start from."""

    steps: list
    input_id: int
    output_id: int

    def copy_steps(self):
        return [s.copy() for s in self.steps]


def _toposort(output):
    order, seen = [], set()
    stack = [(output, False)]
    while stack:
        t, done = stack.pop()
        if done:
            order.append(t)
            continue
        if t.id in seen:
            continue
        seen.add(t.id)
        stack.append((t, True))
        for parent in reversed(t.inputs):
            if parent.id not in seen:
                stack.append((parent, False))
    return order


class Plan:
    """An ordered list of steps from one input tensor to one output tensor."""

    def __init__(self, steps, input_id, output_id):
        self.steps = steps
        self.input_id = input_id
        self.output_id = output_id
        last_use = {}
        for i, s in enumerate(steps):
            for t in s.inputs:
                last_use[t] = i
        self._free_after = {i: [t for t, j in last_use.items() if j == i and t != output_id] for i in range(len(steps))}

    @property
    def head(self):
        """"softmax" or "sigmoid" when the last step ends in that activation (fusable with cross-entropy)."""
        act = self.steps[-1].activation if self.steps else None
        return act if act in ("softmax", "sigmoid") else None

    def forward(self, ops, x, ctx=INFERENCE, keep_backprop=False, logits=False):
        """Run the plan. ``logits``: skip the final softmax/sigmoid (for a fused loss). Returns ``(y, tape)``."""
        values = {self.input_id: x}
        tape = []
        last = len(self.steps) - 1
        for i, step in enumerate(self.steps):
            args = [values[t] for t in step.inputs]
            opts = step.opts
            if logits and i == last:
                if step.layer.pure_activation:  # a final Softmax/Activation layer: pass its input on
                    values[step.output] = args[0]
                    tape.append((step, lambda dy: [dy]))
                    break
                opts = dict(opts, activation="linear")
            y, backprop = step.layer.forward(ops, args[0] if len(args) == 1 and step.layer.n_inputs == 1 else args,
                                             ctx, **opts)
            values[step.output] = y
            if keep_backprop:
                tape.append((step, backprop))
            for t in self._free_after[i]:
                values.pop(t, None)
        return values[self.output_id], tape

    def backward(self, tape, dy, ops=None):
        """Run the backprop closures in reverse; weight gradients land in each layer's ``grads``. ``ops``: the
        kernel set whose ``add`` sums the gradients of a value read by two steps (a residual block's input), with
        NumPy's bits but on the kernels' threads (ResNet-8 at batch 64, two threads: its three sums 1.15-1.28 ms a
        step in NumPy, 0.87-0.97 ms so); without it, NumPy adds them."""
        grads = {self.output_id: dy}
        owned = set()  # the values whose gradient sum is an array made here, so added into in place
        for step, backprop in reversed(tape):
            g = grads.pop(step.output, None)
            if g is None:
                continue  # this step's output does not reach the loss
            dxs = backprop(g)
            if not isinstance(dxs, list):
                dxs = [dxs]
            for t, dx in zip(step.inputs, dxs):
                if t == self.input_id:
                    continue
                if t not in grads:
                    grads[t] = dx
                elif t in owned:  # a third reader's share and on: no new array (the same sum, in the same order)
                    np.add(grads[t], dx, out=grads[t])
                else:  # (the first two may be arrays a backprop still holds, or the same one twice: Add's)
                    grads[t] = grads[t] + dx if ops is None else ops.add([grads[t], dx])
                    owned.add(t)
        return grads


def plan_graph(inputs, output):
    """The :class:`Graph` from SymbolicTensor ``inputs`` to ``output``: its layers in topological order."""
    order = _toposort(output)
    reachable = {t.id for t in order}
    if inputs.id not in reachable:
        raise ValueError("the model's output does not depend on its input")
    steps = []
    for t in order:
        if t.layer is None:
            if t.id != inputs.id:
                raise ValueError(f"the graph uses an Input {t} that is not the model's input")
            continue
        steps.append(Step(t.layer, tuple(p.id for p in t.inputs), t.id))
    layers = [s.layer for s in steps]
    if len({id(la) for la in layers}) != len(layers):
        raise ValueError("a layer is used more than once in the graph; shared layers are not supported")
    return Graph(steps, inputs.id, output.id)


def lower_training(graph):
    """The executor's :class:`Plan` of ``graph``, fused with the training rules."""
    steps = fusion.apply(fusion.TRAINING, graph.copy_steps(), graph.output_id)
    for step in steps:
        if "need_dx" in step.layer.OPTIONS and step.inputs == (graph.input_id,):
            step.set_option("need_dx", False)  # nothing upstream of the first layer needs its input gradient
    return Plan(steps, graph.input_id, graph.output_id)


def describe(plan):
    """One line per step, naming what was fused (for ``summary`` and tests)."""
    lines = []
    for s in plan.steps:
        extra = []
        if s.opts.get("relu"):
            extra.append("fused relu->dropout")
        if "activation" in s.opts:
            extra.append(f"activation={s.opts['activation']}")
        if s.opts.get("pool") is not None:
            extra.append("fused max pool {}x{}".format(*s.opts["pool"]))
        lines.append(f"{s.layer.name} ({type(s.layer).__name__}){': ' + ', '.join(extra) if extra else ''}")
    return lines
