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


def _gelu_spelled(g, x, form):
    """x * 0.5 * (1 + erf(x / sqrt 2)) in one of the orders exporters write."""
    s2 = g.constant(np.float32(np.sqrt(2.0)))
    z = (g.add("div", [x, s2]) if form != "mul_inv" else
         g.add("mul", [g.constant(np.float32(1 / np.sqrt(2.0))), x]))
    t = g.add("add", [g.add("erf", [z]), g.constant(np.float32(1.0))])
    half = g.constant(np.float32(0.5))
    if form == "half_last":      # torch.onnx: mul(mul(x, 1 + erf), 0.5)
        return g.add("mul", [g.add("mul", [x, t]), half])
    return g.add("mul", [t, g.add("mul", [half, x])])   # (x * 0.5) * (1 + erf)


@pytest.mark.parametrize("form", ["half_last", "half_first", "mul_inv"])
def test_erf_spelled_gelu_becomes_gelu_and_fuses(form):
    rng = np.random.default_rng(2)
    g = Graph("gelu")
    x = g.add_input(("N", 5, 5, 3), name="x")
    g.set_outputs(_gelu_spelled(g, _conv(rng, g, x), form))
    xs = rng.standard_normal((2, 5, 5, 3)) * 2
    changed, _ = check_same(g, lambda g: run_pass(g, Idioms), xs)
    assert changed and ops(g) == ["conv2d", "gelu"]
    check_same(g, lambda g: optimize(g, opt_level=2), xs)
    (conv,) = [n for n in g.ops if n.op == "conv2d_fused"]
    assert conv.attrs["epilogue"] == (("gelu",),)


def test_erf_spelled_gelu_left_alone_when_a_piece_differs_or_is_read_elsewhere():
    rng = np.random.default_rng(3)
    g = Graph("not_gelu")
    x = g.add_input(("N", 5, 5, 3), name="x")
    y = _conv(rng, g, x)
    # 0.4 instead of 0.5
    z = g.add("div", [y, g.constant(np.float32(np.sqrt(2.0)))])
    t = g.add("add", [g.add("erf", [z]), g.constant(np.float32(1.0))])
    a = g.add("mul", [g.add("mul", [y, t]), g.constant(np.float32(0.4))])
    # the erf is also an output
    z2 = g.add("div", [y, g.constant(np.float32(np.sqrt(2.0)))])
    e2 = g.add("erf", [z2])
    t2 = g.add("add", [e2, g.constant(np.float32(1.0))])
    b = g.add("mul", [g.add("mul", [y, t2]), g.constant(np.float32(0.5))])
    g.set_outputs(a, b, e2)
    text = str(g)
    changed, _ = run_pass(g, Idioms)
    assert not changed and str(g) == text


def test_matmul_of_a_rank4_tensor_by_a_constant_matrix_is_a_fused_1x1_conv():
    """ConvNeXt's Linear layers on (N, H, W, C): matmul + bias + layer scale + residual
    become one conv2d_fused."""
    rng = np.random.default_rng(4)
    g = Graph("linear")
    x = g.add_input(("N", 4, 5, 6), name="x")
    y = g.add("matmul", [x, g.constant(rand(rng, 6, 6))])
    y = g.add("add", [y, g.constant(rand(rng, 6))])
    y = g.add("mul", [g.constant(rand(rng, 1, 1, 6)), y])
    g.set_outputs(g.add("add", [y, x]))
    xs = rng.standard_normal((2, 4, 5, 6))
    changed, _ = check_same(g, lambda g: run_pass(g, Idioms), xs)
    assert changed and ops(g)[0] == "conv2d" and "matmul" not in ops(g)
    check_same(g, lambda g: optimize(g, opt_level=2), xs)
    assert ops(g) == ["conv2d_fused"]
    assert g.ops[0].attrs["epilogue"] == (("scale_shift",), ("add",))


def test_matmul_left_alone_when_not_rank4_by_a_constant_matrix():
    rng = np.random.default_rng(5)
    g = Graph("matmuls")
    x = g.add_input(("N", 4, 6), name="x")
    x4 = g.add_input(("N", 2, 4, 6), name="x4")
    w = g.add_input((6, 3), name="w")
    g.set_outputs(g.add("matmul", [x, g.constant(rand(rng, 6, 3))]), g.add("matmul", [x4, w]),
                  g.add("matmul", [x4, g.constant(rand(rng, 2, 6, 3))]))
    text = str(g)
    changed, _ = run_pass(g, Idioms)
    assert not changed and str(g) == text
