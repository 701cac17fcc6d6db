"""The PyTorch peer computes the same function as the cnnc graph: float64 modules match the
float64 reference to 1e-9 relative on random graphs; float32 zoo models to 1e-4."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
for p in (str(ROOT), str(ROOT / "tests" / "passes")):
    if p not in sys.path:
        sys.path.insert(0, p)

import graphgen  # noqa: E402
from benchmarks.torch_peer import torch_module  # noqa: E402
from cnnc.backends.reference import evaluate  # noqa: E402
from cnnc.errors import UnsupportedError  # noqa: E402


def compare(graph, x, dtype, rtol):
    refs = evaluate(graph, [x], np.float64)
    module = torch_module(graph, dtype)
    with torch.inference_mode():
        ys = module(torch.from_numpy(np.asarray(x, np.float64)).to(dtype))
    ys = ys if isinstance(ys, tuple) else (ys,)
    assert len(ys) == len(refs)
    for y, r in zip(ys, refs):
        assert tuple(y.shape) == r.shape
        err = np.abs(y.double().numpy() - r).max() / max(np.abs(r).max(), 1e-9)
        assert err <= rtol, f"{err:.3g}\n{graph}\n{module.source}"


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.filter_too_much])
@given(graphgen.graphs())
def test_random_graphs_float64(case):
    trace = {}
    evaluate(case.graph, [case.x], np.float64, trace=trace)
    # -inf padding can make whole windows infinite: such graphs say nothing about the peer
    assume(all(np.isfinite(v).all() for v in trace.values() if v.dtype.kind == "f"))
    compare(case.graph, case.x, torch.float64, 1e-9)


def test_resnet_like_float32_and_source():
    g = graphgen.resnet_like(blocks=3, width=8, hw=16)
    compare(g, np.random.default_rng(0).standard_normal((2, 16, 16, 3)), torch.float32, 1e-4)
    src = torch_module(g).source
    assert src.startswith("def forward(self, x0):") and "F.conv2d" in src


@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_zoo_models_float32(name):
    models = pytest.importorskip("cnnc.models")
    from benchmarks.run import randomize_statistics
    g = randomize_statistics(models.get(name).to_graph(), seed=1)
    x = np.random.default_rng(2).standard_normal((2, *g.inputs[0].type.shape[1:]))
    compare(g, x, torch.float32, 1e-4)


def test_unknown_op_is_reported():
    from cnnc.ir import Graph
    g = Graph("g")
    x = g.add_input(("N", 4, 4, 2), name="x")
    from cnnc.ir.node import Node, Value
    v = Value("9", x.type)
    node = Node("mystery", [x], v)
    v.producer = node
    g._insert(node, None)
    g.set_outputs(v)
    with pytest.raises(UnsupportedError, match="mystery"):
        torch_module(g)
