"""Elementwise ops: activations, binary arithmetic with NumPy broadcasting, bias_add, identity.

:data:`ACTIVATIONS` maps each activation op to ``fn(y, **attrs)``: the single definition of its
meaning, reused by the fused epilogues.
"""

from __future__ import annotations

import numpy as np

from cnnc.ir.types import TensorType
from cnnc.ops.common import broadcast_shapes, expect_vector, same_dtype
from cnnc.ops.registry import Attr, def_op


def _sigmoid(y):
    # exp of a non-positive number only: no overflow warning for large |y|
    e = np.exp(-np.abs(y))
    return np.where(y >= 0, 1 / (1 + e), e / (1 + e)).astype(y.dtype, copy=False)


ACTIVATIONS = {
    "relu": (lambda y: np.maximum(y, 0), {}),
    "relu6": (lambda y: np.minimum(np.maximum(y, 0), 6), {}),
    "clip": (lambda y, min, max: np.minimum(np.maximum(y, min), max),
             {"min": Attr("float"), "max": Attr("float")}),
    "leaky_relu": (lambda y, alpha: np.where(y >= 0, y, y * y.dtype.type(alpha)),
                   {"alpha": Attr("float", 0.2)}),
    "sigmoid": (_sigmoid, {}),
    "tanh": (np.tanh, {}),
    "hard_sigmoid": (lambda y, alpha, beta: np.clip(y * alpha + beta, 0, 1).astype(y.dtype),
                     {"alpha": Attr("float", 0.2), "beta": Attr("float", 0.5)}),
    "hard_swish": (lambda y: y * np.clip(y / 6 + 0.5, 0, 1).astype(y.dtype), {}),
}


def _unary_type(x, **_):
    return x


for _name, (_fn, _attrs) in ACTIVATIONS.items():
    _op = def_op(_name, attrs=_attrs, arity=(1, 1), traits=("pure", "elementwise", "activation"))
    _op.shape(_unary_type)
    _op.reference(lambda x, _fn=_fn, **a: _fn(x, **a).astype(x.dtype, copy=False))


def activation(name: str, y: np.ndarray, **attrs) -> np.ndarray:
    return ACTIVATIONS[name][0](y, **attrs).astype(y.dtype, copy=False)


# ---- binary arithmetic (NumPy broadcasting) ---------------------------------------------------
BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


def _binary_type(a: TensorType, b: TensorType) -> TensorType:
    return TensorType(broadcast_shapes(a.shape, b.shape), same_dtype(a, b))


for _name, _ufunc in BINARY.items():
    _op = def_op(_name, arity=(2, 2), traits=("pure", "elementwise"))
    _op.shape(_binary_type)
    _op.reference(lambda a, b, _u=_ufunc: _u(a, b))


# ---- bias_add, identity, dropout --------------------------------------------------------------
bias_add = def_op("bias_add", arity=(2, 2), traits=("pure", "elementwise"),
                  doc="x + b over the last (channel) axis; b has shape (C,).")


@bias_add.shape
def _(x, b):
    expect_vector(b, x.shape[-1], "bias")
    return TensorType(x.shape, same_dtype(x, b))


bias_add.reference(lambda x, b: x + b)

identity = def_op("identity", arity=(1, 1), traits=("pure", "elementwise", "no_op"))
identity.shape(_unary_type)
identity.reference(lambda x: x)

dropout = def_op("dropout", attrs={"rate": Attr("float", 0.5)}, arity=(1, 1),
                 traits=("pure", "elementwise", "no_op"), doc="identity at inference")
dropout.shape(_unary_type)
dropout.reference(lambda x, rate: x)
