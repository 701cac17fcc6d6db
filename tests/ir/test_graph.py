"""Graph building and mutation: topological order, the networkx view, copy, replace_uses,
remove, renumber, symbolic batch dims."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnc.backends.reference import run_reference
from cnnc.errors import ConfigError, DTypeError, ShapeError, VerificationError
from cnnc.ir import Graph, verify
from strategies import rng_array


def small_graph() -> Graph:
    g = Graph("small")
    x = g.add_input(("N", 6, 6, 2), name="x")
    w = g.constant(rng_array(1, (3, 3, 2, 4)))
    b = g.constant(rng_array(2, (4,)))
    c = g.add("conv2d", [x, w, b], {"padding": "same"})
    r = g.add("relu", [c])
    p = g.add("max_pool2d", [r])
    s = g.add("add", [p, p])
    f = g.add("flatten", [s])
    g.set_outputs(f)
    return g


@st.composite
def random_dags(draw):
    """Elementwise DAGs of 1..12 ops over two inputs, each inserted at a random position
    (``before=``), so insertion order need not be topological."""
    g = Graph("dag")
    values = [g.add_input((2, 3), name="a"), g.add_input((2, 3), name="b")]
    for _ in range(draw(st.integers(1, 12))):
        op = draw(st.sampled_from(["add", "mul", "sub", "relu", "tanh"]))
        arity = 1 if op in ("relu", "tanh") else 2
        args = [draw(st.sampled_from(values)) for _ in range(arity)]
        before = None
        if g._nodes and draw(st.booleans()):
            before = draw(st.sampled_from(g._nodes))
        values.append(g.add(op, args, before=before))
    g.set_outputs(values[-1])
    return g


@settings(deadline=None, max_examples=50)
@given(random_dags())
def test_nodes_are_topological_and_stable(g):
    order = g.nodes
    pos = {id(n): i for i, n in enumerate(order)}
    for n in order:
        for v in n.inputs:
            if v.producer is not None:
                assert pos[id(v.producer)] < pos[id(n)]
    assert [id(n) for n in g.nodes] == [id(n) for n in order]  # repeatable
    # stable: at every step the earliest-inserted node whose operands are all ready comes next
    inserted = {id(n): i for i, n in enumerate(g._nodes)}
    done: set[int] = set()
    for n in order:
        ready = [m for m in g._nodes if id(m) not in done
                 and all(v.producer is None or id(v.producer) in done for v in m.inputs)]
        assert inserted[id(n)] == min(inserted[id(m)] for m in ready)
        done.add(id(n))
    verify(g)


def test_nodes_keep_insertion_order_when_it_is_topological():
    g = small_graph()
    assert g.nodes == g._nodes
    assert [n.op for n in g.ops] == ["conv2d", "relu", "max_pool2d", "add", "flatten"]


def test_insert_before_is_reordered_after_its_operands():
    g = Graph()
    x = g.add_input((2, 2))
    r = g.add("relu", [x])
    t = g.add("tanh", [r], before=r.producer)  # inserted first, but reads %0
    g.set_outputs(t)
    assert [n.op for n in g.nodes] == ["relu", "tanh"]
    verify(g)


@settings(deadline=None, max_examples=30)
@given(random_dags())
def test_networkx_edges_match_operands(g):
    nxg = g.to_networkx()
    assert set(nxg.nodes) == {n.output.name for n in g.nodes}
    want = {}
    for n in g.nodes:
        for i, v in enumerate(n.inputs):
            if v.producer is not None:
                want.setdefault((v.producer.output.name, n.output.name), []).append(i)
    assert set(nxg.edges) == set(want)
    for (u, v), idx in want.items():
        assert nxg.edges[u, v]["operands"] == tuple(idx)
        assert nxg.edges[u, v]["operand"] == idx[0]


def test_networkx_keeps_both_operands_of_a_value_read_twice():
    g = small_graph()
    nxg = g.to_networkx()
    p, s = g.ops[2], g.ops[3]
    assert nxg.edges[p.name, s.name]["operands"] == (0, 1)
    conv = g.ops[0]
    assert nxg.edges["w1", conv.name]["operand"] == 2  # the bias: operand order is kept


def test_copy_is_independent():
    g = small_graph()
    before = str(g)
    g2 = g.copy()
    assert str(g2) == before
    verify(g2)
    x = rng_array(3, (2, 6, 6, 2))
    np.testing.assert_array_equal(run_reference(g, x), run_reference(g2, x))
    # mutate the copy every way there is
    t = g2.add("tanh", [g2.outputs[0]])
    g2.set_outputs(t)
    relu = g2.ops[1]
    g2.replace_uses(relu.output, relu.inputs[0])
    g2.remove(relu)
    g2.nodes[0].output.name = "renamed"
    g2.renumber()
    w = g2.constant(rng_array(4, (3,)))
    assert str(g) == before
    verify(g)
    verify(g2)
    assert w.name not in {n.output.name for n in g2.nodes if n is not w.producer}


def test_copy_then_constant_gets_a_fresh_name():
    g = Graph()
    x = g.add_input((2, 3))
    ws = [g.constant(rng_array(i, (3, 3))) for i in range(3)]
    y = g.add("dense", [x, ws[2]])
    g.set_outputs(y)
    g.remove(ws[1].producer)
    g2 = g.copy()
    w = g2.constant(rng_array(9, (3,)))
    y2 = g2.add("bias_add", [g2.outputs[0], w])
    g2.set_outputs(y2)
    verify(g2)  # no two values named alike
    z = g2.add("relu", [y2])
    assert z.name not in {n.output.name for n in g2.nodes if n is not z.producer}


def test_replace_uses_rewrites_operands_and_outputs():
    g = small_graph()
    conv, relu, pool = g.ops[:3]
    t = g.add("tanh", [conv.output], before=relu)
    g.replace_uses(relu.output, t)
    assert pool.inputs == (t,)
    assert g.num_uses(relu.output) == 0
    g.remove(relu)
    verify(g)
    x = rng_array(5, (1, 6, 6, 2))
    c = run_reference(_prefix(g, conv.output), x)
    want = np.tanh(c)
    pooled = want.reshape(1, 3, 2, 3, 2, 4).max(axis=(2, 4))
    np.testing.assert_allclose(run_reference(g, x), (2 * pooled).reshape(1, -1), rtol=1e-12)
    # graph outputs are uses too; the new value's own node keeps reading the old one
    old = g.outputs[0]
    r = g.add("relu", [old])
    g.replace_uses(old, r)
    assert g.outputs == [r] and r.producer.inputs == (old,)
    verify(g)
    with pytest.raises(ShapeError, match="cannot replace"):
        g.replace_uses(conv.output, g.inputs[0])


def _prefix(g, value):
    h = g.copy()
    name = value.name
    h.set_outputs(next(n.output for n in h.nodes if n.output.name == name))
    return h


def test_remove_leaves_dangling_uses_for_the_verifier():
    g = small_graph()
    relu = g.ops[1]
    g.remove(relu)
    with pytest.raises(VerificationError, match=r"node %2 \(max_pool2d\).*%1 is not defined"):
        verify(g)


def test_renumber_after_removals():
    g = small_graph()
    x = rng_array(6, (2, 6, 6, 2))
    want = run_reference(g, x)
    relu = g.ops[1]
    g.replace_uses(relu.output, relu.inputs[0])
    g.remove(relu)
    want_no_relu = run_reference(g, x)
    g.renumber()
    verify(g)
    assert [n.name for n in g.ops] == ["0", "1", "2", "3"]
    assert [n.name for n in g.nodes if n.op == "constant"] == ["w0", "w1"]
    np.testing.assert_array_equal(run_reference(g, x), want_no_relu)
    assert not np.array_equal(want, want_no_relu)
    assert g.add("relu", [g.outputs[0]]).name == "4"
    assert g.constant(np.ones(2) * 3).name == "w2"


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_symbolic_batch_through_flatten_and_reshape(batch):
    g = Graph()
    x = g.add_input(("N", 4, 4, 3))
    f = g.add("flatten", [x])
    r = g.add("reshape", [f], {"shape": (0, 4, -1)})
    back = g.add("reshape", [r], {"shape": (-1, 4, 4, 3)})
    g.set_outputs(r, back)
    assert f.type.shape == ("N", 48) and r.type.shape == ("N", 4, 12)
    assert back.type.shape == ("N", 4, 4, 3)
    verify(g)
    a = rng_array(batch, (batch, 4, 4, 3))
    yr, yb = run_reference(g, a)
    assert yr.shape == (batch, 4, 12)
    np.testing.assert_array_equal(yb, a)


def test_users_and_num_uses():
    g = small_graph()
    pool, add = g.ops[2], g.ops[3]
    assert g.users()[pool.output] == [add]  # a node reading twice counts once
    assert g.num_uses(pool.output) == 1  # readers, not operand slots
    assert g.num_uses(g.outputs[0]) == 1
    assert repr(g) == "<Graph 'small': 5 ops, 7 nodes>"


def test_builder_errors():
    g = Graph("b")
    g.add_input((2,), name="x")
    with pytest.raises(ConfigError, match="graph 'b' already has an input named 'x'"):
        g.add_input((3,), name="x")
    with pytest.raises(DTypeError, match="constant k must be numeric or bool, got dtype <U1"):
        g.constant(np.array(["a"]), name="k")
    assert g.constant(np.array([True, False])).type.dtype == "bool"
    w = g.constant(np.arange(3))
    assert w.type.dtype == "int64" and not w.data.flags.writeable
    w64 = g.constant(np.arange(3.0))
    assert w64.type.dtype == "float32" and w64.data.dtype == np.float64  # exact for folding
