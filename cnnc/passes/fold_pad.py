"""``fold_pad``: an explicit ``pad`` over H/W of NHWC folds into the window op that reads it.

The window's own padding is resolved to explicit ``((top, bottom), (left, right))`` first
(:func:`cnnc.ops.padding.resolve_pads`, on the padded size it used to see), then the pad's
widths are added::

    before: %0: f32[N,9,9,3] = pad(%x) {pads=[[0,0],[1,1],[1,1],[0,0]], value=0.0}
            %1: f32[N,4,4,8] = conv2d(%0, %w0, %w1) {strides=[2,2], padding=valid, ...}
    after:  %1: f32[N,4,4,8] = conv2d(%x, %w0, %w1) {strides=[2,2], padding=[[1,1],[1,1]], ...}

When it is exact:

* conv2d / conv2d_fused: the pad value is 0 (the conv pads with zeros);
* max_pool2d: the pad value is -inf (the pool pads with -inf; any finite value could win);
* avg_pool2d with a zero pad: padded cells were real cells, counted in the divisor. Exact when
  the pool already had ``count_include_pad`` (its own padding is counted the same way), or when
  it had no padding of its own: it then gets ``count_include_pad=True``;
* never with ``ceil_mode`` (its last-window rule depends on where the padding sits).

The pad must have no other reader and must pad neither N nor C. Otherwise it stays and a
remark says why.
"""

from __future__ import annotations

import math

from cnnc.errors import CnncError
from cnnc.ops.padding import resolve_pads
from cnnc.ops.registry import get_op
from cnnc.passes.manager import Pass
from cnnc.passes.rewrite import Rule, apply_rules

WINDOW_OPS = ("conv2d", "conv2d_fused", "max_pool2d", "avg_pool2d")


def _window(node):
    """(kernel_hw, strides, dilation) of a window op."""
    if node.op.startswith("conv2d"):
        kernel = node.inputs[1].type.shape[:2]
    else:
        kernel = node.attrs["pool_size"]
    return kernel, node.attrs["strides"], node.attrs["dilation"]


def _why_not(pad, u, value) -> str | None:
    """None when ``pad`` folds into its reader ``u``, else the reason (a remark)."""
    if u.op.startswith("conv2d"):
        return None if value == 0.0 else f"pad value {value} is not 0 (the conv pads with zeros)"
    if u.attrs["ceil_mode"]:
        return f"{u.op} uses ceil_mode"
    if u.op == "max_pool2d":
        return None if value == -math.inf else f"pad value {value} is not -inf (max_pool2d)"
    if value != 0.0:
        return f"pad value {value} is not 0 (avg_pool2d)"
    if u.attrs["count_include_pad"]:
        return None
    own = resolve_pads(u.attrs["padding"], pad.output.type.shape[1:3], *_window(u))
    if any(p for pair in own for p in pair):
        return ("avg_pool2d has its own padding and count_include_pad=False: "
                "the divisor would change")
    return None


def fold_pad(pad, rw):
    pads = tuple(tuple(p) for p in pad.attrs["pads"])
    y = pad.output
    users = rw.users(y)
    if len(pads) != 4 or pads[0] != (0, 0) or pads[3] != (0, 0):
        if any(u.op in WINDOW_OPS for u in users):
            rw.remark(pad, "not folded: it pads N or C, not only H/W of NHWC")
        return None
    if not users or rw.num_uses(y) != 1 or len(users) != 1:
        if any(u.op in WINDOW_OPS for u in users):
            rw.remark(pad, f"not folded: its result {{}} has {rw.num_uses(y)} users", y)
        return None
    u = users[0]
    if u.op not in WINDOW_OPS:
        return None
    if [i for i, v in enumerate(u.inputs) if v is y] != [0]:
        rw.remark(pad, f"not folded: {u.op} reads {{}} as more than its input", y)
        return None
    why = _why_not(pad, u, pad.attrs["value"])
    if why is not None:
        rw.remark(pad, f"not folded into {u.op}: {why}")
        return None
    kernel, strides, dilation = _window(u)
    own = resolve_pads(u.attrs["padding"], y.type.shape[1:3], kernel, strides, dilation)
    merged = tuple((a + pa, b + pb) for (a, b), (pa, pb) in zip(own, pads[1:3]))
    attrs = dict(u.attrs, padding=merged)
    if u.op == "avg_pool2d":
        attrs["count_include_pad"] = True
    x = pad.inputs[0]
    operands = [x, *u.inputs[1:]]
    opdef = get_op(u.op)
    try:
        attrs = opdef.check_attrs(attrs, u.describe())
        t = opdef.infer([v.type for v in operands], attrs, u.describe())
    except CnncError as e:  # e.g. a pooling window left with nothing but padding
        rw.remark(pad, f"not folded into {u.op}: the merged padding is invalid ({e})")
        return None
    if t != u.output.type:
        rw.remark(pad, f"not folded into {u.op}: the merged padding gives {t}, "
                       f"not {u.output.type}")
        return None
    new = rw.insert(u.op, operands, attrs, before=u, layer=u.layer)
    rw.replace(u.output, new)
    rw.erase(u)
    rw.erase(pad)
    return True


RULES = [Rule("fold_pad", ("pad",), fold_pad)]


class FoldPad(Pass):
    name = "fold_pad"

    def run(self, graph, ctx) -> bool:
        return apply_rules(graph, RULES, ctx, self.name)
