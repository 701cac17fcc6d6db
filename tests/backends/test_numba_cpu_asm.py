"""The assembly of the generated CPU kernels for an AVX2 and an AVX-512 target.

Each target is compiled in a subprocess (Numba reads ``NUMBA_CPU_NAME`` /
``NUMBA_CPU_FEATURES`` when it starts; compiling needs no such CPU, only running does) by
``tests/asm_probe.py``, which reports the hot loop of every representative kernel (see its
docstring for the exact definitions).  Register-tiled convs and dense layers must use
full-width vectors (ymm: 8 lanes, zmm: 16), keep at least as many independent accumulator
chains as the plan has accumulator vectors (P * CB / lanes) and never move a vector to or
from the stack in that loop.  The loop-vectorized depthwise kernel must use full-width
vectors; its remaining stack traffic is listed in :data:`SPILLS`.  A conv's epilogue tail
function must be vectorized, and so must the tile's store (except :data:`SCALAR_STORES`).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asm_probe import hot_loop
from isa_targets import AVX2, AVX512
from cnnc.backends.numba_cpu.target import wide_vectors

pytestmark = [pytest.mark.numba, pytest.mark.slow]
PROBE = Path(__file__).resolve().parents[1] / "asm_probe.py"
#: id: (LLVM CPU, features, register, lanes). LLVM tunes Intel's AVX-512 CPUs to prefer
#: 256-bit vectors; the backend switches that off (target.wide_vectors), and the Intel entry
#: checks that its tiles are then compiled to zmm as on AMD.
TARGETS = {"avx2": ("znver3", AVX2, "ymm", 8), "avx512": ("znver4", AVX512, "zmm", 16),
           "avx512-intel": ("sapphirerapids", wide_vectors(AVX512), "zmm", 16)}


def _probe(isa):
    name, features, _, _ = TARGETS[isa]
    env = dict(os.environ, NUMBA_CPU_NAME=name, NUMBA_CPU_FEATURES=features)
    p = subprocess.run([sys.executable, str(PROBE)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=sorted(TARGETS))
def probe(request):
    return request.param, _probe(request.param)


def test_target_is_the_emulated_one(probe):
    isa, report = probe
    assert report["lanes"] == TARGETS[isa][3]
    assert f": {isa.split('-')[0]}," in report["target"]


KERNELS = ["conv3x3", "conv3x3s2", "conv1x1", "conv1x1se", "conv1x1c24", "conv1x1c40",
           "conv7x7s2", "depthwise3x3", "depthwise5x5", "depthwise7x7", "dense", "conv3x3silu", "conv1x1relu",
           "conv3x3addrelu", "winograd3x3"]
BLOCKED = [k for k in KERNELS if k.startswith("conv") or k == "dense"]
TILED = BLOCKED + ["winograd3x3"]   # register tiles: Winograd's transformed-domain products
#: (isa, kernel) whose hot loop still moves vectors to or from the stack (strict xfail: the
#: test reports when a change fixes one)
_LV = ("loop-vectorized kernel: the loop vectorizer vectorizes across the reduction and "
       "spills (register-tiled convs are compiled without it, convgen.Plan.loop_vectorize)")
SPILLS = {("avx512", "depthwise3x3"): _LV, ("avx512-intel", "depthwise3x3"): _LV}


def _hot(probe, kernel):
    isa, report = probe
    hot = report["kernels"][kernel]["hot"]
    assert hot is not None, f"{kernel}: no loop with packed FMAs"
    return isa, report["kernels"][kernel]["plan"], hot


@pytest.mark.parametrize("kernel", KERNELS)
def test_hot_loop_uses_full_width_vectors(probe, kernel):
    isa, _, hot = _hot(probe, kernel)
    assert hot["widths"] == [TARGETS[isa][2]], (kernel, hot)


@pytest.mark.parametrize("kernel", KERNELS)
def test_hot_loop_keeps_vectors_off_the_stack(probe, kernel, request):
    isa, _, hot = _hot(probe, kernel)
    if (isa, kernel) in SPILLS:
        request.applymarker(pytest.mark.xfail(strict=True, reason=SPILLS[isa, kernel]))
    assert hot["stack_vector"] == [], (kernel, hot)


@pytest.mark.parametrize("kernel", ["depthwise5x5", "depthwise7x7"])
def test_depthwise_register_tile(probe, kernel):
    """A 5x5 depthwise conv runs as P px x 16 ch tiles on AVX-512, per pixel (no tile) on
    AVX2 with its taps spread over independent sums (one chain of 25 FMAs was bound by their
    latency); a 7x7 one as P px x one vector of channels on both: P independent chains,
    stored after the reduction."""
    from cnnc.backends.numba_cpu.convgen import DEPTHWISE_CHAINS
    isa, plan, hot = _hot(probe, kernel)
    lanes = TARGETS[isa][3]
    if lanes < 16 and kernel == "depthwise5x5":
        assert plan["cb"] == 0, plan
        assert hot["accumulators"] >= DEPTHWISE_CHAINS, hot
        return
    assert plan["cb"] == lanes and not plan["loop_vectorize"], plan
    assert hot["accumulators"] >= plan["p"] and hot["fma_loop_stores"] == 0, (plan, hot)


@pytest.mark.parametrize("kernel", TILED)
def test_register_tile_is_stored_after_its_loops(probe, kernel):
    """No reduction loop writes the tile back to memory on every step."""
    isa, plan, hot = _hot(probe, kernel)
    assert hot["fma_loop_stores"] == 0, (kernel, plan, hot)


@pytest.mark.parametrize("kernel", TILED)
def test_register_tile_has_independent_accumulators(probe, kernel):
    isa, plan, hot = _hot(probe, kernel)
    assert plan["strategy"] == ("winograd" if kernel == "winograd3x3" else "blocked")
    need = plan["p"] * -(-plan["cb"] // TARGETS[isa][3])
    assert hot["accumulators"] >= need, (kernel, plan, hot)
    assert hot["fma"] >= need, (kernel, plan, hot)


#: (isa, kernel) whose tile store the SLP vectorizer still leaves scalar (strict xfail)
SCALAR_STORES = {("avx2", "conv1x1"): "the SLP vectorizer leaves this 4-pixel x 16-channel "
                                       "AVX2 tile store scalar (an 8-pixel row: 5 or 6 would "
                                       "idle; the 5- and 6-pixel stores are vectorized)",
                 **{("avx2", k): "the SLP vectorizer leaves the store of a tile of three or five "
                                 "ymm scalar (these tiles still ran 1.2-1.7x as fast as two "
                                 "ymm: convgen.AVX2_TILE_VECTORS)" for k in ("conv1x1c24",
                                                                             "conv1x1c40")},
                 **{(isa, "conv1x1c40"): "a 32-channel tile whose second block holds 8 "
                                         "channels: the SLP vectorizer leaves its store scalar"
                    for isa in ("avx512", "avx512-intel")}}


@pytest.mark.parametrize("kernel", BLOCKED)
def test_register_tile_store_is_vectorized(probe, kernel, request):
    """The tile's store adds the bias one vector at a time (an unsigned channel index,
    kernels.UNSIGNED: with a signed one each value was a scalar add and store)."""
    isa, report = probe
    if (isa, kernel) in SCALAR_STORES:
        request.applymarker(pytest.mark.xfail(strict=True, reason=SCALAR_STORES[isa, kernel]))
    plan, adds = report["kernels"][kernel]["plan"], report["kernels"][kernel]["scalar_adds"]
    assert adds < plan["p"] * plan["cb"] // TARGETS[isa][3], (kernel, plan, adds)


def test_epilogue_tail_is_vectorized(probe):
    """SiLU after a register-tiled conv runs in the kernel's tail function: full-width packed
    FMAs (vexpf's rounding, reduction and degree-6 polynomial: nine; a narrower remainder
    loop may follow) and no call of the C library's exp."""
    isa, report = probe
    tail = report["kernels"]["conv3x3silu"]["tail"]
    assert tail["packed_fma"] >= 7 and TARGETS[isa][2] in tail["widths"], tail
    assert not [c for c in tail["calls"] if "exp" in c], tail


def test_winograd_transforms_are_vectorized(probe):
    """Winograd's input transform (a loop-vectorized kernel) and its output transform with
    a SiLU epilogue (the products kernel's helper) run as full-width vectors."""
    isa, report = probe
    width = TARGETS[isa][2]
    vin = report["kernels"]["winograd_in"]["vector"]
    assert vin["packed_add"] >= 32 and width in vin["add_widths"], vin
    out = report["kernels"]["winograd3x3silu"]["helper"]
    assert out["packed_add"] >= 16 and width in out["add_widths"], out
    assert out["packed_fma"] >= 7 and width in out["widths"], out   # vexpf's polynomial
    assert not [c for c in out["calls"] if "exp" in c], out


@pytest.mark.parametrize("kernel", ["maxpool3x3", "globalmaxpool"])
def test_max_pool_stores_once_per_vector(probe, kernel):
    """A 3x3 max pool's interior columns, and a global max pool's groups of rows, take
    their maxes at full width and store each vector once: accumulating in the output one
    tap at a time made each tap a masked store on AVX2 (``vmaskmovps``), 3-4x as slow as
    the same kernel with AVX-512 code."""
    isa, report = probe
    hot = report["kernels"][kernel]["max"]
    assert hot["max"] >= 8 and hot["widths"] == [TARGETS[isa][2]], hot
    assert hot["masked_stores"] == 0, hot


# ---- the checker itself can fail --------------------------------------------------------------
SPILLING = """\
.LBB4_28:
\tvmovups\t-28(%rcx,%r8,4), %ymm7
\tvmovups\t1712(%rsp), %ymm9
\tvfmadd231ps\t%ymm7, %ymm8, %ymm9
\tvmovups\t%ymm9, 1712(%rsp)
\tvmovups\t1872(%rsp), %ymm9
\tvfmadd231ps\t%ymm6, %ymm8, %ymm9
\tvmovups\t%ymm9, 1872(%rsp)
\taddq\t$8, %r8
\tjne\t.LBB4_28
"""
CLEAN = """\
.LBB2_5:
\tvbroadcastss\t(%rdx,%rax,4), %zmm3
\tvfmadd231ps\t(%rsi), %zmm3, %zmm0
\tvfmadd231ps\t64(%rsi), %zmm3, %zmm1
.LBB2_6:
\tvfmadd231ps\t%zmm4, %zmm5, %zmm2
\tjb\t.LBB2_6
\tdecq\t%rcx
\tjne\t.LBB2_5
"""

# %rbp stepping through the weights (a function without a frame pointer), not the stack
RBP_POINTER = """\
.LBB0_19:
\tvmovups\t-32(%rbp), %ymm13
\tvbroadcastss\t-256(%r8,%r9,4), %ymm15
\taddq\t%rcx, %rbp
\tvfmadd231ps\t%ymm13, %ymm15, %ymm3
\tincq\t%r9
\tjne\t.LBB0_19
"""


STORING = """\
.LBB4_11:
\tvmovups\t(%r9,%r8,8), %zmm9
\tvfmadd231ps\t-256(%rbx,%r12){1to16}, %zmm9, %zmm8
\tvmovups\t%zmm8, (%r13)
\tvfmadd231ps\t-192(%rbx,%r12){1to16}, %zmm9, %zmm7
\tvmovups\t%zmm7, 64(%r13)
\taddq\t$8, %r12
\tjne\t.LBB4_11
"""


def test_checker_sees_spills_and_one_chain():
    hot = hot_loop(SPILLING)
    assert hot["fma"] == 2 and hot["accumulators"] == 1 and hot["widths"] == ["ymm"]
    assert len(hot["stack_vector"]) == 4


def test_checker_tells_a_frame_pointer_from_a_general_rbp():
    assert hot_loop(RBP_POINTER)["stack_vector"] == []
    frame = RBP_POINTER.replace("\taddq\t%rcx, %rbp\n", "")   # %rbp left alone: the frame
    assert hot_loop(frame)["stack_vector"] == ["vmovups\t-32(%rbp), %ymm13"]


def test_checker_takes_the_innermost_loop():
    hot = hot_loop(CLEAN)
    assert hot["fma"] == 1 and hot["widths"] == ["zmm"] and hot["stack_vector"] == []
    assert hot["fma_loop_stores"] == 0
    # an FMA loop that writes its accumulators back each step is seen
    hot = hot_loop(CLEAN + STORING)
    assert hot["fma"] == 2 and hot["fma_loop_stores"] == 2
    assert hot_loop("\tvaddps\t%ymm0, %ymm1, %ymm2\n") is None
