"""Golden text tests: small graphs printed before and after one pass, compared as strings."""

from __future__ import annotations

import numpy as np
import pytest

from cnnc.ir import Graph, verify
from cnnc.passes.constant_fold import ConstantFold
from cnnc.passes.cse import CSE
from cnnc.passes.dce import DCE
from cnnc.passes.eliminate_noops import EliminateNoops
from cnnc.passes.fold_batchnorm import FoldBatchNorm
from cnnc.passes.fold_pad import FoldPad
from cnnc.passes.fuse_epilogue import FuseEpilogue
from cnnc.passes.manager import PassContext

r = np.random.default_rng(0)


def c(*s):
    return r.standard_normal(s).astype(np.float32)


def g_bn():
    g = Graph("bn")
    x = g.add_input(("N", 5, 5, 2), name="x")
    y = g.add("conv2d", [x, g.constant(c(3, 3, 2, 4))], {"padding": "same"})
    stats = [g.constant(c(4)) for _ in range(3)] + [g.constant(np.ones(4, np.float32))]
    y = g.add("batch_norm", [y, *stats], {"epsilon": 1e-5})
    g.set_outputs(y)
    return g


def g_fuse():
    g = Graph("fuse")
    x = g.add_input(("N", 6, 6, 3), name="x")
    s = g.add_input(("N", 3, 3, 4), name="s")
    y = g.add("conv2d", [x, g.constant(c(3, 3, 3, 4)), g.constant(c(4))],
              {"strides": 2, "padding": "same"})
    y = g.add("add", [s, y])
    y = g.add("relu", [y])
    g.set_outputs(y)
    return g


def g_pad():
    g = Graph("pad")
    x = g.add_input(("N", 7, 7, 3), name="x")
    y = g.add("pad", [x], {"pads": ((0, 0), (1, 1), (2, 0), (0, 0))})
    y = g.add("conv2d", [y, g.constant(c(3, 3, 3, 8))], {"strides": 2, "padding": "same"})
    g.set_outputs(y)
    return g


def g_cf():
    g = Graph("cf")
    x = g.add_input(("N", 4), name="x")
    a = g.add("mul", [g.constant(c(4)), g.constant(c(4))])
    y = g.add("bias_add", [x, a])
    g.set_outputs(y)
    return g


def g_cse():
    g = Graph("cse")
    x = g.add_input(("N", 4), name="x")
    b1 = g.constant(np.arange(4, dtype=np.float32))
    b2 = g.constant(np.arange(4, dtype=np.float32))
    y1 = g.add("bias_add", [x, b1])
    y2 = g.add("bias_add", [x, b2])
    r1 = g.add("relu", [y1])
    r2 = g.add("relu", [y2])
    g.set_outputs(g.add("add", [r1, r2]))
    return g


def g_dce():
    g = Graph("dce")
    x = g.add_input(("N", 4), name="x")
    w = g.constant(c(4))
    d = g.add("sigmoid", [g.add("bias_add", [x, w])])
    y = g.add("relu", [x])
    g.set_outputs(y)
    return g


def g_noop():
    g = Graph("noop")
    x = g.add_input(("N", 4, 4, 3), name="x")
    y = g.add("relu", [x])
    y = g.add("dropout", [y], {"rate": 0.5})
    y = g.add("reshape", [y], {"shape": (-1, 4, 4, 3)})
    y = g.add("identity", [y])
    y = g.add("transpose", [y], {"perm": (0, 1, 2, 3)})
    y = g.add("pad", [y], {"pads": ((0, 0),) * 4})
    y = g.add("tanh", [y])
    g.set_outputs(y)
    return g


GOLDEN = {
    "bn": (FoldBatchNorm, """\
graph bn(%x: f32[N,5,5,2]) {
  %w0: f32[3,3,2,4] = constant
  %0: f32[N,5,5,4] = conv2d(%x, %w0) {strides=[1,1], padding=same, dilation=[1,1], groups=1}
  %w1: f32[4] = constant
  %w2: f32[4] = constant
  %w3: f32[4] = constant
  %w4: f32[4] = constant
  %1: f32[N,5,5,4] = batch_norm(%0, %w1, %w2, %w3, %w4) {epsilon=1e-05, axis=-1}
  return %1
}
""", """\
graph bn(%x: f32[N,5,5,2]) {
  %w5: f32[3,3,2,4] = constant
  %w6: f32[4] = constant
  %2: f32[N,5,5,4] = conv2d(%x, %w5, %w6) {strides=[1,1], padding=same, dilation=[1,1], groups=1}
  return %2
}
"""),
    "fuse": (FuseEpilogue, """\
graph fuse(%x: f32[N,6,6,3], %s: f32[N,3,3,4]) {
  %w0: f32[3,3,3,4] = constant
  %w1: f32[4] = constant
  %0: f32[N,3,3,4] = conv2d(%x, %w0, %w1) {strides=[2,2], padding=same, dilation=[1,1], groups=1}
  %1: f32[N,3,3,4] = add(%s, %0)
  %2: f32[N,3,3,4] = relu(%1)
  return %2
}
""", """\
graph fuse(%x: f32[N,6,6,3], %s: f32[N,3,3,4]) {
  %w0: f32[3,3,3,4] = constant
  %w1: f32[4] = constant
  %3: f32[N,3,3,4] = conv2d_fused(%x, %w0, %w1, %s) {strides=[2,2], padding=same, dilation=[1,1], groups=1, epilogue=[add,relu]}
  return %3
}
"""),
    "pad": (FoldPad, """\
graph pad(%x: f32[N,7,7,3]) {
  %0: f32[N,9,9,3] = pad(%x) {pads=[[0,0],[1,1],[2,0],[0,0]], value=0.0}
  %w0: f32[3,3,3,8] = constant
  %1: f32[N,5,5,8] = conv2d(%0, %w0) {strides=[2,2], padding=same, dilation=[1,1], groups=1}
  return %1
}
""", """\
graph pad(%x: f32[N,7,7,3]) {
  %w0: f32[3,3,3,8] = constant
  %2: f32[N,5,5,8] = conv2d(%x, %w0) {strides=[2,2], padding=[[2,2],[3,1]], dilation=[1,1], groups=1}
  return %2
}
"""),
    "cf": (ConstantFold, """\
graph cf(%x: f32[N,4]) {
  %w0: f32[4] = constant
  %w1: f32[4] = constant
  %0: f32[4] = mul(%w0, %w1)
  %1: f32[N,4] = bias_add(%x, %0)
  return %1
}
""", """\
graph cf(%x: f32[N,4]) {
  %w2: f32[4] = constant
  %1: f32[N,4] = bias_add(%x, %w2)
  return %1
}
"""),
    "cse": (CSE, """\
graph cse(%x: f32[N,4]) {
  %w0: f32[4] = constant
  %w1: f32[4] = constant
  %0: f32[N,4] = bias_add(%x, %w0)
  %1: f32[N,4] = bias_add(%x, %w1)
  %2: f32[N,4] = relu(%0)
  %3: f32[N,4] = relu(%1)
  %4: f32[N,4] = add(%2, %3)
  return %4
}
""", """\
graph cse(%x: f32[N,4]) {
  %w0: f32[4] = constant
  %0: f32[N,4] = bias_add(%x, %w0)
  %2: f32[N,4] = relu(%0)
  %4: f32[N,4] = add(%2, %2)
  return %4
}
"""),
    "dce": (DCE, """\
graph dce(%x: f32[N,4]) {
  %w0: f32[4] = constant
  %0: f32[N,4] = bias_add(%x, %w0)
  %1: f32[N,4] = sigmoid(%0)
  %2: f32[N,4] = relu(%x)
  return %2
}
""", """\
graph dce(%x: f32[N,4]) {
  %2: f32[N,4] = relu(%x)
  return %2
}
"""),
    "noop": (EliminateNoops, """\
graph noop(%x: f32[N,4,4,3]) {
  %0: f32[N,4,4,3] = relu(%x)
  %1: f32[N,4,4,3] = dropout(%0) {rate=0.5}
  %2: f32[N,4,4,3] = reshape(%1) {shape=[-1,4,4,3]}
  %3: f32[N,4,4,3] = identity(%2)
  %4: f32[N,4,4,3] = transpose(%3) {perm=[0,1,2,3]}
  %5: f32[N,4,4,3] = pad(%4) {pads=[[0,0],[0,0],[0,0],[0,0]], value=0.0}
  %6: f32[N,4,4,3] = tanh(%5)
  return %6
}
""", """\
graph noop(%x: f32[N,4,4,3]) {
  %0: f32[N,4,4,3] = relu(%x)
  %6: f32[N,4,4,3] = tanh(%0)
  return %6
}
"""),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden(name):
    pass_cls, before, after = GOLDEN[name]
    g = globals()["g_" + name]()
    assert str(g) + "\n" == before
    assert pass_cls().run(g, PassContext()) is True
    verify(g, name)
    assert str(g) + "\n" == after
    nodes = g.nodes  # a second run finds nothing and leaves the very same graph
    assert pass_cls().run(g, PassContext()) is False
    assert str(g) + "\n" == after and all(a is b for a, b in zip(g.nodes, nodes))
