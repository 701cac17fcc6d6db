"""Random valid IR graphs for property tests, built directly with :class:`cnnc.ir.Graph`.

    @given(graphs())
    def test_something(case): graph, x = case.graph, case.x

Structure (op choices, sizes, attributes) is drawn through a :class:`Chooser` so Hypothesis can
shrink it; array contents come from a NumPy generator seeded by one drawn integer. Covered:
chains and DAGs with residual adds and multi-reader values, odd sizes, stride larger than the
kernel, dilation, grouped and depthwise convs, C == H == W, batch norms with random statistics
(negative gamma, their own epsilon), pads before convs and pools, no-ops, constant subgraphs,
per-channel and non-per-channel constant adds and dense heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from cnnc.errors import ShapeError
from cnnc.ir import Graph
from cnnc.ops.padding import window_geometry


class Chooser:
    """Decisions for the generator: from a Hypothesis ``draw`` or from a seeded generator."""

    def __init__(self, draw=None, seed: int = 0):
        self._draw = draw
        self._rng = np.random.default_rng(seed)
        self.rng = np.random.default_rng(seed if draw is None else draw(st.integers(0, 2**31)))

    def int(self, lo: int, hi: int) -> int:
        if self._draw is not None:
            return self._draw(st.integers(lo, hi))
        return int(self._rng.integers(lo, hi + 1))

    def choice(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def coin(self) -> bool:
        return bool(self.int(0, 1))


@dataclass
class Case:
    graph: Graph
    x: np.ndarray

    def __repr__(self) -> str:
        return f"Case(x{self.x.shape}):\n{self.graph}"


# ---- weights ------------------------------------------------------------------------------
def weights(g: Graph, rng, shape, scale=None):
    fan_in = int(np.prod(shape[:-1])) or 1
    s = scale if scale is not None else 1.0 / math.sqrt(fan_in)
    return g.constant((rng.standard_normal(shape) * s).astype(np.float32))


def bn_params(g: Graph, rng, c: int):
    """gamma (some negative), beta, moving mean, moving variance (positive, spread out)."""
    gamma = rng.uniform(0.5, 1.5, c) * rng.choice([-1.0, 1.0], c)
    beta = rng.standard_normal(c)
    mean = rng.standard_normal(c) * 0.5
    var = rng.uniform(0.05, 2.0, c)
    return [g.constant(a.astype(np.float32)) for a in (gamma, beta, mean, var)]


# ---- building blocks -------------------------------------------------------------------------
ACTS = [("relu", {}), ("relu6", {}), ("leaky_relu", {"alpha": 0.1}), ("sigmoid", {}),
        ("tanh", {}), ("hard_sigmoid", {}), ("hard_swish", {}),
        ("clip", {"min": -0.5, "max": 0.75})]


def act(g, ch: Chooser, y):
    op, attrs = ch.choice(ACTS)
    return g.add(op, [y], attrs)


def conv(g, ch: Chooser, y, cout=None, *, kernel=None, allow_groups=True, bias=None):
    """A random conv2d on ``y`` whose geometry is valid; falls back to a 1x1 conv."""
    _, h, w, cin = y.type.shape
    cout = cout or ch.int(1, 6)
    groups = 1
    if allow_groups and ch.int(0, 3) == 0:
        if ch.coin():
            groups, cout = cin, cin * ch.int(1, 2)  # depthwise, multiplier 1 or 2
        else:
            divs = [d for d in range(2, cin + 1) if cin % d == 0]
            if divs:
                groups = ch.choice(divs)
                cout = groups * ch.int(1, 2)
    k = kernel or (ch.int(1, 3), ch.int(1, 3))
    strides = (ch.int(1, 3), ch.int(1, 3))  # stride may exceed the kernel
    dilation = (ch.int(1, 2), ch.int(1, 2)) if ch.int(0, 3) == 0 else (1, 1)
    padding = ch.choice(["valid", "same", ((ch.int(0, 2), ch.int(0, 1)), (ch.int(0, 1), 1))])
    try:
        window_geometry((h, w), k, strides, dilation, padding)
    except ShapeError:
        k, strides, dilation, padding = (1, 1), (1, 1), (1, 1), "valid"
    wt = weights(g, ch.rng, (*k, cin // groups, cout))
    use_bias = ch.coin() if bias is None else bias
    ops = [y, wt] + ([weights(g, ch.rng, (cout,), 0.5)] if use_bias else [])
    return g.add("conv2d", ops, {"strides": strides, "padding": padding,
                                 "dilation": dilation, "groups": groups})


def batch_norm(g, ch: Chooser, y):
    eps = ch.choice([1e-3, 1e-5, 0.1, 0.37])
    return g.add("batch_norm", [y, *bn_params(g, ch.rng, y.type.shape[-1])], {"epsilon": eps})


def conv_block(g, ch: Chooser, y, cout=None):
    y = conv(g, ch, y, cout)
    if ch.int(0, 3):
        y = batch_norm(g, ch, y)
    if ch.int(0, 3):
        y = act(g, ch, y)
    return y


def same_shape_conv(g, ch: Chooser, y):
    """A conv keeping (H, W, C): stride 1, 'same', any kernel/dilation/groups."""
    c = y.type.shape[-1]
    k = (ch.int(1, 3), ch.int(1, 3))
    dil = (ch.int(1, 2), 1)
    groups = ch.choice([1, c])
    z = g.add("conv2d", [y, weights(g, ch.rng, (*k, c // groups, c))],
              {"padding": "same", "dilation": dil, "groups": groups})
    return batch_norm(g, ch, z) if ch.coin() else z


def residual(g, ch: Chooser, y):
    """relu(add(bn(conv(y)), shortcut)), the shortcut being y or a projection conv."""
    z = same_shape_conv(g, ch, act(g, ch, y) if ch.coin() else y)
    short = y if ch.coin() else same_shape_conv(g, ch, y)
    s = g.add("add", [z, short] if ch.coin() else [short, z])
    return g.add("relu", [s]) if ch.coin() else s


def pad_then_window(g, ch: Chooser, y):
    _, h, w, c = y.type.shape
    pads = ((0, 0), (ch.int(0, 2), ch.int(0, 1)), (ch.int(0, 1), ch.int(0, 2)), (0, 0))
    kind = ch.choice(["conv", "max", "avg", "avg_cip"])
    value = {"max": ch.choice([-math.inf, 0.0]), "conv": ch.choice([0.0, 0.0, 0.5])}.get(kind, 0.0)
    p = g.add("pad", [y], {"pads": pads, "value": value})
    if kind == "conv":
        return conv(g, ch, p)
    ph, pw = p.type.shape[1:3]
    size = (min(ch.int(1, 3), ph), min(ch.int(1, 3), pw))
    if kind == "max" and value == -math.inf:  # keep every window on some real cell
        size = (min(max(size[0], *pads[1]) + 1, ph), min(max(size[1], *pads[2]) + 1, pw))
    strides = (ch.int(1, 3), ch.int(1, 2))
    padding = ch.choice(["valid", "valid", "same"])
    ceil_mode = ch.int(0, 3) == 0
    if kind == "max" and value == -math.inf:  # no window of padding only: no -inf escapes
        padding, ceil_mode = "valid", False
    attrs = {"pool_size": size, "strides": strides, "padding": padding, "ceil_mode": ceil_mode}
    if kind.startswith("avg"):
        attrs["count_include_pad"] = kind == "avg_cip"
    return g.add("max_pool2d" if kind == "max" else "avg_pool2d", [p], attrs)


def constant_add(g, ch: Chooser, y):
    """Add a constant: per-channel (several layouts), a (1,1,W,1) map, or a folded subgraph."""
    _, h, w, c = y.type.shape
    rng = ch.rng
    kind = ch.int(0, 3)
    if kind == 0:
        return g.add("bias_add", [y, g.constant(rng.standard_normal(c).astype(np.float32))])
    if kind == 1:
        shape = ch.choice([(c,), (1, 1, 1, c), (1, c)])
        return g.add("add", [y, g.constant(rng.standard_normal(shape).astype(np.float32))])
    if kind == 2:  # not per-output-channel: must not be folded into a bias
        shape = ch.choice([(1, 1, w, 1), (1, h, w, c), (h, 1, 1)])
        cst = g.constant(rng.standard_normal(shape).astype(np.float32))
        return g.add("add", [cst, y] if ch.coin() else [y, cst])
    a = g.constant(rng.standard_normal(c).astype(np.float32))  # a constant subgraph
    b = g.add("mul", [a, g.constant(rng.uniform(0.5, 2, c).astype(np.float32))])
    return g.add("add", [y, g.add("relu", [b])])


def noops(g, ch: Chooser, y):
    kind = ch.int(0, 3)
    if kind == 0:
        return g.add("identity", [y])
    if kind == 1:
        return g.add("dropout", [y], {"rate": 0.3})
    if kind == 2:
        return g.add("reshape", [y], {"shape": (-1, *y.type.shape[1:])})
    return g.add("pad", [y], {"pads": ((0, 0),) * y.type.rank})


def branches(g, ch: Chooser, y):
    """A multi-reader value: two branches joined by concat or add."""
    a = conv_block(g, ch, y)
    b = conv(g, ch, y, a.type.shape[-1], kernel=(1, 1), allow_groups=False)
    if a.type.shape == b.type.shape and ch.coin():
        return g.add("add", [a, b])
    if a.type.shape[1:3] == b.type.shape[1:3]:
        return g.add("concat", [a, b], {"axis": -1})
    return a


def dense_head(g, ch: Chooser, y):
    y = g.add("global_avg_pool", [y]) if ch.coin() else g.add("flatten", [y])
    n = ch.int(1, 5)
    z = g.add("dense", [y, weights(g, ch.rng, (y.type.shape[1], n))] +
              ([weights(g, ch.rng, (n,), 0.5)] if ch.coin() else []))
    if ch.coin():
        z = g.add("batch_norm", [z, *bn_params(g, ch.rng, n)], {"epsilon": 1e-3})
    if ch.coin():
        z = act(g, ch, z)
    return g.add("softmax", [z]) if ch.coin() else z


BLOCKS = [conv_block, conv_block, residual, residual, pad_then_window, constant_add, noops,
          branches, lambda g, ch, y: act(g, ch, y), batch_norm]


def build(ch: Chooser, max_blocks: int = 5) -> Case:
    hw_c = ch.int(0, 3)
    if hw_c == 0:
        h = w = c = ch.int(3, 7)  # C == H == W
    else:
        h, w, c = ch.int(3, 9), ch.int(3, 9), ch.int(1, 5)
    g = Graph("random")
    x = g.add_input(("N", h, w, c), name="x")
    y = x
    extra_outputs = []
    for _ in range(ch.int(1, max_blocks)):
        block = ch.choice(BLOCKS)
        y = block(g, ch, y)
        if y.type.shape[1] < 2 or y.type.shape[2] < 2:
            break
        if ch.int(0, 7) == 0:
            extra_outputs.append(y)  # an intermediate graph output
    if ch.coin():
        y = dense_head(g, ch, y)
    g.set_outputs(y, *extra_outputs)
    n = ch.int(1, 3)
    xs = ch.rng.standard_normal((n, h, w, c))
    return Case(g, xs)


@st.composite
def graphs(draw, max_blocks: int = 5):
    return build(Chooser(draw), max_blocks)


def random_case(seed: int, max_blocks: int = 5) -> Case:
    return build(Chooser(seed=seed), max_blocks)


# ---- a fixed ResNet-like network ----------------------------------------------------------------
def resnet_like(blocks: int = 3, width: int = 8, seed: int = 0, hw: int = 16) -> Graph:
    """Stem conv-BN-relu, ``blocks`` basic residual blocks (the second one strided with a 1x1
    projection shortcut), global average pool and a dense head."""
    rng = np.random.default_rng(seed)
    g = Graph("resnet_like")
    x = g.add_input(("N", hw, hw, 3), name="x")

    def cbn(y, cout, k, s, name):
        z = g.add("conv2d", [y, weights(g, rng, (k, k, y.type.shape[-1], cout))],
                  {"strides": s, "padding": "same"}, layer=name)
        return g.add("batch_norm", [z, *bn_params(g, rng, cout)], {"epsilon": 1e-3},
                     layer=name + "_bn")

    y = g.add("relu", [cbn(x, width, 3, 1, "stem")])
    c = width
    for i in range(blocks):
        stride = 2 if i == 1 else 1
        cout = c * 2 if i == 1 else c
        z = g.add("relu", [cbn(y, cout, 3, stride, f"b{i}_conv1")])
        z = cbn(z, cout, 3, 1, f"b{i}_conv2")
        short = y if (stride == 1 and cout == c) else cbn(y, cout, 1, stride, f"b{i}_proj")
        y = g.add("relu", [g.add("add", [z, short])])
        c = cout
    y = g.add("global_avg_pool", [y])
    y = g.add("dense", [y, weights(g, rng, (c, 10)), weights(g, rng, (10,), 0.1)],
              layer="head")
    g.set_outputs(g.add("softmax", [y]))
    return g
