"""Winograd F(2x2, 3x3) convolution for the Numba CPU backend.

For a 3x3, stride 1, dilation 1, groups 1 convolution each 2x2 block of output pixels
("tile") is computed from the 4x4 input patch under it as ``Y = A^T [(G g G^T) . (B^T d B)] A``:
16 products per input/output channel pair instead of 36, i.e. 2.25x fewer multiplies.

* filter transform ``U = G g G^T``: at compile time, in float64, stored float32 as
  ``wp[k, ci, co]`` (k = 4 * row + column of the 4x4 transformed point), the right operand
  of 16 GEMMs;
* input transform: a parallel pass writing ``V[k, tile, ci] = (B^T d B)[k]`` into scratch.
  Rows above or below the image read a zero row; tiles at the left and right borders take a
  bounds-checked path, all others none, so there is no padded copy of the input;
* 16 GEMMs ``M[k] = V[k] @ U[k]`` (``np.dot`` into scratch: multi-threaded BLAS, called
  outside the parallel loops so its threads do not compete with Numba's);
* output transform ``A^T M A`` fused with the bias and the epilogue (scale/shift, activation,
  residual add: :func:`~cnnc.backends.numba_cpu.scalar.epilogue_lines`), written to ``out``.

Scratch per image: ``16 * tiles * (cin + cout)`` float32 (V then M).

``CNNC_WINOGRAD=0`` in the environment (read at import) or ``ENABLED = False`` turns it off;
:func:`why_not` says why a spec does not take it.
"""

from __future__ import annotations

import os

import numpy as np

from cnnc.backends.numba_cpu import target
from cnnc.backends.numba_cpu.kernels import Src, register_tile
from cnnc.backends.numba_cpu.scalar import epilogue_lines

ENABLED = os.environ.get("CNNC_WINOGRAD", "1").strip() != "0"
# how the 16 products run: "blas" (np.dot per point) or "loops" (a register-tiled loop nest
# of P tiles x CB channels in a prange); see benchmarks/RESULTS.md for the comparison
GEMM = os.environ.get("CNNC_WINOGRAD_GEMM", "blas")
P, CB = 8, 8
# where it pays on AVX2 (Zen 3, 2 cores, batch 1; benchmarks/RESULTS.md): against the
# register-tiled direct kernel (~100-128 GFLOP/s on 3x3 layers) Winograd wins on wide, large
# layers only (56x56 256->256: 151, 28x28 256->512: 177, 28x28 512->512: 164 direct-equivalent
# GFLOP/s) and loses on ResNet's (56x56 64->64: 82, 14x14 256->256: 65, 7x7 512->512: 35)
MIN_CIN = 256
MIN_PIXELS = 28 * 28
#: the ISAs whose default plan takes it.  On AVX-512 the 14 px x 32 ch direct kernel runs
#: 3x3 layers at 350-430 GFLOP/s, faster than BLAS-backed Winograd even on VGG's widest:
#: 56x56 256->256 9.4 vs 22.2 ms, 28x28 256->512 4.9 vs 10.0 ms (Zen 5, `cnnc tune vgg11`;
#: benchmarks/RESULTS.md).  `cnnc tune` still times it there.
DEFAULT_ISAS = ("avx2",)

# F(2x2, 3x3) transforms (Lavin & Gray 2015)
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


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
        return "Winograd F(2x2, 3x3) needs a 3x3 kernel, stride 1, dilation 1 and groups 1"
    cpu = cpu or target.for_plans()
    if cpu.isa not in DEFAULT_ISAS:
        return (f"on {cpu.isa} the direct kernel is faster (Winograd is the default on "
                f"{', '.join(DEFAULT_ISAS)} only; cnnc tune times both from {MIN_CIN} "
                f"channels and {MIN_PIXELS} output pixels)")
    if not large_enough(spec):
        oh, ow = spec.out_hw
        return (f"{spec.cin} -> {spec.cout} channels on {oh}x{ow}: the direct kernel is "
                f"faster (Winograd pays from {MIN_CIN} channels and {MIN_PIXELS} output "
                f"pixels)")
    return None


def large_enough(spec) -> bool:
    """Whether ``spec`` has the channels and output pixels from which Winograd can pay (the
    default plan's gate on AVX2, the tuner's candidate gate on every ISA)."""
    oh, ow = spec.out_hw
    return spec.cin >= MIN_CIN and spec.cout >= MIN_CIN and oh * ow >= MIN_PIXELS


def chosen(spec, cpu=None) -> bool:
    return why_not(spec, cpu) is None


def tiles(spec) -> tuple[int, int]:
    oh, ow = spec.out_hw
    return -(-oh // 2), -(-ow // 2)


def scratch_elements(spec) -> int:
    th, tw = tiles(spec)
    return 16 * (th * tw + _spare_rows()) * (spec.cin + _cout_padded(spec))


def _spare_rows() -> int:
    """The loop nest reads and writes whole blocks of P tiles, past the last tile."""
    return P if GEMM == "loops" else 0


def _cout_padded(spec) -> int:
    return -(-spec.cout // CB) * CB if GEMM == "loops" else spec.cout


def transform_filter(w_hwio) -> np.ndarray:
    """(3, 3, cin, cout) -> U[k, ci, co] = (G g G^T)[k // 4, k % 4], computed in float64."""
    w = np.asarray(w_hwio, np.float64)
    u = np.einsum("ai,ijco,bj->abco", G, w, G)
    return u.reshape(16, w.shape[2], w.shape[3])


def pack_weights(spec, w_hwio) -> np.ndarray:
    assert np.shape(w_hwio) == (3, 3, spec.cin, spec.cout), np.shape(w_hwio)
    u = np.zeros((16, spec.cin, _cout_padded(spec)), np.float32)
    u[..., :spec.cout] = transform_filter(w_hwio)
    return u


# ----------------------------------------------------------------------------------------------
# source generation

def _input_transform(s: Src, d: int, load) -> None:
    """Statements computing V[:, tile, ci] from d_rc = ``load(r, c)``."""
    for r in range(4):
        for c in range(4):
            s(d, f"d{r}{c} = {load(r, c)}")
    for c in range(4):   # B^T d
        s(d, f"t0{c} = d0{c} - d2{c}", f"t1{c} = d1{c} + d2{c}", f"t2{c} = d2{c} - d1{c}",
          f"t3{c} = d1{c} - d3{c}")
    for r in range(4):   # (B^T d) B
        us = [f"t{r}0 - t{r}2", f"t{r}1 + t{r}2", f"t{r}2 - t{r}1", f"t{r}1 - t{r}3"]
        for c in range(4):
            s(d, f"tv[{4 * r + c}, tile, ci] = {us[c]}")


def generate(spec, name: str, pl=None) -> str:
    from cnnc.backends.numba_cpu.convgen import _extra_names
    H, W, CIN, COUT = spec.h, spec.w, spec.cin, spec.cout
    PT, _, PL, _ = spec.pads
    OH, OW = spec.out_hw
    TH, TW = tiles(spec)
    extras = _extra_names(spec)
    COUTP = _cout_padded(spec)
    s = Src()
    s(0, f"def {name}({', '.join(['x', 'wp', 'b', *extras, 'out', 'scratch'])}):")
    s(1, f'"""winograd F(2x2, 3x3) conv: {H}x{W}x{CIN} -> {OH}x{OW}x{COUT}, p{spec.pads}, '
         f'{TH}x{TW} tiles, {GEMM} products, epilogue {list(spec.epilogue)}"""')
    s(1, "n_batch = x.shape[0]", f"nt = n_batch * {TH * TW}",
         f"ntp = nt + {_spare_rows()}",
         f"tv = scratch[:ntp * {16 * CIN}].reshape(16, ntp, {CIN})",
         f"tm = scratch[ntp * {16 * CIN}:ntp * {16 * (CIN + COUTP)}].reshape(16, ntp, {COUTP})",
         f"xf = x.reshape(n_batch, {H}, {W * CIN})",
         f"zrow = np.zeros({W * CIN}, np.float32)   # stands in for rows in the padding")
    # -- input transform
    s(1, f"for t in prange(n_batch * {TH}):")
    s(2, f"n = t // {TH}", f"ih = (t % {TH}) * 2 - {PT}")
    for r in range(4):
        s(2, f"r{r} = xf[n, ih + {r}] if ih + {r} >= 0 and ih + {r} < {H} else zrow")
    # tiles whose 4 input columns all lie inside the image
    lo = -(-PL // 2)
    hi = min(TW, (W - 4 + PL) // 2 + 1) if W - 4 + PL >= 0 else 0
    lo, hi = (lo, hi) if hi > lo else (0, 0)
    if hi > lo:
        s(2, f"for tw in range({lo}, {hi}):   # interior tiles: no bounds checks")
        s(3, f"tile = t * {TW} + tw", f"base = (tw * 2 - {PL}) * {CIN}")
        s(3, f"for ci in range({CIN}):")
        _input_transform(s, 4, lambda r, c: f"r{r}[base + {c * CIN} + ci]")
    nedge = TW - (hi - lo)
    if nedge:
        s(2, f"for e in range({nedge}):   # border tiles")
        s(3, f"tw = e if e < {lo} else e + {hi - lo}")
        s(3, f"tile = t * {TW} + tw", f"iw = tw * 2 - {PL}")
        for c in range(4):
            s(3, f"ok{c} = iw + {c} >= 0 and iw + {c} < {W}")
        s(3, f"for ci in range({CIN}):")
        _input_transform(s, 4, lambda r, c: f"r{r}[(iw + {c}) * {CIN} + ci] if ok{c} else "
                                             f"np.float32(0.0)")
    # -- the 16 transformed-domain products
    if GEMM == "loops":
        _loop_gemm(s, CIN, COUTP)
    else:
        s(1, "for k in range(16):", "    np.dot(tv[k], wp[k], tm[k])")
    # -- output transform + epilogue
    s(1, f"for t in prange(n_batch * {TH}):")
    s(2, f"n = t // {TH}", f"oh0 = (t % {TH}) * 2")
    s(2, f"for tw in range({TW}):")
    s(3, f"tile = t * {TW} + tw", "ow0 = tw * 2")
    if OH % 2:
        s(3, f"row1 = oh0 + 1 < {OH}")
    if OW % 2:
        s(3, f"col1 = ow0 + 1 < {OW}")
    s(3, f"for co in range({COUT}):")
    for k in range(16):
        s(4, f"m{k // 4}{k % 4} = tm[{k}, tile, co]")
    for c in range(4):   # A^T M
        s(4, f"s0{c} = m0{c} + m1{c} + m2{c}", f"s1{c} = m1{c} - m2{c} - m3{c}")
    s(4, "bias = b[co]")
    for r in range(2):
        for c in range(2):
            y = f"s{r}0 + s{r}1 + s{r}2" if c == 0 else f"s{r}1 - s{r}2 - s{r}3"
            conds = ([] if r == 0 or OH % 2 == 0 else ["row1"]) + \
                    ([] if c == 0 or OW % 2 == 0 else ["col1"])
            d = 4
            if conds:
                s(4, f"if {' and '.join(conds)}:")
                d = 5
            s(d, f"oh = oh0 + {r}", f"ow = ow0 + {c}", f"v = {y} + bias")
            s(d, *epilogue_lines(spec.epilogue, "v", extras, "co", "n, oh, ow, co", True))
            s(d, "out[n, oh, ow, co] = v")
    return s.text()


def _loop_gemm(s: Src, CIN: int, COUTP: int) -> None:
    """tm[k, t, :] = tv[k, t, :] @ wp[k] as P x CB register tiles; blocks of P tiles that
    run past nt read (and write) the spare rows of the scratch."""
    NCB = COUTP // CB
    s(1, f"ntb = (nt + {P - 1}) // {P}")
    s(1, f"for q in prange({16 * NCB} * ntb):")
    s(2, "tb = q % ntb", "kc = q // ntb", f"cb = kc % {NCB}", f"k = kc // {NCB}",
         f"t0 = tb * {P}", f"co0 = cb * {CB}")
    register_tile(s, 2, P, CB, "ci", CIN, "tv[k, t0 + r, ci]", "wp[k, ci, co0 + j]")
    s(2, f"for r in range({P}):", f"    for j in range({CB}):",
         "        tm[k, t0 + r, co0 + j] = acc[r, j]")
