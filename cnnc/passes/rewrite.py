"""The rewrite engine: small rules applied to a fixed point through a recording rewriter.

A :class:`Rule` names the root op(s) it looks at and a function ``fn(node, rewriter)``. The
function checks everything first and returns None when the pattern does not match; when it
does, it mutates the graph only through the :class:`Rewriter` (insert, replace, erase, make a
constant), which records that something changed. A rule that returns without touching the
rewriter changed nothing, so a pass built from rules that reports "no change" left the graph
exactly as it was.

    rules = [Rule("drop_identity", ("identity", "dropout"), drop_identity)]
    changed = apply_rules(graph, rules, ctx, pass_name="eliminate_noops")

:func:`apply_rules` sweeps the nodes in schedule order (or reverse order), applies the first
matching rule to each live node and repeats until a sweep changes nothing. A sweep cap catches
rules that undo each other: it raises a :class:`~cnnc.errors.CnncError` naming the rules that
were still firing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from cnnc.errors import CnncError
from cnnc.ir.node import Node, Value

#: sweeps over the whole graph before :func:`apply_rules` gives up
MAX_SWEEPS = 64


@dataclass(frozen=True)
class Rule:
    """``fn(node, rewriter)`` is tried on every node whose op is in ``ops`` (all ops if empty)."""

    name: str
    ops: tuple[str, ...]
    fn: Callable[[Node, "Rewriter"], object]

    def matches_op(self, op: str) -> bool:
        return not self.ops or op in self.ops


class Rewriter:
    """All graph mutation of a pass goes through here; ``changed`` records that any happened.

    It also caches the use map between mutations (``users``/``num_uses`` are called by every
    rule on every node) and collects remarks (why a rewrite did not happen)."""

    def __init__(self, graph, ctx=None, pass_name: str = ""):
        self.graph = graph
        self.ctx = ctx
        self.pass_name = pass_name
        self.changed = False
        self._users: dict[Value, list[Node]] | None = None
        # erased nodes by id, the nodes kept referenced so that no new node reuses their id
        self._erased: dict[int, Node] = {}

    # ---- queries ---------------------------------------------------------------------------
    def users(self, value: Value) -> list[Node]:
        """Nodes reading ``value`` (each once), in schedule order."""
        if self._users is None:
            self._users = self.graph.users()
        return self._users.get(value, [])

    def num_uses(self, value: Value) -> int:
        """Readers of ``value``, a graph output counting as one more (like Graph.num_uses)."""
        return len(self.users(value)) + sum(1 for v in self.graph.outputs if v is value)

    def is_output(self, value: Value) -> bool:
        return any(v is value for v in self.graph.outputs)

    def alive(self, node: Node) -> bool:
        return id(node) not in self._erased

    # ---- mutation --------------------------------------------------------------------------
    def _touch(self) -> None:
        self.changed = True
        self._users = None

    def insert(self, op: str, inputs: Iterable[Value], attrs=None, *, before: Node,
               layer: str | None = None) -> Value:
        """A new node ``op(inputs) {attrs}`` placed just before ``before``."""
        v = self.graph.add(op, inputs, attrs, layer=layer, before=before)
        self._touch()
        return v

    def constant(self, array, *, before: Node | None = None, layer: str | None = None) -> Value:
        """A new constant (float64 arrays keep float64 precision)."""
        v = self.graph.constant(array, layer=layer, before=before)
        self._touch()
        return v

    def replace(self, old: Value, new: Value) -> None:
        """Every use of ``old`` (operands and graph outputs) reads ``new`` instead."""
        if old is new:
            return
        self.graph.replace_uses(old, new)
        if self.ctx is not None:
            self.ctx.forward[id(old)] = (old, new)   # old kept: its id is never reused
        self._touch()

    def erase(self, node: Node) -> None:
        """Remove ``node``; its result must have no readers left."""
        if self.num_uses(node.output) and self.alive(node):
            raise CnncError(f"{self.pass_name}: cannot erase {node.describe()}: its result "
                            f"still has {self.num_uses(node.output)} reader(s)")
        self.graph.remove(node)
        self._erased[id(node)] = node
        users = self._users
        self._touch()
        if users is not None:  # keep the use map: drop the erased reader (cheaper than rebuilding)
            for v in dict.fromkeys(node.inputs):
                users[v] = [u for u in users.get(v, []) if u is not node]
            users.pop(node.output, None)
            self._users = users

    def erase_dead(self, values: Iterable[Value]) -> None:
        """Erase the producers of ``values`` that nothing reads any more, then theirs."""
        stack = [v for v in values]
        while stack:
            v = stack.pop()
            node = v.producer
            if node is None or not self.alive(node) or self.num_uses(v):
                continue
            self.erase(node)
            stack.extend(node.inputs)

    def bypass(self, node: Node, x: Value) -> bool | None:
        """Readers of ``node``'s result read ``x`` instead and ``node`` is erased; None (no
        change) when that result is a graph output and ``x`` a graph input or constant (an
        output must stay a computed value)."""
        if self.is_output(node.output) and (x.producer is None or x.is_constant):
            return None
        self.replace(node.output, x)
        self.erase(node)
        return True

    def replace_node(self, node: Node, op: str, inputs, attrs=None) -> Value:
        """Put ``op(inputs) {attrs}`` where ``node`` was (same layer) and erase ``node``."""
        new = self.insert(op, inputs, attrs, before=node, layer=node.layer)
        self.replace(node.output, new)
        self.erase(node)
        return new

    # ---- remarks ---------------------------------------------------------------------------
    def remark(self, node: Node, template: str, *values: Value) -> None:
        """Why something did not happen at ``node``; ``{}`` in ``template`` names ``values``."""
        if self.ctx is not None:
            self.ctx.remark(self.pass_name, node, template, values)


def apply_rules(graph, rules: list[Rule], ctx=None, pass_name: str = "",
                reverse: bool = False, max_sweeps: int = MAX_SWEEPS) -> bool:
    """Apply ``rules`` until a sweep over the graph changes nothing; returns whether any did."""
    rw = Rewriter(graph, ctx, pass_name)
    any_change = False
    recent: list[Counter[str]] = []
    for sweep in range(max_sweeps):
        fired: Counter[str] = Counter()
        order = graph.nodes
        for node in (reversed(order) if reverse else order):
            if not rw.alive(node):
                continue
            for rule in rules:
                if not rule.matches_op(node.op):
                    continue
                before = rw.changed
                rw.changed = False
                rule.fn(node, rw)
                hit, rw.changed = rw.changed, before or rw.changed
                if hit:
                    fired[rule.name] += 1
                    break
        if not fired:
            return any_change
        any_change = True
        recent = [*recent[-3:], fired]
    looping = sorted(set().union(*recent))
    raise CnncError(f"pass {pass_name!r}: rules did not reach a fixed point after {max_sweeps} "
                    f"sweeps; rules firing in the last {len(recent)} sweeps: {looping} "
                    f"(rules that undo each other?)")


def as_f64(v: Value) -> np.ndarray:
    """A constant's data in float64 (folding always happens in float64)."""
    return np.asarray(v.data, dtype=np.float64)
