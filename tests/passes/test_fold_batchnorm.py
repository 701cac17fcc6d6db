"""fold_batchnorm: exact folding (own epsilon, existing bias, grouped/depthwise, dense) and the
cases that must become scale_shift with a remark."""

from __future__ import annotations

import numpy as np
import pytest

from cnnc.ir import Graph
from cnnc.passes.fold_batchnorm import FoldBatchNorm
from helpers import check_same, ops, rand, run_pass


def bn_consts(g, rng, c, identity=False):
    if identity:  # gamma = 1, beta = 0: only mean/var matter
        gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)
    else:
        gamma = rand(rng, c) * np.where(np.arange(c) % 2, -1, 1).astype(np.float32)
        beta = rand(rng, c)
    mean, var = rand(rng, c), rng.uniform(0.1, 3, c).astype(np.float32)
    return [g.constant(a) for a in (gamma, beta, mean, var)], (gamma, beta, mean, var)


def conv_bn(groups=1, cin=4, cout=8, bias=True, eps=0.37, identity=False, seed=0):
    rng = np.random.default_rng(seed)
    g = Graph("conv_bn")
    x = g.add_input(("N", 6, 5, cin), name="x")
    w = g.constant(rand(rng, 3, 2, cin // groups, cout))
    b = [g.constant(rand(rng, cout))] if bias else []
    y = g.add("conv2d", [x, w, *b], {"strides": (2, 1), "padding": ((1, 0), (0, 2)),
                                       "dilation": (1, 2), "groups": groups})
    consts, raw = bn_consts(g, rng, cout, identity)
    g.set_outputs(g.add("batch_norm", [y, *consts], {"epsilon": eps}))
    return g, rng.standard_normal((2, 6, 5, cin)), raw


@pytest.mark.parametrize("groups,cin,cout", [(1, 4, 8), (2, 4, 6), (4, 4, 4), (4, 4, 8)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_bn_folds_exactly(groups, cin, cout, bias):
    g, x, _ = conv_bn(groups, cin, cout, bias)
    changed, remarks = check_same(g, lambda g: run_pass(g, FoldBatchNorm), x)
    assert changed and not remarks
    assert ops(g) == ["conv2d"]
    conv = g.ops[0]
    # attributes copied wholesale
    assert dict(conv.attrs) == {"strides": (2, 1), "padding": ((1, 0), (0, 2)),
                                "dilation": (1, 2), "groups": groups}
    assert conv.inputs[1].data.dtype == np.float64 and len(conv.inputs) == 3


def test_folded_values_match_formula_with_own_epsilon_and_bias():
    """w' = w*s per output channel, b' = (b - mean)*s + beta, with the node's epsilon."""
    g, _, (gamma, beta, mean, var) = conv_bn(groups=2, cin=4, cout=6, eps=0.37)
    w0 = g.ops[0].inputs[1].data.astype(np.float64)
    b0 = g.ops[0].inputs[2].data.astype(np.float64)
    run_pass(g, FoldBatchNorm)
    s = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + 0.37)
    w, b = g.ops[0].inputs[1].data, g.ops[0].inputs[2].data
    np.testing.assert_allclose(w, w0 * s, rtol=1e-15)  # last (output) axis of HWIO
    np.testing.assert_allclose(b, (b0 - mean) * s + beta, rtol=1e-12, atol=1e-15)
    wrong = b0 * s + beta  # the classic slip: forgetting the mean under the bias
    assert not np.allclose(b, wrong)
    hard_eps = gamma / np.sqrt(var.astype(np.float64) + 1e-3)
    assert not np.allclose(w, w0 * hard_eps)


def test_identity_gamma_beta():
    g, x, _ = conv_bn(identity=True, bias=False)
    changed, _ = check_same(g, lambda g: run_pass(g, FoldBatchNorm), x)
    assert changed and ops(g) == ["conv2d"]


def test_dense_bn_folds_along_last_axis():
    rng = np.random.default_rng(3)
    g = Graph("dense_bn")
    x = g.add_input(("N", 5), name="x")
    y = g.add("dense", [x, g.constant(rand(rng, 5, 3))])
    consts, _ = bn_consts(g, rng, 3)
    g.set_outputs(g.add("batch_norm", [y, *consts], {"epsilon": 1e-5}))
    changed, _ = check_same(g, lambda g: run_pass(g, FoldBatchNorm), rng.standard_normal((4, 5)))
    assert changed and ops(g) == ["dense"]


def test_fused_producer_with_empty_epilogue_folds():
    rng = np.random.default_rng(4)
    g = Graph("fused_bn")
    x = g.add_input(("N", 4, 4, 2), name="x")
    y = g.add("conv2d_fused", [x, g.constant(rand(rng, 1, 1, 2, 3)), g.constant(rand(rng, 3))],
              {"epilogue": ()})
    consts, _ = bn_consts(g, rng, 3)
    g.set_outputs(g.add("batch_norm", [y, *consts]))
    changed, _ = check_same(g, lambda g: run_pass(g, FoldBatchNorm),
                            rng.standard_normal((1, 4, 4, 2)))
    assert changed and ops(g) == ["conv2d_fused"]


def _unfoldable(kind, rng):
    g = Graph(kind)
    x = g.add_input(("N", 4, 4, 3), name="x")
    w = g.constant(rand(rng, 3, 3, 3, 3))
    if kind == "after_add":
        y = g.add("add", [x, x])
    elif kind == "conv_used_twice":
        y = g.add("conv2d", [x, w], {"padding": "same"})
    elif kind == "weights_not_constant":
        y = g.add("conv2d", [x, g.add("relu", [w])], {"padding": "same"})
    elif kind == "conv_is_output":
        y = g.add("conv2d", [x, w], {"padding": "same"})
    else:  # the graph input itself
        y = x
    consts, _ = bn_consts(g, rng, 3)
    z = g.add("batch_norm", [y, *consts], {"epsilon": 0.01})
    if kind == "conv_used_twice":
        g.set_outputs(g.add("add", [z, y]))
    else:
        g.set_outputs(*([z, y] if kind == "conv_is_output" else [z]))
    return g


@pytest.mark.parametrize("kind,reason", [
    ("after_add", "produced by add, not conv2d/dense"),
    ("conv_used_twice", "has 2 users"),
    ("weights_not_constant", "weights %"),
    ("conv_is_output", "(and is a graph output)"),
    ("graph_input", "is a graph input"),
])
def test_unfoldable_bn_becomes_scale_shift_with_remark(kind, reason):
    rng = np.random.default_rng(5)
    g = _unfoldable(kind, rng)
    x = rng.standard_normal((2, 4, 4, 3))
    changed, remarks = check_same(g, lambda g: run_pass(g, FoldBatchNorm), x)
    assert changed and "batch_norm" not in ops(g) and "scale_shift" in ops(g)
    assert len(remarks) == 1 and remarks[0][0] == "fold_batchnorm"
    assert "batch_norm" in remarks[0][1] and reason in remarks[0][2], remarks


def test_non_constant_statistics_stay_with_remark():
    g = Graph("stats")
    x = g.add_input(("N", 3), name="x")
    m = g.add_input((3,), name="m")
    rng = np.random.default_rng(6)
    consts, _ = bn_consts(g, rng, 3)
    g.set_outputs(g.add("batch_norm", [x, consts[0], consts[1], m, consts[3]]))
    text = str(g)
    changed, remarks = run_pass(g, FoldBatchNorm)
    assert not changed and str(g) == text
    assert "statistics are not constants" in remarks[0][2]
