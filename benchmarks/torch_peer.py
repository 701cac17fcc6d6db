"""A PyTorch peer of a cnnc graph: an ``nn.Module`` with the same weights, running NCHW inside.

    module = torch_module(graph)            # forward(x_nhwc) -> outputs like cnnc's
    y = module(torch.from_numpy(x)).numpy()
    print(module.source)                     # the generated forward()

The forward is generated Python source (one line per op, like ``torch.fx`` code), so eager
PyTorch pays no interpreter loop and ``torch.compile`` traces straight-line code. Layout
handling is the ONNX exporter's (``cnnc.frontends.onnx.layout``): a rank-4 value is NCHW once a
convolution, pooling or batch norm touched it; inputs are permuted to NCHW once, 4-D outputs
permuted back; ``flatten`` keeps Keras's (H, W, C) order by permuting the rows of constant dense
weights (or, when it has other readers, by going back to NHWC first). ``torch`` is imported on
first use.
"""

from __future__ import annotations

import functools
import linecache
import math

import numpy as np

from cnnc.errors import UnsupportedError
from cnnc.frontends.onnx.export import pool_plan, window_counts
from cnnc.frontends.onnx.layout import NCHW, NCHW_AXIS, PLAIN, TO_NCHW, NchwTranslator
from cnnc.ops.fused import STEPS
from cnnc.ops.norm import bn_scale_shift
from cnnc.ops.padding import window_geometry

_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def import_torch():
    try:
        import torch
    except ImportError as e:
        raise UnsupportedError(f"the PyTorch peer needs 'torch': {e}") from None
    return torch


def torch_module(graph, dtype=None):
    """An ``nn.Module`` computing ``graph`` (float32 unless ``dtype`` is given, e.g.
    ``torch.float64`` for checks against the reference); ``module.source`` is its forward."""
    torch = import_torch()
    gen = _Codegen(graph, torch, dtype or torch.float32)
    source = gen.build()
    return _module_class()(source, gen.buffers)


@functools.lru_cache(maxsize=None)
def _module_class():
    torch = import_torch()

    class PeerModule(torch.nn.Module):
        """Buffers hold the weights; ``forward`` is compiled from generated source."""

        def __init__(self, source: str, buffers: dict):
            super().__init__()
            for name, t in buffers.items():
                self.register_buffer(name, t)
            self.source = source
            filename = f"<cnnc_torch_peer_{id(self):x}>"
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            scope = {"torch": torch, "F": torch.nn.functional, "math": math}
            exec(compile(source, filename, "exec"), scope)
            self._forward = scope["forward"]

        def forward(self, *xs):
            return self._forward(self, *xs)

    return PeerModule


def _num(v: float) -> str:
    """A float as Python source (infinities included)."""
    v = float(v)
    return ("-math.inf" if v < 0 else "math.inf") if math.isinf(v) else repr(v)


class _Codegen(NchwTranslator):
    def __init__(self, graph, torch, dtype):
        super().__init__(graph)
        self.torch, self.dtype = torch, dtype
        self.lines: list[str] = []
        self.buffers: dict = {}
        self.count = 0

    # ---- helpers ---------------------------------------------------------------------------
    def fresh(self, hint="v") -> str:
        self.count += 1
        return f"{hint}{self.count}"

    def buffer(self, array) -> str:
        arr = np.ascontiguousarray(array)
        name = f"c{len(self.buffers)}"
        t = self.torch.from_numpy(arr.copy())
        self.buffers[name] = t.to(self.dtype) if arr.dtype.kind == "f" else t
        return f"self.{name}"

    def line(self, expr: str, hint="v") -> str:
        name = self.fresh(hint)
        self.lines.append(f"    {name} = {expr}")
        return name

    # ---- the hooks of NchwTranslator ----------------------------------------------------
    def constant(self, array, hint: str) -> str:
        return self.buffer(array)

    def permute(self, name: str, perm: tuple, hint: str) -> str:
        return self.line(f"{name}.permute{perm}{'.contiguous()' if perm == TO_NCHW else ''}",
                         "t")

    def lift_to_nchw(self, name: str, rank: int) -> str:
        return self.line(f"{name}[{'None, ' * (4 - rank)}...].permute{TO_NCHW}")

    # ---- driver ----------------------------------------------------------------------------
    def build(self) -> str:
        args = []
        for i, v in enumerate(self.g.inputs):
            args.append(f"x{i}")
            self.define(v, f"x{i}", PLAIN)
        for node in self.g.nodes:
            if node.op == "constant":
                continue
            handler = getattr(self, f"op_{node.op}", None)
            if handler is None:
                raise UnsupportedError(f"torch peer: {node.describe()} has no PyTorch lowering")
            handler(node)
        outs = [self.tensor(v, PLAIN) for v in self.g.outputs]
        ret = outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ",)"
        head = f"def forward(self, {', '.join(args)}):"
        return "\n".join([head, *self.lines, f"    return {ret}", ""])

    # ---- elementwise -----------------------------------------------------------------------
    @staticmethod
    def act_expr(name: str, x: str, p: dict) -> str:
        if name == "relu":
            return f"F.relu({x})"
        if name == "relu6":
            return f"F.relu6({x})"
        if name == "clip":
            return f"torch.clamp({x}, {_num(p['min'])}, {_num(p['max'])})"
        if name == "leaky_relu":
            return f"F.leaky_relu({x}, {p['alpha']!r})"
        if name in ("sigmoid", "tanh"):
            return f"torch.{name}({x})"
        if name == "hard_sigmoid":
            return f"torch.clamp({x} * {p['alpha']!r} + {p['beta']!r}, 0.0, 1.0)"
        if name == "hard_swish":
            return f"F.hardswish({x})"
        raise UnsupportedError(f"torch peer: activation {name!r} has no PyTorch lowering")

    def _unary(self, node):
        x = node.inputs[0]
        layout = self.layout_of(x)
        self.define(node.output, self.line(self.act_expr(node.op, self.tensor(x, layout),
                                                         dict(node.attrs))), layout)

    op_relu = op_relu6 = op_clip = op_leaky_relu = _unary
    op_sigmoid = op_tanh = op_hard_sigmoid = op_hard_swish = _unary

    def _binary(self, node):
        layout = self.result_layout(node)
        a, b = (self.operand(v, layout) for v in node.inputs)
        self.define(node.output, self.line(f"{a} {_BINARY[node.op]} {b}"), layout)

    op_add = op_sub = op_mul = op_div = _binary

    def op_bias_add(self, node):
        layout = self.result_layout(node)
        x, b = node.inputs
        self.define(node.output, self.line(f"{self.tensor(x, layout)} + "
                                           f"{self.operand(b, layout)}"), layout)

    def op_scale_shift(self, node):
        x, s, t = node.inputs
        layout = self.result_layout(node)
        self.define(node.output, self.line(f"{self.tensor(x, layout)} * "
                                           f"{self.operand(s, layout)} + "
                                           f"{self.operand(t, layout)}"), layout)

    def _alias(self, node):
        x = node.inputs[0]
        layout = self.layout_of(x)
        self.define(node.output, self.tensor(x, layout), layout)

    op_identity = op_dropout = _alias

    def epilogue(self, y: str, extras, steps, layout) -> str:
        it = iter(extras)
        for name, *params in steps:
            if name == "scale_shift":
                y = self.line(f"{y} * {self.operand(next(it), layout)} + "
                              f"{self.operand(next(it), layout)}")
            elif name == "add":
                y = self.line(f"{y} + {self.operand(next(it), layout)}")
            else:
                y = self.line(self.act_expr(name, y, dict(zip(STEPS[name][1], params))))
        return y

    # ---- conv, dense, norm -----------------------------------------------------------------
    def op_conv2d(self, node):
        x, w, *rest = node.inputs
        a = node.attrs
        if not w.is_constant:
            raise UnsupportedError(f"torch peer: {node.describe()} has a non-constant kernel")
        kh, kw = w.type.shape[:2]
        (pt, pb), (pl, pr) = window_geometry(x.type.shape[1:3], (kh, kw), a["strides"],
                                             a["dilation"], a["padding"])[0]
        src = self.tensor(x, NCHW)
        if (pt, pl) != (pb, pr):
            src = self.line(f"F.pad({src}, ({pl}, {pr}, {pt}, {pb}))")
            pt = pl = 0
        weight = self.buffer(w.data.transpose(3, 2, 0, 1))
        bias = self.tensor(rest[0], PLAIN) if rest else "None"
        y = self.line(f"F.conv2d({src}, {weight}, {bias}, {tuple(a['strides'])}, "
                      f"({pt}, {pl}), {tuple(a['dilation'])}, {a['groups']})")
        if node.op == "conv2d_fused":
            y = self.epilogue(y, rest[1:], a["epilogue"], NCHW)
        self.define(node.output, y, NCHW)

    op_conv2d_fused = op_conv2d

    def op_dense(self, node):
        x, w, *rest = node.inputs
        if not w.is_constant:
            raise UnsupportedError(f"torch peer: {node.describe()} has a non-constant kernel")
        data = w.data
        if id(x) in self.flat_nchw:
            hh, ww, cc = self.flat_nchw[id(x)]
            data = data.reshape(hh, ww, cc, -1).transpose(2, 0, 1, 3).reshape(hh * ww * cc, -1)
        bias = self.tensor(rest[0], PLAIN) if rest else "None"
        y = self.line(f"F.linear({self.tensor(x, PLAIN)}, {self.buffer(data.T)}, {bias})")
        if node.op == "dense_fused":
            y = self.epilogue(y, rest[1:], node.attrs["epilogue"], PLAIN)
        self.define(node.output, y, PLAIN)

    op_dense_fused = op_dense

    def op_matmul(self, node):
        a, b = (self.tensor(v, PLAIN) for v in node.inputs)
        self.define(node.output, self.line(f"torch.matmul({a}, {b})"), PLAIN)

    def op_batch_norm(self, node):
        x, *params = node.inputs
        rank, axis = x.type.rank, node.attrs["axis"] % x.type.rank
        eps = float(node.attrs["epsilon"])
        if (rank, axis) in ((4, 3), (2, 1)):
            layout = NCHW if rank == 4 else PLAIN
            g, b, m, v = (self.tensor(p, PLAIN) for p in params)
            self.define(node.output, self.line(
                f"F.batch_norm({self.tensor(x, layout)}, {m}, {v}, {g}, {b}, False, 0.0, "
                f"{eps!r})"), layout)
            return
        if not all(p.is_constant for p in params):
            raise UnsupportedError(f"torch peer: {node.describe()} normalises axis {axis} with "
                                   f"non-constant statistics")
        scale, shift = bn_scale_shift(*(p.data for p in params), eps)
        shape = [1] * rank
        shape[axis] = -1
        layout = self.layout_of(x) if rank == 4 else PLAIN
        s, t = (self.operand(a.reshape(shape), layout) for a in (scale, shift))
        self.define(node.output, self.line(f"{self.tensor(x, layout)} * {s} + {t}"), layout)

    # ---- pooling ---------------------------------------------------------------------------
    def _pool(self, node, kind: str):
        x = node.inputs[0]
        a = node.attrs
        k, s, d = a["pool_size"], a["strides"], a["dilation"]
        pads, (oh, ow), (eh, ew) = pool_plan(x.type.shape[1:3], a)
        (pt, pb), (pl, pr) = pads
        src = self.tensor(x, NCHW)
        native = (pt, pl) == (pb, pr) and not eh and not ew and 2 * pt <= k[0] and \
            2 * pl <= k[1]
        args = f"{tuple(k)}, {tuple(s)}"
        cip = bool(a.get("count_include_pad", False))
        if native and (kind == "max" or tuple(d) == (1, 1)):
            y = (f"F.max_pool2d({src}, {args}, ({pt}, {pl}), {tuple(d)})" if kind == "max" else
                 f"F.avg_pool2d({src}, {args}, ({pt}, {pl}), False, {cip})")
            self.define(node.output, self.line(y), NCHW)
            return
        fill = ", value=-math.inf" if kind == "max" else ""
        p = self.line(f"F.pad({src}, ({pl}, {pr + ew}, {pt}, {pb + eh}){fill})")
        if kind == "max":
            y = self.line(f"F.max_pool2d({p}, {args}, 0, {tuple(d)})[:, :, :{oh}, :{ow}]")
        else:  # window sums over the explicitly padded input, divided by the cell counts
            taps = " + ".join(f"{p}[:, :, {i * d[0]}:{i * d[0] + (oh - 1) * s[0] + 1}:{s[0]}, "
                              f"{j * d[1]}:{j * d[1] + (ow - 1) * s[1] + 1}:{s[1]}]"
                              for i in range(k[0]) for j in range(k[1]))
            if tuple(d) == (1, 1):
                taps = f"F.avg_pool2d({p}, {args}, 0, False, True, 1)[:, :, :{oh}, :{ow}]"
            counts = window_counts(x.type.shape[1:3], a)[None, None]
            y = self.line(f"({taps}) / {self.buffer(counts)}")
        self.define(node.output, y, NCHW)

    def op_max_pool2d(self, node):
        self._pool(node, "max")

    def op_avg_pool2d(self, node):
        self._pool(node, "avg")

    def _global(self, node, fn):
        keep = bool(node.attrs["keepdims"])
        y = self.line(f"{self.tensor(node.inputs[0], NCHW)}.{fn}((2, 3), keepdim={keep})")
        self.define(node.output, y, NCHW if keep else PLAIN)

    def op_global_avg_pool(self, node):
        self._global(node, "mean")

    def op_global_max_pool(self, node):
        self._global(node, "amax")

    # ---- data movement ---------------------------------------------------------------------
    def op_flatten(self, node):
        x, axis = node.inputs[0], node.attrs["axis"]
        if (x.type.rank == 4 and axis == 1 and self.layout_of(x) == NCHW
                and self.dense_readers_only(node.output)):
            y = self.line(f"{self.tensor(x, NCHW)}.flatten(1)")
            self.flat_nchw[id(node.output)] = tuple(x.type.shape[1:])
        else:
            trailing = x.type.shape[axis:]
            if axis == 0:
                y = self.line(f"{self.tensor(x, PLAIN)}.reshape(1, -1)")
            elif all(isinstance(d, int) for d in trailing):
                y = self.line(f"{self.tensor(x, PLAIN)}.reshape(-1, "
                              f"{int(np.prod(trailing, dtype=np.int64))})")
            else:
                raise UnsupportedError(f"torch peer: {node.describe()} flattens symbolic dims")
        self.define(node.output, y, PLAIN)

    def op_reshape(self, node):
        x = self.tensor(node.inputs[0], PLAIN)
        dims = ", ".join(f"{x}.shape[{i}]" if d == 0 else str(d)
                         for i, d in enumerate(node.attrs["shape"]))
        self.define(node.output, self.line(f"{x}.reshape(({dims},))"), PLAIN)

    def op_transpose(self, node):
        perm = tuple(node.attrs["perm"])
        self.define(node.output, self.line(f"{self.tensor(node.inputs[0], PLAIN)}"
                                           f".permute{perm}"), PLAIN)

    def op_concat(self, node):
        axis = node.attrs["axis"] % node.output.type.rank
        layout = self.result_layout(node)
        if layout == NCHW:
            axis = NCHW_AXIS[axis]
        ins = ", ".join(self.operand(v, layout) for v in node.inputs)
        self.define(node.output, self.line(f"torch.cat(({ins},), {axis})"), layout)

    def op_softmax(self, node):
        x = node.inputs[0]
        axis = node.attrs["axis"] % x.type.rank
        layout = self.layout_of(x) if x.type.rank == 4 else PLAIN
        if layout == NCHW:
            axis = NCHW_AXIS[axis]
        self.define(node.output, self.line(f"torch.softmax({self.tensor(x, layout)}, {axis})"),
                    layout)

    def op_pad(self, node):
        x = node.inputs[0]
        pads = list(node.attrs["pads"])
        layout = self.layout_of(x) if x.type.rank == 4 else PLAIN
        if layout == NCHW:
            pads = [pads[i] for i in TO_NCHW]
        flat = tuple(p for pair in reversed(pads) for p in pair)
        value = float(node.attrs["value"])
        self.define(node.output, self.line(f"F.pad({self.tensor(x, layout)}, {flat}, "
                                           f"value={_num(value)})"), layout)
