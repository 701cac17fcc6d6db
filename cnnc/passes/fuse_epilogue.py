"""``fuse_epilogue``: a conv2d/dense and the elementwise chain after it become one fused op.

Starting at a conv2d/dense (or a fused op, whose epilogue grows), the chain follows the single
reader of the current result while it is one of:

* ``bias_add(y, c)`` or ``add(y, c)`` with a constant ``c`` per OUTPUT channel (shape ``(C,)``,
  ``(1, C)``, ``(1, 1, 1, C)``, ...) — merged into the bias while the epilogue is empty, later
  a ``scale_shift`` step with scale 1;
* ``scale_shift(y, s, t)`` with constant ``s``, ``t`` (an unfolded batch norm);
* ``mul(y, c)`` with a constant ``c`` per output channel or a scalar (a layer scale) — a
  ``scale_shift`` step with shift 0;
* an activation (relu, relu6, clip, leaky_relu, sigmoid, tanh, hard_sigmoid, hard_swish);
* one residual ``add(y, r)`` / ``add(r, y)`` where ``r`` has exactly the result's shape (any
  value: a graph input, the output of another conv, ...).

Every intermediate result must have exactly one reader and must not be a graph output. The fused
op always has a bias operand (zeros when the conv had none); attributes are copied wholesale::

    before: %0: f32[N,8,8,16] = conv2d(%x, %w0, %w1) {strides=[1,1], padding=same, ...}
            %1: f32[N,8,8,16] = add(%0, %s)
            %2: f32[N,8,8,16] = relu(%1)
    after:  %2: f32[N,8,8,16] = conv2d_fused(%x, %w0, %w1, %s) {..., epilogue=[add,relu]}

When the chain stops at a result with several readers (a skip connection) and one of them
could have been fused, a remark says so (``conv2d output %0 has 2 users``).
"""

from __future__ import annotations

import numpy as np

from cnnc.ops.fused import STEPS, step
from cnnc.ops.registry import get_op
from cnnc.passes.manager import Pass
from cnnc.passes.rewrite import Rule, apply_rules, as_f64

ROOTS = {"conv2d": "conv2d_fused", "dense": "dense_fused",
         "conv2d_fused": "conv2d_fused", "dense_fused": "dense_fused",
         # a transposed conv takes the same epilogues
         "conv2d_transpose": "conv2d_transpose_fused",
         "conv2d_transpose_fused": "conv2d_transpose_fused"}


class _Chain:
    """The fused op being assembled: operands, epilogue and the nodes it swallows."""

    def __init__(self, root):
        self.root = root
        self.x, self.w = root.inputs[0], root.inputs[1]
        fused = root.op.endswith("_fused")
        self.bias = root.inputs[2] if len(root.inputs) > 2 else None
        self.bias_delta = None  # float64 per-channel constant to add to the bias
        self.extras: list = list(root.inputs[3:]) if fused else []
        self.epilogue: list = list(root.attrs["epilogue"]) if fused else []
        self.nodes: list = []
        self.end = root.output
        self.channels = root.output.type.shape[-1]

    @property
    def has_residual(self) -> bool:
        return any(s[0] == "add" for s in self.epilogue)


EPILOGUE_OPS = ("bias_add", "add", "scale_shift", "mul")


def _only_operand(node, v) -> int | None:
    """The index of ``v`` in ``node.inputs`` when it appears exactly once there."""
    idx = [i for i, u in enumerate(node.inputs) if u is v]
    return idx[0] if len(idx) == 1 else None


def _per_channel(c, chain) -> np.ndarray | None:
    """A constant that is one value per output channel, as a (C,) float64 vector."""
    shape = c.type.shape
    if not c.is_constant or len(shape) > chain.end.type.rank or not shape:
        return None
    if shape[-1] != chain.channels or any(d != 1 for d in shape[:-1]):
        return None
    return as_f64(c).reshape(-1)


def _extend(chain, u, rw) -> str | None:
    """Add reader ``u`` of ``chain.end`` as a step; returns a reason when it cannot be fused."""
    y = chain.end
    opdef = get_op(u.op)
    if not (u.op in EPILOGUE_OPS or "activation" in opdef.traits):
        return ""  # not an epilogue op: no remark
    i = _only_operand(u, y)
    if i is None:
        return f"{u.op} reads {{}} more than once"
    if "activation" in opdef.traits:
        chain.epilogue.append(step(u.op, *(u.attrs[k] for k in STEPS[u.op][1])))
        return None
    if u.op == "scale_shift" and i == 0:
        s, t = u.inputs[1:]
        if not (s.is_constant and t.is_constant):
            return "scale_shift of {} has non-constant scale/shift"
        chain.epilogue.append(step("scale_shift"))
        chain.extras += [s, t]
        return None
    if u.op == "mul":
        other = u.inputs[1 - i]
        if not other.is_constant:
            return ""  # a gate (squeeze-excitation) or a product of two values: no remark
        vec = _per_channel(other, chain)
        if vec is None and as_f64(other).size == 1:
            vec = np.full(chain.channels, as_f64(other).item())
        if vec is None or u.output.type != y.type:
            return (f"mul of {{}} not fused: its constant has shape {tuple(other.type.shape)}, "
                    f"neither per-output-channel nor a scalar")
        chain.epilogue.append(step("scale_shift"))
        chain.extras += [vec, np.zeros(chain.channels)]
        return None
    if u.op in ("bias_add", "add"):
        other = u.inputs[1 - i]
        vec = _per_channel(other, chain) if (u.op == "add" or i == 0) else None
        if vec is not None and u.output.type == y.type:
            if not chain.epilogue:
                chain.bias_delta = vec if chain.bias_delta is None else chain.bias_delta + vec
            else:
                chain.epilogue.append(step("scale_shift"))
                chain.extras += [np.ones(chain.channels), vec]  # made constant in fuse()
            return None
        if u.op == "add" and other.type.shape == y.type.shape and not chain.has_residual:
            chain.epilogue.append(step("add"))
            chain.extras.append(other)
            return None
        what = ("a second residual add" if chain.has_residual and
                other.type.shape == y.type.shape else
                f"its other operand has shape {tuple(other.type.shape)}, neither "
                f"per-output-channel nor the output's {tuple(y.type.shape)}")
        return f"{u.op} of {{}} not fused: {what}"
    return ""


def _plan(root, rw) -> _Chain:
    """Walk the single-reader chain from ``root``; ``chain.nodes`` is empty when nothing can
    be fused; ``chain.remark`` is (template, value) when the walk stopped for a reason worth
    reporting."""
    chain = _Chain(root)
    chain.remark = None
    while True:
        y = chain.end
        users = rw.users(y)
        if rw.num_uses(y) != 1 or len(users) != 1:
            fusable = [u for u in users if u.op in EPILOGUE_OPS
                       or "activation" in get_op(u.op).traits]
            if fusable and rw.num_uses(y) > 1:
                out = " (it is a graph output)" if rw.is_output(y) else ""
                chain.remark = (f"output {{}} has {rw.num_uses(y)} users{out}; "
                                f"{fusable[0].op} not fused", y)
            break
        u = users[0]
        n_extras, n_steps = len(chain.extras), len(chain.epilogue)
        if u.output.type.shape != y.type.shape:
            break
        why = _extend(chain, u, rw)
        if why is not None:
            del chain.extras[n_extras:], chain.epilogue[n_steps:]
            if why:
                chain.remark = (why, y)
            break
        chain.nodes.append(u)
        chain.end = u.output
    return chain


def fuse(root, rw):
    if root.op not in ROOTS:
        return None
    if root.op.endswith("_fused") and len(root.inputs) < 3:
        return None
    chain = _plan(root, rw)
    if not chain.nodes:
        if chain.remark:
            rw.remark(root, *chain.remark)
        return None
    bias = chain.bias
    if bias is None or chain.bias_delta is not None:
        base = np.zeros(chain.channels) if bias is None else as_f64(bias)
        delta = 0.0 if chain.bias_delta is None else chain.bias_delta
        bias = rw.constant(base + delta, before=root, layer=root.layer)
    extras = [rw.constant(e, before=root, layer=root.layer) if isinstance(e, np.ndarray) else e
              for e in chain.extras]
    attrs = {k: v for k, v in root.attrs.items() if k != "epilogue"}
    attrs["epilogue"] = tuple(chain.epilogue)
    last = chain.nodes[-1]
    new = rw.insert(ROOTS[root.op], [chain.x, chain.w, bias, *extras], attrs,
                    before=last, layer=root.layer)
    rw.replace(last.output, new)
    if chain.remark:  # the chain's end is now the fused result
        template, v = chain.remark
        rw.remark(new.producer, template, new if v is last.output else v)
    for node in reversed(chain.nodes):
        rw.erase(node)
    rw.erase(root)
    rw.erase_dead([v for n in [root, *chain.nodes] for v in n.inputs])
    return True


RULES = [Rule("fuse_epilogue", tuple(ROOTS), fuse)]


class FuseEpilogue(Pass):
    name = "fuse_epilogue"

    def run(self, graph, ctx) -> bool:
        return apply_rules(graph, RULES, ctx, self.name)
