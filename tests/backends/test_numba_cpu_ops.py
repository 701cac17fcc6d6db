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


def test_concat_and_pad_on_every_axis_and_rank_share_one_copy_kernel():
    """Concat along each axis of rank-2, -3 and -4 values and pads on every side, in one
    graph: every copy is the one shape-generic COPY4 kernel, and each output matches."""
    from cnnc.backends.numba_cpu import kernels
    from cnnc.ir import Graph
    rng = np.random.default_rng(11)
    g = Graph("copies")
    x = g.add_input((2, 5, 3, 4), name="x")   # a static batch: concat on axis 0 too
    y = g.add("relu", [x])
    outs = [g.add("concat", [x, y, x], {"axis": ax}) for ax in range(4)]
    flat = g.add("reshape", [y], {"shape": (-1, 60)})
    outs += [g.add("concat", [flat, g.constant(rng.standard_normal((1, 60)))], {"axis": 0}),
             g.add("concat", [flat, flat], {"axis": 1})]
    r3 = g.add("reshape", [x], {"shape": (-1, 15, 4)})
    outs += [g.add("concat", [r3, g.add("neg", [r3])], {"axis": ax}) for ax in (1, 2)]
    outs += [g.add("pad", [x], {"pads": ((0, 0), (2, 0), (1, 3), (0, 2)), "value": 0.25}),
             g.add("pad", [r3], {"pads": ((1, 1), (0, 2), (3, 0)), "value": -2.0})]
    g.set_outputs(*outs)
    compiled = cnnc.compile(g, target="cpu", opt_level=0)
    src = compiled.source()
    assert src.count("out[o0 + a, o1 + b, o2:o2 + w, o3:o3 + c]") == 1
    assert kernels.COPY4.split("\n", 1)[1] in src
    for _ in range(2):
        xs = rng.standard_normal((2, 5, 3, 4)).astype(np.float32)
        got = compiled(xs)
        ref = run_reference(g, xs, dtype=np.float64)
        for k, (a, b) in enumerate(zip(got, ref, strict=True)):
            assert a.shape == b.shape, k
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=str(k))
