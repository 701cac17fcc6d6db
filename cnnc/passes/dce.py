"""``dce``: pure nodes (constants included) whose result nothing reads are erased::

    before: %w0: f32[4] = constant
            %0: f32[N,4] = relu(%x)
            %1: f32[N,4] = sigmoid(%x)
            return %0
    after:  %0: f32[N,4] = relu(%x)
            return %0

The rule runs over the schedule backwards, so a whole dead chain goes in one sweep.
"""

from __future__ import annotations

from cnnc.ops.registry import get_op
from cnnc.passes.manager import Pass
from cnnc.passes.rewrite import Rule, apply_rules


def erase_unused(node, rw):
    if node.op != "constant" and "pure" not in get_op(node.op).traits:
        return None
    if rw.num_uses(node.output):
        return None
    rw.erase(node)
    return True


RULES = [Rule("erase_unused", (), erase_unused)]


class DCE(Pass):
    name = "dce"

    def run(self, graph, ctx) -> bool:
        return apply_rules(graph, RULES, ctx, self.name, reverse=True)
