"""fold_pad: exact folds into conv/max/avg pools and the cases that must stay (with a remark)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnc.ir import Graph
from cnnc.passes.fold_pad import FoldPad
from helpers import check_same, ops, rand, run_pass

PADS = ((0, 0), (2, 1), (0, 1), (0, 0))


def graph(op, value=0.0, pads=PADS, extra_user=False, **attrs):
    rng = np.random.default_rng(0)
    g = Graph("p")
    x = g.add_input(("N", 7, 6, 3), name="x")
    p = g.add("pad", [x], {"pads": pads, "value": value})
    if op == "conv2d":
        y = g.add("conv2d", [p, g.constant(rand(rng, 3, 2, 3, 4))], attrs)
    else:
        y = g.add(op, [p], attrs)
    outs = [y, g.add("relu", [p])] if extra_user else [y]
    g.set_outputs(*outs)
    return g, rng.standard_normal((2, 7, 6, 3))


@pytest.mark.parametrize("op,value,attrs", [
    ("conv2d", 0.0, {"strides": 2, "padding": "same", "dilation": (2, 1)}),
    ("conv2d", 0.0, {"padding": ((1, 0), (0, 1)), "groups": 1}),
    ("max_pool2d", -math.inf, {"pool_size": 3, "strides": 2, "padding": "same"}),
    ("avg_pool2d", 0.0, {"pool_size": (3, 2), "strides": (2, 1)}),  # valid -> count pads
    ("avg_pool2d", 0.0, {"pool_size": 4, "strides": 1, "padding": "same",
                         "count_include_pad": True}),
])
def test_folds_exactly(op, value, attrs):
    g, x = graph(op, value, **attrs)
    changed, remarks = check_same(g, lambda g: run_pass(g, FoldPad), x)
    assert changed and not remarks and ops(g) == [op]
    n = g.ops[0]
    assert isinstance(n.attrs["padding"], tuple)
    for k, v in attrs.items():
        if k in ("strides", "dilation", "pool_size"):
            assert n.attrs[k] == (v if isinstance(v, tuple) else (v, v)), k


@pytest.mark.parametrize("op,value,attrs,reason", [
    ("conv2d", 1.5, {}, "is not 0"),
    ("max_pool2d", 0.0, {"pool_size": 2}, "is not -inf"),
    ("max_pool2d", -math.inf, {"pool_size": 2, "ceil_mode": True}, "ceil_mode"),
    ("avg_pool2d", 0.0, {"pool_size": 3, "strides": 1, "padding": "same"}, "divisor"),
    ("avg_pool2d", 0.0, {"pool_size": 2, "ceil_mode": True, "count_include_pad": True},
     "ceil_mode"),
])
def test_stays_with_remark(op, value, attrs, reason):
    g, x = graph(op, value, **attrs)
    text = str(g)
    changed, remarks = check_same(g, lambda g: run_pass(g, FoldPad), x)
    assert not changed and str(g) == text
    assert reason in remarks[0][2], remarks


def test_pad_leaving_a_window_of_only_padding_stays():
    """Windows wholly inside the pad read real zeros; as pool padding they are invalid."""
    g, x = graph("avg_pool2d", pads=((0, 0), (0, 0), (0, 3), (0, 0)), pool_size=2, strides=1,
                 count_include_pad=True)
    changed, remarks = check_same(g, lambda g: run_pass(g, FoldPad), x)
    assert not changed and "merged padding is invalid" in remarks[0][2]


def test_pad_with_two_users_stays():
    g, x = graph("conv2d", extra_user=True)
    changed, remarks = check_same(g, lambda g: run_pass(g, FoldPad), x)
    assert not changed and "2 users" in remarks[0][2]


def test_pad_over_channels_stays():
    g, x = graph("max_pool2d", -math.inf, pads=((0, 0), (1, 1), (1, 1), (0, 1)))
    changed, remarks = run_pass(g, FoldPad)
    assert not changed and "N or C" in remarks[0][2]
