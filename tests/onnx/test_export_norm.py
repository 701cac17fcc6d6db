"""ONNX export of the normalisation, hardmax, Lp-pool and transposed-conv ops (layer_norm, group_norm, hardmax, Lp pools,
conv2d_transpose): ONNX Runtime reproduces cnnc's float64 reference within 1e-4."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from test_export import check, new_graph, rnd  # noqa: E402  (tests/onnx on sys.path)


@pytest.mark.parametrize("axes,s_shape,after_conv", [
    ((-1,), (5,), True), ((1, 2), (9, 8, 1), True), ((1, 2, 3), (9, 8, 5), False),
    ((1,), (9, 1, 1), True), ((2,), (9, 8, 1), False), ((1, 3), (9, 1, 5), True)])
def test_layer_norm(axes, s_shape, after_conv):
    rng = np.random.default_rng(3)
    g, x = new_graph(("N", 9, 8, 5))
    v = g.add("conv2d", [x, g.constant(rnd(rng, 1, 1, 5, 5))]) if after_conv else x
    y = g.add("layer_norm", [v, g.constant(rnd(rng, *s_shape)), g.constant(rnd(rng, 5))],
              {"axes": axes, "epsilon": 1e-3})
    g.set_outputs(g.add("relu", [y]))
    check(g, rnd(rng, 2, 9, 8, 5))


@pytest.mark.parametrize("rank", [2, 3, 4])
def test_group_norm(rank):
    rng = np.random.default_rng(4)
    g, x = new_graph(("N", 6, 5, 8)[:rank] if rank > 2 else ("N", 8))
    if rank == 3:
        g, x = new_graph(("N", 6, 8))
    y = g.add("group_norm", [x, g.constant(rnd(rng, 8)), g.constant(rnd(rng, 8))],
              {"groups": 4, "epsilon": 1e-4})
    g.set_outputs(y)
    check(g, rnd(rng, 2, *x.type.shape[1:]))


def test_hardmax_and_lp_pools():
    rng = np.random.default_rng(5)
    g, x = new_graph(("N", 9, 8, 4))
    c = g.add("conv2d", [x, g.constant(rnd(rng, 3, 3, 4, 6))], {"padding": "same"})
    h = g.add("hardmax", [c], {"axis": 3})
    p2 = g.add("lp_pool2d", [c], {"pool_size": 3, "strides": 2, "padding": ((1, 1), (0, 1)),
                                  "p": 2.0})
    p1 = g.add("lp_pool2d", [c], {"pool_size": 2, "strides": 1, "p": 1.0})
    gl = g.add("global_lp_pool", [c], {"p": 3.0, "keepdims": False})
    g.set_outputs(h, p2, p1, gl)
    check(g, rnd(rng, 2, 9, 8, 4))


@pytest.mark.parametrize("strides,pads,out_pad,dilation,groups", [
    (2, ((1, 1), (1, 1)), (1, 1), 1, 1), ((2, 3), ((0, 1), (2, 0)), (1, 2), 1, 2),
    (1, ((0, 0), (0, 0)), (0, 0), 2, 3), (3, ((1, 2), (0, 0)), (2, 0), (1, 2), 1)])
def test_conv_transpose(strides, pads, out_pad, dilation, groups):
    rng = np.random.default_rng(6)
    g, x = new_graph(("N", 5, 4, 6))
    w = g.constant(rnd(rng, 3, 3, 6, 12 // groups))
    y = g.add("conv2d_transpose", [x, w, g.constant(rnd(rng, 12))],
              {"strides": strides, "padding": pads, "output_padding": out_pad,
               "dilation": dilation, "groups": groups})
    g.set_outputs(y)
    check(g, rnd(rng, 2, 5, 4, 6))


def test_fused_conv_transpose():
    import cnnc
    rng = np.random.default_rng(7)
    g, x = new_graph(("N", 5, 4, 6))
    y = g.add("conv2d_transpose_fused", [x, g.constant(rnd(rng, 2, 2, 6, 4)),
                                         g.constant(rnd(rng, 4)), g.constant(rnd(rng, 4)),
                                         g.constant(rnd(rng, 4))],
              {"strides": 2, "epilogue": ["scale_shift", "relu"]})
    g.set_outputs(y)
    check(g, rnd(rng, 2, 5, 4, 6))
    assert "ConvTranspose" in str(cnnc.export_onnx(g).graph)
