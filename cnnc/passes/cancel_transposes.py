"""``cancel_transposes``: a transpose of a transpose that composes to the identity is bypassed.

``transpose(transpose(x, p), q)`` reads axis ``p[q[i]]`` of ``x`` at position ``i``; when that is
the identity permutation the pair cancels and every reader of the outer transpose reads ``x``::

    before: %0: f32[N,3,8,8] = transpose(%x) {perm=[0,3,1,2]}
            %1: f32[N,8,8,3] = transpose(%0) {perm=[0,2,3,1]}
            %2: f32[N,8,8,4] = conv2d(%1, %w0) {...}
    after:  %2: f32[N,8,8,4] = conv2d(%x, %w0) {...}

The inner transpose is erased when nothing else reads it; a pair that does not compose to the
identity is left as it is. The pair is kept when the outer result is a graph output and ``x``
is a graph input or a constant (a backend then always has a computed value to return).
"""

from __future__ import annotations

import numpy as np

from cnnc.ops.registry import REGISTRY
from cnnc.passes.manager import Pass
from cnnc.passes.rewrite import Rule, apply_rules


def compose(inner, outer) -> tuple[int, ...]:
    """The single permutation equal to ``transpose(transpose(x, inner), outer)``."""
    return tuple(inner[i] for i in outer)


def cancel_pair(node, rw):
    inner = node.inputs[0].producer
    if inner is None or inner.op != "transpose":
        return None
    perm = compose(inner.attrs["perm"], node.attrs["perm"])
    if perm != tuple(range(len(perm))):
        return None
    if rw.bypass(node, inner.inputs[0]) is None:
        return None
    rw.erase_dead([inner.output])
    return True


def _inverse(perm):
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def _movable(m) -> bool:
    """``m`` is an elementwise op with NumPy broadcasting (not bias_add, which adds along the
    last axis) of one or two operands: it computes the same in any axis order."""
    opdef = REGISTRY.get(m.op)   # None for a constant
    return (opdef is not None and "elementwise" in opdef.traits and m.op != "bias_add"
            and len(m.inputs) <= 2)


def _transposed(m, rw):
    """The permutation by which every non-constant operand of elementwise ``m`` is a
    transpose read by ``m`` alone, without broadcasting; None when that is not so."""
    if not _movable(m) or len(set(m.inputs)) < len(m.inputs):
        return None
    moved = [v for v in m.inputs if not v.is_constant]
    if not moved or any(v.producer is None or v.producer.op != "transpose"
                        or v.type.shape != m.output.type.shape or rw.num_uses(v) != 1
                        or rw.is_output(v) for v in moved):
        return None
    perms = {v.producer.attrs["perm"] for v in moved}
    return perms.pop() if len(perms) == 1 else None


def _meets_inverse(m, perm, rw) -> bool:
    """From ``m``'s result, readers that could take the transpose ``perm`` next lead to a
    transpose that cancels it (then sinking removes at least one transpose: the operands'
    go, one comes and the cancelling pair goes)."""
    ident = tuple(range(len(perm)))
    v = m.output
    while not rw.is_output(v):
        users = rw.users(v)
        if any(u.op == "transpose" and compose(perm, u.attrs["perm"]) == ident
               for u in users):
            return True
        if rw.num_uses(v) != 1:
            return False
        (u,) = users
        others = [w for w in u.inputs if w is not v and not w.is_constant]
        if (not _movable(u) or u.output.type != v.type
                or any(w.producer is None or w.producer.op != "transpose"
                       or w.producer.attrs["perm"] != perm or rw.num_uses(w) != 1
                       for w in others)):
            return False
        v = u.output
    return False


def sink(m, rw):
    """op(transpose(a, p), transpose(b, p) or constant c) -> transpose(op(a, b or c'), p),
    when single readers below lead to a transpose that undoes p."""
    perm = _transposed(m, rw)
    if perm is None or not _meets_inverse(m, perm, rw):
        return None
    moved = [v for v in m.inputs if not v.is_constant]
    inv = _inverse(perm)
    ins = []
    for v in m.inputs:
        if v.is_constant:  # c broadcast to the rank, then in the untransposed axis order
            arr = v.data.reshape((1,) * (len(perm) - v.type.rank) + tuple(v.type.shape))
            ins.append(rw.constant(np.transpose(arr, inv), before=m, layer=m.layer))
        else:
            ins.append(v.producer.inputs[0])
    inner = rw.insert(m.op, ins, m.attrs, before=m, layer=m.layer)
    out = rw.insert("transpose", [inner], {"perm": perm}, before=m, layer=m.layer)
    rw.replace(m.output, out)
    rw.erase(m)
    rw.erase_dead(moved)
    return True


RULES = [Rule("cancel_transpose_pair", ("transpose",), cancel_pair),
         Rule("sink_transpose", (), sink)]


class CancelTransposes(Pass):
    name = "cancel_transposes"

    def run(self, graph, ctx) -> bool:
        return apply_rules(graph, RULES, ctx, self.name)
