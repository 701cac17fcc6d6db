"""Helpers for the ONNX import tests: build small models with ``onnx.helper``, run them in ONNX
Runtime and compare with cnnc (compiled for NumPy, and the float64 reference)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import cnnc  # noqa: E402
from cnnc.backends.reference import run_reference  # noqa: E402
from cnnc.frontends.onnx.importer import load_onnx  # noqa: E402

RTOL = 1e-4
FLOAT = TensorProto.FLOAT
ort.set_default_logger_severity(3)


def node(op, inputs, outputs, name=None, **attrs):
    outputs = [outputs] if isinstance(outputs, str) else outputs
    return helper.make_node(op, list(inputs), list(outputs), name=name or f"{op}_{outputs[0]}",
                            **attrs)


def model(nodes, inputs, outputs, inits=None, opset=17, name="g", infer=True):
    """``inputs``: [(name, shape)], shape dims may be strings (symbolic); ``outputs``: names
    (shape left to ONNX shape inference) or (name, shape); ``inits``: {name: array}."""
    vin = [helper.make_tensor_value_info(n, FLOAT, list(s)) for n, s in inputs]
    vout = [helper.make_tensor_value_info(o, FLOAT, None) if isinstance(o, str)
            else helper.make_tensor_value_info(o[0], FLOAT, list(o[1])) for o in outputs]
    init = [numpy_helper.from_array(np.asarray(a), n) for n, a in (inits or {}).items()]
    g = helper.make_graph(list(nodes), name, vin, vout, initializer=init)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    return onnx.shape_inference.infer_shapes(m) if infer else m


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def run_ort(proto, *xs):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {n: np.asarray(x, np.float32) for n, x in zip(names, xs)})


def run_spec(proto, *xs):
    """The ONNX spec's own reference implementation (onnx.reference), for the cases ONNX
    Runtime refuses (Conv with SAME auto_pad and dilation)."""
    from onnx.reference import ReferenceEvaluator
    names = [i.name for i in proto.graph.input]
    return ReferenceEvaluator(proto).run(None, {n: np.asarray(x, np.float32)
                                               for n, x in zip(names, xs)})


def assert_close(got, want, rtol=RTOL, what=""):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=what)


def check(proto, *xs, rtol=RTOL, opt_level=2, oracle=run_ort):
    """Import ``proto``; the NumPy-compiled model and the float64 reference must both match
    ``oracle`` (ONNX Runtime) within ``rtol`` (relative to the output's scale). Returns the
    imported model."""
    m = load_onnx(proto)
    want = oracle(proto, *xs)
    compiled = cnnc.compile(m, target="numpy", opt_level=opt_level)
    got = compiled(*xs)
    ref = run_reference(m.to_graph(), *xs)
    got, ref = ([got], [ref]) if len(want) == 1 else (list(got), list(ref))
    for i, (g, r, w) in enumerate(zip(got, ref, want, strict=True)):
        assert_close(g, w, rtol, f"compiled output {i}")
        assert_close(r, w, rtol, f"reference output {i}")
    return m


def ops(graph):
    return [n.op for n in graph.ops]


def inputs_for(proto, rng, batch=2):
    """Random inputs of the declared shapes, symbolic dims set to ``batch``."""
    xs = []
    for vi in proto.graph.input:
        dims = [d.dim_value if d.HasField("dim_value") else batch
                for d in vi.type.tensor_type.shape.dim]
        xs.append(rand(rng, *dims))
    return xs
