"""The target description the CPU tile plans derive from, and the plans' register budget."""

import itertools

import pytest

from cnnc.backends.numba_cpu import convgen, runtime, target

AVX2_FEATURES = "+avx,+avx2,+fma,-avx512f,+sse4.2"


@pytest.mark.parametrize("name, features, machine, isa, lanes, regs", [
    ("znver3", AVX2_FEATURES, "x86_64", "avx2", 8, 16),
    ("znver4", "+avx2,+fma,+avx512f,+avx512vl", "x86_64", "avx512", 16, 32),
    ("znver4", "", "x86_64", "avx512", 16, 32),           # implied by the CPU name
    ("znver4", "-avx512f,+avx2,+fma", "x86_64", "avx2", 8, 16),  # the features win
    ("haswell", "", "x86_64", "avx2", 8, 16),
    ("x86-64", "+sse4.2,-avx", "x86_64", "sse", 4, 16),
    ("neoverse-n1", "+neon", "aarch64", "neon", 4, 32),
])
def test_describe_cpu(name, features, machine, isa, lanes, regs):
    t = target.describe_cpu(name, features, machine)
    assert (t.isa, t.lanes, t.registers) == (isa, lanes, regs)
    assert t.name in t.describe() and isa in t.describe()


def test_effective_follows_numba_config_and_changes_the_cache_key(monkeypatch):
    import numba
    host_key = runtime.cache_key("src")
    monkeypatch.setattr(numba.config, "CPU_NAME", "znver4")
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+avx2,+fma,+avx512f")
    t = target.effective()
    assert (t.name, t.isa, t.lanes) == ("znver4", "avx512", 16)
    assert runtime.cache_key("src") != host_key
    monkeypatch.setattr(numba.config, "CPU_FEATURES", AVX2_FEATURES)
    assert target.effective().isa == "avx2"


def test_plan_for_overrides_and_restores():
    before = target.for_plans()
    with target.plan_for(target.AVX512):
        assert target.for_plans() is target.AVX512
        with target.plan_for(target.AVX2):
            assert target.for_plans() is target.AVX2
        assert target.for_plans() is target.AVX512
    assert target.for_plans() == before


SPECS = [convgen.ConvSpec(h, h, cin, k, k, cout, (s, s), (k // 2,) * 4)
         for h, cin, cout, k, s in itertools.product((7, 14, 28, 56), (3, 16, 64), (8, 16, 64, 96),
                                                     (1, 3, 7), (1, 2))]


@pytest.mark.parametrize("cpu", [target.AVX2, target.describe_cpu("x86-64", "+sse4.2", "x86_64"),
                                 target.describe_cpu("neoverse-n1", "", "aarch64")],
                         ids=lambda t: t.isa)
def test_narrow_plans_fit_the_register_file(cpu):
    """Channel tile a multiple of the lanes; accumulators + weight vectors + two broadcasts
    within the vector registers; at least MIN_ACCUMULATORS chains when the row is wide."""
    for spec in SPECS:
        pl = convgen.plan(spec, cpu, winograd_ok=False)   # the direct kernels' tiles
        assert pl.strategy == "blocked"
        assert pl.cb % cpu.lanes == 0, (spec, pl)
        vecs = pl.cb // cpu.lanes
        assert pl.p * vecs + vecs + 2 <= cpu.registers, (spec, pl)
        if spec.out_hw[1] >= 8:
            assert pl.p * vecs >= min(convgen.MIN_ACCUMULATORS,
                                      convgen.pixel_range(pl.cb, cpu, spec)[1] * vecs), (spec, pl)


def test_avx512_plans():
    """The measured tiles: two zmm of channels by up to 14 px (8 for 1x1) without the loop
    vectorizer, the pixels dividing the row; one zmm of 9-16 channels by 8-14 px the same way
    where the reduction is contiguous or long and the row has 10 px or more; else one zmm,
    loop-vectorized: 5 px for spatial convs on rows of 10 or more, else 4."""
    pl = convgen.plan(convgen.ConvSpec(56, 56, 64, 3, 3, 64, (1, 1), (1,) * 4), target.AVX512,
                      winograd_ok=False)   # the direct kernel's tile (Winograd by default)
    assert (pl.p, pl.cb, pl.loop_vectorize) == (14, 32, False)
    pl = convgen.plan(convgen.ConvSpec(224, 224, 3, 7, 7, 64, (2, 2), (3,) * 4), target.AVX512)
    assert (pl.p, pl.cb, pl.loop_vectorize) == (14, 32, False)
    pl = convgen.plan(convgen.ConvSpec(7, 7, 512, 3, 3, 512, (1, 1), (1,) * 4), target.AVX512)
    assert (pl.p, pl.cb) == (7, 32)
    pl = convgen.plan(convgen.ConvSpec(56, 56, 64, 1, 1, 128, (2, 2), (0,) * 4), target.AVX512)
    assert (pl.p, pl.cb) == (7, 32)
    pl = convgen.plan(convgen.ConvSpec(32, 32, 16, 3, 3, 16, (1, 1), (1,) * 4), target.AVX512,
                      winograd_ok=False)   # the direct kernel's tile (F(4x4) by default)
    assert (pl.p, pl.cb, pl.loop_vectorize) == (12, 16, False)
    pl = convgen.plan(convgen.ConvSpec(32, 32, 16, 1, 1, 16), target.AVX512)
    assert (pl.p, pl.cb, pl.loop_vectorize) == (8, 16, False)
    pl = convgen.plan(convgen.ConvSpec(32, 32, 3, 3, 3, 16, (1, 1), (1,) * 4), target.AVX512)
    assert (pl.p, pl.cb, pl.loop_vectorize) == (5, 16, True)   # a 27-long reduction
    pl = convgen.plan(convgen.ConvSpec(32, 32, 16, 3, 3, 8, (1, 1), (1,) * 4), target.AVX512)
    assert (pl.cb, pl.loop_vectorize) == (8, True)
    pl = convgen.plan(convgen.ConvSpec(8, 8, 16, 3, 3, 16, (1, 1), (1,) * 4), target.AVX512)
    assert (pl.p, pl.cb) == (4, 16)


@pytest.mark.numba
def test_summary_names_the_target_and_the_planned_one():
    import numpy as np

    import cnnc
    from cnnc.ir import Graph
    g = Graph("tiny")
    x = g.add_input(("N", 6, 6, 8), name="x")
    w = g.constant(np.ones((3, 3, 8, 16), np.float32))
    g.set_outputs(g.add("conv2d", [x, w], {"padding": "same"}))
    other = target.AVX2 if target.effective().isa == "avx512" else target.AVX512
    with target.plan_for(other):
        compiled = cnnc.compile(g, target="cpu", opt_level=0)
    text = compiled.summary(print_fn=None)
    assert f"compiled for {target.effective().describe()}" in text
    assert f"tiles planned for {other.describe()}" in text
