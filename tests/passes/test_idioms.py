"""idioms: Mul(x, Sigmoid(x)) as exported by torch.onnx becomes swish, which then fuses into
the conv before it; not when the sigmoid has another reader or multiplies something else."""

from __future__ import annotations

import numpy as np
import pytest

from cnnc.ir import Graph
from cnnc.passes import optimize
from cnnc.passes.idioms import Idioms
from helpers import check_same, ops, rand, run_pass


def _conv(rng, g, x):
    return g.add("conv2d", [x, g.constant(rand(rng, 3, 3, 3, 4)), g.constant(rand(rng, 4))],
                 {"padding": "same"})


@pytest.mark.parametrize("sigmoid_first", [False, True])
def test_mul_by_own_sigmoid_becomes_swish_and_fuses(sigmoid_first):
    rng = np.random.default_rng(0)
    g = Graph("silu")
    x = g.add_input(("N", 5, 5, 3), name="x")
    y = _conv(rng, g, x)
    s = g.add("sigmoid", [y])
    g.set_outputs(g.add("mul", [s, y] if sigmoid_first else [y, s]))
    xs = rng.standard_normal((2, 5, 5, 3))
    changed, remarks = check_same(g, lambda g: run_pass(g, Idioms), xs)
    assert changed and ops(g).count("swish") == 1 and "sigmoid" not in ops(g)
    check_same(g, lambda g: optimize(g, opt_level=2), xs)
    (conv,) = [n for n in g.ops if n.op == "conv2d_fused"]
    assert conv.attrs["epilogue"] == (("swish", 1.0),)


def test_left_alone_when_the_sigmoid_is_read_elsewhere_or_multiplies_another_value():
    rng = np.random.default_rng(1)
    g = Graph("not_silu")
    x = g.add_input(("N", 5, 5, 3), name="x")
    y = _conv(rng, g, x)
    s = g.add("sigmoid", [y])
    m1 = g.add("mul", [y, s])                       # the sigmoid has a second reader below
    z = _conv(rng, g, x)
    m2 = g.add("mul", [z, g.add("sigmoid", [y])])   # sigmoid of y times z
    g.set_outputs(g.add("add", [m1, s]), m2)
    text = str(g)
    changed, _ = run_pass(g, Idioms)
    assert not changed and str(g) == text
