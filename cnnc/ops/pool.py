"""Pooling over NHWC: max_pool2d, avg_pool2d, global_avg_pool, global_max_pool.

Max pooling pads with -inf (a padded cell is never the max). Average pooling divides by the
number of real input cells in the window (TF's SAME rule) unless ``count_include_pad``, where
it divides by the window clipped to the padded input (ONNX's rule, also with ``ceil_mode``).
"""

from __future__ import annotations

import numpy as np

from cnnc.errors import ShapeError
from cnnc.ir.types import TensorType
from cnnc.ops.common import expect_rank
from cnnc.ops.padding import window_geometry
from cnnc.ops.registry import Attr, def_op

POOL_ATTRS = {
    "pool_size": Attr("pair", (2, 2)),
    "strides": Attr("pair", (2, 2)),
    "padding": Attr("padding", "valid"),
    "dilation": Attr("pair", (1, 1)),
    "ceil_mode": Attr("bool", False),
}

max_pool2d = def_op("max_pool2d", attrs=POOL_ATTRS, doc=__doc__)
avg_pool2d = def_op("avg_pool2d", attrs={**POOL_ATTRS, "count_include_pad": Attr("bool", False)},
                    doc=__doc__)


def pool_geometry(x: TensorType, pool_size, strides, padding, dilation, ceil_mode):
    expect_rank(x, 4, "input (N,H,W,C)")
    h, w = x.shape[1:3]
    if not isinstance(h, int) or not isinstance(w, int):
        raise ShapeError(f"input H and W must be static, got {x}")
    pads, out_hw = window_geometry((h, w), pool_size, strides, dilation, padding, ceil_mode)
    for axis, n, k, s, d, (before, _), o in zip("HW", (h, w), pool_size, strides, dilation,
                                               pads, out_hw):
        for i in range(o):  # a window of padding only has no max and no average
            first = max(0, -(-(before - i * s) // d))  # first tap at or after the input start
            if first >= k or i * s + first * d >= before + n:
                raise ShapeError(f"pooling window {i} along {axis} covers only padding "
                                 f"(input {x}, pool_size {pool_size}, strides {strides}, "
                                 f"dilation {dilation}, pads {pads})")
    return pads, out_hw


def _pool_type(x, *, pool_size, strides, padding, dilation, ceil_mode, count_include_pad=False):
    _, (oh, ow) = pool_geometry(x, pool_size, strides, padding, dilation, ceil_mode)
    return TensorType((x.shape[0], oh, ow, x.shape[3]), x.dtype)


max_pool2d.shape(_pool_type)
avg_pool2d.shape(_pool_type)


def _windows(a, pads, out_hw, pool_size, strides, dilation, fill):
    """Yield the (N, oh, ow, C) slice of every window tap over ``a`` padded with ``fill``."""
    (pt, pb), (pl, pr) = pads
    (oh, ow), (kh, kw), (sh, sw), (dh, dw) = out_hw, pool_size, strides, dilation
    h, w = a.shape[1:3]
    # ceil_mode windows may run past the padded input: pad that overhang too
    eh = max(0, (oh - 1) * sh + (kh - 1) * dh + 1 - (h + pt + pb))
    ew = max(0, (ow - 1) * sw + (kw - 1) * dw + 1 - (w + pl + pr))
    ap = np.pad(a, ((0, 0), (pt, pb + eh), (pl, pr + ew), (0, 0)), constant_values=fill)
    for i in range(kh):
        for j in range(kw):
            yield ap[:, i * dh: i * dh + (oh - 1) * sh + 1: sh,
                     j * dw: j * dw + (ow - 1) * sw + 1: sw, :]


@max_pool2d.reference
def _(x, *, pool_size, strides, padding, dilation, ceil_mode):
    pads, out_hw = window_geometry(x.shape[1:3], pool_size, strides, dilation, padding, ceil_mode)
    out = None
    for tap in _windows(x, pads, out_hw, pool_size, strides, dilation, -np.inf):
        out = tap.copy() if out is None else np.maximum(out, tap)
    return out


@avg_pool2d.reference
def _(x, *, pool_size, strides, padding, dilation, ceil_mode, count_include_pad):
    pads, out_hw = window_geometry(x.shape[1:3], pool_size, strides, dilation, padding, ceil_mode)
    total = np.zeros((x.shape[0], *out_hw, x.shape[3]), dtype=x.dtype)
    for tap in _windows(x, pads, out_hw, pool_size, strides, dilation, 0):
        total += tap
    if count_include_pad:  # cells of the padded input (not of the ceil_mode overhang)
        (pt, pb), (pl, pr) = pads
        ones = np.ones((1, x.shape[1] + pt + pb, x.shape[2] + pl + pr, 1), dtype=x.dtype)
        pads = ((0, 0), (0, 0))
    else:
        ones = np.ones((1, *x.shape[1:3], 1), dtype=x.dtype)
    count = sum(_windows(ones, pads, out_hw, pool_size, strides, dilation, 0))
    return total / count


global_avg_pool = def_op("global_avg_pool", attrs={"keepdims": Attr("bool", False)})
global_max_pool = def_op("global_max_pool", attrs={"keepdims": Attr("bool", False)})


def _global_type(x, *, keepdims):
    expect_rank(x, 4, "input (N,H,W,C)")
    n, _, _, c = x.shape
    return TensorType((n, 1, 1, c) if keepdims else (n, c), x.dtype)


global_avg_pool.shape(_global_type)
global_max_pool.shape(_global_type)
global_avg_pool.reference(lambda x, keepdims: x.mean(axis=(1, 2), keepdims=keepdims))
global_max_pool.reference(lambda x, keepdims: x.max(axis=(1, 2), keepdims=keepdims))


# ---- Lp pooling --------------------------------------------------------------------
#: lp_pool2d: (sum over the window of |x|^p)^(1/p); padded cells are zeros (they add nothing).
#: global_lp_pool: the same over all of H x W.
lp_pool2d = def_op("lp_pool2d", attrs={**POOL_ATTRS, "p": Attr("float", 2.0, "the norm's p")},
                   doc="(sum |x|^p over the window)^(1/p); padding counts as 0")
global_lp_pool = def_op("global_lp_pool", attrs={"p": Attr("float", 2.0),
                                                 "keepdims": Attr("bool", False)})


def _check_p(p):
    from cnnc.errors import ConfigError
    if not p >= 1 or p == float("inf"):
        raise ConfigError(f"Lp pooling needs a finite p >= 1, got p={p}")


@lp_pool2d.shape
def _(x, *, p, **attrs):
    _check_p(p)
    return _pool_type(x, **attrs)


def lp_norm(total, p):
    """(sum of |x|^p) -> its p-th root (p = 1, 2 exactly)."""
    return total if p == 1 else np.sqrt(total) if p == 2 else total ** (1.0 / p)


def lp_power(a, p):
    return np.abs(a) if p == 1 else a * a if p == 2 else np.abs(a) ** p


@lp_pool2d.reference
def _(x, *, pool_size, strides, padding, dilation, ceil_mode, p):
    pads, out_hw = window_geometry(x.shape[1:3], pool_size, strides, dilation, padding, ceil_mode)
    total = np.zeros((x.shape[0], *out_hw, x.shape[3]), dtype=x.dtype)
    for tap in _windows(lp_power(x, p), pads, out_hw, pool_size, strides, dilation, 0):
        total += tap
    return lp_norm(total, p)


@global_lp_pool.shape
def _(x, *, p, keepdims):
    _check_p(p)
    return _global_type(x, keepdims=keepdims)


@global_lp_pool.reference
def _(x, *, p, keepdims):
    return lp_norm(lp_power(x, p).sum(axis=(1, 2), keepdims=keepdims), p)
