"""``plan_memory``: liveness over the schedule -> a buffer per value, buffers reused.

An analysis, not a rewrite. Every non-constant, non-input value gets a buffer id:

* a buffer is free again once every reader of the value it holds (and of the views of that
  value) has run; the next value of the schedule may take it (best fit by size);
* a graph output keeps its buffer to the end (no value defined later shares it);
* view ops (flatten, reshape, identity, dropout) alias their operand's buffer; the operand
  then lives until the view's last reader. A view of a graph input gets buffer ``-1``;
* in place: an elementwise op whose result has operand 0's shape may write over operand 0 when
  that value dies at this node (and is neither an input nor a constant); a fused conv/dense with
  an ``add`` step may write over its residual operand when it dies there (never over its main
  input ``x``).

Sizes are symbolic (batch ``N``): :meth:`BufferPlan.buffer_elements` evaluates them for given
bindings; a buffer is as large as the largest value it ever holds.

    plan = plan_memory(graph)
    plan.peak_bytes({"N": 8}), plan.naive_bytes({"N": 8})
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cnnc.ir.node import Node, Value

VIEW_OPS = ("flatten", "reshape", "identity", "dropout")
ITEMSIZE = 4  # float32
NEVER = float("inf")


@dataclass
class BufferPlan:
    schedule: list[Node]
    buffer_of: dict[str, int]
    values: dict[str, Value] = field(default_factory=dict, repr=False)
    in_place: dict[str, str] = field(default_factory=dict)  # value -> operand it overwrote

    @property
    def num_buffers(self) -> int:
        return len({b for b in self.buffer_of.values() if b >= 0})

    def buffer_elements(self, bindings: dict[str, int]) -> list[int]:
        """Elements of each buffer (index = buffer id) for ``bindings`` such as {"N": 8}."""
        sizes = [0] * self.num_buffers
        for name, b in self.buffer_of.items():
            if b >= 0:
                sizes[b] = max(sizes[b], _elements(self.values[name], bindings))
        return sizes

    def peak_bytes(self, bindings: dict[str, int]) -> int:
        return sum(self.buffer_elements(bindings)) * ITEMSIZE

    def naive_bytes(self, bindings: dict[str, int]) -> int:
        """Without reuse: every value in its own buffer."""
        return sum(_elements(self.values[n], bindings) for n in self.buffer_of) * ITEMSIZE


def _elements(v: Value, bindings) -> int:
    return int(np.prod(v.type.concrete(bindings), dtype=np.int64))


def _size_key(v: Value) -> tuple[int, int]:
    """An order on symbolic sizes: (symbolic dims, static product) — N*k grows past any k."""
    syms = sum(1 for d in v.type.shape if isinstance(d, str))
    static = int(np.prod([d for d in v.type.shape if isinstance(d, int)], dtype=np.int64))
    return syms, static


def _is_view(node: Node) -> bool:
    return node.op in VIEW_OPS and not node.inputs[0].is_constant


def plan_memory(graph) -> BufferPlan:
    schedule = graph.ops
    step = {id(n): i for i, n in enumerate(schedule)}
    inputs = {id(v) for v in graph.inputs}
    outputs = {id(v) for v in graph.outputs}

    # alias roots: a view's storage is its operand's (transitively)
    root: dict[int, Value] = {}
    for n in schedule:
        v = n.output
        root[id(v)] = root.get(id(n.inputs[0]), n.inputs[0]) if _is_view(n) else v

    # the last step at which each root's storage is read (through it or any of its views)
    last: dict[int, float] = {}
    for n in schedule:
        r = root[id(n.output)]
        last.setdefault(id(r), step[id(n)])
        if id(n.output) in outputs:
            last[id(r)] = NEVER
        for v in n.inputs:
            rv = root.get(id(v))
            if rv is not None and last.get(id(rv)) != NEVER:
                last[id(rv)] = max(last.get(id(rv), 0), step[id(n)])

    buffer_of: dict[str, int] = {}
    values: dict[str, Value] = {}
    in_place: dict[str, str] = {}
    holds: dict[int, int] = {}  # root value id -> buffer
    sizes: list[tuple[int, int]] = []
    free: list[int] = []

    def buffer(v: Value) -> int:
        r = root.get(id(v))
        return -1 if r is None or id(r) in inputs else holds.get(id(r), -1)

    for n in schedule:
        i, y = step[id(n)], n.output
        values[y.name] = y
        if _is_view(n):
            buffer_of[y.name] = buffer(n.inputs[0])
        else:
            donor = _in_place_donor(n, root, last, i, inputs, buffer)
            if donor is not None:
                b = buffer(donor)
                in_place[y.name] = donor.name
            else:
                b = _take(free, sizes, _size_key(y))
            if b == len(sizes):
                sizes.append(_size_key(y))
            sizes[b] = max(sizes[b], _size_key(y))
            holds[id(y)] = b
            buffer_of[y.name] = b
        # release the storage of every root whose last reader is this node
        for v in {id(v): v for v in (*n.inputs, y)}.values():
            r = root.get(id(v))
            if r is None or id(r) in inputs or last.get(id(r)) != i:
                continue
            b = holds.pop(id(r), None)
            if b is not None and b not in free and b != holds.get(id(root[id(y)])):
                free.append(b)
    return BufferPlan(schedule, buffer_of, values, in_place)


def _take(free: list[int], sizes, want) -> int:
    """The smallest free buffer that fits ``want``, else the largest one (it grows), else new."""
    if not free:
        return len(sizes)
    fits = [b for b in free if sizes[b] >= want]
    b = min(fits, key=lambda b: sizes[b]) if fits else max(free, key=lambda b: sizes[b])
    free.remove(b)
    return b


def _in_place_donor(n: Node, root, last, i, inputs, buffer) -> Value | None:
    """The operand whose buffer ``n`` may overwrite, or None."""
    if n.op in ("conv2d_fused", "dense_fused"):
        from cnnc.ops.fused import residual_positions
        at = residual_positions(n.attrs["epilogue"])
        if not at:
            return None
        cand = n.inputs[at[0]]
    else:
        from cnnc.ops.registry import get_op
        if "elementwise" not in get_op(n.op).traits or not n.inputs:
            return None
        cand = n.inputs[0]
    if cand.type.shape != n.output.type.shape or cand.is_constant or id(cand) in inputs:
        return None
    r = root.get(id(cand))
    b = buffer(cand)
    if r is None or b < 0 or last.get(id(r)) != i:
        return None
    fused = n.op in ("conv2d_fused", "dense_fused")
    for j, v in enumerate(n.inputs):  # no other operand may read the same storage
        if v is cand:
            if fused and j == 0:
                return None  # the residual is also the main input x
            continue  # elementwise: the same element is read before it is written
        if buffer(v) == b:
            return None
    return cand
