"""Whole models: a ResNet-like network (exported by torch.onnx.export, and built by hand),
dynamic and static batch, NHWC models wrapped in transposes, and flatten -> Gemm/MatMul whose
weight rows are permuted instead of transposing the activation."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

from onnx_build import assert_close, check, model, node, ops, rand, run_ort

import cnnc
from cnnc.frontends.onnx.importer import load_onnx, read_model
from cnnc.passes import default_pipeline, run_pipeline
from cnnc.passes.cancel_transposes import CancelTransposes

RNG = np.random.default_rng(99)


def _bn(prefix, c, inits):
    inits.update({f"{prefix}_g": rand(RNG, c) * 0.2 + 1, f"{prefix}_b": rand(RNG, c) * 0.1,
                  f"{prefix}_m": rand(RNG, c) * 0.1,
                  f"{prefix}_v": np.abs(rand(RNG, c)) * 0.5 + 0.5})
    return [f"{prefix}_{s}" for s in "gbmv"]


def resnet_like(batch="N", c=6, classes=5):
    """conv-bn-relu stem, max pool, a residual block, a strided block with a 1x1 projection
    shortcut, global average pool, flatten, gemm."""
    inits, nodes = {}, []

    def conv_bn(name, x, cin, cout, k, stride=1, relu=True):
        inits[f"{name}_w"] = rand(RNG, cout, cin, k, k, scale=1 / np.sqrt(cin * k * k))
        p = k // 2
        nodes.append(node("Conv", [x, f"{name}_w"], f"{name}_c", name=f"{name}_conv",
                          strides=[stride, stride], pads=[p, p, p, p]))
        nodes.append(node("BatchNormalization", [f"{name}_c", *_bn(name, cout, inits)],
                          f"{name}_bn", name=f"{name}_norm"))
        if not relu:
            return f"{name}_bn"
        nodes.append(node("Relu", [f"{name}_bn"], f"{name}_r", name=f"{name}_relu"))
        return f"{name}_r"

    x = conv_bn("stem", "x", 3, c, 3)
    nodes.append(node("MaxPool", [x], "pool", kernel_shape=[3, 3], strides=[2, 2],
                      pads=[1, 1, 1, 1]))
    h = conv_bn("b1a", "pool", c, c, 3)
    h = conv_bn("b1b", h, c, c, 3, relu=False)
    nodes += [node("Add", [h, "pool"], "b1_add"), node("Relu", ["b1_add"], "b1")]
    h = conv_bn("b2a", "b1", c, 2 * c, 3, stride=2)
    h = conv_bn("b2b", h, 2 * c, 2 * c, 3, relu=False)
    s = conv_bn("b2s", "b1", c, 2 * c, 1, stride=2, relu=False)
    nodes += [node("Add", [h, s], "b2_add"), node("Relu", ["b2_add"], "b2"),
              node("GlobalAveragePool", ["b2"], "gap"), node("Flatten", ["gap"], "flat"),
              node("Gemm", ["flat", "fc_w", "fc_b"], "y", transB=1)]
    inits.update({"fc_w": rand(RNG, classes, 2 * c), "fc_b": rand(RNG, classes)})
    return model(nodes, [("x", (batch, 3, 15, 13))], ["y"], inits, opset=13)


def torch_resnet_like():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                        nn.BatchNorm2d(cout))
                          if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + self.short(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8),
                                      nn.ReLU(), nn.MaxPool2d(3, 2, 1, ceil_mode=True))
            self.blocks = nn.Sequential(Block(8, 8, 1), Block(8, 16, 2))
            self.fc = nn.Linear(16, 7)

        def forward(self, x):
            x = self.blocks(self.stem(x))
            x = nn.functional.adaptive_avg_pool2d(x, 1)
            return self.fc(x.view(x.size(0), -1))

    net = Net().eval()
    for mod in net.modules():  # non-trivial statistics, so a wrong BN shows
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.5, 0.5)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(net, torch.randn(1, 3, 17, 15), f, dynamo=False, opset_version=13,
                              input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                              do_constant_folding=False,
                              training=torch.onnx.TrainingMode.PRESERVE)
        except Exception as e:  # an exporter that needs what this machine lacks
            pytest.skip(f"torch.onnx.export failed: {e}")
    return f.getvalue()


def _assert_boundary_transposes_only(graph):
    """Transposes only read a graph input or make a graph output; batch norm is folded."""
    inputs = {id(v) for v in graph.inputs}
    outputs = {id(v) for v in graph.outputs}
    for n in graph.ops:
        if n.op == "transpose":
            assert id(n.inputs[0]) in inputs or id(n.output) in outputs, n
    assert not {"batch_norm", "scale_shift"} & set(ops(graph))


@pytest.mark.parametrize("source", ["torch", "hand"])
def test_resnet_like_matches_onnxruntime_and_optimises(source):
    data = torch_resnet_like() if source == "torch" else resnet_like().SerializeToString()
    proto = read_model(data)[0]
    hw = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[2:]]
    m = check(proto, rand(RNG, 3, 3, *hw))
    compiled = cnnc.compile(load_onnx(data), target="numpy", opt_level=2)
    _assert_boundary_transposes_only(compiled.graph)
    assert sum(n.op == "transpose" for n in compiled.graph.ops) == 1
    assert "conv2d_fused" in ops(compiled.graph)
    assert m.input_names == ["x"] and m.output_names == ["y"]


def test_dynamic_batch_one_compiled_model_many_sizes():
    proto = resnet_like()
    compiled = cnnc.compile(load_onnx(proto), target="numpy")
    assert compiled.graph.inputs[0].type.shape == ("N", 3, 15, 13)
    for n in (1, 5):
        x = rand(RNG, n, 3, 15, 13)
        assert_close(compiled(x), run_ort(proto, x)[0], what=f"batch {n}")


@pytest.mark.parametrize("dim", [0, None])
def test_unset_or_zero_batch_dim_is_dynamic(dim):
    proto = model([node("Relu", ["x"], "y")], [("x", (1, 4))], ["y"])
    d = proto.graph.input[0].type.tensor_type.shape.dim[0]
    d.Clear()
    if dim is not None:
        d.dim_value = dim
    m = load_onnx(proto)
    assert m.to_graph().inputs[0].type.shape == ("N", 4)
    x = rand(RNG, 3, 4)
    assert_close(cnnc.compile(m, target="numpy")(x), np.maximum(x, 0))


def test_static_batch_stays_static():
    proto = resnet_like(batch=2)
    m = check(proto, rand(RNG, 2, 3, 15, 13))
    assert m.to_graph().inputs[0].type.shape == (2, 3, 15, 13)
    assert m.to_graph().outputs[0].type.shape == (2, 5)


def test_to_graph_returns_a_fresh_graph_each_call():
    m = load_onnx(resnet_like())
    g1, g2 = m.to_graph(), m.to_graph()
    assert g1 is not g2 and str(g1) == str(g2)
    cnnc.compile(m, target="numpy")  # optimises its own copy
    assert str(m.to_graph()) == str(g2)


# ---- layout at the boundaries --------------------------------------------------------------
def test_nhwc_model_wrapped_in_transposes_needs_none_after_cancel_transposes():
    """A model converted from an NHWC framework: Transpose -> Conv -> Relu -> Transpose."""
    nodes = [node("Transpose", ["x"], "t", perm=[0, 3, 1, 2]),
             node("Conv", ["t", "w", "b"], "c", pads=[1, 1, 1, 1]),
             node("Relu", ["c"], "r"),
             node("Transpose", ["r"], "y", perm=[0, 2, 3, 1])]
    proto = model(nodes, [("x", ("N", 7, 6, 3))], ["y"], {"w": rand(RNG, 4, 3, 3, 3),
                                                          "b": rand(RNG, 4)})
    m = check(proto, rand(RNG, 2, 7, 6, 3))
    graph = m.to_graph()
    assert ops(graph) == ["transpose", "transpose", "conv2d", "relu"]
    run_pipeline(graph, [CancelTransposes(), *default_pipeline(2)], verify_each=True)
    assert ops(graph) == ["conv2d_fused"]
    x = rand(RNG, 2, 7, 6, 3)
    assert_close(cnnc.backends.reference.run_reference(graph, x), run_ort(proto, x)[0])


def test_four_d_output_goes_back_to_nchw():
    proto = model([node("Conv", ["x", "w"], "y")], [("x", ("N", 2, 5, 4))], ["y"],
                  {"w": rand(RNG, 3, 2, 2, 2)})
    m = check(proto, rand(RNG, 2, 2, 5, 4))
    graph = m.to_graph()
    assert graph.outputs[0].type.shape == ("N", 3, 4, 3)
    assert graph.outputs[0].producer.attrs["perm"] == (0, 3, 1, 2)


@pytest.mark.parametrize("spelling", ["Flatten", "Reshape", "MatMul"])
def test_flatten_into_dense_permutes_weight_rows_instead_of_transposing(spelling):
    inits = {"w": rand(RNG, 4, 3, 3, 3), "fc": rand(RNG, 6, 4 * 5 * 3),
             "shape": np.array([0, -1], np.int64), "fcm": rand(RNG, 4 * 5 * 3, 6)}
    flat = (node("Flatten", ["c"], "f") if spelling != "Reshape"
            else node("Reshape", ["c", "shape"], "f"))
    dense = (node("MatMul", ["d", "fcm"], "y") if spelling == "MatMul"
             else node("Gemm", ["d", "fc"], "y", transB=1))
    nodes = [node("Conv", ["x", "w"], "c", pads=[1, 1, 1, 1]), flat,
             node("Dropout", ["f"], "d"), dense]
    m = check(model(nodes, [("x", ("N", 3, 5, 3))], ["y"], inits), rand(RNG, 2, 3, 5, 3))
    assert ops(m.to_graph()) == ["transpose", "conv2d", "flatten", "dense"]


def test_flatten_with_another_reader_keeps_nchw_order():
    nodes = [node("Conv", ["x", "w"], "c", pads=[1, 1, 1, 1]), node("Flatten", ["c"], "f"),
             node("Gemm", ["f", "fc"], "y1", transB=1), node("Relu", ["f"], "y2")]
    m = check(model(nodes, [("x", ("N", 3, 5, 3))], ["y1", "y2"],
                    {"w": rand(RNG, 4, 3, 3, 3), "fc": rand(RNG, 6, 60)}), rand(RNG, 2, 3, 5, 3))
    assert ops(m.to_graph()).count("transpose") == 2  # the input, and NCHW before the flatten


@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_round_trip_through_export_onnx(name):
    """cnnc model -> export_onnx (NHWC boundary, NCHW inside) -> load_onnx: the same function,
    and with cancel_transposes no transpose is left at all."""
    export = pytest.importorskip("cnnc.frontends.onnx.export")
    original = getattr(cnnc.models, name)()
    graph = load_onnx(export.export_onnx(original)).to_graph()
    x = RNG.standard_normal((2, *original.to_graph().inputs[0].type.shape[1:]))
    want = cnnc.backends.reference.run_reference(original.to_graph(), x)
    assert_close(cnnc.backends.reference.run_reference(graph, x), want, rtol=1e-9)
    run_pipeline(graph, [CancelTransposes(), *default_pipeline(2)], verify_each=True)
    assert "transpose" not in ops(graph)
    assert_close(cnnc.backends.reference.run_reference(graph, x), want, rtol=1e-9)


def test_outputs_that_are_inputs_or_constants_are_computed():
    nodes = [node("Identity", ["x"], "y1"), node("Constant", [], "y2", value_floats=[1.5, -2.0]),
             node("Relu", ["x"], "y3")]
    m = load_onnx(model(nodes, [("x", ("N", 2))], ["y1", "y2", "y3"]))
    graph = m.to_graph()
    assert all(v.producer is not None and not v.is_constant for v in graph.outputs)
    x = rand(RNG, 3, 2)
    y1, y2, y3 = cnnc.compile(m, target="numpy")(x)
    assert_close(y1, x)
    assert_close(y2, [1.5, -2.0])
    assert_close(y3, np.maximum(x, 0))


@pytest.mark.parametrize("opset", [9, 13, 18])
def test_torch_export_across_opsets(opset):
    """Clip (attributes before opset 11), HardSwish (or its opset-9 spelling), an explicit Pad
    before a ceil_mode AveragePool, Flatten into Gemm (rows permuted), Softmax."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(opset)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
            self.dw = nn.Conv2d(4, 4, 3, groups=4, padding=1)
            self.fc = nn.Linear(4 * 4 * 4, 5)

        def forward(self, x):
            x = nn.functional.hardswish(self.dw(nn.functional.relu6(self.bn(self.conv(x)))))
            x = nn.functional.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=True)
            x = x + torch.sigmoid(x)
            return torch.softmax(self.fc(torch.flatten(x, 1)), -1)

    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(Net().eval(), torch.randn(1, 3, 7, 7), f, dynamo=False,
                              opset_version=opset, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "b"}})
        except Exception as e:
            pytest.skip(f"torch.onnx.export failed: {e}")
    m = check(read_model(f.getvalue())[0], rand(RNG, 3, 3, 7, 7))
    assert ops(m.to_graph()).count("transpose") == 1
