"""The conv-plan tuner: every candidate plan computes the same conv as the float64 reference
(max |y - ref| / max |ref| < 1e-4), and the per-machine cache is hit, missed, refused when
corrupt or written for another machine, and taken by later compiles.  No timed assertion:
which candidate wins is the machine's business."""

import dataclasses
import json
import warnings

import numpy as np
import pytest

import cnnc
from cnnc.backends.numba_cpu import convgen, target, tune, winograd
from cnnc.backends.numba_cpu.convgen import ConvSpec, Plan
from cnnc.backends.numba_cpu.lower import _jitted
from cnnc.backends.lowering import conv_spec
from cnnc.backends.reference import run_reference
from cnnc.ir import Graph
from cnnc.ops.conv import conv2d_reference

pytestmark = pytest.mark.numba
TOL = 1e-4
PADDED = ConvSpec(7, 9, 16, 3, 3, 32, (1, 1), (1, 1, 1, 1))   # SAME, a ragged last tile
STRIDED = ConvSpec(9, 8, 8, 3, 3, 16, (2, 2), (0, 1, 0, 1))
POINTWISE = ConvSpec(5, 6, 24, 1, 1, 16)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CNNC_TUNED", raising=False)
    tune._memo.clear()
    return tmp_path


@pytest.mark.parametrize("spec", [PADDED, STRIDED, POINTWISE], ids=["padded", "strided", "1x1"])
def test_every_candidate_plan_matches_the_reference(spec):
    cands = tune.candidates(spec)
    assert cands[0] == convgen.plan(spec, tuned=False), "the default plan comes first"
    assert len(set(cands)) == len(cands) >= 3
    assert len(cands) <= 8
    # build() draws the weights, then the input, from its seed
    r = np.random.default_rng(3)
    w = r.standard_normal((spec.kh, spec.kw, spec.cin, spec.cout), np.float32)
    x = r.standard_normal((2, spec.h, spec.w, spec.cin)).astype(np.float32)
    pt, pb, pleft, pright = spec.pads
    ref = conv2d_reference(x.astype(np.float64), w.astype(np.float64), strides=spec.stride,
                           padding=((pt, pb), (pleft, pright)), dilation=spec.dilation, groups=1)
    for pl in cands:
        run = tune.build(spec, pl, batch=2, seed=3)
        run.args[3][...] = np.nan
        run()
        err = np.abs(run.args[3] - ref).max() / np.abs(ref).max()
        assert err < TOL, (tune.describe(pl), err)


@pytest.mark.parametrize("cpu", [target.AVX512, target.AVX2], ids=["avx512", "avx2"])
def test_candidates_skip_plans_known_to_lose(cpu):
    """No tile of more than tune.UNROLLED values with the loop vectorizer on (not unrolled:
    ~100x slower), and Winograd only where it can pay, on every ISA."""
    small = ConvSpec(28, 28, 8, 3, 3, 32, (1, 1), (1, 1, 1, 1))   # too few input channels
    large = ConvSpec(56, 56, 256, 3, 3, 256, (1, 1), (1, 1, 1, 1))
    for spec in (small, large):
        cands = tune.candidates(spec, cpu)
        assert all(not c.loop_vectorize or c.p * c.cb <= tune.UNROLLED
                   for c in cands if c.strategy == "blocked"), cands
        winos = [c for c in cands if c.strategy == "winograd"]
        assert bool(winos) == (spec is large) == winograd.large_enough(spec)
        # compiled without the loop vectorizer (register tiles); F(2x2) and F(4x4) where
        # there is room among the candidates
        assert len(winos) <= 2 and not any(c.loop_vectorize for c in winos)
        assert len({c.wino for c in winos}) == len(winos)
        if winos:
            assert winos[0] == winograd.default_plan(spec, cpu)


def test_a_cache_miss_then_a_hit_and_later_compiles_take_the_winner(cache):
    spec = PADDED
    assert tune.lookup(spec) is None
    done = tune.tune([spec], batch=1, budget=60)
    key = tune.spec_key(spec)
    assert list(done.results) == [key] and not done.cached
    r = done.results[key]
    assert r["us"] <= r["default_us"] and len(r["candidates"]) == len(tune.candidates(spec))
    stored = json.loads(open(done.path).read())
    assert stored["machine"] == tune.machine() and key in stored["plans"]
    won = tune.lookup(spec)
    assert won == Plan(**r["plan"])
    # an epilogue does not change the entry; the plan rule takes the stored plan
    fused = dataclasses.replace(spec, epilogue=(("relu",),))
    assert convgen.plan(fused) == won
    again = tune.tune([spec], batch=1, budget=60)
    assert again.cached == [key] and not again.results


def test_a_stored_plan_is_used_by_compile_and_stays_correct(cache):
    """Store a deliberately non-default tile, then compile a model with that conv."""
    g = Graph("tuned")
    x = g.add_input(("N", 7, 9, 16), name="x")
    rng = np.random.default_rng(1)
    w = g.constant(rng.standard_normal((3, 3, 16, 32)).astype(np.float32))
    y = g.add("conv2d", [x, w], {"strides": (1, 1), "padding": "same", "dilation": (1, 1),
                                 "groups": 1})
    g.set_outputs(g.add("relu", [y]))
    other = next(p for p in tune.candidates(PADDED)[1:] if p.strategy == "blocked")
    tune.store({tune.spec_key(PADDED): {"plan": dataclasses.asdict(other), "us": 1.0}})
    m = cnnc.compile(g, target="cpu")
    node = next(n for n in m.graph.nodes if n.op.startswith("conv2d"))
    src = _jitted(convgen.generate(conv_spec(node), "__KERNEL__", other))   # as lowered
    assert any(src.replace("__KERNEL__", k) in m.source() for k in m.lowered.kernel_names), \
        "the model was lowered with the stored plan"
    remarks = [msg for kind, _, msg in m.report.remarks if kind == "cpu plan"]
    assert remarks == [f"{tune.describe(other)} (tuned on this machine); not Winograd: "
                       f"{winograd.why_not(conv_spec(node))}"]
    xs = rng.standard_normal((3, 7, 9, 16)).astype(np.float32)
    ref = run_reference(g, xs)
    got = m(xs)
    assert np.abs(got - ref).max() / np.abs(ref).max() < TOL


def test_a_corrupt_file_is_ignored_with_a_warning_and_rewritten(cache):
    p = tune.path()
    import os
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write("{ not json")
    with pytest.warns(tune.TuningWarning, match="corrupt"):
        assert tune.lookup(PADDED) is None
    with open(p, "w") as f:   # valid JSON, nonsense entry: that entry alone is dropped
        json.dump({"machine": tune.machine(),
                   "plans": {tune.spec_key(PADDED): {"plan": {"strategy": "blocked", "cb": -3}}}},
                  f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tune.lookup(PADDED) is None
    tune.store({tune.spec_key(STRIDED): {"plan": dataclasses.asdict(convgen.plan(STRIDED)),
                                         "us": 2.0}})
    assert tune.lookup(STRIDED) == convgen.plan(STRIDED, tuned=False)


def test_plans_tuned_under_other_blas_kernels_are_not_taken(cache, monkeypatch):
    # OPENBLAS_CORETYPE=Haswell runs an AVX-512 CPU's BLAS at about half its rate: a plan
    # that calls BLAS (Winograd) timed under one choice says nothing of the other
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    pinned = tune.machine()
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert pinned["blas"] == "Haswell" and tune.machine()["blas"] == ""
    assert tune.path(pinned) != tune.path()
    pl = dataclasses.replace(convgen.plan(PADDED, tuned=False), p=1)
    tune.store({tune.spec_key(PADDED): {"plan": dataclasses.asdict(pl), "us": 1.0}}, pinned)
    assert tune.lookup(PADDED) is None


def test_another_machines_plans_are_never_taken(cache, monkeypatch):
    here = tune.machine()
    there = dict(here, cpu="znver4", features="+avx512f,+avx2,+fma")
    assert tune.path(there) != tune.path(here)
    pl = dataclasses.replace(convgen.plan(PADDED, tuned=False), p=1)
    tune.store({tune.spec_key(PADDED): {"plan": dataclasses.asdict(pl), "us": 1.0}}, there)
    assert tune.lookup(PADDED) is None
    # a file copied over from another machine (or another Numba) is refused by what it says
    import shutil
    import os
    os.makedirs(os.path.dirname(tune.path(here)), exist_ok=True)
    shutil.copy(tune.path(there), tune.path(here))
    with pytest.warns(tune.TuningWarning, match="another machine"):
        assert tune.lookup(PADDED) is None
    # plans made for another target (target.plan_for) never read this machine's file
    tune.store({tune.spec_key(PADDED): {"plan": dataclasses.asdict(pl), "us": 1.0}})
    assert tune.lookup(PADDED) == pl
    other_isa = target.AVX512 if target.effective().isa != "avx512" else target.AVX2
    assert tune.lookup(PADDED, other_isa) is None
    monkeypatch.setenv("CNNC_TUNED", "0")
    assert tune.lookup(PADDED) is None


def test_cli_tune_respects_its_budget_and_reuses_the_cache(cache, capsys):
    from cnnc.cli import main
    assert main(["tune", "lenet5", "--budget", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "1 tuned" in out and "left at the default (budget spent)" in out
    assert main(["tune", "lenet5", "--budget", "0.001"]) == 0
    assert "1 tuned before" in capsys.readouterr().out
    assert main(["tune", "lenet5", "--budget", "0"]) == 2


def test_build_times_activation_epilogues_and_refuses_operands():
    """benchmarks/epilogue.py times a conv with an activation through tune.build: the tail
    function is compiled and applied; steps with operands are refused."""
    spec = convgen.ConvSpec(6, 7, 5, 3, 3, 40, (1, 1), (1, 1, 1, 1))
    bare = tune.build(spec, convgen.plan(spec, tuned=False), batch=2, seed=3)
    silu = dataclasses.replace(spec, epilogue=(("swish", 1.0),))
    fused = tune.build(silu, convgen.plan(silu, tuned=False), batch=2, seed=3)
    y = bare.args[-1].astype(np.float64)
    np.testing.assert_allclose(fused.args[-1], y / (1 + np.exp(-y)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="operands"):
        tune.build(dataclasses.replace(spec, epilogue=(("add",),)), convgen.plan(spec))
