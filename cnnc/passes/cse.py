"""``cse``: nodes with the same op, the same operands and the same attributes compute the same
value; later ones read the first instead. Constants with identical bytes (dtype and shape
included) are merged too::

    before: %w0: f32[4] = constant          # same bytes as %w1
            %w1: f32[4] = constant
            %0: f32[N,4] = bias_add(%x, %w0)
            %1: f32[N,4] = bias_add(%x, %w1)
            %2: f32[N,4] = add(%0, %1)
    after:  %w0: f32[4] = constant
            %0: f32[N,4] = bias_add(%x, %w0)
            %2: f32[N,4] = add(%0, %0)

One walk in schedule order reaches the fixed point: by the time a node is keyed, its operands
are already canonical.
"""

from __future__ import annotations

from cnnc.ops.registry import get_op
from cnnc.passes.manager import Pass
from cnnc.passes.rewrite import Rewriter


def node_key(node):
    """A hashable identity of what ``node`` computes, or None when it must not be merged."""
    if node.op == "constant":
        d = node.data
        return ("constant", node.output.type, d.dtype.str, d.shape, d.tobytes())
    if "pure" not in get_op(node.op).traits:
        return None
    key = (node.op, tuple(id(v) for v in node.inputs), tuple(node.attrs.items()))
    try:
        hash(key)
    except TypeError:
        return None
    return key


class CSE(Pass):
    name = "cse"

    def run(self, graph, ctx) -> bool:
        rw = Rewriter(graph, ctx, self.name)
        seen: dict = {}
        for node in graph.nodes:
            key = node_key(node)
            if key is None:
                continue
            first = seen.setdefault(key, node)
            if first is node:
                continue
            rw.replace(node.output, first.output)
            rw.erase(node)
        return rw.changed
