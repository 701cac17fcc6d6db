"""ONNX export: exported models pass the ONNX checker and ONNX Runtime reproduces cnnc's float64
reference within 1e-4 (relative to the output's scale), on hand-made graphs covering every
lowering, on random graphs and on zoo models."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import cnnc  # noqa: E402
from cnnc.backends.reference import evaluate, run_reference  # noqa: E402
from cnnc.errors import UnsupportedError  # noqa: E402
from cnnc.ir import Graph  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "passes"))
import graphgen  # noqa: E402

RTOL = 1e-4


def run_onnx(proto, *xs):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {n: np.asarray(x, np.float32) for n, x in zip(names, xs)})


def check(graph_or_model, *xs, rtol=RTOL):
    """Export, check, run in ONNX Runtime and compare every output with the reference."""
    proto = cnnc.export_onnx(graph_or_model)
    onnx.checker.check_model(proto, full_check=True)
    graph = graph_or_model if isinstance(graph_or_model, Graph) else graph_or_model.to_graph()
    ref = run_reference(graph, *xs)
    refs = ref if isinstance(ref, tuple) else (ref,)
    got = run_onnx(proto, *xs)
    assert len(got) == len(refs)
    for y, r in zip(got, refs):
        assert y.shape == r.shape
        scale = max(np.abs(r).max(), 1e-6)
        err = np.abs(y.astype(np.float64) - r).max() / scale
        assert err <= rtol, f"max relative error {err:.3g} > {rtol}\n{graph}"
    return proto


def rnd(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def new_graph(shape=("N", 9, 8, 3)):
    g = Graph("t")
    return g, g.add_input(shape, name="x")


# ---- hand-made graphs --------------------------------------------------------------------------
@pytest.mark.parametrize("padding", ["valid", "same", ((2, 0), (1, 3))])
@pytest.mark.parametrize("strides,dilation,groups", [(1, 1, 1), (2, 1, 3), ((1, 2), (2, 1), 1),
                                                     (3, 1, 6)])
def test_conv_geometries(padding, strides, dilation, groups):
    rng = np.random.default_rng(1)
    g, x = new_graph(("N", 9, 8, 6))
    w = g.constant(rnd(rng, 3, 2, 6 // groups, 12))
    y = g.add("conv2d", [x, w, g.constant(rnd(rng, 12))],
              {"strides": strides, "padding": padding, "dilation": dilation, "groups": groups})
    g.set_outputs(y)  # a 4-D output goes back to NHWC
    check(g, rnd(rng, 2, 9, 8, 6))


@pytest.mark.parametrize("op,attrs", [("relu", {}), ("relu6", {}), ("clip", {"min": -.3, "max": .4}),
                                      ("leaky_relu", {"alpha": 0.15}), ("sigmoid", {}),
                                      ("tanh", {}), ("hard_sigmoid", {"alpha": .3, "beta": .4}),
                                      ("hard_swish", {})])
def test_activations_after_conv(op, attrs):
    rng = np.random.default_rng(2)
    g, x = new_graph()
    y = g.add("conv2d", [x, g.constant(rnd(rng, 3, 3, 3, 4))], {"padding": "same"})
    g.set_outputs(g.add(op, [y], attrs), g.add(op, [x], attrs))
    check(g, rnd(rng, 3, 9, 8, 3, scale=4))


MATH = [("erf", {}), ("gelu", {}), ("gelu_tanh", {}), ("elu", {"alpha": 0.6}),
        ("selu", {"alpha": 1.5, "gamma": 1.1}), ("celu", {"alpha": 1.3}), ("softplus", {}),
        ("softsign", {}), ("mish", {}), ("swish", {"alpha": 1.4}),
        ("thresholded_relu", {"alpha": 0.3}), ("shrink", {"bias": 0.1, "lambd": 0.3}),
        ("exp", {}), ("neg", {}), ("abs", {}), ("sqrt", {}), ("log", {}), ("reciprocal", {}),
        ("pow_scalar", {"exponent": 1.5}), ("pow_scalar", {"exponent": 3.0})]
POSITIVE = {"sqrt", "log", "reciprocal", "pow_scalar"}


@pytest.mark.parametrize("op,attrs", MATH)
def test_math_activations_after_conv(op, attrs):
    rng = np.random.default_rng(4)
    g, x = new_graph()
    y = g.add("conv2d", [x, g.constant(rnd(rng, 3, 3, 3, 4))], {"padding": "same"})
    if op in POSITIVE:
        y = g.add("add", [g.add("abs", [y]), g.constant(np.float32(0.5))])
        x = g.add("add", [g.add("abs", [x]), g.constant(np.float32(0.5))])
    g.set_outputs(g.add(op, [y], attrs), g.add(op, [x], attrs))
    check(g, rnd(rng, 3, 9, 8, 3, scale=2))


@pytest.mark.parametrize("op", ["floor", "ceil", "round"])
def test_rounding_round_trips(op):
    """On the input times 4 (exact in float32 and float64), so that no value lands on the
    other side of an integer or a tie in one of the two runtimes."""
    g, x = new_graph()
    y = g.add(op, [g.add("mul", [x, g.constant(np.float32(4.0))])])
    g.set_outputs(y)
    check(g, rnd(np.random.default_rng(9), 3, 9, 8, 3, scale=2))


@pytest.mark.parametrize("op", ["maximum", "minimum", "prelu", "pow"])
def test_binary_math_after_conv(op):
    rng = np.random.default_rng(5)
    g, x = new_graph()
    y = g.add("conv2d", [x, g.constant(rnd(rng, 3, 3, 3, 4))], {"padding": "same"})
    if op == "pow":
        y = g.add("abs", [y])
    c = g.constant(np.abs(rnd(rng, 4)) + 0.5)
    z = g.add(op, [y, c])
    g.set_outputs(z, g.add("log_softmax", [z], {"axis": -1}), g.add("log_softmax", [z],
                                                                    {"axis": 1}))
    check(g, rnd(rng, 3, 9, 8, 3))


def test_comparisons_logic_and_where_round_trip():
    """Less/Greater/.../And/Or/Xor/Not/Where export, run in ONNX Runtime, and import back
    (a bool output stays bool on every target)."""
    rng = np.random.default_rng(8)
    g, x = new_graph()
    y = g.add("conv2d", [x, g.constant(rnd(rng, 3, 3, 3, 4))], {"padding": "same"})
    x0 = g.constant(rnd(rng, 1, 8, 1))
    lo, hi = g.add("less", [y, g.constant(rnd(rng, 4))]), g.add("greater_equal", [y, x0])
    conds = [lo, hi, g.add("logical_and", [lo, hi]), g.add("logical_or", [lo, hi]),
             g.add("logical_xor", [lo, hi]), g.add("logical_not", [lo]),
             g.add("equal", [y, g.add("relu", [y])]), g.add("less_equal", [y, x0]),
             g.add("greater", [y, x0])]
    g.set_outputs(*[g.add("where", [c, y, g.constant(rnd(rng, 4))]) for c in conds])
    xs = rnd(rng, 3, 9, 8, 3)
    check(g, xs)
    g2, x = new_graph()
    g2.set_outputs(g2.add("less", [x, g2.constant(np.float32(0.25))]))
    proto = cnnc.export_onnx(g2)
    want = run_reference(g2, xs)
    assert want.dtype == bool and 0 < want.sum() < want.size
    np.testing.assert_array_equal(run_onnx(proto, xs)[0], want)
    for target in ("numpy", "cpu"):
        got = cnnc.compile(cnnc.load_onnx(proto), target=target)(xs)
        assert got.dtype == bool
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", ["sum", "mean", "max", "min", "sum_square", "l1", "l2",
                                  "log_sum_exp"])
def test_reductions_after_conv(kind):
    rng = np.random.default_rng(7)
    g, x = new_graph()
    y = g.add("conv2d", [x, g.constant(rnd(rng, 3, 3, 3, 4))], {"padding": "same"})
    outs = [g.add("reduce", [y], {"kind": kind, "axes": axes, "keepdims": keep})
            for axes, keep in (((1, 2), True), ((3,), False), ((1,), False), ((-1, 0), True))]
    g.set_outputs(*outs)
    check(g, rnd(rng, 2, 9, 8, 3))


def test_lrn_after_conv():
    rng = np.random.default_rng(6)
    g, x = new_graph()
    y = g.add("conv2d", [x, g.constant(rnd(rng, 3, 3, 3, 7))], {"padding": "same"})
    g.set_outputs(g.add("lrn", [y], {"size": 5, "alpha": 0.1, "beta": 0.75, "bias": 2.0}))
    check(g, rnd(rng, 2, 9, 8, 3))


@pytest.mark.parametrize("kind", ["max_pool2d", "avg_pool2d", "avg_cip"])
@pytest.mark.parametrize("size,strides,padding,ceil", [
    (2, 2, "valid", False), (3, 2, "same", False), (2, 2, "same", False),
    (3, 2, ((1, 1), (0, 1)), True), ((2, 3), (2, 1), "valid", True), (3, 3, 1, False)])
def test_pools(kind, size, strides, padding, ceil):
    rng = np.random.default_rng(3)
    g, x = new_graph(("N", 9, 8, 3))
    attrs = {"pool_size": size, "strides": strides, "padding": padding, "ceil_mode": ceil}
    op = "max_pool2d" if kind == "max_pool2d" else "avg_pool2d"
    if op == "avg_pool2d":
        attrs["count_include_pad"] = kind == "avg_cip"
    y = g.add("conv2d", [x, g.constant(rnd(rng, 1, 1, 3, 5))])
    g.set_outputs(g.add(op, [y], attrs))
    check(g, rnd(rng, 2, 9, 8, 3))


def test_dilated_avg_pool_uses_opset_19():
    rng = np.random.default_rng(4)
    g, x = new_graph()
    g.set_outputs(g.add("avg_pool2d", [x], {"pool_size": 2, "strides": 1, "dilation": 2}))
    proto = check(g, rnd(rng, 2, 9, 8, 3))
    assert proto.opset_import[0].version == 19


def test_global_pools_bn_dense_softmax():
    rng = np.random.default_rng(5)
    g, x = new_graph()
    y = g.add("conv2d", [x, g.constant(rnd(rng, 3, 3, 3, 6))], {"padding": "same"})
    stats = [rnd(rng, 6), rnd(rng, 6), rnd(rng, 6), rng.uniform(0.1, 2, 6).astype(np.float32)]
    y = g.add("batch_norm", [y, *map(g.constant, stats)], {"epsilon": 0.01})
    a = g.add("global_avg_pool", [y])
    m = g.add("global_max_pool", [y], {"keepdims": True})
    z = g.add("dense", [a, g.constant(rnd(rng, 6, 4)), g.constant(rnd(rng, 4))])
    z = g.add("batch_norm", [z, *(g.constant(s[:4]) for s in stats)], {"epsilon": 0.2})
    g.set_outputs(g.add("softmax", [z]), m, g.add("softmax", [y], {"axis": 2}))
    check(g, rnd(rng, 2, 9, 8, 3))


def test_batch_norm_on_a_non_channel_axis():
    rng = np.random.default_rng(6)
    g, x = new_graph()
    stats = [rnd(rng, 9), rnd(rng, 9), rnd(rng, 9), rng.uniform(0.1, 2, 9).astype(np.float32)]
    y = g.add("max_pool2d", [x], {"pool_size": 1, "strides": 1})
    g.set_outputs(g.add("batch_norm", [y, *map(g.constant, stats)], {"axis": 1}))
    check(g, rnd(rng, 2, 9, 8, 3))


@pytest.mark.parametrize("second_reader", [False, True])
def test_flatten_keeps_keras_order(second_reader):
    """Flatten is row-major over (H, W, C): with only dense readers the weights are permuted,
    otherwise the activation goes back to NHWC first."""
    rng = np.random.default_rng(7)
    g, x = new_graph()
    y = g.add("conv2d", [x, g.constant(rnd(rng, 2, 2, 3, 5))], {"strides": 2})
    f = g.add("flatten", [y])
    z = g.add("dense", [f, g.constant(rnd(rng, f.type.shape[1], 7))])
    g.set_outputs(z, f) if second_reader else g.set_outputs(z)
    proto = check(g, rnd(rng, 2, 9, 8, 3))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Transpose") == (2 if second_reader else 1), ops


def test_residual_concat_pad_and_broadcast_constants():
    rng = np.random.default_rng(8)
    g, x = new_graph(("N", 6, 6, 4))
    y = g.add("conv2d", [x, g.constant(rnd(rng, 3, 3, 4, 4))], {"padding": "same"})
    s = g.add("add", [y, x])
    s = g.add("mul", [s, g.constant(rnd(rng, 4))])
    s = g.add("sub", [g.constant(rnd(rng, 1, 6, 1)), s])
    s = g.add("div", [s, g.constant(rng.uniform(1, 2, (1, 1, 6, 4)).astype(np.float32))])
    s = g.add("bias_add", [s, g.constant(rnd(rng, 4))])
    c = g.add("concat", [s, y, x], {"axis": -1})
    p = g.add("pad", [c], {"pads": ((0, 0), (1, 2), (0, 1), (1, 0)), "value": 0.5})
    q = g.add("dropout", [g.add("identity", [p])])
    r = g.add("reshape", [q], {"shape": (0, -1)})
    t = g.add("transpose", [p], {"perm": (0, 3, 1, 2)})
    g.set_outputs(r, t, g.add("add", [g.add("global_avg_pool", [y]), g.constant(rnd(rng, 4))]))
    check(g, rnd(rng, 3, 6, 6, 4))


def test_fused_ops_export():
    rng = np.random.default_rng(9)
    g, x = new_graph(("N", 6, 6, 4))
    b = g.constant(rnd(rng, 4))
    y = g.add("conv2d_fused", [x, g.constant(rnd(rng, 3, 3, 4, 4)), b, g.constant(rnd(rng, 4)),
                               g.constant(rnd(rng, 4)), x],
              {"padding": "same", "epilogue": [("scale_shift",), ("add",), ("relu",)]})
    y = g.add("scale_shift", [y, g.constant(rnd(rng, 4)), g.constant(rnd(rng, 4))])
    f = g.add("flatten", [y])
    z = g.add("dense_fused", [f, g.constant(rnd(rng, 144, 3)), g.constant(rnd(rng, 3))],
              {"epilogue": [("leaky_relu", 0.3)]})
    g.set_outputs(z)
    check(g, rnd(rng, 2, 6, 6, 4))


def test_interface_dynamic_batch_and_file(tmp_path):
    rng = np.random.default_rng(10)
    g, x = new_graph()
    g.set_outputs(g.add("relu", [g.add("conv2d", [x, g.constant(rnd(rng, 3, 3, 3, 2))])]))
    path = tmp_path / "m.onnx"
    proto = cnnc.export_onnx(g, path)
    loaded = onnx.load(str(path))
    assert loaded.graph.input[0].name == "x"
    dims = loaded.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 9, 8, 3]
    out_dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in out_dims] == ["N", 7, 6, 2]
    for n in (1, 4):
        xs = rnd(rng, n, 9, 8, 3)
        np.testing.assert_allclose(run_onnx(loaded, xs)[0], run_reference(g, xs),
                                   rtol=1e-4, atol=1e-4)
    # exactly one transpose in and one out: the NHWC boundary
    assert [n.op_type for n in proto.graph.node].count("Transpose") == 2


def test_unsupported_op_names_the_node():
    from cnnc.ir.node import Node, Value
    g, x = new_graph()
    v = Value("7", x.type)
    node = Node("fancy_op", [x], v, layer="fancy")  # an op with no ONNX lowering
    v.producer = node
    g._insert(node, None)
    g.set_outputs(v)
    with pytest.raises(UnsupportedError, match=r"%7 \(fancy_op, layer 'fancy'\)"):
        cnnc.export_onnx(g)


def test_bad_argument():
    with pytest.raises(cnnc.ConfigError):
        cnnc.export_onnx(object())


# ---- random graphs and models ------------------------------------------------------------------
@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.filter_too_much])
@given(graphgen.graphs())
def test_random_graphs(case):
    trace = {}
    evaluate(case.graph, [case.x], np.float64, trace=trace)
    # -inf padding can make whole windows infinite: such graphs say nothing about the export
    assume(all(np.isfinite(v).all() for v in trace.values() if v.dtype.kind == "f"))
    check(case.graph, case.x)


def test_resnet_like():
    g = graphgen.resnet_like(blocks=3, width=8, hw=16)
    check(g, np.random.default_rng(11).standard_normal((2, 16, 16, 3)))


def _zoo(name, **kwargs):
    models = pytest.importorskip("cnnc.models")
    if not hasattr(models, name):
        pytest.skip(f"zoo model {name} is not available")
    return getattr(models, name)(**kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_zoo_models(name):
    graph = _zoo(name).to_graph()
    rng = np.random.default_rng(12)
    for node in graph.ops:  # non-trivial BN statistics (the zoo starts them at identity)
        if node.op == "batch_norm":
            c = node.inputs[1].type.shape[0]
            for v, a in zip(node.inputs[1:], (rng.uniform(0.5, 1.5, c), rng.normal(0, .1, c),
                                              rng.normal(0, .1, c), rng.uniform(0.5, 2, c))):
                v.producer.data = a.astype(np.float32)
    xs = rng.standard_normal((2, *graph.inputs[0].type.shape[1:]))
    check(graph, xs)


def test_zoo_model_object_is_accepted():
    model = _zoo("lenet5")
    check(model, np.random.default_rng(13).standard_normal((3, 32, 32, 1)))


def test_export_to_a_binary_file_object_and_bad_destinations(tmp_path, monkeypatch):
    import io

    from cnnc.errors import ConfigError
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(11)
    g, x = new_graph()
    g.set_outputs(g.add("relu", [g.add("conv2d", [x, g.constant(rnd(rng, 3, 3, 3, 2))])]))
    buf = io.BytesIO()
    proto = cnnc.export_onnx(g, buf)
    assert buf.getvalue() == proto.SerializeToString() and buf.getvalue()
    xs = rnd(rng, 2, 9, 8, 3)
    np.testing.assert_allclose(run_onnx(onnx.load_from_string(buf.getvalue()), xs)[0],
                               run_reference(g, xs), rtol=1e-4, atol=1e-4)
    with open(tmp_path / "f.onnx", "wb") as f:
        cnnc.export_onnx(g, f)
    assert (tmp_path / "f.onnx").read_bytes() == buf.getvalue()
    with pytest.raises(ConfigError, match="binary mode"):
        cnnc.export_onnx(g, io.StringIO())
    for bad in (42, ["m.onnx"], object()):
        with pytest.raises(ConfigError, match=type(bad).__name__):
            cnnc.export_onnx(g, bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.onnx"], "no stray file written"


@pytest.mark.parametrize("size,scales,mode", [((14, 18), (2.0, 2.0), "nearest"),
                                              ((3, 27), (0.5, 3.0), "linear"),
                                              ((4, 6), (4 / 7, 2 / 3), "linear")])
def test_resize_with_a_symbolic_batch_loads_in_optimised_onnxruntime(size, scales, mode):
    """ONNX Runtime's default (fully optimised) session loads the exported Resize of an
    any-batch model and reproduces the reference."""
    rng = np.random.default_rng(3)
    g, x = new_graph(("N", 7, 9, 3))
    attrs = {"size": size, "scales": scales, "mode": mode, "coordinate_mode": "half_pixel"}
    if mode == "nearest":
        attrs["nearest_mode"] = "round_prefer_floor"
    g.set_outputs(g.add("resize", [x], attrs))
    proto = cnnc.export_onnx(g)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    xs = rnd(rng, 2, 7, 9, 3)
    got = sess.run(None, {sess.get_inputs()[0].name: xs})[0]
    ref = run_reference(g, xs)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_exported_gelu_is_the_pattern_onnxruntime_fuses(tmp_path):
    """The erf form of GELU is exported as x * 0.5 * (1 + erf(x / sqrt 2)) with a Div: ONNX
    Runtime's optimiser makes that one Gelu kernel (with a Mul by 1 / sqrt 2 it kept four
    kernels, twice the time), and the result still matches the reference."""
    rng = np.random.default_rng(4)
    g, x = new_graph()
    g.set_outputs(g.add("gelu", [x], {}))
    proto = check(g, rnd(rng, 2, 9, 8, 3, scale=3.0))
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node}
    assert "Gelu" in ops and "Erf" not in ops, ops
