"""Winograd F(2x2, 3x3) and F(4x4, 3x3) convolutions for the Numba CPU backend.

For a 3x3, stride 1, dilation 1, groups 1 convolution each m x m block of output pixels
("tile", m = 2 or 4) is computed from the a x a input patch under it (a = m + 2) as
``Y = A^T [(G g G^T) . (B^T d B)] A``: a^2 products per input/output channel pair instead of
9 m^2, i.e. 2.25x (m = 2) or 4x (m = 4) fewer multiplies.  F(4x4) has the larger
transformed weights and rounding error (~1e-5 relative against ~1e-6 on 256-512 channels);
:func:`f4_pays` says where the plan takes it.

* filter transform ``U = G g G^T``: at compile time, in float64, stored float32 as
  ``wp[channel block, k, ci, j]`` (k = a * row + column of the a x a transformed point);
* input transform: a kernel of its own (loop-vectorized, shared by convs of one input
  geometry), a parallel pass over rows of tiles writing ``V = B^T d B`` into scratch (rows
  above or below the image read a zero row, border tiles a zero-padded local patch: no
  padded copy of the input);
* per (row of tiles, block of output channels), in one parallel step: the a^2 products
  ``M[k] = V[k] @ U[k]`` as register tiles of P tiles x CB channels (the direct kernels'
  register tiles, :func:`default_plan`) into a local M, then the output transform ``A^T M A``
  fused with the bias and the epilogue (scale/shift, activation, residual add:
  :func:`~cnnc.backends.numba_cpu.scalar.epilogue_lines`) while M is in cache.

The transforms' source is generated from the matrices (:data:`TRANSFORMS`).
Scratch per image: ``a^2 * tile rows * padded tiles per row * cin`` float32 (V).

``CNNC_WINOGRAD=0`` in the environment (read at import) or ``ENABLED = False`` turns it off;
:func:`why_not` says why a spec does not take it.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from cnnc.backends.numba_cpu import target
from cnnc.backends.numba_cpu.kernels import HELPERS, UNSIGNED, Src, register_tile, fill_row
from cnnc.backends.numba_cpu.scalar import epilogue_lines

ENABLED = os.environ.get("CNNC_WINOGRAD", "1").strip() != "0"
#: where the default plan takes it, per arithmetic rate (``Target.rate_isa``): (fewest input
#: and output channels, fewest output pixels).  Measured against the direct kernel with its
#: padded copy, batch 1, Zen 5 (`python -m benchmarks.winograd_bench`,
#: benchmarks/RESULTS.md), the AVX-512 gate at its full rate.  AVX-512: 1.26-1.94x on
#: ResNet-18's and VGG's layers from 14x14 up (56x56 64->64 1.50, 14x14 256->256 1.86),
#: 1.06 on 7x7 512->512 (its transformed weights, 16 MB, are 1.8x the direct ones), 8x8
#: 64->64 1.10 at batch 1, 1.29 at 8, 1.50 at 64; ResNet-20's 16 and 32 channels 0.85-1.19
#: (compiles cost more than that).  AVX2 code: 1.59-1.98x on every ResNet-18 and VGG
#: layer, 1.46 on 8x8 64->64, 1.39 on 16x16 32->32, 0.95 on 32x32 16->16; from 64 channels
#: only, as each Winograd conv takes ~3 s more to compile than a direct one (GoogLeNet's 15
#: convs of 32 channels or more: 69 s cold on AVX2 code, against the 60 s bar).  ISAs not
#: listed (not measured) keep the direct kernel; ``cnnc tune`` times both wherever
#: :data:`TUNE_GATE` lets it.  AMD Zen 4's AVX-512, at AVX2's rate, takes AVX2's gate: 7x7
#: 512->512 F(2x2) 1.37-1.53x the direct kernel there (AVX2 code 1.34-1.53x).
GATES = {"avx512": (64, 8 * 8), "avx2": (64, 1)}
#: below :data:`GATES`, F(4x4) where it pays (:func:`f4_pays`) from any of these (channels,
#: output pixels), per arithmetic rate (``Target.rate_isa``: AVX2's on AVX2 CPUs and on AMD
#: Zen 4, whose AVX-512 runs as 256-bit halves).  Zen 4, AVX-512 and AVX2 code, batch 1 and
#: 64: F(4x4) 1.53-2.03x the direct kernel on 16x16 32->32 (F(2x2) 0.79-1.63).  From 16x16
#: outputs only: F(4x4) on GoogLeNet's 32-channel 14x14 and 7x7 convs too (4-15 MFLOP each;
#: with its 7x7 and 14x14 layers of 64 channels and more moved to Winograd as well) took its
#: cold compile from ~51 to ~62 s for 0.99x.  16 channels: 1.32-1.98x at batch 1 (32x32
#: 16->16, 28x28 16->32, 14x14 16->48, 56x56 16->16), ResNet-20 0.86-0.93x the time at batch 1
#: and 64 (with the batch in chunks, :data:`CHUNK_BYTES`; 0.90x slower at 64 before); from
#: 32x32 outputs only, as GoogLeNet's one 28x28 16->32 conv (0.2 % of its work) took its cold
#: compile 4-9 s closer to the 60 s bar.  Full-rate AVX-512 (an Intel Sapphire Rapids-class
#: Xeon; whole models, one process, interleaved): ResNet-20 0.96x the time at batch 1, 0.94
#: at 8, 0.87 at 64, GoogLeNet 0.97 and DenseNet-121 0.94 (its 56x56 and 28x28 128->32
#: convs) at batch 1; cold compiles ResNet-20 13.9 s against 10.6, GoogLeNet 37.8 and
#: DenseNet-121 44.3 as before.  (Zen 5 not measured.)
F4_GATES = {"avx2": ((32, 16 * 16), (16, 32 * 32)), "avx512": ((32, 16 * 16), (16, 32 * 32))}
#: the tuner's candidate gate on every ISA, (channels, output pixels)
TUNE_GATE = (16, 1)

# F(2x2, 3x3) transforms (Lavin & Gray 2015): interpolation points 0, 1, -1
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)
# F(4x4, 3x3): points 0, 1, -1, 2, -2 and infinity; 36 products per 16 outputs instead of 64
BT4 = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64)
G4 = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64)
AT4 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], np.float64)
#: output tile side m -> (B^T, G, A^T) of F(m x m, 3x3)
TRANSFORMS = {2: (BT, G, AT), 4: (BT4, G4, AT4)}


def applies(spec) -> bool:
    """The convolutions F(2x2, 3x3) computes: 3x3, stride 1, dilation 1, groups 1."""
    return (spec.kh == spec.kw == 3 and spec.stride == (1, 1) and spec.dilation == (1, 1)
            and spec.groups == 1 and min(spec.out_hw) >= 1)


def why_not(spec, cpu=None) -> str | None:
    """None when the default plan for ``cpu`` (default: the target plans are chosen for)
    takes Winograd for ``spec``, else the reason it does not."""
    if not ENABLED:
        return "Winograd is turned off (CNNC_WINOGRAD=0)"
    if not applies(spec):
        return "Winograd needs a 3x3 kernel, stride 1, dilation 1 and groups 1"
    cpu = cpu or target.for_plans()
    if cpu.rate_isa not in GATES:
        return (f"not measured on {cpu.isa}: the default plan there is the direct kernel "
                f"(cnnc tune times both)")
    if large_enough(spec, GATES[cpu.rate_isa]):
        return None
    small = F4_GATES.get(cpu.rate_isa, ())
    if any(large_enough(spec, gate) for gate in small) and f4_pays(spec, cpu):
        return None
    oh, ow = spec.out_hw
    cin, pixels = GATES[cpu.rate_isa]
    where = cpu.isa if cpu.rate_isa == cpu.isa else f"{cpu.isa} at {cpu.rate_isa}'s rate"
    also = "".join(f"; F(4x4) from {c} channels and {n} output pixels where it pays"
                   for c, n in small)
    return (f"{spec.cin} -> {spec.cout} channels on {oh}x{ow}: below the default plan's "
            f"Winograd gate on {where} ({cin} channels, {pixels} output pixels{also}: "
            f"winograd.GATES says why; cnnc tune times both)")


def large_enough(spec, gate=TUNE_GATE) -> bool:
    """Whether ``spec`` has the channels and output pixels of ``gate``, (channels, pixels)
    (default: the tuner's candidate gate, :data:`TUNE_GATE`)."""
    oh, ow = spec.out_hw
    return spec.cin >= gate[0] and spec.cout >= gate[0] and oh * ow >= gate[1]


def chosen(spec, cpu=None) -> bool:
    return why_not(spec, cpu) is None


def tiles(spec, m: int = 2) -> tuple[int, int]:
    """Rows and columns of m x m output tiles."""
    oh, ow = spec.out_hw
    return -(-oh // m), -(-ow // m)


def default_plan(spec, cpu=None, m: int | None = None):
    """The register tile of the transformed-domain products on ``cpu``: the products are a
    1x1 reduction, so the dense layer's tile (:func:`convgen.dense_tile`: two vectors of
    output channels, one when there are that few, and at most its rows), with as many tiles
    as keep a row of tiles little padded (:func:`convgen._row_pixels`).  The parallel loop
    reads the larger of the transformed weights and a chunk's transformed input once: channel
    blocks inner (each row of tiles read once, the weights once per row) where the weights
    are the smaller, else outer (a thread keeps a block's weights in its cache over every
    row, as the direct kernel does for deep layers).  Zen 4, AVX2 code, batch 1, whole
    model, blocks outer where the weights are larger (7x7 512->512 F(2x2): 16.8 MB of weights
    re-read by each of 4 rows; 14x14 256->256 F(4x4): 9.4 MB): ResNet-18 0.88x the time,
    VGG-11 0.86x; AVX-512 ResNet-18 and VGG-11 1.01x and 0.98x (noise);
    benchmarks/RESULTS.md."""
    from cnnc.backends.numba_cpu import convgen
    cpu = cpu or target.for_plans()
    m = m or (4 if f4_pays(spec, cpu) else 2)
    cb, hi = convgen.dense_tile(spec.cout, cpu)
    lo = convgen.pixel_range(cb, cpu)[0]
    p = convgen._row_pixels(tiles(spec, m)[1], min(lo, hi), hi)
    pl = convgen.Plan("winograd", cb=cb, p=p, merged=False, loop_vectorize=False, wino=m)
    weights = (m + 2) ** 2 * spec.cin * _geometry(spec, pl)[3] * cb
    return dataclasses.replace(pl, cb_outer=weights > scratch_elements(spec, pl) * chunk_images(
        spec, pl))


def f4_pays(spec, cpu=None) -> bool:
    """Whether F(4x4, 3x3) beats F(2x2, 3x3) for ``spec`` on ``cpu``: 36 products per 16
    outputs instead of 64, but 2.25x the transformed weights, read once per image and channel
    block (blocks outer, :func:`default_plan`) where they outweigh its transformed input:
    F(4x4) where the weights come to at most :data:`F4_WEIGHT_BYTES` per output tile.
    Measured at batch 1, F4 against F2 (benchmarks/RESULTS.md):

    - Zen 4, blocks outer (AVX-512 code; AVX2 code): 1.07x; 1.40x on 14x14 512->512 (2.4 MB of
      weights per tile), 1.63x; 1.35x on 28x28 512->512 (0.77 MB), 1.67x; 1.22x on 28x28
      256->512, 1.32x; 1.47x on 14x14 256->256, 1.2-1.9x on every larger image and on 8x8
      64->64 (two tiles a row); 0.63-1.23x on 7x7 512->512 (9.4 MB: F(4x4) moved with the
      host there, F(2x2) held 1.37-1.53x the direct kernel).
    - Zen 5, before blocks outer (every row of tiles read all the weights), AVX-512: 1.45-1.73x
      up to 48 KB per tile (112x112 64->128, 56x56 64->64, 128->256 and 256->256, 28x28
      128->128); 0.77-0.96x from 385 KB (28x28 256->512, 14x14 256->256); not measured since.
      AVX2 code lost then on 28x28 256->512 and 512->512 (0.75x, 0.85x), as it no longer
      does."""
    cpu = cpu or target.for_plans()
    rows, cols = tiles(spec, 4)
    per = cols * (rows if cpu.rate_isa in F4_PER_IMAGE else 1)
    return f4_has_tiles(spec, cpu) and (
        36 * spec.cin * spec.cout * 4 <= F4_WEIGHT_BYTES.get(cpu.rate_isa, 0) * per)


def f4_has_tiles(spec, cpu) -> bool:
    """Whether F(4x4, 3x3) is on and a row of ``spec``'s output has the tiles it needs on
    ``cpu`` (:data:`F4_MIN_TILES`); the tuner times it only there."""
    return F4_ENABLED and tiles(spec, 4)[1] >= F4_MIN_TILES.get(cpu.rate_isa, 4)


#: ``CNNC_WINOGRAD_F4=0`` in the environment (read at import) keeps F(2x2) everywhere: its
#: kernels compile in ~60 % of the time (ResNet-18 cold, AVX-512: 14-15 s against 25)
F4_ENABLED = os.environ.get("CNNC_WINOGRAD_F4", "1").strip() != "0"
#: F(4x4, 3x3) where a row has at least this many tiles and its transformed weights come to
#: at most this many bytes per output tile (per arithmetic rate, ``Target.rate_isa``),
#: :func:`f4_pays`: per tile of the image at the rates of :data:`F4_PER_IMAGE` (measured with
#: the weights read once per image), else per tile of a row (AVX-512 at full rate: measured
#: when every row read all of them, not since)
F4_MIN_TILES = {"avx512": 4, "avx2": 2}
F4_WEIGHT_BYTES = {"avx512": 1 << 20, "avx2": 5 << 19}
F4_PER_IMAGE = frozenset({"avx2"})


def _geometry(spec, pl):
    """(TH, TW, TWP, NCB): tile rows, tiles per row, tiles per row padded to whole register
    tiles, channel blocks."""
    th, tw = tiles(spec, pl.wino)
    return th, tw, -(-tw // pl.p) * pl.p, -(-spec.cout // pl.cb)


def scratch_elements(spec, pl) -> int:
    """Float32 elements per image: the transformed input V ((m + 2)^2 points of every
    tile)."""
    th, _, twp, _ = _geometry(spec, pl)
    return (pl.wino + 2) ** 2 * th * twp * spec.cin


#: bytes of transformed input per chunk of images: a batch runs through the input transform
#: and the products a chunk at a time (at least one image), so that the products read what
#: the transform wrote from cache.  Zen 4, one conv at a time, whole batch -> chunks:
#: 56x56 64->64 batch 8 F(4x4) 4.67 -> 3.68 ms (AVX-512), 4.92 -> 4.16 (AVX2 code), F(2x2)
#: 7.29 -> 5.97 (AVX2); 28x28 128->128 b8 1.13x, 14x14 256->256 1.04x; 32x32 16->16 batch 64
#: F(4x4) 1.20-1.24x; 16x16 32->32 and 8x8 64->64 at 64 no faster with 1 MB chunks than whole
#: (benchmarks/RESULTS.md)
CHUNK_BYTES = 2 << 20


def chunk_images(spec, pl) -> int:
    """Images per chunk (:data:`CHUNK_BYTES`)."""
    return max(1, CHUNK_BYTES // (4 * scratch_elements(spec, pl)))


def transform_filter(w_hwio, m: int = 2) -> np.ndarray:
    """(3, 3, cin, cout) -> U[k, ci, co] = (G g G^T)[k // a, k % a] (a = m + 2), computed in
    float64."""
    g = TRANSFORMS[m][1]
    w = np.asarray(w_hwio, np.float64)
    u = np.einsum("ai,ijco,bj->abco", g, w, g)
    return u.reshape(len(g) ** 2, w.shape[2], w.shape[3])


def pack_weights(spec, w_hwio, pl) -> np.ndarray:
    """U as the products read it: (channel block, k, ci, CB), the last block zero-padded."""
    assert np.shape(w_hwio) == (3, 3, spec.cin, spec.cout), np.shape(w_hwio)
    ncb, pts = _geometry(spec, pl)[3], (pl.wino + 2) ** 2
    u = np.zeros((pts, spec.cin, ncb * pl.cb), np.float32)
    u[..., :spec.cout] = transform_filter(w_hwio, pl.wino)
    return np.ascontiguousarray(u.reshape(pts, spec.cin, ncb, pl.cb).transpose(2, 0, 1, 3))


# ----------------------------------------------------------------------------------------------
# source generation
#: suffix of the kernel's loop-vectorized output-transform helper (compiled before it, see
#: kernels.compile_tail)
OUT = "_wgout"
#: suffix of the input transform kernel's helper, which transforms one row of tiles
IN = "_wgin"
#: suffix of the products kernel's helper: the body of its parallel loop (a register tile,
#: kernels.compile_tail)
ROW = "_wgrow"
_U = UNSIGNED


def _combination(row, names) -> str:
    """``sum(row[j] * names[j])`` as float32 source: the positive terms first, +-1 as adds."""
    terms = sorted(((float(c), v) for c, v in zip(row, names) if c), key=lambda t: t[0] < 0)
    out = ""
    for c, v in terms:
        term = v if abs(c) == 1 else f"np.float32({abs(c)!r}) * {v}"
        out += (term if not out and c > 0 else f"-{term}" if not out
                else f" + {term}" if c > 0 else f" - {term}")
    return out


def _input_transform(s: Src, d: int, m: int, load, store) -> None:
    """Statements computing the a^2 points (a = m + 2) of (B^T d B) from d_rc =
    ``load(r, c)`` and storing point k by ``store(k, value)``."""
    bt, a = TRANSFORMS[m][0], m + 2
    for r in range(a):
        s(d, *(f"d{r}{c} = {load(r, c)}" for c in range(a)))
    for c in range(a):   # B^T d
        s(d, *(f"t{i}{c} = {_combination(bt[i], [f'd{j}{c}' for j in range(a)])}"
               for i in range(a)))
    for r in range(a):   # (B^T d) B
        for c in range(a):
            s(d, store(a * r + c, _combination(bt[c], [f"t{r}{j}" for j in range(a)])))


def generate_input(spec, name: str, pl) -> str:
    """The kernel ``name(x, scratch)`` writing the transformed input V into ``scratch`` as
    ``v[(((n * TH + th) * a^2 + k) * TWP + tile) * CIN + ci]``: a parallel loop over rows of
    tiles (a zero row for rows in the padding), each transformed by the helper
    ``{name}_wgin`` (kernels.compile_tail compiles it first; as the loop's body, Numba's
    parallel-loop passes took 4.9 s to compile an F(4x4) transform, 1.7 s with the helper).
    A tile reads its (m + 2)^2 patch from the rows themselves, or, at the left and right
    borders, from a local copy with zeros for the columns in the padding, so the transform
    is written once; it indexes with unsigned integers, so the channel loop is vectorized
    (compiled with the loop vectorizer).  The spare tiles that pad a row to whole register
    tiles get zeros.  It depends on the input geometry only, so convs of the same input
    shape share it (a plain and a residual variant of one ResNet layer)."""
    H, W, CIN, PT, PL = spec.h, spec.w, spec.cin, spec.pads[0], spec.pads[2]
    TH, TW, TWP, _ = _geometry(spec, pl)
    m = pl.wino
    a, pts = m + 2, (m + 2) ** 2
    rows, arows = ", ".join(f"r{r}" for r in range(a)), ", ".join(f"a{r}" for r in range(a))
    s = Src()(0, f"def {name}(x, scratch):")
    s(1, f'"""winograd F({m}x{m}, 3x3) input transform: {H}x{W}x{CIN}, pads top {PT} left '
         f'{PL}, {TH}x{TW} tiles padded to {TWP} per row"""')
    s(1, "n_batch = x.shape[0]", f"xf = x.reshape(n_batch, {H}, {W * CIN})",
      f"v = scratch[:n_batch * {pts * TH * TWP * CIN}]")
    fill_row(s, 1, "zrow", W * CIN, "stands in for rows in the padding")
    s(1, f"for t in prange(n_batch * {TH}):", f"    {name}{IN}(xf, zrow, v, np.int64(t))")
    h = Src()(0, '@njit(fastmath=FASTMATH, error_model="numpy", cache=True)')
    h(0, f"def {name}{IN}(xf, zrow, v, t):")
    h(1, '"""winograd input transform of the row of tiles t"""')
    h(1, f"ih = (t % {TH}) * {m} - {PT}", f"n = t // {TH}", f"vb = t * {pts * TWP * CIN}")
    for r in range(a):
        h(1, f"r{r} = xf[n, ih + {r}] if ih + {r} >= 0 and ih + {r} < {H} else zrow")
    h(1, f"pt = np.zeros(({a}, {a * CIN}), np.float32)   # a border tile's patch")
    h(1, f"for tw in range({TW}):")
    h(2, f"iw = tw * {m} - {PL}", f"vt = {_U}(vb + tw * {CIN})")
    h(2, f"if iw >= 0 and iw + {a} <= {W}:")
    h(3, f"{arows} = {rows}", f"xb = {_U}(iw * {CIN})")
    h(2, "else:")
    h(3, f"for c in range({a}):")
    h(4, f"ok = iw + c >= 0 and iw + c < {W}", f"lo = (iw + c) * {CIN} if ok else 0")
    h(4, f"for i in range({CIN}):")
    h(5, *(f"pt[{r}, c * {CIN} + i] = r{r}[lo + i] if ok else np.float32(0.0)"
           for r in range(a)))
    h(3, f"{arows} = {', '.join(f'pt[{r}]' for r in range(a))}", f"xb = {_U}(0)")
    h(2, f"for ci in range({CIN}):", f"    cu = {_U}(ci)")
    _input_transform(h, 3, m, lambda r, c: f"a{r}[xb + {_U}({c * CIN}) + cu]",
                     lambda k, val: f"v[vt + {_U}({k * TWP * CIN}) + cu] = {val}")
    if TWP > TW:
        h(1, f"for k in range({pts}):   # spare tiles")
        h(2, f"for i in range({(TWP - TW) * CIN}):")
        h(3, f"v[{_U}(vb + (k * {TWP} + {TW}) * {CIN} + i)] = np.float32(0.0)")
    helpers = ((f"{name}{IN}", (3, 1, 1, -1)),)
    return (s.text() + "\n\n" + h.text() + f"\n\n{name}{HELPERS} = {helpers!r}\n")


def _gen_output(spec, name: str, pl, extras: list[str], in_place=()) -> str:
    """``{name}_wgout(m3, b, *extras, of, n, th, co0)``: A^T M A of a row of tiles for channel
    block ``co0`` (M as ``m3[k, tile, j]``), plus the bias and the epilogue,
    into the flat output ``of`` (residuals flat too); vectorized over the block's channels.
    A residual named in ``in_place`` (the output overwrites it) is read from ``of``: as a
    second array the loop vectorizer's overlap check failed and the scalar loop ran (56x56
    64->64 + add + ReLU: 414 instead of 311 us)."""
    OH, OW, COUT, CB = *spec.out_hw, spec.cout, pl.cb
    _, TW, TWP, _ = _geometry(spec, pl)
    m = pl.wino
    a, at = m + 2, TRANSFORMS[m][2]
    s = Src()(0, '@njit(fastmath=FASTMATH, error_model="numpy", cache=True)')
    s(0, f"def {name}{OUT}({', '.join(['m3', 'b', *extras, 'of', 'n', 'th', 'co0'])}):")
    s(1, '"""winograd output transform and epilogue of one row of tiles, one channel block"""')
    s(1, "m = m3.reshape(-1)", f"oh0 = th * {m}")
    if OH % m:
        s(1, *(f"row{r} = oh0 + {r} < {OH}" for r in range(1, m)))
    width = str(CB) if COUT % CB == 0 else f"min({CB}, {COUT} - co0)"
    s(1, f"for tw in range({TW}):")
    s(2, f"ow0 = tw * {m}", f"mb = {_U}(tw * {CB})",
      f"ob = {_U}(((n * {OH} + oh0) * {OW} + ow0) * {COUT} + co0)")
    if OW % m:
        s(2, *(f"col{c} = ow0 + {c} < {OW}" for c in range(1, m)))
    s(2, f"for j in range({width}):")
    s(3, f"ju = {_U}(j)", f"c = {_U}(co0) + ju")
    s(3, *(f"m{k // a}{k % a} = m[mb + {_U}({k * TWP * CB}) + ju]" for k in range(a * a)))
    for c in range(a):   # A^T M
        s(3, *(f"s{i}{c} = {_combination(at[i], [f'm{j}{c}' for j in range(a)])}"
               for i in range(m)))
    s(3, "bias = b[c]")
    residuals = {e: "oi" for e in extras if e.startswith("res")}
    reads = ["of" if e in in_place else e for e in extras]
    residuals.update({"of": "oi"} if in_place else {})
    for r in range(m):
        for c in range(m):
            y = _combination(at[c], [f"s{r}{j}" for j in range(a)])
            conds = ([] if r == 0 or OH % m == 0 else [f"row{r}"]) + \
                    ([] if c == 0 or OW % m == 0 else [f"col{c}"])
            d = 3
            if conds:
                s(3, f"if {' and '.join(conds)}:")
                d = 4
            s(d, f"oi = ob + {_U}({(r * OW + c) * COUT}) + ju", f"v = {y} + bias")
            s(d, *epilogue_lines(spec.epilogue, "v", reads, "c", "oi", True, residuals))
            s(d, "of[oi] = v")
    return s.text()


def generate(spec, name: str, pl=None, in_place=()) -> str:
    """The kernel ``name(x, wp, b, *extras, out, scratch)`` and its output-transform helper;
    it reads the transformed input that :func:`generate_input`'s kernel, called before it,
    left in ``scratch`` (``x`` only gives the batch size).

    Each parallel step takes one row of tiles and one block of CB output channels: a^2
    products V[k] @ U[k] as register tiles of P tiles x CB channels
    (:func:`kernels.register_tile`, compiled without the loop vectorizer like the direct
    kernels) into a local M of the row, then its output transform with the epilogue
    (:func:`_gen_output`, loop-vectorized) while M is still in cache.  That body is the
    helper ``{name}_wgrow``, which takes the views the kernel makes (made inside it, they
    kept LLVM storing the tile back on every reduction step): as the loop's body, LLVM
    optimised the tile twice (Numba links a parallel loop's body into the kernel and
    optimises the whole again), and an F(4x4) products kernel compiled in 2.0 s, 1.5 s with
    the helper, at the same speed.  ``in_place``: the
    names of the residual operands (``res<k>``) whose buffer the output takes."""
    from cnnc.backends.numba_cpu.convgen import _extra_names
    pl = pl if pl is not None and pl.cb >= 1 else default_plan(spec)
    H, W, CIN, COUT = spec.h, spec.w, spec.cin, spec.cout
    OH, OW = spec.out_hw
    TH, TW, TWP, NCB = _geometry(spec, pl)
    P, CB, M = pl.p, pl.cb, pl.wino
    pts = (M + 2) ** 2
    extras = _extra_names(spec)
    flat = [f"{e}f" if e.startswith("res") else e for e in extras]
    s = Src()
    s(0, f"def {name}({', '.join(['x', 'wp', 'b', *extras, 'out', 'scratch'])}):")
    s(1, f'"""winograd F({M}x{M}, 3x3) conv: {H}x{W}x{CIN} -> {OH}x{OW}x{COUT}, '
         f'p{spec.pads}, {TH}x{TW} tiles, products in tiles of {P} x {CB}ch, epilogue '
         f'{list(spec.epilogue)}"""')
    s(1, "n_batch = x.shape[0]",
         f"v3 = scratch[:n_batch * {pts * TH * TWP * CIN}].reshape(n_batch * {pts * TH}, "
         f"{TWP * CIN})", "of = out.reshape(-1)",
         *(f"{e}f = {e}.reshape(-1)" for e in extras if e.startswith("res")))
    args = ", ".join(["v3", "wp", "b", *flat, "of", "n_batch"])
    s(1, f"for q in prange(n_batch * {TH * NCB}):", f"    {name}{ROW}({args}, np.int64(q))")
    h = Src()(0, '@njit(fastmath=FASTMATH, error_model="numpy", cache=True)')
    h(0, f"def {name}{ROW}({args}, q):")
    h(1, '"""winograd products of one row of tiles and one channel block, then its output '
         'transform"""')
    if pl.cb_outer:
        h(1, f"cb = q // (n_batch * {TH})", f"t = q % (n_batch * {TH})")
    else:
        h(1, f"t = q // {NCB}", f"cb = q % {NCB}")
    h(1, f"n = t // {TH}", f"th = t % {TH}", f"vr = t * {pts}",
      f"m = np.empty(({pts}, {TWP}, {CB}), np.float32)   # the row's M, one channel block",
      f"acc = np.empty(({P}, {CB}), np.float32)   # register tile")
    h(1, f"for k in range({pts}):")
    h(2, f"for tb in range({TWP // P}):")
    h(3, f"t0 = tb * {P}")
    register_tile(h, 3, P, CB, "ci", CIN, f"v3[vr + k, (t0 + r) * {CIN} + ci]",
                  "wp[cb, k, ci, j]", alloc=False)
    h(3, f"for r in range({P}):", f"    for j in range({CB}):",
      "        m[k, t0 + r, j] = acc[r, j]")
    # m itself, not a flat view of it: a view of it made here kept the register tile in
    # memory (9.4 ms instead of 0.39 for 28x28 128->128)
    h(1, f"{name}{OUT}({', '.join(['m', 'b', *flat, 'of', 'n', 'th', 'cb * ' + str(CB)])})")
    helpers = ((f"{name}{OUT}", (3, 1, *[1] * len(extras), 1, -1, -1, -1)),
               (f"{name}{ROW}", (2, 4, 1, *[1] * len(extras), 1, -1, -1), "tiled"))
    return (s.text() + "\n\n" + _gen_output(spec, name, pl, extras, in_place)
            + "\n\n" + h.text()
            + f"\n\n{name}{HELPERS} = {helpers!r}\n")
