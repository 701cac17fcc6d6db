"""ONNX -> IR converters for data movement and constants: Constant, ConstantOfShape, Shape,
Size, Unsqueeze, Squeeze, Concat, Flatten, Reshape, Transpose, Pad, Cast, CastLike, Identity,
Dropout (Gather, Slice, Split, Expand, Tile, DepthToSpace, SpaceToDepth, Resize and Upsample
live in :mod:`import_movement`).

Shape arithmetic folds at import time: ``Shape`` of a tensor is a constant vector whose batch
entry is the symbol ``"N"`` when the batch is dynamic, so the ``Shape -> Gather -> Unsqueeze ->
Concat -> Reshape`` chains exporters emit for a flatten become ``reshape {shape=[0, -1]}``.
"""

from __future__ import annotations

import numpy as np

from cnnc.errors import ShapeError
from cnnc.frontends.onnx.import_context import (FLAT, NHWC, NHWC_AXIS, PLAIN, TO_NCHW, TO_NHWC,
                                                converter)

# ONNX TensorProto element types
BOOL = 9   # the ONNX element type
FLOAT_TYPES = {1: np.float32, 10: np.float16, 11: np.float64, 16: np.float32}
INT_TYPES = {2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
             12: np.uint32, 13: np.uint64}


def _symbolic(arr) -> bool:
    return arr.dtype == object and any(isinstance(v, str) for v in np.ravel(arr))


def shape_vector(dims) -> np.ndarray:
    """An int64 vector, or an object vector when some entry is a symbol."""
    dims = list(dims)
    if any(isinstance(d, str) for d in dims):
        return np.array(dims, dtype=object)
    return np.array(dims, dtype=np.int64)


def _settle(arr: np.ndarray) -> np.ndarray:
    """Object arrays that lost their symbols go back to int64 (a lone symbol stays object)."""
    arr = np.array(arr, dtype=object) if isinstance(arr, str) else np.asarray(arr)
    if arr.dtype == object and not _symbolic(arr):
        return arr.astype(np.int64)
    return arr


def _axis(ctx, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"{ctx.where}: axis {axis} is out of range for rank {rank}")
    return axis % rank


def _out(ctx) -> str:
    return ctx.node.output[0]


# ---- constants and shape arithmetic ----------------------------------------------------------
@converter("Constant", attrs=("value", "value_float", "value_floats", "value_int", "value_ints",
                              "sparse_value", "value_string", "value_strings"))
def constant(ctx, a):
    if "value" in a:
        arr = a["value"]
    elif "value_float" in a:
        arr = np.float32(a["value_float"])
    elif "value_floats" in a:
        arr = np.asarray(a["value_floats"], np.float32)
    elif "value_int" in a:
        arr = np.int64(a["value_int"])
    elif "value_ints" in a:
        arr = np.asarray(a["value_ints"], np.int64)
    else:
        ctx.unsupported(f"Constant with attribute(s) {sorted(a)} (sparse or string values)")
    ctx.define(_out(ctx), const=np.asarray(arr))


@converter("ConstantOfShape", attrs=("value",))
def constant_of_shape(ctx, a):
    dims = ctx.int_vector(0, "the shape")
    if any(d < 0 for d in dims):
        raise ShapeError(f"{ctx.where}: negative dims in the shape {dims}")
    value = np.asarray(a.get("value", np.zeros(1, np.float32)))
    if value.size != 1:
        raise ShapeError(f"{ctx.where}: value must hold one element, got shape {value.shape}")
    ctx.define(_out(ctx), const=np.full(dims, value.reshape(()), dtype=value.dtype))


@converter("Shape", attrs=("start", "end"))
def shape(ctx, a):
    dims = ctx.onnx_shape(ctx.input(0))
    ctx.define(_out(ctx), const=shape_vector(dims[a.get("start", 0):a.get("end", None)]))


@converter("Size")
def size(ctx, a):
    dims = ctx.onnx_shape(ctx.input(0))
    if any(isinstance(d, str) for d in dims):
        ctx.unsupported(f"Size of a tensor with the symbolic dims {list(dims)} (its element "
                        f"count is known only at run time)")
    ctx.define(_out(ctx), const=np.int64(np.prod(dims, dtype=np.int64)))


def _raw_axes(ctx, a, required: bool):
    """Unsqueeze/Squeeze axes: an attribute before opset 13, an input from it on."""
    axes = a.get("axes") if ctx.opset < 13 else ctx.int_vector(1, "axes", required=False)
    if axes is None and required:
        raise ShapeError(f"{ctx.where}: axes are required")
    return None if axes is None else list(axes)


def reshape_target(ctx, in_shape, target) -> list[int]:
    """An ONNX target shape (ints, maybe symbols) as reshape's ints: a symbol copied from the
    same input position becomes 0, one other symbol becomes -1."""
    out = []
    for i, d in enumerate(target):
        if isinstance(d, str):
            if i < len(in_shape) and in_shape[i] == d:
                out.append(0)
            elif -1 not in target and -1 not in out:
                out.append(-1)
            else:
                ctx.unsupported(f"a reshape to {list(target)} that moves the dynamic batch dim")
        else:
            out.append(int(d))
    return out


def _reshape(ctx, t, target) -> None:
    """``t`` reshaped (plain layout) to the ONNX shape ``target``."""
    v = ctx.plain(t)
    ctx.define(_out(ctx), ctx.add("reshape", [v], {"shape": reshape_target(
        ctx, v.type.shape, target)}), PLAIN)


@converter("Unsqueeze", attrs=("axes",))
def unsqueeze(ctx, a):
    t = ctx.input(0)
    shape = list(ctx.onnx_shape(t))
    raw = _raw_axes(ctx, a, True)
    axes = sorted(_axis(ctx, ax, len(shape) + len(raw)) for ax in raw)
    if t.is_const:
        ctx.define(_out(ctx), const=np.expand_dims(t.const, tuple(axes)))
        return
    for ax in axes:
        shape.insert(ax, 1)
    _reshape(ctx, t, shape)


@converter("Squeeze", attrs=("axes",))
def squeeze(ctx, a):
    t = ctx.input(0)
    shape = list(ctx.onnx_shape(t))
    raw = _raw_axes(ctx, a, False)
    axes = None if raw is None else sorted(_axis(ctx, ax, len(shape)) for ax in raw)
    if axes is None:
        if any(isinstance(d, str) for d in shape):
            ctx.unsupported(f"Squeeze without axes of a shape with symbolic dims {shape}")
        axes = [i for i, d in enumerate(shape) if d == 1]
    if any(shape[ax] != 1 for ax in axes):
        raise ShapeError(f"{ctx.where}: cannot squeeze axes {axes} of shape {shape}")
    if t.is_const:
        ctx.define(_out(ctx), const=np.squeeze(t.const, tuple(axes)))
        return
    _reshape(ctx, t, [d for i, d in enumerate(shape) if i not in axes])


@converter("Concat", attrs=("axis",))
def concat(ctx, a):
    ts = [ctx.input(i) for i in range(len(ctx.node.input))]
    rank = ctx.rank(ts[0])
    axis = _axis(ctx, a["axis"], rank)
    if all(t.is_const for t in ts):
        arrs = [t.const for t in ts]
        if any(x.dtype == object for x in arrs):
            arrs = [x.astype(object) for x in arrs]
        ctx.define(_out(ctx), const=_settle(np.concatenate(arrs, axis=axis)))
        return
    if rank == 4 and any(ctx.is_nhwc(t) for t in ts):
        vals = [ctx.constant(np.asarray(t.const).transpose(TO_NHWC)) if t.is_const
                else ctx.nhwc(t) for t in ts]
        ctx.define(_out(ctx), ctx.add("concat", vals, {"axis": NHWC_AXIS[axis]}), NHWC)
    else:
        ctx.define(_out(ctx), ctx.add("concat", [ctx.plain(t) for t in ts], {"axis": axis}),
                   PLAIN)


# ---- Flatten, Reshape, Transpose ---------------------------------------------------------------
def _flatten_nhwc(ctx, t) -> None:
    """Flatten (axis 1) of an NHWC-held tensor: in NHWC order when that order is the same
    (C == 1 or H*W == 1) or when every reader can permute its weight rows; else NCHW order."""
    _, c, h, w = ctx.onnx_shape(t)
    out = _out(ctx)
    if c == 1 or h * w == 1:
        ctx.define(out, ctx.add("flatten", [t.value], {"axis": 1}), PLAIN)
    elif ctx.feeds_dense_only(out):
        ctx.define(out, ctx.add("flatten", [t.value], {"axis": 1}), FLAT, src=t)
    else:
        ctx.define(out, ctx.add("flatten", [ctx.plain(t)], {"axis": 1}), PLAIN)


@converter("Flatten", attrs=("axis",))
def flatten(ctx, a):
    t = ctx.input(0)
    shape = ctx.onnx_shape(t)
    axis = a.get("axis", 1)
    if not -len(shape) <= axis <= len(shape):
        raise ShapeError(f"{ctx.where}: axis {axis} is out of range for shape {shape}")
    axis = axis + len(shape) if axis < 0 else axis
    if t.is_const:
        ctx.define(_out(ctx), const=np.reshape(t.const, (int(np.prod(shape[:axis])), -1)))
    elif ctx.is_nhwc(t) and axis == 1:
        _flatten_nhwc(ctx, t)
    else:
        ctx.define(_out(ctx), ctx.add("flatten", [ctx.plain(t)], {"axis": axis}), PLAIN)


@converter("Reshape", attrs=("allowzero",))
def reshape(ctx, a):
    t = ctx.input(0)
    target = list(np.ravel(ctx.const_input(1, "the target shape")))
    if a.get("allowzero", 0) and 0 in target:
        ctx.unsupported(f"allowzero=1 with a 0 in the target shape {target}")
    in_shape = ctx.onnx_shape(t)
    if t.is_const:
        if _symbolic(t.const) or any(isinstance(d, str) for d in target):
            ctx.unsupported(f"a reshape of a symbolic shape value to {target}")
        dims = [in_shape[i] if d == 0 else int(d) for i, d in enumerate(target)]
        ctx.define(_out(ctx), const=_settle(np.reshape(t.const, dims)))
        return
    ints = reshape_target(ctx, in_shape, target)
    if ctx.is_nhwc(t) and len(ints) == 2:  # a flatten spelled as a reshape?
        features = int(np.prod(in_shape[1:]))
        keeps_batch = ints[0] == 0 or ints[0] == in_shape[0]
        if (keeps_batch and ints[1] in (-1, features)) or ints == [-1, features]:
            _flatten_nhwc(ctx, t)
            return
    ctx.define(_out(ctx), ctx.add("reshape", [ctx.plain(t)], {"shape": ints}), PLAIN)


@converter("Transpose", attrs=("perm",))
def transpose(ctx, a):
    t = ctx.input(0)
    rank = ctx.rank(t)
    perm = tuple(a.get("perm", range(rank - 1, -1, -1)))
    if sorted(perm) != list(range(rank)):
        raise ShapeError(f"{ctx.where}: perm {list(perm)} is not a permutation of {rank} axes")
    if t.is_const:
        ctx.define(_out(ctx), const=np.transpose(t.const, perm))
        return
    if ctx.is_nhwc(t):  # compose with the NHWC -> NCHW view instead of materialising it
        perm = tuple(TO_NCHW[p] for p in perm)
        if perm == tuple(range(rank)):
            ctx.define(_out(ctx), t.value, PLAIN)
            return
        ctx.define(_out(ctx), ctx.add("transpose", [t.value], {"perm": perm}), PLAIN)
        return
    ctx.define(_out(ctx), ctx.add("transpose", [ctx.plain(t)], {"perm": perm}), PLAIN)


# ---- Pad ---------------------------------------------------------------------------------------
#: ONNX Pad modes that repeat the input's own values, each NumPy's mode of the same name
INDEXED_PAD_MODES = ("reflect", "edge", "wrap")


@converter("Pad", attrs=("mode", "pads", "value"))
def pad(ctx, a):
    mode = a.get("mode", "constant")
    if mode != "constant" and mode not in INDEXED_PAD_MODES:
        ctx.unsupported(f"mode={mode!r} (only 'constant', 'reflect', 'edge' and 'wrap')")
    t = ctx.input(0)
    rank = ctx.rank(t)
    if ctx.opset < 11:
        pads, value = list(a["pads"]), float(a.get("value", 0.0))
    else:
        pads = ctx.int_vector(1, "pads")
        cv = ctx.const_input(2, "constant_value", required=False)
        value = float(np.ravel(cv)[0]) if cv is not None and cv.size else 0.0
        axes = ctx.int_vector(3, "axes", required=False)
        if axes is not None:
            full = [0] * (2 * rank)
            for k, ax in enumerate(axes):
                ax = _axis(ctx, ax, rank)
                full[ax], full[ax + rank] = pads[k], pads[k + len(axes)]
            pads = full
    if len(pads) != 2 * rank:
        raise ShapeError(f"{ctx.where}: pads {pads} must have {2 * rank} values for rank {rank}")
    if any(p < 0 for p in pads):
        ctx.unsupported(f"negative pads {pads} (cropping)")
    pairs = [(pads[i], pads[i + rank]) for i in range(rank)]
    if t.is_const:
        kw = {"constant_values": value} if mode == "constant" else {}
        ctx.define(_out(ctx), const=np.pad(t.const, pairs, mode=mode, **kw))
    elif mode != "constant":
        _pad_by_indices(ctx, t, pairs, mode)
    elif ctx.is_nhwc(t):  # the pad follows its input's layout (no transpose either way)
        v = ctx.add("pad", [t.value], {"pads": [pairs[i] for i in TO_NHWC], "value": value})
        ctx.define(_out(ctx), v, NHWC)
    else:
        ctx.define(_out(ctx), ctx.add("pad", [ctx.plain(t)], {"pads": pairs, "value": value}),
                   PLAIN)


def _pad_by_indices(ctx, t, pairs, mode) -> None:
    """Reflect, edge and wrap padding as one gather of constant indices per padded axis:
    along an axis of ``d`` values, the padded positions read ``np.pad(arange(d), pair,
    mode)`` (NumPy's modes are ONNX's).  The layout is kept (NHWC stays NHWC)."""
    shape = ctx.onnx_shape(t)
    nhwc = ctx.is_nhwc(t)
    v = t.value if nhwc else ctx.plain(t)
    for axis, pair in enumerate(pairs):
        if pair == (0, 0):
            continue
        d = shape[axis]
        if not isinstance(d, int):
            ctx.unsupported(f"mode={mode!r} padding of the symbolic dim {d!r} (axis {axis})")
        if d == 0:
            raise ShapeError(f"{ctx.where}: mode={mode!r} cannot pad the empty axis {axis}")
        idx = np.pad(np.arange(d), pair, mode=mode)
        v = ctx.add("take", [v], {"axis": NHWC_AXIS[axis] if nhwc else axis,
                                  "indices": idx.tolist(), "indices_shape": [idx.size]})
    ctx.define(_out(ctx), v, NHWC if nhwc else PLAIN)


# ---- Cast, Identity, Dropout -------------------------------------------------------------------
@converter("Cast", attrs=("to", "saturate", "round_mode"))
def cast(ctx, a):
    to = a["to"]
    t = ctx.input(0)
    if t.is_const:
        if to in FLOAT_TYPES and not _symbolic(t.const):
            arr = t.const.astype(FLOAT_TYPES[to] if to != 10 else np.float32)
        elif to in INT_TYPES:
            arr = t.const if _symbolic(t.const) else t.const.astype(INT_TYPES[to])
        elif to == BOOL and not _symbolic(t.const):
            arr = t.const.astype(bool)
        else:
            ctx.unsupported(f"Cast of a constant to element type {to}")
        ctx.define(_out(ctx), const=arr)
    elif to in FLOAT_TYPES or to == BOOL:
        _cast_computed(ctx, t, "bool" if to == BOOL else "float32")
    else:
        ctx.unsupported(f"Cast of a computed tensor to element type {to} (only to float or "
                        f"bool)")


def _cast_computed(ctx, t, dtype: str) -> None:
    """A computed tensor (float32 or bool) as ``dtype``: bool to float is where(t, 1, 0),
    float to bool is not(t == 0); the same dtype is the tensor itself."""
    v = t.value if ctx.is_nhwc(t) else ctx.plain(t)
    if v.type.dtype == dtype:
        ctx.alias(_out(ctx), t)
        return
    one, zero = (ctx.constant(np.float32(k)) for k in (1, 0))
    if dtype == "float32":
        y = ctx.add("where", [v, one, zero])
    else:
        y = ctx.add("logical_not", [ctx.add("equal", [v, zero])])
    ctx.define(_out(ctx), y, NHWC if ctx.is_nhwc(t) else PLAIN)


@converter("CastLike", attrs=("saturate", "round_mode"))
def cast_like(ctx, a):
    """Cast to the element type of input 1: a constant takes its dtype (a computed tensor is
    float32 or bool); a computed input is cast to float32 or bool."""
    t, like = ctx.input(0), ctx.input(1)
    if like.is_const:
        dtype = like.const.dtype
    else:
        lv = like.value if ctx.is_nhwc(like) else ctx.plain(like)
        dtype = np.dtype(bool if lv.type.dtype == "bool" else np.float32)
    if t.is_const:
        if _symbolic(t.const) and dtype.kind in "iu":
            ctx.define(_out(ctx), const=t.const)
        else:
            ctx.define(_out(ctx), const=t.const.astype(dtype))
    elif dtype.kind in "fb":
        _cast_computed(ctx, t, "bool" if dtype.kind == "b" else "float32")
    else:
        ctx.unsupported(f"CastLike of a computed tensor to {dtype} (only to float or bool)")


@converter("Identity")
def identity(ctx, a):
    ctx.alias(_out(ctx), ctx.input(0))


@converter("Dropout", attrs=("ratio", "seed", "is_test"))
def dropout(ctx, a):
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        mask = ctx.node.output[1]
        if ctx.consumers.get(mask) or mask in ctx.graph_outputs:
            ctx.unsupported("the mask output (training)")
    if ctx.opset >= 12:
        training = ctx.const_input(2, "training_mode", required=False)
        if training is not None and bool(np.ravel(training)[0]):
            ctx.unsupported("training_mode=True (only inference)")
    ctx.alias(_out(ctx), ctx.input(0))

