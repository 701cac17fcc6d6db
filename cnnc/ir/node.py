"""SSA values and nodes.

A :class:`Value` is defined once, by one node (or is a graph input); a :class:`Node` has an op
name, ordered operands, one result and frozen attributes. Constants are nodes whose op is
``"constant"`` and that hold a read-only NumPy array in ``node.data``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from cnnc.ir.types import TensorType


class Value:
    """An SSA tensor. ``name`` is its printed name (``%7``, ``%w3``, ``%x``)."""

    __slots__ = ("name", "type", "producer")

    def __init__(self, name: str, type: TensorType, producer: "Node | None" = None):
        self.name = name
        self.type = type
        self.producer = producer

    @property
    def shape(self):
        return self.type.shape

    @property
    def is_constant(self) -> bool:
        return self.producer is not None and self.producer.op == "constant"

    @property
    def data(self) -> np.ndarray | None:
        """The array of a constant value, else None."""
        return self.producer.data if self.is_constant else None

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


def freeze_attr(v: Any):
    """Attribute values become hashable: lists/tuples to tuples (recursively), numpy scalars to
    Python scalars."""
    if isinstance(v, (list, tuple)):
        return tuple(freeze_attr(x) for x in v)
    if isinstance(v, np.generic):
        return v.item()
    return v


class Node:
    """One operation: ``%out = op(%in0, %in1, ...) {attrs}``."""

    __slots__ = ("op", "inputs", "output", "attrs", "data", "layer")

    def __init__(self, op: str, inputs, output: Value, attrs: Mapping[str, Any] | None = None,
                 data: np.ndarray | None = None, layer: str | None = None):
        self.op = op
        self.inputs: tuple[Value, ...] = tuple(inputs)
        self.output = output
        self.attrs = MappingProxyType({k: freeze_attr(v) for k, v in dict(attrs or {}).items()})
        self.data = data
        self.layer = layer  # front-end layer that emitted this node, for messages

    @property
    def outputs(self) -> tuple[Value, ...]:
        return (self.output,)

    @property
    def name(self) -> str:
        return self.output.name

    def describe(self) -> str:
        """How error messages name this node: ``node %7 (conv2d, layer 'conv2d_1')``."""
        layer = f", layer {self.layer!r}" if self.layer else ""
        return f"node %{self.output.name} ({self.op}{layer})"

    def __repr__(self) -> str:
        from cnnc.ir.printer import format_node
        return format_node(self)
