"""Fusion rules: where one layer's work moves into the kernel of the layer next to it.

Each rule looks at a step and its sole consumer (fusion only happens where the intermediate value has exactly one
consumer and is not the model's output) and asks the layers what they can do (``fuses_relu``, ``absorbs_relu``,
``pure_activation``, ``fusable_pool``: see ``layers/base.py``; ``channel_affine``, ``residual_sum``,
``folding.folded_weight``, and a Concatenate's ``joins_channels`` with a pooling's ``lower_parts``, for the
inference-only folds of ``dropcore.folding``), never which class they are. The training lowering and the inference
lowering each apply their own list, in order.
"""
from collections import namedtuple

from .activations import one_parameter
from .folding import FoldedNorm, PartsInput, ResidualAdd, folded_weight
from .kernels.reference.conv import MAX_TAPS

Rule = namedtuple("Rule", "name producer consumer apply")


def _relu_layer(step):
    return step.layer.pure_activation and step.activation == "relu"


def _relu_into_consumer(steps, producer, consumer):
    """Drop a stand-alone ReLU step; its consumer applies the ReLU in its own kernel."""
    consumer.set_option("relu", True)
    consumer.inputs = tuple(producer.inputs[0] if t == producer.output else t for t in consumer.inputs)
    steps.remove(producer)


def _relu_into_producer(steps, producer, consumer):
    """Drop a stand-alone ReLU step; the Conv2D/Dense before it applies the ReLU in its kernel."""
    producer.set_option("activation", "relu")
    producer.output = consumer.output
    steps.remove(consumer)


def _move_relu_to_consumer(steps, producer, consumer):
    """A Conv2D/Dense's ReLU moves into the Dropout after it: one fused relu_dropout pass, maskless backward."""
    producer.set_option("activation", "linear")
    consumer.set_option("relu", True)


def _pool_into_producer(steps, producer, consumer):
    """A max pooling runs inside the convolution's kernel: the convolution's output stays in cache (in training,
    its gradient too)."""
    producer.set_option("pool", consumer.layer.fusable_pool)
    producer.output = consumer.output
    steps.remove(consumer)


def _norm_into_producer(steps, producer, consumer):
    """Drop a batch normalization step; the Conv2D/Dense before it runs on the folded weights
    (``dropcore.folding.FoldedNorm``)."""
    producer.layer = FoldedNorm(producer.layer, consumer.layer)
    producer.output = consumer.output
    steps.remove(consumer)


def _residual_into_producer(steps, producer, consumer):
    """A two-input ``Add`` becomes the convolution's step (where the Add was, so that the other operand is
    computed before it): ``conv(x) + other`` with the convolution's output never in a buffer of its own."""
    other = [t for t in consumer.inputs if t != producer.output]
    producer.layer = ResidualAdd(producer.layer)
    producer.inputs = tuple(producer.inputs) + (other[0],)
    producer.output = consumer.output
    steps.remove(producer)
    steps[steps.index(consumer)] = producer


def _residual_add(step):
    """A two-input sum of different values (the residual connection of a ResNet block): ``layer.residual_sum``."""
    return getattr(step.layer, "residual_sum", False) and len(step.inputs) == 2 and len(set(step.inputs)) == 2


RELU_INTO_DROPOUT = Rule("relu->dropout", _relu_layer, lambda s: s.layer.absorbs_relu, _relu_into_consumer)
RELU_INTO_KERNEL = Rule("linear kernel->relu", lambda s: s.layer.fuses_relu and s.activation == "linear",
                        _relu_layer, _relu_into_producer)
KERNEL_RELU_INTO_DROPOUT = Rule(
    "relu kernel->dropout", lambda s: s.layer.fuses_relu and s.activation == "relu",
    lambda s: s.layer.absorbs_relu and not s.opts.get("relu"), _move_relu_to_consumer)
POOL_INTO_CONV = Rule("conv->max_pool", lambda s: "pool" in s.layer.OPTIONS and s.activation in ("linear", "relu"),
                      lambda s: s.layer.fusable_pool is not None, _pool_into_producer)

# In training the convolution records each window's tap in a uint8 (``kernels.reference.conv.MAX_TAPS``).
POOL_INTO_CONV_TRAINING = POOL_INTO_CONV._replace(
    consumer=lambda s: s.layer.fusable_pool is not None and s.layer.fusable_pool[0] * s.layer.fusable_pool[1]
    <= MAX_TAPS)

#: A batch normalization (``channel_affine``) right after a linear Conv2D/Dense (``folding.folded_weight``).
NORM_INTO_KERNEL = Rule("kernel->batch_norm (folded)", lambda s: s.activation == "linear" and not s.opts.get("pool")
                        and folded_weight(s.layer) is not None,
                        lambda s: callable(getattr(s.layer, "channel_affine", None)), _norm_into_producer)
#: A residual Add right after a linear convolution (4-D output) that runs as one kernel (no pooling in it).
RESIDUAL_INTO_CONV = Rule("conv->add (residual)", lambda s: "pool" in s.layer.OPTIONS and s.activation == "linear"
                          and not s.opts.get("pool"), _residual_add, _residual_into_producer)

def _activation_into_producer(steps, producer, consumer):
    """Drop a stand-alone activation step; the Conv2D/Dense (or residual step) before it applies it, with the
    activation layer's parameter (a LeakyReLU's slope, an ELU's alpha)."""
    producer.set_option("activation", consumer.activation)
    params = getattr(consumer.layer, "params", None)
    if params:
        producer.set_option("activation_params", dict(params))
    producer.output = consumer.output
    steps.remove(consumer)


#: Any other element-wise activation layer (tanh, sigmoid, relu6, a LeakyReLU or ELU with its parameter, ...) right
#: after a linear Conv2D/Dense (no pooling in it: the activation comes before the pooling) or residual step: the
#: kernel's own activation (an epilogue where its kernels have one, else its activation kernels right after it).
#: Inference only. The breadth inception's LeakyReLU(0.1) steps were 13% of its inference as separate passes.
ACTIVATION_INTO_KERNEL = Rule(
    "linear kernel->activation", lambda s: s.layer.fuses_relu and s.activation == "linear" and not s.opts.get("pool"),
    lambda s: s.layer.pure_activation and s.activation not in ("linear", "relu", "softmax")
    and one_parameter(s.activation, getattr(s.layer, "params", None)), _activation_into_producer)


def _parts_into_consumer(steps, producer, consumer):
    """Drop a Concatenate step; the layer after it reads its inputs where they are (``folding.PartsInput``)."""
    consumer.layer = PartsInput(consumer.layer)
    consumer.inputs = tuple(producer.inputs)
    steps.remove(producer)


#: A Concatenate along the channels right before a layer that works on each channel on its own (a pooling: the
#: pool between a GoogLeNet's inception blocks): the layer reads the parts, and the concatenation is never copied.
#: Inference only (training's backward splits the gradient at the concatenation). Applied last: the parts' own
#: producers have taken their fusions by then, and nothing fuses into the joined step.
POOL_OF_CONCAT = Rule("concat->pool (parts)", lambda s: getattr(s.layer, "joins_channels", False),
                      lambda s: callable(getattr(s.layer, "lower_parts", None)), _parts_into_consumer)


def _pads_into_consumer(steps, producer, consumer):
    """Drop a ZeroPadding2D step; the convolution after it reads the unpadded input with those pads (every
    convolution path takes explicit pads: ``geometry.window_2d``), so no padded copy is written."""
    consumer.set_option("padding", producer.layer.zero_pads)
    consumer.inputs = tuple(producer.inputs[0] if t == producer.output else t for t in consumer.inputs)
    steps.remove(producer)


#: A ZeroPadding2D right before an unpadded convolution (what the ONNX importer makes of PyTorch's symmetric
#: padding where TensorFlow's "same" differs): measured 7% of the breadth resnet8's inference and 18% of mobilenet's
#: as a separate copy (@64, one thread, loaded machine). Training too: the convolution's backward with those pads
#: gives the gradient of the unpadded input directly (the padded copy's forward and backward were ~1.3% of
#: resnet8's training step and ~4% of mobilenet's).
PADS_INTO_CONV = Rule("zero_pad->conv (pads)", lambda s: s.layer.zero_pads is not None,
                      lambda s: s.layer.takes_pads and "padding" not in s.opts, _pads_into_consumer)

#: A ReLU or ReLU6 (no other parameter) right after a layer whose training kernels apply it (BatchNormalization):
#: training only (inference folds the normalization into the convolution before it). Measured on the breadth
#: MobileNet (batch 64, one thread, Zen 3): its nine ReLU6 passes, forward and backward, were 11% of a step.
NORM_ACTIVATION_TRAINING = Rule(
    "batch_norm->relu (training)", lambda s: s.layer.trains_with_activation and s.activation is None,
    lambda s: s.layer.pure_activation and s.activation in ("relu", "relu6") and not getattr(s.layer, "params", None),
    _activation_into_producer)

#: Training: zero paddings into the convolution after them; the ReLU ends up in the dropout's fused kernel wherever
#: one follows; max poolings go into the convolution before them; a ReLU or ReLU6 after a batch normalization into
#: its kernels.
TRAINING = (PADS_INTO_CONV, RELU_INTO_DROPOUT, RELU_INTO_KERNEL, KERNEL_RELU_INTO_DROPOUT, POOL_INTO_CONV_TRAINING,
            NORM_ACTIVATION_TRAINING)
#: Inference (dropout is the identity, or a Monte-Carlo kernel of its own): zero paddings into the convolution
#: after them, batch norms folded into the kernel before them, then residual adds into the convolution before them,
#: ReLUs into the kernel before them (a residual
#: step's included), max poolings into the convolution before them, then the other activations into the kernel.
#: Not fused, measured on the breadth models (bench/breadth.py, @64, one thread): a global average pooling ending a
#: block (0.3% of resnet8's inference, 0.6% of mobilenet's: nothing to win); a Concatenate as branches writing into
#: slices of one buffer (its copies are 11% of inception's, but the conv and element-wise kernels write dense
#: outputs only: they need a row stride first). Where a pooling reads the concatenation, it reads the parts instead.
INFERENCE = (PADS_INTO_CONV, NORM_INTO_KERNEL, RESIDUAL_INTO_CONV, RELU_INTO_KERNEL, POOL_INTO_CONV,
             ACTIVATION_INTO_KERNEL, POOL_OF_CONCAT)


def remove_identities(steps, output_id):
    """Inference without Monte-Carlo dropout: drop the steps whose layer is the identity there (the dropout
    family), so the rules see the layers on either side as neighbours (a convolution, a Dropout, a max pooling:
    the pooling still fuses into the convolution). Returns ``(steps, output_id)``."""
    for step in [s for s in steps if s.layer.identity_in_inference]:
        source = step.inputs[0]
        for other in steps:
            other.inputs = tuple(source if t == step.output else t for t in other.inputs)
        if step.output == output_id:
            output_id = source
        steps.remove(step)
    return steps, output_id


def sole_consumer(steps, step, output_id):
    """The one step reading ``step``'s output, or ``None`` (several readers, none, or it is the model output)."""
    if step.output == output_id:
        return None
    users = [s for s in steps if step.output in s.inputs]
    return users[0] if len(users) == 1 else None


def apply(rules, steps, output_id, log=None):
    """Apply ``rules`` in order to the list of steps (changed in place). Returns ``steps``. ``log``: a list that
    gets ``(rule name, producer layer name, consumer layer name)`` for each fusion made."""
    for rule in rules:
        for step in [s for s in steps if rule.producer(s)]:
            if step not in steps:
                continue
            user = sole_consumer(steps, step, output_id)
            if user is not None and rule.consumer(user):
                if log is not None:
                    log.append((rule.name, step.layer.name, user.layer.name))
                rule.apply(steps, step, user)
    return steps
