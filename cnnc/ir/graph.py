"""The graph IR: an ordered list of nodes over SSA values, with inputs and outputs.

The node list is the source of truth (operand order matters: ``conv2d(x, w, b)``); the
networkx view (:meth:`Graph.to_networkx`) is derived from it for analyses. ``graph.nodes``
is a stable topological order (ties keep insertion order). :meth:`Graph.add` validates the
attributes and runs the op's shape rule, so every value always has a type.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Iterable, Mapping

import networkx as nx
import numpy as np

from cnnc.errors import ConfigError, DTypeError, ShapeError, VerificationError
from cnnc.ir.node import Node, Value
from cnnc.ir.types import TensorType


class Graph:
    def __init__(self, name: str = "graph"):
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self._nodes: list[Node] = []
        self._ids = itertools.count()
        self._const_ids = itertools.count()
        self._order: list[Node] | None = None

    # ---- building -------------------------------------------------------------------------
    def add_input(self, shape, dtype: str = "float32", name: str | None = None) -> Value:
        name = name or f"in{len(self.inputs)}"
        if any(v.name == name for v in self.inputs):
            raise ConfigError(f"graph {self.name!r} already has an input named {name!r}")
        v = Value(name, TensorType(tuple(shape), dtype))
        self.inputs.append(v)
        return v

    def constant(self, array, name: str | None = None, layer: str | None = None,
                 before: Node | None = None) -> Value:
        """A weight: a read-only array owned by a ``constant`` node.

        Float data is typed ``f32`` (the compute dtype of every backend) but keeps float64
        precision when given in float64 (folded weights), so the float64 reference stays exact.
        """
        arr = np.array(array, copy=True)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float64 if arr.dtype == np.float64 else np.float32)
            dtype = "float32"
        elif arr.dtype.kind in "iu":
            arr, dtype = arr.astype(np.int64), "int64"
        elif arr.dtype.kind == "b":
            dtype = "bool"
        else:
            raise DTypeError(f"constant {name or ''} must be numeric or bool, got dtype {arr.dtype}")
        arr.setflags(write=False)
        v = Value(name or f"w{next(self._const_ids)}", TensorType(arr.shape, dtype))
        node = Node("constant", (), v, data=arr, layer=layer)
        v.producer = node
        self._insert(node, before)
        return v

    def add(self, op: str, inputs: Iterable[Value], attrs: Mapping[str, Any] | None = None,
            layer: str | None = None, before: Node | None = None) -> Value:
        """Append ``op(inputs) {attrs}``; returns its result value, already typed."""
        from cnnc.ops.registry import get_op
        opdef = get_op(op)
        inputs = tuple(inputs)
        for i, v in enumerate(inputs):
            if not isinstance(v, Value):
                raise ConfigError(f"operand {i} of {op} must be a Value, got {type(v).__name__}")
        where = f"{op}" + (f" (layer {layer!r})" if layer else "")
        full_attrs = opdef.check_attrs(attrs or {}, where)
        opdef.check_arity(len(inputs), where)
        out_type = opdef.infer([v.type for v in inputs], full_attrs, where)
        v = Value(str(next(self._ids)), out_type)
        node = Node(op, inputs, v, full_attrs, layer=layer)
        v.producer = node
        self._insert(node, before)
        return v

    def set_outputs(self, *values: Value) -> None:
        self.outputs = list(values)
        self._order = None

    def _insert(self, node: Node, before: Node | None) -> None:
        if before is None:
            self._nodes.append(node)
        else:
            self._nodes.insert(self._nodes.index(before), node)
        self._order = None

    # ---- mutation (used by the rewriter) ---------------------------------------------------
    def replace_uses(self, old: Value, new: Value) -> None:
        """Every use of ``old`` (operands and graph outputs) becomes ``new``, except in the node
        that defines ``new`` (``y = relu(x); replace_uses(x, y)`` must not make relu read y)."""
        if old.type.shape != new.type.shape:
            raise ShapeError(f"cannot replace %{old.name}: {old.type} by %{new.name}: {new.type}")
        for node in self._nodes:
            if node is not new.producer and any(v is old for v in node.inputs):
                node.inputs = tuple(new if v is old else v for v in node.inputs)
        self.outputs = [new if v is old else v for v in self.outputs]
        self._order = None

    def remove(self, node: Node) -> None:
        self._nodes.remove(node)
        self._order = None

    def renumber(self) -> None:
        """Give computed values consecutive names in schedule order (inputs keep theirs)."""
        order = self.nodes
        consts = [n for n in order if n.op == "constant"]
        for i, n in enumerate(consts):
            n.output.name = f"w{i}"
        others = [n for n in order if n.op != "constant"]
        for i, n in enumerate(others):
            n.output.name = str(i)
        self._ids = itertools.count(len(others))
        self._const_ids = itertools.count(len(consts))

    # ---- queries ---------------------------------------------------------------------------
    @property
    def nodes(self) -> list[Node]:
        """All nodes (constants included) in a stable topological order."""
        if self._order is None:
            self._order = _stable_toposort(self._nodes)
        return list(self._order)

    @property
    def ops(self) -> list[Node]:
        """The computing nodes (no constants), in schedule order."""
        return [n for n in self.nodes if n.op != "constant"]

    def users(self) -> dict[Value, list[Node]]:
        """The use map: value -> nodes that read it (a node reading a value twice counts once)."""
        uses: dict[Value, list[Node]] = {}
        for node in self.nodes:
            for v in dict.fromkeys(node.inputs):
                uses.setdefault(v, []).append(node)
        return uses

    def num_uses(self, value: Value) -> int:
        """Readers of ``value``, counting a graph output as one more reader."""
        n = sum(1 for node in self._nodes if any(v is value for v in node.inputs))
        return n + sum(1 for v in self.outputs if v is value)

    def to_networkx(self) -> nx.DiGraph:
        """A DiGraph of nodes (keyed by result name) with an edge per def-use pair.

        Each edge holds ``operand`` (the first operand index reading the value) and
        ``operands`` (all of them, for a value read more than once)."""
        g = nx.DiGraph()
        for node in self._nodes:
            g.add_node(node.output.name, node=node)
        for node in self._nodes:
            for i, v in enumerate(node.inputs):
                if v.producer is None:
                    continue
                src, dst = v.producer.output.name, node.output.name
                if g.has_edge(src, dst):  # the same value read twice: keep every index
                    g.edges[src, dst]["operands"] += (i,)
                else:
                    g.add_edge(src, dst, operand=i, operands=(i,))
        return g

    def copy(self) -> "Graph":
        """A structural copy; constant arrays are shared (they are read-only)."""
        g = Graph(self.name)
        vmap: dict[Value, Value] = {}
        for v in self.inputs:
            vmap[v] = Value(v.name, v.type)
            g.inputs.append(vmap[v])
        for node in self.nodes:
            out = Value(node.output.name, node.output.type)
            n2 = Node(node.op, [vmap[v] for v in node.inputs], out, node.attrs, node.data, node.layer)
            out.producer = n2
            vmap[node.output] = out
            g._nodes.append(n2)
        g.outputs = [vmap[v] for v in self.outputs]
        g._ids = itertools.count(max((int(n.output.name) for n in g._nodes
                                      if n.output.name.isdigit()), default=-1) + 1)
        g._const_ids = itertools.count(max((int(n.output.name[1:]) for n in g._nodes
                                            if re.fullmatch(r"w\d+", n.output.name)),
                                           default=-1) + 1)
        return g

    def constants(self) -> dict[str, np.ndarray]:
        return {n.output.name: n.data for n in self.nodes if n.op == "constant"}

    def __str__(self) -> str:
        from cnnc.ir.printer import format_graph
        return format_graph(self)

    def __repr__(self) -> str:
        return f"<Graph {self.name!r}: {len(self.ops)} ops, {len(self._nodes)} nodes>"


def _stable_toposort(nodes: list[Node]) -> list[Node]:
    """Kahn's algorithm picking the earliest-inserted ready node; raises on a cycle."""
    import heapq
    index = {id(n): i for i, n in enumerate(nodes)}
    known = {id(n) for n in nodes}
    deps: dict[int, int] = {}
    readers: dict[int, list[Node]] = {}
    for n in nodes:
        producers = {id(v.producer) for v in n.inputs
                     if v.producer is not None and id(v.producer) in known}
        deps[id(n)] = len(producers)
        for p in producers:
            readers.setdefault(p, []).append(n)
    heap = [(index[id(n)], n) for n in nodes if deps[id(n)] == 0]
    heapq.heapify(heap)
    out: list[Node] = []
    while heap:
        _, n = heapq.heappop(heap)
        out.append(n)
        for r in readers.get(id(n), ()):
            deps[id(r)] -= 1
            if deps[id(r)] == 0:
                heapq.heappush(heap, (index[id(r)], r))
    if len(out) != len(nodes):
        stuck = [n for n in nodes if deps[id(n)] > 0]
        raise VerificationError(f"graph has a cycle through {stuck[0].describe()}")
    return out
