"""``fold_batchnorm``: inference batch norm folds into the conv2d/dense that produces its input.

With ``s = γ/√(var+ε)`` (the node's own ε) and ``t = β − mean·s`` (``bn_scale_shift``, in
float64) per OUTPUT channel, the last axis of both an HWIO kernel (grouped and depthwise
included) and a dense (in, out) kernel::

    w' = w · s        b' = (b − mean) · s + β = b · s + t      (b = 0 when there was none)

    before: %0: f32[N,8,8,16] = conv2d(%x, %w0) {strides=[1,1], padding=same, ...}
            %1: f32[N,8,8,16] = batch_norm(%0, %w1, %w2, %w3, %w4) {epsilon=0.001, axis=-1}
    after:  %2: f32[N,8,8,16] = conv2d(%x, %w5, %w6) {strides=[1,1], padding=same, ...}

The producer may be conv2d, dense or a conv2d_fused/dense_fused with an empty epilogue; its
weights (and bias) must be constants and its result must have no other reader. Otherwise the
batch norm becomes ``scale_shift(x, s, t)``, which ``fuse_epilogue`` can still absorb, and a
remark says why it did not fold::

    after:  %1: f32[N,8,8,16] = scale_shift(%0, %w5, %w6)
"""

from __future__ import annotations

import numpy as np

from cnnc.ops.common import normalize_axis
from cnnc.ops.norm import bn_scale_shift
from cnnc.passes.manager import Pass
from cnnc.passes.rewrite import Rule, apply_rules, as_f64

FOLDABLE = ("conv2d", "dense", "conv2d_fused", "dense_fused")


def _why_not_foldable(x, rw):
    """None when the producer of ``x`` can absorb the batch norm, else (template, values)."""
    p = x.producer
    if p is None:
        return "its input {} is a graph input", (x,)
    if p.op not in FOLDABLE:
        return f"its input {{}} is produced by {p.op}, not conv2d/dense", (x,)
    if p.op.endswith("_fused") and (p.attrs["epilogue"] or len(p.inputs) != 3):
        return f"its input {{}} is produced by {p.op} with a non-empty epilogue", (x,)
    if rw.num_uses(x) != 1:
        extra = " (and is a graph output)" if rw.is_output(x) else ""
        return f"{p.op} output {{}} has {rw.num_uses(x)} users{extra}", (x,)
    if not p.inputs[1].is_constant:
        return f"{p.op} weights {{}} are not constant", (p.inputs[1],)
    if len(p.inputs) > 2 and not p.inputs[2].is_constant:
        return f"{p.op} bias {{}} is not constant", (p.inputs[2],)
    return None


def fold_batchnorm(node, rw):
    x, gamma, beta, mean, var = node.inputs
    eps = node.attrs["epsilon"]
    if normalize_axis(node.attrs["axis"], x.type.rank) != x.type.rank - 1:
        rw.remark(node, "not folded: channel axis is not the last one")
        return None
    if not all(v.is_constant for v in (gamma, beta, mean, var)):
        rw.remark(node, "not folded: its statistics are not constants")
        return None
    s, t = bn_scale_shift(gamma.data, beta.data, mean.data, var.data, eps)
    why = _why_not_foldable(x, rw)
    if why is not None:
        rw.remark(node, "not folded, became scale_shift: " + why[0], *why[1])
        sv = rw.constant(s, before=node, layer=node.layer)
        tv = rw.constant(t, before=node, layer=node.layer)
        rw.replace_node(node, "scale_shift", [x, sv, tv])
        rw.erase_dead([gamma, beta, mean, var])
        return True
    p = x.producer
    w = as_f64(p.inputs[1])
    b = as_f64(p.inputs[2]) if len(p.inputs) > 2 else np.zeros(w.shape[-1])
    wv = rw.constant(w * s, before=p, layer=p.layer)  # broadcast along the last (output) axis
    bv = rw.constant(b * s + t, before=p, layer=p.layer)
    new = rw.insert(p.op, [p.inputs[0], wv, bv, *p.inputs[3:]], dict(p.attrs), before=p,
                    layer=p.layer)
    rw.replace(node.output, new)
    rw.erase(node)
    rw.erase(p)
    rw.erase_dead([*p.inputs[1:], gamma, beta, mean, var])
    return True


RULES = [Rule("fold_batchnorm", ("batch_norm",), fold_batchnorm)]


class FoldBatchNorm(Pass):
    name = "fold_batchnorm"

    def run(self, graph, ctx) -> bool:
        return apply_rules(graph, RULES, ctx, self.name)
