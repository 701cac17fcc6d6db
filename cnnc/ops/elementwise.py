"""Elementwise ops: activations and unary math, binary arithmetic with NumPy broadcasting
(add, sub, mul, div, max, min, prelu), comparisons and logic giving bool values, where,
bias_add, identity.

:data:`ACTIVATIONS` maps each activation op to ``fn(y, **attrs)``: the single definition of its
meaning, reused by the fused epilogues.
"""

from __future__ import annotations

import numpy as np

from cnnc.errors import DTypeError
from cnnc.ir.types import TensorType
from cnnc.ops.common import broadcast_shapes, expect_vector, same_dtype
from cnnc.ops.registry import Attr, def_op


def _sigmoid(y):
    # exp of a non-positive number only: no overflow warning for large |y|
    e = np.exp(-np.abs(y))
    return np.where(y >= 0, 1 / (1 + e), e / (1 + e)).astype(y.dtype, copy=False)


#: ONNX's Selu constants (float32 values, as the ONNX schema writes them)
SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875


def _f32(a: float) -> float:
    return float(np.float32(a))


def _quiet(fn, *args):
    """``fn(*args)`` where a NaN, an infinity or a division by zero is a result, not a
    warning (log(0) = -inf, sqrt(-1) = nan, 1/0 = inf)."""
    with np.errstate(all="ignore"):
        return fn(*args)


def _erf(y):
    from scipy.special import erf
    return erf(y)


def _erfc(y):
    from scipy.special import erfc
    return erfc(y)


def _softplus(y):
    # log(1 + e^y) without overflow: max(y, 0) + log1p(e^-|y|)
    return np.maximum(y, 0) + np.log1p(np.exp(-np.abs(y)))


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
    "erf": (lambda y: _erf(y), {}),
    # 0.5 x (1 + erf(x / sqrt 2)) written with erfc, and 0.5 x (1 + tanh z) = x sigmoid(2 z):
    # the negative tails keep their relative accuracy
    "gelu": (lambda y: 0.5 * y * _erfc(-y / np.sqrt(2.0)), {}),
    "gelu_tanh": (lambda y: y * _sigmoid(2 * np.sqrt(2 / np.pi) * (y + 0.044715 * y ** 3)), {}),
    "elu": (lambda y, alpha: np.where(y > 0, y, alpha * np.expm1(np.minimum(y, 0))),
            {"alpha": Attr("float", 1.0)}),
    "selu": (lambda y, alpha, gamma: gamma * np.where(y > 0, y, alpha * np.expm1(np.minimum(y, 0))),
             {"alpha": Attr("float", SELU_ALPHA), "gamma": Attr("float", SELU_GAMMA)}),
    "celu": (lambda y, alpha: np.maximum(y, 0) + np.minimum(0, alpha * np.expm1(
        np.minimum(y, 0) / alpha)), {"alpha": Attr("float", 1.0)}),
    "softplus": (lambda y: _softplus(y), {}),
    "softsign": (lambda y: y / (1 + np.abs(y)), {}),
    "mish": (lambda y: y * np.tanh(_softplus(y)), {}),
    "swish": (lambda y, alpha: y * _sigmoid(y * y.dtype.type(alpha)), {"alpha": Attr("float", 1.0)}),
    # thresholds are float32 attributes (as in ONNX): compared as float32 values, so that an
    # input equal to the float32 threshold is on the same side in every precision
    "thresholded_relu": (lambda y, alpha: np.where(y > _f32(alpha), y, 0),
                         {"alpha": Attr("float", 1.0)}),
    "shrink": (lambda y, bias, lambd: np.where(y < -_f32(lambd), y + bias,
                                               np.where(y > _f32(lambd), y - bias, 0)),
               {"bias": Attr("float", 0.0), "lambd": Attr("float", 0.5)}),
    "sqrt": (lambda y: _quiet(np.sqrt, y), {}),
    "exp": (lambda y: _quiet(np.exp, y), {}),
    "log": (lambda y: _quiet(np.log, y), {}),
    "neg": (np.negative, {}),
    "abs": (np.abs, {}),
    "reciprocal": (lambda y: _quiet(np.reciprocal, y), {}),
    # rounding to an integral value (NaN and infinities pass through); round: half to even
    "floor": (np.floor, {}),
    "ceil": (np.ceil, {}),
    "round": (np.round, {}),
    "pow_scalar": (lambda y, exponent: _quiet(np.power, y, y.dtype.type(exponent)),
            {"exponent": Attr("float", doc="a constant exponent")}),
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
def _prelu(x, slope):
    return np.where(x >= 0, x, x * slope)


#: add, sub, mul, div, pow; maximum and minimum (ONNX Max/Min, NaN propagates); prelu(x, slope)
#: = x where x >= 0 else slope * x, the slope broadcast like any operand (per channel: (C,))
BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
          "pow": np.power, "maximum": np.maximum, "minimum": np.minimum, "prelu": _prelu}


def _binary_type(a: TensorType, b: TensorType) -> TensorType:
    return TensorType(broadcast_shapes(a.shape, b.shape), same_dtype(a, b))


for _name, _ufunc in BINARY.items():
    _op = def_op(_name, arity=(2, 2), traits=("pure", "elementwise"))
    _op.shape(_binary_type)
    _op.reference(lambda a, b, _u=_ufunc: _quiet(_u, a, b))


# ---- comparisons, logic and where (bool values) -----------------------------------------------
#: comparisons of two operands of one dtype (NumPy broadcasting) giving bool; NaN compares
#: unequal and unordered, as in NumPy and ONNX
COMPARE = {"less": np.less, "greater": np.greater, "equal": np.equal,
           "less_equal": np.less_equal, "greater_equal": np.greater_equal}
#: logic on bool operands
LOGICAL = {"logical_and": np.logical_and, "logical_or": np.logical_or,
           "logical_xor": np.logical_xor}


def _compare_type(a: TensorType, b: TensorType) -> TensorType:
    same_dtype(a, b)
    return TensorType(broadcast_shapes(a.shape, b.shape), "bool")


def _expect_bool(*ts: TensorType) -> None:
    for t in ts:
        if t.dtype != "bool":
            raise DTypeError(f"logical operands must be bool, got {t}")


def _logical_type(a: TensorType, b: TensorType) -> TensorType:
    _expect_bool(a, b)
    return TensorType(broadcast_shapes(a.shape, b.shape), "bool")


for _name, _ufunc in COMPARE.items():
    _op = def_op(_name, arity=(2, 2), traits=("pure", "elementwise"))
    _op.shape(_compare_type)
    _op.reference(lambda a, b, _u=_ufunc: _u(a, b))

for _name, _ufunc in LOGICAL.items():
    _op = def_op(_name, arity=(2, 2), traits=("pure", "elementwise"))
    _op.shape(_logical_type)
    _op.reference(lambda a, b, _u=_ufunc: _u(a, b))

logical_not = def_op("logical_not", arity=(1, 1), traits=("pure", "elementwise"))


@logical_not.shape
def _(x):
    _expect_bool(x)
    return x


logical_not.reference(np.logical_not)

where = def_op("where", arity=(3, 3), traits=("pure", "elementwise"),
               doc="a where cond else b (cond bool; the three broadcast like NumPy's)")


@where.shape
def _(cond, a, b):
    _expect_bool(cond)
    shape = broadcast_shapes(broadcast_shapes(cond.shape, a.shape), b.shape)
    return TensorType(shape, same_dtype(a, b))


# the reference may hold a bool input as float 0/1 (every input is cast to its float dtype)
where.reference(lambda cond, a, b: np.where(np.asarray(cond) != 0, a, b))


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
