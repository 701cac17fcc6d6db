"""Inference batch normalisation and the per-channel affine it becomes when it cannot fold;
local response normalisation across channels.

batch_norm(x, gamma, beta, mean, var) = gamma * (x - mean) / sqrt(var + epsilon) + beta,
per channel along ``axis`` (the last one in NHWC). scale_shift(x, s, t) = x * s + t.
lrn(x) = x / (bias + alpha / size * sum of x^2 over a window of ``size`` channels) ** beta,
the window of channel c being [c - (size - 1) // 2, c + size // 2] clipped to the channels
(ONNX LRN, Caffe's ACROSS_CHANNELS LRN of AlexNet and GoogLeNet), over the last axis.
"""

from __future__ import annotations

import numpy as np

from cnnc.errors import ShapeError
from cnnc.ir.types import TensorType
from cnnc.ops.common import expect_vector, normalize_axis, same_dtype
from cnnc.ops.registry import Attr, def_op

batch_norm = def_op("batch_norm", arity=(5, 5), doc=__doc__, attrs={
    "epsilon": Attr("float", 1e-3, "added to the variance (Keras 1e-3, ONNX 1e-5)"),
    "axis": Attr("int", -1, "channel axis"),
})


@batch_norm.shape
def _(x, gamma, beta, mean, var, *, epsilon, axis):
    c = x.shape[normalize_axis(axis, x.rank)]
    for t, what in ((gamma, "gamma"), (beta, "beta"), (mean, "moving_mean"),
                    (var, "moving_variance")):
        expect_vector(t, c, what)
    return TensorType(x.shape, same_dtype(x, gamma, beta, mean, var))


def _along(v, axis, rank):
    shape = [1] * rank
    shape[normalize_axis(axis, rank)] = -1
    return v.reshape(shape)


@batch_norm.reference
def _(x, gamma, beta, mean, var, *, epsilon, axis):
    scale = gamma / np.sqrt(var + x.dtype.type(epsilon))
    return (x - _along(mean, axis, x.ndim)) * _along(scale, axis, x.ndim) + _along(beta, axis,
                                                                                   x.ndim)


def bn_scale_shift(gamma, beta, mean, var, epsilon):
    """BN as ``x * scale + shift``, computed in float64 (one definition for every pass)."""
    g, bt, m, v = (np.asarray(a, dtype=np.float64) for a in (gamma, beta, mean, var))
    scale = g / np.sqrt(v + epsilon)
    return scale, bt - m * scale


scale_shift = def_op("scale_shift", arity=(3, 3), traits=("pure", "elementwise"), doc=__doc__)


@scale_shift.shape
def _(x, s, t):
    expect_vector(s, x.shape[-1], "scale")
    expect_vector(t, x.shape[-1], "shift")
    return TensorType(x.shape, same_dtype(x, s, t))


scale_shift.reference(lambda x, s, t: x * s + t)


lrn = def_op("lrn", doc=__doc__, attrs={
    "size": Attr("pos_int", doc="channels in the window"),
    "alpha": Attr("float", 1e-4), "beta": Attr("float", 0.75), "bias": Attr("float", 1.0),
})


@lrn.shape
def _(x, *, size, alpha, beta, bias):
    if x.rank < 2:
        raise ShapeError(f"lrn needs a channel axis (last), got {x}")
    return x


def lrn_window(c: int, size: int) -> tuple[int, int]:
    """Channels [c - lo, c + hi] form channel c's window (ONNX: lo = (size - 1) // 2)."""
    lo = (size - 1) // 2
    return lo, size - 1 - lo


@lrn.reference
def _(x, *, size, alpha, beta, bias):
    c = x.shape[-1]
    lo, hi = lrn_window(c, size)
    sq = np.pad(x * x, [(0, 0)] * (x.ndim - 1) + [(lo, hi)])
    acc = np.cumsum(sq, axis=-1)
    acc = np.concatenate([np.zeros_like(acc[..., :1]), acc], axis=-1)
    window = acc[..., size:size + c] - acc[..., :c]
    return x / (bias + alpha / size * window) ** beta


# ---- layer, group and instance normalisation -------------------------------------
#: layer_norm(x, scale, bias) {axes, epsilon}: statistics over ``axes`` (any set of axes),
#: ``(x - mean) / sqrt(var + epsilon) * scale + bias`` with ``scale`` and ``bias`` broadcast
#: NumPy-style against ``x`` (ONNX LayerNormalization over axis..end, a ConvNeXt channel
#: LayerNorm over the last NHWC axis, a Keras LayerNormalization over any axes).
layer_norm = def_op("layer_norm", arity=(3, 3), attrs={
    "axes": Attr("ints", (-1,), "the normalised axes"),
    "epsilon": Attr("float", 1e-5, "added to the variance (ONNX 1e-5, Keras 1e-3)"),
}, doc="layer_norm(x, scale, bias): per-slice statistics over ``axes``; scale and bias "
       "broadcast against x")


def norm_axes(rank: int, axes) -> tuple[int, ...]:
    ax = tuple(sorted(normalize_axis(a, rank, "layer_norm axis") for a in axes))
    if not ax or len(set(ax)) != len(ax):
        raise ShapeError(f"layer_norm axes {list(axes)} must be distinct and non-empty "
                         f"(rank {rank})")
    return ax


def _broadcasts_to(t: TensorType, x: TensorType, what: str) -> None:
    from cnnc.ops.common import broadcast_shapes
    try:
        ok = t.rank <= x.rank and broadcast_shapes(x.shape, t.shape) == tuple(x.shape)
    except ShapeError:
        ok = False
    if not ok:
        raise ShapeError(f"{what} {t} does not broadcast to the input {x}")


@layer_norm.shape
def _(x, scale, bias, *, axes, epsilon):
    ax = norm_axes(x.rank, axes)
    for k in ax:
        if not isinstance(x.shape[k], int):
            raise ShapeError(f"layer_norm cannot normalise over the symbolic dim {k} of {x}")
    _broadcasts_to(scale, x, "scale")
    _broadcasts_to(bias, x, "bias")
    return TensorType(x.shape, same_dtype(x, scale, bias))


@layer_norm.reference
def _(x, scale, bias, *, axes, epsilon):
    ax = norm_axes(x.ndim, axes)
    mean = x.mean(axis=ax, keepdims=True)
    d = x - mean
    var = (d * d).mean(axis=ax, keepdims=True)
    return d / np.sqrt(var + x.dtype.type(epsilon)) * scale + bias


#: group_norm(x, scale, bias) {groups, epsilon}: the last axis holds C channels in ``groups``
#: groups of C / groups; statistics per (example, group) over every other axis; ``scale`` and
#: ``bias`` are per channel (C,) (ONNX GroupNormalization-21; opset 18's per-group scale is
#: repeated per channel by the importer). InstanceNormalization is groups = C.
group_norm = def_op("group_norm", arity=(3, 3), attrs={
    "groups": Attr("pos_int", doc="channel groups (C for instance normalisation)"),
    "epsilon": Attr("float", 1e-5),
}, doc="group_norm(x, scale, bias) over channel-last x")


@group_norm.shape
def _(x, scale, bias, *, groups, epsilon):
    if x.rank < 2:
        raise ShapeError(f"group_norm needs (N, ..., C), got {x}")
    c = x.shape[-1]
    if any(not isinstance(d, int) for d in x.shape[1:]):
        raise ShapeError(f"group_norm needs static non-batch dims, got {x}")
    if c % groups:
        raise ShapeError(f"groups={groups} does not divide the {c} channels of {x}")
    expect_vector(scale, c, "scale")
    expect_vector(bias, c, "bias")
    return TensorType(x.shape, same_dtype(x, scale, bias))


def group_view(shape, groups):
    """(logical shape (N, ..., G, C/G), its normalised axes) of a group_norm input."""
    *lead, c = shape
    view = (*lead, groups, c // groups)
    return view, tuple(k for k in range(1, len(view)) if k != len(view) - 2)


@group_norm.reference
def _(x, scale, bias, *, groups, epsilon):
    view, axes = group_view(x.shape, groups)
    xg = x.reshape(view)
    mean = xg.mean(axis=axes, keepdims=True)
    d = xg - mean
    var = (d * d).mean(axis=axes, keepdims=True)
    return (d / np.sqrt(var + x.dtype.type(epsilon))).reshape(x.shape) * scale + bias
