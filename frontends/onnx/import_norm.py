"""ONNX -> IR converters: LayerNormalization, GroupNormalization,
InstanceNormalization, Hardmax, LpPool, GlobalLpPool and ConvTranspose.

Images stay NHWC as in :mod:`import_ops`: a normalisation over ONNX axes becomes one over
the same axes of the NHWC tensor (its scale and bias transposed to match), group and
instance normalisation put the channels last, ConvTranspose kernels go
``(Cin, Cout / group, kh, kw)`` -> ``(kh, kw, Cin, Cout / group)``.
"""

from __future__ import annotations

import numpy as np

from cnnc.errors import ShapeError
from cnnc.frontends.onnx.import_context import NHWC, NHWC_AXIS, PLAIN, converter
from cnnc.frontends.onnx.import_ops import _hw, _pair, axis_op, conv1d_as_rows, window_pads


# ---- LayerNormalization ---------------------------------------------------------------------
@converter("LayerNormalization", attrs=("axis", "epsilon", "stash_type"))
def layer_norm(ctx, a):
    x = ctx.input(0)
    shape = ctx.onnx_shape(x)
    rank = len(shape)
    axis = a.get("axis", -1)
    if not -rank <= axis < rank:
        raise ShapeError(f"{ctx.where}: axis {axis} is out of range for shape {shape}")
    axis %= rank
    if a.get("stash_type", 1) not in (1,):  # cnnc computes the statistics in float64
        ctx.unsupported(f"stash_type={a['stash_type']} (only 1: float statistics)")
    eps = float(a.get("epsilon", 1e-5))
    scale_t, bias_t = ctx.input(1), ctx.input(2, required=False)
    onnx_axes = tuple(range(axis, rank))
    consts = scale_t.is_const and (bias_t is None or bias_t.is_const)
    if ctx.is_nhwc(x) and consts:
        v, layout = x.value, NHWC
        axes = tuple(sorted(NHWC_AXIS[k] for k in onnx_axes))
        scale = ctx.constant(_nhwc_full(np.asarray(scale_t.const)))
        bias = ctx.constant(_nhwc_full(np.zeros((), np.float32) if bias_t is None
                                       else np.asarray(bias_t.const)))
    else:
        v, layout = ctx.plain(x), PLAIN
        axes = onnx_axes
        scale = ctx.plain(scale_t)
        bias = ctx.constant(np.zeros((), np.float32)) if bias_t is None else ctx.plain(bias_t)
    y = ctx.add("layer_norm", [v, scale, bias], {"axes": axes, "epsilon": eps})
    ctx.define(ctx.node.output[0], y, layout)
    outs = list(ctx.node.output)
    if any(outs[1:]):  # Mean and InvStdDev: (N.., 1..) in the ONNX layout
        xp = ctx.plain(x)
        red = {"kind": "mean", "axes": onnx_axes, "keepdims": True}
        mean = ctx.add("reduce", [xp], red)
        if len(outs) > 1 and outs[1]:
            ctx.define(outs[1], mean, PLAIN)
        if len(outs) > 2 and outs[2]:
            d = ctx.add("sub", [xp, mean])
            var = ctx.add("reduce", [ctx.add("mul", [d, d])], red)
            var = ctx.add("add", [var, ctx.constant(np.float32(eps))])
            ctx.define(outs[2], ctx.add("reciprocal", [ctx.add("sqrt", [var])]), PLAIN)


def _nhwc_full(arr: np.ndarray) -> np.ndarray:
    """A constant broadcast against a 4-D NCHW tensor as a rank-4 NHWC one."""
    arr = np.asarray(arr, np.float32)
    return arr.reshape((1,) * (4 - arr.ndim) + arr.shape).transpose(0, 2, 3, 1)


# ---- GroupNormalization, InstanceNormalization ------------------------------------------------
def _channels_last(ctx, x, op, attrs, ins):
    """``op`` over ONNX (N, C, ...) ``x`` with the channels moved last; defines the output."""
    rank = ctx.rank(x)
    out = ctx.node.output[0]
    if rank == 4:
        ctx.define(out, ctx.add(op, [ctx.nhwc(x), *ins], attrs), NHWC)
        return
    if rank < 2:
        raise ShapeError(f"{ctx.where}: input must be (N, C, ...), got shape "
                         f"{ctx.onnx_shape(x)}")
    xp = ctx.plain(x)
    if rank > 2:
        perm = (0, *range(2, rank), 1)
        xp = ctx.add("transpose", [xp], {"perm": perm})
    y = ctx.add(op, [xp, *ins], attrs)
    if rank > 2:
        y = ctx.add("transpose", [y], {"perm": (0, rank - 1, *range(1, rank - 1))})
    ctx.define(out, y, PLAIN)


def _vector(ctx, i, what, n):
    arr = np.asarray(ctx.const_input(i, what), np.float32).reshape(-1)
    if arr.size != n:
        raise ShapeError(f"{ctx.where}: {what} must have {n} values, got shape {arr.shape}")
    return arr


@converter("GroupNormalization", attrs=("epsilon", "num_groups", "stash_type"))
def group_norm(ctx, a):
    """Opset 21: scale and bias per channel (C,). Opset 18-20: per group (num_groups,), each
    value repeated over its group's C / num_groups channels (the same function)."""
    if "num_groups" not in a:
        raise ShapeError(f"{ctx.where}: the num_groups attribute is required")
    if a.get("stash_type", 1) != 1:
        ctx.unsupported(f"stash_type={a['stash_type']} (only 1: float statistics)")
    x = ctx.input(0)
    shape = ctx.onnx_shape(x)
    c, g = shape[1], int(a["num_groups"])
    if not isinstance(c, int) or g < 1 or c % g:
        raise ShapeError(f"{ctx.where}: num_groups={g} does not divide the {c} channels of "
                         f"X {shape}")
    if ctx.opset >= 21:
        scale, bias = _vector(ctx, 1, "scale", c), _vector(ctx, 2, "bias", c)
    else:
        scale = np.repeat(_vector(ctx, 1, f"scale (opset {ctx.opset}: one per group)", g), c // g)
        bias = np.repeat(_vector(ctx, 2, f"bias (opset {ctx.opset}: one per group)", g), c // g)
    _channels_last(ctx, x, "group_norm", {"groups": g, "epsilon": float(a.get("epsilon", 1e-5))},
                   [ctx.constant(scale), ctx.constant(bias)])


@converter("InstanceNormalization", attrs=("epsilon",))
def instance_norm(ctx, a):
    x = ctx.input(0)
    c = ctx.onnx_shape(x)[1]
    if not isinstance(c, int):
        raise ShapeError(f"{ctx.where}: the channel dim must be static")
    ins = [ctx.constant(_vector(ctx, 1, "scale", c)), ctx.constant(_vector(ctx, 2, "B", c))]
    _channels_last(ctx, x, "group_norm", {"groups": c, "epsilon": float(a.get("epsilon", 1e-5))},
                   ins)


# ---- Hardmax --------------------------------------------------------------------------------
@converter("Hardmax", attrs=("axis",))
def hardmax(ctx, a):
    axis_op(ctx, a, "hardmax")


# ---- LpPool, GlobalLpPool ---------------------------------------------------------------------
@converter("LpPool", attrs=("auto_pad", "ceil_mode", "dilations", "kernel_shape", "p", "pads",
                            "strides"))
def lp_pool(ctx, a):
    if "kernel_shape" not in a:
        raise ShapeError(f"{ctx.where}: the kernel_shape attribute is required")
    x = ctx.input(0)
    if ctx.rank(x) != 4:
        ctx.unsupported(f"LpPool of a rank-{ctx.rank(x)} input (only 4-D N,C,H,W)")
    kernel = _pair(ctx, a, "kernel_shape", None)
    strides, dilation = _pair(ctx, a, "strides", (1, 1)), _pair(ctx, a, "dilations", (1, 1))
    xv = ctx.nhwc(x)
    pads = window_pads(ctx, a, _hw(ctx, xv), kernel, strides, dilation)
    y = ctx.add("lp_pool2d", [xv], {"pool_size": kernel, "strides": strides, "padding": pads,
                                    "dilation": dilation,
                                    "ceil_mode": bool(a.get("ceil_mode", 0)),
                                    "p": float(a.get("p", 2))})
    ctx.define(ctx.node.output[0], y, NHWC)


@converter("GlobalLpPool", attrs=("p",))
def global_lp_pool(ctx, a):
    x = ctx.input(0)
    if ctx.rank(x) != 4:
        ctx.unsupported(f"GlobalLpPool of a rank-{ctx.rank(x)} input (only 4-D N,C,H,W)")
    y = ctx.add("global_lp_pool", [ctx.nhwc(x)], {"p": float(a.get("p", 2)), "keepdims": True})
    ctx.define(ctx.node.output[0], y, NHWC)


# ---- ConvTranspose ----------------------------------------------------------------------------
def deconv_pads(ctx, a, in_hw, kernel, strides, dilation):
    """(((top, bottom), (left, right)), output_padding) following the ONNX spec: explicit
    ``pads``, or with ``output_shape`` / SAME ``auto_pad`` the total padding
    ``s*(in-1) + output_padding + (k-1)*d + 1 - out`` split (the larger half at the start
    unless SAME_UPPER). A negative end padding (an output_shape past the full output) becomes
    extra output padding."""
    op = list(_pair(ctx, a, "output_padding", (0, 0)))
    if any(v < 0 for v in op):
        ctx.unsupported(f"negative output_padding {op}")
    auto = a.get("auto_pad", "NOTSET")
    if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        ctx.unsupported(f"auto_pad={auto!r}")
    out_shape = a.get("output_shape")
    if out_shape is not None:
        out_shape = list(out_shape)[-2:]
        if len(out_shape) != 2:
            ctx.unsupported(f"output_shape={a['output_shape']}: only 1-D and 2-D")
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = [n * s for n, s in zip(in_hw, strides)]
    if out_shape is None:
        if auto == "VALID":
            return ((0, 0), (0, 0)), tuple(op)
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4:
            ctx.unsupported(f"pads={pads}: only 2-D windows (four values) are supported")
        if any(p < 0 for p in pads):
            ctx.unsupported(f"negative pads {pads}")
        return ((pads[0], pads[2]), (pads[1], pads[3])), tuple(op)
    result = []
    for i, (n, k, s, d, o) in enumerate(zip(in_hw, kernel, strides, dilation, out_shape)):
        total = s * (n - 1) + op[i] + (k - 1) * d + 1 - int(o)
        if auto == "SAME_UPPER":
            begin, end = total // 2, total - total // 2
        else:
            begin, end = total - total // 2, total // 2
        if begin < 0:
            ctx.unsupported(f"output_shape {out_shape} needs a negative start padding "
                            f"({begin}) along axis {i}")
        if end < 0:
            op[i] -= end
            end = 0
        result.append((begin, end))
    return tuple(result), tuple(op)


@converter("ConvTranspose", attrs=("auto_pad", "dilations", "group", "kernel_shape",
                                   "output_padding", "output_shape", "pads", "strides"))
def conv_transpose(ctx, a):
    x = ctx.input(0)
    w = ctx.const_input(1, "the weights W")
    if w.ndim == 3 and ctx.rank(x) == 3:
        conv1d_as_rows(ctx, a, x, w, _conv_transpose2d)
        return
    if w.ndim != 4 or ctx.rank(x) != 4:
        ctx.unsupported(f"{w.ndim - 2}-D transposed convolution (weights of shape {w.shape}, "
                        f"input {ctx.onnx_shape(x)}); only 1-D and 2-D")
    ctx.define(ctx.node.output[0], _conv_transpose2d(ctx, a, ctx.nhwc(x), w), NHWC)


def _conv_transpose2d(ctx, a, xv, w):
    """The conv2d_transpose of NHWC ``xv`` and (Cin, Cout/g, kh, kw) weights ``w`` (plus
    the node's bias) under the node's attributes ``a``."""
    kernel = tuple(int(k) for k in w.shape[2:])
    if tuple(a.get("kernel_shape", kernel)) != kernel:
        raise ShapeError(f"{ctx.where}: kernel_shape {a['kernel_shape']} does not match the "
                         f"weights {w.shape}")
    group = int(a.get("group", 1))
    if w.shape[0] != xv.type.shape[3]:
        raise ShapeError(f"{ctx.where}: W of shape {w.shape} expects {w.shape[0]} input "
                         f"channels, X {ctx.onnx_shape(ctx.input(0))} has {xv.type.shape[3]}")
    strides, dilation = _pair(ctx, a, "strides", (1, 1)), _pair(ctx, a, "dilations", (1, 1))
    pads, op = deconv_pads(ctx, a, _hw(ctx, xv), kernel, strides, dilation)
    ins = [xv, ctx.constant(np.asarray(w).transpose(2, 3, 0, 1))]  # (Cin,Cout/g,kh,kw) -> HW..
    b = ctx.input(2, required=False)
    if b is not None:
        ins.append(ctx.plain(b))
    return ctx.add("conv2d_transpose", ins, {"strides": strides, "padding": pads,
                                             "output_padding": op, "dilation": dilation,
                                             "groups": group})

