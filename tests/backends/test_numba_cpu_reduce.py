"""The Numba CPU reduction kernels against the float64 reference on fresh random float32
inputs: within 1e-4 of the reduction of |x| (the scale a float32 sum can be accurate to),
max and min exactly; every kind over several axis sets, compiled once in one graph."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cnnc
from cnnc.backends.reference import run_reference
from cnnc.ir import Graph
from cnnc.ops.reduce import KINDS

pytestmark = pytest.mark.numba

SHAPE = (2, 5, 4, 3)
AXES = [((1, 2), False), ((3,), True), ((0, 2), False), ((0, 1, 2, 3), False)]


def _graph(absolute: bool):
    g = Graph("reduce_abs" if absolute else "reduce")
    x = g.add_input(SHAPE, name="x")
    src = g.add("abs", [x]) if absolute else x
    outs, names = [], []
    for kind in KINDS:
        for axes, keep in AXES:
            names.append(f"{kind} {axes} keepdims={keep}")
            outs.append(g.add("reduce", [src], {"kind": kind, "axes": axes, "keepdims": keep}))
    g.set_outputs(*outs)
    return g, names


@pytest.fixture(scope="module")
def compiled():
    g, names = _graph(False)
    return g, _graph(True)[0], names, cnnc.compile(g, target="cpu", opt_level=0)


@settings(deadline=None, max_examples=30)
@given(st.sampled_from([1e-3, 1.0, 20.0]), st.data())
def test_reductions_match_the_float64_reference(compiled, scale, data):
    g, g_abs, names, model = compiled
    x = data.draw(hnp.arrays(np.float32, SHAPE, elements=st.floats(-1, 1, width=32)))
    x = (x * np.float32(scale)).astype(np.float32)
    got = model(x)
    ref = run_reference(g, x, dtype=np.float64)
    mag = run_reference(g_abs, x, dtype=np.float64)  # the same reduction of |x|
    for name, y, r, m in zip(names, got, ref, mag, strict=True):
        assert y.shape == r.shape, name
        if name.startswith(("max", "min")):
            np.testing.assert_array_equal(y, r.astype(np.float32), err_msg=name)
            continue
        bound = 1e-4 * np.maximum(np.abs(m), np.abs(r)) + 1e-30
        if name.startswith("log_sum_exp"):
            bound = 1e-4 * np.maximum(np.abs(r), 1.0)
        assert (np.abs(y - r) <= bound).all(), f"{name}: {y} vs {r}"


def test_a_reduction_to_a_scalar_compiles_for_a_0d_array_in_this_process(compiled):
    """Rank 0 in a kernel signature is a 0-d float32 array, not an integer argument (which
    is -1): a worker process that mistyped it used to fail quietly, leaving the kernel to
    be compiled on its first call, or to fail outright when it fell to this process."""
    from cnnc.backends.numba_cpu.runtime import compile_kernel
    model = compiled[3]
    zero_d = {k: s for k, s in model.lowered.signatures.items() if any(0 in r for r in s)}
    assert zero_d, "the graph has reductions over every axis"
    for k, sigs in zero_d.items():
        compile_kernel(model.module, k, sigs)
