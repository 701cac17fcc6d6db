"""The ONNX model zoo classics shipped with onnx (``onnx/backend/test/data/light``: AlexNet,
DenseNet-121, GoogLeNet, Inception-v2, ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512;
Caffe2-era opset 8-9 graphs with LRN, old Reshape, Dropout and ConstantOfShape weights).

Each must reproduce its stored output for the onnx runner's input ``arange(n) / n`` on the
numpy and cpu targets. Those weights are constants (every ConstantOfShape fills 0.02), so the
stored outputs are nearly uniform; the models are also run with each ConstantOfShape weight
replaced by seeded random values and compared with ONNX Runtime, which checks every layer's
arithmetic and not only the output's shape.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

import cnnc  # noqa: E402
from cnnc.frontends.onnx.importer import load_onnx  # noqa: E402

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
MODELS = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
          "shufflenet", "squeezenet", "vgg19", "zfnet512"]
RTOL, ATOL = 1e-3, 1e-7  # the onnx runner's defaults for these models

pytestmark = pytest.mark.slow


def _load(name):
    path = os.path.join(LIGHT, f"light_{name}.onnx")
    if not os.path.exists(path):
        pytest.skip(f"this onnx has no {path}")
    return onnx.load(path), path


def runner_input(proto) -> tuple[str, np.ndarray]:
    """The onnx runner's input: arange(n) / n over the first non-initializer input."""
    inits = {t.name for t in proto.graph.initializer}
    vi = next(v for v in proto.graph.input if v.name not in inits)
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1
                  for d in vi.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return vi.name, (np.arange(n).reshape(shape) / n).astype(np.float32)


@pytest.mark.parametrize("target", ["numpy", pytest.param("cpu", marks=pytest.mark.numba)])
@pytest.mark.parametrize("name", MODELS)
def test_matches_the_stored_output(name, target):
    proto, path = _load(name)
    want = onnx.numpy_helper.to_array(onnx.load_tensor(path[:-5] + "_output_0.pb"))
    _, x = runner_input(proto)
    got = cnnc.compile(load_onnx(proto), target=target)(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def random_weights(proto, seed: int = 0):
    """A copy of ``proto`` whose ConstantOfShape nodes are seeded random initializers (the
    same scale as the stored 0.02, varying in sign and size)."""
    rng = np.random.default_rng(seed)
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    consts = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in
              out.graph.node if n.op_type == "Constant"}
    consts.update((t.name, onnx.numpy_helper.to_array(t)) for t in out.graph.initializer)
    keep = []
    for node in out.graph.node:
        if node.op_type != "ConstantOfShape":
            keep.append(node)
            continue
        shape = [int(d) for d in consts[node.input[0]]]
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        w = rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
        if len(shape) == 1:  # biases, batch-norm statistics: positive, near 1 for variances
            w = 0.5 + rng.random(shape)
        out.graph.initializer.append(onnx.numpy_helper.from_array(w.astype(np.float32),
                                                                 node.output[0]))
        # IR version 3 (these models) lists every initializer among the graph inputs
        out.graph.input.append(onnx.helper.make_tensor_value_info(
            node.output[0], onnx.TensorProto.FLOAT, shape))
    del out.graph.node[:]
    out.graph.node.extend(keep)
    return out


@pytest.mark.parametrize("name", MODELS)
def test_random_weights_match_onnxruntime(name):
    ort = pytest.importorskip("onnxruntime")
    proto = random_weights(_load(name)[0])
    input_name, x = runner_input(proto)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {input_name: x})
    assert np.std(want) > 1e-3 * np.abs(want).max()  # not the uniform stored output
    got = cnnc.compile(load_onnx(proto), target="numpy")(x)
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)
