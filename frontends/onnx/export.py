"""Export a cnnc graph to ONNX.

    proto = cnnc.export_onnx(model, "model.onnx")   # model: a cnnc model or a Graph

The ONNX model takes and returns tensors exactly like the cnnc model: NHWC inputs whose batch
dim stays symbolic (``"N"``) and the same outputs. Inside it runs NCHW so that runtimes use
their native convolution kernels:

* a rank-4 value lives in ONNX as NCHW once a convolution, pooling or batch norm has touched
  it; a graph input is transposed to NCHW once (the transpose is shared by every reader), and
  a 4-D graph output is transposed back to NHWC;
* kernels go HWIO -> OIHW, TF SAME padding becomes explicit ``[top, left, bottom, right]``
  pads (the extra cell bottom/right), average pooling keeps cnnc's ``count_include_pad``;
* ``flatten`` keeps Keras's row-major (H, W, C) order: when every reader is a dense layer with
  constant weights, the rows of those weights are permuted to the NCHW order instead of
  transposing the activation, otherwise the activation is transposed back to NHWC first;
* operands of lower rank broadcast against a 4-D value in NHWC terms (a per-channel ``(C,)``
  bias) are reshaped and transposed to their NCHW equivalent.

An op without an ONNX lowering raises :class:`~cnnc.errors.UnsupportedError` naming the node.
``onnx`` is an optional dependency, imported on first use.
"""

from __future__ import annotations

import os

import numpy as np

from cnnc.errors import ConfigError, UnsupportedError
from cnnc.frontends.onnx import require_onnx
from cnnc.frontends.onnx.export_movement import MovementExport
from cnnc.frontends.onnx.export_norm import NormExport
from cnnc.frontends.onnx.layout import NCHW, NCHW_AXIS, PLAIN, TO_NCHW, TO_NHWC, NchwTranslator
from cnnc.ir.graph import Graph
from cnnc.ops.fused import STEPS
from cnnc.ops.norm import bn_scale_shift
from cnnc.ops.padding import window_geometry

OPSET = 17

_UNARY = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "hard_swish": "HardSwish",
          "erf": "Erf", "softplus": "Softplus", "softsign": "Softsign", "sqrt": "Sqrt",
          "exp": "Exp", "log": "Log", "neg": "Neg", "abs": "Abs", "reciprocal": "Reciprocal",
          "floor": "Floor", "ceil": "Ceil", "round": "Round"}
#: activations that are one ONNX op with the same attributes
_UNARY_ATTRS = {"elu": "Elu", "selu": "Selu", "celu": "Celu",
                "thresholded_relu": "ThresholdedRelu", "shrink": "Shrink"}
_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow",
           "maximum": "Max", "minimum": "Min", "prelu": "PRelu",
           "less": "Less", "greater": "Greater", "equal": "Equal", "less_equal": "LessOrEqual",
           "greater_equal": "GreaterOrEqual", "logical_and": "And", "logical_or": "Or",
           "logical_xor": "Xor", "where": "Where"}


def _graph_of(model_or_graph) -> Graph:
    if isinstance(model_or_graph, Graph):
        return model_or_graph
    if hasattr(model_or_graph, "to_graph"):
        return model_or_graph.to_graph()
    raise ConfigError(f"export_onnx expects a cnnc model (with to_graph()) or a Graph, got "
                      f"{type(model_or_graph).__name__}")


def export_onnx(model_or_graph, path=None, opset: int = OPSET):
    """The ONNX ``ModelProto`` of ``model_or_graph`` (its unoptimised graph); written to
    ``path`` when given: a file name (``str`` or ``os.PathLike``) or a binary file object
    (anything with ``write``, e.g. ``io.BytesIO``). Raises UnsupportedError for an op with no
    ONNX lowering, ConfigError for any other ``path``."""
    onnx = require_onnx("ONNX export")
    if not (path is None or isinstance(path, (str, os.PathLike)) or hasattr(path, "write")):
        raise ConfigError(f"export_onnx: path must be a file name or a binary file object, "
                          f"got {type(path).__name__}")
    graph = _graph_of(model_or_graph)
    proto = _Exporter(graph, onnx, opset).build()
    onnx.checker.check_model(proto)
    if hasattr(path, "write"):
        data = proto.SerializeToString()
        try:
            path.write(data)
        except TypeError as e:  # a text-mode file
            raise ConfigError(f"export_onnx: the file object must be opened in binary mode "
                              f"('wb'): {e}") from None
    elif path is not None:
        onnx.save(proto, os.fspath(path))
    return proto


def _elem_type(onnx, dtype: str) -> int:
    return {"float32": onnx.TensorProto.FLOAT, "float64": onnx.TensorProto.FLOAT,
            "int64": onnx.TensorProto.INT64, "int32": onnx.TensorProto.INT32,
            "bool": onnx.TensorProto.BOOL}[dtype]


def pool_plan(in_hw, attrs):
    """(pads, out_hw, overhang) of a pooling node: ``overhang`` is how far ``ceil_mode``'s
    last window runs past the padded input, per axis."""
    k, s, d = attrs["pool_size"], attrs["strides"], attrs["dilation"]
    pads, out_hw = window_geometry(in_hw, k, s, d, attrs["padding"], attrs["ceil_mode"])
    overhang = tuple(max(0, (o - 1) * ss + (kk - 1) * dd + 1 - (n + b + e))
                     for n, o, kk, ss, dd, (b, e) in zip(in_hw, out_hw, k, s, d, pads))
    return pads, out_hw, overhang


def window_counts(in_hw, attrs) -> np.ndarray:
    """The divisor of every average-pooling window, ``(oh, ow)``: its real input cells, or with
    ``count_include_pad`` its cells inside the padded input."""
    pads, (oh, ow), (eh, ew) = pool_plan(in_hw, attrs)
    (pt, pb), (pl, pr) = pads
    (h, w), (kh, kw) = in_hw, attrs["pool_size"]
    (sh, sw), (dh, dw) = attrs["strides"], attrs["dilation"]
    mask = np.zeros((h + pt + pb + eh, w + pl + pr + ew))
    if attrs["count_include_pad"]:
        mask[:h + pt + pb, :w + pl + pr] = 1
    else:
        mask[pt:pt + h, pl:pl + w] = 1
    counts = np.zeros((oh, ow))
    for i in range(kh):
        for j in range(kw):
            counts += mask[i * dh: i * dh + (oh - 1) * sh + 1: sh,
                           j * dw: j * dw + (ow - 1) * sw + 1: sw]
    return counts


class _Exporter(MovementExport, NormExport, NchwTranslator):
    """Walks the graph in schedule order, emitting ONNX nodes and initializers."""

    def __init__(self, graph: Graph, onnx, opset: int):
        super().__init__(graph)
        self.onnx, self.h = onnx, onnx.helper
        self.opset = opset
        self.nodes, self.inits = [], []
        self.used: set[str] = set()
        self.count = 0

    # ---- names, constants, values ----------------------------------------------------------
    def fresh(self, hint: str) -> str:
        while True:
            self.count += 1
            name = f"{hint}_{self.count}"
            if name not in self.used:
                self.used.add(name)
                return name

    def const(self, array, hint: str = "c") -> str:
        arr = np.asarray(array)
        arr = arr.astype(np.float32 if arr.dtype.kind == "f" else
                         bool if arr.dtype.kind == "b" else np.int64)
        name = self.fresh(hint)
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def emit(self, op_type: str, inputs, hint: str | None = None, **attrs) -> str:
        out = self.fresh(hint or op_type.lower())
        self.nodes.append(self.h.make_node(op_type, list(inputs), [out], **attrs))
        return out

    # ---- the hooks of NchwTranslator ----------------------------------------------------
    def constant(self, array, hint: str) -> str:
        return self.const(array, hint)

    def permute(self, name: str, perm: tuple, hint: str) -> str:
        return self.emit("Transpose", [name], hint, perm=list(perm))

    def lift_to_nchw(self, name: str, rank: int) -> str:
        axes = self.const(np.arange(4 - rank, dtype=np.int64))
        up = self.emit("Unsqueeze", [name, axes])
        return self.emit("Transpose", [up], perm=list(TO_NCHW))

    # ---- driver ----------------------------------------------------------------------------
    def build(self):
        h, g = self.h, self.g
        inputs = []
        for v in g.inputs:
            self.used.add(v.name)
            self.define(v, v.name, PLAIN)
            inputs.append(self._value_info(v.name, v.type))
        out_names = ["output"] if len(g.outputs) == 1 else [f"output{i}"
                                                             for i in range(len(g.outputs))]
        self.used.update(out_names)
        for node in g.nodes:
            if node.op == "constant":
                continue
            handler = getattr(self, f"op_{node.op}", None)
            if handler is None:
                raise UnsupportedError(
                    f"ONNX export: {node.describe()} has no ONNX lowering; supported ops: "
                    f"{sorted(n[3:] for n in dir(self) if n.startswith('op_'))}")
            handler(node)
        outputs = []
        for name, v in zip(out_names, g.outputs):
            if v.is_constant or self.layout[id(v)] == PLAIN:
                self.nodes.append(h.make_node("Identity", [self.tensor(v, PLAIN)], [name]))
            else:
                self.nodes.append(h.make_node("Transpose", [self.tensor(v, NCHW)], [name],
                                              perm=list(TO_NHWC)))
            outputs.append(self._value_info(name, v.type))
        graph = h.make_graph(self.nodes, g.name, inputs, outputs, initializer=self.inits)
        opsets = [h.make_opsetid("", self.opset)]
        import cnnc
        return h.make_model(graph, opset_imports=opsets, producer_name="cnnc",
                            producer_version=cnnc.__version__,
                            ir_version=h.find_min_ir_version_for(opsets))

    def _value_info(self, name, ttype):
        shape = [d if isinstance(d, str) else int(d) for d in ttype.shape]
        return self.h.make_tensor_value_info(name, _elem_type(self.onnx, ttype.dtype), shape)

    # ---- activations and elementwise -------------------------------------------------------
    def activation(self, name: str, x: str, params: dict) -> str:
        if name in _UNARY:
            return self.emit(_UNARY[name], [x])
        if name in ("relu6", "clip"):
            lo, hi = (0.0, 6.0) if name == "relu6" else (params["min"], params["max"])
            return self.emit("Clip", [x, self.const(np.float32(lo)), self.const(np.float32(hi))])
        if name == "leaky_relu":
            return self.emit("LeakyRelu", [x], alpha=float(params["alpha"]))
        if name == "hard_sigmoid":
            return self.emit("HardSigmoid", [x], alpha=float(params["alpha"]),
                             beta=float(params["beta"]))
        if name in _UNARY_ATTRS:
            return self.emit(_UNARY_ATTRS[name], [x], **{k: float(v) for k, v in params.items()})
        if name == "pow_scalar":
            return self.emit("Pow", [x, self.const(np.float32(params["exponent"]))])
        c = lambda v: self.const(np.float32(v))  # noqa: E731
        if name == "gelu":  # x * 0.5 * (1 + erf(x / sqrt 2)) (Gelu is opset 20); the Div is
            # the form ONNX Runtime fuses into one Gelu kernel (a Mul by 1 / sqrt 2 ran as four)
            e = self.emit("Erf", [self.emit("Div", [x, c(np.sqrt(2.0))])])
            return self.emit("Mul", [self.emit("Mul", [x, self.emit("Add", [e, c(1.0)])]),
                                     c(0.5)])
        if name == "gelu_tanh":  # x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3))
            x3 = self.emit("Mul", [self.emit("Mul", [x, x]), x])
            z = self.emit("Add", [x, self.emit("Mul", [x3, c(0.044715)])])
            s = self.emit("Sigmoid", [self.emit("Mul", [z, c(2 * np.sqrt(2 / np.pi))])])
            return self.emit("Mul", [x, s])
        if name == "mish":  # Mish is opset 18
            return self.emit("Mul", [x, self.emit("Tanh", [self.emit("Softplus", [x])])])
        if name == "swish":  # Swish is opset 24
            s = self.emit("Sigmoid", [self.emit("Mul", [x, c(params["alpha"])])])
            return self.emit("Mul", [x, s])
        raise UnsupportedError(f"ONNX export: activation {name!r} has no ONNX lowering")

    def _unary_node(self, node):
        x = node.inputs[0]
        layout = self.layout_of(x)
        y = self.activation(node.op, self.tensor(x, layout), dict(node.attrs))
        self.define(node.output, y, layout)

    op_relu = op_relu6 = op_clip = op_leaky_relu = _unary_node
    op_sigmoid = op_tanh = op_hard_sigmoid = op_hard_swish = _unary_node
    op_erf = op_gelu = op_gelu_tanh = op_elu = op_selu = op_celu = _unary_node
    op_softplus = op_softsign = op_mish = op_swish = op_thresholded_relu = _unary_node
    op_shrink = op_sqrt = op_exp = op_log = op_neg = op_abs = _unary_node
    op_reciprocal = op_pow_scalar = op_floor = op_ceil = op_round = _unary_node

    def _binary_node(self, node):   # and where, of three operands
        layout = self.result_layout(node)
        operands = [self.operand(v, layout) for v in node.inputs]
        self.define(node.output, self.emit(_BINARY[node.op], operands), layout)

    op_add = op_sub = op_mul = op_div = op_pow = _binary_node
    op_maximum = op_minimum = op_prelu = _binary_node
    op_less = op_greater = op_equal = op_less_equal = op_greater_equal = _binary_node
    op_logical_and = op_logical_or = op_logical_xor = op_where = _binary_node

    def op_logical_not(self, node):
        x = node.inputs[0]
        layout = self.layout_of(x)
        self.define(node.output, self.emit("Not", [self.tensor(x, layout)]), layout)

    def op_bias_add(self, node):
        layout = self.result_layout(node)
        x, b = node.inputs
        self.define(node.output, self.emit("Add", [self.tensor(x, layout),
                                                   self.operand(b, layout)]), layout)

    def op_scale_shift(self, node):
        x, s, t = node.inputs
        layout = self.result_layout(node)
        y = self.emit("Mul", [self.tensor(x, layout), self.operand(s, layout)])
        self.define(node.output, self.emit("Add", [y, self.operand(t, layout)]), layout)

    def _alias(self, node):
        x = node.inputs[0]
        layout = self.layout_of(x)
        self.define(node.output, self.emit("Identity", [self.tensor(x, layout)]), layout)

    op_identity = op_dropout = _alias

    def epilogue(self, y: str, extras, steps, layout: str) -> str:
        """Apply a fused op's epilogue steps to the ONNX tensor ``y`` (held in ``layout``)."""
        it = iter(extras)
        for name, *params in steps:
            if name == "scale_shift":
                y = self.emit("Mul", [y, self.operand(next(it), layout)])
                y = self.emit("Add", [y, self.operand(next(it), layout)])
            elif name == "add":
                y = self.emit("Add", [y, self.operand(next(it), layout)])
            else:
                y = self.activation(name, y, dict(zip(STEPS[name][1], params)))
        return y

    # ---- convolution, dense, normalisation -------------------------------------------------
    def op_conv2d(self, node):
        x, w, *rest = node.inputs
        a = node.attrs
        kh, kw = w.type.shape[:2]
        (pt, pb), (pl, pr) = window_geometry(x.type.shape[1:3], (kh, kw), a["strides"],
                                             a["dilation"], a["padding"])[0]
        if w.is_constant:
            wname = self.const(w.data.transpose(3, 2, 0, 1), f"w{w.name}")
        else:
            wname = self.emit("Transpose", [self.tensor(w, PLAIN)], perm=[3, 2, 0, 1])
        ins = [self.tensor(x, NCHW), wname]
        n_bias = 1 if node.op == "conv2d_fused" or rest else 0
        if n_bias:
            ins.append(self.tensor(rest[0], PLAIN))
        y = self.emit("Conv", ins, kernel_shape=[kh, kw], strides=list(a["strides"]),
                      dilations=list(a["dilation"]), pads=[pt, pl, pb, pr], group=a["groups"])
        if node.op == "conv2d_fused":
            y = self.epilogue(y, rest[1:], a["epilogue"], NCHW)
        self.define(node.output, y, NCHW)

    op_conv2d_fused = op_conv2d

    def op_dense(self, node):
        x, w, *rest = node.inputs
        if id(x) in self.flat_nchw:  # the flatten left (C, H, W) order: permute the rows
            hh, ww, cc = self.flat_nchw[id(x)]
            out = w.type.shape[1]
            wname = self.const(w.data.reshape(hh, ww, cc, out).transpose(2, 0, 1, 3)
                               .reshape(hh * ww * cc, out), f"w{w.name}")
        else:
            wname = self.tensor(w, PLAIN)
        ins = [self.tensor(x, PLAIN), wname] + ([self.tensor(rest[0], PLAIN)] if rest else [])
        y = self.emit("Gemm", ins)
        if node.op == "dense_fused":
            y = self.epilogue(y, rest[1:], node.attrs["epilogue"], PLAIN)
        self.define(node.output, y, PLAIN)

    op_dense_fused = op_dense

    def op_matmul(self, node):
        a, b = (self.tensor(v, PLAIN) for v in node.inputs)
        self.define(node.output, self.emit("MatMul", [a, b]), PLAIN)

    def op_batch_norm(self, node):
        x, *params = node.inputs
        rank, axis = x.type.rank, node.attrs["axis"] % x.type.rank
        eps = float(node.attrs["epsilon"])
        if (rank, axis) in ((4, 3), (2, 1)):
            layout = NCHW if rank == 4 else PLAIN
            ins = [self.tensor(x, layout)] + [self.tensor(p, PLAIN) for p in params]
            self.define(node.output, self.emit("BatchNormalization", ins, epsilon=eps), layout)
            return
        if not all(p.is_constant for p in params):
            raise UnsupportedError(f"ONNX export: {node.describe()} normalises axis {axis} of "
                                   f"{x.type} with non-constant statistics")
        scale, shift = bn_scale_shift(*(p.data for p in params), eps)
        shape = [1] * rank
        shape[axis] = -1
        layout = self.layout_of(x) if rank == 4 else PLAIN
        y = self.emit("Mul", [self.tensor(x, layout), self.operand(scale.reshape(shape), layout)])
        y = self.emit("Add", [y, self.operand(shift.reshape(shape), layout)])
        self.define(node.output, y, layout)

    _REDUCE = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax", "min": "ReduceMin",
               "sum_square": "ReduceSumSquare", "l1": "ReduceL1", "l2": "ReduceL2",
               "log_sum_exp": "ReduceLogSumExp"}

    def op_reduce(self, node):
        x, a = node.inputs[0], node.attrs
        rank = x.type.rank
        axes = sorted(ax % rank for ax in a["axes"])
        layout = self.layout_of(x) if rank == 4 else PLAIN
        keep = bool(a["keepdims"])
        if layout == NCHW and not keep:
            layout = PLAIN  # the result's axes keep the NHWC order
        if layout == NCHW:
            axes = sorted(NCHW_AXIS[ax] for ax in axes)
        op_type = self._REDUCE[a["kind"]]
        src = self.tensor(x, layout)
        if op_type == "ReduceSum" or self.opset >= 18:  # axes became an input
            y = self.emit(op_type, [src, self.const(np.array(axes, np.int64))],
                          keepdims=int(keep))
        else:
            y = self.emit(op_type, [src], axes=axes, keepdims=int(keep))
        self.define(node.output, y, layout)

    def op_lrn(self, node):
        x = node.inputs[0]
        a = {k: node.attrs[k] for k in ("alpha", "beta", "bias")}
        if x.type.rank != 4:
            raise UnsupportedError(f"ONNX export: {node.describe()}: LRN of a rank-"
                                   f"{x.type.rank} value (only 4-D)")
        y = self.emit("LRN", [self.tensor(x, NCHW)], size=int(node.attrs["size"]),
                      **{k: float(v) for k, v in a.items()})
        self.define(node.output, y, NCHW)

    # ---- pooling ---------------------------------------------------------------------------
    def _pool(self, node, op_type: str):
        x = node.inputs[0]
        a = node.attrs
        k, st, d = list(a["pool_size"]), list(a["strides"]), list(a["dilation"])
        pads, out_hw, overhang = pool_plan(x.type.shape[1:3], a)
        (pt, pb), (pl, pr) = pads
        avg = op_type == "AveragePool"
        if avg and d != [1, 1] and self.opset < 19:
            self.opset = 19  # AveragePool has dilations from opset 19 on
        extra = {"dilations": d} if d != [1, 1] else {}
        src = self.tensor(x, NCHW)
        # ceil_mode only where ONNX's shape rule (no check for a window starting in the right
        # padding) agrees, pads only below the kernel size (ONNX Runtime's limit)
        naive = [-(-(n + b + e - (kk - 1) * dd - 1) // ss) + 1 if a["ceil_mode"] else o
                 for n, (b, e), kk, ss, dd, o in zip(x.type.shape[1:3], pads, k, st, d, out_hw)]
        if naive == list(out_hw) and all(p < kk for p, kk in zip((pt, pb, pl, pr), k + k)):
            if avg:
                extra["count_include_pad"] = int(a["count_include_pad"])
            y = self.emit(op_type, [src], kernel_shape=k, strides=st, pads=[pt, pl, pb, pr],
                          ceil_mode=int(a["ceil_mode"]), **extra)
        else:  # ONNX Runtime wants pads < kernel: pad explicitly, average as sum / count
            eh, ew = overhang
            flat = np.array([0, 0, pt, pl, 0, 0, pb + eh, pr + ew], np.int64)
            fill = np.float32(0.0 if avg else -np.inf)
            p = self.emit("Pad", [src, self.const(flat), self.const(fill)], mode="constant")
            if avg:
                extra["count_include_pad"] = 1
            y = self.emit(op_type, [p], kernel_shape=k, strides=st, **extra)
            full = [(n + b + e + o - (kk - 1) * dd - 1) // ss + 1 for n, (b, e), o, kk, ss, dd
                    in zip(x.type.shape[1:3], pads, overhang, k, st, d)]
            if full != list(out_hw):  # ceil_mode dropped a last window that starts in padding
                y = self.emit("Slice", [y, self.const(np.zeros(2, np.int64)),
                                        self.const(np.array(out_hw, np.int64)),
                                        self.const(np.array([2, 3], np.int64))])
            if avg:
                counts = window_counts(x.type.shape[1:3], a)
                y = self.emit("Mul", [y, self.const((k[0] * k[1] / counts)[None, None])])
        self.define(node.output, y, NCHW)

    def op_max_pool2d(self, node):
        self._pool(node, "MaxPool")

    def op_avg_pool2d(self, node):
        self._pool(node, "AveragePool")

    def _global_pool(self, node, op_type: str):
        y = self.emit(op_type, [self.tensor(node.inputs[0], NCHW)])
        if node.attrs["keepdims"]:
            self.define(node.output, y, NCHW)
        else:
            self.define(node.output, self.emit("Flatten", [y], axis=1), PLAIN)

    def op_global_avg_pool(self, node):
        self._global_pool(node, "GlobalAveragePool")

    def op_global_max_pool(self, node):
        self._global_pool(node, "GlobalMaxPool")

    # ---- data movement ---------------------------------------------------------------------
    def op_flatten(self, node):
        x, axis = node.inputs[0], node.attrs["axis"]
        if (x.type.rank == 4 and axis == 1 and self.layout_of(x) == NCHW
                and self.dense_readers_only(node.output)):
            y = self.emit("Flatten", [self.tensor(x, NCHW)], axis=1)
            self.flat_nchw[id(node.output)] = tuple(x.type.shape[1:])
        else:
            y = self.emit("Flatten", [self.tensor(x, PLAIN)], axis=axis)
        self.define(node.output, y, PLAIN)

    def op_reshape(self, node):
        shape = self.const(np.array(node.attrs["shape"], dtype=np.int64))
        y = self.emit("Reshape", [self.tensor(node.inputs[0], PLAIN), shape])
        self.define(node.output, y, PLAIN)

    def op_transpose(self, node):
        y = self.emit("Transpose", [self.tensor(node.inputs[0], PLAIN)],
                      perm=list(node.attrs["perm"]))
        self.define(node.output, y, PLAIN)

    def op_concat(self, node):
        rank = node.output.type.rank
        axis = node.attrs["axis"] % rank
        layout = self.result_layout(node)
        if layout == NCHW:
            axis = NCHW_AXIS[axis]
        ins = [self.operand(v, layout) for v in node.inputs]
        self.define(node.output, self.emit("Concat", ins, axis=axis), layout)

    def op_softmax(self, node):
        x = node.inputs[0]
        axis = node.attrs["axis"] % x.type.rank
        layout = self.layout_of(x) if x.type.rank == 4 else PLAIN
        if layout == NCHW:
            axis = NCHW_AXIS[axis]
        op_type = "Softmax" if node.op == "softmax" else "LogSoftmax"
        self.define(node.output, self.emit(op_type, [self.tensor(x, layout)], axis=axis),
                    layout)

    op_log_softmax = op_softmax

    def op_pad(self, node):
        x = node.inputs[0]
        pads = list(node.attrs["pads"])
        layout = self.layout_of(x) if x.type.rank == 4 else PLAIN
        if layout == NCHW:
            pads = [pads[i] for i in TO_NCHW]
        flat = [p[0] for p in pads] + [p[1] for p in pads]
        y = self.emit("Pad", [self.tensor(x, layout), self.const(np.array(flat, np.int64)),
                              self.const(np.float32(node.attrs["value"]))], mode="constant")
        self.define(node.output, y, layout)
