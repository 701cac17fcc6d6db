"""Numba CPU kernels of the normalisation, hardmax, Lp-pool and transposed-conv ops: layer_norm / group_norm (one generator for any set of
normalised axes), hardmax, lp_pool2d, global_lp_pool and conv2d_transpose(_fused).

Same conventions as :mod:`kernels`: each generator returns the source of one function
``name(<operands...>, out)``, static sizes are literals, only the batch is read at run time.

conv2d_transpose is computed in gather form: every output pixel sums, for each kernel tap
``(a, b)`` whose source row ``(oy + top - a*dh) / sh`` and column are whole and inside the
input, that input pixel times the tap's (cin, cout) matrix, so no multiply touches a zero that
a zero-insertion (upsample, then convolve) formulation would have inserted.

Where the kernel equals the stride (U-Net decoders' 2x2 / 2), without padding, dilation or
groups, each input pixel writes its own ``sh x sw`` block of the output: the op is a product
of the (pixels, cin) input and a (cin, sh * sw * cout) matrix, computed as the register tiles
of the dense layers (:func:`conv_transpose_tiled`).  Other transposed convs of one group with
constant weights (FCN's and DCGAN's 4x4 / 2, pad 1) compute that product the same way into
the scratch, then sum each output pixel's taps from it (:func:`conv_transpose_col2im`).
"""

from __future__ import annotations

import os

import numpy as np

from cnnc.backends.numba_cpu.kernels import TAIL, UNSIGNED, Src, _strides, dense_tiled, \
    lead_trimmed, pack_dense, register_tile, tail_function
from cnnc.backends.numba_cpu.scalar import epilogue_lines, split_epilogue

#: transposed convs of one group with constant weights run as register tiles (the kernel equal
#: to the stride) or as a tiled product and col2im (CNNC_DECONV_TILES=0: always the gather
#: form, for comparison)
TILED = os.environ.get("CNNC_DECONV_TILES", "1").strip() != "0"
#: the ops this module lowers (lower.py dispatches them here)
NORM_OPS = frozenset({"layer_norm", "group_norm", "hardmax", "lp_pool2d", "global_lp_pool",
                      "conv2d_transpose", "conv2d_transpose_fused"})


def unravel(s: Src, depth: int, flat: str, dims, prefix: str) -> list[str]:
    """``{prefix}0..`` = the multi-index of ``flat`` in ``dims`` (quotients named after the
    prefix, so two unravellings in one kernel never share a variable)."""
    names = [f"{prefix}{k}" for k in range(len(dims))]
    if not dims:
        return names
    rest = flat
    for k in range(len(dims) - 1, 0, -1):
        s(depth, f"{names[k]} = {rest} % {dims[k]}", f"{prefix}q{k} = {rest} // {dims[k]}")
        rest = f"{prefix}q{k}"
    s(depth, f"{names[0]} = {rest}")
    return names


def bcast_terms(axes, names, x_shape, t_shape) -> str:
    """The part of the flat index into ``t`` (broadcast NumPy-style against ``x_shape``) that
    the axes ``axes`` of ``x`` contribute, their indices being ``names``."""
    off = len(x_shape) - len(t_shape)
    strides = _strides(t_shape)
    terms = []
    for k, name in zip(axes, names):
        j = k - off
        if j < 0 or t_shape[j] == 1:
            continue
        terms.append(name if strides[j] == 1 else f"{name} * {strides[j]}")
    return " + ".join(terms) or "0"


#: slices of at most this many elements sum in float32, two slices at a time (their
#: reductions interleaved: one slice's chain of vector adds, its horizontal sum, square root and
#: division leave the units idle; LayerNorm over 96 channels 1.3-1.6x as fast); longer ones sum
#: in float64, one at a time (a float32 lane would add thousands of values)
SHORT = 4096


def _moments(s: Src, depth: int, r_total: int, eps: float, rows) -> None:
    """Lines computing, for each ``(q, elem)`` of ``rows`` (``elem(r)``: the slice's element
    ``r`` as an expression), ``c{q}`` (a float32 shift), ``a{q}`` = rstd and ``k{q}`` =
    (c - mean) * rstd in float32, so that ``(x - c{q}) * a{q} + k{q}`` normalises an element
    ``x`` of that slice.

    One pass over the shifted elements ``d = x - c`` (c: the first element) sums d and d^2:
    the mean is c + sum(d) / n and the variance sum(d^2) / n - (sum(d) / n)^2, which cancels
    only as far as c lies from the mean, by the standard deviations.  Float64 sums (long
    slices) leave ~1e-16 of that.  Float32 sums (short slices, :data:`SHORT`) are redone
    around the mean when c lies more than sqrt(2) deviations from it, so the cancellation never
    magnifies their rounding more than 3 times.  The normalisation then runs in float32 on the
    shifted element, whose scale is the deviation's, not the mean's (a float32 mean of data
    far from 0 would not be)."""
    t = "np.float32" if r_total <= SHORT else "np.float64"
    n = float(r_total)

    def sums(qs, d):
        for q in qs:
            s(d, f"s{q} = {t}(0.0)", f"p{q} = {t}(0.0)")
        s(d, f"for r in range({r_total}):")
        for q, elem in rows:
            if q in qs:
                s(d + 1, f"d{q} = {t}({elem('r')}) - {t}(c{q})", f"s{q} += d{q}",
                  f"p{q} += d{q} * d{q}")
        for q in qs:
            s(d, f"m{q} = np.float64(s{q}) / {n!r}",
              f"v{q} = np.float64(p{q}) / {n!r} - m{q} * m{q}")

    for q, elem in rows:
        s(depth, f"c{q} = {elem('0')}")
    sums([q for q, _ in rows], depth)
    for q, _ in rows:
        if t == "np.float32":
            s(depth, f"if m{q} * m{q} > 2.0 * v{q}:", f"    c{q} = np.float32(c{q} + m{q})")
            sums([q], depth + 1)
        s(depth, f"r{q} = 1.0 / math.sqrt(max(v{q}, 0.0) + {float(eps)!r})",
          f"a{q} = np.float32(r{q})", f"k{q} = np.float32(-m{q} * r{q})")


def layer_norm(name: str, shape, axes, s_shape, b_shape, eps: float) -> str:
    """Per slice of the kept axes (in parallel): its mean and variance (one pass,
    :func:`_moments`), then ``((x - c) * rstd + (c - mean) * rstd) * scale + bias`` in
    float32. The offsets of the normalised elements and their scale/bias indices are
    tabulated once per call."""
    red = [k for k in range(len(shape)) if k in axes]
    kept = [k for k in range(len(shape)) if k not in axes]
    xst = _strides(shape)
    r_total = int(np.prod([shape[k] for k in red], dtype=np.int64))
    s = Src()(0, f"def {name}(x, s, b, out):")
    s(1, f'"""layer_norm over axes {list(axes)} of {list(shape)}, eps {eps!r}"""')
    s(1, "xf = x.reshape(-1)", "of = out.reshape(-1)", "sf = s.reshape(-1)", "bf = b.reshape(-1)")
    trailing = tuple(shape[len(shape) - len(red):])
    if red == list(range(len(shape) - len(red), len(shape))) and all(
            lead_trimmed(t) in ((), trailing) for t in (s_shape, b_shape)):
        # the common case (normalised axes last, scale and bias over them or scalars):
        # contiguous slices read in order, which vectorizes (the tables below do not)
        sidx = "r" if lead_trimmed(s_shape) else "0"
        bidx = "r" if lead_trimmed(b_shape) else "0"
        pair = r_total <= SHORT

        def slices(depth, firsts):
            # (row slices and one accumulator per pass: indexing xf[base + r] with a reused
            # accumulator left the loops of the parallel body scalar, 0.21 vs 0.036 ms a call)
            for q, i in enumerate(firsts):
                s(depth, f"x{q} = xf[({i}) * {r_total}:({i} + 1) * {r_total}]",
                  f"o{q} = of[({i}) * {r_total}:({i} + 1) * {r_total}]")
            rows = [(q, lambda r, q=q: f"x{q}[{r}]") for q in range(len(firsts))]
            _moments(s, depth, r_total, eps, rows)
            s(depth, f"for r in range({r_total}):")
            for q in range(len(firsts)):
                s(depth + 1, f"o{q}[r] = ((x{q}[r] - c{q}) * a{q} + k{q}) * sf[{sidx}] "
                             f"+ bf[{bidx}]")

        s(1, f"n = xf.size // {r_total}")
        if pair:
            s(1, "for i in prange(n // 2):")
            slices(2, ["2 * i", "2 * i + 1"])
            s(1, "if n % 2 == 1:")
            slices(2, ["n - 1"])
        else:
            s(1, "for i in prange(n):")
            slices(2, ["i"])
        return s.text()
    s(1, f"roff = np.empty({r_total}, np.int64)", f"rs = np.empty({r_total}, np.int64)",
      f"rb = np.empty({r_total}, np.int64)")
    s(1, f"for r in range({r_total}):")
    jn = unravel(s, 2, "r", [shape[k] for k in red], "j")
    s(2, "roff[r] = " + (" + ".join(f"{j} * {xst[k]}" for j, k in zip(jn, red)) or "0"),
      f"rs[r] = {bcast_terms(red, jn, shape, s_shape)}",
      f"rb[r] = {bcast_terms(red, jn, shape, b_shape)}")
    s(1, f"for i in prange(xf.size // {r_total}):")
    dims = [shape[k] if isinstance(shape[k], int) else "x.shape[0]" for k in kept]
    iname = unravel(s, 2, "i", dims, "i")
    s(2, "base = " + (" + ".join(f"{ix} * {xst[k]}" for ix, k in zip(iname, kept)) or "0"),
      f"ks = {bcast_terms(kept, iname, shape, s_shape)}",
      f"kb = {bcast_terms(kept, iname, shape, b_shape)}")
    _moments(s, 2, r_total, eps, [(0, lambda r: f"xf[base + roff[{r}]]")])
    s(2, f"for r in range({r_total}):")
    s(3, "p = base + roff[r]",
      "of[p] = ((xf[p] - c0) * a0 + k0) * sf[ks + rs[r]] + bf[kb + rb[r]]")
    return s.text()


def hardmax(name: str, shape, axis: int) -> str:
    """1 at the first maximum along ``axis`` (a NaN counts as the maximum, like np.argmax)."""
    length = shape[axis]
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    s = Src()(0, f"def {name}(x, out):")
    s(1, "xf = x.reshape(-1)", "of = out.reshape(-1)")
    s(1, f"for t in prange(xf.size // {length}):")
    s(2, f"base = (t // {inner}) * {length * inner} + t % {inner}")
    s(2, "m = xf[base]", "am = 0")
    s(2, f"for l in range(1, {length}):")
    s(3, f"v = xf[base + l * {inner}]")
    s(3, "if (v > m or v != v) and m == m:", "    m = v", "    am = l")
    s(2, f"for l in range({length}):",
      f"    of[base + l * {inner}] = np.float32(1.0) if l == am else np.float32(0.0)")
    return s.text()


def _lp_lines(p: float, v: str) -> tuple[str, str]:
    """(the power of the float64 ``v`` that is summed, the root of the sum ``acc``)."""
    if p == 1:
        return f"abs({v})", "{}"
    if p == 2:
        return f"{v} * {v}", "math.sqrt({})"
    return f"abs({v}) ** {float(p)!r}", "{} ** " + repr(1.0 / p)


def lp_pool(name: str, in_shape, out_shape, pool_size, strides, pads, dilation, p) -> str:
    """(sum |x|^p)^(1/p) over each window; taps in the padding add nothing. Parallel over
    (batch, output row); float64 sums per channel."""
    _, h, w, c = in_shape
    _, oh, ow, _ = out_shape
    (kh, kw), (sh, sw), (dh, dw) = pool_size, strides, dilation
    (pt, _), (pl, _) = pads
    power, root = _lp_lines(p, "v")
    s = Src()(0, f"def {name}(x, out):")
    s(1, f'"""lp pool p={p} {kh}x{kw} /{sh},{sw} pads {pads} on {h}x{w}x{c} -> {oh}x{ow}"""')
    s(1, "n_batch = x.shape[0]")
    s(1, f"for t in prange(n_batch * {oh}):")
    s(2, f"n = t // {oh}", f"oi = t % {oh}", f"h0 = oi * {sh} - {pt}",
      f"acc = np.empty({c}, np.float64)")
    s(2, f"for oj in range({ow}):")
    s(3, f"w0 = oj * {sw} - {pl}")
    s(3, f"for c in range({c}):", "    acc[c] = 0.0")
    s(3, f"for ki in range({kh}):")
    s(4, f"hi = h0 + ki * {dh}")
    s(4, f"if hi < 0 or hi >= {h}:", "    continue")
    s(4, f"for kj in range({kw}):")
    s(5, f"wi = w0 + kj * {dw}")
    s(5, f"if wi < 0 or wi >= {w}:", "    continue")
    s(5, f"for c in range({c}):", "    v = np.float64(x[n, hi, wi, c])", f"    acc[c] += {power}")
    s(3, f"for c in range({c}):", f"    out[n, oi, oj, c] = np.float32({root.format('acc[c]')})")
    return s.text()


def global_lp_pool(name: str, in_shape, p) -> str:
    _, h, w, c = in_shape
    power, root = _lp_lines(p, "v")
    s = Src()(0, f"def {name}(x, out):")
    s(1, "n_batch = x.shape[0]", f"x3 = x.reshape(n_batch, {h * w}, {c})",
      f"o2 = out.reshape(n_batch, {c})")
    s(1, f"for t in prange(n_batch * {c}):")
    s(2, f"n = t // {c}", f"c = t % {c}", "acc = 0.0")
    s(2, f"for q in range({h * w}):", "    v = np.float64(x3[n, q, c])", f"    acc += {power}")
    s(2, f"o2[n, c] = np.float32({root.format('acc')})")
    return s.text()


def conv_transpose(name: str, in_shape, w_shape, out_shape, strides, pads, dilation, groups,
                   epilogue, n_extras: int) -> str:
    """Gather-form transposed convolution, parallel over (batch, output row): per output
    pixel a float32 accumulator row over the output channels (vectorised over them, the
    kernel being (kh, kw, cin, cout/groups)) receives only the taps that hit it."""
    cin, (kh, kw, _, cog) = in_shape[3], w_shape
    cig = cin // groups
    if groups == 1:
        taps = [f"for ci in range({cin}):", "    xv = x[n, iy, ix, ci]",
                f"    for co in range({cog}):", "        acc[co] += xv * w[ky, kx, ci, co]"]
    else:
        taps = [f"for g in range({groups}):",
                f"    for ci in range({cig}):", f"        xv = x[n, iy, ix, g * {cig} + ci]",
                f"        for co in range({cog}):",
                f"            acc[g * {cog} + co] += xv * w[ky, kx, g * {cig} + ci, co]"]
    return _per_output_pixel(name, ["x", "w"], f"groups {groups}", in_shape, (kh, kw),
                             out_shape, strides, pads, dilation, epilogue, n_extras, taps)


def _per_output_pixel(name, operands, what, in_shape, k, out_shape, strides, pads, dilation,
                      epilogue, n_extras, taps) -> str:
    """A transposed conv's kernel parallel over (batch, output row): per output pixel a
    float32 row over the output channels starts at the bias, receives ``taps`` (statements
    with ``n, iy, ix, ky, kx`` set) for each kernel tap whose source pixel is whole and inside
    the input, then goes through the epilogue to ``out``."""
    _, h, w, _ = in_shape
    (kh, kw), (_, oh, ow, cout) = k, out_shape
    (sh, sw), (dh, dw) = strides, dilation
    (pt, _), (pl, _) = pads
    extras = [f"e{k}" for k in range(n_extras)]
    s = Src()(0, f"def {name}({', '.join([*operands, 'b', *extras, 'out'])}):")
    s(1, f'"""{"col2im of a " if operands == ["cols"] else ""}conv_transpose {kh}x{kw} '
         f'x{sh},{sw} d{dh},{dw} pads {pads} {what}: {in_shape[1]}x{in_shape[2]}x'
         f'{in_shape[3]} -> {oh}x{ow}x{cout}, epilogue {list(epilogue)}"""')
    s(1, "n_batch = out.shape[0]")
    s(1, f"for t in prange(n_batch * {oh}):")
    s(2, f"n = t // {oh}", f"oy = t % {oh}", f"acc = np.empty({cout}, np.float32)")
    s(2, f"for ox in range({ow}):")
    s(3, f"for co in range({cout}):", "    acc[co] = b[co]")
    s(3, f"for ky in range({kh}):")
    s(4, f"ny = oy + {pt} - ky * {dh}")
    s(4, "if ny < 0:" if sh == 1 else f"if ny < 0 or ny % {sh} != 0:", "    continue")
    s(4, "iy = ny" if sh == 1 else f"iy = ny // {sh}")
    s(4, f"if iy >= {h}:", "    continue")
    s(4, f"for kx in range({kw}):")
    s(5, f"nx = ox + {pl} - kx * {dw}")
    s(5, "if nx < 0:" if sw == 1 else f"if nx < 0 or nx % {sw} != 0:", "    continue")
    s(5, "ix = nx" if sw == 1 else f"ix = nx // {sw}")
    s(5, f"if ix >= {w}:", "    continue")
    s(5, *taps)
    s(3, f"for co in range({cout}):")
    s(4, "v = acc[co]", *epilogue_lines(epilogue, "v", extras, "co", "n, oy, ox, co", True),
      "out[n, oy, ox, co] = v")
    return s.text()


def tiles_apply(in_shape, w_shape, out_shape, strides, pads, dilation, groups, cb) -> bool:
    """Whether :func:`conv_transpose_tiled` computes this transposed conv: kernel = stride,
    no padding (nor output padding), dilation 1, one group, and a channel block ``cb``
    that divides the output channels (each block then lies in one kernel tap)."""
    kh, kw, _, cout = w_shape
    return (groups == 1 and tuple(dilation) == (1, 1) and (kh, kw) == tuple(strides)
            and all(v == 0 for pair in pads for v in pair) and cout % cb == 0
            and tuple(out_shape[1:3]) == (in_shape[1] * kh, in_shape[2] * kw))


def pack_tiled(w_hwio: np.ndarray, cb: int) -> np.ndarray:
    """(kh, kw, cin, cout) weights as :func:`conv_transpose_tiled` and the product before
    :func:`conv_transpose_col2im` read them: the (cin, kh * kw * cout) matrix, columns in
    (tap row, tap column, channel) order, packed by
    :func:`~cnnc.backends.numba_cpu.kernels.pack_dense`."""
    kh, kw, cin, cout = w_hwio.shape
    return pack_dense(np.asarray(w_hwio, np.float32).transpose(2, 0, 1, 3).reshape(cin, -1), cb)


def conv_transpose_tiled(name: str, in_shape, w_shape, epilogue, n_extras: int, cb: int,
                         p: int) -> str:
    """A transposed conv whose kernel equals its stride (:func:`tiles_apply`) as register
    tiles of ``p`` input pixels x ``cb`` columns of the (cin, kh * kw * cout) product, like
    :func:`~cnnc.backends.numba_cpu.kernels.dense_tiled`; each block of ``cb`` columns is
    one tap (ky, kx) and ``cb`` channels, stored at output pixel (iy * kh + ky, ix * kw + kx).
    Compiled without the loop vectorizer; heavy activations go to the tail function."""
    _, h, w, cin = in_shape
    kh, kw, _, cout = w_shape
    oh, ow = h * kh, w * kw
    ncb = kh * kw * cout // cb
    extras = [f"e{k}" for k in range(n_extras)]
    head, tail = split_epilogue(epilogue, p * cb)
    s = Src()(0, f"def {name}({', '.join(['x', 'wp', 'b', *extras, 'out'])}):")
    s(1, f'"""conv_transpose {kh}x{kw} / {kh},{kw}: {h}x{w}x{cin} -> {oh}x{ow}x{cout}, tile '
         f'{p} px x {cb} columns, epilogue {list(epilogue)}"""')
    s(1, f"xf = x.reshape(-1, {cin})", "n = xf.shape[0]", f"ntile = (n + {p - 1}) // {p}")
    if tail:
        s(1, "of = out.reshape(-1)")
    s(1, f"for q in prange(ntile * {ncb}):")
    s(2, f"cb = q % {ncb}", f"t0 = (q // {ncb}) * {p}", "last = n - 1 - t0",
         f"tap = (cb * {cb}) // {cout}", f"ky = tap // {kw}", f"kx = tap % {kw}",
         f"c0 = (cb * {cb}) % {cout}")
    register_tile(s, 2, p, cb, "k", cin, "xf[t0 + min(r, last), k]", "wp[cb, k, j]")
    s(2, f"for r in range(min({p}, n - t0)):")
    s(3, "t = t0 + r", f"nb = t // {h * w}", f"oy = ((t // {w}) % {h}) * {kh} + ky",
         f"ox = (t % {w}) * {kw} + kx")
    s(3, f"for j in range({cb}):")
    s(4, f"c = {UNSIGNED}(c0 + j)", "v = acc[r, j] + b[c]",
      *epilogue_lines(head, "v", extras, "c", "nb, oy, ox, c"), "out[nb, oy, ox, c] = v")
    if not tail:
        return s.text()
    s(3, f"{name}{TAIL}(of, ((nb * {oh} + oy) * {ow} + ox) * {cout} + c0, np.int64(1), "
         f"np.int64(0), np.int64({cb}))")
    return s.text() + "\n\n" + tail_function(name, tail)


def conv_transpose_col2im(name: str, in_shape, w_shape, out_shape, strides, pads, dilation,
                          epilogue, n_extras: int) -> str:
    """The second half of a transposed conv computed as a product: ``cols`` holds, per input
    pixel, its (kh * kw * cout) products with every tap (a dense-tile product); each output
    pixel sums the cout-vectors of the taps that reach it (the gather form's index rules),
    adds the bias and applies the epilogue.  Vectorized over the output channels."""
    _, h, w, _ = in_shape
    kh, kw, _, cout = w_shape
    # an unsigned column: no wraparound select per value, which would keep this unvectorized
    taps = [f"row = (n * {h} + iy) * {w} + ix", f"base = (ky * {kw} + kx) * {cout}",
            f"for co in range({cout}):", f"    acc[co] += cols[row, {UNSIGNED}(base + co)]"]
    return _per_output_pixel(name, ["cols"], "groups 1", in_shape, (kh, kw), out_shape,
                             strides, pads, dilation, epilogue, n_extras, taps)


def lower(lw, node, ins: list[str], o: str) -> None:
    """Add ``node``'s kernel to the CPU lowerer ``lw`` (its operands ``ins``, output ``o``)."""
    from cnnc.backends.lowering import check_residuals
    from cnnc.backends.numba_cpu.convgen import dense_tile
    from cnnc.ops.conv_transpose import deconv_geometry
    from cnnc.ops.fused import num_extras
    from cnnc.ops.norm import group_view, norm_axes
    from cnnc.ops.padding import resolve_pads
    op, a, out = node.op, dict(node.attrs), node.output
    shapes = [v.shape for v in node.inputs]
    K = "__KERNEL__"
    if op == "layer_norm":
        axes = norm_axes(len(shapes[0]), a["axes"])
        lw.add_kernel(node, layer_norm(K, shapes[0], axes, shapes[1], shapes[2], a["epsilon"]),
                      ins + [o])
    elif op == "group_norm":
        view, axes = group_view(shapes[0], a["groups"])
        per = view[-2:]  # the (C,) scale and bias seen as (groups, C / groups)
        lw.add_kernel(node, layer_norm(K, view, axes, per, per, a["epsilon"]), ins + [o])
    elif op == "hardmax":
        lw.add_kernel(node, hardmax(K, out.shape, a["axis"] % len(out.shape)), ins + [o])
    elif op == "lp_pool2d":
        pads = resolve_pads(a["padding"], shapes[0][1:3], a["pool_size"], a["strides"],
                            a["dilation"])
        lw.add_kernel(node, lp_pool(K, shapes[0], out.shape, a["pool_size"], a["strides"], pads,
                                    a["dilation"], a["p"]), ins + [o])
    elif op == "global_lp_pool":
        lw.add_kernel(node, global_lp_pool(K, shapes[0], a["p"]), ins + [o])
    else:  # conv2d_transpose(_fused)
        check_residuals(node, "Numba CPU")
        pads, _, _ = deconv_geometry(shapes[0][1:3], shapes[1][:2], a["strides"], a["padding"],
                                     a["output_padding"], a["dilation"])
        epi = a.get("epilogue", ())
        cog = shapes[1][3]
        b = ins[2] if len(ins) > 2 else lw.weight(np.zeros(cog * a["groups"], np.float32))
        wdata = lw.consts.get(id(node.inputs[1]))
        cb, p = dense_tile(shapes[1][0] * shapes[1][1] * cog, lw.cpu)
        if wdata is not None and TILED and tiles_apply(shapes[0], shapes[1], out.shape,
                                                        a["strides"], pads, a["dilation"],
                                                        a["groups"], cb):
            src = conv_transpose_tiled(K, shapes[0], shapes[1], epi, num_extras(epi), cb, p)
            lw.add_kernel(node, src, [ins[0], lw.weight(pack_tiled(wdata, cb)), b, *ins[3:], o],
                          register_tiled=True)
            return
        if wdata is not None and TILED and a["groups"] == 1:
            _lower_col2im(lw, node, ins, o, shapes, pads, b, epi, wdata, cb, p)
            return
        src = conv_transpose(K, shapes[0], shapes[1], out.shape, a["strides"], pads,
                             a["dilation"], a["groups"], epi, num_extras(epi))
        lw.add_kernel(node, src, [ins[0], ins[1], b, *ins[3:], o])


def _lower_col2im(lw, node, ins, o, shapes, pads, b, epi, wdata, cb, p) -> None:
    """A transposed conv as a dense-tile product (``cb`` columns x ``p`` pixels) into the
    scratch, then a col2im kernel."""
    from cnnc.ops.fused import num_extras
    (_, h, w, cin), (kh, kw, _, cout) = shapes[0], shapes[1]
    a, ncols = node.attrs, kh * kw * cout
    lw.scratch_needs.append((node.inputs[0].shape[0], h * w * ncols))
    rows = lw.size_src(node.inputs[0].shape[:1]) + f" * {h * w}"
    # the input as (pixels, cin) and the products as (pixels, kh * kw * cout)
    xv, cols = f"rows{node.output.name}", f"cols{node.output.name}"
    lw.body.append(f"{xv} = view({ins[0]}, 0, ({rows}, {cin}))")
    lw.body.append(f"{cols} = view(scratch, 0, ({rows}, {ncols}))")
    lw.ndim[xv] = lw.ndim[cols] = 2
    lw.add_kernel(node, dense_tiled("__KERNEL__", cin, ncols, (), 0, cb, p),
                  [xv, lw.weight(pack_tiled(wdata, cb)), lw.weight(np.zeros(ncols, np.float32)),
                   cols], register_tiled=True)
    lw.add_kernel(node, conv_transpose_col2im("__KERNEL__", shapes[0], shapes[1],
                                              node.output.shape, a["strides"], pads,
                                              a["dilation"], epi, num_extras(epi)),
                  [cols, b, *ins[3:], o])
