"""The verifier: types, single definition, defined operands, acyclicity, attributes.

Every failure names the offending node.
"""

from __future__ import annotations

from cnnc.errors import CnncError, VerificationError


def verify(graph, where: str = "") -> None:
    from cnnc.ops.registry import get_op
    ctx = f" ({where})" if where else ""
    defined: set[int] = set()
    names: dict[str, object] = {}

    def define(value, owner: str):
        if id(value) in defined:
            raise VerificationError(f"%{value.name} is defined twice, again by {owner}{ctx}")
        if value.name in names:
            raise VerificationError(f"two values are named %{value.name} ({owner}){ctx}")
        defined.add(id(value))
        names[value.name] = value

    for v in graph.inputs:
        define(v, "graph input")
    graph._order = None  # operands may have been edited in place: never trust a cached order
    order = graph.nodes  # raises VerificationError on a cycle
    for node in order:
        if node.output.producer is not node:
            raise VerificationError(f"{node.describe()}: its result does not point back to it{ctx}")
        for i, v in enumerate(node.inputs):
            if id(v) not in defined:
                raise VerificationError(
                    f"{node.describe()}: operand {i} %{v.name} is not defined before use{ctx}")
        define(node.output, node.describe())
        if node.op == "constant":
            if node.data is None or tuple(node.data.shape) != node.output.type.shape:
                raise VerificationError(f"{node.describe()}: constant data does not match "
                                        f"its type {node.output.type}{ctx}")
            continue
        try:
            opdef = get_op(node.op)
            opdef.check_arity(len(node.inputs), node.describe())
            attrs = opdef.check_attrs(dict(node.attrs), node.describe())
            expected = opdef.infer([v.type for v in node.inputs], attrs, node.describe())
        except VerificationError:
            raise
        except CnncError as e:
            raise VerificationError(f"{node.describe()}: {e}{ctx}") from e
        if dict(attrs) != dict(node.attrs):
            raise VerificationError(f"{node.describe()}: attributes {dict(node.attrs)} are not "
                                    f"normalised (expected {dict(attrs)}){ctx}")
        if expected != node.output.type:
            raise VerificationError(f"{node.describe()}: result type is {node.output.type} but "
                                    f"the shape rule gives {expected}{ctx}")
    for v in graph.outputs:
        if id(v) not in defined:
            raise VerificationError(f"graph output %{v.name} is not defined{ctx}")
    if not graph.outputs:
        raise VerificationError(f"graph {graph.name!r} has no outputs{ctx}")
