"""``constant_fold``: a pure op whose operands are all constants becomes a constant, computed by
the op's own reference in float64 and stored in float64 (typed f32 like every weight)::

    before: %w0: f32[3,3,2,4] = constant
            %w1: f32[4] = constant
            %w2: f32[4] = constant
            %0: f32[4] = mul(%w1, %w2)
            %1: f32[N,6,6,4] = conv2d(%x, %w0, %0) {...}
    after:  %w0: f32[3,3,2,4] = constant
            %w3: f32[4] = constant          # w1 * w2, float64
            %1: f32[N,6,6,4] = conv2d(%x, %w0, %w3) {...}
"""

from __future__ import annotations

import numpy as np

from cnnc.ops.registry import get_op
from cnnc.passes.manager import Pass
from cnnc.passes.rewrite import Rule, apply_rules

#: results larger than this many elements stay computed (folding must not bloat the weights)
MAX_FOLD_ELEMENTS = 1 << 24


def fold_constant(node, rw):
    if node.op == "constant" or not node.inputs or "pure" not in get_op(node.op).traits:
        return None
    if not all(v.is_constant for v in node.inputs) or not node.output.type.is_static:
        return None
    if int(np.prod(node.output.type.shape, dtype=np.int64)) > MAX_FOLD_ELEMENTS:
        return None
    args = [np.asarray(v.data, np.float64) if v.data.dtype.kind == "f" else v.data
            for v in node.inputs]
    y = np.asarray(get_op(node.op).evaluate(args, dict(node.attrs)))
    want = "float32" if y.dtype.kind == "f" else "int64" if y.dtype.kind in "iu" else None
    if tuple(y.shape) != node.output.type.shape or want != node.output.type.dtype:
        return None  # e.g. an integer result typed f32: keep the op
    c = rw.constant(y.astype(np.float64) if y.dtype.kind == "f" else y, before=node,
                    layer=node.layer)
    rw.replace(node.output, c)
    rw.erase(node)
    rw.erase_dead(node.inputs)
    return True


RULES = [Rule("fold_constant", (), fold_constant)]


class ConstantFold(Pass):
    name = "constant_fold"

    def run(self, graph, ctx) -> bool:
        return apply_rules(graph, RULES, ctx, self.name)
