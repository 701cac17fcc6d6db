"""Every registry op through the CUDA backend (tests/op_cases.py: one small graph per op),
at opt levels 0 (one kernel per op) and 2 (fused), against the float64 reference."""

import numpy as np
import pytest

import cnnc.ops  # noqa: F401  (registers every op)
import op_cases
from cnnc.ops.registry import REGISTRY
from cuda_helpers import check, requires_cuda

pytestmark = [pytest.mark.cuda, requires_cuda]
OPS = sorted(op for op in REGISTRY if op != "constant")


def test_every_registry_op_has_a_case():
    rng = np.random.default_rng(0)
    for op in OPS:
        g = op_cases.build(op, rng)
        assert any(n.op == op for n in g.nodes), op


@pytest.mark.parametrize("op", OPS)
def test_op_matches_reference(op):
    seed = sum(map(ord, op))
    g = op_cases.build(op, np.random.default_rng(seed))
    x = np.random.default_rng(seed + 1).standard_normal((2, 7, 6, 4)).astype(np.float32)
    for level in (0, 2):
        model = check(g, x, opt_level=level)
        assert model.target == "cuda"
        assert "@cuda.jit" in model.source() or not model.lowered.launches


@pytest.mark.parametrize("op", ["conv2d", "conv2d_fused", "dense", "dense_fused"])
def test_gemm_and_direct_strategies_agree(op):
    g = op_cases.build(op, np.random.default_rng(5))
    x = np.random.default_rng(6).standard_normal((1, 7, 6, 4)).astype(np.float32)
    for force in ("gemm", "direct"):
        model = check(g, x, opt_level=0, force=force)
        assert all(force in note for note in model.strategies()), model.strategies()
