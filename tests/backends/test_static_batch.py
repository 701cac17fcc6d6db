"""Graphs whose batch is a fixed number (``Input(batch_size=B)``, or an ONNX model exported
without a dynamic batch axis) on the cpu target, and failures inside generated code."""

import threading

import numpy as np
import pytest

import cnnc
from cnnc.backends.reference import run_reference
from cnnc.errors import KernelError, ShapeError
from cnnc.frontends.keras import layers as L

pytestmark = pytest.mark.numba
TOL = 1e-4  # float32 kernels vs the float64 reference: relative to the largest |reference|


def small_cnn(batch, padding):
    return cnnc.Sequential([
        L.Input(shape=(9, 9, 3), batch_size=batch),
        L.Conv2D(8, 3, padding=padding, seed=1), L.BatchNormalization(), L.ReLU(),
        L.Conv2D(8, 3, padding=padding, activation="relu", seed=2),
        L.MaxPooling2D(2), L.Flatten(), L.Dense(4, seed=3)], name=f"static_{batch}_{padding}")


def rel_err(y, ref):
    return float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("batch", [1, 2, 5])
def test_front_end_model_with_a_fixed_batch(batch, padding):
    model = small_cnn(batch, padding)
    graph = model.to_graph()
    assert graph.inputs[0].type.shape[0] == batch
    compiled = cnnc.compile(model, target="cpu")
    x = np.random.default_rng(batch).standard_normal((batch, 9, 9, 3)).astype(np.float32)
    y = compiled(x)
    assert y.shape == (batch, 4)
    assert rel_err(y, run_reference(graph, x, dtype=np.float64)) < TOL
    with pytest.raises(ShapeError, match=f"expected {batch}"):
        compiled(np.zeros((batch + 1, 9, 9, 3), np.float32))


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_onnx_model_with_a_fixed_batch(batch):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(10 + batch)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((6, 8, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["y"])]          # unpadded 1x1
    g = helper.make_graph(
        nodes, "fixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                       [batch, 3, 7, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 6, 7, 7])],
        initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    data = proto.SerializeToString()
    x = rng.standard_normal((batch, 3, 7, 7)).astype(np.float32)
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    model = cnnc.load_onnx(data)
    for target in ("numpy", "cpu"):
        y = cnnc.compile(model, target=target)(x)
        assert y.shape == want.shape
        assert rel_err(y, want) < TOL, target


def test_an_exception_in_generated_code_is_a_kernel_error_naming_the_node():
    compiled = cnnc.compile(small_cnn(2, "same"), target="cpu")
    x = np.random.default_rng(0).standard_normal((2, 9, 9, 3)).astype(np.float32)
    compiled(x)
    # sabotage: forget the scratch the padded convs need, so the generated forward fails
    compiled.lowered.scratch_needs = []
    compiled._local = threading.local()   # a fresh thread: arenas sized anew
    with pytest.raises(KernelError) as info:
        compiled(x)
    text = str(info.value)
    assert "static_2_same" in text and "target cpu" in text
    assert "conv2d" in text and "ValueError" in text, text
    assert isinstance(info.value, cnnc.CnncError)
