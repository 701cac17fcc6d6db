"""``cnnc.explain(model)``: each layer's arithmetic, with the model's own numbers filled in.

For every window op (convolution, pooling) it shows the output-size formula
``w' = ⌊(w − f + p_before + p_after)/s⌋ + 1`` evaluated on both axes, the padding on each side
(TF/Keras SAME puts the odd extra cell at the bottom/right), the cumulative receptive field
(``r' = r + (f − 1)·j``, ``j' = j·s`` with ``j`` the jump between neighbouring outputs in input
pixels), the parameters and the FLOPs per sample; for each BatchNorm, the per-channel
``scale = γ/√(var + ε)`` and ``shift = β − mean·scale`` that the compiler folds into the
preceding convolution (a few channels shown).

    cnnc.explain(model)            # prints and returns the text; also model.explain()

The module itself is callable, so ``cnnc.explain(model)`` works whether or not
``cnnc.explain`` was imported as a module first.
"""

from __future__ import annotations

import sys
import types

import numpy as np

from cnnc.ops.padding import effective_kernel, resolve_pads, same_pads

WINDOW_OPS = ("conv2d", "conv2d_fused", "max_pool2d", "avg_pool2d")
WHOLE_INPUT = ("dense", "dense_fused", "matmul", "global_avg_pool", "global_max_pool")


def _n(v) -> str:
    return f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)


def _vec(a, k: int) -> str:
    a = np.asarray(a, np.float64).ravel()
    head = ", ".join(f"{x:.4g}" for x in a[:k])
    return f"[{head}{', …' if a.size > k else ''}]"


def size_formula(axis: str, n: int, k: int, s: int, d: int, before: int, after: int,
                 ceil_mode: bool = False) -> str:
    """``w' = ⌊(w − f + p_left + p_right)/s⌋ + 1 = ⌊(32 − 3 + 1 + 1)/1⌋ + 1 = 31 + 1 = 32``."""
    from cnnc.ops.padding import out_size
    sym = {"H": ("h", "p_top", "p_bottom"), "W": ("w", "p_left", "p_right")}[axis]
    f = effective_kernel(k, d)
    f_txt = f"{f}" if d == 1 else f"{f} (f = (k − 1)·d + 1 = ({k} − 1)·{d} + 1)"
    span = n - f + before + after
    out = out_size(n, k, s, d, before, after, ceil_mode)
    br = ("⌈", "⌉") if ceil_mode else ("⌊", "⌋")
    text = (f"{sym[0]}' = {br[0]}({sym[0]} − f + {sym[1]} + {sym[2]})/s{br[1]} + 1 = "
            f"{br[0]}({n} − {f} + {before} + {after})/{s}{br[1]} + 1")
    q = out - 1
    if s == 1:
        text += f" = {span} + 1 = {out}"
    elif span % s == 0:
        text += f" = {span}/{s} + 1 = {q} + 1 = {out}"
    else:
        text += f" = {br[0]}{span}/{s}{br[1]} + 1 = {q} + 1 = {out}"
    if d != 1:
        text += f"   [f = {f_txt}]"
    return text


def padding_text(padding, axis: str, n: int, k: int, s: int, d: int) -> str:
    """How the padding of one axis is chosen, e.g. SAME's total and its split."""
    side = {"H": ("top", "bottom"), "W": ("left", "right")}[axis]
    if padding == "valid":
        return f"VALID: no padding ({side[0]} 0, {side[1]} 0)"
    if padding == "same":
        before, after = same_pads(n, k, s, d)
        f = effective_kernel(k, d)
        total = before + after
        text = (f"SAME: total = max((⌈{n}/{s}⌉ − 1)·{s} + {f} − {n}, 0) = {total} → "
                f"{side[0]} {before}, {side[1]} {after}")
        if before != after:
            text += f" (odd total: TF puts the extra cell at the {side[1]})"
        return text
    (pt, pb), (pl, pr) = padding
    b, a = (pt, pb) if axis == "H" else (pl, pr)
    return f"explicit: {side[0]} {b}, {side[1]} {a}"


class _Field:
    """Receptive field and jump of a value along H and W (None: the whole input)."""

    def __init__(self, r=(1, 1), j=(1, 1), whole=False):
        self.r, self.j, self.whole = tuple(r), tuple(j), whole

    def text(self) -> str:
        if self.whole:
            return "the entire input"
        return f"{self.r[0]}×{self.r[1]} input pixels (jump {self.j[0]}×{self.j[1]})"


def _merge(fields) -> _Field:
    fields = [f for f in fields if f is not None]
    if not fields:
        return _Field()
    if any(f.whole for f in fields):
        return _Field(whole=True)
    return _Field(tuple(max(f.r[i] for f in fields) for i in range(2)),
                  tuple(max(f.j[i] for f in fields) for i in range(2)))


def _window(node):
    a = node.attrs
    if node.op.startswith("conv"):
        kh, kw = node.inputs[1].shape[:2]
    else:
        kh, kw = a["pool_size"]
    return (kh, kw), tuple(a["strides"]), tuple(a["dilation"]), a["padding"]


def _params_text(node) -> str:
    from cnnc.profile import node_params
    total = node_params(node)
    if node.op in ("conv2d", "conv2d_fused"):
        kh, kw, cig, cout = node.inputs[1].shape
        bias = f" + {cout}" if len(node.inputs) > 2 else ""
        return f"params {kh}·{kw}·{cig}·{cout}{bias} = {_n(total)}"
    if node.op in ("dense", "dense_fused"):
        cin, cout = node.inputs[1].shape
        bias = f" + {cout}" if len(node.inputs) > 2 else ""
        return f"params {cin}·{cout}{bias} = {_n(total)}"
    if node.op == "batch_norm":
        c = node.inputs[1].shape[0]
        return f"params 4·{c} = {_n(total)} (γ, β, moving mean, moving variance)"
    return f"params {_n(total)}"


def _flops_text(node, bindings) -> str:
    from cnnc.profile import node_flops
    flops = node_flops(node, bindings)
    if node.op in ("conv2d", "conv2d_fused"):
        _, oh, ow, cout = node.output.type.concrete(bindings)
        kh, kw, cig, _ = node.inputs[1].shape
        macs = 2 * oh * ow * cout * kh * kw * cig
        extra = flops - macs
        tail = f" + {_n(extra)} (bias/epilogue)" if extra else ""
        return (f"FLOPs/sample 2·{oh}·{ow}·{cout}·({kh}·{kw}·{cig}){tail} = {_n(flops)}")
    if node.op in ("dense", "dense_fused"):
        cin, cout = node.inputs[1].shape
        extra = flops - 2 * cin * cout
        tail = f" + {_n(extra)} (bias/epilogue)" if extra else ""
        return f"FLOPs/sample 2·{cin}·{cout}{tail} = {_n(flops)}"
    return f"FLOPs/sample {_n(flops)}"


def _bn_folding(graph):
    """layer name -> (scale, shift, where it went) for every batch_norm of ``graph``."""
    from cnnc.ops.norm import bn_scale_shift
    from cnnc.passes import optimize
    opt = graph.copy()
    report = optimize(opt, 2)
    out = {}
    for node in graph.ops:
        if node.op != "batch_norm" or not all(v.is_constant for v in node.inputs[1:]):
            continue
        scale, shift = bn_scale_shift(*(v.data for v in node.inputs[1:]),
                                      node.attrs["epsilon"])
        why = [msg for p, where, msg in report.remarks
               if p == "fold_batchnorm" and node.layer and f"'{node.layer}'" in where]
        prod = node.inputs[0].producer
        if why:
            where = f"not folded into a convolution ({why[0]}); it runs as x·scale + shift"
        elif prod is not None and prod.op in ("conv2d", "dense", "conv2d_fused",
                                              "dense_fused"):
            where = (f"folded into {prod.op} {prod.layer!r}: w' = w·scale (per output "
                     f"channel), b' = b·scale + shift")
        else:
            where = "folded away by the pass pipeline"
        out[id(node)] = (scale, shift, where)
    return out


def explain(model, channels: int = 4, print_fn=print) -> str:
    """Explain ``model`` (a model, graph or ``.onnx``-loaded graph) layer by layer; the text
    is printed with ``print_fn`` (None: silent) and returned."""
    from cnnc.compile import to_graph
    from cnnc.profile import node_flops, node_params
    from cnnc.viz import shape_text
    graph = to_graph(model)
    bindings = {d: 1 for v in graph.inputs for d in v.type.shape if isinstance(d, str)}
    bn = _bn_folding(graph)
    field: dict[int, _Field] = {id(v): _Field() for v in graph.inputs}
    lines = [f"explain {graph.name!r}: " + ", ".join(f"input {v.name} {shape_text(v.shape)}"
                                                   for v in graph.inputs),
             "  (N is the batch; FLOPs count a multiply-add as 2, per sample)"]
    total_params = total_flops = 0
    for i, node in enumerate(graph.ops, 1):
        ins = [field.get(id(v)) for v in node.inputs if not v.is_constant]
        f_in = _merge(ins)
        head = f"[{i}] {node.layer or '%' + node.name} ({node.op})"
        body = []
        if node.op in WINDOW_OPS:
            (kh, kw), (sh, sw), (dh, dw), padding = _window(node)
            _, h, w, cin = node.inputs[0].shape
            pads = resolve_pads(padding, (h, w), (kh, kw), (sh, sw), (dh, dw))
            what = (f"{node.inputs[1].shape[3]} filters {kh}×{kw}" if node.op.startswith("conv")
                    else f"window {kh}×{kw}")
            head += f": {what}, stride {sh}×{sw}" + (f", dilation {dh}×{dw}"
                                                      if (dh, dw) != (1, 1) else "")
            ceil = bool(node.attrs.get("ceil_mode", False))
            for axis, n, k, s, d, (b, a) in (("H", h, kh, sh, dh, pads[0]),
                                             ("W", w, kw, sw, dw, pads[1])):
                body.append(f"padding {axis}: {padding_text(padding, axis, n, k, s, d)}")
                body.append(size_formula(axis, n, k, s, d, b, a, ceil))
            f_out = _Field((f_in.r[0] + (effective_kernel(kh, dh) - 1) * f_in.j[0],
                            f_in.r[1] + (effective_kernel(kw, dw) - 1) * f_in.j[1]),
                           (f_in.j[0] * sh, f_in.j[1] * sw), f_in.whole)
            if not f_in.whole:
                body.append(f"receptive field r' = r + (f − 1)·j: "
                            f"{f_in.r[0]} + ({effective_kernel(kh, dh)} − 1)·{f_in.j[0]} = "
                            f"{f_out.r[0]} (H), {f_in.r[1]} + ({effective_kernel(kw, dw)} − 1)"
                            f"·{f_in.j[1]} = {f_out.r[1]} (W); jump j' = j·s = "
                            f"{f_out.j[0]}×{f_out.j[1]}")
        elif node.op in WHOLE_INPUT:
            f_out = _Field(whole=True)
        else:
            f_out = f_in
        field[id(node.output)] = f_out
        if node.op == "batch_norm" and id(node) in bn:
            scale, shift, where = bn[id(node)]
            eps = node.attrs["epsilon"]
            body.append(f"scale = γ/√(var + ε), shift = β − mean·scale (ε = {eps:g})")
            body.append(f"channels 0..{min(channels, scale.size) - 1}: scale "
                        f"{_vec(scale, channels)}, shift {_vec(shift, channels)}")
            body.append(where)
        p, fl = node_params(node), node_flops(node, bindings)
        total_params += p
        total_flops += fl
        body.append(f"output {shape_text(node.output.shape)}; receptive field {f_out.text()}")
        body.append(f"{_params_text(node)}; {_flops_text(node, bindings)}")
        lines.append(head)
        lines += [f"    {b}" for b in body]
    lines.append(f"total: {_n(total_params)} params, {_n(total_flops)} FLOPs per sample")
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text


class _CallableModule(types.ModuleType):
    """Lets ``cnnc.explain(model)`` call :func:`explain` on the module object."""

    def __call__(self, *args, **kwargs):
        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
