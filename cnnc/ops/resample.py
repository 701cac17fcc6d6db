"""Resampling: ``resize`` of the H and W axes of an NHWC tensor, nearest or bilinear, with ONNX
Resize's coordinate transformations.

Every output row (column) reads at most two input rows (columns): :func:`axis_table` gives,
per output index, the two source indices and the weight of the second one (0 for nearest),
computed once at compile time in float64. The reference, the CPU and the CUDA kernels all read
these tables, so they agree on every rounding decision; the coordinate formulas follow the ONNX
specification (onnx.reference):

* ``half_pixel``: ``(x + 0.5) / scale - 0.5``; ``pytorch_half_pixel``: the same, but ``-0.5``
  when the resized length is 1; ``half_pixel_symmetric`` (opset 19): half_pixel re-centred when
  the resized length was rounded; ``align_corners``: ``x * (in - 1) / (out - 1)`` (0 when
  ``out`` is 1); ``asymmetric``: ``x / scale``;
* nearest rounds the coordinate (computed in float32, in ONNX Runtime's order of operations, so
  that float32 ties round alike) by ``nearest_mode`` (``round_prefer_floor``,
  ``round_prefer_ceil``, ``floor``, ``ceil``; ``simple``, ONNX Runtime's rule for opset-10
  Resize and Upsample: truncate when upsampling, ceil when downsampling); linear interpolates
  between ``floor(x)`` and ``floor(x) + 1``; source indices are clamped to the axis (edge
  padding, like ONNX).

``scales`` are the scales of the coordinate transformation (given, or ``out / in`` when a
model gives sizes); the resized length in the formulas is ``scale * in`` (the output length
when they agree), as in the specification and its node tests. (ONNX Runtime 1.2x puts the
integer output length in align_corners' formula: the two differ only for scales whose
``scale * in`` is not an integer.)
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from cnnc.errors import ConfigError, ShapeError
from cnnc.ir.types import TensorType
from cnnc.ops.common import expect_rank
from cnnc.ops.registry import KINDS, Attr, def_op

MODES = ("nearest", "linear")
COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "half_pixel_symmetric", "align_corners",
                    "asymmetric", "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")


def _floats(v, name, where):
    if not isinstance(v, (list, tuple)) or any(
            isinstance(x, bool) or not isinstance(x, numbers.Real) for x in v):
        raise ConfigError(f"{where}: {name} must be a list of numbers, got {v!r}")
    return tuple(float(x) for x in v)


KINDS.setdefault("floats", _floats)


def source_coordinate(x: int, n_in: int, n_out: int, scale: float, coord: str) -> float:
    """The input coordinate output index ``x`` samples (float64)."""
    length = scale * n_in
    if math.isclose(length, n_out, rel_tol=1e-9, abs_tol=1e-9):
        length = float(n_out)
    if coord == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if coord == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if length > 1 else -0.5
    if coord == "half_pixel_symmetric":
        adjustment = n_out / length
        offset = n_in / 2 * (1 - adjustment)
        return offset + (x + 0.5) / scale - 0.5
    if coord == "align_corners":
        return 0.0 if length == 1 else x * (n_in - 1) / (length - 1)
    if coord == "asymmetric":
        return x / scale
    if coord == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    raise ConfigError(f"unknown coordinate transformation {coord!r}; expected one of "
                      f"{list(COORDINATE_MODES)}")


def source_coordinate_f32(x: int, n_in: int, n_out: int, scale: float, coord: str) -> float:
    """:func:`source_coordinate` in float32 arithmetic, in ONNX Runtime's order of operations:
    nearest sampling rounds this value, so that a coordinate that is a tie (k + 0.5) in
    float32 rounds the way ONNX Runtime (and PyTorch) round it."""
    f = np.float32
    xs, sc, half = f(x), f(scale), f(0.5)
    length = f(scale) * f(n_in)
    if math.isclose(float(length), n_out, rel_tol=1e-6, abs_tol=1e-6):
        length = f(n_out)
    if coord == "half_pixel":
        return float((xs + half) / sc - half)
    if coord == "pytorch_half_pixel":
        return float((xs + half) / sc - half) if length > 1 else -0.5
    if coord == "half_pixel_symmetric":
        adjustment = f(n_out) / length
        offset = f(n_in) / f(2) * (f(1) - adjustment)
        return float(offset + (xs + half) / sc - half)
    if coord == "align_corners":
        return 0.0 if length == 1 else float(xs * f(n_in - 1) / (length - f(1)))
    if coord == "asymmetric":
        return float(xs / sc)
    if coord == "tf_half_pixel_for_nn":
        return float((xs + half) / sc)
    return source_coordinate(x, n_in, n_out, scale, coord)


def _nearest(c: float, mode: str, scale: float) -> int:
    f = math.floor(c)
    if c == f:
        return int(f)
    ratio = c - f
    if mode == "round_prefer_floor":
        return int(f) + (ratio > 0.5)
    if mode == "round_prefer_ceil":
        return int(f) + (ratio >= 0.5)
    if mode == "floor":
        return int(f)
    if mode == "ceil":
        return int(f) + 1
    if mode == "simple":
        return int(math.ceil(c)) if scale < 1 else int(c)
    raise ConfigError(f"unknown nearest_mode {mode!r}; expected one of {list(NEAREST_MODES)}")


def axis_table(n_in: int, n_out: int, scale: float, mode: str, coord: str,
               nearest_mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, w1) per output index: ``y[x] = (1 - w1) * src[i0] + w1 * src[i1]``."""
    i0 = np.zeros(n_out, np.int64)
    i1 = np.zeros(n_out, np.int64)
    w1 = np.zeros(n_out, np.float64)
    for x in range(n_out):
        if mode == "nearest":
            c = source_coordinate_f32(x, n_in, n_out, scale, coord)
            i0[x] = i1[x] = min(max(_nearest(c, nearest_mode, scale), 0), n_in - 1)
        else:
            c = source_coordinate(x, n_in, n_out, scale, coord)
            f = math.floor(c)
            i0[x], i1[x] = min(max(f, 0), n_in - 1), min(max(f + 1, 0), n_in - 1)
            w1[x] = c - f
    return i0, i1, w1


def resize_tables(in_hw, attrs):
    """The (i0, i1, w1) tables of the H and the W axis of a resize node."""
    return tuple(axis_table(n, o, s, attrs["mode"], attrs["coordinate_mode"],
                            attrs["nearest_mode"])
                 for n, o, s in zip(in_hw, attrs["size"], attrs["scales"]))


resize = def_op("resize", attrs={
    "size": Attr("pair", doc="output (height, width)"),
    "scales": Attr("floats", doc="(scale_h, scale_w) of the coordinate transformation"),
    "mode": Attr("str", "nearest", "nearest | linear (bilinear)"),
    "coordinate_mode": Attr("str", "half_pixel", f"one of {COORDINATE_MODES}"),
    "nearest_mode": Attr("str", "round_prefer_floor", f"one of {NEAREST_MODES}"),
}, doc="resize H and W of an NHWC tensor (ONNX Resize semantics, see cnnc.ops.resample)")


@resize.shape
def _(x, *, size, scales, mode, coordinate_mode, nearest_mode):
    expect_rank(x, 4, "resize input (N, H, W, C)")
    if mode not in MODES:
        raise ConfigError(f"resize mode {mode!r}: expected one of {list(MODES)}")
    if coordinate_mode not in COORDINATE_MODES:
        raise ConfigError(f"resize coordinate_mode {coordinate_mode!r}: expected one of "
                          f"{list(COORDINATE_MODES)}")
    if nearest_mode not in NEAREST_MODES:
        raise ConfigError(f"resize nearest_mode {nearest_mode!r}: expected one of "
                          f"{list(NEAREST_MODES)}")
    if len(scales) != 2 or any(not s > 0 for s in scales):
        raise ConfigError(f"resize scales {scales} must be two positive numbers")
    if any(not isinstance(d, int) for d in x.shape[1:]):
        raise ShapeError(f"resize needs static H, W and C, got {x}")
    if 0 in x.shape[1:3]:
        raise ShapeError(f"resize of an empty image {x}")
    return TensorType((x.shape[0], size[0], size[1], x.shape[3]), x.dtype)


@resize.reference
def _(x, *, size, scales, mode, coordinate_mode, nearest_mode):
    attrs = dict(size=size, scales=scales, mode=mode, coordinate_mode=coordinate_mode,
                 nearest_mode=nearest_mode)
    (h0, h1, wh), (v0, v1, wv) = resize_tables(x.shape[1:3], attrs)
    if mode == "nearest":
        return x[:, h0][:, :, v0]
    wh = wh.astype(x.dtype)[None, :, None, None]
    rows = x[:, h0] * (1 - wh) + x[:, h1] * wh
    wv = wv.astype(x.dtype)[None, None, :, None]
    return rows[:, :, v0] * (1 - wv) + rows[:, :, v1] * wv
