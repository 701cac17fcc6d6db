"""fuse_epilogue: what fuses (bias, per-channel adds, scale_shift, activations, residual add in
either order) and what must not (shared intermediates, graph outputs, non-per-channel adds)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnc.ir import Graph
from cnnc.passes import optimize
from cnnc.passes.fuse_epilogue import FuseEpilogue
from graphgen import resnet_like
from helpers import check_same, ops, rand, run_pass


def conv_graph(cin=3, cout=4, hw=5, bias=True, rng=None):
    rng = rng or np.random.default_rng(0)
    g = Graph("f")
    x = g.add_input(("N", hw, hw, cin), name="x")
    w = g.constant(rand(rng, 3, 3, cin, cout))
    y = g.add("conv2d", [x, w, *([g.constant(rand(rng, cout))] if bias else [])],
              {"padding": "same", "dilation": 2})
    return g, x, y, rng


def xs(rng, cin=3, hw=5):
    return rng.standard_normal((2, hw, hw, cin))


def test_full_chain_fuses_in_order_with_attrs_kept():
    g, x, y, rng = conv_graph(bias=False)
    y = g.add("bias_add", [y, g.constant(rand(rng, 4))])
    y = g.add("add", [g.constant(rand(rng, 1, 1, 1, 4)), y])  # per-channel, into the bias
    y = g.add("scale_shift", [y, g.constant(rand(rng, 4)), g.constant(rand(rng, 4))])
    y = g.add("leaky_relu", [y], {"alpha": 0.3})
    y = g.add("add", [y, g.constant(rand(rng, 4))])  # per-channel after a step: scale_shift
    r = g.add("sigmoid", [x])
    r = g.add("conv2d", [r, g.constant(rand(rng, 1, 1, 3, 4))])
    y = g.add("add", [r, y])  # residual, other operand first
    y = g.add("clip", [y], {"min": -0.5, "max": 0.5})
    g.set_outputs(y)
    changed, remarks = check_same(g, lambda g: run_pass(g, FuseEpilogue), xs(rng))
    assert changed and not remarks
    fused = [n for n in g.ops if n.op == "conv2d_fused"]
    main = [n for n in fused if n.attrs["dilation"] == (2, 2)][0]
    assert [s[0] for s in main.attrs["epilogue"]] == \
        ["scale_shift", "leaky_relu", "scale_shift", "add", "clip"]
    assert main.attrs["epilogue"][1] == ("leaky_relu", 0.3)
    assert main.attrs["padding"] == "same" and main.attrs["groups"] == 1


def test_bias_is_always_present():
    g, x, y, rng = conv_graph(bias=False)
    g.set_outputs(g.add("relu", [y]))
    check_same(g, lambda g: run_pass(g, FuseEpilogue), xs(rng))
    (n,) = g.ops
    assert n.op == "conv2d_fused" and len(n.inputs) == 3
    assert not n.inputs[2].data.any()


def test_relu_not_fused_when_conv_output_feeds_a_skip_connection():
    g, x, y, rng = conv_graph(cin=4)
    r = g.add("relu", [y])
    g.set_outputs(g.add("add", [r, y]))  # y is read by relu and by the add
    changed, remarks = check_same(g, lambda g: run_pass(g, FuseEpilogue), xs(rng, 4))
    conv = [n for n in g.ops if n.op.startswith("conv2d")]
    assert "relu" in ops(g) and conv[0].op == "conv2d"
    assert not changed
    assert any("output %" in m and "has 2 users" in m for _, _, m in remarks), remarks


def test_graph_output_intermediate_is_not_fused():
    g, x, y, rng = conv_graph()
    g.set_outputs(g.add("relu", [y]), y)
    text = str(g)
    changed, remarks = run_pass(g, FuseEpilogue)
    assert not changed and str(g) == text
    assert "graph output" in remarks[0][2]


@pytest.mark.parametrize("shape", [(1, 1, 5, 1), (1, 5, 5, 4), (5, 1, 1), (1, 5, 1, 4)])
def test_constant_add_that_is_not_per_channel_is_not_a_bias(shape):
    g, x, y, rng = conv_graph()
    y = g.add("add", [y, g.constant(rand(rng, *shape))])
    g.set_outputs(g.add("relu", [y]))
    changed, remarks = check_same(g, lambda g: run_pass(g, FuseEpilogue), xs(rng))
    assert not changed and ops(g) == ["conv2d", "add", "relu"]
    assert "not per-output-channel" in remarks[0][2] or "neither" in remarks[0][2]


@pytest.mark.parametrize("order", ["yr", "ry"])
def test_residual_either_order_and_other_conv(order):
    g, x, y, rng = conv_graph(cin=4, cout=4)
    other = g.add("conv2d", [x, g.constant(rand(rng, 1, 1, 4, 4))])
    s = g.add("add", [y, other] if order == "yr" else [other, y])
    g.set_outputs(g.add("relu", [s]))
    check_same(g, lambda g: run_pass(g, FuseEpilogue), xs(rng, 4))
    assert sorted(ops(g)) in (["conv2d", "conv2d_fused"],)


def test_add_reading_the_conv_twice_is_not_a_residual():
    g, x, y, rng = conv_graph()
    g.set_outputs(g.add("add", [y, y]))
    changed, remarks = check_same(g, lambda g: run_pass(g, FuseEpilogue), xs(rng))
    assert not changed and "more than once" in remarks[0][2]


def test_dense_chain():
    rng = np.random.default_rng(1)
    g = Graph("d")
    x = g.add_input(("N", 6), name="x")
    y = g.add("dense", [x, g.constant(rand(rng, 6, 3))])
    y = g.add("add", [y, g.constant(rand(rng, 1, 3))])
    y = g.add("hard_swish", [y])
    other = g.add("tanh", [g.add("dense", [x, g.constant(rand(rng, 6, 3))])])
    y = g.add("add", [y, other])
    g.set_outputs(g.add("softmax", [y]))
    check_same(g, lambda g: run_pass(g, FuseEpilogue), rng.standard_normal((3, 6)))
    assert "dense_fused" in ops(g) and "softmax" in ops(g)


def test_resnet_block_becomes_one_fused_conv_with_add_relu():
    g = resnet_like(blocks=3)
    x = np.random.default_rng(2).standard_normal((2, 16, 16, 3))
    report = check_same(g, lambda g: optimize(g, verify_each=True), x)
    epilogues = [tuple(s[0] for s in n.attrs["epilogue"]) for n in g.ops
                 if n.op == "conv2d_fused"]
    assert epilogues.count(("add", "relu")) == 3
    assert "batch_norm" not in ops(g) and "relu" not in ops(g) and "add" not in ops(g)
    assert report.ops_after["conv2d_fused"] == 7


@pytest.mark.parametrize("shape", [(4,), (1, 1, 1, 4), ()])
def test_mul_by_a_per_channel_or_scalar_constant_is_a_scale_step(shape):
    g, x, y, rng = conv_graph()
    y = g.add("relu", [y])
    y = g.add("mul", [g.constant(rand(rng, *shape)), y])
    g.set_outputs(g.add("mul", [y, y]))   # a product of two values: not an epilogue step
    check_same(g, lambda g: run_pass(g, FuseEpilogue), xs(rng))
    assert ops(g) == ["conv2d_fused", "mul"]
    assert g.ops[0].attrs["epilogue"] == (("relu",), ("scale_shift",))


def test_mul_by_a_constant_of_another_shape_stays_with_a_remark():
    g, x, y, rng = conv_graph()
    g.set_outputs(g.add("mul", [y, g.constant(rand(rng, 5, 1, 4))]))
    text = str(g)
    changed, remarks = run_pass(g, FuseEpilogue)
    assert not changed and str(g) == text
    assert any("neither per-output-channel nor a scalar" in r[2] for r in remarks)
