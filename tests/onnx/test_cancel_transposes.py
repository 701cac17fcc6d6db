"""cancel_transposes: transpose pairs composing to the identity are bypassed; anything else is
left exactly as it was (the pass then reports no change)."""

from __future__ import annotations

import numpy as np

from cnnc.backends.reference import run_reference
from cnnc.ir import Graph, verify
from cnnc.passes.cancel_transposes import CancelTransposes, compose
from cnnc.passes.manager import PassContext

RNG = np.random.default_rng(3)


def run(graph):
    changed = CancelTransposes().run(graph, PassContext())
    verify(graph, "cancel_transposes")
    return changed


def ops(graph):
    return [n.op for n in graph.ops]


def chain(perms, extra_reader=False, out_shape=(2, 3, 4, 5)):
    g = Graph("t")
    x = g.add_input(("N", *out_shape[1:]), name="x")
    v, first = x, None
    for p in perms:
        v = g.add("transpose", [v], {"perm": p})
        first = first or v
    y = g.add("relu", [v])
    outs = [y, g.add("sigmoid", [first])] if extra_reader else [y]
    g.set_outputs(*outs)
    return g


def _outputs(graph, x):
    y = run_reference(graph, x)
    return list(y) if isinstance(y, tuple) else [y]


def _same(graph, fn):
    """``fn(graph)`` must not change what the graph computes (float64)."""
    x = RNG.standard_normal((2, 3, 4, 5))
    before = _outputs(graph, x)
    out = fn(graph)
    for a, b in zip(_outputs(graph, x), before, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    return out


def test_compose():
    assert compose((0, 2, 3, 1), (0, 3, 1, 2)) == (0, 1, 2, 3)
    x = RNG.standard_normal((2, 3, 4, 5))
    p, q = (2, 0, 3, 1), (1, 3, 0, 2)
    np.testing.assert_array_equal(x.transpose(p).transpose(q), x.transpose(compose(p, q)))


def test_cancelling_pair_is_removed():
    g = chain([(0, 2, 3, 1), (0, 3, 1, 2)])
    assert _same(g, run)
    assert ops(g) == ["relu"]
    assert g.ops[0].inputs[0] is g.inputs[0]


def test_pair_with_another_reader_keeps_the_inner_transpose():
    g = chain([(0, 2, 3, 1), (0, 3, 1, 2)], extra_reader=True)
    assert _same(g, run)
    assert ops(g) == ["transpose", "relu", "sigmoid"]
    assert [n for n in g.ops if n.op == "relu"][0].inputs[0] is g.inputs[0]


def test_three_in_a_row_leave_one():
    g = chain([(0, 2, 3, 1), (0, 3, 1, 2), (0, 2, 3, 1)])
    assert _same(g, run)
    assert ops(g) == ["transpose", "relu"]
    assert g.ops[0].attrs["perm"] == (0, 2, 3, 1)


def test_non_cancelling_pair_is_untouched():
    g = chain([(0, 2, 3, 1), (0, 2, 3, 1)])
    text = str(g)
    assert not run(g)
    assert str(g) == text


def test_single_transpose_is_untouched():
    g = chain([(0, 3, 1, 2)])
    text = str(g)
    assert not run(g)
    assert str(g) == text


def test_output_equal_to_input_is_kept():
    g = Graph("t")
    x = g.add_input(("N", 3, 4, 5), name="x")
    t = g.add("transpose", [x], {"perm": (0, 2, 3, 1)})
    g.set_outputs(g.add("transpose", [t], {"perm": (0, 3, 1, 2)}))
    text = str(g)
    assert not run(g)
    assert str(g) == text


def _nchw_residual_stream(blocks):
    """ConvNeXt's stage: each block's NHWC result is permuted to NCHW, scaled per channel
    (gamma of shape (C, 1, 1)) and added to an NCHW residual stream, which is permuted back to
    NHWC for the next block."""
    g = Graph("stream")
    x = g.add_input(("N", 4, 5, 3), name="x")
    to_nchw, to_nhwc = (0, 3, 1, 2), (0, 2, 3, 1)
    stream = g.add("transpose", [x], {"perm": to_nchw})
    nhwc = x
    for k in range(blocks):
        y = g.add("relu", [g.add("sub", [nhwc, g.constant(RNG.standard_normal(3))])])
        y = g.add("transpose", [y], {"perm": to_nchw})
        y = g.add("mul", [g.constant(RNG.standard_normal((3, 1, 1))), y])
        stream = g.add("add", [y, stream])
        nhwc = g.add("transpose", [stream], {"perm": to_nhwc})
    g.set_outputs(g.add("tanh", [nhwc]))
    return g


def test_elementwise_ops_between_inverse_transposes_move_and_the_transposes_cancel():
    g = _nchw_residual_stream(3)
    assert ops(g).count("transpose") == 7
    x = RNG.standard_normal((2, 4, 5, 3))
    before = run_reference(g, x)
    assert run(g)
    np.testing.assert_allclose(run_reference(g, x), before, rtol=1e-12)
    assert "transpose" not in ops(g)
    # each gamma now broadcasts over NHWC, the layout fusion reads as per channel
    assert all(n.inputs[0].type.shape == (1, 1, 1, 3) for n in g.ops if n.op == "mul")


def test_a_transpose_does_not_sink_when_nothing_below_undoes_it():
    g = Graph("t")
    x = g.add_input(("N", 4, 5, 3), name="x")
    y = g.add("mul", [g.add("transpose", [x], {"perm": (0, 3, 1, 2)}),
                      g.constant(RNG.standard_normal((3, 1, 1)))])
    g.set_outputs(g.add("transpose", [g.add("relu", [y])], {"perm": (0, 1, 3, 2)}))
    text = str(g)
    assert not run(g)
    assert str(g) == text
