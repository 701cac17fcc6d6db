"""dense(x, w[, b]) = x @ w + b with x (N, in), w (in, out); matmul with NumPy semantics;
softmax and log_softmax along an axis."""

from __future__ import annotations

import numpy as np

from cnnc.errors import ShapeError
from cnnc.ir.types import TensorType
from cnnc.ops.common import broadcast_shapes, expect_rank, expect_vector, normalize_axis, \
    same_dtype
from cnnc.ops.registry import Attr, def_op

dense = def_op("dense", arity=(2, 3), doc=__doc__)


def dense_type(x, w, b=None) -> TensorType:
    expect_rank(x, 2, "input (N, features)")
    expect_rank(w, 2, "kernel (in, out)")
    if x.shape[1] != w.shape[0]:
        raise ShapeError(f"input has {x.shape[1]} features but the kernel expects {w.shape[0]} "
                         f"(input {x}, kernel {w})")
    if b is not None:
        expect_vector(b, w.shape[1], "bias")
    return TensorType((x.shape[0], w.shape[1]), same_dtype(x, w))


dense.shape(dense_type)


@dense.reference
def _(x, w, b=None):
    y = x @ w
    return y if b is None else y + b


matmul = def_op("matmul", arity=(2, 2))


@matmul.shape
def _(a, b):
    if a.rank < 2 or b.rank < 2:
        raise ShapeError(f"matmul needs rank >= 2 operands, got {a} and {b}")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul inner dims differ: {a} @ {b}")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return TensorType((*batch, a.shape[-2], b.shape[-1]), same_dtype(a, b))


matmul.reference(np.matmul)

softmax = def_op("softmax", attrs={"axis": Attr("int", -1)})


@softmax.shape
def _(x, *, axis):
    normalize_axis(axis, x.rank)
    return x


@softmax.reference
def _(x, *, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


log_softmax = def_op("log_softmax", attrs={"axis": Attr("int", -1)},
                     doc="x - max - log(sum(exp(x - max))) along axis")
log_softmax.shape(softmax.shape_fn)


@log_softmax.reference
def _(x, *, axis):
    # z - log(sum e^z) with z = x - max, as z - log1p(sum of e^z without the max's own 1):
    # a row dominated by its max keeps its relative accuracy (log(1 + tiny) would round)
    z = x - x.max(axis=axis, keepdims=True)
    first = np.expand_dims(np.argmax(x, axis=axis), axis)
    mask = np.arange(x.shape[axis]).reshape([-1 if k == axis % x.ndim else 1
                                             for k in range(x.ndim)]) == first
    rest = np.where(mask, 0, np.exp(z)).sum(axis=axis, keepdims=True)
    return z - np.log1p(rest)


# ---- hardmax -----------------------------------------------------------------------
hardmax = def_op("hardmax", attrs={"axis": Attr("int", -1)},
                 doc="1 at the first maximum along axis, 0 elsewhere (ONNX Hardmax-13)")
hardmax.shape(softmax.shape_fn)


@hardmax.reference
def _(x, *, axis):
    axis = normalize_axis(axis, x.ndim)
    first = np.expand_dims(np.argmax(x, axis=axis), axis)
    idx = np.arange(x.shape[axis]).reshape([-1 if k == axis else 1 for k in range(x.ndim)])
    return (idx == first).astype(x.dtype)
