"""Source generators for every non-convolution kernel of the Numba CPU backend.

Each generator returns the source of one function ``name(<operands...>, out)`` that writes
``out`` (preallocated, C-contiguous float32) and returns nothing. Static sizes are baked into
the source as literals so LLVM can unroll and vectorise; only the batch size is read from
the arrays at run time. Kernels are compiled with ``njit(parallel=True, fastmath=FASTMATH)`` (see lower.py).
"""

from __future__ import annotations

import re

import numpy as np

from cnnc.backends.numba_cpu.scalar import epilogue_lines, f32
from cnnc.errors import UnsupportedError


class Src:
    """Indented source lines."""

    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, depth: int, *stmts: str) -> "Src":
        self.lines.extend("    " * depth + s for s in stmts)
        return self

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


#: suffix of the name of the function a register-tiled kernel hands its epilogue's tail to
TAIL = "_tail"
#: suffix of the name of a kernel's tuple of its other helpers, ((name, ranks of its arguments
#: as runtime.kernel_signature takes them[, "tiled" or "noalias"]), ...), compiled by
#: :func:`compile_tail`
HELPERS = "_helpers"


def tail_function(name: str, tail, width: int | None = None) -> str:
    """The function ``{name}_tail(flat, start, rows, stride, width)`` applying the activations
    ``tail`` (see :func:`~cnnc.backends.numba_cpu.scalar.split_epilogue`) in place to
    ``rows`` runs of ``width`` contiguous values, ``stride`` apart from ``start``; a static
    ``width`` given here stands for the argument (a conv's channel block: LLVM then unrolls
    each run into whole vectors, without a remainder loop per run).  It is
    compiled before the kernel that calls it and with the loop vectorizer (see
    :func:`compile_tail`), so its exponentials, divisions and selects run as vectors, where
    the kernel's store loop (no loop vectorizer) would run them one value at a time (LeNet's
    5x5 1->6 conv + tanh at batch 64: 0.31 ms, 0.16 with the tail function)."""
    s = Src()
    s(0, '@njit(fastmath=FASTMATH, error_model="numpy", cache=True)')
    s(0, f"def {name}{TAIL}(flat, start, rows, stride, width):")
    s(1, f'"""epilogue tail {list(tail)}"""')
    s(1, "for r in range(rows):")
    # a slice, not flat[base + i]: an index that may be negative wraps around, a select
    # per element that keeps the loop from vectorizing
    w = "width" if width is None else str(width)
    s(2, f"run = flat[start + r * stride:start + r * stride + {w}]")
    s(2, f"for i in range({w}):")
    s(3, "v = run[i]", *epilogue_lines(tail, "v", [], "", "", vector=True), "run[i] = v")
    return s.text()


def compile_tail(kernel) -> None:
    """Compile the tail function and the other helpers (:data:`HELPERS`) of jitted
    ``kernel`` and have it call each by its symbol (extern.py), so that it neither links nor
    re-optimises a copy of them: those marked ``"tiled"`` (the body of a parallel loop that
    holds a register tile) without the loop vectorizer and with their arrays ``noalias``
    (:func:`no_alias`), those marked ``"noalias"`` (a loop-vectorized parallel body) with
    both, the others with the loop vectorizer as it stands.  Call it before compiling or
    loading ``kernel``."""
    from cnnc.backends.numba_cpu.extern import KernelCall, register
    py = kernel.py_func
    g = py.__globals__
    helpers = list(g.get(py.__name__ + HELPERS, ()))
    if g.get(py.__name__ + TAIL) is not None:
        helpers.insert(0, (py.__name__ + TAIL, (1, -1, -1, -1, -1)))
    for name, ranks, *how in helpers:
        call = g[name]
        if not isinstance(call, KernelCall):
            if how:
                no_alias(call)
            tiled = how == ["tiled"]
            call = g[name] = register(KernelCall(name, call, [ranks], tiled))
        call.ensure()


def no_alias(dispatcher) -> None:
    """Compile ``dispatcher`` as Numba compiles the body of a parallel loop whose arrays it
    finds unaliased: its array arguments ``noalias``.  Without it LLVM's SLP vectorizer
    could not rule out that a register tile's stores hit the arrays it reads, and left the
    tile in scalar registers (20x slower)."""
    def customize(flags):
        flags.noalias = True
        return flags
    dispatcher._compiler._customize_flags = customize


#: suffix of the helper holding a kernel's parallel body (:func:`body_helper`)
BODY = "_tile"
#: ranks of the values a kernel's parallel body may read, by name (-1: an integer);
#: scale<k>/shift<k> are per channel, res<k> an output-shaped residual, res<k>f a flat one
_BODY_RANKS = {"xf": 3, "b": 1, "out": 4, "of": 1, "xhf": 1, "n_batch": -1}


def _body_rank(arg: str, ranks: dict) -> int:
    if re.fullmatch(r"(scale|shift)\d+|res\d+f", arg):
        return 1
    return 4 if re.fullmatch(r"res\d+", arg) else {**_BODY_RANKS, **ranks}[arg]


def body_helper(s: Src, name: str, ranks: dict, how: str = "tiled",
                fastmath: str = "FASTMATH") -> str:
    """Move the body of each of the kernel's parallel loops into a helper, ``{name}_tile``
    for the last one and ``{name}_tile<k>`` for the k-th before it (the arrays and integers
    of the kernel it reads, by their ``ranks`` and :data:`_BODY_RANKS`, then the loop
    index), which the loop calls by its symbol; their sources and :data:`HELPERS` entry,
    each marked ``how`` (:func:`compile_tail`: "tiled" for a register tile, "noalias" for a
    loop-vectorized body; either way its arrays noalias as Numba made them in the loop's
    body, whose flat views of the output and residuals it did not count as aliases), jitted
    with the flags ``fastmath`` (an expression of the generated module: the kernels'
    ``FASTMATH`` unless the body needs its sums kept in their written order).
    Compiled on its own, it is not optimised a second time inside the kernel: a blocked
    kernel compiled in 0.81-0.96 s instead of 1.0-1.2 (ResNet-18's strided convs, AVX2
    code), MobileNet-v2's kernels in 28.5-30.7 s instead of 41.8 (its per-pixel depthwise
    convs, AVX-512 code); the outputs bit-identical, the times the same within the noise
    on AVX2 and AVX-512 code.  When ``forward`` set one thread (work under
    ``lower.SERIAL_WORK``) the kernel calls the helper in a plain loop: Numba's parallel
    launch costs about 0.8 us even on one thread (LeNet-5 at batch 1: 30.7 -> 27.9 us for
    its convs and pools)."""
    loops = [k for k, line in enumerate(s.lines) if "prange(" in line]
    params = re.match(r"def \w+\((.*)\):", s.lines[0]).group(1).split(", ")
    sources, helpers = [], []
    for n, i in enumerate(reversed(loops)):
        indent, index, extent = re.match(r"( *)for (\w+) in prange\((.*)\):",
                                         s.lines[i].split("#")[0].rstrip()).groups()
        end = next((k for k in range(i + 1, len(s.lines))
                    if len(s.lines[k]) - len(s.lines[k].lstrip()) <= len(indent)), len(s.lines))
        body = [line[len(indent) + 4:] for line in s.lines[i + 1:end]]
        assigned = [m.group(1) for line in s.lines[1:i]
                    if (m := re.match(r" {4}(\w+) = ", line))]
        used = set(re.findall(r"\w+", "\n".join(body)))
        args = [a for a in dict.fromkeys(params + assigned) if a in used]
        helper = f"{name}{BODY}{n - 1 if n else ''}"
        call = f"{helper}({', '.join(args)}, np.int64({index}))"
        s.lines[i:end] = [
            f"{indent}if get_threads() == 1:   # a loop: a parallel launch costs ~0.8 us",
            f"{indent}    for {index} in range({extent}):", f"{indent}        {call}",
            f"{indent}else:", f"{indent}    for {index} in prange({extent}):",
            f"{indent}        {call}"]
        h = Src()(0, f'@njit(fastmath={fastmath}, error_model="numpy", cache=True)')
        h(0, f"def {helper}({', '.join([*args, index])}):")
        h(1, f'"""the body of {name}\'s parallel loop: step {index}"""')
        h(1, *body)
        sources.insert(0, h.text())
        helpers.insert(0, (helper, (*(_body_rank(a, ranks) for a in args), -1), how))
    return "".join(f"\n\n{text}" for text in sources) + \
        f"\n\n{name}{HELPERS} = {tuple(helpers)!r}\n"


def _strides(shape) -> list:
    """Element strides of a C-contiguous array; dim 0 may be symbolic (its stride is static)."""
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc = acc * d if isinstance(d, int) else None
    return list(reversed(out))


def _unravel(s: Src, depth: int, flat: str, shape, prefix: str = "i") -> list[str]:
    """Emit ``i0..i{r-1}`` = the multi-index of flat index ``flat`` in ``shape``."""
    r = len(shape)
    names = [f"{prefix}{k}" for k in range(r)]
    rest = flat  # each quotient gets a fresh name: a prange index must not be reassigned
    for k in range(r - 1, 0, -1):
        s(depth, f"{names[k]} = {rest} % {shape[k]}", f"q{k}_ = {rest} // {shape[k]}")
        rest = f"q{k}_"
    s(depth, f"{names[0]} = {rest}")
    return names


def _operand_index(idx: list[str], out_shape, shape) -> str:
    """Flat index into an operand of ``shape`` broadcast against ``out_shape``."""
    off = len(out_shape) - len(shape)
    terms = []
    for k, (d, st) in enumerate(zip(shape, _strides(shape))):
        if d == 1 and out_shape[off + k] != 1:
            continue  # broadcast dim
        terms.append(idx[off + k] if st == 1 else f"{idx[off + k]} * {st}")
    return " + ".join(terms) or "0"


def lead_trimmed(shape) -> tuple:
    """``shape`` without its leading 1s."""
    shape = tuple(shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


#: elements per parallel chunk of a long broadcast row (:func:`elementwise`)
ROW_CHUNK = 4096


def elementwise(name: str, out_shape, operands: list[tuple], body: list[str]) -> str:
    """A parallel loop computing ``v`` from scalars ``x0, x1, ...`` by ``body`` lines.

    ``operands`` are the operand shapes; same-shape operands are read by flat index; operands
    that span the last axes of the output (a per-channel vector, a constant broadcast over
    the batch), all the same number of them, by their flat index in a (row, inner) loop nest
    whose sizes come from the arrays (so one kernel serves every shape, e.g. each BatchNorm
    of a DenseNet), rows of :data:`ROW_CHUNK` x 2 values or more in parallel chunks;
    anything else through broadcast index arithmetic."""
    args = [f"a{k}" for k in range(len(operands))]
    s = Src()(0, f"def {name}({', '.join(args + ['out'])}):")
    kinds = []
    for shape in operands:
        trimmed = lead_trimmed(shape)
        if tuple(shape) == tuple(out_shape):
            kinds.append("same")
        elif int(np.prod([d for d in shape if isinstance(d, int)])) == 1 and \
                all(isinstance(d, int) for d in shape):
            kinds.append("scalar")
        elif trimmed and trimmed == tuple(out_shape[len(out_shape) - len(trimmed):]) and \
                all(isinstance(d, int) for d in trimmed):
            kinds.append(("suffix", len(trimmed)))
        else:
            kinds.append("general")
    suffixes = {kind for kind in kinds if isinstance(kind, tuple)}
    if len(suffixes) == 1 and "general" not in kinds:
        first = next(k for k, kind in enumerate(kinds) if isinstance(kind, tuple))
        s(1, f"n_in = a{first}.size", "of = out.reshape(-1, n_in)", "off = out.reshape(-1)")
        reads, flat_reads = [], []
        for k, kind in enumerate(kinds):
            if kind == "same":
                s(1, f"a{k}f = a{k}.reshape(-1, n_in)", f"a{k}ff = a{k}.reshape(-1)")
                reads.append(f"x{k} = a{k}f[r, c]")
                flat_reads.append(f"x{k} = a{k}ff[i]")
            elif isinstance(kind, tuple):
                s(1, f"a{k}f = a{k}.reshape(-1)")
                reads.append(f"x{k} = a{k}f[c]")
                flat_reads.append(f"x{k} = a{k}f[{UNSIGNED}(c)]")
            else:
                s(1, f"x{k} = a{k}.reshape(-1)[0]")
        # rows of at least two chunks (a constant over all but the batch axis: at batch 1,
        # one row) are split into chunks so that every thread gets work, indexed unsigned
        # (with signed indices the chunk loop did not vectorize: 56x56x256 at batch 1 took
        # 0.36-0.59 ms, against 0.084 for one thread and 0.052 so); short rows (a
        # per-channel vector) stay whole, without a division per row
        s(1, f"if n_in >= {2 * ROW_CHUNK}:")
        s(2, f"n_ch = (n_in + {ROW_CHUNK - 1}) // {ROW_CHUNK}")
        s(2, "for rc in prange(of.shape[0] * n_ch):")
        s(3, "r = rc // n_ch", f"c0 = (rc % n_ch) * {ROW_CHUNK}", "base = r * n_in")
        s(3, f"for c in range(c0, min(c0 + {ROW_CHUNK}, n_in)):")
        s(4, f"i = {UNSIGNED}(base + c)", *flat_reads, *body, "off[i] = v")
        s(1, "else:")
        s(2, "for r in prange(of.shape[0]):", "    for c in range(n_in):")
        s(4, *reads, *body, "of[r, c] = v")
        return s.text()
    kinds = ["general" if isinstance(kind, tuple) else kind for kind in kinds]
    s(1, "of = out.reshape(-1)")
    reads = []
    for k, (shape, kind) in enumerate(zip(operands, kinds)):
        s(1, f"a{k}f = a{k}.reshape(-1)")
        reads.append(f"x{k} = a{k}f[0]" if kind == "scalar" else
                     f"x{k} = a{k}f[i]" if kind == "same" else (k, shape))
    s(1, "for i in prange(of.size):")
    if "general" in kinds:
        idx = _unravel(s, 2, "i", ["out.shape[0]" if not isinstance(d, int) else d
                                   for d in out_shape])
        reads = [r if isinstance(r, str) else
                 f"x{r[0]} = a{r[0]}f[{_operand_index(idx, out_shape, r[1])}]" for r in reads]
    s(2, *reads, *body, "of[i] = v")
    return s.text()


def pool(name: str, kind: str, in_shape, out_shape, pool_size, strides, pads, dilation,
         count_include_pad: bool) -> str:
    """max/avg pooling over NHWC with static geometry; parallel over (batch, output row).
    The window's rows are picked once per output row (a row of the padding's value, -inf or
    0, for a row outside the image); each output column takes its window as one expression,
    channels innermost, and stores each output once: the interior columns in a loop, each
    border column with the taps inside the image, written out.  Accumulating tap by tap in
    ``out`` makes a max a conditional store, a ``vmaskmovps`` per tap in AVX2 code
    (28x28x192 3x3 ran 3x as long with AVX2 code as with AVX-512, 5x as long as now;
    benchmarks/RESULTS.md): only windows of more than :data:`MAX_UNROLLED_TAPS` taps, or
    more than :data:`MAX_BORDER_COLUMNS` border columns, still do (:func:`_pool_by_taps`).
    Selecting each tap's row and column per column instead of writing the border columns
    out ran slower."""
    _, h, w, c = in_shape
    _, oh, ow, _ = out_shape
    (kh, kw), (sh, sw), (dh, dw) = pool_size, strides, dilation
    (pt, pb), (pl, pr) = pads
    lo, hi = interior_cols(w, ow, kw, sw, dw, pl)
    border = [oj for oj in range(ow) if not lo <= oj < hi]
    s = Src()(0, f"def {name}(x, out):")
    s(1, f'"""{kind} pool {kh}x{kw} /{sh},{sw} pads {pads} on {h}x{w}x{c} -> {oh}x{ow}"""')
    s(1, "n_batch = x.shape[0]")
    if kh * kw > MAX_UNROLLED_TAPS or len(border) > MAX_BORDER_COLUMNS:
        _pool_by_taps(s, kind, in_shape, out_shape, pool_size, strides, pads, dilation,
                      count_include_pad)
        helper = body_helper(s, name, {"x": 4}, "noalias")
        return s.text() + helper
    s(1, f"xf = x.reshape(n_batch, {h}, {w * c})")
    inside = pt == 0 and (oh - 1) * sh + (kh - 1) * dh < h   # every window row in the image
    if not inside:
        fill_row(s, 1, "prow", w * c, "stands in for rows outside the image",
                 "-np.inf" if kind == "max" else "0.0")
    s(1, f"for t in prange(n_batch * {oh}):")
    s(2, f"n = t // {oh}", f"oi = t % {oh}", f"h0 = oi * {sh} - {pt}")
    for i in range(kh):
        if inside:
            s(2, f"r{i} = xf[n, h0 + {i * dh}]")
        else:
            s(2, f"y{i} = h0 + {i * dh}", f"r{i} = xf[n, y{i}] if y{i} >= 0 and y{i} < {h} else prow")
    if kind == "avg":  # the window's rows inside the image (or its padding, if counted)
        top, bot = (-pt, h + pb) if count_include_pad else (0, h)
        s(2, f"nr = {kh}" if inside else
          "nr = " + " + ".join(f"({top} <= y{i} < {bot})" for i in range(kh)))
    left, right = (-pl, w + pr) if count_include_pad else (0, w)

    def window(d: int, oj: str, taps: list[str], counted: int) -> None:
        """out[n, oi, oj, :] from ``taps`` (offsets of a channel-0 tap in a row) of each row"""
        taps = [f"r{i}[{tap} + ch]" for i in range(kh) for tap in taps]
        if kind == "max":
            v = f"max({', '.join(taps)})" if len(taps) > 1 else taps[0] if taps else "-np.inf"
        else:
            s(d, f"inv = np.float32(1.0) / np.float32(nr * {counted})")
            v = f"({' + '.join(taps) or '0.0'}) * inv"
        s(d, f"for ch in range({c}):", f"    out[n, oi, {oj}, ch] = {v}")

    if hi > lo:
        s(2, f"for oj in range({lo}, {hi}):   # interior columns")
        s(3, f"base = (oj * {sw} - {pl}) * {c}")
        window(3, "oj", [f"base + {j * dw * c}" for j in range(kw)], kw)
    for oj in border:   # written out: the taps inside the image
        cols = [oj * sw - pl + j * dw for j in range(kw)]
        window(2, str(oj), [str(x * c) for x in cols if 0 <= x < w],
               sum(left <= x < right for x in cols))
    helper = body_helper(s, name, {"xf": 3, "prow": 1}, "noalias")
    return s.text() + helper


#: windows of more taps than this (large average pools) accumulate tap by tap at every
#: column: their one expression would be long to compile
MAX_UNROLLED_TAPS = 25
#: images with more border columns than this (small images, wide padding) accumulate tap by
#: tap at every column: each border column is a loop of its own to compile
MAX_BORDER_COLUMNS = 4


def _pool_by_taps(s: Src, kind: str, in_shape, out_shape, pool_size, strides, pads, dilation,
                  count_include_pad: bool) -> None:
    """The parallel loop of :func:`pool` accumulating in ``out`` tap by tap."""
    _, h, w, c = in_shape
    _, oh, ow, _ = out_shape
    (kh, kw), (sh, sw), (dh, dw) = pool_size, strides, dilation
    (pt, pb), (pl, pr) = pads
    s(1, f"for t in prange(n_batch * {oh}):")
    s(2, f"n = t // {oh}", f"oi = t % {oh}", f"h0 = oi * {sh} - {pt}")
    s(2, f"for oj in range({ow}):")
    s(3, f"w0 = oj * {sw} - {pl}")
    s(3, f"for c in range({c}):", f"    out[n, oi, oj, c] = {'-np.inf' if kind == 'max' else '0.0'}")
    s(3, "cnt = 0", "cntp = 0")
    s(3, f"for ki in range({kh}):")
    s(4, f"hi = h0 + ki * {dh}")
    s(4, f"if hi < {-pt} or hi >= {h + pb}:", "    continue")
    s(4, f"for kj in range({kw}):")
    s(5, f"wi = w0 + kj * {dw}")
    s(5, f"if wi < {-pl} or wi >= {w + pr}:", "    continue")
    s(5, "cntp += 1")
    s(5, f"if hi < 0 or hi >= {h} or wi < 0 or wi >= {w}:", "    continue")
    s(5, "cnt += 1")
    s(5, f"for c in range({c}):")
    if kind == "max":
        s(6, "out[n, oi, oj, c] = max(out[n, oi, oj, c], x[n, hi, wi, c])")
    else:
        s(6, "out[n, oi, oj, c] += x[n, hi, wi, c]")
    if kind == "avg":
        s(3, f"inv = np.float32(1.0) / np.float32({'cntp' if count_include_pad else 'cnt'})")
        s(3, f"for c in range({c}):", "    out[n, oi, oj, c] *= inv")


def global_pool(name: str, kind: str, in_shape) -> str:
    """Global max/avg pooling, parallel over the batch.  A max takes the rows
    :data:`GLOBAL_MAX_ROWS` at a time into ``out`` (the last group overlapping the one
    before it: a max may see a row twice): one row at a time, ``out = max(out, x)`` is a
    conditional store, a ``vmaskmovps`` per vector and row in AVX2 code (as in
    :func:`pool`)."""
    _, h, w, c = in_shape
    hw = h * w
    s = Src()(0, f"def {name}(x, out):")
    s(1, "n_batch = x.shape[0]", f"x3 = x.reshape(n_batch, {hw}, {c})",
      f"o2 = out.reshape(n_batch, {c})")
    s(1, "for n in prange(n_batch):")
    s(2, f"for c in range({c}):", "    o2[n, c] = x3[n, 0, c]")
    if kind == "max" and hw > 1:
        u = min(GLOBAL_MAX_ROWS, hw - 1)
        s(2, f"for q in range({-(-(hw - 1) // u)}):")
        s(3, f"p = min(1 + q * {u}, {hw - u})")
        s(3, f"for c in range({c}):")
        s(4, f"o2[n, c] = max(o2[n, c], {', '.join(f'x3[n, p + {k}, c]' for k in range(u))})")
    elif kind == "avg":
        s(2, f"for p in range(1, {hw}):")
        s(3, f"for c in range({c}):", "    o2[n, c] += x3[n, p, c]")
    if kind == "avg":
        s(2, f"for c in range({c}):", f"    o2[n, c] *= {f32(1.0 / (h * w))}")
    return s.text()


#: rows of a global max pool taken into ``out`` at once (:func:`global_pool`)
GLOBAL_MAX_ROWS = 8


#: dense weights up to this size are read from cache by every row tile (:func:`dense_tiled`):
#: no BLAS call (whose thread wake-ups cost more than LeNet's whole head at batch 64)
SMALL_DENSE_BYTES = 2 << 20


def dense(name: str, in_f: int, out_f: int, epilogue, n_extras: int) -> str:
    """x @ w + b and the epilogue for weights larger than :data:`SMALL_DENSE_BYTES` (smaller
    ones: :func:`dense_tiled`), packed transposed, ``wt`` = (out, in), so each output
    feature reads one contiguous row. Small batches (<= 8 rows, bound by the weight stream:
    VGG's 25088x4096 layer is 400 MB) take dot products parallel over output features;
    larger batches call BLAS and apply bias and epilogue in one pass."""
    extras = [f"e{k}" for k in range(n_extras)]
    s = Src()(0, f"def {name}({', '.join(['x', 'wt', 'b', *extras, 'out'])}):")
    s(1, f'"""dense {in_f} -> {out_f}, epilogue {list(epilogue)}"""')
    s(1, "n = x.shape[0]")
    s(1, "if n <= 8:")
    s(2, f"for c in prange({out_f}):")
    s(3, "for t in range(n):")
    s(4, "acc = np.float32(0.0)")
    s(4, f"for k in range({in_f}):", "    acc += x[t, k] * wt[c, k]")
    s(4, "v = acc + b[c]", *epilogue_lines(epilogue, "v", extras, "c", "t, c"),
      "out[t, c] = v")
    s(2, "return")
    if any(st[0] == "add" for st in epilogue):
        s(1, "y = np.dot(x, wt.T)")  # the residual may share out's buffer: never overwrite it
    else:
        s(1, "np.dot(x, wt.T, out)", "y = out")
    s(1, "for t in prange(n):")
    s(2, f"for c in range({out_f}):")
    s(3, "v = y[t, c] + b[c]", *epilogue_lines(epilogue, "v", extras, "c", "t, c", vector=True),
      "out[t, c] = v")
    return s.text()


#: the channel index of register-tile stores: indexing with an unsigned integer, Numba adds no
#: negative-index wraparound select per value, which kept the SLP vectorizer from storing
#: whole vectors (convgen._emit_store)
UNSIGNED = "np.uint64"

_LITERAL = re.compile(r"np\.(float32|uint64)\((-?[0-9][0-9.eE+-]*)\)")


def hoist_literals(template: str) -> str:
    """``template`` with each ``np.float32(<literal>)`` and ``np.uint64(<literal>)`` replaced
    by a module-level constant defined after it (``_f4p0 = np.float32(4.0)``; a name stands
    for one value, so kernels of one module may define it alike).  Numba types and lowers
    a call per occurrence, a global once as a constant: the same machine code, for less
    compile time (an F(4x4) input transform on 28x28x128, AVX2 code: its Numba passes took
    2.4 s with the calls, 1.5 s with the constants)."""
    found = {}

    def constant(m) -> str:
        kind, literal = m.groups()
        name = f"_{kind[0]}" + literal.replace(".", "p").replace("-", "m").replace("+", "")
        found[name] = m.group(0)
        return name

    body = _LITERAL.sub(constant, template)
    return body + "".join(f"{name} = {value}\n" for name, value in sorted(found.items()))


def fill_row(s: Src, d: int, name: str, n: int, why: str, value: str = "0.0") -> None:
    """Emit at depth ``d`` (outside the ``prange``) ``name``: ``n`` float32 ``value`` (zeros
    by default), filled by a serial loop: ``np.zeros`` there is a parallel loop of its own, a
    second OpenMP region started on every call (~1 us) and a second gufunc to compile (~0.3 s)."""
    s(d, f"{name} = np.empty({n}, np.float32)   # {why}",
      f"for zi in range({n}):", f"    {name}[zi] = {value}")


def interior_cols(w: int, ow: int, kw: int, sw: int, dw: int, pl: int) -> tuple[int, int]:
    """[lo, hi) of the ``ow`` output columns whose whole window (``kw`` taps, stride ``sw``,
    dilation ``dw``, left padding ``pl``) lies inside the ``w`` input columns."""
    span = (kw - 1) * dw
    lo = -(-pl // sw)
    hi = min((w - 1 - span + pl) // sw + 1 if w - 1 - span + pl >= 0 else 0, ow)
    return (lo, hi) if hi > lo else (0, 0)


def register_tile(s: Src, d: int, p: int, cb: int, var: str, length: int, x: str, w: str,
                  alloc: bool = True):
    """Emit at depth ``d`` a (p, cb) register tile ``acc`` of zeros and the reduction
    ``acc[r, j] += x * w`` over ``var`` in ``range(length)``: ``x`` (an expression of ``var``
    and the row ``r``) is loaded once per row and step, ``w`` (of ``var`` and the column
    ``j``) once per step and column.  Compiled without the loop vectorizer, LLVM unrolls the
    tile into ``p * cb / lanes`` vector accumulators (convgen.py).  ``alloc=False``: ``acc``
    exists already; it must be allocated in the parallel loop's body, not in a loop inside
    it (an allocation per tile stays in memory: 33 instead of ~450 GFLOP/s)."""
    if alloc:
        s(d, f"acc = np.empty(({p}, {cb}), np.float32)   # register tile")
    s(d, f"for r in range({p}):", f"    for j in range({cb}):", "        acc[r, j] = 0.0")
    s(d, f"for {var} in range({length}):")
    s(d + 1, f"for r in range({p}):")
    s(d + 2, f"xv = {x}")
    s(d + 2, f"for j in range({cb}):", f"    acc[r, j] += xv * {w}")


def pack_dense(w_io: np.ndarray, cb: int) -> np.ndarray:
    """Dense weights (in, out) as :func:`dense_tiled` reads them: (out / cb, in, cb), the
    last block zero-padded."""
    w = np.asarray(w_io, np.float32)
    ncb = -(-w.shape[1] // cb)
    wpad = np.zeros((w.shape[0], ncb * cb), np.float32)
    wpad[:, :w.shape[1]] = w
    return np.ascontiguousarray(wpad.reshape(w.shape[0], ncb, cb).transpose(1, 0, 2))


def dense_tiled(name: str, in_f: int, out_f: int, epilogue, n_extras: int, cb: int,
                p: int) -> str:
    """x @ w + b and the epilogue as register tiles of ``p`` rows x ``cb`` output features,
    like the blocked conv (convgen.py): each step of the reduction broadcasts one input per
    row and multiplies it by ``cb / lanes`` weight vectors (:func:`pack_dense`), ``p * cb /
    lanes`` independent accumulators.  Parallel over (row tile, feature block).  A last tile
    of fewer rows repeats the last row in its spare ones (computed, not stored).  At batch 1,
    a loop of its own splits the reduction over the tile's rows instead (row r takes steps r,
    r + split, ...; then row 0 sums them): a p-th of the work.  ``split`` is the largest
    divisor of the reduction's length from p / 2 to p (none: the p copies of the row).  As
    a branch of the other loop's body, or with the steps left over in a loop of their own,
    the tile stayed in memory: 15-17 us instead of 3 for 400 -> 120 (benchmarks/RESULTS.md).
    Compiled
    without the loop vectorizer; heavy activations ending the epilogue go to its tail
    function (:func:`tail_function`).  For weights that stay in cache (:data:`SMALL_DENSE_BYTES`);
    larger ones stream through :func:`dense`."""
    from cnnc.backends.numba_cpu.scalar import split_epilogue
    extras = [f"e{k}" for k in range(n_extras)]
    ncb = -(-out_f // cb)
    head, tail = split_epilogue(epilogue, p * cb)
    s = Src()(0, f"def {name}({', '.join(['x', 'wp', 'b', *extras, 'out'])}):")
    s(1, f'"""dense {in_f} -> {out_f}, tile {p} rows x {cb} features, epilogue '
         f'{list(epilogue)}"""')
    s(1, "n = x.shape[0]", f"ntile = (n + {p - 1}) // {p}")
    if tail:
        s(1, "of = out.reshape(-1)")
    width = str(cb) if out_f % cb == 0 else f"min({cb}, {out_f} - co0)"

    def tiles(d: int, one_row: bool) -> None:
        if one_row:   # row r sums steps r, r + split, ...; then row 0 sums the rows
            s(d, f"for cb in prange({ncb}):")
            s(d + 1, "t0 = 0", f"co0 = cb * {cb}")
            register_tile(s, d + 1, split, cb, "k", in_f // split, f"x[0, k * {split} + r]",
                          f"wp[cb, k * {split} + r, j]")
            s(d + 1, f"for r in range(1, {split}):", f"    for j in range({cb}):",
              "        acc[0, j] += acc[r, j]")
            s(d + 1, "rows = 1")
        else:
            s(d, f"for q in prange(ntile * {ncb}):")
            s(d + 1, f"cb = q % {ncb}", f"t0 = (q // {ncb}) * {p}", f"co0 = cb * {cb}",
              "last = n - 1 - t0")
            register_tile(s, d + 1, p, cb, "k", in_f, "x[t0 + min(r, last), k]",
                          "wp[cb, k, j]")
            s(d + 1, f"rows = min({p}, n - t0)")
        s(d + 1, "for r in range(rows):")
        s(d + 2, "t = t0 + r")
        s(d + 2, f"for j in range({width}):")
        s(d + 3, f"c = {UNSIGNED}(co0 + j)", "v = acc[r, j] + b[c]",
          *epilogue_lines(head, "v", extras, "c", "t, c"), "out[t, c] = v")
        if tail:
            run = f"np.int64({cb})" if out_f % cb == 0 else width
            s(d + 1, f"{name}{TAIL}(of, t0 * {out_f} + co0, rows, np.int64({out_f}), {run})")

    split = next((r for r in range(p, (p + 1) // 2 - 1, -1) if r > 1 and in_f % r == 0), 0)
    if split:
        s(1, "if n == 1:")
        tiles(2, True)
        s(2, "return")
    tiles(1, False)
    # the extras: a per-feature scale and shift, or a residual of the output's shape
    ranks = dict(zip(extras, [r for step in epilogue for r in
                              {"scale_shift": (1, 1), "add": (2,)}.get(step[0], ())]))
    ranks.update(x=2, wp=3, out=2, n=-1, ntile=-1)
    helper = body_helper(s, name, ranks)
    return s.text() + helper + ("\n\n" + tail_function(name, tail) if tail else "")


def softmax(name: str, shape, axis: int, log: bool = False) -> str:
    """softmax along ``axis``; with ``log``, log_softmax: (x - max) - log(sum(exp(x - max)))."""
    length = shape[axis]
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    s = Src()(0, f"def {name}(x, out):")
    s(1, "xf = x.reshape(-1)", "of = out.reshape(-1)")
    s(1, f"for t in prange(xf.size // {length}):")
    s(2, f"o = t // {inner}", f"i = t % {inner}", f"base = o * {length * inner} + i")
    s(2, "m = xf[base]")
    s(2, f"for l in range(1, {length}):", f"    m = max(m, xf[base + l * {inner}])")
    if log:  # log1p of the float64 sum without the max's own e^0 = 1: relative accuracy
        s(2, "am = 0")
        s(2, f"for l in range(1, {length}):", f"    if xf[base + l * {inner}] > xf[base + am * {inner}]:",
          "        am = l")
        s(2, "rest = 0.0")
        s(2, f"for l in range({length}):", "    if l != am:",
          f"        rest += math.exp(np.float64(xf[base + l * {inner}] - m))")
        s(2, "lt = math.log1p(rest)")
        s(2, f"for l in range({length}):",
          f"    of[base + l * {inner}] = np.float32(np.float64(xf[base + l * {inner}] - m) - lt)")
        return s.text()
    s(2, "tot = np.float32(0.0)")
    s(2, f"for l in range({length}):")
    s(3, f"e = np.float32(math.exp(xf[base + l * {inner}] - m))",
      f"of[base + l * {inner}] = e", "tot += e")
    s(2, "inv = np.float32(1.0) / tot")
    s(2, f"for l in range({length}):", f"    of[base + l * {inner}] *= inv")
    return s.text()


def transpose(name: str, in_shape, out_shape, perm) -> str:
    """out = x transposed by ``perm``.  Up to rank 4 (viewed as rank 4): a loop nest over
    the output with the input strides as constants, parallel over its two outer axes (an
    ONNX model's NCHW -> NHWC input transpose, 224x224x3: 0.6 ms with a flat loop that
    unravels every index, 0.03 ms so), indexed unsigned (``UNSIGNED``: no wraparound select
    per element, so the inner loops vectorize; that transpose 45.7 -> 5.6 us, NHWC -> NCHW
    56x56x96 89 -> 49); higher ranks unravel each output index."""
    in_strides = _strides(in_shape)
    s = Src()(0, f"def {name}(x, out):")
    s(1, "xf = x.reshape(-1)", "of = out.reshape(-1)")
    rank = len(out_shape)
    if rank <= 4 and all(isinstance(d, int) for d in out_shape[1:]):
        dims = [d if isinstance(d, int) else "out.shape[0]" for d in out_shape]
        d = [1] * (4 - rank) + dims
        st = [0] * (4 - rank) + [in_strides[p] for p in perm]
        s(1, f"for t in prange({d[0]} * {d[1]}):")
        s(2, f"i0 = t // {d[1]}", f"i1 = t % {d[1]}", f"src = i0 * {st[0]} + i1 * {st[1]}",
          f"dst = t * {d[2]} * {d[3]}")
        s(2, f"for i2 in range({d[2]}):")
        s(3, f"for i3 in range({d[3]}):")
        s(4, f"of[{UNSIGNED}(dst + i2 * {d[3]} + i3)] = "
             f"xf[{UNSIGNED}(src + i2 * {st[2]} + i3 * {st[3]})]")
        return s.text()
    s(1, "for i in prange(of.size):")
    dims = [d if isinstance(d, int) else "out.shape[%d]" % k for k, d in enumerate(out_shape)]
    idx = _unravel(s, 2, "i", dims)
    src = " + ".join(f"{idx[k]} * {in_strides[p]}" for k, p in enumerate(perm))
    s(2, f"of[i] = xf[{src}]")
    return s.text()


# Shape-generic copies for concat and pad (any rank <= 4, viewed as rank 4): one kernel per
# module however many shapes and offsets it copies (DenseNet-121 had 597 distinct concat
# copies, each compiled on its own); memory bound, so static shapes would buy nothing.
COPY4 = '''def __KERNEL__(x, out, o0, o1, o2, o3):
    """out[o0 + a, o1 + b, o2:o2 + w, o3:o3 + c] = x[a, b] for every (a, b)."""
    n0, n1, n2, n3 = x.shape
    for t in prange(n0 * n1):
        a = t // n1
        b = t % n1
        out[o0 + a, o1 + b, o2:o2 + n2, o3:o3 + n3] = x[a, b]
'''
FILL = '''def __KERNEL__(value, out):
    """out[...] = value[0]"""
    of = out.reshape(-1)
    v = value[0]
    for i in prange(of.size):
        of[i] = v
'''


def copy_into(name: str, in_shape, out_shape, offsets, fill: float | None) -> str:
    """Copy ``x`` into ``out`` at per-dim ``offsets`` (pad, concat); fill the rest first."""
    out_strides = _strides(out_shape)
    s = Src()(0, f"def {name}(x, out):")
    s(1, "xf = x.reshape(-1)", "of = out.reshape(-1)")
    if fill is not None:
        s(1, "for i in prange(of.size):", f"    of[i] = {f32(fill)}")
    s(1, "for i in prange(xf.size):")
    dims = [d if isinstance(d, int) else "x.shape[%d]" % k for k, d in enumerate(in_shape)]
    idx = _unravel(s, 2, "i", dims)
    dst = " + ".join(f"({idx[k]} + {o}) * {st}" if o else f"{idx[k]} * {st}"
                     for k, (o, st) in enumerate(zip(offsets, out_strides)))
    s(2, f"of[{dst}] = xf[i]")
    return s.text()


def matmul(name: str, a_shape, b_shape, out_shape) -> str:
    if len(a_shape) == 2 and len(b_shape) == 2:
        return Src()(0, f"def {name}(a, b, out):", "    np.dot(a, b, out)").text()
    if len(b_shape) == 2:  # (..., k) @ (k, m): one GEMM over the flattened rows (ConvNeXt)
        return Src()(0, f"def {name}(a, b, out):",
                     f"    np.dot(a.reshape(-1, {a_shape[-1]}), b, "
                     f"out.reshape(-1, {b_shape[-1]}))").text()
    if tuple(a_shape[:-2]) != tuple(b_shape[:-2]):
        raise UnsupportedError(f"matmul with broadcast batch dims {a_shape} @ {b_shape} has no "
                               f"Numba CPU kernel; use equal batch dims")
    k = a_shape[-1]
    s = Src()(0, f"def {name}(a, b, out):")
    s(1, f"a3 = a.reshape(-1, {a_shape[-2]}, {k})", f"b3 = b.reshape(-1, {k}, {b_shape[-1]})",
      f"o3 = out.reshape(-1, {out_shape[-2]}, {out_shape[-1]})")
    s(1, "for t in prange(o3.shape[0]):", "    o3[t] = np.dot(a3[t], b3[t])")
    return s.text()


def lrn(name: str, shape, size: int, alpha: float, beta: float, bias: float) -> str:
    """Local response normalisation over the last (channel) axis: a window sum of squares
    per channel, in float64; parallel over pixels."""
    from cnnc.ops.norm import lrn_window
    c = shape[-1]
    lo, hi = lrn_window(c, size)
    s = Src()(0, f"def {name}(x, out):")
    s(1, f'"""lrn size {size} alpha {alpha} beta {beta} bias {bias} over {c} channels"""')
    s(1, f"x2 = x.reshape(-1, {c})", f"o2 = out.reshape(-1, {c})")
    s(1, "for p in prange(x2.shape[0]):")
    s(2, f"for c in range({c}):")
    s(3, "acc = 0.0")
    s(3, f"for j in range(max(0, c - {lo}), min({c}, c + {hi + 1})):")
    s(4, "v = np.float64(x2[p, j])", "acc += v * v")
    s(3, f"o2[p, c] = np.float32(np.float64(x2[p, c]) / ({bias!r} + {alpha / size!r} * acc) "
         f"** {beta!r})")
    return s.text()


def reduce_parts(in_shape, axes):
    """(kept dims, their input strides, reduced dims, their input strides) of a reduction;
    the reduced dims must be static."""
    strides = _strides(in_shape)
    kept = [(d, st) for k, (d, st) in enumerate(zip(in_shape, strides)) if k not in axes]
    red = [(d, st) for k, (d, st) in enumerate(zip(in_shape, strides)) if k in axes]
    if any(not isinstance(d, int) for d, _ in red):
        raise UnsupportedError(f"a reduction over the symbolic batch dim of {tuple(in_shape)}")
    return kept, red


#: kind -> (initial accumulator, update of ``acc`` by the float64 ``v``, final value)
REDUCE_STEPS = {
    "sum": ("0.0", "acc += v", "acc"),
    "mean": ("0.0", "acc += v", "acc / {n}"),
    "sum_square": ("0.0", "acc += v * v", "acc"),
    "l1": ("0.0", "acc += abs(v)", "acc"),
    "l2": ("0.0", "acc += v * v", "math.sqrt(acc)"),
    "max": ("-math.inf", "acc = v if (v > acc or v != v) else acc", "acc"),
    "min": ("math.inf", "acc = v if (v < acc or v != v) else acc", "acc"),
}


def reduce_body(s: Src, depth: int, kind: str, read: str, red) -> None:
    """Statements leaving ``res`` (float64) = the reduction of the elements
    ``read.format(off)`` for every offset of the reduced dims ``red``."""
    n = int(np.prod([d for d, _ in red], dtype=np.int64))

    def loop(body_depth_stmts):
        s(depth, f"for r in range({n}):")
        idx = _unravel(s, depth + 1, "r", [d for d, _ in red], prefix="j")
        off = " + ".join(f"{j} * {st}" for j, (_, st) in zip(idx, red)) or "0"
        s(depth + 1, f"v = np.float64({read.format(off)})", *body_depth_stmts)

    if kind == "log_sum_exp":  # max, then the sum of e^(v - max): no overflow
        s(depth, "m = -math.inf")
        loop(["m = v if (v > m or v != v) else m"])
        s(depth, "mm = m if abs(m) < math.inf else 0.0", "acc = 0.0")
        loop(["acc += math.exp(v - mm)"])
        s(depth, "res = math.log(acc) + mm if acc > 0 else -math.inf")
        return
    init, update, final = REDUCE_STEPS[kind]
    s(depth, f"acc = {init}")
    loop([update])
    s(depth, f"res = {final.format(n=float(n))}")


def reduce(name: str, kind: str, in_shape, out_shape, axes) -> str:
    """One output element per parallel iteration: a float64 loop over its reduced elements."""
    kept, red = reduce_parts(in_shape, axes)
    s = Src()(0, f"def {name}(x, out):")
    s(1, f'"""reduce {kind} over axes {list(axes)} of {list(in_shape)}"""')
    s(1, "xf = x.reshape(-1)", "of = out.reshape(-1)")
    s(1, "for i in prange(of.size):")
    dims = [d if isinstance(d, int) else "x.shape[0]" for d, _ in kept]
    idx = _unravel(s, 2, "i", dims) if kept else []
    base = " + ".join(f"{ix} * {st}" for ix, (_, st) in zip(idx, kept)) or "0"
    s(2, f"base = {base}")
    reduce_body(s, 2, kind, "xf[base + {}]", red)
    s(2, "of[i] = np.float32(res)")
    return s.text()
