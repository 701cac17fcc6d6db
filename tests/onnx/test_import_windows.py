"""Conv and pooling windows: hypothesis over pads, strides, dilation, ceil_mode, auto_pad and
count_include_pad against ONNX Runtime, and one test per known pitfall.

cnnc follows the ONNX spec: a ceil_mode window that would start in the right padding is
dropped, max pooling never takes a padded cell, AveragePool with count_include_pad=1 divides by
the window clipped to the padded input (a ceil_mode overhang is not counted), SAME pads use the
effective kernel (k - 1) * d + 1. Where runtimes disagree:

* ONNX Runtime before 1.16 divided the overhanging ceil_mode window by the full kernel size
  (microsoft/onnxruntime#16203, fixed by #16752); 1.32 agrees with the spec at every opset, as
  do PyTorch and onnx.reference.
* ONNX Runtime 1.32 refuses Conv with SAME auto_pad and dilation > 1, computes SAME pooling
  pads without the dilation (a different output size), and refuses a negative SAME pad total
  (k < s) in MaxPool while AveragePool clamps it to 0 (cnnc clamps, like TF).
* onnx.reference gets AveragePool with SAME auto_pad and dilation wrong (zeros in the last
  column), and ONNX shape inference declares the ceil_mode window that the spec drops.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import onnx
from onnx_build import assert_close, check, model, node, rand, run_ort, run_spec

from cnnc.errors import ShapeError
from cnnc.frontends.onnx.importer import load_onnx

SETTINGS = settings(deadline=None, max_examples=60, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
AUTO_PADS = ["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]


@st.composite
def window(draw, pool: bool):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    hw = (draw(st.integers(3, 9)), draw(st.integers(3, 9)))
    auto = draw(st.sampled_from(AUTO_PADS))
    attrs = {"kernel_shape": list(k), "strides": list(s), "dilations": list(d)}
    if auto == "NOTSET":  # ONNX Runtime wants pads smaller than the kernel
        attrs["pads"] = [draw(st.integers(0, kk - 1)) for kk in (*k, *k)]
    else:
        attrs["auto_pad"] = auto
    if pool:
        attrs["ceil_mode"] = draw(st.integers(0, 1))
    return hw, attrs


def same_as_explicit(hw, attrs) -> dict:
    """The spec's SAME rule written out on its own: pads for ceil(n / s) outputs with the
    effective kernel (k - 1) * d + 1, the odd cell at the end (UPPER) or the start (LOWER),
    clamped at 0 (TF's rule; the spec's formula would go negative for k < s)."""
    begin, end = [], []
    for n, k, s, d in zip(hw, attrs["kernel_shape"], attrs["strides"], attrs["dilations"]):
        total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small, big = total // 2, total - total // 2
        b, e = (small, big) if attrs["auto_pad"] == "SAME_UPPER" else (big, small)
        begin.append(b)
        end.append(e)
    out = {k: v for k, v in attrs.items() if k != "auto_pad"}
    return {**out, "pads": begin + end}


def _imports(proto):
    """Skip configurations whose windows do not fit (cnnc and ONNX refuse them alike)."""
    try:
        return load_onnx(proto)
    except ShapeError:
        assume(False)


@SETTINGS
@given(window(pool=False), st.sampled_from([1, 2]), st.integers(0, 2**31 - 1))
def test_conv_windows(win, groups, seed):
    hw, attrs = win
    rng = np.random.default_rng(seed)
    cin, cout = 2 * groups, 3 * groups
    proto = model([node("Conv", ["x", "w", "b"], "y", group=groups, **attrs)],
                  [("x", ("N", cin, *hw))], ["y"],
                  {"w": rand(rng, cout, 2, *attrs["kernel_shape"]), "b": rand(rng, cout)})
    _imports(proto)
    # ONNX Runtime refuses dilation with SAME auto_pad ("Dilation not supported for
    # AutoPadType::SAME_UPPER or SAME_LOWER"): the spec's reference implementation decides
    same_dilated = attrs.get("auto_pad", "").startswith("SAME") and attrs["dilations"] != [1, 1]
    check(proto, rand(rng, 2, cin, *hw), oracle=run_spec if same_dilated else run_ort)


@SETTINGS
@given(window(pool=True), st.sampled_from(["MaxPool", "AveragePool0", "AveragePool1"]),
       st.integers(0, 2**31 - 1))
def test_pool_windows(win, op, seed):
    hw, attrs = win
    rng = np.random.default_rng(seed)
    if op.startswith("AveragePool"):
        attrs["count_include_pad"] = int(op[-1])
    op = op.rstrip("01")
    proto = model([node(op, ["x"], "y", **attrs)], [("x", ("N", 3, *hw))], ["y"], opset=19)
    _imports(proto)
    oracle = run_ort
    if attrs.get("auto_pad", "").startswith("SAME"):
        # ONNX Runtime's SAME pooling ignores the dilation (MaxPool k=2 d=2 on 5 cells gives 4,
        # not 5) and refuses a negative pad total (k=1, s=2 on 4 cells); onnx.reference gets
        # AveragePool SAME with dilation wrong (zeros in the last column). Both agree with cnnc
        # on the same window with the pads written out, so that is the oracle.
        explicit = model([node(op, ["x"], "y", **same_as_explicit(hw, attrs))],
                         [("x", ("N", 3, *hw))], ["y"], opset=19)
        oracle = lambda _, *xs: run_ort(explicit, *xs)  # noqa: E731
    check(proto, rand(rng, 2, 3, *hw), oracle=oracle)


# ---- pitfalls ----------------------------------------------------------------------------------
def pool(op, n, opset=19, **attrs):
    return model([node(op, ["x"], "y", **attrs)], [("x", ("N", 2, n, n))], ["y"], opset=opset)


def test_ceil_mode_drops_a_window_starting_in_the_padding():
    # 5 cells + 1 + 1 padding, k=2, s=2: ceil gives 4 windows, but the 4th would start at
    # padded index 6, in the right padding: it is dropped, leaving 3.
    proto = pool("MaxPool", 5, kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1],
                 ceil_mode=1)
    x = rand(np.random.default_rng(0), 2, 2, 5, 5)
    m = check(proto, x)
    assert m.to_graph().outputs[0].type.shape == ("N", 2, 3, 3)


def test_max_pool_never_takes_a_padded_cell():
    x = -np.abs(rand(np.random.default_rng(1), 2, 2, 6, 6)) - 1.0  # all below the pad value 0
    for ceil in (0, 1):
        proto = pool("MaxPool", 6, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                     ceil_mode=ceil)
        y = load_onnx(proto)(x)
        assert (y < -1.0 + 1e-12).all()
        check(proto, x)


@pytest.mark.parametrize("opset", [11, 19])
def test_avg_pool_count_include_pad_with_ceil_mode_follows_the_spec(opset):
    # 6 cells + 1 + 1 padding, k=3, s=2, ceil: 4 windows; the last covers padded indices 6..8 of
    # a padded input of 8 cells, so its divisor is 2 (rows) x 2 (cols) = 4 at the corner, not 9.
    proto = pool("AveragePool", 6, opset=opset, kernel_shape=[3, 3], strides=[2, 2],
                 pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1)
    x = rand(np.random.default_rng(2), 1, 2, 6, 6)
    y = load_onnx(proto)(x)
    assert y.shape == (1, 2, 4, 4)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(y[..., 3, 3], x64[..., 5, 5] / 4, rtol=1e-12)
    np.testing.assert_allclose(y[..., 0, 0], x64[..., :2, :2].sum(axis=(-1, -2)) / 9, rtol=1e-12)
    check(proto, x)
    onnx_reference = pytest.importorskip("onnx.reference")
    spec = onnx_reference.ReferenceEvaluator(proto).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, spec, rtol=1e-5)


def test_avg_pool_without_count_include_pad_divides_by_real_cells():
    proto = pool("AveragePool", 6, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                 ceil_mode=1)
    x = rand(np.random.default_rng(3), 1, 2, 6, 6)
    y = load_onnx(proto)(x)
    np.testing.assert_allclose(y[..., 3, 3], x[..., 5, 5], rtol=1e-6)
    check(proto, x)


@pytest.mark.parametrize("auto_pad,pads", [("SAME_UPPER", ((0, 1), (0, 1))),
                                           ("SAME_LOWER", ((1, 0), (1, 0)))])
def test_same_upper_and_lower_put_the_odd_cell_at_opposite_ends(auto_pad, pads):
    rng = np.random.default_rng(4)
    proto = model([node("Conv", ["x", "w"], "y", auto_pad=auto_pad)], [("x", ("N", 2, 5, 5))],
                  ["y"], {"w": rand(rng, 3, 2, 2, 2)})
    m = check(proto, rand(rng, 2, 2, 5, 5))
    conv = [n for n in m.to_graph().ops if n.op == "conv2d"][0]
    assert conv.attrs["padding"] == pads


def test_same_padding_with_dilation_uses_the_effective_kernel():
    # 3x3 dilation 2 spans 5 cells: SAME on 8x8 pads 2+2 and keeps 8x8 (not 6x6)
    rng = np.random.default_rng(5)
    proto = model([node("Conv", ["x", "w"], "y", auto_pad="SAME_UPPER", dilations=[2, 2])],
                  [("x", ("N", 2, 8, 8))], ["y"], {"w": rand(rng, 3, 2, 3, 3)})
    x = rand(rng, 2, 2, 8, 8)
    m = check(proto, x, oracle=run_spec)  # ONNX Runtime refuses SAME with dilation
    assert m.to_graph().outputs[0].type.shape == ("N", 3, 8, 8)
    conv = [n for n in m.to_graph().ops if n.op == "conv2d"][0]
    assert conv.attrs["padding"] == ((2, 2), (2, 2))
    w = onnx.numpy_helper.to_array(proto.graph.initializer[0])
    explicit = model([node("Conv", ["x", "w"], "y", pads=[2, 2, 2, 2], dilations=[2, 2])],
                     [("x", ("N", 2, 8, 8))], ["y"], {"w": w})
    assert_close(m(x), run_ort(explicit, x)[0])


def test_same_pooling_with_dilation_follows_the_spec_not_onnxruntime():
    # 7 cells, k=2, s=2: H with dilation 2 spans 3 cells, total pad 2 -> (1, 1); W undilated
    # spans 2, total 1 -> SAME_LOWER puts it first: (1, 0). ONNX Runtime ignores the dilation
    # here and returns 4x4 from different windows; the pads written out agree with cnnc.
    attrs = dict(kernel_shape=[2, 2], strides=[2, 2], dilations=[2, 1])
    proto = pool("MaxPool", 7, auto_pad="SAME_LOWER", **attrs)
    explicit = pool("MaxPool", 7, pads=[1, 1, 1, 0], **attrs)
    x = rand(np.random.default_rng(6), 2, 2, 7, 7)
    m = check(proto, x, oracle=lambda _, *xs: run_ort(explicit, *xs))
    assert m.to_graph().outputs[0].type.shape == ("N", 2, 4, 4)
    assert [n for n in m.to_graph().ops if n.op == "max_pool2d"][0].attrs["padding"] == (
        (1, 1), (1, 0))


def test_batch_norm_epsilon_defaults_to_1e5():
    rng = np.random.default_rng(7)
    var = np.full(3, 1e-4, np.float32)  # epsilon dominates: 1e-3 (Keras's default) would show
    proto = model([node("BatchNormalization", ["x", "g", "b", "m", "v"], "y")],
                  [("x", ("N", 3, 4, 5))], ["y"],
                  {"g": rand(rng, 3), "b": rand(rng, 3), "m": rand(rng, 3), "v": var})
    m = check(proto, rand(rng, 2, 3, 4, 5))
    bn = [n for n in m.to_graph().ops if n.op == "batch_norm"][0]
    assert bn.attrs["epsilon"] == 1e-5
