"""``idioms``: spelled-out operations become the op they spell.

Exporters write some operations as the elementwise ops that define them.  As several ops the
conv before them cannot take them into its epilogue (its output has more than one reader) and
each runs as its own pass over memory; as one op they fuse:

* SiLU (EfficientNet, MobileNet-v3's SE blocks, YOLO), written ``Mul(x, Sigmoid(x))`` by
  torch.onnx, becomes ``swish``::

    before: %1: f32[N,8,8,16] = sigmoid(%0)
            %2: f32[N,8,8,16] = mul(%0, %1)
    after:  %2: f32[N,8,8,16] = swish(%0) {alpha=1.0}

* GELU (ConvNeXt, transformers), written ``x * 0.5 * (1 + erf(x / sqrt 2))`` in any order of
  the two multiplies and with ``x / sqrt 2`` or ``x * (1 / sqrt 2)``, becomes ``gelu``::

    before: %1 = div(%0, 1.4142135)   %2 = erf(%1)   %3 = add(%2, 1.0)
            %4 = mul(%0, %3)          %5 = mul(%4, 0.5)
    after:  %5 = gelu(%0)

* A matmul of a rank-4 tensor by a constant matrix (the ``Linear`` layers ConvNeXt applies to
  an (N, H, W, C) tensor) is a 1x1 conv, which has register-tiled kernels and an epilogue:
  ``matmul(x, w)`` becomes ``conv2d(x, w[None, None])``.

Every intermediate that disappears must have no other reader and not be a graph output.
"""

from __future__ import annotations

import math

from cnnc.passes.manager import Pass
from cnnc.passes.rewrite import Rule, apply_rules, as_f64

SQRT2 = math.sqrt(2.0)


def swish(node, rw):
    """mul(x, sigmoid(x)) or mul(sigmoid(x), x) -> swish(x)."""
    a, b = node.inputs
    for x, s in ((a, b), (b, a)):
        p = s.producer
        if (p is not None and p.op == "sigmoid" and p.inputs[0] is x
                and rw.num_uses(s) == 1 and not rw.is_output(s)
                and node.output.type == x.type):
            rw.replace_node(node, "swish", [x], {"alpha": 1.0})
            rw.erase(p)
            return True
    return None


def _scalar(v, value, rel=1e-6) -> bool:
    """``v`` is a constant whose every element is ``value`` (to ``rel``, float32 rounding)."""
    if not v.is_constant:
        return False
    d = as_f64(v)
    return d.size >= 1 and bool(abs(d - value).max() <= rel * abs(value))


def _private(v, rw) -> bool:
    """``v`` is read once and is not a graph output: its producer can be swallowed."""
    return v.producer is not None and rw.num_uses(v) == 1 and not rw.is_output(v)


def _other(node, v):
    """The operand of the binary ``node`` that is not ``v`` (None unless ``v`` is one)."""
    a, b = node.inputs
    return b if a is v else (a if b is v else None)


def _erf_term(t, rw):
    """``x`` when ``t`` is ``add(erf(x / sqrt 2), 1)`` (each intermediate private)."""
    add = t.producer
    if add is None or add.op != "add" or not _private(t, rw):
        return None, []
    for e, one in (add.inputs, add.inputs[::-1]):
        erf = e.producer
        if not (_scalar(one, 1.0) and erf is not None and erf.op == "erf" and _private(e, rw)):
            continue
        z = erf.inputs[0]
        scale = z.producer
        if scale is None or not _private(z, rw):
            continue
        if scale.op == "div" and _scalar(scale.inputs[1], SQRT2):
            return scale.inputs[0], [add, erf, scale]
        if scale.op == "mul":
            for x, c in (scale.inputs, scale.inputs[::-1]):
                if _scalar(c, 1 / SQRT2):
                    return x, [add, erf, scale]
    return None, []


def gelu(node, rw):
    """mul(mul(x, 0.5), 1 + erf(x / sqrt 2)), mul(mul(x, 1 + erf(..)), 0.5) and their
    operand orders -> gelu(x)."""
    for inner_v, outer_c in (node.inputs, node.inputs[::-1]):
        inner = inner_v.producer
        if inner is None or inner.op != "mul" or not _private(inner_v, rw):
            continue
        # three factors: the outer's other operand and the inner's two
        factors = [outer_c, *inner.inputs]
        for i, half in enumerate(factors):
            if not _scalar(half, 0.5):
                continue
            a, b = [f for k, f in enumerate(factors) if k != i]
            for x, t in ((a, b), (b, a)):
                gx, swallowed = _erf_term(t, rw)
                if gx is x and node.output.type == x.type:
                    rw.replace_node(node, "gelu", [x])
                    for n in [inner, *swallowed]:
                        rw.erase(n)
                    rw.erase_dead([half])
                    return True
    return None


def matmul_1x1(node, rw):
    """matmul(x, w) with x of rank 4 and w a constant matrix -> 1x1 conv2d."""
    x, w = node.inputs
    if x.type.rank != 4 or not w.is_constant or w.type.rank != 2:
        return None
    w4 = rw.constant(w.data[None, None], before=node, layer=node.layer)
    rw.replace_node(node, "conv2d", [x, w4])
    rw.erase_dead([w])
    return True


RULES = [Rule("swish", ("mul",), swish), Rule("gelu", ("mul",), gelu),
         Rule("matmul_1x1", ("matmul",), matmul_1x1)]


class Idioms(Pass):
    name = "idioms"

    def run(self, graph, ctx) -> bool:
        return apply_rules(graph, RULES, ctx, self.name)
