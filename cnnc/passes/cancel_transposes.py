"""``cancel_transposes``: a transpose of a transpose that composes to the identity is bypassed.

``transpose(transpose(x, p), q)`` reads axis ``p[q[i]]`` of ``x`` at position ``i``; when that is
the identity permutation the pair cancels and every reader of the outer transpose reads ``x``::

    before: %0: f32[N,3,8,8] = transpose(%x) {perm=[0,3,1,2]}
            %1: f32[N,8,8,3] = transpose(%0) {perm=[0,2,3,1]}
            %2: f32[N,8,8,4] = conv2d(%1, %w0) {...}
    after:  %2: f32[N,8,8,4] = conv2d(%x, %w0) {...}

The inner transpose is erased when nothing else reads it; a pair that does not compose to the
identity is left as it is. The pair is kept when the outer result is a graph output and ``x``
is a graph input or a constant (a backend then always has a computed value to return).
"""

from __future__ import annotations

from cnnc.passes.manager import Pass
from cnnc.passes.rewrite import Rule, apply_rules


def compose(inner, outer) -> tuple[int, ...]:
    """The single permutation equal to ``transpose(transpose(x, inner), outer)``."""
    return tuple(inner[i] for i in outer)


def cancel_pair(node, rw):
    inner = node.inputs[0].producer
    if inner is None or inner.op != "transpose":
        return None
    perm = compose(inner.attrs["perm"], node.attrs["perm"])
    if perm != tuple(range(len(perm))):
        return None
    if rw.bypass(node, inner.inputs[0]) is None:
        return None
    rw.erase_dead([inner.output])
    return True


RULES = [Rule("cancel_transpose_pair", ("transpose",), cancel_pair)]


class CancelTransposes(Pass):
    name = "cancel_transposes"

    def run(self, graph, ctx) -> bool:
        return apply_rules(graph, RULES, ctx, self.name)
