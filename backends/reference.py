"""The NumPy reference interpreter: every node through its registry reference. The oracle."""

from __future__ import annotations

import numpy as np

from cnnc.backends.base import CompiledModel, prepare_inputs
from cnnc.errors import CnncError
from cnnc.ops.registry import get_op


def evaluate(graph, inputs, dtype=np.float64, trace: dict | None = None) -> list[np.ndarray]:
    """Run ``graph`` on ``inputs`` (already validated) with every float in ``dtype``.

    ``trace``, when given, receives every value's array keyed by value name."""
    dtype = np.dtype(dtype)
    env = {id(v): np.asarray(x, dtype=dtype) for v, x in zip(graph.inputs, inputs)}
    for node in graph.nodes:
        if node.op == "constant":
            data = node.data
            env[id(node.output)] = data.astype(dtype) if data.dtype.kind == "f" else data
            continue
        args = [env[id(v)] for v in node.inputs]
        try:
            y = get_op(node.op).evaluate(args, dict(node.attrs))
        except CnncError:
            raise
        except Exception as e:  # an op's reference must never leak a raw NumPy error
            raise CnncError(f"{node.describe()} failed in the reference: {e}") from e
        y = np.asarray(y)
        if y.dtype.kind == "f" and y.dtype != dtype:
            y = y.astype(dtype)
        env[id(node.output)] = y
        if trace is not None:
            trace[node.output.name] = y
    return [env[id(v)] for v in graph.outputs]


def run_reference(graph, *xs, dtype=np.float64):
    """Validate ``xs`` like a compiled model does, then evaluate in ``dtype``."""
    arrays, _ = prepare_inputs(graph, xs, dtype=dtype)
    outs = evaluate(graph, arrays, dtype)
    return outs[0] if len(outs) == 1 else tuple(outs)


class ReferenceModel(CompiledModel):
    target = "numpy"

    def __init__(self, graph, report=None, dtype=np.float32):
        super().__init__(graph, report)
        self.dtype = np.dtype(dtype)

    def run(self, arrays, bindings):
        # np.asarray keeps a 0-d result 0-d (ascontiguousarray makes it 1-d)
        return [np.asarray(y, dtype=np.float32, order="C")
                for y in evaluate(self.graph, arrays, self.dtype)]
