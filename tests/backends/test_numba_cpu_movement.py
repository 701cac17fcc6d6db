"""Hypothesis property tests of the data-movement kernels (slice, take, tile,
broadcast_to, resize) against the float64 reference, on the cpu target and, on the CUDA
simulator, by tests/cuda/test_sim_movement.py (the graphs are built here)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import cnnc
from cnnc.backends.reference import run_reference
from cnnc.ir import Graph
from cnnc.ops.resample import COORDINATE_MODES, NEAREST_MODES

pytestmark = pytest.mark.numba
TOL = 1e-4


@st.composite
def movement_cases(draw, max_hw=6, max_c=5, allow_empty=True):
    """(graph, input shape): one data-movement op on a fresh NHWC input."""
    h, w = draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw))
    c, n = draw(st.integers(1, max_c)), draw(st.integers(1, 2))
    shape = (n, h, w, c)
    g = Graph("move")
    x = g.add_input(("N", h, w, c), name="x")
    op = draw(st.sampled_from(["slice", "take", "tile", "broadcast_to", "resize"]))
    if op == "slice":
        axes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3, unique=True))
        attrs = {"axes": axes, "starts": [], "ends": [], "steps": []}
        for ax in axes:
            d = shape[ax]
            attrs["starts"].append(draw(st.integers(-d - 1, d + 1)))
            attrs["ends"].append(draw(st.sampled_from([2 ** 62, -2 ** 62, *range(-d - 1, d + 2)])))
            attrs["steps"].append(draw(st.sampled_from([1, 2, 3, -1, -2])))
        y = g.add(op, [x], attrs)
    elif op == "take":
        ax = draw(st.integers(1, 3))
        d = shape[ax]
        k = draw(st.integers(0, 4))
        idx = draw(st.lists(st.integers(-d, d - 1), min_size=max(k, 1), max_size=max(k, 1)))
        ishape = () if k == 0 else draw(st.sampled_from([(k,), (1, k)]))
        y = g.add(op, [x], {"axis": ax, "indices": idx, "indices_shape": ishape})
    elif op == "tile":
        reps = [1] + [draw(st.integers(1, 3)) for _ in range(3)]
        y = g.add(op, [x], {"repeats": reps})
    elif op == "broadcast_to":
        p = g.add("reduce", [x], {"kind": "mean", "axes": draw(st.sampled_from(
            [(1,), (2,), (3,), (1, 2)])), "keepdims": True})
        target = [1] + [draw(st.integers(1, 4)) if p.shape[k] == 1 else 1 for k in (1, 2, 3)]
        y = g.add(op, [p], {"shape": target})
    else:
        oh, ow = draw(st.integers(1, 2 * max_hw)), draw(st.integers(1, 2 * max_hw))
        by_scale = draw(st.booleans())
        scales = ((draw(st.sampled_from([0.5, 0.7, 1.0, 1.5, 2.0, 3.0])),) * 2 if by_scale
                  else (oh / h, ow / w))
        if by_scale:
            oh, ow = max(1, int(h * scales[0])), max(1, int(w * scales[1]))
        y = g.add(op, [x], {"size": (oh, ow), "scales": scales,
                            "mode": draw(st.sampled_from(["nearest", "linear"])),
                            "coordinate_mode": draw(st.sampled_from(COORDINATE_MODES)),
                            "nearest_mode": draw(st.sampled_from(NEAREST_MODES))})
    assume(allow_empty or 0 not in y.shape[1:])
    g.set_outputs(g.add("mul", [y, g.constant(np.float32(1.5))]))  # a computed output
    return g, shape


def rel_err(y, ref):
    assert y.shape == ref.shape
    if ref.size == 0:
        return 0.0
    return float(np.max(np.abs(y - ref)) / max(np.max(np.abs(ref)), 1e-6))


@settings(deadline=None, max_examples=10)  # each example compiles its own kernels
@given(case=movement_cases(), seed=st.integers(0, 2 ** 16))
def test_movement_kernels_match_reference(case, seed):
    g, shape = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    compiled = cnnc.compile(g, target="cpu", opt_level=0)
    err = rel_err(compiled(x), run_reference(g, x, dtype=np.float64))
    assert err < TOL, f"relative error {err:.2e}\n{g}"


@pytest.mark.parametrize("shape", [(7,), ("N", 5), ("N", 3, 5), ("N", 2, 3, 5),
                                   ("N", 2, 3, 4, 5)])
def test_transpose_every_permutation(shape):
    """Every permutation of ranks 1-4 (the loop-nest kernel; rank 4 includes NCHW <-> NHWC)
    and a few of rank 5 (the unravelling one), with a symbolic batch, as outputs of one
    graph."""
    import itertools
    rank = len(shape)
    perms = list(itertools.permutations(range(rank)))
    if rank == 5:
        perms = perms[::29]
    g = Graph("transpose")
    x = g.add_input(shape, name="x")
    g.set_outputs(*[g.add("transpose", [x], {"perm": p}) for p in perms])
    compiled = cnnc.compile(g, target="cpu", opt_level=0)
    for n in (1, 3):
        xs = np.random.default_rng(n).standard_normal(
            [n if d == "N" else d for d in shape]).astype(np.float32)
        ys = compiled(xs)
        for y, p in zip(ys if len(perms) > 1 else [ys], perms, strict=True):
            np.testing.assert_array_equal(y, xs.transpose(p), err_msg=str(p))
