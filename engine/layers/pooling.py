"""Max and average pooling over (height, width), channels-last."""
from ..lowering import Kernel
from ..validation import check_choice, normalize_tuple
from .base import Layer
from .registry import register


class _Pooling2D(Layer):
    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", name=None):
        super().__init__(name)
        where = type(self).__name__
        self.pool_size = normalize_tuple(pool_size, 2, "pool_size", where)
        self.strides = self.pool_size if strides is None else normalize_tuple(strides, 2, "strides", where)
        self.padding = check_choice(padding, "padding", ("valid", "same"), where)

    def build(self, input_shape):
        self.check_rank(input_shape, 3, "(batch, height, width, channels)")
        self.output_shape_for(input_shape)
        super().build(input_shape)

    def output_shape_for(self, input_shape):
        oh, ow = self.window_output(input_shape, self.pool_size, self.strides, self.padding, f"pool {self.pool_size}")
        return (oh, ow, input_shape[2])

    def get_config(self):
        return {"name": self.name, "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}

    def lower(self, lowering, step):
        average = self.average
        return [Kernel(self.op_name, lambda shape: lowering.kernels.pool2d_kernel(
            shape, self.pool_size, self.strides, self.padding, average))]

    def lower_parts(self, lowering, step):
        """The kernels of this pooling over a concatenation of several inputs along the channels, each read where
        it is (the inference rule ``fusion.POOL_OF_CONCAT``): every channel is pooled on its own, so each part's
        channels are pooled straight into theirs of the output, and the concatenated copy is never written."""
        average = self.average
        return [Kernel("concatenate+" + self.op_name, lambda shapes: lowering.kernels.pool2d_parts_kernel(
            shapes, self.pool_size, self.strides, self.padding, average))]


@register
class MaxPooling2D(_Pooling2D):
    """The maximum over each window; the gradient goes to the window's first maximum."""

    average, op_name = False, "max_pool2d"

    @property
    def fusable_pool(self):
        """The pool size when a convolution's kernel can do this pooling in the same pass (windows = strides, no
        padding: Keras's ``MaxPooling2D(2)``), else ``None``."""
        return self.pool_size if self.padding == "valid" and self.strides == self.pool_size else None

    def forward(self, ops, x, ctx):
        y = ops.max_pool2d(x, self.pool_size, self.strides, self.padding)
        return y, lambda dy: ops.max_pool2d_backward(dy, x, y, self.pool_size, self.strides, self.padding)


@register
class AveragePooling2D(_Pooling2D):
    """The mean over each window (with "same", over its non-padded positions, as TensorFlow)."""

    average, op_name = True, "avg_pool2d"

    def forward(self, ops, x, ctx):
        shape = x.shape
        y = ops.avg_pool2d(x, self.pool_size, self.strides, self.padding)
        return y, lambda dy: ops.avg_pool2d_backward(dy, shape, self.pool_size, self.strides, self.padding)
