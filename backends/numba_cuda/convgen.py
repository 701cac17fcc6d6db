"""Source generators for convolution and dense kernels of the Numba CUDA backend.

Every kernel reads and writes flat float32 device arrays (NHWC activations, C-contiguous) and
takes the batch size ``n`` as its first argument; all other sizes are literals in the source.

Two strategies (``choose(spec)``):

* ``gemm`` - an implicit GEMM. The conv is ``out[m, co] = sum_k A[m, k] * B[k, co]`` with
  ``m = (image, oh, ow)`` (the pixels), ``k = (i, j, ci)`` (the taps of one group) and
  ``B = w.reshape(kh*kw*cin_g, cout_g)`` (HWIO flattened; per group when groups > 1). A block
  of ``(BM/TM)*(BN/TN)`` threads computes a BM-pixel x BN-channel output tile: per BK-deep
  slice of ``k`` it loads the input-patch tile ``A[BM, BK]`` (im2col on the fly, zeros for
  padding) and the weight tile ``B[BK, BN]`` into shared memory, cooperatively and coalesced
  (consecutive threads read consecutive ``k``: consecutive input channels in NHWC; and
  consecutive output channels of ``B``), then each thread accumulates a TM x TN register tile
  (rows ``tr + i*BM/TM``, columns ``tc + j*BN/TN``: conflict-free shared-memory reads and
  coalesced stores). ``A`` is stored transposed with one padding column (no bank conflicts on
  the transposed store). The bias and the whole epilogue run on the registers before the one
  store. ``blockIdx.z`` is the group. Dense layers are the same kernel with a 1x1 "image".
* ``direct`` - one thread per output element (consecutive threads: consecutive output
  channels), a loop over the taps. Used for depthwise convs (a GEMM with k = kh*kw only is all
  loads) and for tiny channel counts where a tile would be mostly padding.

GPU tiles (256 threads, BK = 16, the k loop unrolled by 4; ``Profile.tiles``), by output
channels per group: >= 64: 64x64/4x4, 32x64/2x4, 32x32/2x2, 16x32/1x2; >= 32: 128x32/8x2,
64x32/4x2, 32x32/2x2, 16x32/1x2; fewer: 128x16/8x1, 64x16/4x1, 32x16/2x1. Each candidate is
generated (and compiled on first use); for each batch size the runtime launches the first one
whose grid has at least 2 blocks per SM (:func:`pick`), else the one with the most blocks - so
batch 32 runs the big tiles and batch 1 the late 7x7 layers with small ones. Grid:
``(ceil(n*oh*ow / BM), ceil(cout_g / BN), groups)``. Element-wise style kernels use blocks of
256 threads, grid-stride, at most 8192 blocks. With ptxas 13.5 for sm_90 the 64x64 tile takes
126 registers, 8.3 KB of shared memory and no spills (tests/cuda/test_ptx.py checks spills).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnc.backends.numba_cpu.convgen import ConvSpec
from cnnc.backends.numba_cpu.kernels import Src
from cnnc.backends.numba_cpu.scalar import epilogue_lines


@dataclass(frozen=True)
class Tile:
    """An implicit-GEMM block tile: BM pixels x BN channels, BK-deep k slices, TM x TN per
    thread."""

    bm: int
    bn: int
    bk: int
    tm: int
    tn: int

    @property
    def threads(self) -> int:
        return (self.bm // self.tm) * (self.bn // self.tn)

    def __str__(self) -> str:
        return f"{self.bm}x{self.bn}x{self.bk}/{self.tm}x{self.tn}"


@dataclass(frozen=True)
class Profile:
    """Launch sizes for a real GPU or for the CUDA simulator (one Python thread per CUDA
    thread: blocks of a handful of threads, few blocks)."""

    name: str
    block: int          # threads per block of element-wise kernels
    max_blocks: int     # grid cap of grid-stride kernels
    softmax_threads: int

    def tiles(self, spec: ConvSpec) -> list[Tile]:
        """Candidate GEMM tiles, largest first: the runtime takes the first one that gives
        the GPU enough blocks at the batch size of the call (see :func:`pick`)."""
        cout_g = spec.cout // spec.groups
        if self.name == "sim":
            return [Tile(8, 8, 16, 2, 2) if cout_g >= 8 else Tile(8, 4, 16, 2, 1)]
        if cout_g >= 64:
            return [Tile(64, 64, 16, 4, 4), Tile(32, 64, 16, 2, 4), Tile(32, 32, 16, 2, 2),
                    Tile(16, 32, 16, 1, 2)]
        if cout_g >= 32:
            return [Tile(128, 32, 16, 8, 2), Tile(64, 32, 16, 4, 2), Tile(32, 32, 16, 2, 2),
                    Tile(16, 32, 16, 1, 2)]
        return [Tile(128, 16, 16, 8, 1), Tile(64, 16, 16, 4, 1), Tile(32, 16, 16, 2, 1)]


def pick(grids: list[tuple], target: int) -> int:
    """Index of the first candidate launch with at least ``target`` blocks, else of the one
    with the most blocks (small batches: more, smaller tiles keep every SM busy)."""
    sizes = [int(np.prod(g)) for g in grids]
    for i, n in enumerate(sizes):
        if n >= target:
            return i
    return int(np.argmax(sizes))


GPU = Profile("gpu", block=256, max_blocks=8192, softmax_threads=128)
SIM = Profile("sim", block=16, max_blocks=2, softmax_threads=4)
BLOCKS_PER_SM = 2  # a launch with fewer blocks than SMs x this leaves SMs idle


def choose(spec: ConvSpec) -> str:
    """``"direct"`` for depthwise convs and tiny channel counts, else ``"gemm"``."""
    cin_g, cout_g = spec.cin // spec.groups, spec.cout // spec.groups
    if (spec.groups > 1 and cin_g == 1) or cout_g < 4 or spec.kh * spec.kw * cin_g < 4:
        return "direct"
    return "gemm"


def pack_weights(spec: ConvSpec, w_hwio: np.ndarray, strategy: str) -> np.ndarray:
    """HWIO -> the layout the kernel reads: (kh*kw*cin_g, cout) for ``direct`` and for
    ``gemm`` with one group; (groups, kh*kw*cin_g, cout_g) for a grouped ``gemm``."""
    w = np.asarray(w_hwio, dtype=np.float32)
    cin_g = spec.cin // spec.groups
    k = spec.kh * spec.kw * cin_g
    if strategy == "direct" or spec.groups == 1:
        return np.ascontiguousarray(w.reshape(k, spec.cout))
    g, cout_g = spec.groups, spec.cout // spec.groups
    return np.ascontiguousarray(w.reshape(k, g, cout_g).transpose(1, 0, 2))


def extra_names(epilogue) -> list[str]:
    names = []
    for step in epilogue:
        if step[0] == "scale_shift":
            names += [f"scale{len(names)}", f"shift{len(names) + 1}"]
        elif step[0] == "add":
            names.append(f"res{len(names)}")
    return names


def _header(s: Src, name: str, spec: ConvSpec, what: str) -> None:
    oh, ow = spec.out_hw
    args = ", ".join(["n", "x", "wp", "b", *extra_names(spec.epilogue), "out"])
    s(0, f"def {name}({args}):")
    s(1, f'"""{what}: {spec.h}x{spec.w}x{spec.cin} -> {oh}x{ow}x{spec.cout}, '
         f'k{spec.kh}x{spec.kw} s{spec.stride} p{spec.pads} d{spec.dilation} g{spec.groups}, '
         f'epilogue {list(spec.epilogue)}"""')


def _pixel(s: Src, d: int, spec: ConvSpec, m: str) -> None:
    """``img, oh, ow`` of output pixel ``m``."""
    oh, ow = spec.out_hw
    if oh * ow == 1:
        s(d, f"img = {m}", "oh = 0", "ow = 0")
        return
    s(d, f"img = {m} // {oh * ow}", f"p = {m} - img * {oh * ow}", f"oh = p // {ow}",
      f"ow = p - oh * {ow}")


def _padded(spec: ConvSpec) -> bool:
    return any(spec.pads)


def _pointwise(spec: ConvSpec) -> bool:
    """A 1x1, stride-1, unpadded conv: output pixel m reads input pixel m."""
    return spec.kh == spec.kw == 1 and spec.stride == (1, 1) and not _padded(spec)


def _lin(a: str, k: int, b: int = 0) -> str:
    """Source of ``a * k + b`` without the no-op parts."""
    t = a if k == 1 else f"{a} * {k}"
    return t if b == 0 else f"{t} + {b}" if b > 0 else f"{t} - {-b}"


def _store(s: Src, d: int, spec: ConvSpec, acc: str, m: str, co: str, flat: str) -> None:
    s(d, f"v = {acc} + b[{co}]")
    s(d, *epilogue_lines(spec.epilogue, "v", extra_names(spec.epilogue), co, flat))
    s(d, f"out[{flat}] = v")


# ----------------------------------------------------------------------------------------------
def _cooperative(s: Src, depth: int, count: int, threads: int) -> int:
    """The loop by which ``threads`` threads of a block visit ``count`` tile elements: element
    ``e`` per step (``e < count`` guarded when it does not divide); returns the body depth."""
    s(depth, f"for r in range({-(-count // threads)}):")
    s(depth + 1, f"e = tid + r * {threads}")
    if count % threads:
        s(depth + 1, f"if e < {count}:")
        return depth + 2
    return depth + 1


def gen_gemm(name: str, spec: ConvSpec, tile: Tile) -> str:
    H, W, CIN, COUT, KH, KW = spec.h, spec.w, spec.cin, spec.cout, spec.kh, spec.kw
    (SH, SW), (DH, DW), (PT, _, PL, _) = spec.stride, spec.dilation, spec.pads
    OH, OW = spec.out_hw
    G = spec.groups
    CING, COUTG = CIN // G, COUT // G
    K = KH * KW * CING
    BM, BN, BK, TM, TN = tile.bm, tile.bn, tile.bk, tile.tm, tile.tn
    RT, CT, T = BM // TM, BN // TN, tile.threads
    assert BM % TM == 0 and BN % TN == 0, tile
    s = Src()
    _header(s, name, spec, f"implicit-GEMM conv, tile {tile} ({T} threads)")
    s(1, f"As = cuda.shared.array(({BK}, {BM + 1}), float32)   # input patches, k-major",
      f"Bs = cuda.shared.array(({BK}, {BN}), float32)   # weights",
      f"acc = cuda.local.array(({TM}, {TN}), float32)",
      f"ar = cuda.local.array({TM}, float32)", f"br = cuda.local.array({TN}, float32)",
      "tid = cuda.threadIdx.x", f"tr = tid // {CT}", f"tc = tid % {CT}",
      f"m0 = cuda.blockIdx.x * {BM}", f"c0 = cuda.blockIdx.y * {BN}",
      f"mtot = n * {OH * OW}")
    ci_off = w_off = co_off = ""
    if G > 1:
        s(1, "g = cuda.blockIdx.z")
        ci_off, w_off, co_off = f" + g * {CING}", f"g * {K * COUTG} + ", f"g * {COUTG} + "
    s(1, f"for i in range({TM}):", f"    for j in range({TN}):", "        acc[i, j] = 0.0")
    s(1, f"for k0 in range(0, {K}, {BK}):")
    # ---- A tile: BM x BK input values, consecutive threads along k (channels) ----
    d = _cooperative(s, 2, BM * BK, T)
    s(d, f"kk = e % {BK}", f"mm = e // {BK}", "m = m0 + mm", "k = k0 + kk", "v = float32(0.0)")
    s(d, "if m < mtot" + (f" and k < {K}:" if K % BK else ":"))
    if _pointwise(spec):
        s(d + 1, f"v = x[m * {CIN}{ci_off} + k]")
    else:
        _pixel(s, d + 1, spec, "m")
        if KH * KW == 1:
            s(d + 1, "ci = k", f"ih = {_lin('oh', SH, -PT)}", f"iw = {_lin('ow', SW, -PL)}")
        else:
            s(d + 1, f"ti = k // {KW * CING}", f"rest = k - ti * {KW * CING}",
              f"tj = rest // {CING}", f"ci = rest - tj * {CING}",
              f"ih = {_lin('oh', SH, -PT)} + {_lin('ti', DH)}",
              f"iw = {_lin('ow', SW, -PL)} + {_lin('tj', DW)}")
        load = f"v = x[((img * {H} + ih) * {W} + iw) * {CIN}{ci_off} + ci]"
        if _padded(spec):
            s(d + 1, f"if ih >= 0 and ih < {H} and iw >= 0 and iw < {W}:", f"    {load}")
        else:
            s(d + 1, load)
    s(d, "As[kk, mm] = v")
    # ---- B tile: BK x BN weights, consecutive threads along output channels ----
    d = _cooperative(s, 2, BK * BN, T)
    s(d, f"nn = e % {BN}", f"kk = e // {BN}", "k = k0 + kk", "c = c0 + nn", "v = float32(0.0)")
    cond = [f"c < {COUTG}"] + ([f"k < {K}"] if K % BK else [])
    s(d, f"if {' and '.join(cond)}:", f"    v = wp[{w_off}k * {COUTG} + c]")
    s(d, "Bs[kk, nn] = v")
    s(2, "cuda.syncthreads()")
    # ---- the register tile (the k loop unrolled by hand: Numba has no unroll pragma) ----
    unroll = next(u for u in (4, 2, 1) if BK % u == 0)
    s(2, f"for kb in range(0, {BK}, {unroll}):")
    for u in range(unroll):
        kk = f"kb + {u}" if u else "kb"
        s(3, f"for i in range({TM}):", f"    ar[i] = As[{kk}, tr + i * {RT}]")
        s(3, f"for j in range({TN}):", f"    br[j] = Bs[{kk}, tc + j * {CT}]")
        s(3, f"for i in range({TM}):", f"    for j in range({TN}):",
          "        acc[i, j] += ar[i] * br[j]")
    s(2, "cuda.syncthreads()")
    # ---- bias, epilogue, store ----
    s(1, f"for i in range({TM}):")
    s(2, f"m = m0 + tr + i * {RT}")
    s(2, "if m < mtot:")
    s(3, f"for j in range({TN}):")
    s(4, f"c = c0 + tc + j * {CT}")
    s(4, f"if c < {COUTG}:")
    s(5, f"co = {co_off}c")
    _store(s, 5, spec, "acc[i, j]", "m", "co", f"m * {COUT} + co")
    return s.text()


def gemm_grid(spec: ConvSpec, tile: Tile):
    oh, ow = spec.out_hw
    cols = -(-(spec.cout // spec.groups) // tile.bn)

    def grid(n: int) -> tuple[int, int, int]:
        return (max(1, -(-n * oh * ow // tile.bm)), cols, spec.groups)
    return grid


# ----------------------------------------------------------------------------------------------
def gen_direct(name: str, spec: ConvSpec) -> str:
    H, W, CIN, COUT, KH, KW = spec.h, spec.w, spec.cin, spec.cout, spec.kh, spec.kw
    (SH, SW), (DH, DW), (PT, _, PL, _) = spec.stride, spec.dilation, spec.pads
    OH, OW = spec.out_hw
    G = spec.groups
    CING, COUTG = CIN // G, COUT // G
    s = Src()
    _header(s, name, spec, "direct conv, one thread per output element")
    s(1, f"for t in range(cuda.grid(1), n * {OH * OW * COUT}, cuda.gridsize(1)):")
    s(2, f"co = t % {COUT}", f"m = t // {COUT}")
    _pixel(s, 2, spec, "m")
    cin0 = ""
    if G > 1:  # the group's first input channel (depthwise: the input channel itself)
        s(2, f"cin0 = {_lin(f'(co // {COUTG})' if COUTG > 1 else 'co', CING)}")
        cin0 = " + cin0"
    s(2, "acc = float32(0.0)")
    s(2, f"for ti in range({KH}):")
    s(3, f"ih = {_lin('oh', SH, -PT)} + {_lin('ti', DH)}")
    d = 3
    if _padded(spec):
        s(d, f"if ih >= 0 and ih < {H}:")
        d += 1
    s(d, f"for tj in range({KW}):")
    s(d + 1, f"iw = {_lin('ow', SW, -PL)} + {_lin('tj', DW)}")
    d += 1
    if _padded(spec):
        s(d, f"if iw >= 0 and iw < {W}:")
        d += 1
    s(d, f"base = ((img * {H} + ih) * {W} + iw) * {CIN}{cin0}")
    if CING == 1:
        s(d, f"acc += x[base] * wp[(ti * {KW} + tj) * {COUT} + co]")
    else:
        s(d, f"wb = (ti * {KW} + tj) * {CING}")
        s(d, f"for ci in range({CING}):",
          f"    acc += x[base + ci] * wp[(wb + ci) * {COUT} + co]")
    _store(s, 2, spec, "acc", "m", "co", "t")
    return s.text()


def direct_grid(spec: ConvSpec, profile: Profile):
    oh, ow = spec.out_hw

    def grid(n: int) -> int:
        return max(1, min(profile.max_blocks, -(-n * oh * ow * spec.cout // profile.block)))
    return grid
