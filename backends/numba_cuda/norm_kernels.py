"""Numba CUDA kernels of the normalisation, hardmax, Lp-pool and transposed-conv ops: layer_norm / group_norm, hardmax, lp_pool2d,
global_lp_pool and conv2d_transpose(_fused), over flat float32 device arrays (NHWC).

Same conventions as :mod:`kernels` (``name(total, <operands...>, out)``, grid-stride loops).
layer_norm runs one thread per normalised slice (three passes over it, float64 sums);
hardmax one thread per row; the pools and the transposed conv one thread per output element
(consecutive threads on consecutive channels). The transposed conv gathers: each output
element sums only the taps whose source pixel exists (no zero-inserted input).
"""

from __future__ import annotations

import numpy as np

from cnnc.backends.numba_cpu.kernels import Src, _strides
from cnnc.backends.numba_cpu.norm_kernels import NORM_OPS, _lp_lines, bcast_terms, unravel
from cnnc.backends.numba_cpu.scalar import epilogue_lines

__all__ = ["NORM_OPS", "lower"]


def _loop(s: Src, name: str, args: list[str], doc: str) -> None:
    s(0, f"def {name}({', '.join(['total', *args, 'out'])}):")
    s(1, f'"""{doc}"""')
    s(1, "for t in range(cuda.grid(1), total, cuda.gridsize(1)):")


def layer_norm(name: str, shape, axes, s_shape, b_shape, eps: float) -> str:
    red = [k for k in range(len(shape)) if k in axes]
    kept = [k for k in range(len(shape)) if k not in axes]
    xst = _strides(shape)
    r_total = int(np.prod([shape[k] for k in red], dtype=np.int64))
    s = Src()
    _loop(s, name, ["x", "s", "b"], f"layer_norm over axes {list(axes)} of {list(shape)}: one "
                                    f"thread per slice")
    iname = unravel(s, 2, "t", [shape[k] if isinstance(shape[k], int) else "None"
                                for k in kept], "i")
    s(2, "base = " + (" + ".join(f"{ix} * {xst[k]}" for ix, k in zip(iname, kept)) or "0"),
      f"ks = {bcast_terms(kept, iname, shape, s_shape)}",
      f"kb = {bcast_terms(kept, iname, shape, b_shape)}")

    def loop(body):
        s(2, f"for r in range({r_total}):")
        jn = unravel(s, 3, "r", [shape[k] for k in red], "j")
        s(3, "p = base + " + (" + ".join(f"{j} * {xst[k]}" for j, k in zip(jn, red)) or "0"))
        s(3, *body(jn))
    s(2, "acc = 0.0")
    loop(lambda jn: ["acc += np.float64(x[p])"])
    s(2, f"mean = acc / {float(r_total)!r}", "acc = 0.0")
    loop(lambda jn: ["d = np.float64(x[p]) - mean", "acc += d * d"])
    s(2, f"rstd = 1.0 / math.sqrt(acc / {float(r_total)!r} + {float(eps)!r})")
    loop(lambda jn: [f"out[p] = np.float32((np.float64(x[p]) - mean) * rstd) * "
                     f"s[ks + {bcast_terms(red, jn, shape, s_shape)}] + "
                     f"b[kb + {bcast_terms(red, jn, shape, b_shape)}]"])
    return s.text()


def hardmax(name: str, shape, axis: int) -> str:
    length = shape[axis]
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    s = Src()
    _loop(s, name, ["x"], f"hardmax over axis {axis} of {list(shape)}: one thread per row")
    s(2, f"base = (t // {inner}) * {length * inner} + t % {inner}", "m = x[base]", "am = 0")
    s(2, f"for l in range(1, {length}):")
    s(3, f"v = x[base + l * {inner}]")
    s(3, "if (v > m or v != v) and m == m:", "    m = v", "    am = l")
    s(2, f"for l in range({length}):",
      f"    out[base + l * {inner}] = np.float32(1.0) if l == am else np.float32(0.0)")
    return s.text()


def lp_pool(name: str, in_shape, out_shape, pool_size, strides, pads, dilation, p) -> str:
    _, h, w, c = in_shape
    _, oh, ow, _ = out_shape
    (kh, kw), (sh, sw), (dh, dw) = pool_size, strides, dilation
    (pt, _), (pl, _) = pads
    power, root = _lp_lines(p, "v")
    s = Src()
    _loop(s, name, ["x"], f"lp pool p={p} {kh}x{kw} /{sh},{sw} on {h}x{w}x{c} -> {oh}x{ow}")
    s(2, f"ch = t % {c}", f"r = t // {c}", f"ow = r % {ow}", f"r = r // {ow}", f"oh = r % {oh}",
      f"img = r // {oh}", f"h0 = oh * {sh} - {pt}", f"w0 = ow * {sw} - {pl}", "acc = 0.0")
    s(2, f"for ki in range({kh}):")
    s(3, f"hi = h0 + ki * {dh}")
    s(3, f"if hi >= 0 and hi < {h}:")
    s(4, f"for kj in range({kw}):")
    s(5, f"wi = w0 + kj * {dw}")
    s(5, f"if wi >= 0 and wi < {w}:")
    s(6, f"v = np.float64(x[((img * {h} + hi) * {w} + wi) * {c} + ch])", f"acc += {power}")
    s(2, f"out[t] = np.float32({root.format('acc')})")
    return s.text()


def global_lp_pool(name: str, in_shape, p) -> str:
    _, h, w, c = in_shape
    power, root = _lp_lines(p, "v")
    s = Src()
    _loop(s, name, ["x"], f"global lp pool p={p} over {h}x{w}x{c}")
    s(2, f"ch = t % {c}", f"base = (t // {c}) * {h * w * c} + ch", "acc = 0.0")
    s(2, f"for q in range({h * w}):", f"    v = np.float64(x[base + q * {c}])",
      f"    acc += {power}")
    s(2, f"out[t] = np.float32({root.format('acc')})")
    return s.text()


def conv_transpose(name: str, in_shape, w_shape, out_shape, strides, pads, dilation, groups,
                   epilogue, n_extras: int) -> str:
    _, h, w, cin = in_shape
    kh, kw, _, cog = w_shape
    _, oh, ow, cout = out_shape
    (sh, sw), (dh, dw) = strides, dilation
    (pt, _), (pl, _) = pads
    cig = cin // groups
    extras = [f"e{k}" for k in range(n_extras)]
    s = Src()
    _loop(s, name, ["x", "w", "b", *extras],
          f"conv_transpose {kh}x{kw} x{sh},{sw} d{dh},{dw} groups {groups}: {h}x{w}x{cin} -> "
          f"{oh}x{ow}x{cout}, one thread per output element")
    s(2, f"co = t % {cout}", f"r = t // {cout}", f"ox = r % {ow}", f"r = r // {ow}",
      f"oy = r % {oh}", f"img = r // {oh}")
    s(2, f"cg = co % {cog}", f"ci0 = (co // {cog}) * {cig}" if groups > 1 else "ci0 = 0")
    s(2, "acc = b[co]")
    s(2, f"for ky in range({kh}):")
    s(3, f"ny = oy + {pt} - ky * {dh}")
    s(3, f"iy = ny // {sh}")
    s(3, f"if ny >= 0 and ny % {sh} == 0 and iy < {h}:" if sh > 1 else
      f"if ny >= 0 and iy < {h}:")
    s(4, f"for kx in range({kw}):")
    s(5, f"nx = ox + {pl} - kx * {dw}")
    s(5, f"ix = nx // {sw}")
    s(5, f"if nx >= 0 and nx % {sw} == 0 and ix < {w}:" if sw > 1 else
      f"if nx >= 0 and ix < {w}:")
    s(6, f"xb = ((img * {h} + iy) * {w} + ix) * {cin} + ci0",
      f"wb = ((ky * {kw} + kx) * {cin} + ci0) * {cog} + cg")
    s(6, f"for ci in range({cig}):", f"    acc += x[xb + ci] * w[wb + ci * {cog}]")
    s(2, "v = acc", *epilogue_lines(epilogue, "v", extras, "co", "t"), "out[t] = v")
    return s.text()


def lower(lw, node, ins) -> None:
    """Add ``node``'s launch to the CUDA lowerer ``lw`` (operand refs ``ins``)."""
    from cnnc.backends.lowering import check_residuals
    from cnnc.ops.conv_transpose import deconv_geometry
    from cnnc.ops.fused import num_extras
    from cnnc.ops.norm import group_view, norm_axes
    from cnnc.ops.padding import resolve_pads
    op, a, out = node.op, dict(node.attrs), node.output
    shapes = [v.shape for v in node.inputs]
    K = "__KERNEL__"
    if op in ("layer_norm", "group_norm"):
        if op == "layer_norm":
            shape, axes = shapes[0], norm_axes(len(shapes[0]), a["axes"])
            ss, bs = shapes[1], shapes[2]
        else:
            shape, axes = group_view(shapes[0], a["groups"])
            ss = bs = shape[-2:]
        per = int(np.prod([shape[k] for k in axes], dtype=np.int64))
        lw.launch(node, layer_norm(K, shape, axes, ss, bs, a["epsilon"]), ins, out,
                  per_item=per)
    elif op == "hardmax":
        axis = a["axis"] % len(out.shape)
        lw.launch(node, hardmax(K, out.shape, axis), ins, out, per_item=out.shape[axis])
    elif op == "lp_pool2d":
        pads = resolve_pads(a["padding"], shapes[0][1:3], a["pool_size"], a["strides"],
                            a["dilation"])
        lw.launch(node, lp_pool(K, shapes[0], out.shape, a["pool_size"], a["strides"], pads,
                                a["dilation"], a["p"]), ins, out)
    elif op == "global_lp_pool":
        lw.launch(node, global_lp_pool(K, shapes[0], a["p"]), ins, out)
    else:  # conv2d_transpose(_fused)
        check_residuals(node, "Numba CUDA")
        pads, _, _ = deconv_geometry(shapes[0][1:3], shapes[1][:2], a["strides"], a["padding"],
                                     a["output_padding"], a["dilation"])
        epi = a.get("epilogue", ())
        b = ins[2] if len(ins) > 2 else lw.weight(np.zeros(shapes[1][3] * a["groups"],
                                                           np.float32))
        src = conv_transpose(K, shapes[0], shapes[1], out.shape, a["strides"], pads,
                             a["dilation"], a["groups"], epi, num_extras(epi))
        lw.launch(node, src, [ins[0], ins[1], b, *ins[3:]], out)
