"""Source generator for fused convolution kernels (Numba CPU backend).

For one conv node (NHWC activations, HWIO weights, static spatial shape, dynamic batch) this
module emits the readable source of a Numba kernel ``name(x, wp, b, <extras...>, out)`` that
computes ``out = epilogue(conv(x, w) + b)`` in a single pass over the output (a blocked conv
with padding takes the zero-padded copy of x instead, see :class:`Halo`).

Process settings (``cnnc.backends.numba_cpu`` sets them before Numba starts): above all
``NUMBA_SLP_VECTORIZE=1``: the register tiles below are vectorised by LLVM's SLP vectoriser,
which Numba disables by default.  Without it the 3x3 64->64 56x56 conv runs at 12 GFLOP/s
instead of 180-195.
Compile the source with ``njit(parallel=True, fastmath=FASTMATH)`` (see lower.py) (``parallel=False`` is fine
for tiny layers but the kernels are written to use prange).

Strategy rule (``plan(spec).strategy``).  Numbers: 2 cores of this machine (Zen 4, AVX-512 used
by LLVM), batch 1, best-of-40; the machine was shared with other jobs, so treat them as lower
bounds (numpy/OpenBLAS GEMM of the same size: 160-190 GFLOP/s when the machine was quiet):
  * ``depthwise``  groups == cin > 1 (cout = m * cin).  Channels innermost (SIMD over c), taps
    unrolled, a zero row stands in for vertical padding.  Memory bound (~35 GFLOP/s, 3x3 128ch).
  * ``gemm``       1x1, stride 1, no padding, groups 1, cin >= 32 and cout >= 64: one ``np.dot``
    into ``out`` (multi-threaded OpenBLAS, also when called from njit: 173 GFLOP/s vs 96 with
    OPENBLAS_NUM_THREADS=1) then a prange epilogue pass; 155-168 GFLOP/s on 56x56 64<->256.
    Smaller 1x1 convs use ``blocked`` (no extra pass; BLAS is inefficient on thin matrices).
    This threshold is provisional: not measured head-to-head on a quiet machine.
  * ``blocked``    everything else: direct convolution with a register tile of P=4 adjacent
    output pixels x CB=16 output channels (CB=8 when cout <= 8; 2 px x 32 ch for few input
    channels and long reductions, e.g. 7x7 3->64: 178 vs 161 GFLOP/s; for groups CB divides
    cout/groups) in a (P, CB) local array that LLVM fully unrolls into vector registers
    (P*CB must stay <= 64, larger tiles are not unrolled and drop to ~5 GFLOP/s).  These
    tile sizes are the AVX-512 ones (:func:`_tile_avx512`); 8- and 4-lane targets (AVX2, SSE,
    NEON) get :func:`_tile_narrow`'s, derived from the lanes and registers of
    :func:`target.for_plans` and compiled without the loop vectorizer
    (:attr:`Plan.loop_vectorize`).  Weights
    packed as (cout/CB, kh, kw*cin_g, CB).  prange over (batch, output row, channel block),
    or (channel block, batch, row) when the weights outweigh the input image, so that a
    thread keeps one block's weights in cache (7x7x512 with cold caches: 2.5 -> 1.6 ms).
    For groups == 1, dilation_w == 1 and cin >= 16 the kw and cin loops are merged (the
    NHWC input row is contiguous over (kw, cin)); with fewer channels they stay separate
    (cin unrolled: 7x7 3->64 1.46 instead of 2.69 ms).  Padding and a ragged last tile read
    a zero-padded copy of the input (a :class:`Halo`) made by the shape-generic ``PAD_COPY``
    kernel, or stored there by the conv producing it (lower.py, ``mirror_for``).
    3x3 64->64 56x56: 181-228 GFLOP/s on a quiet machine; 3x3/2 128->256: 160.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from cnnc.backends.numba_cpu import target, winograd
from cnnc.backends.numba_cpu.kernels import (TAIL, UNSIGNED, Src, body_helper, fill_row,
                                             interior_cols, tail_function)
from cnnc.backends.numba_cpu.target import Target
from cnnc.backends.numba_cpu.scalar import epilogue_lines, split_epilogue


@dataclass(frozen=True)
class ConvSpec:
    h: int
    w: int
    cin: int
    kh: int
    kw: int
    cout: int
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)   # top, bottom, left, right
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    epilogue: tuple[tuple, ...] = ()

    @property
    def out_hw(self) -> tuple[int, int]:
        pt, pb, pl, pr = self.pads
        oh = (self.h + pt + pb - ((self.kh - 1) * self.dilation[0] + 1)) // self.stride[0] + 1
        ow = (self.w + pl + pr - ((self.kw - 1) * self.dilation[1] + 1)) // self.stride[1] + 1
        return oh, ow

    @property
    def depthwise(self) -> bool:
        """One group per input channel (each with a channel multiplier of cout / cin)."""
        return self.groups > 1 and self.groups == self.cin and self.cout % self.cin == 0

    @property
    def flops_per_image(self) -> int:
        oh, ow = self.out_hw
        return 2 * oh * ow * self.cout * self.kh * self.kw * (self.cin // self.groups)


@dataclass(frozen=True)
class Plan:
    strategy: str   # "blocked" | "gemm" | "im2col" | "depthwise" | "winograd"
    cb: int = 16    # output channels per register tile
    p: int = 4      # output pixels per register tile
    merged: bool = True   # kw and cin loops merged into one contiguous loop
    cb_outer: bool = False  # parallel loop visits (channel block, row) rather than (row, block)
    # compiled with LLVM's loop vectorizer (on by default in Numba).  Off for the narrow
    # tiles: it vectorizes the (kw, cin) reduction loop across iterations, one vector per
    # tile element, and spills them all (AVX2 3x3 64->64: 130 stack moves per 64 FMAs in the
    # hot loop; without it 0, and the SLP vectorizer keeps the tile in registers).  On for
    # the AVX-512 tiles, as they were measured on Zen 4 (that hot loop spills too, see
    # tests/backends/test_numba_cpu_asm.py; switching it off awaits a Zen 4 timing).
    loop_vectorize: bool = True
    wino: int = 2   # Winograd: the output tile side m of F(m x m, 3x3), 2 or 4


def _gemm_pays(spec: ConvSpec) -> bool:
    """1x1/s1 convs: np.dot pays for its extra epilogue pass only with enough channels."""
    return spec.cin >= 32 and spec.cout >= 64


def _im2col_pays(spec: ConvSpec) -> bool:
    """Few output pixels and long reductions (ResNet/VGG deep layers, strided 1x1
    projections): packing patches and one BLAS call beats the direct kernel, whose border
    path handles a large share of a 7x7 or 14x14 row."""
    oh, ow = spec.out_hw
    k = spec.kh * spec.kw * spec.cin
    return (oh * ow <= 400 and k >= 576 and spec.cout >= 64) or \
        (spec.kh == spec.kw == 1 and spec.cin >= 64 and spec.cout >= 64)


#: AVX-512 layers of 9-16 output channels may take the narrow rule's tiles (see :func:`plan`);
#: False: always the 4-5 px tile of :func:`_tile_avx512`, for comparison
NARROW_ONE_VECTOR = True
GEMM_ENABLED = False
IM2COL_ENABLED = False  # pending a measurement on a quiet machine (see benchmarks/RESULTS.md)


def scratch_elements(spec: ConvSpec, pl: Plan | None = None) -> int:
    """Scratch (float32 elements per image) the kernel takes as its last argument; 0 when it
    takes none."""
    pl = pl or plan(spec)
    if pl.strategy == "winograd":
        return winograd.scratch_elements(spec, pl)
    if pl.strategy == "im2col":
        oh, ow = spec.out_hw
        return oh * ow * spec.kh * spec.kw * spec.cin
    if h := halo(spec, pl):
        return h.rows * h.width
    return 0


def plan(spec: ConvSpec, cpu: Target | None = None, tuned: bool = True,
         winograd_ok: bool = True) -> Plan:
    """The strategy and register tile of ``spec`` on ``cpu`` (default: the target plans are
    chosen for, :func:`target.for_plans`): the one ``cnnc tune`` measured best on this
    machine if it stored one (``tuned``, see :mod:`tune`), else the rule below."""
    cpu = cpu or target.for_plans()
    g = spec.groups
    if spec.depthwise:
        if _depthwise_tiles_pay(spec, cpu):
            lo, hi = pixel_range(cpu.lanes, cpu, spec)
            if cpu.lanes < 16:
                hi = min(hi, AVX2_DEPTHWISE_PIXELS)
            p = _row_pixels(spec.out_hw[1], min(lo, hi), hi)
            return Plan("depthwise", cb=cpu.lanes, p=p, merged=False, loop_vectorize=False)
        return Plan("depthwise", cb=0, p=1, merged=False)
    if tuned:
        from cnnc.backends.numba_cpu import tune
        if (pl := tune.lookup(dataclasses.replace(spec, epilogue=()), cpu)) is not None:
            return pl
    if winograd_ok and winograd.chosen(spec, cpu):   # winograd.py: when it pays
        return winograd.default_plan(spec, cpu)
    pointwise = (spec.kh == spec.kw == 1 and spec.stride == (1, 1)
                 and spec.pads == (0, 0, 0, 0) and g == 1)
    if pointwise and GEMM_ENABLED and _gemm_pays(spec):
        return Plan("gemm", cb=0, p=1, merged=False)
    if g == 1 and IM2COL_ENABLED and _im2col_pays(spec):
        return Plan("im2col", cb=0, p=1, merged=False)
    # merging (kw, cin) into one loop pays for long rows only (3x3 64->64: 181 vs 111
    # GFLOP/s); with a few input channels the separate loops are 2x faster (7x7 3->64)
    merged = g == 1 and spec.dilation[1] == 1 and spec.cin >= 16
    # two vectors of channels and P pixels filling the register file, compiled without the
    # loop vectorizer, on every ISA: AVX-512 (Zen 5) 8 px x 32 ch 420-470 GFLOP/s on
    # ResNet-18's 3x3 and 7x7 layers against 210-240 for the 4 px x 16 ch tile it had,
    # whose loop-vectorized hot loop spilled (benchmarks/RESULTS.md).  On AVX-512 a layer of
    # 9-16 output channels (one vector) takes the narrow rule's 8-14 px too when its
    # reduction is long or contiguous (EfficientNet's 1x1 32->16 on 112x112 76 -> 43 us, 3x3
    # 16->16 on 56x56 52 -> 41, LeNet's 5x5 6->16 at batch 64 106 -> 90); grouped convs, at
    # most 8 channels, short reductions (a 3x3 3->16 stem: 7.0 vs 10.7 us) and rows under 10
    # (8 px x 16 ch: LLVM stored the tile in the last kh loop, 3x3 16->16 on 8x8 4.5 vs 5.1
    # us) keep the 4-5 px tile of _tile_avx512.  NARROW_ONE_VECTOR = False: the latter always.
    one_vector = (g == 1 and cpu.lanes // 2 < spec.cout <= cpu.lanes
                  and spec.out_hw[1] >= 10 and (merged or spec.kh * spec.kw * spec.cin >= 64))
    small = cpu.lanes >= 16 and (g > 1 or spec.cout <= cpu.lanes) and not (
        one_vector and NARROW_ONE_VECTOR)
    cb, p = (_tile_avx512 if small else _tile_narrow)(spec, merged, cpu)
    # weights larger than the input image (deep layers): a thread keeps one channel block's
    # weights in its cache over all rows instead of streaming every block for every row.
    # Not for a 1x1 output (squeeze-excitation convs): one row, nothing to keep, and that
    # loop order left its reduction unvectorized (960->240: 63.5 us against 5.5)
    weights = spec.kh * spec.kw * (spec.cin // g) * spec.cout
    oh, ow = spec.out_hw
    return Plan("blocked", cb=cb, p=p, merged=merged,
                cb_outer=weights > spec.h * spec.w * spec.cin and oh * ow > 1,
                loop_vectorize=small)


def _tile_avx512(spec: ConvSpec, merged: bool, cpu: Target) -> tuple[int, int]:
    """(CB, P) measured on Zen 4 (16 lanes, 32 zmm): one register per pixel and CB=16.
    Spatial convs of 9-16 output channels on rows of at least 10 pixels take 5 pixels (Zen
    5, batch 1 unless noted: ResNet-20's 3x3 16->16 25.1 -> 21.7 us, 3->16 8.6 -> 6.3,
    LeNet's 5x5 6->16 at batch 64 150 -> 111; 6 pixels, 96 values, are no longer unrolled
    with the loop vectorizer on (20x slower), and 1x1 convs and 8-channel tiles lost with 5)."""
    if spec.groups == 1:
        wide = not merged and spec.cout % 32 == 0 and spec.kh * spec.kw * spec.cin >= 64
        cb = 8 if spec.cout <= 8 else 32 if wide else 16
    else:
        cb = next(c for c in (16, 8, 4, 2, 1) if (spec.cout // spec.groups) % c == 0)
    if (spec.groups == 1 and cb == 16 and spec.kh * spec.kw > 1
            and spec.out_hw[1] >= 10):
        return cb, 5
    return cb, max(1, min(4, 64 // cb))


#: independent accumulators that hide the FMA latency (2 FMA pipes x 4 cycles on Zen 3/4 and
#: recent Intel cores)
MIN_ACCUMULATORS = 8
#: most pixels per tile (the tile is unrolled into straight-line code)
MAX_PIXELS = 8
#: most pixels per tile of a spatial (kh x kw > 1) conv on AVX-512: 14 px x 32 ch (28 zmm
#: accumulators) against 8 x 32 on a Sapphire Rapids-class host: 430 vs 360 GFLOP/s on
#: ResNet-18's 56x56 layers, 384 vs 311 on 28x28, 405 vs 332 on 14x14, compiling as fast;
#: 1x1 convs lost (330 vs 380), so they keep MAX_PIXELS (benchmarks/RESULTS.md)
MAX_PIXELS_AVX512 = 14


def max_pixels(cpu: Target, spec: ConvSpec | None = None) -> int:
    spatial = spec is None or spec.kh * spec.kw > 1
    return MAX_PIXELS_AVX512 if cpu.isa == "avx512" and spatial else MAX_PIXELS


def pixel_range(cb: int, cpu: Target, spec: ConvSpec | None = None) -> tuple[int, int]:
    """[lo, hi] output pixels per tile of CB channels on ``cpu``: hi is the most whose
    accumulators (P * CB / lanes vectors), CB / lanes weight vectors and a broadcast input
    fit the vector registers (at most :func:`max_pixels`); lo the fewest that give
    :data:`MIN_ACCUMULATORS` chains.  (Counting one broadcast, not two, gives one pixel more
    only to tiles of an odd number of vectors: on AVX2 4 px x 24 ch ran 1.1-1.2x as fast as
    the 3 px that two allowed.)"""
    vecs = -(-cb // cpu.lanes)
    hi = max(1, min((cpu.registers - vecs - 1) // vecs, max_pixels(cpu, spec)))
    return min(-(-MIN_ACCUMULATORS // vecs), hi), hi


def dense_tile(out_f: int, cpu: Target) -> tuple[int, int]:
    """(CB, P) of a register-tiled dense layer (kernels.dense_tiled): two vectors of output
    features (one when there are that few) and as many rows as :func:`pixel_range` allows
    for them, at most :data:`MAX_PIXELS`."""
    cb = cpu.lanes if out_f <= cpu.lanes else 2 * cpu.lanes
    return cb, min(pixel_range(cb, cpu)[1], MAX_PIXELS)


#: a narrow-ISA tile takes the most pixels whose padding idles at most 1/8 of the output row
IDLE_FRACTION = 8
#: vectors of channels an AVX2 tile (8 lanes, 16 registers) may span when the output channels
#: are whole vectors: the count padding the channels least, ties to the fewer vectors (two;
#: three at 4 px, five at 2 px where they pad less).  AVX2 code, against two vectors, 1x1
#: convs as in MobileNet-v3 and EfficientNet-B0: 64->24 on 56x56 0.100 -> 0.066 ms, 144->24
#: 0.210 -> 0.150, 24->72 0.100 -> 0.077, 40->120 on 28x28 0.060 -> 0.049, 240->40 0.106 ->
#: 0.085, 80->200 on 14x14 0.053 -> 0.040; a 3x3 48->24 0.130 -> 0.098.  On AVX-512, tiles of
#: 3 or 5 zmm ran 15-30x slower (the SLP vectorizer gave up on them): 16-lane targets keep two.
AVX2_TILE_VECTORS = (2, 3, 5)


def _tile_narrow(spec: ConvSpec, merged: bool, cpu: Target) -> tuple[int, int]:
    """(CB, P) for 8- and 4-lane targets (AVX2: 16 ymm; SSE: 16 xmm; NEON: 32 q): CB two
    vectors (one when cout is that small), P the most in :func:`pixel_range` whose padded
    row idles at most 1 / :data:`IDLE_FRACTION` of it (else the one padding least).  AVX2,
    3x3 64->64: 6 px x 16 ch keeps 12 accumulators, 2 weight vectors and a broadcast in the
    16 ymm registers.  Choosing the least padding took 4 px on rows of 56, 28 or 112: 8
    accumulator chains and a tile store the SLP vectorizer leaves scalar, 8-37 % slower
    than 6 px (benchmarks/RESULTS.md)."""
    cout_g = spec.cout // spec.groups
    two = 2 * cpu.lanes
    if spec.groups == 1:
        cb = cpu.lanes if cout_g <= cpu.lanes else two
        if cout_g > cpu.lanes and cout_g % cpu.lanes == 0 and (cpu.lanes, cpu.registers) == (
                8, 16):
            cb = min((v * cpu.lanes for v in AVX2_TILE_VECTORS),
                     key=lambda c: -(-cout_g // c) * c)
    else:
        cb = next(c for c in (two, cpu.lanes, 4, 2, 1) if cout_g % c == 0)
    return cb, _row_pixels(spec.out_hw[1], *pixel_range(cb, cpu, spec))


def _row_pixels(ow: int, lo: int, hi: int) -> int:
    """The most pixels in [lo, hi] whose tiles pad a row of ``ow`` by at most
    1 / :data:`IDLE_FRACTION` of it (else the count padding least), at most ``ow``."""
    idle = {q: -(-ow // q) * q - ow for q in range(lo, hi + 1)}
    fits = [q for q in idle if idle[q] * IDLE_FRACTION <= ow]
    p = max(fits) if fits else min(idle, key=lambda q: (idle[q], -q))
    return max(1, min(p, ow))   # a row narrower than the tile: no idle pixels


def pack_weights(spec: ConvSpec, w_hwio: np.ndarray, pl: Plan | None = None) -> np.ndarray:
    w = np.asarray(w_hwio, dtype=np.float32)
    cin_g = spec.cin // spec.groups
    assert w.shape == (spec.kh, spec.kw, cin_g, spec.cout), w.shape
    pl = pl or plan(spec)
    if pl.strategy == "winograd":
        return winograd.pack_weights(spec, w, pl)
    if pl.strategy == "depthwise":
        # (kh*kw, cout): output channel c reads input channel c // m
        return np.ascontiguousarray(w.reshape(spec.kh * spec.kw, spec.cout))
    if pl.strategy in ("gemm", "im2col"):
        return np.ascontiguousarray(w.reshape(spec.kh * spec.kw * spec.cin, spec.cout))
    cb = pl.cb
    ncb = -(-spec.cout // cb)
    wpad = np.zeros((spec.kh, spec.kw, cin_g, ncb * cb), np.float32)
    wpad[..., :spec.cout] = w
    wp = wpad.reshape(spec.kh, spec.kw * cin_g, ncb, cb).transpose(2, 0, 1, 3)
    return np.ascontiguousarray(wp)


# ----------------------------------------------------------------------------------------------
# source emission helpers

def _extra_names(spec: ConvSpec) -> list[str]:
    names = []
    for step in spec.epilogue:
        if step[0] == "scale_shift":
            names += [f"scale{len(names)}", f"shift{len(names) + 1}"]
        elif step[0] == "add":
            names.append(f"res{len(names)}")
    return names


def halo_index(h: Halo, c: int, co: str) -> str:
    """The flat index of value (n, oh, ow, ``co``) of an image of ``c`` channels held in halo
    ``h``, unsigned throughout: indexing the 3-d halo by ``n, oh + top, ...`` made a 3x3
    3->16 conv on 32x32 take 12.4 instead of 5.2 us."""
    return (f"{UNSIGNED}((n * {h.rows} + oh + {h.top}) * {h.width} + (ow + {h.left}) * {c})"
            f" + {co}")


def residual_names(spec: ConvSpec) -> list[str]:
    """The kernel's parameter names of the residual operands, in order."""
    return [n for n in _extra_names(spec) if n.startswith("res")]


def _epilogue(spec: ConvSpec, co: str, ridx: str, steps=None, vector: bool = True,
              residuals=None) -> list[str]:
    """Statements updating float32 scalar ``v`` in place by ``steps`` (default: the whole
    epilogue); ``ridx`` indexes residuals (those in ``residuals``, extra name -> its
    :class:`Halo`, are read from the halo their producer stored them in); ``vector``: in a
    loop the loop vectorizer vectorizes (see
    :func:`~cnnc.backends.numba_cpu.scalar.epilogue_lines`)."""
    steps = spec.epilogue if steps is None else steps
    index = {f"{name}f": halo_index(h, spec.cout, co) for name, h in (residuals or {}).items()}
    names = [f"{n}f" if n in (residuals or {}) else n for n in _extra_names(spec)]
    return epilogue_lines(steps, "v", names, co, ridx, vector, index)


def _header(spec: ConvSpec, name: str, pl: Plan, mirror: Halo | None = None) -> Src:
    s = Src()
    args = ", ".join(["x", "wp", "b", *_extra_names(spec), "out", *(["xh"] if mirror else [])])
    oh, ow = spec.out_hw
    s(0, f"def {name}({args}):")
    s(1, f'"""{pl.strategy} conv: {spec.h}x{spec.w}x{spec.cin} -> {oh}x{ow}x{spec.cout}, '
         f'k{spec.kh}x{spec.kw} s{spec.stride} p{spec.pads} d{spec.dilation} g{spec.groups}'
         f' (tile {pl.p}px x {pl.cb}ch), epilogue {list(spec.epilogue)}"""')
    s(1, "n_batch = x.shape[0]")
    return s


# ----------------------------------------------------------------------------------------------
# strategies

def _gen_gemm(spec: ConvSpec, name: str, pl: Plan) -> str:
    s = _header(spec, name, pl)
    H, W, CIN, COUT = spec.h, spec.w, spec.cin, spec.cout
    s(1, f"m = n_batch * {H * W}", f"o2 = out.reshape(m, {COUT})")
    if any(st[0] == "add" for st in spec.epilogue):
        # out may share the residual's buffer (planned in place): keep the product apart
        s(1, f"y2 = np.dot(x.reshape(m, {CIN}), wp)")
    else:
        s(1, f"np.dot(x.reshape(m, {CIN}), wp, o2)", "y2 = o2")
    res = [f"{r} = {r}.reshape(m, {COUT})" for r in _extra_names(spec) if r.startswith("res")]
    s(1, *res)
    s(1, "for t in prange(m):")
    s(2, f"for co in range({COUT}):")
    s(3, "v = y2[t, co] + b[co]")
    s(3, *_epilogue(spec, "co", "t, co"))
    s(3, "o2[t, co] = v")
    return s.text()


def _gen_im2col(spec: ConvSpec, name: str, pl: Plan) -> str:
    """Patches packed into ``scratch`` as an (n*oh*ow, kh*kw*cin) matrix, one BLAS product,
    then bias and epilogue in one parallel pass."""
    s = _header(spec, name, pl)
    s.lines[0] = s.lines[0].replace("out):", "out, scratch):")
    H, W, CIN, COUT, KH, KW = spec.h, spec.w, spec.cin, spec.cout, spec.kh, spec.kw
    (SH, SW), (DH, DW), (PT, _, PL, _) = spec.stride, spec.dilation, spec.pads
    OH, OW = spec.out_hw
    K = KH * KW * CIN
    s(1, f"m = n_batch * {OH * OW}", f"cols = scratch[:m * {K}].reshape(m, {K})")
    s(1, f"for t in prange(n_batch * {OH}):")
    s(2, f"n = t // {OH}", f"oi = t % {OH}")
    s(2, f"for oj in range({OW}):")
    s(3, f"r = t * {OW} + oj")
    s(3, f"for ki in range({KH}):")
    s(4, f"hi = oi * {SH} - {PT} + ki * {DH}")
    s(4, f"for kj in range({KW}):")
    s(5, f"wi = oj * {SW} - {PL} + kj * {DW}", f"base = (ki * {KW} + kj) * {CIN}")
    s(5, f"if hi < 0 or hi >= {H} or wi < 0 or wi >= {W}:")
    s(6, f"for c in range({CIN}):", "    cols[r, base + c] = 0.0")
    s(5, "else:")
    s(6, f"for c in range({CIN}):", "    cols[r, base + c] = x[n, hi, wi, c]")
    s(1, f"o2 = out.reshape(m, {COUT})")
    if any(st[0] == "add" for st in spec.epilogue):
        s(1, "y2 = np.dot(cols, wp)")  # out may share the residual's buffer
    else:
        s(1, "np.dot(cols, wp, o2)", "y2 = o2")
    res = [f"{r} = {r}.reshape(m, {COUT})" for r in _extra_names(spec) if r.startswith("res")]
    s(1, *res)
    s(1, "for t in prange(m):")
    s(2, f"for co in range({COUT}):")
    s(3, "v = y2[t, co] + b[co]", *_epilogue(spec, "co", "t, co"), "o2[t, co] = v")
    return s.text()


#: depthwise convs of whole vectors of channels (multiplier 1) run as register tiles
#: where :func:`_depthwise_tiles_pay` (:func:`_gen_depthwise_tiled`); False: the per-pixel
#: loop everywhere, for comparison
DEPTHWISE_TILES = True


def _depthwise_tiles_pay(spec: ConvSpec, cpu: Target) -> bool:
    """Register tiles (one vector of channels by P px) for a depthwise conv of multiplier 1
    and whole vectors of channels, stride 1, at least 25 taps (AVX2: 49) and output rows of
    14 or more.  They pay for their padded input copy with many taps (AVX-512, the copy
    included: 5x5 on 28x28x240 82.5 -> 55.0 us, on 14x14x672 98 -> 67, 7x7 on 28x28x192
    267 -> 116, on 56x56x96 228 -> 198); 3x3 ran even (56x56x144 84.6 vs 82.5), stride 2
    lost (the copy of a 4x larger input: 3x3/2 96 on 112x112 83 -> 157, 5x5/2 144 on 56x56
    67 -> 104), and so did a 7x7 on a 7x7 map (51 -> 60).  AVX2 code, tiles of at most
    :data:`AVX2_DEPTHWISE_PIXELS` px x 8 ch (7 px: the SLP vectorizer left the tile scalar,
    3-5x slower): 7x7 on 28x28x192 and 56x56x96 ran 0.50-0.65 of the per-pixel kernel's
    time, on 14x14x384 0.84; 5x5 even (0.93-1.12, benchmarks/RESULTS.md)."""
    taps = spec.kh * spec.kw
    return (DEPTHWISE_TILES and spec.cout == spec.cin and spec.cout % cpu.lanes == 0
            and spec.stride == (1, 1) and taps >= (25 if cpu.lanes >= 16 else 49)
            and spec.out_hw[1] >= 14)


#: the most pixels of an AVX2 depthwise register tile (one ymm of channels each)
AVX2_DEPTHWISE_PIXELS = 5


def _tiled_prologue(spec: ConvSpec, name: str, pl: Plan, mirror: Halo | None = None,
                    residuals=None):
    """The start of a register-tiled kernel (blocked or depthwise): its header, ``xf`` the
    input as (n, rows, cols * cin) (the zero-padded copy made by PAD_COPY when the conv has
    padding or a ragged last tile), ``of`` the flat output when a tail function follows,
    ``xhf`` and ``<residual>f`` the flat halos it stores into and reads residuals from.
    Returns (source, tiles per row, head steps, tail steps) of the epilogue."""
    geo = _padded_geometry(spec, pl)
    s = _header(spec, name, pl, mirror)
    if geo:   # x is the zero-padded copy made by PAD_COPY: (n, rows, cols * cin)
        tiles = geo[2]
        s.lines[0] = s.lines[0].replace("(x,", "(xf,")
        s.lines[-1] = "    n_batch = xf.shape[0]"
    else:
        tiles = spec.out_hw[1] // pl.p
        s(1, f"xf = x.reshape(n_batch, {spec.h}, {spec.w * spec.cin})")
    # the tile-size rule was measured on blocked tiles; depthwise tiles keep the small-tile rule
    head, tail = split_epilogue(spec.epilogue, pl.p * pl.cb if pl.strategy == "blocked" else 0)
    if tail and not mirror:
        s(1, "of = out.reshape(-1)")
    if mirror:
        s(1, "xhf = xh.reshape(-1)")
    for name in residuals or ():
        s(1, f"{name}f = {name}.reshape(-1)")
    return s, tiles, head, tail


def _gen_depthwise_tiled(spec: ConvSpec, name: str, pl: Plan,
                         mirror: Halo | None = None, residuals=None) -> str:
    """P px x CB ch register tiles over the zero-padded input copy, as the blocked convs: per
    tap one weight vector for the P pixels' input vectors (the per-pixel loop reloads the
    weight for each pixel: two loads per FMA).  Where they pay: :func:`_depthwise_tiles_pay`.
    The tap loops stay loops around the (pixel, channel) nest, in the parallel body: nine
    unrolled nests, or the nest in a helper function, were left scalar (benchmarks/RESULTS.md)."""
    C, KH, KW = spec.cin, spec.kh, spec.kw
    (SH, SW), (DH, DW) = spec.stride, spec.dilation
    OH, OW = spec.out_hw
    CB, P = pl.cb, pl.p
    u = UNSIGNED
    s, tiles, head, tail = _tiled_prologue(spec, name, pl, mirror, residuals)
    s(1, f"for t in prange(n_batch * {OH}):")
    s(2, f"n = t // {OH}", f"oh = t % {OH}", f"acc = np.empty(({P}, {CB}), np.float32)")
    s(2, f"for cb in range({C // CB}):")
    s(3, f"co0 = cb * {CB}")
    s(3, f"for tile in range({tiles}):   # {P} output pixels per tile")
    s(4, f"ow0 = tile * {P}")
    s(4, f"for p in range({P}):", f"    for j in range({CB}):", "        acc[p, j] = 0.0")
    s(4, f"for i in range({KH}):")
    s(5, f"ih = oh * {SH} + i * {DH}")
    s(5, f"for jw in range({KW}):")
    s(6, f"base = (ow0 * {SW} + jw * {DW}) * {C} + co0")
    s(6, f"for p in range({P}):", f"    for j in range({CB}):")
    s(8, f"acc[p, j] += xf[n, ih, {u}(base + p * {SW * C} + j)] * wp[i * {KW} + jw, "
         f"{u}(co0 + j)]")
    npix = str(P) if OW % P == 0 else f"min({P}, {OW} - ow0)"
    _emit_store(s, 4, spec, pl, "acc", npix, "ow0 + p", head, mirror, residuals)
    return _finish(s, name, spec, tail, C, mirror)   # the body stored the whole output row


#: independent sums a per-pixel depthwise conv's taps are spread over (interior columns),
#: compiled without reassociation (which folded them back into one chain): one chain of 25
#: dependent FMAs per vector of channels left AVX2 code's 5x5 kernel bound by the FMA's
#: latency (0.875-0.94 of the time with four; EfficientNet-B0 0.973, benchmarks/RESULTS.md)
DEPTHWISE_CHAINS = 4


def _gen_depthwise(spec: ConvSpec, name: str, pl: Plan) -> str:
    if pl.cb:
        return _gen_depthwise_tiled(spec, name, pl)
    s = _header(spec, name, pl)
    H, W, CIN, COUT, KH, KW = spec.h, spec.w, spec.cin, spec.cout, spec.kh, spec.kw
    (SH, SW), (DH, DW), (PT, _, PL, _) = spec.stride, spec.dilation, spec.pads
    OH, OW = spec.out_hw
    M = COUT // CIN
    cidx = "c" if M == 1 else f"c // {M}"
    lo, hi = interior_cols(W, OW, KW, SW, DW, PL)
    s(1, f"xf = x.reshape(n_batch, {H}, {W * CIN})")
    fill_row(s, 1, "zrow", W * CIN, "stands in for rows in the vertical padding")
    s(1, f"for t in prange(n_batch * {OH}):")
    s(2, f"n = t // {OH}", f"oh = t % {OH}", f"acc = np.empty({COUT}, np.float32)")
    for i in range(KH):
        s(2, f"ih{i} = oh * {SH} + {i * DH - PT}",
             f"r{i} = xf[n, ih{i}] if ih{i} >= 0 and ih{i} < {H} else zrow")
    if hi > lo:
        s(2, f"for ow in range({lo}, {hi}):   # interior columns: no bounds checks")
        s(3, f"base = (ow * {SW} - {PL}) * {CIN}")
        s(3, f"for c in range({COUT}):")
        terms = [f"r{i}[base + {j * DW * CIN} + {cidx}] * wp[{i * KW + j}, c]"
                 for i in range(KH) for j in range(KW)]
        chains = min(DEPTHWISE_CHAINS, len(terms))
        s(4, *(f"a{k} = {terms[k]}" for k in range(chains)))
        s(4, *(f"a{k % chains} += {terms[k]}" for k in range(chains, len(terms))))
        s(4, f"v = b[c] + ({' + '.join(f'a{k}' for k in range(chains))})")
        s(4, *_epilogue(spec, "c", "n, oh, ow, c"))
        s(4, "out[n, oh, ow, c] = v")
    nedge = OW - (hi - lo)
    if nedge:
        s(2, f"for e in range({nedge}):   # border columns with bounds checks")
        s(3, f"ow = e if e < {lo} else e + {hi - lo}")
        s(3, f"for c in range({COUT}):")
        s(4, "acc[c] = b[c]")
        s(3, f"for i in range({KH}):")
        s(4, f"ih = oh * {SH} - {PT} + i * {DH}")
        s(4, f"if ih < 0 or ih >= {H}:")
        s(5, "continue")
        s(4, f"for j in range({KW}):")
        s(5, f"iw = ow * {SW} - {PL} + j * {DW}")
        s(5, f"if iw < 0 or iw >= {W}:")
        s(6, "continue")
        s(5, f"for c in range({COUT}):")
        s(6, f"acc[c] += xf[n, ih, iw * {CIN} + {cidx}] * wp[i * {KW} + j, c]")
        s(3, f"for c in range({COUT}):")
        s(4, "v = acc[c]")
        s(4, *_epilogue(spec, "c", "n, oh, ow, c"))
        s(4, "out[n, oh, ow, c] = v")
    helper = body_helper(s, name, {"wp": 2, "zrow": 1}, "noalias", 'FASTMATH - {"reassoc"}')
    return s.text() + helper


def _emit_store(s: Src, d: int, spec: ConvSpec, pl: Plan, acc: str, npix: str, owexpr: str,
                steps=None, mirror: Halo | None = None, residuals=None):
    """Store the tile through the unsigned channel index ``UNSIGNED``: Numba then adds no
    negative-index wraparound select per value, and the SLP vectorizer stores whole vectors
    (with a signed index a 1x1 16->96 conv on 112x112 spent twice as long in its 256 scalar
    adds and stores per tile as in its FMAs: 0.33 ms, 0.11 unsigned).  Where the last channel
    block is partial, full blocks and the last one take loops of constant width of their
    own: with the width ``min(CB, COUT - co0)`` every block's store was a loop of unknown
    length (1x1 24->72 on 56x56: 167 -> 70 us, benchmarks/RESULTS.md).  Not for one-pixel
    tiles (1x1 images: squeeze-excitation), whose ``min`` store LLVM vectorized and the two
    loops split into odd pieces (tests/asm_probe.py)."""
    CB, COUT = pl.cb, spec.cout

    def store(d: int, width) -> None:
        s(d, f"for p in range({npix}):")
        s(d + 1, f"ow = {owexpr}")
        s(d + 1, f"for j in range({width}):")
        s(d + 2, f"co = {UNSIGNED}(co0 + j)", f"v = {acc}[p, j] + b[co]")
        s(d + 2, *_epilogue(spec, "co", "n, oh, ow, co", steps, False, residuals))
        if mirror:
            s(d + 2, f"xhf[{halo_index(mirror, COUT, 'co')}] = v")
        else:
            s(d + 2, "out[n, oh, ow, co] = v")

    if COUT % CB == 0 or pl.p == 1:
        store(d, CB if COUT % CB == 0 else f"min({CB}, {COUT} - co0)")
    else:
        s(d, f"if co0 + {CB} <= {COUT}:")
        store(d + 1, CB)
        s(d, "else:")
        store(d + 1, COUT % CB)


def _padded_geometry(spec: ConvSpec, pl: Plan):
    """(rows, cols, tiles) of the zero-padded input copy the blocked kernel reads when the
    conv has padding or its output row is not a whole number of tiles; None when the input
    can be read directly."""
    OH, OW = spec.out_hw
    tiles = -(-OW // pl.p)
    if not any(spec.pads) and OW % pl.p == 0:
        return None
    rows = (OH - 1) * spec.stride[0] + (spec.kh - 1) * spec.dilation[0] + 1
    cols = (tiles * pl.p - 1) * spec.stride[1] + (spec.kw - 1) * spec.dilation[1] + 1
    return rows, max(cols, spec.pads[2] + spec.w), tiles


@dataclass(frozen=True)
class Halo:
    """The zero-bordered copy of an input image that a tiled conv with padding (or a ragged
    last tile) reads: ``rows`` rows of ``width`` floats per image, the image's pixel (0, 0)
    at row ``top`` and float ``left * cin`` of its row; zeros everywhere else.  Made by
    :data:`PAD_COPY` into scratch, or written by the producing conv itself as it stores its
    output (``generate(..., mirror=...)``)."""
    top: int
    left: int
    rows: int
    width: int


def halo(spec: ConvSpec, pl: Plan | None = None) -> Halo | None:
    """The :class:`Halo` a conv of plan ``pl`` reads its input from; None when it reads its
    input directly.  It has every row of the image, also rows a strided conv never reads."""
    pl = pl or plan(spec)
    geo = _padded_geometry(spec, pl) if tiled(pl) else None
    if geo is None:
        return None
    return Halo(spec.pads[0], spec.pads[2], max(geo[0], spec.pads[0] + spec.h),
                geo[1] * spec.cin)


def tiled(pl: Plan) -> bool:
    """Whether plan ``pl`` computes register tiles of pixels over a padded input copy."""
    return pl.strategy == "blocked" or (pl.strategy == "depthwise" and pl.cb > 0)


# One shape-generic kernel per module: the padded copy is memory bound, so it loses nothing
# to sizes known only at run time, and keeping it out of the conv kernels halves their
# compile time (each prange loop costs Numba ~0.7 s to lower).
PAD_COPY = '''def __KERNEL__(x, xf, pt, pl):
    """xf[n] = x[n] zero-padded by pt rows on top and pl columns on the left (and as many
    rows and columns after it as xf has room for).  Slice copies: 4x faster than an
    element loop (56x56x64: 11 instead of 47 us)."""
    n_batch, h, w, c = x.shape
    rows, width = xf.shape[1], xf.shape[2]
    xo = xf.reshape(-1)
    xi = x.reshape(-1)
    wc = w * c
    for t in prange(n_batch * rows):
        n = t // rows
        ih = t % rows - pt
        o = t * width
        if ih < 0 or ih >= h:
            xo[o:o + width] = 0.0
        else:
            i = (n * h + ih) * wc
            xo[o:o + pl * c] = 0.0
            xo[o + pl * c:o + pl * c + wc] = xi[i:i + wc]
            xo[o + pl * c + wc:o + width] = 0.0
'''


def _gen_blocked(spec: ConvSpec, name: str, pl: Plan, mirror: Halo | None = None,
                 residuals=None) -> str:
    """Register tiles of P output pixels x CB output channels over every output column.

    Padding and a ragged last tile are handled by first copying the input into a zero-padded
    image (:data:`PAD_COPY`, one cheap memory-bound pass), so the tile loop has no bounds
    checks and no one-pixel border path (which made 7x7 and 14x14 layers slow)."""
    CIN, COUT, KH, KW = spec.cin, spec.cout, spec.kh, spec.kw
    (SH, SW), (DH, DW), (PT, _, PL, _) = spec.stride, spec.dilation, spec.pads
    OH, OW = spec.out_hw
    G, CB, P = spec.groups, pl.cb, pl.p
    CING, COUTG = CIN // G, COUT // G
    NCB = -(-COUT // CB)
    geo = _padded_geometry(spec, pl)
    s, tiles, head, tail = _tiled_prologue(spec, name, pl, mirror, residuals)
    # NB: index xf[n, ih, k] directly; taking a row view (xr = xf[n, ih]) inside the loop
    # stops LLVM from keeping the tile in registers (5 GFLOP/s instead of 180).
    s(1, f"for t in prange(n_batch * {OH * NCB}):")
    if pl.cb_outer:
        s(2, f"cb = t // (n_batch * {OH})", f"n = (t // {OH}) % n_batch", f"oh = t % {OH}")
    else:
        s(2, f"n = t // {OH * NCB}", f"oh = (t // {NCB}) % {OH}", f"cb = t % {NCB}")
    s(2, f"co0 = cb * {CB}")
    ci0 = ""
    if G > 1:
        s(2, f"ci0 = (co0 // {COUTG}) * {CING}   # first input channel of this group")
        ci0 = " + ci0"
    s(2, f"acc = np.empty(({P}, {CB}), np.float32)   # register tile")
    s(2, f"for tile in range({tiles}):   # {P} output pixels per tile")
    s(3, f"ow0 = tile * {P}")
    s(3, f"for p in range({P}):", f"    for j in range({CB}):", "        acc[p, j] = 0.0")
    s(3, f"for i in range({KH}):")
    ih = f"oh * {SH} + i * {DH}" + ("" if geo else f" - {PT}")
    s(4, f"ih = {ih}")
    col = f"ow0 * {SW}" + ("" if geo else f" - {PL}")
    if pl.merged:
        s(4, f"base = ({col}) * {CIN}")
        s(4, f"for r in range({KW * CIN}):   # (kw, cin) contiguous in the NHWC row")
        s(5, f"for p in range({P}):")
        s(6, f"xv = xf[n, ih, base + p * {SW * CIN} + r]")
        s(6, f"for j in range({CB}):", "    acc[p, j] += xv * wp[cb, i, r, j]")
    else:
        s(4, f"for jw in range({KW}):")
        s(5, f"base = ({col} + jw * {DW}) * {CIN}{ci0}")
        s(5, f"for ci in range({CING}):")
        s(6, f"for p in range({P}):")
        s(7, f"xv = xf[n, ih, base + p * {SW * CIN} + ci]")
        s(7, f"for j in range({CB}):", f"    acc[p, j] += xv * wp[cb, i, jw * {CING} + ci, j]")
    npix = str(P) if OW % P == 0 else f"min({P}, {OW} - ow0)"
    _emit_store(s, 3, spec, pl, "acc", npix, "ow0 + p", head, mirror, residuals)
    # one-pixel tiles (1x1 images) keep the body in the loop: as a helper, their store of a
    # partial channel block was left scalar (tests/asm_probe.py, conv1x1se on AVX-512)
    return _finish(s, name, spec, tail, CB, mirror, {"wp": 4} if P > 1 else None)


def _finish(s: Src, name: str, spec: ConvSpec, tail, cb: int, mirror: Halo | None,
            helper_ranks: dict | None = None) -> str:
    """The tiled kernel's source, its parallel body ending (when the epilogue has a ``tail``)
    with the call of the tail function on the values it just stored, still in cache: the
    output row (n, oh) when ``cb`` spans every channel, else channel block ``co0``'s runs of
    it (in ``xh`` with a ``mirror``); then the tail function.  With ``helper_ranks`` (the
    ranks of the kernel's own arrays its body reads: ``wp``), the body in a helper of its
    own (:func:`~cnnc.backends.numba_cpu.kernels.body_helper`)."""
    OH, OW = spec.out_hw
    COUT = spec.cout
    static = cb if cb < COUT and COUT % cb == 0 else None   # runs of one full channel block
    if tail:
        if mirror:
            m = mirror
            flat, row = "xhf", f"(n * {m.rows} + oh + {m.top}) * {m.width} + {m.left * COUT}"
        else:
            flat, row = "of", f"(n * {OH} + oh) * {OW * COUT}"
        if cb >= COUT:   # the output row is one contiguous run
            s(2, f"{name}{TAIL}({flat}, {row}, np.int64(1), np.int64(0), np.int64({OW * COUT}))")
        else:
            width = f"np.int64({cb})" if static else f"min({cb}, {COUT} - co0)"
            s(2, f"{name}{TAIL}({flat}, {row} + co0, np.int64({OW}), np.int64({COUT}), {width})")
    helper = "" if helper_ranks is None else body_helper(s, name, helper_ranks)
    text = s.text() + helper
    return text + "\n\n" + tail_function(name, tail, static) if tail else text


def generate(spec: ConvSpec, name: str, pl: Plan | None = None,
             mirror: Halo | None = None, residuals=None) -> str:
    """The kernel's source.  Tiled plans only: with ``mirror`` (a :class:`Halo`) it stores its
    output in that zero-bordered input ``xh`` of a consumer conv, its last argument, instead
    of ``out`` (every other reader of the value reads it there too);
    ``residuals`` (extra name -> :class:`Halo`) are residual operands held in such halos.
    Either spares a :data:`PAD_COPY` pass, a parallel region that reads and writes the whole
    image again, before the consumer."""
    pl = pl or plan(spec)
    if mirror or residuals:
        return (_gen_blocked if pl.strategy == "blocked" else _gen_depthwise_tiled)(
            spec, name, pl, mirror, residuals)
    gen = {"blocked": _gen_blocked, "gemm": _gen_gemm, "im2col": _gen_im2col,
           "depthwise": _gen_depthwise, "winograd": winograd.generate}
    return gen[pl.strategy](spec, name, pl)
