"""constant_fold, cse, dce and eliminate_noops on their edge cases."""

from __future__ import annotations

import numpy as np

from cnnc.ir import Graph
from cnnc.passes.constant_fold import ConstantFold
from cnnc.passes.cse import CSE
from cnnc.passes.dce import DCE
from cnnc.passes.eliminate_noops import EliminateNoops
from helpers import check_same, ops, rand, run_pass


def test_constant_fold_in_float64_through_the_reference():
    rng = np.random.default_rng(0)
    g = Graph("cf")
    x = g.add_input(("N", 2, 2, 3), name="x")
    a = g.constant(rand(rng, 1, 1, 3, 3))
    b = g.add("transpose", [a], {"perm": (1, 0, 3, 2)})
    c = g.add("mul", [b, g.constant(np.full((1, 1, 3, 3), 1 / 3, np.float64))])
    g.set_outputs(g.add("conv2d", [x, c]))
    changed, _ = check_same(g, lambda g: run_pass(g, ConstantFold),
                            rng.standard_normal((2, 2, 2, 3)))
    assert changed and ops(g) == ["conv2d"]
    w = g.ops[0].inputs[1]
    assert w.data.dtype == np.float64 and str(w.type) == "f32[1,1,3,3]"
    expect = np.transpose(a.data.astype(np.float64), (1, 0, 3, 2)) / 3
    np.testing.assert_allclose(w.data, expect, rtol=1e-15)
    assert len(g.constants()) == 1  # the operands went with it


def test_cse_merges_equal_nodes_and_constants_but_not_different_attrs():
    g = Graph("cse")
    x = g.add_input(("N", 5, 5, 2), name="x")
    w1 = g.constant(np.arange(8, dtype=np.float32).reshape(1, 1, 2, 4))
    w2 = g.constant(np.arange(8, dtype=np.float32).reshape(1, 1, 2, 4))
    w3 = g.constant(np.arange(8, dtype=np.float64).reshape(1, 1, 2, 4))  # other bytes
    y1 = g.add("conv2d", [x, w1], {"padding": "same"})
    y2 = g.add("conv2d", [x, w2], {"padding": "same"})
    y3 = g.add("conv2d", [x, w3], {"padding": "same"})
    y4 = g.add("conv2d", [x, w1], {"padding": "valid"})
    g.set_outputs(g.add("add", [y1, y2]), g.add("add", [y3, y1]), y4)
    xs = np.random.default_rng(1).standard_normal((1, 5, 5, 2))
    changed, _ = check_same(g, lambda g: run_pass(g, CSE), xs)
    assert changed and ops(g).count("conv2d") == 3 and len(g.constants()) == 2


def test_dce_keeps_outputs_and_removes_dead_chains():
    g = Graph("dce")
    x = g.add_input(("N", 3), name="x")
    dead = g.add("tanh", [g.add("bias_add", [x, g.constant(np.ones(3, np.float32))])])
    g.add("relu", [dead])
    g.set_outputs(g.add("sigmoid", [x]), x)
    changed, _ = run_pass(g, DCE)
    assert changed and ops(g) == ["sigmoid"] and not g.constants()


def test_noops_kept_between_input_and_output():
    g = Graph("n")
    x = g.add_input(("N", 3), name="x")
    g.set_outputs(g.add("identity", [x]), g.add("relu", [g.add("dropout", [x])]))
    changed, _ = run_pass(g, EliminateNoops)
    assert changed and ops(g) == ["identity", "relu"]


def test_real_reshape_and_transpose_are_kept():
    g = Graph("n")
    x = g.add_input(("N", 2, 3), name="x")
    y = g.add("transpose", [x], {"perm": (0, 2, 1)})
    y = g.add("reshape", [y], {"shape": (-1, 2, 3)})  # same shape, different layout
    g.set_outputs(g.add("relu", [y]))
    changed, _ = check_same(g, lambda g: run_pass(g, EliminateNoops),
                            np.random.default_rng(0).standard_normal((2, 2, 3)))
    assert not changed
