"""reduce {kind, axes, keepdims} against its definition written out one window at a time."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnc.errors import ConfigError, ShapeError
from cnnc.ir import Graph
from cnnc.ops.reduce import KINDS
from strategies import rng_array, run_op, seeds, shapes

BY_HAND = {
    "sum": sum, "mean": lambda v: sum(v) / len(v), "max": max, "min": min,
    "sum_square": lambda v: sum(t * t for t in v), "l1": lambda v: sum(abs(t) for t in v),
    "l2": lambda v: math.sqrt(sum(t * t for t in v)),
    "log_sum_exp": lambda v: math.log(sum(math.exp(t) for t in v)),
}


@settings(deadline=None, max_examples=60)
@given(st.sampled_from(KINDS), shapes(1, 4), seeds, st.booleans(), st.data())
def test_reduce_matches_its_definition(kind, shape, seed, keepdims, data):
    rank = len(shape)
    axes = data.draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True))
    axes = [a - rank if data.draw(st.booleans()) else a for a in axes]  # negative ones too
    x = rng_array(seed, shape, scale=3)
    y = run_op("reduce", [x], {"kind": kind, "axes": axes, "keepdims": keepdims})
    norm = sorted(a % rank for a in axes)
    kept = [k for k in range(rank) if k not in norm]
    moved = np.transpose(x, kept + norm).reshape([shape[k] for k in kept] + [-1])
    want = np.array([BY_HAND[kind](list(row)) for row in moved.reshape(-1, moved.shape[-1])])
    out_shape = [1 if k in norm else d for k, d in enumerate(shape)] if keepdims else \
        [shape[k] for k in kept]
    assert y.shape == tuple(out_shape)
    np.testing.assert_allclose(y.reshape(-1), want, rtol=1e-10, atol=1e-12)


def test_log_sum_exp_of_large_values_is_finite():
    y = run_op("reduce", [np.array([[1000.0, 1000.0], [-1000.0, -np.inf]])],
               {"kind": "log_sum_exp", "axes": [1]})
    np.testing.assert_allclose(y, [1000 + math.log(2), -1000.0], rtol=1e-12)


def test_bad_reductions_are_refused():
    g = Graph("g")
    x = g.add_input(("N", 3, 4), name="x")
    with pytest.raises(ConfigError, match="kind"):
        g.add("reduce", [x], {"kind": "median", "axes": [1]})
    with pytest.raises(ShapeError, match="out of range"):
        g.add("reduce", [x], {"kind": "sum", "axes": [3]})
    with pytest.raises(ShapeError, match="repeat"):
        g.add("reduce", [x], {"kind": "sum", "axes": [1, -2]})
    with pytest.raises(ShapeError, match="at least one"):
        g.add("reduce", [x], {"kind": "sum", "axes": []})
