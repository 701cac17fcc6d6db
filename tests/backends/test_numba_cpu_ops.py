"""Every op in the registry runs on the Numba CPU backend and agrees with the reference."""

import numpy as np
import pytest

import cnnc
from cnnc.backends.reference import run_reference
from cnnc.ops.registry import REGISTRY

import op_cases  # tests/op_cases.py (tests/ is on sys.path through tests/conftest.py)

pytestmark = pytest.mark.numba
OPS = sorted(set(REGISTRY) - {"constant"})


def test_case_table_covers_the_registry():
    missing = [op for op in OPS if not _builds(op)]
    assert missing == [], f"ops without a backend test case: {missing}"


def _builds(op):
    try:
        op_cases.build(op, np.random.default_rng(0))
        return True
    except KeyError:
        return False


@pytest.mark.parametrize("op", OPS)
def test_op_matches_reference(op):
    rng = np.random.default_rng(abs(hash(op)) % 2**32)
    g = op_cases.build(op, rng)
    compiled = cnnc.compile(g, target="cpu", opt_level=0)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 7, 6, 4)).astype(np.float32)
        y = compiled(x)
        ref = run_reference(g, x, dtype=np.float64)
        assert y.shape == ref.shape
        err = np.max(np.abs(y - ref)) / max(np.max(np.abs(ref)), 1e-6)
        assert err < 1e-5, f"{op}: relative error {err:.2e}"
