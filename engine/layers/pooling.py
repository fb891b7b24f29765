"""Max and average pooling over (height, width), channels-last."""
from ..validation import check_choice, normalize_tuple
from .base import Layer


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


class MaxPooling2D(_Pooling2D):
    """The maximum over each window; the gradient goes to the window's first maximum."""

    def forward(self, ops, x, ctx, **_):
        y = ops.max_pool2d(x, self.pool_size, self.strides, self.padding)
        return y, lambda dy: ops.max_pool2d_backward(dy, x, y, self.pool_size, self.strides, self.padding)


class AveragePooling2D(_Pooling2D):
    """The mean over each window (with "same", over its non-padded positions, as TensorFlow)."""

    def forward(self, ops, x, ctx, **_):
        shape = x.shape
        y = ops.avg_pool2d(x, self.pool_size, self.strides, self.padding)
        return y, lambda dy: ops.avg_pool2d_backward(dy, shape, self.pool_size, self.strides, self.padding)
