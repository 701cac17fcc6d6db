"""Core layers: Dense, Flatten, Reshape, BatchNormalization, activations, Dropout and merges."""

from __future__ import annotations

import numpy as np

from cnnc.errors import ConfigError, ShapeError
from cnnc.frontends.keras import args as A
from cnnc.frontends.keras.conv import glorot_uniform
from cnnc.frontends.keras.core import Layer


def _example_size(shape) -> int:
    return int(np.prod(shape[1:], dtype=np.int64))


class Dense(Layer):
    """``x @ kernel + bias`` on a rank-2 input; kernel ``(in, units)`` then bias ``(units,)``."""

    def __init__(self, units, activation=None, use_bias=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.units = A.positive_int(units, "units", self.where)
        self.activation = A.activation(activation, self.where)
        self.use_bias = A.flag(use_bias, "use_bias", self.where)
        self.seed = seed

    def build(self, input_shape):
        self.expect_rank(input_shape, 2, "(batch, features); add a Flatten layer before it")
        n_in = input_shape[-1]
        self.add_weight("kernel", glorot_uniform((n_in, self.units), self.kernel_seed(self.seed),
                                                 n_in, self.units))
        if self.use_bias:
            self.add_weight("bias", np.zeros(self.units))

    def emit(self, em, inputs):
        ops = [inputs[0], self.const(em, "kernel")]
        if self.use_bias:
            ops.append(self.const(em, "bias"))
        return self.emit_activation(em, em.op(self, "dense", ops), self.activation)


class Flatten(Layer):
    """``(N, H, W, C) -> (N, H*W*C)``, row-major over (H, W, C) like Keras."""

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ShapeError(f"{self.where} expects an input with a batch axis and at least one "
                             f"more, received shape {input_shape}")


    def emit(self, em, inputs):
        return em.op(self, "flatten", inputs, {"axis": 1})


class Reshape(Layer):
    """Reshape every example to ``target_shape`` (batch kept; one entry may be -1)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = A.shape_tuple(target_shape, "target_shape", self.where,
                                          allow_minus_one=True)

    def build(self, input_shape):
        n, known = _example_size(input_shape), int(np.prod(self.target_shape, dtype=np.int64))
        if (-1 in self.target_shape and n % -known) or (-1 not in self.target_shape
                                                        and n != known):
            raise ShapeError(f"{self.where}: cannot reshape an input of shape {input_shape} "
                             f"({n} values per example) into target_shape {self.target_shape}")

    def emit(self, em, inputs):
        return em.op(self, "reshape", inputs, {"shape": (0, *self.target_shape)})


class BatchNormalization(Layer):
    """Inference BN: ``gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta``.

    Weights (Keras order): gamma (if ``scale``), beta (if ``center``), moving_mean,
    moving_variance (non-trainable). A missing gamma/beta is emitted as a constant 1/0."""

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 **kwargs):
        super().__init__(**kwargs)
        if not A.is_int(axis):
            raise ConfigError(f"{self.where}: axis must be an integer, got {axis!r}")
        self.axis = int(axis)
        self.momentum = A.number(momentum, "momentum", self.where, 0, 1)
        self.epsilon = A.number(epsilon, "epsilon", self.where, 0, lo_open=True)
        self.center = A.flag(center, "center", self.where)
        self.scale = A.flag(scale, "scale", self.where)

    def build(self, input_shape):
        rank = len(input_shape)
        if not -rank < self.axis < rank or self.axis % rank == 0:
            raise ShapeError(f"{self.where}: axis {self.axis} is not a feature axis of an input "
                             f"of shape {input_shape}")
        c = input_shape[self.axis]
        if self.scale:
            self.add_weight("gamma", np.ones(c))
        if self.center:
            self.add_weight("beta", np.zeros(c))
        self.add_weight("moving_mean", np.zeros(c), trainable=False)
        self.add_weight("moving_variance", np.ones(c), trainable=False)
        self.channels = c

    def emit(self, em, inputs):
        c = self.channels
        gamma = self.const(em, "gamma") if self.scale else em.constant(self, "ones",
                                                                        np.ones(c, np.float32))
        beta = self.const(em, "beta") if self.center else em.constant(self, "zeros",
                                                                       np.zeros(c, np.float32))
        ops = [inputs[0], gamma, beta, self.const(em, "moving_mean"),
               self.const(em, "moving_variance")]
        return em.op(self, "batch_norm", ops, {"epsilon": self.epsilon, "axis": self.axis})


class Activation(Layer):
    """``Activation("relu")`` etc.; "linear" emits an identity node."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        if activation is None:
            raise ConfigError(f"{self.where}: activation must be a name, got None")
        self.activation = A.activation(activation, self.where)

    def emit(self, em, inputs):
        if self.activation == "linear":
            return em.op(self, "identity", inputs)
        return self.emit_activation(em, inputs[0], self.activation)


class ReLU(Layer):
    """``max_value`` caps the output; ``negative_slope`` scales x < 0 (Keras ReLU)."""

    def __init__(self, max_value=None, negative_slope=0.0, **kwargs):
        super().__init__(**kwargs)
        self.max_value = (None if max_value is None
                          else A.number(max_value, "max_value", self.where, 0))
        self.negative_slope = A.number(negative_slope, "negative_slope", self.where, 0)

    def emit(self, em, inputs):
        x = inputs[0]
        if self.negative_slope:
            x = em.op(self, "leaky_relu", [x], {"alpha": self.negative_slope})
            if self.max_value is not None:
                x = em.op(self, "clip", [x], {"min": -np.inf, "max": self.max_value})
            return x
        if self.max_value is None:
            return em.op(self, "relu", [x])
        if self.max_value == 6.0:
            return em.op(self, "relu6", [x])
        return em.op(self, "clip", [x], {"min": 0.0, "max": self.max_value})


class LeakyReLU(Layer):
    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:  # the Keras 2 name
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        self.negative_slope = A.number(negative_slope, "negative_slope", self.where, 0)

    def emit(self, em, inputs):
        return em.op(self, "leaky_relu", inputs, {"alpha": self.negative_slope})


class Softmax(Layer):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if not A.is_int(axis):
            raise ConfigError(f"{self.where}: axis must be an integer, got {axis!r}")
        self.axis = int(axis)

    def emit(self, em, inputs):
        return em.op(self, "softmax", inputs, {"axis": self.axis})


class Dropout(Layer):
    """Identity at inference (emits a ``dropout`` node that the optimiser removes)."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = A.number(rate, "rate", self.where, 0, 1, hi_open=True)

    def emit(self, em, inputs):
        return em.op(self, "dropout", inputs, {"rate": self.rate})


class _Merge(Layer):
    num_inputs = None
    op = ""

    def build(self, input_shape):
        first = input_shape[0]
        for i, s in enumerate(input_shape[1:], 1):
            if len(s) != len(first):
                raise ShapeError(f"{self.where}: input {i} has shape {s} but input 0 has "
                                 f"{first} (ranks differ)")

    def emit(self, em, inputs):
        y = inputs[0]
        for x in inputs[1:]:
            y = em.op(self, self.op, [y, x])
        return y


class Add(_Merge):
    """Elementwise sum of a list of tensors."""
    op = "add"


class Multiply(_Merge):
    """Elementwise product of a list of tensors."""
    op = "mul"


class Concatenate(_Merge):
    """Join a list of tensors along ``axis`` (channels by default)."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if not A.is_int(axis):
            raise ConfigError(f"{self.where}: axis must be an integer, got {axis!r}")
        self.axis = int(axis)

    def build(self, input_shape):
        super().build(input_shape)
        if self.axis % len(input_shape[0]) == 0:
            raise ShapeError(f"{self.where}: cannot concatenate along the batch axis "
                             f"(axis={self.axis})")

    def emit(self, em, inputs):
        return em.op(self, "concat", inputs, {"axis": self.axis})
