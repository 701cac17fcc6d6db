"""Source generators for the non-convolution kernels of the Numba CUDA backend.

Each generator returns the source of ``name(total, <operands...>, out)`` over flat float32
device arrays. ``total`` is the number of work items (output elements; rows for softmax),
the only size known at run time (it scales with the batch); everything else is a literal.
Kernels loop grid-stride (``for t in range(cuda.grid(1), total, cuda.gridsize(1))``) with
consecutive threads on consecutive output elements: NHWC puts channels innermost, so every
warp reads and writes contiguous memory. Index arithmetic helpers are shared with the CPU
backend's generators.
"""

from __future__ import annotations

import numpy as np

from cnnc.backends.numba_cpu.kernels import Src, _operand_index, _strides, _unravel
from cnnc.backends.numba_cpu.scalar import f32

def _loop(s: Src, name: str, args: list[str], doc: str) -> None:
    s(0, f"def {name}({', '.join(['total', *args, 'out'])}):")
    s(1, f'"""{doc}"""')
    s(1, "for t in range(cuda.grid(1), total, cuda.gridsize(1)):")


def _dims(shape) -> list:
    """Shape with a symbolic leading dim replaced by a placeholder (never read by _unravel)."""
    return [d if isinstance(d, int) else "None" for d in shape]


def elementwise(name: str, out_shape, operands: list[tuple], body: list[str]) -> str:
    """``v`` from scalars ``x0, x1, ...`` by ``body``; operands broadcast NumPy-style."""
    args = [f"a{k}" for k in range(len(operands))]
    s = Src()
    _loop(s, name, args, f"elementwise {list(out_shape)} <- {[list(o) for o in operands]}")
    idx = None
    reads = []
    for k, shape in enumerate(operands):
        if tuple(shape) == tuple(out_shape):
            reads.append(f"x{k} = a{k}[t]")
        elif len(shape) == 1 and shape[0] == out_shape[-1]:
            reads.append(f"x{k} = a{k}[t % {shape[0]}]")
        elif all(isinstance(d, int) for d in shape) and int(np.prod(shape)) == 1:
            reads.append(f"x{k} = a{k}[0]")
        else:
            if idx is None:
                idx = _unravel(s, 2, "t", _dims(out_shape))
            reads.append(f"x{k} = a{k}[{_operand_index(idx, out_shape, shape)}]")
    s(2, *reads, *body, "out[t] = v")
    return s.text()


def pool(name: str, kind: str, in_shape, out_shape, pool_size, strides, pads, dilation,
         count_include_pad: bool) -> str:
    """max/avg pooling, one thread per output element. Taps in the padding (or past it, in
    ceil mode) are skipped; avg divides by the real cells (or the padded-window cells)."""
    _, h, w, c = in_shape
    _, oh, ow, _ = out_shape
    (kh, kw), (sh, sw), (dh, dw) = pool_size, strides, dilation
    (pt, pb), (pl, pr) = pads
    s = Src()
    _loop(s, name, ["x"], f"{kind} pool {kh}x{kw} /{sh},{sw} d{dh},{dw} pads {pads} on "
                          f"{h}x{w}x{c} -> {oh}x{ow}")
    s(2, f"ch = t % {c}", f"r = t // {c}", f"ow = r % {ow}", f"r = r // {ow}", f"oh = r % {oh}",
      f"img = r // {oh}", f"h0 = oh * {sh} - {pt}", f"w0 = ow * {sw} - {pl}")
    s(2, "acc = np.float32(-np.inf)" if kind == "max" else "acc = float32(0.0)",
      "cnt = 0", "cntp = 0")
    s(2, f"for ki in range({kh}):")
    s(3, f"hi = h0 + ki * {dh}")
    s(3, f"if hi >= {-pt} and hi < {h + pb}:")
    s(4, f"for kj in range({kw}):")
    s(5, f"wi = w0 + kj * {dw}")
    s(5, f"if wi >= {-pl} and wi < {w + pr}:")
    s(6, "cntp += 1")
    s(6, f"if hi >= 0 and hi < {h} and wi >= 0 and wi < {w}:")
    s(7, "cnt += 1", f"xv = x[((img * {h} + hi) * {w} + wi) * {c} + ch]")
    s(7, "acc = max(acc, xv)" if kind == "max" else "acc += xv")
    if kind == "avg":
        s(2, f"acc = acc / float32({'cntp' if count_include_pad else 'cnt'})")
    s(2, "out[t] = acc")
    return s.text()


def global_pool(name: str, kind: str, in_shape) -> str:
    """One thread per (image, channel), a loop over the H*W pixels (coalesced over c)."""
    _, h, w, c = in_shape
    s = Src()
    _loop(s, name, ["x"], f"global {kind} pool over {h}x{w}x{c}")
    s(2, f"ch = t % {c}", f"img = t // {c}", f"base = img * {h * w * c} + ch", "acc = x[base]")
    s(2, f"for p in range(1, {h * w}):")
    s(3, f"acc = max(acc, x[base + p * {c}])" if kind == "max" else f"acc += x[base + p * {c}]")
    if kind == "avg":
        s(2, f"acc = acc * {f32(1.0 / (h * w))}")
    s(2, "out[t] = acc")
    return s.text()


def softmax(name: str, shape, axis: int, threads: int, log: bool = False) -> str:
    """One block of ``threads`` (a power of two) per row: strided max, exp, sum; tree
    reductions in shared memory. With ``log``: log_softmax, (x - max) - log(sum)."""
    length = shape[axis]
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    s = Src()
    s(0, f"def {name}(total, x, out):")
    s(1, f'"""softmax over axis {axis} of {list(shape)}: one block of {threads} threads per '
         f'row"""')
    s(1, f"red = cuda.shared.array({threads}, float32)", "tid = cuda.threadIdx.x")
    s(1, "for row in range(cuda.blockIdx.x, total, cuda.gridDim.x):")
    s(2, f"base = (row // {inner}) * {length * inner} + row % {inner}")
    s(2, "m = np.float32(-np.inf)")
    s(2, f"for l in range(tid, {length}, {threads}):",
      f"    m = max(m, x[base + l * {inner}])")

    def reduce(op: str) -> None:
        half = threads // 2
        s(2, "cuda.syncthreads()")
        while half:
            both = op.format("red[tid]", f"red[tid + {half}]")
            s(2, f"if tid < {half}:", f"    red[tid] = {both}", "cuda.syncthreads()")
            half //= 2
    s(2, "red[tid] = m")
    reduce("max({}, {})")
    s(2, "m = red[0]", "tot = float32(0.0)", "cuda.syncthreads()")
    s(2, f"for l in range(tid, {length}, {threads}):")
    s(3, f"e = np.float32(math.exp(x[base + l * {inner}] - m))", f"out[base + l * {inner}] = e",
      "tot += e")
    s(2, "red[tid] = tot")
    reduce("{} + {}")
    if log:
        s(2, "lt = math.log(np.float64(red[0]))", "cuda.syncthreads()")
        s(2, f"for l in range(tid, {length}, {threads}):",
          f"    out[base + l * {inner}] = np.float32(np.float64(x[base + l * {inner}] - m) - lt)")
        return s.text()
    s(2, "inv = float32(1.0) / red[0]", "cuda.syncthreads()")
    s(2, f"for l in range(tid, {length}, {threads}):", f"    out[base + l * {inner}] *= inv")
    return s.text()


def transpose(name: str, in_shape, out_shape, perm) -> str:
    in_strides = _strides(in_shape)
    s = Src()
    _loop(s, name, ["x"], f"transpose {list(in_shape)} by {list(perm)}")
    idx = _unravel(s, 2, "t", _dims(out_shape))
    src = " + ".join(f"{idx[k]} * {in_strides[p]}" for k, p in enumerate(perm))
    s(2, f"out[t] = x[{src}]")
    return s.text()


def pad(name: str, in_shape, out_shape, pads, value: float) -> str:
    """One thread per output element: the input element or the fill value."""
    in_strides = _strides(in_shape)
    s = Src()
    _loop(s, name, ["x"], f"pad {list(in_shape)} by {[list(p) for p in pads]} with {value}")
    idx = _unravel(s, 2, "t", _dims(out_shape))
    conds, terms = [], []
    for k, ((before, _), d, st) in enumerate(zip(pads, in_shape, in_strides)):
        j = f"({idx[k]} - {before})" if before else idx[k]
        if before or (isinstance(d, int) and out_shape[k] != d):
            conds += [f"{idx[k]} >= {before}"] if before else []
            conds.append(f"{idx[k]} < {before + d}")
        terms.append(j if st == 1 else f"{j} * {st}")
    s(2, f"v = {f32(value)}")
    s(2, f"if {' and '.join(conds) or 'True'}:", f"    v = x[{' + '.join(terms)}]")
    s(2, "out[t] = v")
    return s.text()


def concat(name: str, in_shapes, out_shape, axis: int) -> str:
    """One thread per output element, reading the operand that owns its coordinate on
    ``axis``."""
    args = [f"a{k}" for k in range(len(in_shapes))]
    s = Src()
    _loop(s, name, args, f"concat of {[list(x) for x in in_shapes]} on axis {axis}")
    idx = _unravel(s, 2, "t", _dims(out_shape))
    start = 0
    for k, shape in enumerate(in_shapes):
        stop = start + shape[axis]
        terms = []
        for dim, st in enumerate(_strides(shape)):
            j = f"({idx[dim]} - {start})" if dim == axis and start else idx[dim]
            terms.append(j if st == 1 else f"{j} * {st}")
        kw = "if" if k == 0 else ("elif" if k < len(in_shapes) - 1 else "else")
        s(2, f"{kw} {idx[axis]} < {stop}:" if kw != "else" else "else:",
          f"    out[t] = a{k}[{' + '.join(terms)}]")
        start = stop
    return s.text()


def matmul(name: str, a_shape, b_shape, out_shape) -> str:
    """One thread per output element, a dot product over k; batch dims broadcast."""
    k, nc = a_shape[-1], b_shape[-1]
    s = Src()
    _loop(s, name, ["a", "b"], f"matmul {list(a_shape)} @ {list(b_shape)}")
    idx = _unravel(s, 2, "t", _dims(out_shape))
    batch = list(out_shape[:-2])

    def base(shape) -> str:
        if len(shape) == 2:
            return "0"
        bshape = list(shape[:-2])
        off = _operand_index(idx[:len(batch)], batch, bshape)
        return f"({off}) * {shape[-2] * shape[-1]}"
    i, j = idx[-2], idx[-1]
    s(2, f"ab = {base(a_shape)} + {i} * {k}", f"bb = {base(b_shape)} + {j}",
      "acc = float32(0.0)")
    s(2, f"for kk in range({k}):", f"    acc += a[ab + kk] * b[bb + kk * {nc}]")
    s(2, "out[t] = acc")
    return s.text()


def lrn(name: str, shape, size: int, alpha: float, beta: float, bias: float) -> str:
    """Local response normalisation over the last (channel) axis, one thread per output:
    its window sum of squares in float64."""
    from cnnc.ops.norm import lrn_window
    c = shape[-1]
    lo, hi = lrn_window(c, size)
    s = Src()
    _loop(s, name, ["x"], f"lrn size {size} over {c} channels of {list(shape)}")
    s(2, f"ch = t % {c}", "base = t - ch", "acc = 0.0")
    s(2, f"for j in range(max(0, ch - {lo}), min({c}, ch + {hi + 1})):")
    s(3, "v = np.float64(x[base + j])", "acc += v * v")
    s(2, f"out[t] = np.float32(np.float64(x[t]) / ({bias!r} + {alpha / size!r} * acc) "
         f"** {beta!r})")
    return s.text()


def reduce(name: str, kind: str, in_shape, out_shape, axes) -> str:
    """One thread per output element: a float64 loop over its reduced elements."""
    from cnnc.backends.numba_cpu.kernels import reduce_body, reduce_parts
    kept, red = reduce_parts(in_shape, axes)
    s = Src()
    _loop(s, name, ["x"], f"reduce {kind} over axes {list(axes)} of {list(in_shape)}")
    idx = _unravel(s, 2, "t", _dims([d for d, _ in kept])) if kept else []
    base = " + ".join(f"{ix} * {st}" for ix, (_, st) in zip(idx, kept)) or "0"
    s(2, f"base = {base}")
    reduce_body(s, 2, kind, "x[base + {}]", red)
    s(2, "out[t] = np.float32(res)")
    return s.text()
