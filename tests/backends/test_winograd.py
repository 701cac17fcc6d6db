"""Winograd F(2x2, 3x3) and F(4x4, 3x3) convolutions on the Numba CPU backend against the
float64 reference.

Tolerance: max |y - ref| / max |ref| < 1e-4 (the project's bar), float32 kernel vs float64
reference. Shapes come from a small set so that examples share compiled kernels."""

import contextlib
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnc
from cnnc.backends.numba_cpu import convgen, target, winograd
from cnnc.backends.numba_cpu.convgen import ConvSpec
from cnnc.backends.reference import run_reference
from cnnc.ir import Graph

pytestmark = pytest.mark.numba
TOL = 1e-4
EPILOGUES = [(), (("relu",),), (("scale_shift",), ("relu",)), (("add",),),
             (("scale_shift",), ("add",), ("relu",))]


def setup_module():
    # the tests exercise Winograd on small shapes: take it wherever it applies
    global _SAVED
    _SAVED = winograd.GATES
    winograd.GATES = {isa: (32, 1) for isa in ("avx2", "avx512", "neon", "sse", "avx",
                                               "generic")}


def teardown_module():
    winograd.GATES = _SAVED


@contextlib.contextmanager
def _tile_side(m):
    """F(m x m, 3x3) wherever Winograd is taken, whatever this machine's plan would say."""
    saved = winograd.f4_pays
    winograd.f4_pays = lambda spec, cpu=None: m == 4
    try:
        yield
    finally:
        winograd.f4_pays = saved


def _rel_err(y, ref):
    return float(np.max(np.abs(y - ref)) / max(np.max(np.abs(ref)), 1e-6))


def _conv_graph(rng, h, w, cin, cout, padding, epilogue):
    g = Graph("wino")
    x = g.add_input(("N", h, w, cin), name="x")
    wt = g.constant(rng.standard_normal((3, 3, cin, cout)))
    b = g.constant(rng.standard_normal(cout))
    attrs = dict(strides=(1, 1), padding=padding, dilation=(1, 1), groups=1)
    out_shape = g.add("conv2d", [x, wt], attrs).shape
    extras = []
    for step in epilogue:
        if step[0] == "scale_shift":
            extras += [g.constant(rng.standard_normal(cout)), g.constant(rng.standard_normal(cout))]
        elif step[0] == "add":
            extras.append(g.add_input(("N", *out_shape[1:]), name="res"))
    g.set_outputs(g.add("conv2d_fused", [x, wt, b, *extras], {**attrs, "epilogue": epilogue}))
    return g, out_shape


@settings(deadline=None, max_examples=6)
@given(hw=st.sampled_from([(5, 7), (8, 6), (3, 4)]),
       ch=st.sampled_from([(33, 40), (32, 37)]),
       padding=st.sampled_from(["same", "valid"]),
       epilogue=st.sampled_from(EPILOGUES),
       batch=st.sampled_from([1, 3]), seed=st.integers(0, 2**16))
def test_winograd_conv_matches_reference(hw, ch, padding, epilogue, batch, seed):
    _check_conv(np.random.default_rng(seed), hw, ch, padding, epilogue, batch, 2)


def _check_conv(rng, hw, ch, padding, epilogue, batch, m):
    """The conv compiled with F(m x m, 3x3) against the float64 reference."""
    (h, w), (cin, cout) = hw, ch
    g, out_shape = _conv_graph(rng, h, w, cin, cout, padding, epilogue)
    with _tile_side(m):
        compiled = cnnc.compile(g, target="cpu", opt_level=0)
    assert f"winograd F({m}x{m}, 3x3) conv" in compiled.source()
    xs = [rng.standard_normal((batch, h, w, cin)).astype(np.float32)]
    if any(s[0] == "add" for s in epilogue):
        xs.append(rng.standard_normal((batch, *out_shape[1:])).astype(np.float32))
    err = _rel_err(compiled(*xs), run_reference(g, *xs, dtype=np.float64))
    assert err < TOL, f"relative error {err:.2e}"


@pytest.mark.parametrize("isa, cb_outer", [("avx512", False), ("avx512", True),
                                           ("avx2", False)])
def test_register_tiles_ragged_rows_and_channel_blocks(monkeypatch, isa, cb_outer):
    """Rows of tiles that are not whole register tiles (spare tiles), a last channel block
    of fewer channels, odd output sizes, both loop orders, a SiLU epilogue and a batch of 3;
    with the tiles of the AVX-512 and of the AVX2 plan (which run here too, only slower)."""
    rng = np.random.default_rng(7)
    g, _ = _conv_graph(rng, 7, 11, 32, 37, "same", (("scale_shift",), ("swish", 1.0)))
    spec = ConvSpec(7, 11, 32, 3, 3, 37, pads=(1, 1, 1, 1))
    cpu = target.AVX512 if isa == "avx512" else target.AVX2
    pl = dataclasses.replace(winograd.default_plan(spec, cpu), p=4, cb_outer=cb_outer)
    assert pl.cb == 2 * cpu.lanes
    _, tw, twp, ncb = winograd._geometry(spec, pl)
    assert twp > tw and ncb * pl.cb > 37   # spare tiles and a partial channel block
    monkeypatch.setattr(winograd, "default_plan", lambda spec, cpu=None: pl)
    compiled = cnnc.compile(g, target="cpu", opt_level=0)
    assert f"products in tiles of 4 x {pl.cb}ch" in compiled.source()
    x = rng.standard_normal((3, 7, 11, 32)).astype(np.float32)
    err = _rel_err(compiled(x), run_reference(g, x, dtype=np.float64))
    assert err < TOL, f"relative error {err:.2e}"


def test_residual_overwritten_by_the_output():
    """A residual block whose sum takes the buffer of its dying residual (the memory plan's
    in-place rule): the output transform reads that residual from the output itself."""
    rng = np.random.default_rng(3)
    g = Graph("wino_block")
    x = g.add_input(("N", 9, 10, 32), name="x")
    attrs = dict(strides=(1, 1), padding="same", dilation=(1, 1), groups=1)

    def conv(v, epilogue, *extras):
        w = g.constant(rng.standard_normal((3, 3, 32, 32)) * 0.2)
        b = g.constant(rng.standard_normal(32))
        return g.add("conv2d_fused", [v, w, b, *extras], {**attrs, "epilogue": epilogue})
    a = conv(x, (("relu",),))
    y = conv(conv(a, (("relu",),)), (("add",), ("relu",)), a)
    g.set_outputs(y)
    with _tile_side(2):
        compiled = cnnc.compile(g, target="cpu", opt_level=0)
    src = compiled.source()
    assert src.count("winograd F(2x2, 3x3) conv") == 2   # the plain and the residual kernel
    assert "v = v + of[oi]" in src
    xs = rng.standard_normal((2, 9, 10, 32)).astype(np.float32)
    err = _rel_err(compiled(xs), run_reference(g, xs, dtype=np.float64))
    assert err < TOL, f"relative error {err:.2e}"


@pytest.mark.parametrize("m", [2, 4])
def test_filter_transform_reproduces_a_direct_tile(m):
    """One (m + 2)^2 input patch through the transforms equals the m x m direct convolution."""
    rng = np.random.default_rng(0)
    a = m + 2
    g = rng.standard_normal((3, 3, 1, 1))
    d = rng.standard_normal((a, a))
    bt, _, at = winograd.TRANSFORMS[m]
    u = winograd.transform_filter(g, m).reshape(a, a)
    y = at @ (u * (bt @ d @ bt.T)) @ at.T
    direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * g[:, :, 0, 0]) for j in range(m)]
                       for i in range(m)])
    np.testing.assert_allclose(y, direct, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("hw, ch, padding, epilogue, batch", [
    ((13, 14), (32, 37), "same", (("scale_shift",), ("add",), ("relu",)), 3),
    ((9, 11), (33, 40), "valid", (("relu",),), 1),
    ((16, 16), (32, 32), "same", (), 2),
    ((6, 5), (32, 33), "same", (("add",),), 1),
])
def test_f4_conv_matches_reference(hw, ch, padding, epilogue, batch):
    """F(4x4, 3x3) wherever it applies: ragged last rows and columns of tiles (every
    remainder of 4), spare tiles, a partial channel block, residuals, batches."""
    _check_conv(np.random.default_rng(sum(hw) + sum(ch)), hw, ch, padding, epilogue, batch, 4)


def test_plan_picks_winograd_only_where_it_applies(monkeypatch):
    big = ConvSpec(28, 28, 128, 3, 3, 128, pads=(1, 1, 1, 1))
    assert convgen.plan(big).strategy == "winograd"
    assert winograd.why_not(big) is None
    for other in (ConvSpec(28, 28, 128, 3, 3, 128, stride=(2, 2), pads=(1, 1, 1, 1)),
                  ConvSpec(28, 28, 128, 3, 3, 128, dilation=(2, 2)),
                  ConvSpec(28, 28, 128, 3, 3, 128, groups=2),
                  ConvSpec(28, 28, 128, 1, 1, 128),
                  ConvSpec(28, 28, 3, 3, 3, 64, pads=(1, 1, 1, 1))):
        assert convgen.plan(other).strategy != "winograd", other
        assert winograd.why_not(other)
    # the measured defaults: on both ISAs ResNet-18's and VGG's layers and ResNet-20's 8x8
    # 64->64 take it; on full-rate AVX-512 not 7x7 512->512 (1.05x); at AVX2's arithmetic
    # rate (AVX2, and AMD Zen 4's AVX-512) 7x7 512->512 takes it too (Zen 4: 1.34-1.37x); under
    # 64 channels (compile time) only F(4x4), from 32 channels on 16x16 outputs and from 16
    # on 32x32, on every x86 rate (ResNet-20's 16 and 32 channels)
    monkeypatch.setattr(winograd, "GATES", _SAVED)
    avx2, avx512 = target.AVX2, target.AVX512
    zen4 = dataclasses.replace(avx512, name="znver4", features="+avx512f,+avx2,+fma")
    assert (avx2.rate_isa, avx512.rate_isa, zen4.rate_isa) == ("avx2", "avx512", "avx2")
    assert "256-bit halves" in zen4.describe() and "halves" not in avx512.describe()
    for layer in (big, ConvSpec(28, 28, 512, 3, 3, 512, pads=(1, 1, 1, 1)),
                  ConvSpec(14, 14, 256, 3, 3, 256, pads=(1, 1, 1, 1)),
                  ConvSpec(56, 56, 64, 3, 3, 64, pads=(1, 1, 1, 1)),
                  ConvSpec(8, 8, 64, 3, 3, 64, pads=(1, 1, 1, 1))):
        for cpu in (avx2, avx512, zen4):
            assert convgen.plan(layer, cpu, tuned=False).strategy == "winograd", (layer, cpu)
    deep = ConvSpec(7, 7, 512, 3, 3, 512, pads=(1, 1, 1, 1))
    cifar = ConvSpec(32, 32, 16, 3, 3, 16, pads=(1, 1, 1, 1))
    cifar32 = ConvSpec(16, 16, 32, 3, 3, 32, pads=(1, 1, 1, 1))
    small32 = ConvSpec(14, 14, 32, 3, 3, 64, pads=(1, 1, 1, 1))   # GoogLeNet's
    small16 = ConvSpec(28, 28, 16, 3, 3, 32, pads=(1, 1, 1, 1))   # GoogLeNet's
    for cpu in (avx2, zen4):
        assert convgen.plan(deep, cpu, tuned=False).wino == 2, cpu
        assert winograd.why_not(deep, cpu) is None
    for cpu in (avx2, zen4, avx512):
        for layer in (cifar32, cifar):
            assert convgen.plan(layer, cpu, tuned=False).wino == 4, (layer, cpu)
        for layer in (small32, small16):
            assert convgen.plan(layer, cpu, tuned=False).strategy == "blocked", (layer, cpu)
            assert ("F(4x4) from 32 channels and 256 output pixels where it pays; F(4x4) "
                    "from 16 channels and 1024 output pixels") in winograd.why_not(layer, cpu)
    assert convgen.plan(deep, avx512, tuned=False).strategy == "blocked"
    assert "below the default plan's Winograd gate on avx512 (64 channels, 64 output " \
        "pixels" in winograd.why_not(deep, avx512)
    assert "Winograd gate on avx512 at avx2's rate (64 channels, 1 output pixels; F(4x4)" \
        in winograd.why_not(small32, zen4)
    neon = dataclasses.replace(avx2, isa="neon", lanes=4, registers=32)
    assert "not measured on neon" in winograd.why_not(big, neon)
    # F(4x4) where little of its 2.25x larger weights falls to each output tile: on every ISA
    # for the large images
    for layer in (big, ConvSpec(56, 56, 64, 3, 3, 64, pads=(1, 1, 1, 1)),
                  ConvSpec(56, 56, 256, 3, 3, 256, pads=(1, 1, 1, 1))):
        for cpu in (avx2, avx512, zen4):
            assert convgen.plan(layer, cpu, tuned=False).wino == 4, (layer, cpu)
    # at AVX2's rate per tile of the image (the weights read once per image, blocks outer:
    # up to 2.4 MB a tile won on Zen 4, 9.4 MB lost); at AVX-512's full rate per tile of a
    # row (measured when each row read them all: from 2.4 MB lost); and by the tiles of a row:
    # 8x8 64->64 (two) at AVX2's rate only
    for layer, want in ((ConvSpec(28, 28, 512, 3, 3, 512, pads=(1, 1, 1, 1)), [4, 4, 2]),
                        (ConvSpec(28, 28, 256, 3, 3, 512, pads=(1, 1, 1, 1)), [4, 4, 2]),
                        (ConvSpec(14, 14, 512, 3, 3, 512, pads=(1, 1, 1, 1)), [4, 4, 2]),
                        (ConvSpec(14, 14, 256, 3, 3, 256, pads=(1, 1, 1, 1)), [4, 4, 2]),
                        (ConvSpec(7, 7, 256, 3, 3, 256, pads=(1, 1, 1, 1)), [4, 4, None]),
                        (deep, [2, 2, None]),
                        (ConvSpec(8, 8, 64, 3, 3, 64, pads=(1, 1, 1, 1)), [4, 4, 2])):
        plans = [convgen.plan(layer, cpu, tuned=False) for cpu in (avx2, zen4, avx512)]
        assert [pl.wino if pl.strategy == "winograd" else None for pl in plans] == want, layer
    # channel blocks outer where the transformed weights outweigh a chunk's transformed input
    for layer, outer in ((deep, True), (ConvSpec(14, 14, 256, 3, 3, 256, pads=(1, 1, 1, 1)), True),
                         (ConvSpec(56, 56, 64, 3, 3, 64, pads=(1, 1, 1, 1)), False),
                         (cifar32, False)):
        pl = winograd.default_plan(layer, avx2)
        weights = (pl.wino + 2) ** 2 * layer.cin * layer.cout
        assert pl.cb_outer == outer == (
            weights > winograd.scratch_elements(layer, pl) * winograd.chunk_images(layer, pl))
    monkeypatch.setattr(winograd, "F4_ENABLED", False)
    assert convgen.plan(cifar32, avx2, tuned=False).strategy == "blocked"
    assert convgen.plan(deep, avx2, tuned=False).wino == 2
    monkeypatch.setattr(winograd, "ENABLED", False)
    assert convgen.plan(big).strategy == "blocked"
    assert "CNNC_WINOGRAD=0" in winograd.why_not(big)


@pytest.mark.slow
@pytest.mark.parametrize("name, kwargs", [
    ("resnet18", dict(input_shape=(64, 64, 3), num_classes=10)),
    ("vgg11", dict(input_shape=(32, 32, 3), num_classes=10)),
])
def test_whole_model_with_winograd(name, kwargs):
    model = cnnc.models.get(name, **kwargs)
    compiled = cnnc.compile(model, target="cpu")
    # F(4x4) on the 16x16 layers (a row of 4 tiles), F(2x2) on the smaller ones
    assert "winograd F(2x2, 3x3) conv" in compiled.source()
    assert "winograd F(4x4, 3x3) conv" in compiled.source()
    graph = model.to_graph()
    x = np.random.default_rng(5).standard_normal((2, *graph.inputs[0].type.shape[1:]))
    x = x.astype(np.float32)
    err = _rel_err(compiled(x), run_reference(graph, x, dtype=np.float64))
    assert err < TOL, f"{name}: relative error {err:.2e}"


def test_f4_switched_off_from_the_environment():
    """CNNC_WINOGRAD_F4=0 (read at import) keeps F(2x2) where F(4x4) would be taken."""
    import os
    import subprocess
    import sys
    code = ("from cnnc.backends.numba_cpu import winograd\n"
            "from cnnc.backends.numba_cpu.convgen import ConvSpec\n"
            "print(winograd.default_plan(ConvSpec(56, 56, 64, 3, 3, 64, pads=(1, 1, 1, 1))).wino)")
    for value, m in (("0", "2"), ("1", "4")):
        env = dict(os.environ, CNNC_WINOGRAD_F4=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split()[-1] == m


CACHED = """
import numpy as np, cnnc
from cnnc.backends.numba_cpu import winograd
from cnnc.backends.reference import run_reference
winograd.GATES = {isa: (32, 1) for isa in ("avx2", "avx512", "neon", "sse", "avx", "generic")}
model = cnnc.models.get("resnet18", input_shape=(64, 64, 3), num_classes=10)
c = cnnc.compile(model, target="cpu")
x = np.random.default_rng(5).standard_normal((2, 64, 64, 3)).astype(np.float32)
print("KINDS", "F2" if "F(2x2, 3x3) conv" in c.source() else "",
      "F4" if "F(4x4, 3x3) conv" in c.source() else "")
print("HITS", sum(c.module.forward.stats.cache_hits.values()))
y = c(x)
ref = run_reference(model.to_graph(), x, dtype=np.float64)
print("ERR", float(np.max(np.abs(y - ref)) / np.max(np.abs(ref))))
print("OUT", repr(float(np.abs(y).sum())))
"""


@pytest.mark.slow
def test_winograd_helpers_run_from_the_disk_cache(tmp_path):
    """The transforms' helpers and the products' loop body are called by symbol
    (kernels.compile_tail): a second process, loading every kernel from the disk cache,
    must find them all and compute what the first did, within the bar of the float64
    reference."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, CNNC_CACHE_DIR=str(tmp_path))
    runs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", CACHED], env=env, capture_output=True,
                           text=True, timeout=600, cwd="/")
        assert r.returncode == 0, r.stderr[-3000:]
        runs.append(dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line))
    assert runs[0]["KINDS"].split() == ["F2", "F4"]
    assert int(runs[0]["HITS"]) == 0 and int(runs[1]["HITS"]) >= 1
    assert runs[1]["OUT"] == runs[0]["OUT"]
    assert all(float(r["ERR"]) < TOL for r in runs), runs


def _residual_block(batch=None):
    L = cnnc.layers
    x = L.Input(shape=(8, 8, 32), batch_size=batch)
    a = L.Conv2D(32, 3, padding="same", activation="relu", seed=31)(x)
    y = L.ReLU()(L.Add()([L.Conv2D(32, 3, padding="same", seed=32)(a), x]))
    return cnnc.Model(x, L.Conv2D(8, 1, seed=33)(y), name=f"wino_chunks_{batch}")


def test_a_batch_runs_in_chunks_of_images(monkeypatch):
    """With a transformed input of more than winograd.CHUNK_BYTES for the batch, the input
    transform and the products run a chunk of images at a time inside a loop of ``forward``
    (here one image: 3 passes for a batch of 3), the scratch holds one chunk, and the
    result is the whole batch's at once, bit for bit; the loop also runs inside a stage, and
    the debugger and the profiler step through it (each node's output checked after its
    loop, each loop's calls timed)."""
    from cnnc.backends.numba_cpu import stages
    from cnnc.debug import ForwardStepper
    from cnnc.profile import profile
    model = _residual_block()
    x = np.random.default_rng(5).standard_normal((3, 8, 8, 32)).astype(np.float32)
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1 << 40)   # the batch in one chunk
    whole = cnnc.compile(model, target="cpu")
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
    monkeypatch.setattr(stages, "STAGE_CALLS", 3)   # a stage boundary falls before a loop
    chunked = cnnc.compile(model, target="cpu")
    src = chunked.source()
    assert src.count("for wb in range(0, sym_n, 1):") == 2 and chunked.lowered.stages
    # the scratch holds one image's transformed input, whatever the batch
    assert chunked.lowered.scratch_elements({"N": 3}) == chunked.lowered.scratch_elements(
        {"N": 1}) == whole.lowered.scratch_elements({"N": 1})
    assert whole.lowered.scratch_elements({"N": 3}) == 3 * whole.lowered.scratch_elements(
        {"N": 1})
    np.testing.assert_array_equal(chunked(x), whole(x))
    ref = run_reference(model.to_graph(), x, dtype=np.float64)
    assert _rel_err(chunked(x), ref) < TOL
    assert [s.kernel for s in ForwardStepper(chunked).calls] == chunked.lowered.kernel_names
    seen = []
    for c in (chunked, whole):   # every node's output, once its kernels (and loop) are done
        outs = {}
        ForwardStepper(c).run([x], {"N": 3}, after_node=lambda node, out, outs=outs:
                              outs.__setitem__(node.name, np.array(out)))
        seen.append(outs)
    assert seen[0].keys() == seen[1].keys() and len(seen[0]) >= 3
    for name, out in seen[0].items():
        np.testing.assert_array_equal(out, seen[1][name])
    report = cnnc.debug.compare(chunked, x)
    assert "agree" in str(report), report
    prof = profile(chunked, x, repeats=2)
    assert {r.node for r in prof.rows} == {f"%{n.name}" for n in chunked.lowered.kernel_nodes}
    assert all(r.ms > 0 for r in prof.rows)
    # a fixed batch no larger than a chunk needs no loop; a larger one loops over it
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1 << 40)
    monkeypatch.setattr(stages, "STAGE_CALLS", 64)
    assert "for wb" not in cnnc.compile(_residual_block(3), target="cpu").source()
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
    fixed = cnnc.compile(_residual_block(3), target="cpu")
    assert fixed.source().count("for wb in range(0, 3, 1):") == 2
    np.testing.assert_array_equal(fixed(x), whole(x))
