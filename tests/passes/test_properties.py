"""Property tests: random graphs compute the same thing before and after the pipeline, and the
memory plan of the result is sound (simulated buffer by buffer)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from cnnc.backends.reference import run_reference
from cnnc.ir import verify
from cnnc.passes import optimize, plan_memory
from graphgen import graphs
from plan_sim import simulate

#: relative to the largest magnitude of the reference output (float64 end to end)
RTOL = 1e-9
SETTINGS = settings(deadline=None, max_examples=60,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def outputs(graph, x):
    y = run_reference(graph, x, dtype=np.float64)
    return list(y) if isinstance(y, tuple) else [y]


def assert_close(got, want, what):
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape, f"{what}: output {i} shape {a.shape} != {b.shape}"
        finite = np.isfinite(b)
        scale = max(1.0, float(np.abs(b[finite]).max(initial=0.0)))
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * scale, equal_nan=True,
                                   err_msg=f"{what}: output {i}")


@pytest.mark.parametrize("opt_level", [0, 1, 2])
@SETTINGS
@given(case=graphs())
def test_pipeline_preserves_semantics(case, opt_level):
    want = outputs(case.graph, case.x)
    report = optimize(case.graph, opt_level=opt_level, verify_each=True)
    verify(case.graph, "test")
    assert_close(outputs(case.graph, case.x), want, f"opt_level {opt_level}")
    assert sum(report.ops_after.values()) <= sum(report.ops_before.values())
    if opt_level >= 1:  # no-ops survive only between a graph input and a graph output
        for n in case.graph.ops:
            if n.op in ("identity", "dropout"):
                assert n.inputs[0] in case.graph.inputs and n.output in case.graph.outputs
    if opt_level == 2:
        assert "batch_norm" not in {n.op for n in case.graph.ops}


@SETTINGS
@given(case=graphs())
def test_memory_plan_simulates_exactly(case):
    want = outputs(case.graph, case.x)
    for stage in ("raw", "optimized"):
        if stage == "optimized":
            optimize(case.graph, opt_level=2)
        plan = plan_memory(case.graph)
        b = {"N": case.x.shape[0]}
        assert plan.peak_bytes(b) <= plan.naive_bytes(b)
        got = simulate(case.graph, plan, [case.x])
        assert_close(got, want, f"simulated plan ({stage})")


@settings(deadline=None, max_examples=30)
@given(case=graphs())
def test_second_run_changes_nothing(case):
    optimize(case.graph, opt_level=2)
    text, nodes = str(case.graph), case.graph.nodes
    report = optimize(case.graph, opt_level=2)
    assert not report.changed, [r.name for r in report.results if r.changed]
    assert str(case.graph) == text
    assert all(a is b for a, b in zip(case.graph.nodes, nodes))
