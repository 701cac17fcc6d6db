"""ONNX -> IR converters for slicing, gathering and resampling: Slice, Split,
Gather, Expand, Tile, DepthToSpace, SpaceToDepth, Resize and Upsample.

On constants (shape arithmetic) they fold at import time. On activations they follow the
layout of their input: an NHWC-held image is sliced, split, gathered, tiled or expanded in
NHWC with its ONNX axes mapped (ONNX axis 1, the channels, is IR axis 3), so no transpose is
emitted; a Split becomes one ``slice`` node per output (IR nodes have a single result).
DepthToSpace / SpaceToDepth are a reshape, one transpose (the only copy) and a reshape of the
NHWC tensor; Resize / Upsample are ``resize`` nodes over H and W (cnnc.ops.resample).
"""

from __future__ import annotations

import math

import numpy as np

from cnnc.errors import ShapeError
from cnnc.frontends.onnx.import_context import NHWC, NHWC_AXIS, PLAIN, TO_NHWC, converter
from cnnc.frontends.onnx.import_shape import _axis, _out, _settle, _symbolic
from cnnc.ops.shape import BIG


def _source(ctx, t):
    """(IR value, layout, ONNX axis -> IR axis) of a computed tensor ``t``."""
    if ctx.is_nhwc(t):
        return t.value, NHWC, NHWC_AXIS
    return ctx.plain(t), PLAIN, {k: k for k in range(ctx.rank(t))}


def _clamp(v: int) -> int:
    """ONNX's INT64 extremes as cnnc's "to the end" bound (2**62)."""
    return max(min(int(v), BIG), -BIG)


# ---- Slice, Split --------------------------------------------------------------------------------
@converter("Slice", attrs=("starts", "ends", "axes"))
def slice_(ctx, a):
    t = ctx.input(0)
    if ctx.opset < 10:
        starts, ends, axes, steps = list(a["starts"]), list(a["ends"]), a.get("axes"), None
    else:
        starts, ends = ctx.int_vector(1, "starts"), ctx.int_vector(2, "ends")
        axes = ctx.int_vector(3, "axes", required=False)
        steps = ctx.int_vector(4, "steps", required=False)
    rank = ctx.rank(t)
    axes = list(range(len(starts))) if axes is None else list(axes)
    steps = [1] * len(starts) if steps is None else list(steps)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ShapeError(f"{ctx.where}: starts {starts}, ends {ends}, axes {axes} and steps "
                         f"{steps} must have the same length")
    axes = [_axis(ctx, ax, rank) for ax in axes]
    if any(st == 0 for st in steps):
        raise ShapeError(f"{ctx.where}: steps {steps} must not be 0")
    if t.is_const:
        index = [slice(None)] * t.const.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            index[ax] = slice(s, e, st)
        ctx.define(_out(ctx), const=_settle(t.const[tuple(index)]))
        return
    v, layout, amap = _source(ctx, t)
    y = ctx.add("slice", [v], {"starts": [_clamp(s) for s in starts],
                               "ends": [_clamp(e) for e in ends],
                               "axes": [amap[ax] for ax in axes], "steps": steps})
    ctx.define(_out(ctx), y, layout)


def split_sizes(ctx, a, d, n_out):
    """The part sizes of a Split along a dim of size ``d`` into ``n_out`` outputs."""
    if ctx.opset >= 13:
        split = ctx.int_vector(1, "split", required=False)
    else:
        split = a.get("split")
    if split is not None and len(split) > 0:
        split = [int(s) for s in split]
        if len(split) != n_out or any(s < 0 for s in split) or sum(split) != d:
            raise ShapeError(f"{ctx.where}: split {split} must be {n_out} non-negative sizes "
                             f"adding up to the axis size {d}")
        return split
    n = a.get("num_outputs", n_out)
    if n != n_out:
        raise ShapeError(f"{ctx.where}: num_outputs={n} but the node has {n_out} outputs")
    if d % n == 0:
        return [d // n] * n
    if ctx.opset >= 18:  # ceil(d / n) each, the last one smaller
        chunk = -(-d // n)
        sizes = [chunk] * (n - 1) + [d - chunk * (n - 1)]
        if sizes[-1] >= 0:
            return sizes
    raise ShapeError(f"{ctx.where}: an axis of size {d} cannot be split into {n} equal parts")


@converter("Split", attrs=("axis", "split", "num_outputs"))
def split(ctx, a):
    t = ctx.input(0)
    shape = ctx.onnx_shape(t)
    axis = _axis(ctx, a.get("axis", 0), len(shape))
    d = shape[axis]
    if not isinstance(d, int):
        ctx.unsupported(f"Split of the symbolic dim {d!r} (axis {axis}) of {list(shape)}")
    outs = list(ctx.node.output)
    sizes = split_sizes(ctx, a, d, len(outs))
    start = 0
    for name, size in zip(outs, sizes):
        stop = start + size
        if name:
            if t.is_const:
                index = [slice(None)] * len(shape)
                index[axis] = slice(start, stop)
                ctx.define(name, const=_settle(t.const[tuple(index)]))
            else:
                v, layout, amap = _source(ctx, t)
                y = ctx.add("slice", [v], {"starts": [start], "ends": [stop],
                                           "axes": [amap[axis]], "steps": [1]})
                ctx.define(name, y, layout)
        start = stop


# ---- Gather, Expand, Tile ----------------------------------------------------------------------
@converter("Gather", attrs=("axis",))
def gather(ctx, a):
    t = ctx.input(0)
    idx = np.asarray(ctx.const_input(1, "the indices (Gather of activations needs constant "
                                       "indices)"))
    if idx.dtype.kind not in "iu":
        raise ShapeError(f"{ctx.where}: indices must be integers, got {idx.dtype}")
    shape = ctx.onnx_shape(t)
    axis = _axis(ctx, a.get("axis", 0), len(shape))
    d = shape[axis]
    if not isinstance(d, int):
        ctx.unsupported(f"Gather along the symbolic dim {d!r} (axis {axis})")
    idx = idx.astype(np.int64)
    bad = idx[(idx < -d) | (idx >= d)]
    if bad.size:
        raise ShapeError(f"{ctx.where}: indices {bad.tolist()} are out of range for axis {axis} "
                         f"of shape {list(shape)} (expected -{d}..{d - 1})")
    idx = np.where(idx < 0, idx + d, idx)
    if t.is_const:
        ctx.define(_out(ctx), const=_settle(np.take(t.const, idx, axis=axis)))
        return
    attrs = {"indices": idx.ravel().tolist(), "indices_shape": list(idx.shape)}
    if ctx.is_nhwc(t) and (idx.ndim == 1 or (idx.ndim == 0 and axis == 1)):
        # a 1-D index keeps the rank (and NHWC); dropping the channel axis leaves (N, H, W)
        y = ctx.add("take", [t.value], {"axis": NHWC_AXIS[axis], **attrs})
        ctx.define(_out(ctx), y, NHWC if idx.ndim == 1 else PLAIN)
        return
    ctx.define(_out(ctx), ctx.add("take", [ctx.plain(t)], {"axis": axis, **attrs}), PLAIN)


@converter("Expand")
def expand(ctx, a):
    t = ctx.input(0)
    target = list(np.ravel(ctx.const_input(1, "the shape")))
    shape = ctx.onnx_shape(t)
    if t.is_const:
        if _symbolic(t.const) or any(isinstance(d, str) for d in target):
            ctx.unsupported(f"Expand of a constant to the symbolic shape {target}")
        ctx.define(_out(ctx), const=_settle(t.const * np.ones([int(d) for d in target],
                                                                t.const.dtype)))
        return
    off = len(target) - len(shape)
    dims = []
    for k, d in enumerate(target):
        if isinstance(d, str):
            if k < off or shape[k - off] != d:
                ctx.unsupported(f"Expand to {target}: the dynamic batch dim moves")
            dims.append(1)  # keeps the input's (symbolic) dim
        elif int(d) < 0:
            raise ShapeError(f"{ctx.where}: negative dim in the shape {target}")
        else:
            dims.append(int(d))
    if ctx.is_nhwc(t) and len(dims) == 4:
        y = ctx.add("broadcast_to", [t.value], {"shape": [dims[i] for i in TO_NHWC]})
        ctx.define(_out(ctx), y, NHWC)
        return
    ctx.define(_out(ctx), ctx.add("broadcast_to", [ctx.plain(t)], {"shape": dims}), PLAIN)


@converter("Tile")
def tile(ctx, a):
    t = ctx.input(0)
    reps = ctx.int_vector(1, "repeats")
    rank = ctx.rank(t)
    if len(reps) != rank or any(r < 0 for r in reps):
        raise ShapeError(f"{ctx.where}: repeats {reps} must be {rank} non-negative ints for "
                         f"shape {list(ctx.onnx_shape(t))}")
    if t.is_const:
        ctx.define(_out(ctx), const=_settle(np.tile(t.const, reps)))
        return
    v, layout, amap = _source(ctx, t)
    ir = [1] * rank
    for k, r in enumerate(reps):
        ir[amap[k]] = r
    ctx.define(_out(ctx), ctx.add("tile", [v], {"repeats": ir}), layout)


# ---- DepthToSpace, SpaceToDepth ------------------------------------------------------------------
def _blocks(ctx, a, t):
    if "blocksize" not in a:
        raise ShapeError(f"{ctx.where}: the blocksize attribute is required")
    b = int(a["blocksize"])
    if b < 1:
        raise ShapeError(f"{ctx.where}: blocksize must be >= 1, got {b}")
    mode = a.get("mode", "DCR")
    if mode not in ("DCR", "CRD"):
        ctx.unsupported(f"mode={mode!r} (only 'DCR' and 'CRD')")
    if ctx.rank(t) != 4:
        raise ShapeError(f"{ctx.where}: input must be 4-D (N, C, H, W), got shape "
                         f"{list(ctx.onnx_shape(t))}")
    _, c, h, w = ctx.onnx_shape(t)
    if not all(isinstance(d, int) for d in (c, h, w)):
        ctx.unsupported(f"{ctx.node.op_type} of symbolic dims {list(ctx.onnx_shape(t))}")
    return b, mode, c, h, w


@converter("DepthToSpace", attrs=("blocksize", "mode"))
def depth_to_space(ctx, a):
    t = ctx.input(0)
    b, mode, c, h, w = _blocks(ctx, a, t)
    if c % (b * b):
        raise ShapeError(f"{ctx.where}: C={c} is not a multiple of blocksize^2={b * b}")
    co = c // (b * b)
    x = ctx.nhwc(t)
    if mode == "DCR":  # channel = (i * b + j) * C' + c'
        y = ctx.add("reshape", [x], {"shape": [0, h, w, b, b, co]})
        y = ctx.add("transpose", [y], {"perm": [0, 1, 3, 2, 4, 5]})
    else:              # channel = c' * b * b + i * b + j
        y = ctx.add("reshape", [x], {"shape": [0, h, w, co, b, b]})
        y = ctx.add("transpose", [y], {"perm": [0, 1, 4, 2, 5, 3]})
    ctx.define(_out(ctx), ctx.add("reshape", [y], {"shape": [0, h * b, w * b, co]}), NHWC)


@converter("SpaceToDepth", attrs=("blocksize", "mode"))
def space_to_depth(ctx, a):
    t = ctx.input(0)
    b, mode, c, h, w = _blocks(ctx, a, t)
    if h % b or w % b:
        raise ShapeError(f"{ctx.where}: H={h} and W={w} must be multiples of blocksize={b}")
    x = ctx.nhwc(t)
    y = ctx.add("reshape", [x], {"shape": [0, h // b, b, w // b, b, c]})
    perm = [0, 1, 3, 2, 4, 5] if mode == "DCR" else [0, 1, 3, 5, 2, 4]
    y = ctx.add("transpose", [y], {"perm": perm})
    ctx.define(_out(ctx), ctx.add("reshape", [y], {"shape": [0, h // b, w // b, c * b * b]}),
               NHWC)


# ---- Resize, Upsample ----------------------------------------------------------------------------
RESIZE_ATTRS = ("antialias", "axes", "coordinate_transformation_mode", "cubic_coeff_a",
                "exclude_outside", "extrapolation_value", "keep_aspect_ratio_policy", "mode",
                "nearest_mode")


def _full(ctx, vals, axes, rank, fill, what):
    """Per-axis values given for ``axes`` (opset 18) as one value per dim."""
    if axes is None:
        if len(vals) != rank:
            raise ShapeError(f"{ctx.where}: {what} {vals} must have {rank} values")
        return list(vals)
    if len(vals) != len(axes):
        raise ShapeError(f"{ctx.where}: {what} {vals} must have one value per axis {axes}")
    out = list(fill)
    for v, ax in zip(vals, axes):
        out[_axis(ctx, ax, rank)] = v
    return out


def _emit_resize(ctx, t, scales, sizes, mode, coord, nearest):
    """A resize node from per-dim ONNX ``scales`` (or ``sizes``); only H and W may change."""
    shape = ctx.onnx_shape(t)
    if len(shape) != 4:
        ctx.unsupported(f"{ctx.node.op_type} of a rank-{len(shape)} tensor (only 4-D N,C,H,W)")
    if not all(isinstance(d, int) for d in shape[1:]):
        ctx.unsupported(f"{ctx.node.op_type} of symbolic dims {list(shape)}")
    if sizes is not None:
        out = [s if isinstance(s, str) else int(s) for s in sizes]
        scales = [o / d if isinstance(d, int) and isinstance(o, int) and d else 1.0
                  for o, d in zip(out, shape)]
        # a dynamic batch cannot be checked against the batch entry of sizes
        if (out[0] != shape[0] and not isinstance(shape[0], str)) or out[1] != shape[1]:
            ctx.unsupported(f"resizing the batch or channel axis (sizes {out} for shape "
                            f"{list(shape)}); only H and W")
        out = out[2:]
    else:
        scales = [float(s) for s in scales]
        if any(not s > 0 for s in scales):
            raise ShapeError(f"{ctx.where}: scales {scales} must be positive")
        if scales[0] != 1 or scales[1] != 1:
            ctx.unsupported(f"resizing the batch or channel axis (scales {scales}); only H "
                            f"and W")
        out = [int(math.floor(d * s)) for d, s in zip(shape[2:], scales[2:])]
    if any(o < 1 for o in out):
        raise ShapeError(f"{ctx.where}: the output H, W {out} must be positive (input "
                         f"{list(shape)}, scales {scales})")
    y = ctx.add("resize", [ctx.nhwc(t)], {"size": out, "scales": scales[2:], "mode": mode,
                                          "coordinate_mode": coord, "nearest_mode": nearest})
    ctx.define(_out(ctx), y, NHWC)


def _float_vector(ctx, i, what):
    arr = ctx.const_input(i, what, required=False)
    if arr is None or arr.size == 0:
        return None
    return [float(v) for v in np.ravel(arr)]


@converter("Resize", attrs=RESIZE_ATTRS)
def resize(ctx, a):
    t = ctx.input(0)
    mode = a.get("mode", "nearest")
    if mode not in ("nearest", "linear"):
        ctx.unsupported(f"mode={mode!r} (only 'nearest' and 'linear')")
    if ctx.opset < 11:  # Resize-10: X, scales; ONNX Runtime's asymmetric, "simple" nearest
        scales = _float_vector(ctx, 1, "scales")
        if scales is None:
            raise ShapeError(f"{ctx.where}: scales are required")
        _emit_resize(ctx, t, scales, None, mode, "asymmetric", "simple")
        return
    coord = a.get("coordinate_transformation_mode", "half_pixel")
    if coord == "tf_crop_and_resize":
        ctx.unsupported("coordinate_transformation_mode='tf_crop_and_resize'")
    if coord not in ("half_pixel", "pytorch_half_pixel", "half_pixel_symmetric",
                     "align_corners", "asymmetric", "tf_half_pixel_for_nn"):
        ctx.unsupported(f"coordinate_transformation_mode={coord!r}")
    nearest = a.get("nearest_mode", "round_prefer_floor")
    if nearest not in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
        ctx.unsupported(f"nearest_mode={nearest!r}")
    rank = ctx.rank(t)
    axes = a.get("axes")
    scales = _float_vector(ctx, 2, "scales")
    sizes = ctx.int_vector(3, "sizes", required=False)
    sizes = sizes or None
    shape = ctx.onnx_shape(t)
    if scales is None and sizes is None:
        raise ShapeError(f"{ctx.where}: one of scales and sizes is required")
    if scales is not None and sizes is not None:
        raise ShapeError(f"{ctx.where}: only one of scales and sizes may be given")
    if scales is not None:
        scales = _full(ctx, scales, axes, rank, [1.0] * rank, "scales")
    else:
        sizes = _full(ctx, sizes, axes, rank, list(shape), "sizes")
        policy = a.get("keep_aspect_ratio_policy", "stretch")
        if policy not in ("stretch", "not_larger", "not_smaller"):
            ctx.unsupported(f"keep_aspect_ratio_policy={policy!r}")
        if policy != "stretch":
            which = range(rank) if axes is None else [_axis(ctx, ax, rank) for ax in axes]
            ratios = [sizes[k] / shape[k] for k in which]
            s = min(ratios) if policy == "not_larger" else max(ratios)
            sizes = [int(s * shape[k] + 0.5) if k in which else shape[k] for k in range(rank)]
            scales_for = [s if k in which else 1.0 for k in range(rank)]
            _check_antialias(ctx, a, mode, scales_for)
            _emit_policy_resize(ctx, t, sizes, scales_for, mode, coord, nearest)
            return
    if scales is not None:
        _check_antialias(ctx, a, mode, scales)
    else:
        _check_antialias(ctx, a, mode, [o / d if isinstance(d, int) and d else 1.0
                                        for o, d in zip(sizes, shape)])
    _emit_resize(ctx, t, scales, sizes, mode, coord, nearest)


def _check_antialias(ctx, a, mode, scales):
    if a.get("antialias", 0) and mode != "nearest" and any(s < 1 for s in scales[2:]):
        ctx.unsupported("antialias=1 when downsampling (an antialiasing filter)")


def _emit_policy_resize(ctx, t, sizes, scales, mode, coord, nearest):
    """keep_aspect_ratio_policy: the output sizes rounded from one common scale, which is the
    coordinate transformation's scale."""
    shape = ctx.onnx_shape(t)
    if sizes[:2] != list(shape[:2]):
        ctx.unsupported(f"resizing the batch or channel axis (sizes {sizes}); only H and W")
    y = ctx.add("resize", [ctx.nhwc(t)], {"size": sizes[2:], "scales": scales[2:], "mode": mode,
                                          "coordinate_mode": coord, "nearest_mode": nearest})
    ctx.define(_out(ctx), y, NHWC)


@converter("Upsample", attrs=("mode", "scales"))
def upsample(ctx, a):
    """Upsample-7 (scales attribute) and -9 (scales input): asymmetric coordinates; nearest
    truncates (ONNX Runtime's rule), linear is bilinear."""
    t = ctx.input(0)
    mode = a.get("mode", "nearest")
    if mode == "bilinear":
        mode = "linear"
    if mode not in ("nearest", "linear"):
        ctx.unsupported(f"mode={mode!r} (only 'nearest' and 'linear')")
    scales = a.get("scales") if ctx.opset < 9 else _float_vector(ctx, 1, "scales")
    if scales is None:
        raise ShapeError(f"{ctx.where}: scales are required")
    _emit_resize(ctx, t, list(scales), None, mode, "asymmetric", "simple")
