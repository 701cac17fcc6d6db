"""``verify`` and ``infer_shapes``: the opt-level-0 pipeline.

``verify`` checks the IR's invariants and never changes the graph. ``infer_shapes`` re-runs every
op's shape rule in schedule order and brings result types up to date (a graph built through
:meth:`Graph.add` is already typed, so it normally reports no change)::

    before: %1: f32[N,8,8,4] = relu(%0)      # %0 is f32[N,6,6,4] after an edit upstream
    after:  %1: f32[N,6,6,4] = relu(%0)
"""

from __future__ import annotations

from cnnc.ir.verify import verify
from cnnc.ops.registry import get_op
from cnnc.passes.manager import Pass


class Verify(Pass):
    name = "verify"

    def run(self, graph, ctx) -> bool:
        verify(graph, "pass 'verify'")
        return False


class InferShapes(Pass):
    name = "infer_shapes"

    def run(self, graph, ctx) -> bool:
        changed = False
        for node in graph.ops:
            opdef = get_op(node.op)
            t = opdef.infer([v.type for v in node.inputs], dict(node.attrs), node.describe())
            if t != node.output.type:
                node.output.type = t
                changed = True
        return changed
