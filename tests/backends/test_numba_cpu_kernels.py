"""Hypothesis property tests of the generated CPU kernels against the float64 reference:
convolutions with every epilogue, pooling, dense; and the in-place residual of a GEMM conv."""

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnc
from cnnc.backends.numba_cpu import target
from cnnc.backends.reference import run_reference
from cnnc.ir import Graph
from strategies import conv_configs, op_graph, pool_attrs, pool_configs

pytestmark = pytest.mark.numba
TOL = 1e-4
#: the plan shapes of both x86 ISAs run here (compiled for this machine: only speed differs)
PLAN_TARGETS = [target.AVX2, target.AVX512]
STEPS = [("relu",), ("relu6",), ("clip", -0.3, 0.4), ("leaky_relu", 0.1), ("sigmoid",),
         ("tanh",), ("hard_sigmoid", 0.2, 0.5), ("hard_swish",), ("scale_shift",), ("add",)]


def _rel_err(y, ref):
    return float(np.max(np.abs(y - ref)) / max(np.max(np.abs(ref)), 1e-6))


def _check(g, x, batches=(None,), plans_for=None):
    with target.plan_for(plans_for) if plans_for else contextlib.nullcontext():
        compiled = cnnc.compile(g, target="cpu", opt_level=0)
    for b in batches:
        xb = x if b is None else np.resize(x, (b, *x.shape[1:]))
        err = _rel_err(compiled(xb), run_reference(g, xb, dtype=np.float64))
        assert err < TOL, f"relative error {err:.2e}\n{compiled.source()}"
    return compiled


def _epilogue(g, rng, out_shape, steps):
    extras = []
    for s in steps:
        if s[0] == "scale_shift":
            extras += [g.constant(rng.standard_normal(out_shape[-1])),
                       g.constant(rng.standard_normal(out_shape[-1]))]
        elif s[0] == "add":
            extras.append(None)  # filled with a computed residual below
    return extras


@settings(deadline=None, max_examples=12)
@given(cfg=conv_configs(max_hw=9, max_cpg=18, max_groups=3, max_batch=3),
       steps=st.lists(st.sampled_from(STEPS), max_size=3), seed=st.integers(0, 2**16),
       depthwise=st.booleans(), cpu=st.sampled_from(PLAN_TARGETS))
def test_conv2d_fused_matches_reference(cfg, steps, seed, depthwise, cpu):
    rng = np.random.default_rng(seed)
    n, h, w, cin = cfg["x_shape"]
    kh, kw, cig, cout = cfg["w_shape"]
    groups = cfg["groups"]
    if depthwise:  # groups == cin, channel multiplier 1 or 2
        groups, cig, cout = cin, 1, cin * (1 + seed % 2)
    g = Graph("conv")
    x = g.add_input(("N", h, w, cin), name="x")
    wt = g.constant(rng.standard_normal((kh, kw, cig, cout)))
    b = g.constant(rng.standard_normal(cout))
    attrs = dict(strides=cfg["strides"], padding=cfg["padding"], dilation=cfg["dilation"],
                 groups=groups)
    out_shape = g.add("conv2d", [x, wt], attrs).shape
    extras = _epilogue(g, rng, out_shape, steps)
    for i, e in enumerate(extras):
        if e is None:  # a residual computed from the input by another conv
            wr = g.constant(rng.standard_normal((kh, kw, cig, cout)))
            extras[i] = g.add("conv2d", [x, wr], attrs)
    y = g.add("conv2d_fused", [x, wt, b, *extras], {**attrs, "epilogue": steps})
    g.set_outputs(y)
    _check(g, rng.standard_normal((n, h, w, cin)).astype(np.float32), plans_for=cpu)


@pytest.mark.parametrize("h, w, c, k, d, pad, epi", [
    (5, 16, 32, 5, 1, "same", [("swish", 1.0)]),                 # tail function
    (6, 23, 16, 7, 1, "same", [("scale_shift",), ("relu6",)]),   # a ragged last tile
    (12, 36, 32, 5, 2, "valid", []),                              # dilated, no padding
    (5, 17, 16, 5, 1, "same", [("add",), ("relu",)]),             # a residual in the store
])
@pytest.mark.parametrize("cpu", PLAN_TARGETS)
def test_depthwise_register_tiles(h, w, c, k, d, pad, epi, cpu):
    """Depthwise convs of whole vectors of channels, stride 1 and 25+ taps (AVX2: 49+) run
    as register tiles over the padded input copy; AVX2's 5x5 keep the per-pixel loop."""
    from cnnc.backends.numba_cpu import convgen
    rng = np.random.default_rng(w * c + k)
    g = Graph("dw")
    x = g.add_input(("N", h, w, c), name="x")
    attrs = dict(strides=1, padding=pad, dilation=d, groups=c)
    extras = _epilogue(g, rng, (c,), epi)
    extras = [e if e is not None else g.add("conv2d", [x, g.constant(
        rng.standard_normal((k, k, 1, c)))], attrs) for e in extras]
    y = g.add("conv2d_fused", [x, g.constant(rng.standard_normal((k, k, 1, c))),
                               g.constant(rng.standard_normal(c)), *extras],
              {**attrs, "epilogue": epi})
    g.set_outputs(y)
    pads = (k // 2 * d,) * 4 if pad == "same" else (0,) * 4
    spec = convgen.ConvSpec(h, w, c, k, k, c, (1, 1), pads, (d, d), groups=c)
    pl = convgen.plan(spec, cpu)
    assert pl.cb == (cpu.lanes if cpu.lanes >= 16 or k * k >= 49 else 0), pl
    _check(g, rng.standard_normal((3, h, w, c)).astype(np.float32), batches=(None, 1),
           plans_for=cpu)


@pytest.mark.parametrize("cpu, cout, epi, tail", [
    (target.AVX512, 6, [("tanh",)], True),               # one channel block: a contiguous row
    (target.AVX512, 40, [("scale_shift",), ("swish", 1.0)], True),  # blocks of 32, ragged last
    (target.AVX2, 32, [("add",), ("gelu",)], True),       # blocks of 16, every one full
    (target.AVX2, 56, [("sigmoid",), ("tanh",)], True),    # blocks of 16, ragged last
    (target.AVX2, 24, [("sigmoid",)], True),               # one block of 3 ymm
    (target.AVX2, 32, [("tanh",), ("add",)], False),      # a residual after it: in the store
    (target.AVX512, 32, [("relu",)], False),              # one select: in the store
    # a tile of 9 px x 32 ch (more than scalar.SMALL_TILE values)
    (target.AVX512, 32, [("add",), ("relu",)], True),     # after a residual: in the tail
    (target.AVX512, 32, [("relu6",)], True),              # a clamp: in the tail
    (target.AVX2, 16, [("relu6",)], False),               # 5 px x 16 ch: in the store
])
def test_blocked_conv_epilogue_tail(cpu, cout, epi, tail):
    """A register-tiled conv hands the activations ending its epilogue that would leave its
    store scalar (scalar.split_epilogue) to a loop-vectorized tail function, run over each
    (row, channel block) it has just stored: runs of a static width where every block is
    full."""
    from cnnc.backends.numba_cpu import convgen
    rng = np.random.default_rng(cout)
    h, w, cin, k = 7, 9, 5, 3
    g = Graph("tail")
    x = g.add_input(("N", h, w, cin), name="x")
    attrs = {"strides": 1, "padding": "same"}
    extras = [g.add("conv2d", [x, g.constant(rng.standard_normal((k, k, cin, cout)))], attrs)
              if e is None else e for e in _epilogue(g, rng, (cout,), epi)]
    y = g.add("conv2d_fused", [x, g.constant(rng.standard_normal((k, k, cin, cout))),
                               g.constant(rng.standard_normal(cout)), *extras],
              {**attrs, "epilogue": epi})
    g.set_outputs(y)
    with target.plan_for(cpu):
        spec = convgen.ConvSpec(h, w, cin, k, k, cout, pads=(1, 1, 1, 1), epilogue=tuple(epi))
        assert convgen.plan(spec, cpu).strategy == "blocked"
        source = cnnc.compile(g, target="cpu", opt_level=0).source()
        cb = convgen.plan(spec, cpu).cb
    assert (f"{convgen.TAIL}(of, " in source) == tail, source
    if tail:
        assert (f"for i in range({cb}):" in source) == (cb < cout and cout % cb == 0), source
    _check(g, 2 * rng.standard_normal((3, h, w, cin)).astype(np.float32), batches=(None, 1),
           plans_for=cpu)


@settings(deadline=None, max_examples=10)
@given(cfg=pool_configs(max_hw=9, max_channels=20), kind=st.sampled_from(["max", "avg"]),
       seed=st.integers(0, 2**16))
def test_pooling_matches_reference(cfg, kind, seed):
    rng = np.random.default_rng(seed)
    op = f"{kind}_pool2d"
    g = op_graph(op, [("N", *cfg["x_shape"][1:])], pool_attrs(cfg, op), name="pool")
    _check(g, rng.standard_normal(cfg["x_shape"]).astype(np.float32))


@pytest.mark.parametrize("k, d, kind", [(6, 1, "max"), (6, 1, "avg"), (3, 3, "max"),
                                        (3, 3, "avg")])
def test_pooling_by_taps_matches_reference(k, d, kind):
    """Windows of more than 25 taps (6x6), and images with more than four border columns (a
    3x3 window dilated 3 on 8 columns: six), take the loop accumulating tap by tap."""
    rng = np.random.default_rng(k * 10 + d)
    attrs = {"pool_size": k, "strides": 1, "padding": "same", "dilation": d,
             "ceil_mode": False}
    if kind == "avg":
        attrs["count_include_pad"] = False
    g = op_graph(f"{kind}_pool2d", [("N", 8, 8, 7)], attrs, name="pool")
    compiled = _check(g, rng.standard_normal((2, 8, 8, 7)).astype(np.float32), batches=(None, 1))
    assert "cntp" in compiled.source()   # the accumulating loop


@pytest.mark.parametrize("h, w, c", [(1, 1, 5), (1, 2, 16), (3, 3, 9), (3, 4, 33), (5, 5, 8)])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_global_pooling_matches_reference(h, w, c, kind):
    """Global pools over 1 to 25 rows: a max takes groups of up to 8 rows, the last group
    overlapping the one before it (1 row: none; 12: 8 + 8 overlapping)."""
    rng = np.random.default_rng(h * w * c)
    g = op_graph(f"global_{kind}_pool", [("N", h, w, c)], {"keepdims": kind == "max"},
                 name="gpool")
    _check(g, rng.standard_normal((3, h, w, c)).astype(np.float32), batches=(None, 1))


@settings(deadline=None, max_examples=6)
@given(fin=st.integers(1, 70), fout=st.integers(1, 40), steps=st.lists(
    st.sampled_from([s for s in STEPS if s[0] != "add"]), max_size=3), seed=st.integers(0, 99))
def test_dense_fused_matches_reference(fin, fout, steps, seed):
    rng = np.random.default_rng(seed)
    g = Graph("dense")
    x = g.add_input(("N", fin), name="x")
    extras = _epilogue(g, rng, (fout,), steps)
    y = g.add("dense_fused", [x, g.constant(rng.standard_normal((fin, fout))),
                              g.constant(rng.standard_normal(fout)), *extras],
              {"epilogue": steps})
    g.set_outputs(y)
    _check(g, rng.standard_normal((3, fin)).astype(np.float32), batches=(None, 1, 9))


@pytest.mark.parametrize("cpu", PLAN_TARGETS)
@pytest.mark.parametrize("fin, fout, epi", [
    (400, 120, [("tanh",)]),                            # LeNet's: blocks of 2 vectors, ragged
    (37, 5, [("scale_shift",), ("add",), ("swish", 1.0)]),   # one partial vector
    (64, 48, [("sigmoid",), ("add",)]),                 # a residual after it: in the store
    (402, 40, [("relu",)]),                             # batch 1 split over 6 (or 3) rows
])
def test_dense_register_tiles(cpu, fin, fout, epi):
    """Dense layers whose weights stay in cache run as register tiles of rows x features;
    batches that are not a whole number of row tiles, residuals and tail activations.  At
    batch 1 the tile's rows split the reduction when a divisor of its length from p / 2 to p
    exists (37 is prime: the row computed p times instead)."""
    from cnnc.backends.numba_cpu import convgen
    rng = np.random.default_rng(fout)
    g = Graph("dense")
    x = g.add_input(("N", fin), name="x")
    extras = [g.add("dense", [x, g.constant(rng.standard_normal((fin, fout)))])
              if e is None else e for e in _epilogue(g, rng, (fout,), epi)]
    y = g.add("dense_fused", [x, g.constant(rng.standard_normal((fin, fout))),
                              g.constant(rng.standard_normal(fout)), *extras], {"epilogue": epi})
    g.set_outputs(y)
    cb, p = convgen.dense_tile(fout, cpu)
    with target.plan_for(cpu):
        source = cnnc.compile(g, target="cpu", opt_level=0).source()
    assert f"tile {p} rows x {cb} features" in source
    split = [r for r in range(2, p + 1) if fin % r == 0 and 2 * r >= p]
    assert ("if n == 1:" in source) == bool(split)
    if split:
        assert f"x[0, k * {max(split)} + r]" in source
    _check(g, rng.standard_normal((3, fin)).astype(np.float32), batches=(1, p, p + 1, 2 * p + 3),
           plans_for=cpu)


@pytest.mark.parametrize("cpu", PLAN_TARGETS)
def test_partial_channel_block_stores_with_constant_widths(cpu):
    """56 output channels are one (AVX-512) or three (AVX2) whole blocks and a partial one:
    whole blocks and the partial one store in loops of constant width (a residual and ReLU in
    the store)."""
    from cnnc.backends.numba_cpu import convgen
    rng = np.random.default_rng(56)
    g = Graph("ragged")
    x = g.add_input(("N", 12, 12, 24), name="x")
    w = g.constant(rng.standard_normal((1, 1, 24, 56)).astype(np.float32))
    res = g.add("conv2d", [x, g.constant(rng.standard_normal((1, 1, 24, 56)))],
                {"strides": (1, 1), "padding": "valid", "dilation": (1, 1), "groups": 1})
    y = g.add("conv2d_fused", [x, w, g.constant(rng.standard_normal(56)), res],
              {"strides": (1, 1), "padding": "valid", "dilation": (1, 1), "groups": 1,
               "epilogue": [("add",), ("relu",)]})
    g.set_outputs(y)
    with target.plan_for(cpu):
        cb = convgen.plan(convgen.ConvSpec(12, 12, 24, 1, 1, 56)).cb
        source = cnnc.compile(g, target="cpu", opt_level=0).source()
    assert 56 % cb and f"if co0 + {cb} <= 56:" in source and f"range({56 % cb}):" in source
    _check(g, rng.standard_normal((2, 12, 12, 24)).astype(np.float32), batches=(1, 2, 5),
           plans_for=cpu)


def test_gemm_conv_writing_over_its_residual_in_place(monkeypatch):
    """A 1x1 conv lowered to np.dot whose output buffer is planned over its residual."""
    from cnnc.backends.numba_cpu import convgen
    monkeypatch.setattr(convgen, "GEMM_ENABLED", True)
    rng = np.random.default_rng(1)
    g = Graph("inplace")
    x = g.add_input(("N", 6, 6, 64), name="x")
    r = g.add("relu", [x])                      # dies at the fused conv: buffer reused
    y = g.add("conv2d_fused", [x, g.constant(rng.standard_normal((1, 1, 64, 64))),
                               g.constant(rng.standard_normal(64)), r], {"epilogue": ["add"]})
    g.set_outputs(y)
    compiled = cnnc.compile(g, target="cpu", opt_level=0)
    plan = compiled.plan
    assert plan.buffer_of[y.name] == plan.buffer_of[r.name], "expected an in-place plan"
    assert "np.dot" in compiled.source()
    x0 = rng.standard_normal((2, 6, 6, 64)).astype(np.float32)
    assert _rel_err(compiled(x0), run_reference(g, x0)) < TOL


@pytest.mark.parametrize("h, w, cin, cout, k, s, d, pad, epi", [
    (7, 9, 5, 6, 3, 2, 1, "same", ["add", "relu"]),
    (6, 6, 3, 4, 2, 3, 2, "valid", ["sigmoid"]),
    (5, 5, 4, 4, 1, 2, 1, "same", []),
])
def test_im2col_strategy(monkeypatch, h, w, cin, cout, k, s, d, pad, epi):
    from cnnc.backends.numba_cpu import convgen
    monkeypatch.setattr(convgen, "IM2COL_ENABLED", True)
    monkeypatch.setattr(convgen, "_im2col_pays", lambda spec: True)
    rng = np.random.default_rng(h * 100 + k)
    g = Graph("im2col")
    x = g.add_input(("N", h, w, cin), name="x")
    attrs = {"strides": s, "padding": pad, "dilation": d}
    r = g.add("conv2d", [x, g.constant(rng.standard_normal((k, k, cin, cout)))], attrs)
    y = g.add("conv2d_fused", [x, g.constant(rng.standard_normal((k, k, cin, cout))),
                               g.constant(rng.standard_normal(cout)),
                               *([r] if "add" in epi else [])], {**attrs, "epilogue": epi})
    g.set_outputs(y)
    compiled = cnnc.compile(g, target="cpu", opt_level=0)
    assert "cols = scratch" in compiled.source()
    for b in (1, 3):
        x0 = rng.standard_normal((b, h, w, cin)).astype(np.float32)
        assert _rel_err(compiled(x0), run_reference(g, x0)) < TOL


@pytest.mark.parametrize("cpu, h, w, cin, cout, k, s, pad, epi, expect", [
    # AVX-512: two zmm of channels, 4-8 px picked to pad the row least, loop vectorizer off;
    # few input channels: separate kw and cin loops
    (target.AVX512, 15, 13, 3, 64, 7, 2, "same", ["relu"],
     dict(merged=False, cb=32, p=7, loop_vectorize=False)),
    (target.AVX512, 9, 8, 6, 32, 5, 1, "valid", ["add", "tanh"],
     dict(merged=False, cb=32, p=4, loop_vectorize=False)),
    # weights larger than the image: the parallel loop runs over channel blocks first
    (target.AVX512, 3, 5, 16, 48, 3, 1, "same", ["add", "relu"],
     dict(merged=True, cb_outer=True, cb=32, p=5)),
    (target.AVX512, 4, 4, 20, 36, 3, 2, "same", ["relu"], dict(merged=True, cb_outer=True)),
    # AVX-512 with at most 16 output channels: one zmm; on rows under 10 px 4 px, loop
    # vectorized; a long reduction on a row of 12: 12 px, without the loop vectorizer
    (target.AVX512, 8, 8, 16, 16, 3, 1, "same", ["relu"],
     dict(cb=16, p=4, loop_vectorize=True)),
    (target.AVX512, 11, 12, 6, 16, 5, 1, "same", [("tanh",)],
     dict(cb=16, p=12, loop_vectorize=False)),
    # AVX2: two ymm of channels, 4-6 px (8-12 accumulators) picked to pad the row least
    (target.AVX2, 15, 13, 3, 64, 7, 2, "same", ["relu"], dict(merged=False, cb=16, p=4)),
    (target.AVX2, 9, 8, 6, 32, 5, 1, "valid", ["add", "tanh"], dict(merged=False, cb=16, p=4)),
    (target.AVX2, 14, 14, 16, 48, 3, 1, "same", ["add", "relu"], dict(merged=True, cb=16, p=5)),
    (target.AVX2, 12, 12, 20, 36, 3, 1, "same", ["relu"], dict(merged=True, cb=16, p=6)),
    (target.AVX2, 4, 4, 20, 8, 3, 2, "same", ["relu"], dict(merged=True, cb=8, p=2)),
    # AVX2: three or five ymm of channels where two would pad the channels more
    (target.AVX2, 8, 8, 16, 24, 1, 1, "valid", ["relu"], dict(cb=24, p=4)),
    (target.AVX2, 10, 9, 12, 72, 3, 1, "same", ["add", "relu"], dict(cb=24, p=3)),
    (target.AVX2, 7, 7, 16, 40, 1, 1, "valid", ["relu"], dict(cb=40, p=2)),
    (target.AVX2, 6, 6, 8, 200, 3, 2, "same", ["relu"], dict(cb=40, p=2)),
    (target.AVX2, 6, 6, 8, 56, 3, 1, "same", ["relu"], dict(cb=16)),
])
def test_blocked_conv_plans(cpu, h, w, cin, cout, k, s, pad, epi, expect):
    from cnnc.backends.numba_cpu import convgen
    pads = (k // 2,) * 4 if pad == "same" else (0,) * 4
    spec = convgen.ConvSpec(h, w, cin, k, k, cout, (s, s), pads)
    pl = convgen.plan(spec, cpu)
    assert {key: getattr(pl, key) for key in expect} == expect
    rng = np.random.default_rng(cin * 100 + cout)
    g = Graph("plans")
    x = g.add_input(("N", h, w, cin), name="x")
    attrs = {"strides": s, "padding": pad}
    r = g.add("conv2d", [x, g.constant(rng.standard_normal((k, k, cin, cout)))], attrs)
    y = g.add("conv2d_fused", [x, g.constant(rng.standard_normal((k, k, cin, cout))),
                               g.constant(rng.standard_normal(cout)),
                               *([r] if "add" in epi else [])], {**attrs, "epilogue": epi})
    g.set_outputs(y)
    with target.plan_for(cpu):
        assert f"(tile {pl.p}px x {pl.cb}ch)" in cnnc.compile(g, target="cpu", opt_level=0).source()
    _check(g, rng.standard_normal((2, h, w, cin)).astype(np.float32), batches=(None, 1, 5),
           plans_for=cpu)


def test_tanh_within_one_ulp_and_keeps_nan_inf():
    """The rational tanh every kernel inlines: within 1 ulp of float64 tanh rounded to float32
    over a dense sweep (tiny, mid and saturating values), NaN stays NaN, +-inf give +-1."""
    g = Graph("tanh")
    x = g.add_input(("N",), name="x")
    g.set_outputs(g.add("tanh", [x]))
    compiled = cnnc.compile(g, target="cpu", opt_level=0)
    rng = np.random.default_rng(7)
    sweep = np.concatenate([np.linspace(-12, 12, 400_001), rng.uniform(-10, 10, 100_000),
                            np.geomspace(1e-30, 1, 20_000), -np.geomspace(1e-30, 1, 20_000),
                            [0.0, -0.0, 8.99, 9.0, 9.01, -9.0, 3e38, -3e38]]).astype(np.float32)
    y = compiled(sweep)
    ref = np.tanh(sweep.astype(np.float64))
    ulp = np.abs(y - ref) / np.spacing(np.abs(ref.astype(np.float32)))
    assert ulp.max() <= 1.0, f"{ulp.max():.2f} ulp at x={sweep[ulp.argmax()]!r}"
    special = compiled(np.array([np.nan, np.inf, -np.inf, -0.0], np.float32))
    assert np.isnan(special[0]) and special[1] == 1.0 and special[2] == -1.0
    assert special[3] == 0.0 and np.signbit(special[3])


@pytest.mark.parametrize("cpu, k, cout, epi, batches", [
    (target.AVX512, (2, 2), 64, [], (None, 1)),                        # U-Net's 2x2 / 2
    (target.AVX512, (3, 2), 32, [("add",), ("gelu",)], (None,)),       # residual, GELU tail
    (target.AVX2, (2, 2), 16, [("scale_shift",), ("relu",)], (None, 1)),
    (target.AVX2, (2, 3), 48, [("sigmoid",)], (None,)),                 # three blocks of 16
])
def test_conv_transpose_with_kernel_equal_to_stride_runs_as_register_tiles(cpu, k, cout,
                                                                           epi, batches):
    """Each input pixel writes its own kh x kw output block: a (pixels, cin) x (cin,
    kh * kw * cout) product in dense-layer tiles, stored at the tap's output pixels."""
    from cnnc.backends.numba_cpu import norm_kernels
    rng = np.random.default_rng(cout + k[0])
    h, w, cin = 5, 7, 11
    g = Graph("deconv")
    x = g.add_input(("N", h, w, cin), name="x")
    attrs = {"strides": k}
    wt = g.constant(rng.standard_normal((*k, cin, cout)))
    extras = [g.add("conv2d_transpose", [x, g.constant(rng.standard_normal((*k, cin, cout)))],
                    attrs) if e is None else e for e in _epilogue(g, rng, (cout,), epi)]
    y = g.add("conv2d_transpose_fused", [x, wt, g.constant(rng.standard_normal(cout)), *extras],
              {**attrs, "epilogue": epi})
    g.set_outputs(y)
    with target.plan_for(cpu):
        source = cnnc.compile(g, target="cpu", opt_level=0).source()
    assert norm_kernels.TILED   # the op and the residual's own transposed conv are tiled
    assert source.count("columns, epilogue") == 1 + epi.count(("add",))
    _check(g, rng.standard_normal((3, h, w, cin)).astype(np.float32), batches=batches,
           plans_for=cpu)


@pytest.mark.parametrize("k, strides, padding, out_pad, dilation, cout, epi", [
    (4, 2, ((1, 1), (1, 1)), (0, 0), 1, 16, [("relu",)]),          # FCN / DCGAN upsampling
    (3, 2, ((1, 1), (1, 1)), (1, 1), 1, 24, [("add",), ("gelu",)]),  # 3x3 / 2, output pad
    (3, (1, 2), ((0, 2), (1, 0)), (0, 1), 2, 5, [("scale_shift",)]),  # dilated, odd sizes
    (2, 2, "valid", (0, 0), 1, 6, []),                               # k = s, 6 % cb != 0
])
def test_conv_transpose_as_a_product_and_col2im(k, strides, padding, out_pad, dilation, cout,
                                                epi):
    """One-group transposed convs with constant weights the tiles do not take: the dense-tile
    product of every input pixel with every tap into the scratch, then per output pixel the
    sum of the taps that reach it, bias and epilogue."""
    rng = np.random.default_rng(k * cout)
    h, w, cin = 5, 6, 7
    g = Graph("deconv_col2im")
    x = g.add_input(("N", h, w, cin), name="x")
    attrs = {"strides": strides, "padding": padding, "output_padding": out_pad,
             "dilation": dilation}
    wt = g.constant(rng.standard_normal((k, k, cin, cout)))
    extras = [g.add("conv2d_transpose", [x, g.constant(rng.standard_normal((k, k, cin, cout)))],
                    attrs) if e is None else e for e in _epilogue(g, rng, (cout,), epi)]
    g.set_outputs(g.add("conv2d_transpose_fused",
                        [x, wt, g.constant(rng.standard_normal(cout)), *extras],
                        {**attrs, "epilogue": epi}))
    source = cnnc.compile(g, target="cpu", opt_level=0).source()
    assert source.count('"""col2im of a conv_transpose') == 1 + epi.count(("add",))
    _check(g, rng.standard_normal((3, h, w, cin)).astype(np.float32), batches=(None, 1))


def test_padded_kernels_start_one_parallel_region():
    """The per-pixel depthwise kernel and Winograd's input transform keep a zero row for the
    rows in the padding.  Made by ``np.zeros`` it was a parallel loop of its own, started
    on every call; now each kernel is one parallel region (one parfor gufunc)."""
    import re

    from numba import njit, types

    from cnnc.backends.numba_cpu import convgen, winograd
    from cnnc.backends.numba_cpu.lower import PRELUDE
    rng = np.random.default_rng(5)

    def arr(nd):
        return types.Array(types.float32, nd, "C")

    dw = convgen.ConvSpec(7, 9, 12, 3, 3, 12, (2, 2), (1, 1, 1, 1), groups=12)
    wg = convgen.ConvSpec(6, 10, 16, 3, 3, 16, (1, 1), (1, 1, 1, 1))
    wpl = winograd.default_plan(wg, target.AVX512)
    cases = [(convgen.generate(dw, "kernel", convgen.plan(dw, target.AVX2)),
              (arr(4), arr(2), arr(1), arr(4))),
             (winograd.generate_input(wg, "kernel", wpl), (arr(4), arr(1)))]
    for source, sig in cases:
        ns: dict = {}
        exec(PRELUDE, ns)
        exec(source.replace("cache=True", "cache=False"), ns)
        fn = njit(parallel=True, fastmath=ns["FASTMATH"], error_model="numpy")(ns["kernel"])
        fn.compile(sig)
        ir = fn.inspect_llvm(sig)
        regions = set(re.findall(r"define [^@]*@__gufunc__\S*?(parfor_gufunc_0x[0-9a-f]+)", ir))
        assert len(regions) == 1, f"{len(regions)} parallel regions in\n{source}"
    # and the depthwise kernel's zero row still stands in for the padding
    x = rng.standard_normal((2, 7, 9, 12)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 12)).astype(np.float32)
    g = Graph("dw")
    xi = g.add_input(("N", 7, 9, 12), name="x")
    g.set_outputs(g.add("conv2d", [xi, g.constant(wt)],
                        dict(strides=2, padding="same", groups=12)))
    _check(g, x, plans_for=target.AVX2)


CALLS_HELPER = '''def kernel(x, w, out):
    """x (n, 3, 4) @ w (12, 3) -> out (n, 3), each row by its helper"""
    n = x.shape[0]
    xf = x.reshape(n, 12)
    for t in prange(n):
        kernel_row(xf, w, out, np.int64(t))


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def kernel_row(xf, w, out, t):
    acc = np.empty(3, np.float32)
    for c in range(3):
        acc[c] = 0.0
    for k in range(12):
        for c in range(3):
            acc[c] += xf[t, k] * w[k, c]
    for c in range(3):
        out[t, c] = acc[c]


kernel_helpers = (("kernel_row", (2, 2, 2, -1), "tiled"),)
'''


def test_helpers_are_compiled_first_and_called_by_symbol():
    """kernels.compile_tail: a helper the kernel lists becomes a by-symbol call
    (extern.KernelCall) declared for its ranks, a "tiled" one compiled as a register tile
    (without the loop vectorizer, arrays noalias); the kernel computes x @ w through it."""
    from numba import njit

    from cnnc.backends.numba_cpu import extern, runtime
    from cnnc.backends.numba_cpu.lower import PRELUDE
    ns: dict = {}
    exec(PRELUDE, ns)
    exec(CALLS_HELPER.replace("cache=True", "cache=False"), ns)
    fn = njit(parallel=True, fastmath=ns["FASTMATH"], error_model="numpy")(ns["kernel"])
    runtime.compile_signature(fn, (3, 2, 2))
    call = ns["kernel_row"]
    assert isinstance(call, extern.KernelCall) and call.register_tiled
    assert call.ranks == ((2, 2, 2, -1),) and len(call.dispatcher.overloads) == 1
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    w = rng.standard_normal((12, 3)).astype(np.float32)
    out = np.empty((5, 3), np.float32)
    fn(x, w, out)
    ref = x.reshape(5, 12).astype(np.float64) @ w
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
