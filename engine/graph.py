"""The executor: a model's layer graph compiled into a plan of steps, with fusion and explicit modes.

``compile_plan`` orders the layers topologically and fuses:
- a stand-alone ReLU into the Conv2D/Dense before it (``conv2d(..., relu=True)``);
- a ReLU (stand-alone, or a Conv2D/Dense's own ``activation="relu"``) into a directly following Dropout, which then
  runs the fused ``relu_dropout`` kernel (its backward needs no stored mask).
Fusion only happens where the intermediate value has exactly one consumer and is not a model output.

``Plan.forward`` runs the steps; in training it keeps each step's ``backprop`` closure, and ``Plan.backward``
runs them in reverse, summing gradients where a value feeds several steps (residual connections).
"""
from dataclasses import dataclass, field

from .layers.base import INFERENCE
from .layers.core import Activation, Dense
from .layers.conv import Conv2D
from .layers.dropout import Dropout


@dataclass
class Step:
    layer: object
    inputs: tuple  # tensor ids
    output: int
    opts: dict = field(default_factory=dict)

    @property
    def activation(self):
        """The activation this step applies last (after fusion)."""
        if isinstance(self.layer, (Conv2D, Dense)):
            return self.opts.get("activation", self.layer.activation)
        if isinstance(self.layer, Activation):
            return self.layer.activation
        return None


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
                if isinstance(step.layer, Activation):  # a final Softmax/Activation layer: pass its input on
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

    def backward(self, tape, dy):
        """Run the backprop closures in reverse; weight gradients land in each layer's ``grads``."""
        grads = {self.output_id: dy}
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
                grads[t] = dx if t not in grads else grads[t] + dx
        return grads


def compile_plan(inputs, output):
    """Build the fused plan for the graph from SymbolicTensor ``inputs`` to ``output``."""
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
    steps = _fuse(steps, output.id)
    for step in steps:
        if isinstance(step.layer, Conv2D) and step.inputs == (inputs.id,):
            step.opts["need_dx"] = False  # nothing upstream of the first convolution needs a gradient
    return Plan(steps, inputs.id, output.id)


def _consumers(steps):
    count = {}
    for s in steps:
        for t in s.inputs:
            count.setdefault(t, []).append(s)
    return count


def _is_relu_layer(layer):
    return isinstance(layer, Activation) and layer.activation == "relu"


def _fuse(steps, output_id):
    def sole_consumer(step):
        users = _consumers(steps).get(step.output, [])
        return users[0] if len(users) == 1 and step.output != output_id else None

    def remove(step):
        """Drop a stand-alone ReLU step: its consumers read its input instead."""
        steps.remove(step)
        for s in steps:
            s.inputs = tuple(step.inputs[0] if t == step.output else t for t in s.inputs)

    # 1) ReLU -> Dropout: the dropout runs relu_dropout.
    for step in [s for s in steps if _is_relu_layer(s.layer)]:
        user = sole_consumer(step)
        if user is not None and isinstance(user.layer, Dropout):
            user.opts["relu"] = True
            remove(step)
    # 2) Conv2D/Dense (linear) -> ReLU: the ReLU goes into the producer's kernel.
    for step in [s for s in steps if _is_relu_layer(s.layer)]:
        producer = next((s for s in steps if s.output == step.inputs[0]), None)
        if (producer is not None and isinstance(producer.layer, (Conv2D, Dense)) and producer.activation == "linear"
                and sole_consumer(producer) is step):
            producer.opts["activation"] = "relu"
            remove(step)
    # 3) Conv2D/Dense(relu) -> Dropout: ReLU moves into the dropout (one fused kernel, maskless backward).
    for step in steps:
        if isinstance(step.layer, (Conv2D, Dense)) and step.activation == "relu":
            user = sole_consumer(step)
            if user is not None and isinstance(user.layer, Dropout) and not user.opts.get("relu"):
                step.opts["activation"] = "linear"
                user.opts["relu"] = True
    return steps


def describe(plan):
    """One line per step, naming what was fused (for ``summary`` and tests)."""
    lines = []
    for s in plan.steps:
        extra = []
        if s.opts.get("relu"):
            extra.append("fused relu->dropout")
        if "activation" in s.opts:
            extra.append(f"activation={s.opts['activation']}")
        lines.append(f"{s.layer.name} ({type(s.layer).__name__}){': ' + ', '.join(extra) if extra else ''}")
    return lines
