"""ONNX import of Slice, Split, Gather, Expand, Tile, DepthToSpace, SpaceToDepth, Resize and
Upsample on activations: small models behind a Conv (so the tensor is held NHWC and
the ONNX channel axis is IR axis 3) run in ONNX Runtime and through cnnc (numpy target and the
float64 reference); a few also on the cpu target; refusals are UnsupportedError naming the
node; the exported graphs run in ONNX Runtime too."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from onnx_build import check, model, node, rand, run_ort, run_spec

import cnnc
from cnnc.errors import ShapeError, UnsupportedError
from cnnc.frontends.onnx.importer import load_onnx

RNG = np.random.default_rng(1414)
I64 = np.int64


def _x(*shape):
    return rand(RNG, *shape)


def behind_conv(nodes, out, inits=None, opset=17, cin=3, hw=(7, 9), batch="N", outputs=None,
                infer=True):
    """x (batch, cin, h, w) -> Conv (4 channels, same size) -> ``nodes`` reading "c"."""
    ins = {"w": _x(4, cin, 3, 3), "b": _x(4), **(inits or {})}
    conv = node("Conv", ["x", "w", "b"], "c", pads=[1, 1, 1, 1])
    return model([conv, *nodes], [("x", (batch, cin, *hw))], outputs or [out], ins, opset=opset,
                 infer=infer)


def run(proto, batch=2, cin=3, hw=(7, 9), cpu=False, **kw):
    x = _x(batch, cin, *hw)
    m = check(proto, x, **kw)
    if cpu:
        want = run_ort(proto, x)
        got = cnnc.compile(m, target="cpu")(x)
        got = got if isinstance(got, tuple) else (got,)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())
    return m


# ---- Slice -------------------------------------------------------------------------------------
SLICES = [  # starts, ends, axes, steps
    ([1], [3], [1], [1]),                       # channels 1..2
    ([-1], [-(2 ** 63)], [1], [-1]),            # channels reversed
    ([0, 5, -1], [2 ** 63 - 1, 1, 0], [1, 2, 3], [2, -2, -3]),
    ([1, -4], [100, -1], [-2, -1], [1, 1]),     # negative axes and out-of-range ends
]


@pytest.mark.parametrize("starts,ends,axes,steps", SLICES)
def test_slice_of_an_activation(starts, ends, axes, steps):
    inits = {"s": np.array(starts, I64), "e": np.array(ends, I64), "a": np.array(axes, I64),
             "t": np.array(steps, I64)}
    m = run(behind_conv([node("Slice", ["c", "s", "e", "a", "t"], "y")], "y", inits))
    ops = [n.op for n in m.to_graph().ops]
    assert ops[1:-1] == ["conv2d", "slice"]  # sliced in NHWC: only the boundary transposes


def test_slice_opset_9_attributes_and_cpu():
    p = behind_conv([node("Slice", ["c"], "y", starts=[1, 2], ends=[4, -1], axes=[1, 3])], "y",
                    opset=9)
    run(p, cpu=True)


def test_slice_of_the_symbolic_batch_is_refused_with_the_node():
    inits = {"s": np.array([1], I64), "e": np.array([2], I64), "a": np.array([0], I64)}
    p = behind_conv([node("Slice", ["c", "s", "e", "a"], "y", name="cut")], "y", inits)
    with pytest.raises(ShapeError, match="cut.*symbolic dim 'N'"):
        load_onnx(p)


# ---- Split -------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset,axis,split,n", [
    (11, 1, [1, 3], 2), (11, 1, None, 2), (13, 1, [2, 1, 1], 3), (13, 2, None, 7),
    (18, 3, None, 4), (18, -1, [4, 5], 2), (13, 1, [4, 0], 2)])
def test_split(opset, axis, split, n):
    outs = [f"y{i}" for i in range(n)]
    inits, ins, attrs = {}, ["c"], {"axis": axis}
    if split is not None and opset >= 13:
        inits["sp"] = np.array(split, I64)
        ins.append("sp")
    elif split is not None:
        attrs["split"] = split
    if opset >= 18 and split is None:
        attrs["num_outputs"] = n
    # the outputs feed Relu so that none is the raw Split result
    nodes = [node("Split", ins, outs, **attrs)] + [node("Relu", [o], f"r{i}")
                                                   for i, o in enumerate(outs)]
    p = behind_conv(nodes, None, inits, opset=opset, outputs=[f"r{i}" for i in range(n)])
    run(p, cpu=(opset, axis) == (13, 1) and split == [2, 1, 1])


def test_split_sizes_that_do_not_add_up_are_a_shape_error():
    p = behind_conv([node("Split", ["c", "sp"], ["ya", "yb"], axis=1, name="sp1")], None,
                    {"sp": np.array([1, 2], I64)}, outputs=[("ya", ["N", 1, 7, 9]),
                                                            ("yb", ["N", 2, 7, 9])], infer=False)
    with pytest.raises(ShapeError, match="sp1.*adding up to the axis size 4"):
        load_onnx(p)


# ---- Gather --------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis,idx", [(1, 2), (1, [3, -1, 0]), (2, -2), (3, [[0, 8], [4, 4]]),
                                      (2, [6])])
def test_gather_of_an_activation(axis, idx):
    p = behind_conv([node("Gather", ["c", "i"], "y", axis=axis)], "y",
                    {"i": np.array(idx, I64)})
    run(p, cpu=axis == 1 and isinstance(idx, list))


def test_gather_out_of_range_index_is_a_shape_error():
    p = behind_conv([node("Gather", ["c", "i"], "y", axis=1, name="g")], "y",
                    {"i": np.array([4], I64)})
    with pytest.raises(ShapeError, match="g.*out of range.*-4..3"):
        load_onnx(p)


# ---- Pad: reflect, edge, wrap ----------------------------------------------------------------------
@pytest.mark.parametrize("mode,pads", [
    ("reflect", [0, 0, 2, 1, 0, 0, 1, 3]),   # NCHW begins, then ends: H and W
    ("edge", [0, 1, 3, 0, 0, 2, 0, 4]),      # channels too
    ("wrap", [0, 0, 1, 2, 0, 0, 2, 1]),
    ("reflect", [0, 0, 6, 0, 0, 0, 0, 8]),   # the whole axis but one each side
])
def test_pad_modes_that_repeat_the_input(mode, pads):
    """Gathers of constant indices along each padded axis, on numpy and cpu, against ONNX
    Runtime; then a conv reads the padded map (ReflectionPad2d before a conv)."""
    nodes = [node("Pad", ["c", "p"], "q", mode=mode),
             node("Conv", ["q", "w2"], "y")]
    cin = 4 + pads[1] + pads[5]
    p = behind_conv(nodes, "y", {"p": np.array(pads, I64), "w2": _x(5, cin, 3, 3)},
                    opset=19)
    m = run(p, cpu=True)
    assert "pad" not in [n.op for n in m.to_graph().nodes]


def test_pad_mode_of_the_symbolic_batch_is_refused():
    p = behind_conv([node("Pad", ["c", "p"], "y", mode="edge", name="pd")], "y",
                    {"p": np.array([1, 0, 0, 0, 0, 0, 0, 0], I64)}, opset=19)
    with pytest.raises(UnsupportedError, match="pd.*'edge' padding of the symbolic dim"):
        load_onnx(p)


# ---- Expand, Tile ----------------------------------------------------------------------------------
def test_expand_and_tile():
    nodes = [node("GlobalAveragePool", ["c"], "p"),
             node("Expand", ["p", "shape"], "e"),
             node("Tile", ["c", "reps"], "t"),
             node("Add", ["e", "t"], "y")]
    p = behind_conv(nodes, "y", {"shape": np.array([1, 1, 14, 27], I64),
                                 "reps": np.array([1, 1, 2, 3], I64)})
    run(p, cpu=True)


def test_expand_of_a_plain_tensor_adds_dims():
    nodes = [node("Flatten", ["c"], "f", axis=1),
             node("Expand", ["f", "shape"], "y")]
    run(behind_conv(nodes, "y", {"shape": np.array([3, 1, 252], I64)}))


# ---- DepthToSpace, SpaceToDepth ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space_and_back(mode):
    nodes = [node("DepthToSpace", ["c"], "d", blocksize=2, mode=mode),
             node("Relu", ["d"], "r"),
             node("SpaceToDepth", ["r"], "y", blocksize=2)]
    run(behind_conv(nodes, "y"), cpu=mode == "CRD")


# ---- Resize, Upsample --------------------------------------------------------------------------------
COORDS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


def _resize(scales=None, sizes=None, opset=13, axes=None, **attrs):
    inits = {"roi": np.zeros(0, np.float32)}
    ins = ["c", "roi"]
    if scales is not None:
        inits["sc"] = np.array(scales, np.float32)
        ins.append("sc")
    else:
        inits["sz"] = np.array(sizes, I64)
        ins += ["", "sz"]
    if axes is not None:
        attrs["axes"] = axes
    return behind_conv([node("Resize", ins, "y", **attrs)], "y", inits, opset=opset)


def _oracle(coord):
    """ONNX Runtime, but the ONNX reference for align_corners with scales whose resized length
    (scale * in) is not an integer: the specification (and its node tests) put that length in
    the formula, ONNX Runtime the integer output length; cnnc follows the specification."""
    return run_spec if coord == "align_corners" else run_ort


@pytest.mark.parametrize("coord,nearest", list(itertools.product(COORDS, NEAREST)))
def test_resize_nearest_every_mode(coord, nearest):
    run(_resize(scales=[1, 1, 2.5, 0.7], mode="nearest",
                coordinate_transformation_mode=coord, nearest_mode=nearest),
        oracle=_oracle(coord))
    # 7 -> 3 and 9 -> 13 put no output on an exact tie (k + 0.5) in any mode: how a runtime
    # rounds x / (out / in) there depends on its float32 arithmetic
    run(_resize(sizes=[2, 4, 3, 13], mode="nearest", coordinate_transformation_mode=coord,
                nearest_mode=nearest))


@pytest.mark.parametrize("coord", COORDS)
def test_resize_linear_every_mode(coord):
    run(_resize(scales=[1, 1, 0.6, 1.75], mode="linear", coordinate_transformation_mode=coord),
        oracle=_oracle(coord))
    run(_resize(sizes=[2, 4, 16, 1], mode="linear", coordinate_transformation_mode=coord))


def test_resize_opset_18_axes_policy_and_19_symmetric():
    run(_resize(sizes=[13, 5], opset=18, axes=[3, 2], mode="linear"))
    run(_resize(sizes=[14, 30], opset=18, axes=[2, 3], mode="nearest",
                keep_aspect_ratio_policy="not_larger"))
    run(_resize(scales=[1, 1, 1.7, 0.45], opset=19, mode="linear",
                coordinate_transformation_mode="half_pixel_symmetric"))


def test_resize_opset_10_11_and_upsample():
    for mode in ("nearest", "linear"):
        run(behind_conv([node("Resize", ["c", "sc"], "y", mode=mode)], "y",
                        {"sc": np.array([1, 1, 2, 3], np.float32)}, opset=10))
        run(behind_conv([node("Upsample", ["c", "sc"], "y", mode=mode)], "y",
                        {"sc": np.array([1, 1, 2, 2], np.float32)}, opset=9))
    p = behind_conv([node("Resize", ["c", "roi", "sc"], "y", mode="nearest",
                          coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
                    "y", {"roi": np.zeros(0, np.float32),
                          "sc": np.array([1, 1, 2, 2], np.float32)}, opset=11)
    run(p, cpu=True)


@pytest.mark.parametrize("attrs,scales,match", [
    ({"mode": "cubic"}, [1, 1, 2, 2], "mode='cubic'"),
    ({"mode": "linear", "antialias": 1}, [1, 1, 0.5, 0.5], "antialias"),
    ({"coordinate_transformation_mode": "tf_crop_and_resize"}, [1, 1, 2, 2],
     "tf_crop_and_resize"),
    ({}, [1, 2, 2, 2], "batch or channel axis")])
def test_resize_refusals_name_the_node(attrs, scales, match):
    p = behind_conv([node("Resize", ["c", "roi", "sc"], "y", name="rs", **attrs)], "y",
                    {"roi": np.zeros(0, np.float32), "sc": np.array(scales, np.float32)},
                    opset=18)
    with pytest.raises(UnsupportedError, match=f"'rs'.*{match}"):
        load_onnx(p)


# ---- export ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("build", [
    lambda: behind_conv([node("Slice", ["c", "s", "e", "a", "t"], "y")], "y",
                        {"s": np.array([-1, 1], I64), "e": np.array([-(2 ** 63), 7], I64),
                         "a": np.array([1, 3], I64), "t": np.array([-2, 3], I64)}),
    lambda: behind_conv([node("Gather", ["c", "i"], "y", axis=1)], "y",
                        {"i": np.array([3, 0], I64)}),
    lambda: behind_conv([node("Gather", ["c", "i"], "y", axis=2)], "y",
                        {"i": np.array(1, I64)}),
    lambda: behind_conv([node("GlobalAveragePool", ["c"], "p"),
                         node("Expand", ["p", "shape"], "e"), node("Tile", ["e", "r"], "y")],
                        "y", {"shape": np.array([1, 1, 3, 4], I64),
                              "r": np.array([1, 2, 1, 2], I64)}),
    lambda: _resize(scales=[1, 1, 2, 2], mode="nearest",
                    coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
    lambda: _resize(sizes=[2, 4, 5, 13], mode="linear",
                    coordinate_transformation_mode="pytorch_half_pixel"),
    lambda: _resize(scales=[1, 1, 1.7, 0.45], opset=19, mode="linear",
                    coordinate_transformation_mode="half_pixel_symmetric"),
    lambda: behind_conv([node("Upsample", ["c", "sc"], "y", mode="nearest")], "y",
                        {"sc": np.array([1, 1, 2, 3], np.float32)}, opset=9),
])
def test_export_runs_in_onnxruntime(build):
    import onnx
    m = load_onnx(build())
    x = _x(2, 3, 7, 9)
    proto = cnnc.export_onnx(m)
    onnx.checker.check_model(proto, full_check=True)
    want = m(x)
    got = run_ort(proto, x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
