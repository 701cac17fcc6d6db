"""Spatial layers: Conv2D, DepthwiseConv2D, pooling, global pooling, ZeroPadding2D (NHWC)."""

from __future__ import annotations

import numpy as np

from cnnc.errors import ConfigError
from cnnc.frontends.keras import args as A
from cnnc.frontends.keras.core import Layer


def glorot_uniform(shape, seed: int, fan_in: int, fan_out: int) -> np.ndarray:
    """Keras's default kernel initialiser: U(-l, l) with ``l = sqrt(6 / (fan_in + fan_out))``."""
    from cnnc.backends.base import check_memory
    check_memory(4 * int(np.prod(shape, dtype=np.float64)), f"a kernel of shape {tuple(shape)}")
    limit = np.float32(np.sqrt(6.0 / (fan_in + fan_out)))
    w = np.random.default_rng(seed).random(shape, dtype=np.float32)
    w *= 2 * limit
    w -= limit
    return w


def conv_fans(shape) -> tuple[int, int]:
    """Keras ``compute_fans`` for a kernel ``(kh, kw, in, out)``."""
    receptive = int(np.prod(shape[:-2]))
    return receptive * shape[-2], receptive * shape[-1]


class _ConvBase(Layer):
    def _conv_args(self, kernel_size, strides, padding, dilation_rate, activation, use_bias):
        w = self.where
        self.kernel_size = A.int_pair(kernel_size, "kernel_size", w)
        self.strides = A.int_pair(strides, "strides", w)
        self.padding = A.padding_word(padding, w)
        self.dilation_rate = A.int_pair(dilation_rate, "dilation_rate", w)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ConfigError(f"{w}: strides > 1 cannot be combined with dilation_rate > 1 "
                              f"(got strides={strides!r}, dilation_rate={dilation_rate!r})")
        self.activation = A.activation(activation, w)
        self.use_bias = A.flag(use_bias, "use_bias", w)

    def _channels(self, input_shape) -> int:
        self.expect_rank(input_shape, 4)
        return input_shape[-1]

    def _emit_conv(self, em, x, w, groups):
        ops = [x, w] + ([self.const(em, "bias")] if self.use_bias else [])
        y = em.op(self, "conv2d", ops, {"strides": self.strides, "padding": self.padding,
                                        "dilation": self.dilation_rate, "groups": groups})
        return self.emit_activation(em, y, self.activation)


class Conv2D(_ConvBase):
    """2-D convolution, kernel ``(kh, kw, cin // groups, filters)`` then bias ``(filters,)``."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 groups=1, activation=None, use_bias=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = A.positive_int(filters, "filters", self.where)
        self._conv_args(kernel_size, strides, padding, dilation_rate, activation, use_bias)
        self.groups = A.positive_int(groups, "groups", self.where)
        if self.filters % self.groups:
            raise ConfigError(f"{self.where}: filters={self.filters} must be divisible by "
                              f"groups={self.groups}")
        self.seed = seed

    def build(self, input_shape):
        cin = self._channels(input_shape)
        if cin % self.groups:
            raise ConfigError(f"{self.where}: groups={self.groups} must divide the {cin} input "
                              f"channels (input shape {input_shape})")
        shape = (*self.kernel_size, cin // self.groups, self.filters)
        self.add_weight("kernel", glorot_uniform(shape, self.kernel_seed(self.seed),
                                                 *conv_fans(shape)))
        if self.use_bias:
            self.add_weight("bias", np.zeros(self.filters))

    def emit(self, em, inputs):
        return self._emit_conv(em, inputs[0], self.const(em, "kernel"), self.groups)


class DepthwiseConv2D(_ConvBase):
    """Per-channel convolution: kernel ``(kh, kw, cin, depth_multiplier)`` then bias
    ``(cin * depth_multiplier,)``; emitted as conv2d with ``groups=cin`` and the kernel reshaped
    to ``(kh, kw, 1, cin * m)`` (output channel ``c * m + k``)."""

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 dilation_rate=1, activation=None, use_bias=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self._conv_args(kernel_size, strides, padding, dilation_rate, activation, use_bias)
        self.depth_multiplier = A.positive_int(depth_multiplier, "depth_multiplier", self.where)
        self.seed = seed

    def build(self, input_shape):
        cin = self._channels(input_shape)
        shape = (*self.kernel_size, cin, self.depth_multiplier)
        self.add_weight("depthwise_kernel", glorot_uniform(shape, self.kernel_seed(self.seed),
                                                           *conv_fans(shape)))
        if self.use_bias:
            self.add_weight("bias", np.zeros(cin * self.depth_multiplier))

    def emit(self, em, inputs):
        x = inputs[0]
        k = self._weights["depthwise_kernel"]
        kh, kw, cin, m = k.shape
        w = em.constant(self, "kernel_hwio", k.reshape(kh, kw, 1, cin * m))
        return self._emit_conv(em, x, w, cin)


class _Pool(Layer):
    op = ""

    def __init__(self, pool_size=2, strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = A.int_pair(pool_size, "pool_size", self.where)
        self.strides = (self.pool_size if strides is None
                        else A.int_pair(strides, "strides", self.where))
        self.padding = A.padding_word(padding, self.where)

    def build(self, input_shape):
        self.expect_rank(input_shape, 4)

    def emit(self, em, inputs):
        return em.op(self, self.op, inputs, {"pool_size": self.pool_size,
                                             "strides": self.strides, "padding": self.padding})


class MaxPooling2D(_Pool):
    """Max pooling; SAME pads never win (padded cells count as -inf)."""
    op = "max_pool2d"


class AveragePooling2D(_Pool):
    """Average pooling; with SAME padding a window averages its real cells only (TF rule)."""
    op = "avg_pool2d"


class _GlobalPool(Layer):
    op = ""

    def __init__(self, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = A.flag(keepdims, "keepdims", self.where)

    def build(self, input_shape):
        self.expect_rank(input_shape, 4)

    def emit(self, em, inputs):
        return em.op(self, self.op, inputs, {"keepdims": self.keepdims})


class GlobalAveragePooling2D(_GlobalPool):
    op = "global_avg_pool"


class GlobalMaxPooling2D(_GlobalPool):
    op = "global_max_pool"


class ZeroPadding2D(Layer):
    """Zero rows/columns around H and W: ``padding`` = p | (ph, pw) | ((t, b), (l, r))."""

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.padding = A.zero_padding(padding, self.where)

    def build(self, input_shape):
        self.expect_rank(input_shape, 4)

    def emit(self, em, inputs):
        pads = ((0, 0), *self.padding, (0, 0))
        return em.op(self, "pad", inputs, {"pads": pads})


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
