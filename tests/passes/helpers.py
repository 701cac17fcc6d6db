"""Small shared helpers for the pass tests: run one pass, compare in float64."""

from __future__ import annotations

import numpy as np

from cnnc.backends.reference import run_reference
from cnnc.ir import verify
from cnnc.passes.manager import PassContext

RTOL = 1e-9  # float64 end to end


def run_pass(graph, pass_cls):
    """Run one pass; returns (changed, remarks as (pass, node, message) tuples)."""
    ctx = PassContext()
    changed = pass_cls().run(graph, ctx)
    verify(graph, pass_cls.name)
    return changed, [r.as_tuple() for r in ctx.remarks]


def check_same(graph, fn, *xs):
    """``fn(graph)`` must not change what the graph computes (float64, relative 1e-9)."""
    want = _outputs(graph, xs)
    out = fn(graph)
    for a, b in zip(_outputs(graph, xs), want, strict=True):
        finite = np.abs(b[np.isfinite(b)])
        scale = max(1.0, float(finite.max(initial=0.0)))
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * scale)
    return out


def _outputs(graph, xs):
    y = run_reference(graph, *xs, dtype=np.float64)
    return list(y) if isinstance(y, tuple) else [y]


def ops(graph):
    return [n.op for n in graph.ops]


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)
