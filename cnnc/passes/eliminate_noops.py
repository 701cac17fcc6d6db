"""``eliminate_noops``: ops that return their operand unchanged are bypassed and erased.

identity, dropout (inference), reshape/flatten to the same shape, transpose by the identity
permutation and a pad of zero width::

    before: %1: f32[N,4,4,3] = dropout(%0) {rate=0.5}
            %2: f32[N,4,4,3] = reshape(%1) {shape=[-1,4,4,3]}
            %3: f32[N,4,4,3] = relu(%2)
    after:  %3: f32[N,4,4,3] = relu(%0)

A no-op is kept when its result is a graph output and its operand is a graph input or a
constant (a backend then always has a computed value to return).
"""

from __future__ import annotations

from cnnc.passes.manager import Pass
from cnnc.passes.rewrite import Rule, apply_rules

SHAPE_OPS = ("reshape", "flatten", "transpose", "pad")


def _is_noop(node) -> bool:
    if "no_op" in _traits(node.op):
        return True
    x, y = node.inputs[0], node.output
    if x.type != y.type:
        return False
    if node.op in ("reshape", "flatten"):
        return True
    if node.op == "transpose":
        return tuple(node.attrs["perm"]) == tuple(range(x.type.rank))
    if node.op == "pad":
        return all(a == 0 and b == 0 for a, b in node.attrs["pads"])
    return False


def _traits(op: str):
    from cnnc.ops.registry import get_op
    return get_op(op).traits


def bypass_noop(node, rw):
    if len(node.inputs) != 1 or not _is_noop(node):
        return None
    return rw.bypass(node, node.inputs[0])


RULES = [Rule("bypass_noop", ("identity", "dropout", *SHAPE_OPS), bypass_noop)]


class EliminateNoops(Pass):
    name = "eliminate_noops"

    def run(self, graph, ctx) -> bool:
        return apply_rules(graph, RULES, ctx, self.name)
