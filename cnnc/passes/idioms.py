"""``idioms``: spelled-out activations become the activation op they spell.

Exporters write some activations as the elementwise ops that define them: torch.onnx writes
SiLU (EfficientNet, MobileNet-v3's SE blocks, YOLO) as ``Mul(x, Sigmoid(x))``.  As two ops the
conv before them cannot take them into its epilogue (its output has two readers) and each
runs as its own pass over memory; as one ``swish`` it fuses::

    before: %1: f32[N,8,8,16] = sigmoid(%0)
            %2: f32[N,8,8,16] = mul(%0, %1)
    after:  %2: f32[N,8,8,16] = swish(%0) {alpha=1.0}

The sigmoid must have no other reader and not be a graph output.
"""

from __future__ import annotations

from cnnc.passes.manager import Pass
from cnnc.passes.rewrite import Rule, apply_rules


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


RULES = [Rule("swish", ("mul",), swish)]


class Idioms(Pass):
    name = "idioms"

    def run(self, graph, ctx) -> bool:
        return apply_rules(graph, RULES, ctx, self.name)
