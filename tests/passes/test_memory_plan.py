"""plan_memory: liveness, views, in-place reuse, outputs kept, simulated buffer by buffer."""

from __future__ import annotations

import numpy as np
import pytest

from cnnc.backends.reference import run_reference
from cnnc.ir import Graph
from cnnc.passes import optimize, plan_memory
from graphgen import random_case, resnet_like
from helpers import rand
from plan_sim import simulate


def chain():
    g = Graph("chain")
    x = g.add_input(("N", 4, 4, 2), name="x")
    a = g.add("relu", [x])           # cannot overwrite the input
    b = g.add("tanh", [a])           # in place over a
    c = g.add("reshape", [b], {"shape": (0, -1)})  # view of b
    d = g.add("sigmoid", [c])        # different shape from... same as c: in place over b
    e = g.add("flatten", [x])        # view of the input
    g.set_outputs(g.add("add", [d, e]))
    return g


def test_views_in_place_and_input_views():
    g = chain()
    p = plan_memory(g)
    bo = p.buffer_of
    assert [n.op for n in p.schedule] == ["relu", "tanh", "reshape", "sigmoid", "flatten", "add"]
    a, b, c, d, e, out = (n.output.name for n in p.schedule)
    assert bo[b] == bo[a] and p.in_place[b] == a
    assert bo[c] == bo[b] and bo[d] == bo[b]
    assert bo[e] == -1
    assert p.num_buffers == 1 and p.peak_bytes({"N": 2}) == 2 * 32 * 4
    assert p.naive_bytes({"N": 2}) == 2 * 32 * 4 * 6  # every value, views included
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 2))
    np.testing.assert_allclose(simulate(g, p, [x])[0], run_reference(g, x), rtol=1e-12)


def test_output_buffer_never_reused_and_value_read_later_survives():
    g = Graph("keep")
    x = g.add_input(("N", 8), name="x")
    a = g.add("relu", [x])
    b = g.add("tanh", [a])         # a is still read below: no in place
    c = g.add("sigmoid", [b])
    d = g.add("add", [c, a])
    e = g.add("relu", [d])
    g.set_outputs(b, e)
    p = plan_memory(g)
    names = {n.op + str(i): n.output.name for i, n in enumerate(p.schedule)}
    bo = p.buffer_of
    assert bo[names["tanh1"]] != bo[names["relu0"]]
    later = [n.output.name for n in p.schedule[2:]]
    assert all(bo[v] != bo[names["tanh1"]] for v in later)  # b is an output
    x = np.random.default_rng(1).standard_normal((3, 8))
    for got, want in zip(simulate(g, p, [x]), run_reference(g, x)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_fused_residual_reused_but_never_main_input():
    rng = np.random.default_rng(2)
    g = Graph("res")
    x = g.add_input(("N", 4, 4, 3), name="x")
    r = g.add("relu", [x])
    w, b = g.constant(rand(rng, 3, 3, 3, 3)), g.constant(rand(rng, 3))
    y = g.add("conv2d_fused", [r, w, b, r], {"padding": "same", "epilogue": ["add", "relu"]})
    s = g.add("tanh", [y])
    z = g.add("conv2d_fused", [s, w, b, g.constant(np.ones(3)), g.constant(np.zeros(3)), y],
              {"padding": "same", "epilogue": ["scale_shift", "relu", "add"]})
    g.set_outputs(z)
    p = plan_memory(g)
    bo = p.buffer_of
    assert bo[y.name] != bo[r.name]        # r is also the main input x of the conv
    assert p.in_place[z.name] == y.name and bo[z.name] == bo[y.name]
    xs = rng.standard_normal((2, 4, 4, 3))
    np.testing.assert_allclose(simulate(g, p, [xs])[0], run_reference(g, xs), rtol=1e-12)


def test_sizes_follow_bindings():
    g = resnet_like(blocks=3)
    optimize(g)
    p = plan_memory(g)
    e1, e8 = p.buffer_elements({"N": 1}), p.buffer_elements({"N": 8})
    assert all(b8 == 8 * b1 for b1, b8 in zip(e1, e8))
    assert p.peak_bytes({"N": 8}) <= p.naive_bytes({"N": 8})
    assert set(p.buffer_of) == {n.output.name for n in g.ops}


@pytest.mark.parametrize("seed", range(40))
def test_random_graph_plans_simulate_exactly(seed):
    case = random_case(seed, max_blocks=6)
    for optimized in (False, True):
        if optimized:
            optimize(case.graph)
        want = run_reference(case.graph, case.x)
        want = list(want) if isinstance(want, tuple) else [want]
        p = plan_memory(case.graph)
        got = simulate(case.graph, p, [case.x])
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        n = {"N": case.x.shape[0]}
        assert p.peak_bytes(n) <= p.naive_bytes(n)
