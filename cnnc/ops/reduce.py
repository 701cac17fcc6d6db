"""Reductions over any set of axes: reduce(x) {kind, axes, keepdims}.

kind: ``sum``, ``mean``, ``max``, ``min``, ``sum_square`` (sum of x^2), ``l1`` (sum of |x|),
``l2`` (sqrt of the sum of x^2), ``log_sum_exp`` (log of the sum of e^x, computed as
max + log(sum(e^(x - max)))). ``axes`` are distinct, in range, negative ones counted from the
end; the reduced dims are dropped, or kept as 1 with ``keepdims``.
"""

from __future__ import annotations

import numpy as np

from cnnc.errors import ConfigError, ShapeError
from cnnc.ir.types import TensorType
from cnnc.ops.common import normalize_axis
from cnnc.ops.registry import Attr, def_op

KINDS = ("sum", "mean", "max", "min", "sum_square", "l1", "l2", "log_sum_exp")

reduce = def_op("reduce", doc=__doc__, attrs={
    "kind": Attr("str", doc=f"one of {KINDS}"),
    "axes": Attr("ints", doc="the reduced axes"),
    "keepdims": Attr("bool", False),
})


def reduced_axes(rank: int, axes) -> tuple[int, ...]:
    norm = tuple(sorted(normalize_axis(a, rank, "reduce axis") for a in axes))
    if len(set(norm)) != len(norm):
        raise ShapeError(f"reduce axes {list(axes)} repeat an axis (rank {rank})")
    if not norm:
        raise ShapeError("reduce needs at least one axis")
    return norm


@reduce.shape
def _(x, *, kind, axes, keepdims):
    if kind not in KINDS:
        raise ConfigError(f"reduce kind {kind!r} is not one of {KINDS}")
    ax = reduced_axes(x.rank, axes)
    shape = tuple(1 if k in ax else d for k, d in enumerate(x.shape) if keepdims or k not in ax)
    return TensorType(shape, x.dtype)


@reduce.reference
def _(x, *, kind, axes, keepdims):
    ax = reduced_axes(x.ndim, axes)
    with np.errstate(all="ignore"):
        if kind == "log_sum_exp":
            m = x.max(axis=ax, keepdims=True)
            m = np.where(np.isfinite(m), m, 0)
            y = np.log(np.exp(x - m).sum(axis=ax, keepdims=True)) + m
            return y if keepdims else np.squeeze(y, ax)
        fn = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min,
              "sum_square": lambda a, **k: np.sum(a * a, **k),
              "l1": lambda a, **k: np.sum(np.abs(a), **k),
              "l2": lambda a, **k: np.sqrt(np.sum(a * a, **k))}[kind]
        return fn(x, axis=ax, keepdims=keepdims)
