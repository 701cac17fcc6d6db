"""More Keras layers: Conv2DTranspose, SeparableConv2D, LayerNormalization,
GroupNormalization, PReLU, ELU, Subtract, Maximum, Minimum, Average, Rescaling.

Weights use Keras 3's layouts and names: Conv2DTranspose ``kernel`` is
``(kh, kw, filters, in_channels)``; SeparableConv2D holds ``depthwise_kernel``
``(kh, kw, cin, depth_multiplier)`` then ``pointwise_kernel`` ``(1, 1, cin * m, filters)``;
LayerNormalization ``gamma``/``beta`` have the normalised dims' shape; PReLU ``alpha`` is the
per-example shape with ``shared_axes`` set to 1.
"""

from __future__ import annotations

import numpy as np

from cnnc.errors import ConfigError, ShapeError, UnsupportedError
from cnnc.frontends.keras import args as A
from cnnc.frontends.keras.basic import _Merge
from cnnc.frontends.keras.conv import _ConvBase, conv_fans, glorot_uniform
from cnnc.frontends.keras.core import Layer


def deconv_output_length(n, k, padding, output_padding, stride, dilation):
    """Keras's ``deconv_output_length`` (the output size of Conv2DTranspose)."""
    k_eff = (k - 1) * dilation + 1
    if output_padding is None:
        return n * stride + max(k_eff - stride, 0) if padding == "valid" else n * stride
    pad = k_eff // 2 if padding == "same" else 0
    return (n - 1) * stride + k_eff - 2 * pad + output_padding


def deconv_pads(n, k, padding, output_padding, stride, dilation):
    """((before, after), extra output rows) of a Keras/TF transposed conv: the output length
    ``L`` is Keras's; SAME crops ``total // 2`` cells at the start with ``total = max(full -
    L, 0)`` (TF's rule for the forward conv it transposes), VALID none; the rest of the
    difference to the full ``(n - 1) * s + k_eff`` comes off the end (or, if negative, is
    added there)."""
    k_eff = (k - 1) * dilation + 1
    length = deconv_output_length(n, k, padding, output_padding, stride, dilation)
    full = (n - 1) * stride + k_eff
    before = max(full - length, 0) // 2 if padding == "same" else 0
    after = full - before - length
    return (before, max(after, 0)), max(-after, 0)


class Conv2DTranspose(_ConvBase):
    """Transposed 2-D convolution (Keras 3): kernel ``(kh, kw, filters, in_channels)`` then
    bias ``(filters,)``; output size Keras's ``deconv_output_length``."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 dilation_rate=1, activation=None, use_bias=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = A.positive_int(filters, "filters", self.where)
        self._conv_args(kernel_size, strides, padding, dilation_rate, activation, use_bias)
        self.output_padding = (None if output_padding is None else
                               A.int_pair(output_padding, "output_padding", self.where, 0))
        if self.output_padding is not None:
            for o, s, d in zip(self.output_padding, self.strides, self.dilation_rate):
                if o >= max(s, d):
                    raise ConfigError(f"{self.where}: output_padding {self.output_padding} must "
                                      f"be smaller than the strides {self.strides} (or the "
                                      f"dilation)")
        self.seed = seed

    def build(self, input_shape):
        cin = self._channels(input_shape)
        shape = (*self.kernel_size, self.filters, cin)
        self.add_weight("kernel", glorot_uniform(shape, self.kernel_seed(self.seed),
                                                 *conv_fans(shape)))
        if self.use_bias:
            self.add_weight("bias", np.zeros(self.filters))

    def geometry(self, hw):
        pads, extra = [], []
        for i, n in enumerate(hw):
            op = None if self.output_padding is None else self.output_padding[i]
            p, e = deconv_pads(n, self.kernel_size[i], self.padding, op, self.strides[i],
                               self.dilation_rate[i])
            pads.append(p)
            extra.append(e)
        return tuple(pads), tuple(extra)

    def emit(self, em, inputs):
        x = inputs[0]
        h, w = x.type.shape[1:3]
        if not isinstance(h, int) or not isinstance(w, int):
            raise ShapeError(f"{self.where}: input height and width must be static, got "
                             f"{x.type}")
        pads, extra = self.geometry((h, w))
        k = self._weights["kernel"]
        ops = [x, em.constant(self, "kernel_io", np.ascontiguousarray(k.transpose(0, 1, 3, 2)))]
        if self.use_bias:
            ops.append(self.const(em, "bias"))
        y = em.op(self, "conv2d_transpose", ops, {
            "strides": self.strides, "padding": pads, "output_padding": extra,
            "dilation": self.dilation_rate, "groups": 1})
        return self.emit_activation(em, y, self.activation)


class SeparableConv2D(_ConvBase):
    """Depthwise conv (``depth_multiplier`` per channel, no bias) then a 1x1 conv with bias,
    then the activation (Keras's SeparableConv2D)."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 depth_multiplier=1, activation=None, use_bias=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = A.positive_int(filters, "filters", self.where)
        self._conv_args(kernel_size, strides, padding, dilation_rate, activation, use_bias)
        self.depth_multiplier = A.positive_int(depth_multiplier, "depth_multiplier", self.where)
        self.seed = seed

    def build(self, input_shape):
        cin = self._channels(input_shape)
        m = self.depth_multiplier
        seed = self.kernel_seed(self.seed)
        dshape = (*self.kernel_size, cin, m)
        self.add_weight("depthwise_kernel", glorot_uniform(dshape, seed, *conv_fans(dshape)))
        pshape = (1, 1, cin * m, self.filters)
        self.add_weight("pointwise_kernel", glorot_uniform(pshape, seed + 1, *conv_fans(pshape)))
        if self.use_bias:
            self.add_weight("bias", np.zeros(self.filters))

    def emit(self, em, inputs):
        k = self._weights["depthwise_kernel"]
        kh, kw, cin, m = k.shape
        dw = em.constant(self, "depthwise_hwio", k.reshape(kh, kw, 1, cin * m))
        y = em.op(self, "conv2d", [inputs[0], dw], {
            "strides": self.strides, "padding": self.padding, "dilation": self.dilation_rate,
            "groups": cin})
        ops = [y, self.const(em, "pointwise_kernel")]
        if self.use_bias:
            ops.append(self.const(em, "bias"))
        y = em.op(self, "conv2d", ops, {"strides": 1, "padding": "valid"})
        return self.emit_activation(em, y, self.activation)


def _axes(axis, rank, where):
    items = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if not items or not all(A.is_int(a) for a in items):
        raise ConfigError(f"{where}: axis must be an int or a list of ints, got {axis!r}")
    out = []
    for a in items:
        if not -rank <= a < rank or a % rank == 0:
            raise ShapeError(f"{where}: axis {a} is not a feature axis of a rank-{rank} input")
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise ConfigError(f"{where}: axis {axis!r} repeats an axis")
    return tuple(sorted(out))


class LayerNormalization(Layer):
    """``(x - mean) / sqrt(var + epsilon) * gamma + beta`` with statistics over ``axis``
    (an int or a list); gamma/beta have the shape of those dims (Keras 3, epsilon 1e-3)."""

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.axis = axis
        self.epsilon = A.number(epsilon, "epsilon", self.where, 0, lo_open=True)
        self.center = A.flag(center, "center", self.where)
        self.scale = A.flag(scale, "scale", self.where)
        if A.flag(rms_scaling, "rms_scaling", self.where):
            raise UnsupportedError(f"{self.where}: rms_scaling=True (RMS normalisation) is not "
                                   f"supported")

    def build(self, input_shape):
        rank = len(input_shape)
        self.axes = _axes(self.axis, rank, self.where)
        self.rank = rank
        dims = tuple(input_shape[a] for a in self.axes)
        if any(d is None for d in dims):
            raise ShapeError(f"{self.where}: cannot normalise over the batch or an unknown "
                             f"dim (input shape {input_shape}, axis {self.axis!r})")
        if self.scale:
            self.add_weight("gamma", np.ones(dims))
        if self.center:
            self.add_weight("beta", np.zeros(dims))
        self.dims = dims

    def _broadcast(self, arr):
        shape = [1] * self.rank
        for a, d in zip(self.axes, self.dims):
            shape[a] = d
        return np.asarray(arr, np.float32).reshape(shape[1:])

    def emit(self, em, inputs):
        g = self._weights["gamma"] if self.scale else np.ones(self.dims)
        b = self._weights["beta"] if self.center else np.zeros(self.dims)
        ops = [inputs[0], em.constant(self, "gamma_b", self._broadcast(g)),
               em.constant(self, "beta_b", self._broadcast(b))]
        return em.op(self, "layer_norm", ops, {"axes": self.axes, "epsilon": self.epsilon})


class GroupNormalization(Layer):
    """Statistics per (example, group of channels) over every other axis; gamma/beta per
    channel. ``groups=-1`` is instance normalisation (one group per channel). Channels last."""

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True, **kwargs):
        super().__init__(**kwargs)
        if not A.is_int(groups) or (groups < 1 and groups != -1):
            raise ConfigError(f"{self.where}: groups must be a positive integer or -1, got "
                              f"{groups!r}")
        self.groups = int(groups)
        if not A.is_int(axis):
            raise ConfigError(f"{self.where}: axis must be an integer, got {axis!r}")
        self.axis = int(axis)
        self.epsilon = A.number(epsilon, "epsilon", self.where, 0, lo_open=True)
        self.center = A.flag(center, "center", self.where)
        self.scale = A.flag(scale, "scale", self.where)

    def build(self, input_shape):
        rank = len(input_shape)
        if self.axis % rank != rank - 1:
            raise UnsupportedError(f"{self.where}: only the last (channel) axis is supported, "
                                   f"got axis={self.axis} for input shape {input_shape}")
        c = input_shape[-1]
        g = c if self.groups == -1 else self.groups
        if c % g:
            raise ShapeError(f"{self.where}: groups={g} does not divide the {c} channels "
                             f"(input shape {input_shape})")
        self.channels, self.n_groups = c, g
        if self.scale:
            self.add_weight("gamma", np.ones(c))
        if self.center:
            self.add_weight("beta", np.zeros(c))

    def emit(self, em, inputs):
        c = self.channels
        g = self.const(em, "gamma") if self.scale else em.constant(self, "ones",
                                                                    np.ones(c, np.float32))
        b = self.const(em, "beta") if self.center else em.constant(self, "zeros",
                                                                    np.zeros(c, np.float32))
        return em.op(self, "group_norm", [inputs[0], g, b],
                     {"groups": self.n_groups, "epsilon": self.epsilon})


class PReLU(Layer):
    """``x`` where x >= 0, else ``alpha * x``; alpha has the per-example shape with the
    ``shared_axes`` (1-based, as in Keras) set to 1; initialised to zeros like Keras."""

    def __init__(self, alpha_initializer="zeros", shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        if alpha_initializer not in ("zeros", "ones") and not isinstance(
                alpha_initializer, (int, float)):
            raise ConfigError(f"{self.where}: alpha_initializer must be 'zeros', 'ones' or a "
                              f"number, got {alpha_initializer!r}")
        self.alpha_initializer = alpha_initializer
        shared = [] if shared_axes is None else (
            list(shared_axes) if isinstance(shared_axes, (list, tuple)) else [shared_axes])
        if not all(A.is_int(a) and a >= 1 for a in shared):
            raise ConfigError(f"{self.where}: shared_axes must be positive axis numbers, got "
                              f"{shared_axes!r}")
        self.shared_axes = tuple(shared)

    def build(self, input_shape):
        shape = list(input_shape[1:])
        for a in self.shared_axes:
            if a >= len(input_shape):
                raise ShapeError(f"{self.where}: shared axis {a} is out of range for input "
                                 f"shape {input_shape}")
            shape[a - 1] = 1
        if any(d is None for d in shape):
            raise ShapeError(f"{self.where}: unknown dims in input shape {input_shape}")
        init = {"zeros": 0.0, "ones": 1.0}.get(self.alpha_initializer, self.alpha_initializer)
        self.add_weight("alpha", np.full(shape, float(init)))

    def emit(self, em, inputs):
        return em.op(self, "prelu", [inputs[0], self.const(em, "alpha")])


class ELU(Layer):
    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = A.number(alpha, "alpha", self.where)

    def emit(self, em, inputs):
        return em.op(self, "elu", inputs, {"alpha": self.alpha})


class Subtract(_Merge):
    """``inputs[0] - inputs[1]`` (exactly two tensors)."""
    op = "sub"

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ConfigError(f"{self.where} takes exactly 2 tensors, received "
                              f"{len(input_shape)}")
        super().build(input_shape)


class Maximum(_Merge):
    op = "maximum"


class Minimum(_Merge):
    op = "minimum"


class Average(_Merge):
    """The elementwise mean of a list of tensors."""
    op = "add"

    def emit(self, em, inputs):
        y = super().emit(em, inputs)
        return em.op(self, "mul", [y, em.constant(self, "inv_n",
                                                  np.float32(1.0 / len(inputs)))])


class Rescaling(Layer):
    """``x * scale + offset`` (numbers, or arrays broadcast against the input)."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = (self._value(v, n) for v, n in ((scale, "scale"),
                                                                  (offset, "offset")))

    def _value(self, v, what):
        try:
            arr = np.asarray(v, dtype=np.float32)
        except (TypeError, ValueError):
            arr = None
        if arr is None or not np.all(np.isfinite(arr)):
            raise ConfigError(f"{self.where}: {what} must be a finite number or array, got "
                              f"{v!r}")
        return arr

    def emit(self, em, inputs):
        y = inputs[0]
        if not (self.scale.ndim == 0 and self.scale == 1):
            y = em.op(self, "mul", [y, em.constant(self, "scale", self.scale)])
        if not (self.offset.ndim == 0 and self.offset == 0):
            y = em.op(self, "add", [y, em.constant(self, "offset", self.offset)])
        if y is inputs[0]:
            y = em.op(self, "identity", [y])
        return y
