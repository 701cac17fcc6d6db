"""Convs that store their output in the zero-bordered input of the conv reading it (the halo,
``lower._Lowerer.mirror_for``) instead of their buffer and a PAD_COPY pass: against the
float64 reference, against the same model compiled with PAD_COPY passes (to the bit: the
arithmetic is the same), and what the lowering chose."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnc
from cnnc.backends.numba_cpu import lower, target, winograd
from cnnc.backends.reference import run_reference
from cnnc.debug import compare
from cnnc.ir import Graph

pytestmark = pytest.mark.numba

TOL = 1e-4


def _conv(g, x, rng, cout, k=3, act="relu", **attrs):
    cin = x.type.shape[-1] // attrs.get("groups", 1)
    w = g.constant((rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin))
                   .astype(np.float32))
    b = g.constant(rng.standard_normal(cout).astype(np.float32) * 0.1)
    y = g.add("conv2d", [x, w, b], {"padding": "same", **attrs})
    return g.add(act, [y]) if act else y


def _blocks(h, c, name):
    """Two residual blocks: conv-relu-conv, + the block's input, relu."""
    rng = np.random.default_rng(h * c)
    g = Graph(name)
    x = g.add_input(("N", h, h, 3), name="x")
    x = _conv(g, x, rng, c)
    for _ in range(2):
        y = _conv(g, _conv(g, x, rng, c), rng, c, act=None)
        x = g.add("relu", [g.add("add", [y, x])])
    g.set_outputs(x)
    return g


def _compile(graph, mirrors: bool):
    saved = lower.MIRRORS
    lower.MIRRORS = mirrors
    try:
        return cnnc.compile(graph.copy(), target="cpu")
    finally:
        lower.MIRRORS = saved


def _pad_copies(compiled) -> int:
    """PAD_COPY calls in forward (the kernel whose source begins with its docstring)."""
    src = compiled.source()
    pad = {m.group(1) for m in re.finditer(r"def (k\d+)\(x, xf, pt, pl\):", src)}
    return sum(1 for line in src.splitlines() if line.strip().split("(")[0] in pad)


def _check(graph, batches=(1, 3), bitwise=True):
    """Compiled with halos against the float64 reference and (``bitwise``) against the same
    graph compiled with PAD_COPY passes; returns both (the second None without it)."""
    halo = _compile(graph, True)
    plain = _compile(graph, False) if bitwise else None
    rng = np.random.default_rng(5)
    for n in batches:
        x = rng.standard_normal((n, *graph.inputs[0].type.shape[1:])).astype(np.float32)
        ys, refs = halo(x), run_reference(graph, x, dtype=np.float64)
        ys, refs = (ys, refs) if isinstance(ys, (list, tuple)) else ([ys], [refs])
        for k, (y, ref) in enumerate(zip(ys, refs)):
            err = np.max(np.abs(y - ref)) / np.max(np.abs(ref))
            assert err < TOL, f"{graph.name} batch {n}: relative error {err:.2e}"
        if plain is not None:
            same = plain(x)
            for y, z in zip(ys, same if len(ys) > 1 else [same]):
                np.testing.assert_array_equal(y, z)
    return halo, plain


@pytest.mark.parametrize("h, c", [(13, 16), (8, 64)])
def test_residual_blocks_read_their_inputs_and_residuals_from_halos(h, c, monkeypatch):
    """13x13x16: ragged tiles; 8x8x64: the ReLU after the residual add runs in the tail
    function on the halo (a tile of more than SMALL_TILE values).  The direct kernels' halos:
    Winograd (the AVX-512 default for 8x8x64) off."""
    monkeypatch.setattr(winograd, "ENABLED", False)
    halo, plain = _check(_blocks(h, c, f"blocks_{h}x{c}"))
    # every conv but the first (it reads the graph input) reads a halo
    assert _pad_copies(plain) == 5 and _pad_copies(halo) == 1
    remarks = [text for _, text in halo.lowered.remarks]
    assert sum("no pad copy" in text for text in remarks) == 4
    assert len(halo.lowered.halo_only) == 4
    # a residual that dies at a conv gives its slot to that conv's output: fewer slots
    # than values held in them
    assert len(halo.lowered.halo_needs) < len(halo.lowered.halo_only)


@pytest.mark.parametrize("attrs", [
    {"strides": 2},                          # asymmetric SAME padding (0, 1)
    {"dilation": 2},
    {"padding": "valid"},                    # no padding, a ragged last tile
    {"padding": ((2, 0), (0, 3))},
])
def test_strided_dilated_and_unpadded_consumers(attrs):
    rng = np.random.default_rng(1)
    g = Graph("consumer_" + "_".join(map(str, attrs.values())).replace(" ", ""))
    x = g.add_input(("N", 15, 15, 8), name="x")
    x = _conv(g, _conv(g, x, rng, 24), rng, 24, k=3, **attrs)
    g.set_outputs(_conv(g, x, rng, 16, k=5, act="sigmoid"))
    halo, _ = _check(g, batches=(2,), bitwise=False)
    assert halo.lowered.halo_only, "no conv stored its output in a halo"


def test_depthwise_producer_and_consumer(monkeypatch):
    # direct convs only: a Winograd conv (F(4x4) takes 16x16 32->32 at AVX2's arithmetic
    # rate) reads its input unpadded and stores no halo
    monkeypatch.setattr(winograd, "ENABLED", False)
    rng = np.random.default_rng(2)
    g = Graph("depthwise_halo")
    x = _conv(g, g.add_input(("N", 16, 16, 32), name="x"), rng, 32)
    x = _conv(g, x, rng, 32, k=5, groups=32)
    x = _conv(g, x, rng, 32, k=5, groups=32, act="swish")
    g.set_outputs(_conv(g, x, rng, 16))
    halo, _ = _check(g, batches=(1,))
    if target.for_plans().lanes >= 16:   # depthwise register tiles (convgen.plan)
        assert len(halo.lowered.halo_only) == 3


def test_values_read_elsewhere_or_returned_keep_their_buffers():
    rng = np.random.default_rng(3)
    g = Graph("shared_values")
    x = g.add_input(("N", 10, 10, 8), name="x")
    a = _conv(g, x, rng, 16)
    b = _conv(g, a, rng, 16)           # a: also read by the pool below
    c = _conv(g, b, rng, 16)           # b: also a graph output
    g.set_outputs(c, b, g.add("global_avg_pool", [a]))
    halo, _ = _check(g, batches=(2,), bitwise=False)
    assert not halo.lowered.halo_only


def test_the_debugger_reads_values_held_in_halos():
    """cnnc.debug.compare checks each node's output where its kernel left it: for a value
    held in a halo only, the image inside the halo (its own buffer is never written)."""
    g = _blocks(9, 16, "blocks_debug")
    compiled = _compile(g, True)
    held = set(compiled.lowered.halo_only)
    x = np.random.default_rng(4).standard_normal((2, 9, 9, 3)).astype(np.float32)
    result = compare(compiled, x)
    assert result.ok, str(result)
    checked = {c.name: c for c in result.checks}
    assert held and held <= set(checked)
    assert all(checked[name].error < TOL for name in held)


LAYER = st.fixed_dictionaries({
    "k": st.sampled_from([1, 3, 5]), "cout": st.sampled_from([8, 16, 24]),
    "strides": st.sampled_from([1, 1, 2]), "dilation": st.sampled_from([1, 1, 2]),
    "padding": st.sampled_from(["same", "same", "valid"]), "grouped": st.booleans(),
    "act": st.sampled_from(["relu", "swish", None]), "residual": st.booleans()})


@settings(deadline=None, max_examples=5)
@given(h=st.integers(7, 16), c0=st.sampled_from([3, 8, 16]), batch=st.integers(1, 3),
       layers=st.lists(LAYER, min_size=2, max_size=4), seed=st.integers(0, 2 ** 16))
def test_random_conv_chains_match_the_reference(h, c0, batch, layers, seed):
    """Chains of convs (grouped, strided, dilated, padded or not) with residual adds where
    the shapes allow: whatever the lowering holds in halos, the result is the reference's."""
    rng = np.random.default_rng(seed)
    g = Graph("halo_chain")
    v = g.add_input(("N", h, h, c0), name="x")
    seen = [v]
    for spec in layers:
        cin = v.type.shape[-1]
        groups = 2 if spec["grouped"] and cin % 2 == 0 and spec["cout"] % 2 == 0 else 1
        span = (spec["k"] - 1) * spec["dilation"] + 1
        padding = spec["padding"] if v.type.shape[1] >= span else "same"
        y = _conv(g, v, rng, spec["cout"], k=spec["k"], act=spec["act"], groups=groups,
                  strides=spec["strides"], dilation=spec["dilation"], padding=padding)
        same = [u for u in seen if u.type.shape == y.type.shape]
        if spec["residual"] and same:
            y = g.add("relu", [g.add("add", [y, same[-1]])])
        seen.append(y)
        v = y
    g.set_outputs(v)
    compiled = _compile(g, True)
    x = rng.standard_normal((batch, h, h, c0)).astype(np.float32)
    ref = run_reference(g, x, dtype=np.float64)
    err = np.max(np.abs(compiled(x) - ref)) / np.max(np.abs(ref))
    assert err < TOL, (err, sorted(compiled.lowered.halo_only))
