"""Numba CPU kernels of the data-movement ops: slice (a strided copy), take (a
gather with constant indices), tile, broadcast_to and resize (nearest / bilinear over H, W).

``lower(lowerer, node, ins, out)`` adds a node's kernel to a :class:`lower._Lowerer`; every
kernel writes a preallocated C-contiguous float32 ``out`` and is parallel over output
elements (or output rows). Index tables (take's indices, resize's per-axis source indices and
weights) are float32 weight arrays computed at compile time (indices are exact in float32 below
2**24).
"""

from __future__ import annotations

import numpy as np

from cnnc.backends.numba_cpu.kernels import Src, _strides, _unravel, elementwise
from cnnc.errors import UnsupportedError
from cnnc.ops.resample import resize_tables
from cnnc.ops.shape import slice_geometry

OPS = frozenset({"slice", "take", "tile", "broadcast_to", "resize"})


def _dims(shape, arr: str = "out"):
    return [d if isinstance(d, int) else f"{arr}.shape[{k}]" for k, d in enumerate(shape)]


def _term(i: str, st) -> str:
    return i if st == 1 else f"{i} * {st}"


def slice_kernel(name: str, in_shape, out_shape, geo) -> str:
    """``out[i] = x[first + i * step]`` per dim (a negative step walks backwards)."""
    st = _strides(in_shape)
    s = Src()(0, f"def {name}(x, out):")
    s(1, f'"""slice {list(in_shape)} -> {list(out_shape)}: (first, step, length) {geo}"""')
    s(1, "xf = x.reshape(-1)", "of = out.reshape(-1)")
    s(1, "for i in prange(of.size):")
    idx = _unravel(s, 2, "i", _dims(out_shape))
    terms = []
    for k, ((first, step, _), stride) in enumerate(zip(geo, st)):
        j = idx[k] if step == 1 else f"{idx[k]} * {step}"
        j = f"({first} + {j})" if first else j
        terms.append(_term(j, stride))
    s(2, f"of[i] = xf[{' + '.join(terms) or '0'}]")
    return s.text()


def _take_dims(in_shape, axis, n_idx):
    inner = int(np.prod([d for d in in_shape[axis + 1:]], dtype=np.int64))
    return in_shape[axis], n_idx, inner


def take_kernel(name: str, in_shape, axis: int, n_idx: int) -> str:
    """``out[o, j, r] = x[o, idx[j], r]`` over (outer, index, inner) views."""
    d, m, inner = _take_dims(in_shape, axis, n_idx)
    s = Src()(0, f"def {name}(x, idx, out):")
    s(1, f'"""take {n_idx} indices along axis {axis} of {list(in_shape)}"""')
    s(1, "xf = x.reshape(-1)", "of = out.reshape(-1)")
    s(1, "for i in prange(of.size):")
    s(2, f"r = i % {inner}", f"q = i // {inner}", f"j = q % {m}", f"o = q // {m}")
    s(2, f"of[i] = xf[(o * {d} + np.int64(idx[j])) * {inner} + r]")
    return s.text()


def tile_kernel(name: str, in_shape, out_shape) -> str:
    st = _strides(in_shape)
    s = Src()(0, f"def {name}(x, out):")
    s(1, f'"""tile {list(in_shape)} -> {list(out_shape)}"""')
    s(1, "xf = x.reshape(-1)", "of = out.reshape(-1)")
    s(1, "for i in prange(of.size):")
    idx = _unravel(s, 2, "i", _dims(out_shape))
    terms = []
    for k, (d, o, stride) in enumerate(zip(in_shape, out_shape, st)):
        j = idx[k] if d == o else f"({idx[k]} % {d})"
        terms.append(_term(j, stride))
    s(2, f"of[i] = xf[{' + '.join(terms) or '0'}]")
    return s.text()


def resize_kernel(name: str, in_shape, out_shape, mode: str) -> str:
    """Parallel over (image, output row); ``th``/``tw`` rows are (i0, i1, w1)."""
    _, h, w, c = in_shape
    _, oh, ow, _ = out_shape
    s = Src()(0, f"def {name}(x, th, tw, out):")
    s(1, f'"""resize {mode} {h}x{w} -> {oh}x{ow} over {c} channels"""')
    s(1, f"for t in prange(x.shape[0] * {oh}):")
    s(2, f"b = t // {oh}", f"i = t % {oh}", "y0 = np.int64(th[i, 0])")
    if mode == "linear":
        s(2, "y1 = np.int64(th[i, 1])", "wy = th[i, 2]", "uy = np.float32(1.0) - wy")
    s(2, f"for j in range({ow}):")
    s(3, "x0 = np.int64(tw[j, 0])")
    if mode == "nearest":
        s(3, f"for k in range({c}):", "    out[b, i, j, k] = x[b, y0, x0, k]")
        return s.text()
    s(3, "x1 = np.int64(tw[j, 1])", "wx = tw[j, 2]", "ux = np.float32(1.0) - wx")
    s(3, f"for k in range({c}):")
    s(4, "top = x[b, y0, x0, k] * ux + x[b, y0, x1, k] * wx",
      "bot = x[b, y1, x0, k] * ux + x[b, y1, x1, k] * wx",
      "out[b, i, j, k] = top * uy + bot * wy")
    return s.text()


def table(i0, i1, w1) -> np.ndarray:
    """A resize axis table as one (n, 3) float32 array."""
    return np.stack([i0, i1, w1], axis=1).astype(np.float32)


def lower(lw, node, ins, o) -> None:
    """Add ``node``'s kernel to the lowerer ``lw`` (ins: operand names, o: the output's)."""
    op, a, out = node.op, dict(node.attrs), node.output
    x = node.inputs[0].shape
    K = "__KERNEL__"
    if op == "slice":
        geo = slice_geometry(x, a["starts"], a["ends"], a["axes"], a["steps"])
        lw.add_kernel(node, slice_kernel(K, x, out.shape, geo), [ins[0], o])
    elif op == "take":
        axis = a["axis"] % len(x)
        d = x[axis]
        idx = np.array([i % d for i in a["indices"]] or [0], np.float32)
        lw.add_kernel(node, take_kernel(K, x, axis, len(a["indices"])),
                      [ins[0], lw.weight(idx), o])
    elif op == "tile":
        lw.add_kernel(node, tile_kernel(K, x, out.shape), [ins[0], o])
    elif op == "broadcast_to":
        if any(isinstance(d, str) for d in out.shape[1:]):
            raise UnsupportedError(f"{node.describe()}: a broadcast result {out.type} with a "
                                   f"symbolic dim after the first")
        lw.add_kernel(node, elementwise(K, out.shape, [x], ["v = x0"]), [ins[0], o])
    elif op == "resize":
        th, tw = (table(*t) for t in resize_tables(x[1:3], a))
        lw.add_kernel(node, resize_kernel(K, x, out.shape, a["mode"]),
                      [ins[0], lw.weight(th), lw.weight(tw), o])
    else:
        raise UnsupportedError(f"{node.describe()}: op {op!r} has no Numba CPU kernel")
