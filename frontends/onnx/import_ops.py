"""ONNX -> IR converters for the compute ops: Conv, pooling, BatchNormalization, Gemm, MatMul,
activations, elementwise arithmetic, Softmax, LogSoftmax and the Reduce* family.

Images go NHWC (kernels OIHW -> HWIO); per-channel constants broadcast in NCHW become their NHWC
counterparts; a Gemm/MatMul reading an NHWC-order flattening permutes its weight rows instead.
"""

from __future__ import annotations

import numpy as np

from cnnc.errors import ShapeError
from cnnc.frontends.onnx.import_context import (FLAT, NHWC, NHWC_AXIS, PLAIN, TO_NHWC,
                                                converter, flat_rows, nhwc_constant)
from cnnc.ops.elementwise import COMPARE as COMPARE_FNS
from cnnc.ops.elementwise import LOGICAL, SELU_ALPHA, SELU_GAMMA
from cnnc.ops.padding import same_pads

#: the largest float32: stands for an infinite Clip bound (generated kernels need finite literals)
F32_MAX = float(np.finfo(np.float32).max)


# ---- windows (Conv, pooling) -------------------------------------------------------------------
def _hw(ctx, xv) -> tuple[int, int]:
    h, w = xv.type.shape[1:3]
    if not isinstance(h, int) or not isinstance(w, int):
        raise ShapeError(f"{ctx.where}: H and W must be static, got {xv.type}")
    return h, w


def _pair(ctx, a, name, default):
    v = tuple(a.get(name, default))
    if len(v) != 2:
        ctx.unsupported(f"{name}={list(v)}: only 2-D windows (two values) are supported")
    return v


def window_pads(ctx, a, in_hw, kernel, strides, dilation):
    """((top, bottom), (left, right)) from ``pads`` or ``auto_pad``.

    SAME_UPPER/SAME_LOWER pad to ``ceil(n / s)`` outputs with the effective kernel
    ``(k - 1) * d + 1``; the odd extra cell goes at the end (UPPER) or the beginning (LOWER).
    A negative total (kernel smaller than the stride) is clamped to 0, TF's rule. (ONNX Runtime
    1.32 refuses dilated SAME convolutions and leaves the dilation out of SAME pooling pads;
    cnnc follows the spec's formula.)"""
    auto = a.get("auto_pad", "NOTSET")
    if auto == "NOTSET":
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4:
            ctx.unsupported(f"pads={pads}: only 2-D windows (four values) are supported")
        if any(p < 0 for p in pads):
            ctx.unsupported(f"negative pads {pads}")
        return ((pads[0], pads[2]), (pads[1], pads[3]))
    if auto == "VALID":
        return ((0, 0), (0, 0))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for n, k, s, d in zip(in_hw, kernel, strides, dilation):
            lo, hi = same_pads(n, k, s, d)  # the extra cell at the end
            out.append((lo, hi) if auto == "SAME_UPPER" else (hi, lo))
        return tuple(out)
    ctx.unsupported(f"auto_pad={auto!r}")


@converter("Conv", attrs=("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"))
def conv(ctx, a):
    x = ctx.input(0)
    w = ctx.const_input(1, "the weights W")
    if w.ndim == 3:
        conv1d_as_rows(ctx, a, x, w, _conv2d)
        return
    if w.ndim != 4:
        ctx.unsupported(f"{w.ndim - 2}-D convolution (weights of shape {w.shape}); only 1-D "
                        f"and 2-D")
    ctx.define(ctx.node.output[0], _conv2d(ctx, a, ctx.nhwc(x), w), NHWC)


def _conv2d(ctx, a, xv, w):
    """The conv2d of NHWC ``xv`` and OIHW weights ``w`` (plus the node's bias) under the
    node's attributes ``a``."""
    kernel = tuple(int(k) for k in w.shape[2:])
    if tuple(a.get("kernel_shape", kernel)) != kernel:
        raise ShapeError(f"{ctx.where}: kernel_shape {a['kernel_shape']} does not match the "
                         f"weights {w.shape}")
    strides, dilation = _pair(ctx, a, "strides", (1, 1)), _pair(ctx, a, "dilations", (1, 1))
    pads = window_pads(ctx, a, _hw(ctx, xv), kernel, strides, dilation)
    ins = [xv, ctx.constant(np.asarray(w).transpose(2, 3, 1, 0))]  # OIHW -> HWIO
    b = ctx.input(2, required=False)
    if b is not None:
        ins.append(ctx.plain(b))
    return ctx.add("conv2d", ins, {"strides": strides, "padding": pads, "dilation": dilation,
                                   "groups": a.get("group", 1)})


#: a 1-D window attribute -> (its values, the 2-D one of rows one pixel high)
_ROWS = {"kernel_shape": (1, lambda v: [1, *v]), "strides": (1, lambda v: [1, *v]),
         "dilations": (1, lambda v: [1, *v]), "pads": (2, lambda v: [0, v[0], 0, v[1]]),
         "output_padding": (1, lambda v: [0, *v]),
         "output_shape": (None, lambda v: [1, v[-1]])}   # L, or the whole (N, C, L)


def conv1d_as_rows(ctx, a, x, w, build) -> None:
    """A 1-D Conv or ConvTranspose of (N, C, L) as the 2-D one of rows one pixel high (timm's
    ECA attention: a few taps along the pooled channels): the input as NHWC (N, 1, L, C), the
    window attributes as (1, k) and so on, ``build(ctx, attrs, xv, w)`` the 2-D op, the result
    back to (N, C_out, L_out)."""
    shape = ctx.onnx_shape(x)
    if len(shape) != 3:
        raise ShapeError(f"{ctx.where}: a 1-D {ctx.node.op_type} (weights {w.shape}) takes an "
                         f"(N, C, L) input, got shape {shape}")
    a2 = dict(a)
    for name, (count, widen) in _ROWS.items():
        if name in a:
            v = [int(t) for t in a[name]]
            if (len(v) != count) if count else not v:
                want = f"{count} value{'s' * (count > 1)}" if count else "a value"
                raise ShapeError(f"{ctx.where}: {name}={v} of a 1-D {ctx.node.op_type} must "
                                 f"have {want}")
            a2[name] = widen(v)
    lead = -1 if isinstance(shape[0], str) else shape[0]
    xt = ctx.add("transpose", [ctx.plain(x)], {"perm": (0, 2, 1)})
    xv = ctx.add("reshape", [xt], {"shape": [lead, 1, shape[2], shape[1]]})
    y = build(ctx, a2, xv, np.asarray(w)[:, :, None, :])
    _, _, length, cout = y.type.shape
    y3 = ctx.add("reshape", [y], {"shape": [lead, length, cout]})
    ctx.define(ctx.node.output[0], ctx.add("transpose", [y3], {"perm": (0, 2, 1)}), PLAIN)


POOL_ATTRS = ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")


def _pool(ctx, a, op, extra):
    if "kernel_shape" not in a:
        raise ShapeError(f"{ctx.where}: the kernel_shape attribute is required")
    kernel = _pair(ctx, a, "kernel_shape", None)
    strides, dilation = _pair(ctx, a, "strides", (1, 1)), _pair(ctx, a, "dilations", (1, 1))
    xv = ctx.nhwc(ctx.input(0))
    pads = window_pads(ctx, a, _hw(ctx, xv), kernel, strides, dilation)
    y = ctx.add(op, [xv], {"pool_size": kernel, "strides": strides, "padding": pads,
                           "dilation": dilation, "ceil_mode": bool(a.get("ceil_mode", 0)),
                           **extra})
    ctx.define(ctx.node.output[0], y, NHWC)


@converter("MaxPool", attrs=(*POOL_ATTRS, "storage_order"))
def max_pool(ctx, a):
    if a.get("storage_order", 0) != 0:
        ctx.unsupported(f"storage_order={a['storage_order']} (only 0, row-major)")
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        ctx.unsupported("the Indices output")
    _pool(ctx, a, "max_pool2d", {})


@converter("AveragePool", attrs=(*POOL_ATTRS, "count_include_pad"))
def avg_pool(ctx, a):
    # ONNX divides by the window clipped to the padded input when count_include_pad=1 (so a
    # ceil_mode window running past the right padding counts fewer cells), else by its real
    # input cells: exactly avg_pool2d's two rules.
    _pool(ctx, a, "avg_pool2d", {"count_include_pad": bool(a.get("count_include_pad", 0))})


@converter("GlobalAveragePool", "GlobalMaxPool")
def global_pool(ctx, a):
    x = ctx.input(0)
    if ctx.rank(x) != 4:
        ctx.unsupported(f"a rank-{ctx.rank(x)} input (only 4-D N,C,H,W)")
    op = "global_avg_pool" if ctx.node.op_type == "GlobalAveragePool" else "global_max_pool"
    ctx.define(ctx.node.output[0], ctx.add(op, [ctx.nhwc(x)], {"keepdims": True}), NHWC)


REDUCE = {"ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min", "ReduceSum": "sum",
          "ReduceSumSquare": "sum_square", "ReduceL1": "l1", "ReduceL2": "l2",
          "ReduceLogSumExp": "log_sum_exp"}


@converter(*REDUCE, attrs=("axes", "keepdims", "noop_with_empty_axes"))
def reduce(ctx, a):
    op_type = ctx.node.op_type
    kind = REDUCE[op_type]
    x = ctx.input(0)
    # axes moved from an attribute to an input in opset 13 (ReduceSum) and 18 (the others)
    from_input = ctx.opset >= (13 if op_type == "ReduceSum" else 18)
    axes = ctx.int_vector(1, "axes", required=False) if from_input else a.get("axes")
    keep = bool(a.get("keepdims", 1))
    rank = ctx.rank(x)
    out = ctx.node.output[0]
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            ctx.alias(out, x)
            return
        axes = list(range(rank))
    for ax in axes:
        if not -rank <= int(ax) < rank:
            raise ShapeError(f"{ctx.where}: axis {ax} is out of range for rank {rank}")
    norm = sorted({int(ax) % rank for ax in axes})
    if len(norm) != len(axes):
        raise ShapeError(f"{ctx.where}: axes {list(axes)} repeat an axis")
    attrs = {"kind": kind, "keepdims": keep}
    if x.is_const:
        from cnnc.ops.registry import get_op
        arr = np.asarray(x.const, np.float64)
        y = get_op("reduce").evaluate([arr], {**attrs, "axes": tuple(norm)})
        ctx.define(out, const=np.asarray(y).astype(x.const.dtype if x.const.dtype.kind == "f"
                                                   else np.float64))
        return
    if rank == 4 and norm == [2, 3] and kind in ("mean", "max"):  # the global pools
        op = "global_avg_pool" if kind == "mean" else "global_max_pool"
        y = ctx.add(op, [ctx.nhwc(x)], {"keepdims": keep})
        ctx.define(out, y, NHWC if keep else PLAIN)
        return
    if ctx.is_nhwc(x):
        ir_axes = sorted(NHWC_AXIS[ax] for ax in norm)
        left = [TO_NHWC[k] for k in range(4) if k not in ir_axes]  # ONNX axes, in IR order
        if keep or left == sorted(left):
            y = ctx.add("reduce", [x.value], {**attrs, "axes": tuple(ir_axes)})
            ctx.define(out, y, NHWC if keep else PLAIN)
            return
    ctx.define(out, ctx.add("reduce", [ctx.plain(x)], {**attrs, "axes": tuple(norm)}), PLAIN)


@converter("BatchNormalization", attrs=("epsilon", "momentum", "spatial", "training_mode"))
def batch_norm(ctx, a):
    if a.get("training_mode", 0):
        _batch_norm_of_constants(ctx, a)
        return
    if a.get("spatial", 1) != 1:
        ctx.unsupported("spatial=0 (per-element statistics)")
    if any(ctx.node.output[1:]):
        ctx.unsupported("the running mean/variance outputs (training)")
    x = ctx.input(0)
    stats = [ctx.plain(ctx.input(i)) for i in range(1, 5)]
    attrs = {"epsilon": a.get("epsilon", 1e-5)}
    if ctx.rank(x) == 4:
        y = ctx.add("batch_norm", [ctx.nhwc(x), *stats], {**attrs, "axis": -1})
        ctx.define(ctx.node.output[0], y, NHWC)
    else:
        y = ctx.add("batch_norm", [ctx.plain(x), *stats], {**attrs, "axis": 1})
        ctx.define(ctx.node.output[0], y, PLAIN)


def _batch_norm_of_constants(ctx, a) -> None:
    """Training-mode BatchNormalization folded at import when every input is a constant: the
    statistics of the batch itself (weight standardisation, as NF-ResNets export it), in
    float64, and the updated running mean and variance when they are asked for.  On a
    computed input it is training, which cnnc does not do."""
    ins = [ctx.input(i) for i in range(5)]
    if not all(t.is_const for t in ins):
        ctx.unsupported("training_mode=1 (only inference)")   # of a computed input
    x, scale, bias, mean_in, var_in = (np.asarray(t.const, np.float64) for t in ins)
    if x.ndim < 2:
        raise ShapeError(f"{ctx.where}: the input must have a channel axis, got shape "
                         f"{list(x.shape)}")
    axes = tuple(k for k in range(x.ndim) if k != 1)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    per_channel = (1, -1) + (1,) * (x.ndim - 2)
    eps, momentum = a.get("epsilon", 1e-5), a.get("momentum", 0.9)
    y = ((x - mean.reshape(per_channel)) / np.sqrt(var.reshape(per_channel) + eps)
         * scale.reshape(per_channel) + bias.reshape(per_channel))
    outs = (y, mean_in * momentum + mean * (1 - momentum), var_in * momentum + var * (1 - momentum))
    for name, value in zip(ctx.node.output, outs):
        if name:
            ctx.define(name, const=value.astype(np.float32))


@converter("LRN", attrs=("alpha", "beta", "bias", "size"))
def lrn(ctx, a):
    if "size" not in a:
        raise ShapeError(f"{ctx.where}: the size attribute is required")
    x = ctx.input(0)
    if ctx.rank(x) != 4:
        ctx.unsupported(f"LRN of a rank-{ctx.rank(x)} input (only 4-D N,C,H,W)")
    y = ctx.add("lrn", [ctx.nhwc(x)], {"size": a["size"], "alpha": a.get("alpha", 1e-4),
                                        "beta": a.get("beta", 0.75), "bias": a.get("bias", 1.0)})
    ctx.define(ctx.node.output[0], y, NHWC)


# ---- activations ---------------------------------------------------------------------------
UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hard_swish",
         "Erf": "erf", "Softplus": "softplus", "Softsign": "softsign", "Mish": "mish",
         "Sqrt": "sqrt", "Exp": "exp", "Log": "log", "Neg": "neg", "Abs": "abs",
         "Reciprocal": "reciprocal", "Floor": "floor", "Ceil": "ceil", "Round": "round"}
#: ONNX op -> (cnnc op, {ONNX attribute: (cnnc attribute, ONNX default)})
UNARY_ATTRS = {
    "Elu": ("elu", {"alpha": ("alpha", 1.0)}),
    "Selu": ("selu", {"alpha": ("alpha", SELU_ALPHA), "gamma": ("gamma", SELU_GAMMA)}),
    "Celu": ("celu", {"alpha": ("alpha", 1.0)}),
    "ThresholdedRelu": ("thresholded_relu", {"alpha": ("alpha", 1.0)}),
    "Shrink": ("shrink", {"bias": ("bias", 0.0), "lambd": ("lambd", 0.5)}),
    "Swish": ("swish", {"alpha": ("alpha", 1.0)}),
}


def _unary(ctx, op, attrs=None):
    x = ctx.input(0)
    if x.is_const:   # a shape computation (Neg of an axis) or a constant subgraph: folded
        from cnnc.ops.registry import get_op
        arr = np.asarray(x.const)
        if arr.dtype.kind in "iu" and op in ("neg", "abs"):
            _fold(ctx, np.negative if op == "neg" else np.abs, [x])
        elif arr.dtype.kind in "fb":
            opdef = get_op(op)
            y = opdef.evaluate([arr], opdef.check_attrs(dict(attrs or {}), ctx.where))
            ctx.define(ctx.node.output[0], const=np.asarray(y))
        else:
            ctx.unsupported(f"{ctx.node.op_type} of the integer constant {arr.tolist()}")
        return
    if ctx.is_nhwc(x):
        v, layout = x.value, NHWC
    else:
        v, layout = ctx.plain(x), PLAIN
    ctx.define(ctx.node.output[0], ctx.add(op, [v], attrs), layout)


@converter(*UNARY)
def unary(ctx, a):
    _unary(ctx, UNARY[ctx.node.op_type])


def _unary_attrs(ctx, a):
    op, spec = UNARY_ATTRS[ctx.node.op_type]
    _unary(ctx, op, {name: float(a.get(k, default)) for k, (name, default) in spec.items()})


for _onnx_op, (_, _spec) in UNARY_ATTRS.items():
    converter(_onnx_op, attrs=tuple(_spec))(_unary_attrs)


@converter("Gelu", attrs=("approximate",))
def gelu(ctx, a):
    approx = a.get("approximate", "none")
    if approx not in ("none", "tanh"):
        ctx.unsupported(f"approximate={approx!r} (only 'none' and 'tanh')")
    _unary(ctx, "gelu" if approx == "none" else "gelu_tanh")


@converter("Pow")
def pow_(ctx, a):
    x = ctx.input(0)
    e = ctx.const_input(1, "the exponent Y")
    if x.is_const:
        with np.errstate(all="ignore"):
            ctx.define(ctx.node.output[0], const=np.power(x.const, e).astype(x.const.dtype))
        return
    if np.asarray(e).size == 1 and ctx.rank(ctx.input(1)) <= ctx.rank(x):
        _unary(ctx, "pow_scalar", {"exponent": float(np.ravel(e)[0])})
    else:  # an exponent per element (a float constant, like the base)
        emit_binary(ctx, "pow", x, ctx.define(f"{ctx.node.output[0]}/exponent",
                                              const=np.asarray(e, np.float32)))


@converter("LeakyRelu", attrs=("alpha",))
def leaky_relu(ctx, a):
    _unary(ctx, "leaky_relu", {"alpha": a.get("alpha", 0.01)})


@converter("HardSigmoid", attrs=("alpha", "beta"))
def hard_sigmoid(ctx, a):
    _unary(ctx, "hard_sigmoid", {"alpha": a.get("alpha", 0.2), "beta": a.get("beta", 0.5)})


def _scalar(ctx, i, what):
    arr = ctx.const_input(i, what, required=False)
    if arr is None:
        return None
    if arr.size != 1:
        raise ShapeError(f"{ctx.where}: {what} must be a scalar, got shape {arr.shape}")
    v = np.ravel(arr)[0]
    return float(str(v)) if isinstance(v, np.float32) else float(v)  # 0.3, not 0.30000001...


@converter("Clip", attrs=("min", "max"))
def clip(ctx, a):
    if ctx.opset < 11:
        lo, hi = a.get("min"), a.get("max")
    else:
        lo, hi = _scalar(ctx, 1, "min"), _scalar(ctx, 2, "max")
    lo = -np.inf if lo is None else lo
    hi = np.inf if hi is None else hi
    if lo == 0 and hi == 6:
        _unary(ctx, "relu6")
    elif lo == 0 and hi >= F32_MAX:
        _unary(ctx, "relu")
    else:
        _unary(ctx, "clip", {"min": float(np.clip(lo, -F32_MAX, F32_MAX)),
                             "max": float(np.clip(hi, -F32_MAX, F32_MAX))})


@converter("Softmax", "LogSoftmax", attrs=("axis",))
def softmax(ctx, a):
    axis_op(ctx, a, "softmax" if ctx.node.op_type == "Softmax" else "log_softmax")


def axis_op(ctx, a, op: str) -> None:
    """Softmax, LogSoftmax and Hardmax: ``op`` along ``axis`` from opset 13, before that
    over the trailing dims flattened from ``axis`` on."""
    x = ctx.input(0)
    shape = ctx.onnx_shape(x)
    rank = len(shape)
    axis = a.get("axis", -1 if ctx.opset >= 13 else 1)
    if not -rank <= axis < rank:
        raise ShapeError(f"{ctx.where}: axis {axis} is out of range for shape {shape}")
    axis %= rank
    out = ctx.node.output[0]
    if ctx.opset >= 13 or axis == rank - 1:
        if ctx.is_nhwc(x):
            ctx.define(out, ctx.add(op, [x.value], {"axis": NHWC_AXIS[axis]}), NHWC)
        else:
            ctx.define(out, ctx.add(op, [ctx.plain(x)], {"axis": axis}), PLAIN)
        return
    if any(isinstance(d, str) for d in shape[1:]):
        ctx.unsupported(f"opset-{ctx.opset} {ctx.node.op_type} over symbolic dims {shape}")
    flat = ctx.add("flatten", [ctx.plain(x)], {"axis": axis})
    s = ctx.add(op, [flat], {"axis": -1})
    target = [-1 if isinstance(shape[0], str) else shape[0], *shape[1:]]
    ctx.define(out, ctx.add("reshape", [s], {"shape": target}), PLAIN)


# ---- elementwise arithmetic ----------------------------------------------------------------
BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}


def fold_binary(ctx, op, a, b):
    """``a op b`` on constants (integer Div truncates toward zero, like ONNX)."""
    if a.dtype == object or b.dtype == object:
        if any(isinstance(v, str) for v in (*np.ravel(a), *np.ravel(b))):
            ctx.unsupported(f"{op} on a shape that depends on the dynamic batch size "
                            f"({a.tolist()}, {b.tolist()})")
        a, b = a.astype(np.int64), b.astype(np.int64)
    if op == "div" and a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return (np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))).astype(a.dtype)
    fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[op]
    return np.asarray(fn(a, b)).astype(np.result_type(a, b), copy=False)


def emit_binary(ctx, op, ta, tb, out=None):
    """``op(ta, tb)`` with NumPy broadcasting, kept NHWC when a 4-D operand is; defined as
    ``out`` (the node's first output by default) and returned."""
    return emit_elementwise(ctx, op, (ta, tb), out)


def emit_elementwise(ctx, op, operands, out=None):
    """``op(*operands)`` with NumPy broadcasting, kept NHWC when a 4-D operand is and every
    other one is a constant or 4-D; defined as ``out`` (the node's first output by default)."""
    out = ctx.node.output[0] if out is None else out
    rank = max(ctx.rank(t) for t in operands)
    if rank == 4 and any(ctx.is_nhwc(t) for t in operands) and all(
            t.is_const or ctx.rank(t) == 4 for t in operands):
        vals = [ctx.constant(nhwc_constant(np.asarray(t.const), 4)) if t.is_const
                else ctx.nhwc(t) for t in operands]
        return ctx.define(out, ctx.add(op, vals), NHWC)
    return ctx.define(out, ctx.add(op, [ctx.plain(t) for t in operands]), PLAIN)


@converter(*BINARY)
def binary(ctx, a):
    op = BINARY[ctx.node.op_type]
    ta, tb = ctx.input(0), ctx.input(1)
    if ta.is_const and tb.is_const:
        ctx.define(ctx.node.output[0], const=fold_binary(ctx, op, ta.const, tb.const))
        return
    emit_binary(ctx, op, ta, tb)


#: comparisons (float or bool operands) and logic (bool operands), each giving bool
COMPARE = {"Less": "less", "Greater": "greater", "Equal": "equal", "LessOrEqual": "less_equal",
           "GreaterOrEqual": "greater_equal", "And": "logical_and", "Or": "logical_or",
           "Xor": "logical_xor"}


def _fold(ctx, fn, ts):
    """``fn`` of constant operands (a shape computation); a symbolic batch size is refused."""
    from cnnc.frontends.onnx.import_shape import _symbolic
    if any(_symbolic(t.const) for t in ts):
        ctx.unsupported(f"{ctx.node.op_type} on a shape that depends on the dynamic batch "
                        f"size ({', '.join(str(t.const.tolist()) for t in ts)})")
    ctx.define(ctx.node.output[0], const=np.asarray(fn(*(np.asarray(t.const) for t in ts))))


@converter(*COMPARE)
def compare(ctx, a):
    op = COMPARE[ctx.node.op_type]
    ts = [ctx.input(0), ctx.input(1)]
    if all(t.is_const for t in ts):
        _fold(ctx, {**COMPARE_FNS, **LOGICAL}[op], ts)
    else:
        emit_elementwise(ctx, op, ts)


@converter("Not")
def logical_not(ctx, a):
    t = ctx.input(0)
    if t.is_const:
        _fold(ctx, np.logical_not, [t])
    else:
        _unary(ctx, "logical_not")


@converter("Where")
def where(ctx, a):
    ts = [ctx.input(0), ctx.input(1), ctx.input(2)]
    if all(t.is_const for t in ts):
        _fold(ctx, np.where, ts)
    else:
        emit_elementwise(ctx, "where", ts)


@converter("PRelu")
def prelu(ctx, a):
    x, slope = ctx.input(0), ctx.input(1)
    if ctx.rank(slope) > ctx.rank(x):
        raise ShapeError(f"{ctx.where}: slope of shape {ctx.onnx_shape(slope)} does not "
                         f"broadcast to X of shape {ctx.onnx_shape(x)}")
    emit_binary(ctx, "prelu", x, slope)


VARIADIC = {"Sum": "add", "Max": "maximum", "Min": "minimum", "Mean": "add"}
_FOLD = {"add": np.add, "maximum": np.maximum, "minimum": np.minimum}


@converter(*VARIADIC)
def variadic(ctx, a):
    """Sum, Max, Min, Mean of any number of operands (NumPy broadcasting): a chain of
    binary ops, Mean scaled by 1/n at the end."""
    op_type = ctx.node.op_type
    op = VARIADIC[op_type]
    ts = [ctx.input(i) for i in range(len(ctx.node.input))]
    if not ts:
        raise ShapeError(f"{ctx.where}: {op_type} needs at least one input")
    out = ctx.node.output[0]
    if all(t.is_const for t in ts):
        acc = ts[0].const
        for t in ts[1:]:
            acc = _FOLD[op](acc, t.const)
        if op_type == "Mean":
            acc = acc / len(ts)
        ctx.define(out, const=np.asarray(acc))
        return
    acc = ts[0]
    for k, t in enumerate(ts[1:]):
        acc = emit_binary(ctx, op, acc, t, f"{out}/{k}")
    if op_type == "Mean" and len(ts) > 1:
        acc = emit_binary(ctx, "mul", acc, ctx.define(f"{out}/scale",
                                                      const=np.float32(1.0 / len(ts))), out)
    if len(ts) == 1:
        v = acc.value if ctx.is_nhwc(acc) else ctx.plain(acc)
        acc = ctx.define(out, ctx.add("identity", [v]), NHWC if ctx.is_nhwc(acc) else PLAIN)
    ctx.alias(out, acc)


# ---- Gemm, MatMul ----------------------------------------------------------------------------
def _left(ctx, t, weights_const: bool):
    """The left operand of a product: (IR value, weight-row permutation or None)."""
    if t.layout == FLAT and not t.is_const and weights_const:
        _, c, h, w = ctx.onnx_shape(t.src)
        return t.value, flat_rows(c, h, w)
    return ctx.plain(t), None


@converter("Gemm", attrs=("alpha", "beta", "transA", "transB"))
def gemm(ctx, a):
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
    ta, tb = ctx.input(0), ctx.input(1)
    tc = ctx.input(2, required=False)
    if a.get("transA", 0):
        x, rows = ctx.add("transpose", [ctx.plain(ta)], {"perm": (1, 0)}), None
    else:
        x, rows = _left(ctx, ta, tb.is_const)
    scale = None
    if tb.is_const:
        w = np.asarray(tb.const, np.float64)
        w = (w.T if a.get("transB", 0) else w) * alpha
        wv = ctx.constant(w if rows is None else w[rows])
    else:
        wv = ctx.plain(tb)
        if a.get("transB", 0):
            wv = ctx.add("transpose", [wv], {"perm": (1, 0)})
        scale = alpha if alpha != 1.0 else None
    m = wv.type.shape[1]
    bias, extra = None, None
    if tc is not None and beta != 0.0:
        if tc.is_const:
            c = np.asarray(tc.const, np.float64) * beta
            try:
                row = np.broadcast_shapes(c.shape, (1, m)) == (1, m)
            except ValueError:
                raise ShapeError(f"{ctx.where}: C of shape {c.shape} does not broadcast to "
                                 f"(N, {m})") from None
            if row and scale is None:
                bias = ctx.constant(np.broadcast_to(c.reshape(-1) if c.size == m else c, (m,)))
            else:
                extra = ctx.constant(c)
        else:
            extra = ctx.plain(tc)
            if beta != 1.0:
                extra = ctx.add("mul", [extra, ctx.constant(np.float64(beta))])
    y = ctx.add("dense", [x, wv] + ([bias] if bias is not None else []))
    if scale is not None:
        y = ctx.add("mul", [y, ctx.constant(np.float64(scale))])
    if extra is not None:
        y = ctx.add("add", [y, extra])
    ctx.define(ctx.node.output[0], y, PLAIN)


@converter("MatMul")
def matmul(ctx, a):
    ta, tb = ctx.input(0), ctx.input(1)
    out = ctx.node.output[0]
    if ta.is_const and tb.is_const:
        ctx.define(out, const=np.matmul(ta.const, tb.const))
        return
    ra, rb = ctx.rank(ta), ctx.rank(tb)
    if ra < 2 or rb < 2:
        ctx.unsupported(f"MatMul with a 1-D operand (shapes {ctx.onnx_shape(ta)} and "
                        f"{ctx.onnx_shape(tb)})")
    if ra == 2 and rb == 2 and tb.is_const:
        x, rows = _left(ctx, ta, True)
        w = np.asarray(tb.const)
        y = ctx.add("dense", [x, ctx.constant(w if rows is None else w[rows])])
    else:
        y = ctx.add("matmul", [ctx.plain(ta), ctx.plain(tb)])
    ctx.define(out, y, PLAIN)
