"""Global average and max pooling over (height, width), channels-last, as Keras's ``GlobalAveragePooling2D`` and
``GlobalMaxPooling2D``: ``(N, H, W, C)`` -> ``(N, C)``, or ``(N, 1, 1, C)`` with ``keepdims=True``."""
from ..lowering import Kernel, view
from ..validation import check_choice, invalid
from .base import Layer
from .registry import register


class _GlobalPooling2D(Layer):
    """Subclasses name their kernel set op (``op_name``; ``average`` for the Cython kernel) and give
    ``_backprop``."""

    def __init__(self, data_format=None, keepdims=False, name=None):
        super().__init__(name)
        where = type(self).__name__
        # dropcore is channels-last only: say so rather than pool over the wrong axes
        self.data_format = check_choice("channels_last" if data_format is None else data_format, "data_format",
                                        ("channels_last",), where)
        if not isinstance(keepdims, bool):
            raise invalid("keepdims", "a bool", keepdims, where)
        self.keepdims = keepdims

    def build(self, input_shape):
        self.check_rank(input_shape, 3, "(batch, height, width, channels)")
        super().build(input_shape)

    def output_shape_for(self, input_shape):
        c = input_shape[-1]
        return (1, 1, c) if self.keepdims else (c,)

    def forward(self, ops, x, ctx):
        y = getattr(ops, self.op_name)(x)
        backprop = self._backprop(ops, x, y)
        if self.keepdims:
            return y.reshape(len(y), 1, 1, -1), lambda dy: backprop(dy.reshape(len(dy), -1))
        return y, backprop

    def lower(self, lowering, step):
        kernels = [Kernel(self.op_name, lambda shape: lowering.kernels.global_pool2d_kernel(shape, self.average))]
        return kernels + ([view(lambda s: (s[0], 1, 1, s[-1]))] if self.keepdims else [])

    def get_config(self):
        return {"name": self.name, "data_format": self.data_format, "keepdims": self.keepdims}


@register
class GlobalAveragePooling2D(_GlobalPooling2D):
    """The mean of each feature map: ``(N, H, W, C)`` -> ``(N, C)`` (``keepdims``: ``(N, 1, 1, C)``)."""

    average, op_name = True, "global_avg_pool2d"

    def _backprop(self, ops, x, y):
        shape = x.shape
        return lambda dy: ops.global_avg_pool2d_backward(dy, shape)


@register
class GlobalMaxPooling2D(_GlobalPooling2D):
    """The maximum of each feature map; its gradient goes to the map's first maximum (row-major)."""

    average, op_name = False, "global_max_pool2d"

    def _backprop(self, ops, x, y):
        return lambda dy: ops.global_max_pool2d_backward(dy, x, y)
