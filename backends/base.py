"""What every backend returns: a :class:`CompiledModel`, callable on NumPy arrays.

Inputs are validated here, before any kernel runs (kernels do no bounds checks): count,
array-ness, numeric dtype, rank, static dims and a consistent batch size; then they are cast
to float32 and made C-contiguous.
"""

from __future__ import annotations

import numpy as np

from cnnc.errors import DTypeError, ShapeError


def prepare_inputs(graph, xs, dtype=np.float32) -> tuple[list[np.ndarray], dict[str, int]]:
    """Validated, cast, contiguous inputs and the symbol bindings (e.g. ``{"N": 8}``)."""
    if len(xs) != len(graph.inputs):
        raise ShapeError(f"model {graph.name!r} takes {len(graph.inputs)} input(s) "
                         f"({', '.join(str(v.type) for v in graph.inputs)}), got {len(xs)}")
    bindings: dict[str, int] = {}
    out = []
    for x, v in zip(xs, graph.inputs):
        what = f"input %{v.name} of model {graph.name!r}"
        if not isinstance(x, np.ndarray):
            if not hasattr(x, "__array__") and not isinstance(x, (list, tuple)):
                raise DTypeError(f"{what} must be a NumPy array, got {type(x).__name__}")
            try:
                x = np.asarray(x)
            except (ValueError, TypeError) as e:
                raise DTypeError(f"{what} cannot be converted to an array: {e}") from None
        if x.dtype.kind not in "fiub" or x.dtype.kind == "b":
            raise DTypeError(f"{what} must have a numeric dtype, got {x.dtype}")
        want = v.type.shape
        if x.ndim != len(want):
            raise ShapeError(f"{what} expects rank {len(want)} {v.type}, got shape {x.shape}")
        for axis, (d, got) in enumerate(zip(want, x.shape)):
            if isinstance(d, str):
                if bindings.setdefault(d, got) != got:
                    raise ShapeError(f"{what}: dim {axis} ({d}) is {got} but another input "
                                     f"has {d}={bindings[d]}")
                if got < 1:
                    raise ShapeError(f"{what}: dim {axis} ({d}) must be >= 1, got {got}")
            elif d != got:
                raise ShapeError(f"{what} expects shape {v.type}, got {x.shape} "
                                 f"(dim {axis}: expected {d}, got {got})")
        out.append(np.ascontiguousarray(x, dtype=dtype))
    return out, bindings


class CompiledModel:
    """A graph compiled for one target. Call it on arrays of any batch size."""

    target = "abstract"

    def __init__(self, graph, report=None):
        self.graph = graph
        self.report = report  # the PipelineReport of the passes that produced ``graph``

    def __call__(self, *xs):
        arrays, bindings = prepare_inputs(self.graph, xs)
        outs = self.run(arrays, bindings)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def run(self, arrays: list[np.ndarray], bindings: dict[str, int]) -> list[np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__}.run")

    def source(self) -> str:
        """The program this model runs (for the reference: the IR)."""
        return str(self.graph)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.graph.name!r} target={self.target}>"
