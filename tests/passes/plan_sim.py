"""Run a graph through its :class:`BufferPlan`: every value is written into (or, for a view,
read from) its assigned buffer, in float64. A wrong reuse overwrites a value that is still
needed and the outputs stop matching the reference."""

from __future__ import annotations

import numpy as np

from cnnc.ops.registry import get_op
from cnnc.passes.memory_plan import VIEW_OPS


def simulate(graph, plan, xs) -> list[np.ndarray]:
    bindings = {"N": xs[0].shape[0]}
    arena = [np.full(n, np.nan) for n in plan.buffer_elements(bindings)]
    inputs = {id(v): np.asarray(x, np.float64) for v, x in zip(graph.inputs, xs)}

    def read(v):
        if id(v) in inputs:
            return inputs[id(v)]
        if v.is_constant:
            return np.asarray(v.data, np.float64)
        b = plan.buffer_of[v.name]
        shape = v.type.concrete(bindings)
        if b == -1:  # a view of a graph input
            base = v
            while id(base) not in inputs:
                base = base.producer.inputs[0]
            return inputs[id(base)].reshape(shape)
        return arena[b][:int(np.prod(shape))].reshape(shape)

    for node in plan.schedule:
        if node.op in VIEW_OPS and not node.inputs[0].is_constant:
            b = plan.buffer_of[node.output.name]
            src = node.inputs[0]
            assert b == (plan.buffer_of.get(src.name, -1) if src.producer else -1), \
                f"view {node.describe()} does not alias its operand"
            continue
        y = get_op(node.op).evaluate([read(v) for v in node.inputs], dict(node.attrs))
        y = np.asarray(y, np.float64)
        b = plan.buffer_of[node.output.name]
        assert b >= 0
        arena[b][:y.size] = y.reshape(-1)
    return [read(v).copy() for v in graph.outputs]
