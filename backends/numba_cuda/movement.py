"""Numba CUDA kernels of the data-movement ops (slice, take, tile, broadcast_to,
resize): one thread per output element over flat float32 arrays, grid-stride like every
kernel of :mod:`kernels`; index tables are float32 weights computed at compile time (the same
tables as the CPU backend and the reference)."""

from __future__ import annotations

import numpy as np

from cnnc.backends.numba_cpu.kernels import Src, _strides, _unravel
from cnnc.backends.numba_cpu.movement import table
from cnnc.backends.numba_cuda.kernels import _dims, _loop, elementwise
from cnnc.errors import UnsupportedError
from cnnc.ops.resample import resize_tables
from cnnc.ops.shape import slice_geometry

OPS = frozenset({"slice", "take", "tile", "broadcast_to", "resize"})


def _term(i: str, st) -> str:
    return i if st == 1 else f"{i} * {st}"


def slice_kernel(name: str, in_shape, out_shape, geo) -> str:
    s = Src()
    _loop(s, name, ["x"], f"slice {list(in_shape)} -> {list(out_shape)}: {geo}")
    idx = _unravel(s, 2, "t", _dims(out_shape))
    terms = []
    for k, ((first, step, _), stride) in enumerate(zip(geo, _strides(in_shape))):
        j = idx[k] if step == 1 else f"{idx[k]} * {step}"
        j = f"({first} + {j})" if first else j
        terms.append(_term(j, stride))
    s(2, f"out[t] = x[{' + '.join(terms) or '0'}]")
    return s.text()


def take_kernel(name: str, in_shape, axis: int, n_idx: int) -> str:
    d = in_shape[axis]
    inner = int(np.prod(in_shape[axis + 1:], dtype=np.int64))
    s = Src()
    _loop(s, name, ["x", "idx"], f"take {n_idx} indices along axis {axis} of {list(in_shape)}")
    s(2, f"r = t % {inner}", f"q = t // {inner}", f"j = q % {n_idx}", f"o = q // {n_idx}")
    s(2, f"out[t] = x[(o * {d} + int(idx[j])) * {inner} + r]")
    return s.text()


def tile_kernel(name: str, in_shape, out_shape) -> str:
    s = Src()
    _loop(s, name, ["x"], f"tile {list(in_shape)} -> {list(out_shape)}")
    idx = _unravel(s, 2, "t", _dims(out_shape))
    terms = [_term(idx[k] if d == o else f"({idx[k]} % {d})", st)
             for k, (d, o, st) in enumerate(zip(in_shape, out_shape, _strides(in_shape)))]
    s(2, f"out[t] = x[{' + '.join(terms) or '0'}]")
    return s.text()


def resize_kernel(name: str, in_shape, out_shape, mode: str) -> str:
    """``th``/``tw``: flat (n, 3) tables of (i0, i1, w1) per output row / column."""
    _, h, w, c = in_shape
    _, oh, ow, _ = out_shape
    s = Src()
    _loop(s, name, ["x", "th", "tw"], f"resize {mode} {h}x{w} -> {oh}x{ow} over {c} channels")
    s(2, f"k = t % {c}", f"r = t // {c}", f"j = r % {ow}", f"r = r // {ow}", f"i = r % {oh}",
      f"b = r // {oh}", "y0 = int(th[3 * i])", "x0 = int(tw[3 * j])")
    if mode == "nearest":
        s(2, f"out[t] = x[((b * {h} + y0) * {w} + x0) * {c} + k]")
        return s.text()
    s(2, "y1 = int(th[3 * i + 1])", "wy = th[3 * i + 2]", "x1 = int(tw[3 * j + 1])",
      "wx = tw[3 * j + 2]", "ux = float32(1.0) - wx", "uy = float32(1.0) - wy",
      f"r0 = (b * {h} + y0) * {w}", f"r1 = (b * {h} + y1) * {w}")
    s(2, f"top = x[(r0 + x0) * {c} + k] * ux + x[(r0 + x1) * {c} + k] * wx",
      f"bot = x[(r1 + x0) * {c} + k] * ux + x[(r1 + x1) * {c} + k] * wx",
      "out[t] = top * uy + bot * wy")
    return s.text()


def lower(lw, node, ins) -> None:
    """Launch ``node``'s kernel from the CUDA lowerer ``lw`` (ins: operand Refs)."""
    op, a, out = node.op, dict(node.attrs), node.output
    x = node.inputs[0].shape
    K = "__KERNEL__"
    if op == "slice":
        geo = slice_geometry(x, a["starts"], a["ends"], a["axes"], a["steps"])
        lw.launch(node, slice_kernel(K, x, out.shape, geo), ins, out)
    elif op == "take":
        axis = a["axis"] % len(x)
        idx = np.array([i % x[axis] for i in a["indices"]] or [0], np.float32)
        lw.launch(node, take_kernel(K, x, axis, len(a["indices"]) or 1),
                  [ins[0], lw.weight(idx)], out)
    elif op == "tile":
        lw.launch(node, tile_kernel(K, x, out.shape), ins, out)
    elif op == "broadcast_to":
        if any(isinstance(d, str) for d in out.shape[1:]):
            raise UnsupportedError(f"{node.describe()}: a broadcast result {out.type} with a "
                                   f"symbolic dim after the first")
        lw.launch(node, elementwise(K, out.shape, [x], ["v = x0"]), ins, out)
    elif op == "resize":
        th, tw = (table(*t) for t in resize_tables(x[1:3], a))
        lw.launch(node, resize_kernel(K, x, out.shape, a["mode"]),
                  [ins[0], lw.weight(th), lw.weight(tw)], out)
    else:
        raise UnsupportedError(f"{node.describe()}: op {op!r} has no Numba CUDA kernel")
