"""Property tests of every generated CUDA kernel against the float64 reference, on tiny shapes
(the simulator runs a Python thread per CUDA thread): convolutions over shapes, strides,
padding, groups, dilation and fused epilogues with both strategies and several GEMM tiles
(including ones whose loads do not divide evenly among the threads and partial k slices),
dense, pooling, element-wise broadcasting, softmax, transpose, pad and concat."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnc.backends.numba_cuda.convgen import Tile
from cnnc.ir import Graph
from cuda_helpers import check, requires_cuda
from strategies import conv_configs, op_graph, pool_attrs, pool_configs

pytestmark = [pytest.mark.cuda, requires_cuda]
STEPS = [("relu",), ("relu6",), ("clip", -0.3, 0.4), ("leaky_relu", 0.1), ("sigmoid",),
         ("tanh",), ("hard_sigmoid", 0.2, 0.5), ("hard_swish",), ("scale_shift",), ("add",)]
# simulator-sized tiles: BMxBNxBK/TMxTN; 6x4x5/2x2 has 6 threads, uneven B loads
TILES = [Tile(8, 8, 16, 2, 2), Tile(8, 4, 4, 2, 1), Tile(4, 8, 8, 1, 2), Tile(6, 4, 5, 2, 2),
         Tile(8, 8, 3, 4, 4)]


def _fused_conv_graph(rng, cfg, steps, depthwise):
    n, h, w, cin = cfg["x_shape"]
    kh, kw, cig, cout = cfg["w_shape"]
    groups = cfg["groups"]
    if depthwise:  # groups == cin, channel multiplier 1 or 2
        groups, cig, cout = cin, 1, cin * int(rng.integers(1, 3))
    g = Graph("conv")
    x = g.add_input(("N", h, w, cin), name="x")
    attrs = dict(strides=cfg["strides"], padding=cfg["padding"], dilation=cfg["dilation"],
                 groups=groups)
    wt = g.constant(rng.standard_normal((kh, kw, cig, cout)).astype(np.float32))
    b = g.constant(rng.standard_normal(cout).astype(np.float32))
    out_shape = g.add("conv2d", [x, wt], attrs).shape
    extras = []
    for s in steps:
        if s[0] == "scale_shift":
            extras += [g.constant(rng.standard_normal(out_shape[-1]).astype(np.float32))
                       for _ in range(2)]
        elif s[0] == "add":  # a residual computed from the input by another conv
            wr = g.constant(rng.standard_normal((kh, kw, cig, cout)).astype(np.float32))
            extras.append(g.add("conv2d", [x, wr], attrs))
    g.set_outputs(g.add("conv2d_fused", [x, wt, b, *extras], {**attrs, "epilogue": steps}))
    return g, (n, h, w, cin)


@settings(deadline=None, max_examples=30)
@given(cfg=conv_configs(max_hw=6, max_cpg=4, max_groups=2, max_batch=2),
       steps=st.lists(st.sampled_from(STEPS), max_size=3), seed=st.integers(0, 2**16),
       depthwise=st.booleans(), force=st.sampled_from(["gemm", "direct"]),
       tile=st.sampled_from(TILES))
def test_conv2d_fused_matches_reference(cfg, steps, seed, depthwise, force, tile):
    rng = np.random.default_rng(seed)
    g, shape = _fused_conv_graph(rng, cfg, steps, depthwise)
    check(g, rng.standard_normal(shape).astype(np.float32), opt_level=0, force=force, tile=tile)


@pytest.mark.parametrize("tile", [Tile(64, 64, 16, 4, 4), Tile(128, 16, 16, 8, 1)],
                         ids=str)
def test_gpu_tiles_in_the_simulator(tile):
    """The production tiles (256 threads a block) on one small padded, strided conv."""
    rng = np.random.default_rng(11)
    cfg = dict(x_shape=(1, 5, 4, 2), w_shape=(3, 3, 2, 6), groups=1, strides=(2, 1),
               padding="same", dilation=(1, 1))
    g, shape = _fused_conv_graph(rng, cfg, [("scale_shift",), ("relu",)], False)
    check(g, rng.standard_normal(shape).astype(np.float32), opt_level=0, force="gemm",
          tile=tile)


@settings(deadline=None, max_examples=8)
@given(batch=st.integers(1, 3), fin=st.integers(1, 24), fout=st.integers(1, 12),
       steps=st.lists(st.sampled_from(STEPS), max_size=2), seed=st.integers(0, 2**16),
       force=st.sampled_from(["gemm", "direct"]), tile=st.sampled_from(TILES))
def test_dense_fused_matches_reference(batch, fin, fout, steps, seed, force, tile):
    rng = np.random.default_rng(seed)
    g = Graph("dense")
    x = g.add_input(("N", fin), name="x")
    extras = []
    for s in steps:
        if s[0] == "scale_shift":
            extras += [g.constant(rng.standard_normal(fout).astype(np.float32))
                       for _ in range(2)]
        elif s[0] == "add":
            extras.append(g.add("dense", [x, g.constant(
                rng.standard_normal((fin, fout)).astype(np.float32))]))
    w = g.constant(rng.standard_normal((fin, fout)).astype(np.float32))
    b = g.constant(rng.standard_normal(fout).astype(np.float32))
    g.set_outputs(g.add("dense_fused", [x, w, b, *extras], {"epilogue": steps}))
    check(g, rng.standard_normal((batch, fin)).astype(np.float32), opt_level=0, force=force,
          tile=tile)


@settings(deadline=None, max_examples=10)
@given(cfg=pool_configs(max_hw=6, max_channels=5), kind=st.sampled_from(["max", "avg"]),
       seed=st.integers(0, 2**16))
def test_pooling_matches_reference(cfg, kind, seed):
    rng = np.random.default_rng(seed)
    op = f"{kind}_pool2d"
    g = op_graph(op, [("N", *cfg["x_shape"][1:])], pool_attrs(cfg, op), name="pool")
    check(g, rng.standard_normal(cfg["x_shape"]).astype(np.float32), opt_level=0)


def _broadcast_partner(draw, shape):
    """A shape that broadcasts against ``shape`` (some dims 1, maybe fewer dims)."""
    keep = draw(st.integers(0, len(shape)))
    tail = shape[len(shape) - keep:]
    return tuple(d if draw(st.booleans()) else 1 for d in tail) or (1,)


@st.composite
def _binary_case(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    other = _broadcast_partner(draw, shape)
    return shape, other, draw(st.sampled_from(["add", "sub", "mul", "div"])), draw(st.booleans())


@settings(deadline=None, max_examples=10)
@given(case=_binary_case(), batch=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_broadcast_binary_matches_reference(case, batch, seed):
    shape, other, op, swap = case
    rng = np.random.default_rng(seed)
    g = Graph("binary")
    x = g.add_input(("N", *shape), name="x")
    c = g.constant(rng.uniform(0.5, 2.0, other).astype(np.float32))
    y = g.add(op, [c, x] if swap and op != "div" else [x, c])
    g.set_outputs(g.add("tanh", [y]))
    check(g, rng.standard_normal((batch, *shape)).astype(np.float32), opt_level=0)


@settings(deadline=None, max_examples=8)
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=3), batch=st.integers(1, 2),
       seed=st.integers(0, 2**16), data=st.data())
def test_softmax_transpose_pad_concat(shape, batch, seed, data):
    rng = np.random.default_rng(seed)
    rank = len(shape) + 1
    g = Graph("shape_ops")
    x = g.add_input(("N", *shape), name="x")
    axis = data.draw(st.integers(1, rank - 1))
    s = g.add("softmax", [x], {"axis": axis})
    perm = (0, *data.draw(st.permutations(range(1, rank))))
    t = g.add("transpose", [s], {"perm": perm})
    pads = ((0, 0), *((data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2)))
                      for _ in range(rank - 1)))
    p = g.add("pad", [t], {"pads": pads, "value": float(rng.normal())})
    cat = g.add("concat", [p, g.add("relu", [p]), p], {"axis": data.draw(st.integers(1, rank - 1))})
    g.set_outputs(cat)
    check(g, rng.standard_normal((batch, *shape)).astype(np.float32) * 3, opt_level=0)


@settings(deadline=None, max_examples=5)
@given(m=st.integers(1, 4), k=st.integers(1, 5), n=st.integers(1, 4), batch=st.integers(1, 2),
       seed=st.integers(0, 2**16))
def test_batched_matmul(m, k, n, batch, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 2, m, k)).astype(np.float32)
    g = Graph("matmul_two_activations")
    a = g.add_input(("N", 2, m, k), name="a")
    bt = g.add("transpose", [g.add("relu", [a])], {"perm": (0, 1, 3, 2)})
    g.set_outputs(g.add("matmul", [bt, g.add("sigmoid", [a])]))
    check(g, x, opt_level=0)
    g = Graph("matmul_broadcast_constant")
    a = g.add_input(("N", 2, m, k), name="a")
    g.set_outputs(g.add("matmul", [a, g.constant(rng.standard_normal((k, n)).astype(
        np.float32))]))
    check(g, x, opt_level=0)
