"""Inference batch normalisation and the per-channel affine it becomes when it cannot fold.

batch_norm(x, gamma, beta, mean, var) = gamma * (x - mean) / sqrt(var + epsilon) + beta,
per channel along ``axis`` (the last one in NHWC). scale_shift(x, s, t) = x * s + t.
"""

from __future__ import annotations

import numpy as np

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
