"""The stable text form: one line per node.

    %7: f32[N,16,16,32] = conv2d_fused(%6, %w3, %w4) {strides=[1,1], padding=same, epilogue=[relu]}
"""

from __future__ import annotations


def format_attr(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple):
        if v and isinstance(v[0], str):  # an epilogue step: ("relu",) or ("leaky_relu", 0.2)
            head, *args = v
            return head if not args else f"{head}({','.join(format_attr(a) for a in args)})"
        return "[" + ",".join(format_attr(x) for x in v) + "]"
    if v is None:
        return "none"
    return str(v)


def format_node(node) -> str:
    out = f"%{node.output.name}: {node.output.type}"
    if node.op == "constant":
        return f"{out} = constant"
    args = ", ".join(f"%{v.name}" for v in node.inputs)
    attrs = ", ".join(f"{k}={format_attr(v)}" for k, v in node.attrs.items())
    return f"{out} = {node.op}({args})" + (f" {{{attrs}}}" if attrs else "")


def format_graph(graph, constants: bool = True) -> str:
    ins = ", ".join(f"%{v.name}: {v.type}" for v in graph.inputs)
    lines = [f"graph {graph.name}({ins}) {{"]
    for node in graph.nodes:
        if node.op == "constant" and not constants:
            continue
        lines.append("  " + format_node(node))
    lines.append("  return " + ", ".join(f"%{v.name}" for v in graph.outputs))
    lines.append("}")
    return "\n".join(lines)
