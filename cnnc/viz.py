"""Pictures of the graph IR: Graphviz DOT always, SVG/PNG through Graphviz or matplotlib.

    from cnnc import viz
    viz.draw(model, "graph.svg", after_passes=True)     # also writes graph.dot
    print(viz.to_dot(graph))

Each computing node is one box labelled with its op, its geometry and its fused epilogue, and
its output shape on a second line; weights are not drawn as nodes but folded into the label of
the node that reads them, e.g. ``conv2d_fused 3x3/1 16→16 [add,relu]`` / ``N×32×32×16``.
A residual read by a fused ``add`` step is drawn as a dashed edge.

Rendering: Graphviz's ``dot`` program when it is on ``PATH`` (``apt-get install graphviz``);
otherwise a layered layout (networkx) drawn with matplotlib when that is installed; otherwise
only the DOT file is written, with the command that renders it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from cnnc.errors import ConfigError, UnsupportedError
from cnnc.ir.printer import format_attr

#: op family -> fill colour
_COLOURS = {"conv": "#cfe2ff", "dense": "#e2d4f7", "pool": "#d1f0d8", "norm": "#fff2c2",
            "act": "#ffe0c7", "shape": "#eeeeee", "io": "#f7f7f7", "other": "#f4f4f4"}
_ACTIVATIONS = {"relu", "relu6", "clip", "leaky_relu", "sigmoid", "tanh", "hard_sigmoid",
                "hard_swish", "softmax", "add", "sub", "mul", "div", "bias_add", "maximum",
                "minimum"}
IMAGE_FORMATS = ("svg", "png", "pdf")


# ---- labels ---------------------------------------------------------------------------------
def shape_text(shape) -> str:
    """``("N", 32, 32, 16)`` -> ``N×32×32×16``."""
    return "×".join(str(d) for d in shape)


def _pair_text(p) -> str:
    return str(p[0]) if p[0] == p[1] else f"({p[0]},{p[1]})"


def epilogue_text(node) -> str:
    """``[add,relu]`` for a fused node's epilogue, ``""`` when it has none."""
    steps = node.attrs.get("epilogue", ())
    return "[" + ",".join(format_attr(s) for s in steps) + "]" if steps else ""


def op_label(node) -> str:
    """One line: op, geometry (kernel/stride, channels in→out) and epilogue."""
    op, a = node.op, node.attrs
    parts = [op]
    if op in ("conv2d", "conv2d_fused"):
        kh, kw, cig, cout = node.inputs[1].shape
        geo = f"{kh}x{kw}/{_pair_text(a['strides'])}"
        if tuple(a["dilation"]) != (1, 1):
            geo += f" d{_pair_text(a['dilation'])}"
        if a["groups"] > 1:
            geo += f" g{a['groups']}"
        parts += [geo, f"{cig * a['groups']}→{cout}"]
    elif op in ("dense", "dense_fused"):
        cin, cout = node.inputs[1].shape
        parts.append(f"{cin}→{cout}")
    elif op in ("max_pool2d", "avg_pool2d"):
        kh, kw = a["pool_size"]
        parts.append(f"{kh}x{kw}/{_pair_text(a['strides'])}")
    elif op in ("leaky_relu", "clip"):
        parts[0] += "(" + ",".join(format_attr(v) for v in a.values()) + ")"
    epi = epilogue_text(node)
    if epi:
        parts.append(epi)
    return " ".join(parts)


def node_label(node) -> str:
    return f"{op_label(node)}\n{shape_text(node.output.shape)}"


def _family(op: str) -> str:
    if op.startswith("conv"):
        return "conv"
    if op.startswith("dense") or op == "matmul":
        return "dense"
    if "pool" in op:
        return "pool"
    if op in ("batch_norm", "scale_shift"):
        return "norm"
    if op in _ACTIVATIONS:
        return "act"
    if op in ("flatten", "reshape", "transpose", "pad", "concat", "identity", "dropout"):
        return "shape"
    return "other"


def _params(node) -> int:
    return sum(int(v.data.size) for v in node.inputs if v.is_constant)


def _is_residual(node, index: int) -> bool:
    """Whether operand ``index`` of a fused node is the residual of an ``add`` step."""
    if node.op not in ("conv2d_fused", "dense_fused") or index < 3:
        return False
    k = 3
    for s in node.attrs.get("epilogue", ()):
        n = {"add": 1, "scale_shift": 2}.get(s[0], 0)
        if s[0] == "add" and k <= index < k + n:
            return True
        k += n
    return False


# ---- DOT ------------------------------------------------------------------------------------
def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_body(graph, prefix: str, indent: str) -> list[str]:
    lines = []
    for v in graph.inputs:
        label = _q(f"{v.name}\n{shape_text(v.shape)}")
        lines.append(f'{indent}{_q(prefix + "in_" + v.name)} [label={label}, shape=ellipse, '
                     f'fillcolor="{_COLOURS["io"]}"];')
    for node in graph.ops:
        layer = f", layer {node.layer}" if node.layer else ""
        tip = f"%{node.name}{layer}; params {_params(node):,}"
        lines.append(f"{indent}{_q(prefix + node.name)} [label={_q(node_label(node))}, "
                     f'fillcolor="{_COLOURS[_family(node.op)]}", tooltip={_q(tip)}];')
    for node in graph.ops:
        for i, v in enumerate(node.inputs):
            if v.is_constant:
                continue
            src = prefix + ("in_" + v.name if v.producer is None else v.name)
            style = ' [style=dashed, label=" +", fontsize=9]' if _is_residual(node, i) else ""
            lines.append(f"{indent}{_q(src)} -> {_q(prefix + node.name)}{style};")
    for k, v in enumerate(graph.outputs):
        out = prefix + f"out_{k}"
        label = _q(f"output\n{shape_text(v.shape)}")
        lines.append(f'{indent}{_q(out)} [label={label}, shape=ellipse, '
                     f'fillcolor="{_COLOURS["io"]}"];')
        src = prefix + ("in_" + v.name if v.producer is None else v.name)
        lines.append(f"{indent}{_q(src)} -> {_q(out)};")
    return lines


_HEADER = ['  graph [rankdir=TB, fontname="Helvetica", fontsize=14, nodesep=0.3, ranksep=0.28, '
           'labelloc=t];',
           '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, '
           'margin="0.10,0.03", height=0.35, color="#666666"];',
           '  edge [color="#555555", arrowsize=0.6];']


def to_dot(graph, title: str | None = None) -> str:
    """The Graphviz DOT text of ``graph`` (constants folded into their readers' labels)."""
    title = title or f"{graph.name}: {len(graph.ops)} ops"
    lines = [f"digraph {_q(graph.name)} {{", *_HEADER, f"  label={_q(title)};"]
    lines += _dot_body(graph, "", "  ")
    return "\n".join(lines + ["}"]) + "\n"


def to_dot_side_by_side(before, after, title: str | None = None) -> str:
    """Two clusters, the graph before and after the pass pipeline, next to each other."""
    title = title or f"{before.name}: before and after the passes"
    lines = [f"digraph {_q(before.name)} {{", *_HEADER, f"  label={_q(title)};"]
    for key, g, what in (("b_", before, "before passes"), ("a_", after, "after passes")):
        lines.append(f"  subgraph cluster_{key[0]} {{")
        lines.append(f'    label={_q(f"{what}: {len(g.ops)} ops")}; style=rounded; '
                     f'color="#999999";')
        lines += _dot_body(g, key, "    ")
        lines.append("  }")
    return "\n".join(lines + ["}"]) + "\n"


# ---- rendering ------------------------------------------------------------------------------
@dataclass
class Drawing:
    """What :func:`draw` wrote: the DOT file, the picture (None when none could be rendered),
    the renderer used (``"dot"``, ``"matplotlib"`` or None) and a message for the user."""

    dot_path: str
    image_path: str | None
    renderer: str | None
    message: str

    def __str__(self) -> str:
        return self.message


def _has_matplotlib() -> bool:
    import importlib.util
    return importlib.util.find_spec("matplotlib") is not None


def render_dot(dot_text: str, out: str) -> None:
    """Render DOT text to ``out`` (format from its suffix) with Graphviz's ``dot``."""
    fmt = os.path.splitext(out)[1][1:].lower()
    exe = shutil.which("dot")
    if exe is None:
        raise UnsupportedError("Graphviz's `dot` program is not on PATH "
                               "(install it: apt-get install graphviz)")
    try:
        dpi = ["-Gdpi=110"] if fmt == "png" else []
        subprocess.run([exe, f"-T{fmt}", *dpi, "-o", out], input=dot_text.encode("utf-8"),
                       check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as e:
        raise UnsupportedError(f"dot -T{fmt} failed: "
                               f"{e.stderr.decode(errors='replace').strip()[-300:]}") from None


def _layers(graph) -> tuple[dict, list]:
    """Rank of each drawn node (longest path from an input) and the edges between them."""
    rank, edges = {}, []
    for v in graph.inputs:
        rank["in_" + v.name] = 0
    for node in graph.ops:
        srcs = [("in_" + v.name if v.producer is None else v.name, _is_residual(node, i))
                for i, v in enumerate(node.inputs) if not v.is_constant]
        rank[node.name] = 1 + max((rank[s] for s, _ in srcs), default=0)
        edges += [(s, node.name, dashed) for s, dashed in srcs]
    for k, v in enumerate(graph.outputs):
        src = "in_" + v.name if v.producer is None else v.name
        rank[f"out_{k}"] = rank[src] + 1
        edges.append((src, f"out_{k}", False))
    return rank, edges


def _mpl_panel(ax, graph, title: str) -> None:
    import networkx as nx
    rank, edges = _layers(graph)
    g = nx.DiGraph()
    for name, r in rank.items():
        g.add_node(name, layer=r)
    g.add_edges_from((s, t) for s, t, _ in edges)
    pos = nx.multipartite_layout(g, subset_key="layer", align="horizontal", scale=1.0)
    depth = max(rank.values()) or 1
    rows: dict[int, list] = {}  # one row per rank, top to bottom, centred
    for name in rank:
        rows.setdefault(rank[name], []).append(name)
    xy = {}
    for r, names in rows.items():
        names.sort(key=lambda n: pos[n][0])
        for i, n in enumerate(names):
            xy[n] = ((i - (len(names) - 1) / 2) * 1.7, float(depth - r))
    labels = {"in_" + v.name: f"{v.name}\n{shape_text(v.shape)}" for v in graph.inputs}
    colours = {n: _COLOURS["io"] for n in labels}
    for node in graph.ops:
        labels[node.name] = node_label(node)
        colours[node.name] = _COLOURS[_family(node.op)]
    for k, v in enumerate(graph.outputs):
        labels[f"out_{k}"] = f"output\n{shape_text(v.shape)}"
        colours[f"out_{k}"] = _COLOURS["io"]
    width = max(len(r) for r in rows.values()) * 1.7
    ax.set_xlim(-width / 2 - 0.6, width / 2 + 0.6)
    ax.set_ylim(-0.7, depth + 0.7)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    texts = {n: ax.text(x, y, labels[n], ha="center", va="center", fontsize=7, zorder=3,
                        bbox=dict(boxstyle="round,pad=0.3", fc=colours[n], ec="#666666", lw=0.6))
             for n, (x, y) in xy.items()}
    ax.figure.canvas.draw()  # measure the boxes, so edges start and end on their borders
    inv = ax.transData.inverted()
    box = {}
    for n, t in texts.items():
        (x0, y0), (x1, y1) = inv.transform(t.get_bbox_patch().get_window_extent())
        box[n] = (x0, x1, y0, y1)
    arrow = dict(arrowstyle="-|>", color="#555555", lw=0.8)
    skips = 0
    for s, t, dashed in edges:
        ls = "--" if dashed else "-"
        (sx, sy), (tx, ty) = xy[s], xy[t]
        between = [n for n, (_, y) in xy.items() if ty < y < sy and abs(xy[n][0] - sx) < 0.9]
        if abs(sx - tx) < 1e-9 and between:  # a skip edge: out to the right, down, back in
            right = max(box[n][1] for n in [s, t, *between]) + 0.12 + 0.1 * (skips % 2)
            skips += 1
            ax.plot([box[s][1], right, right], [sy, sy, ty], color="#555555", lw=0.8,
                    ls=ls, zorder=1)
            ax.annotate("", xy=(box[t][1], ty), xytext=(right, ty),
                        arrowprops=dict(arrow, linestyle=ls), zorder=1)
            continue
        ax.annotate("", xy=(tx, box[t][3]), xytext=(sx, box[s][2]),
                    arrowprops=dict(arrow, linestyle=ls), zorder=1)


def render_matplotlib(panels: list[tuple], out: str) -> None:
    """Draw ``[(graph, title), ...]`` side by side with a layered layout into ``out``."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    depth = max(max(_layers(g)[0].values()) for g, _ in panels) + 1
    widths = [max(_widths(g)) for g, _ in panels]
    fig, axes = plt.subplots(1, len(panels), squeeze=False, width_ratios=widths,
                             figsize=(max(4.0, 2.8 * sum(widths)), max(3.0, 0.62 * depth)))
    for ax, (g, title) in zip(axes[0], panels):
        _mpl_panel(ax, g, title)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def _widths(graph) -> list[int]:
    rank, _ = _layers(graph)
    counts: dict[int, int] = {}
    for r in rank.values():
        counts[r] = counts.get(r, 0) + 1
    return list(counts.values())


def draw(model, out: str, after_passes: bool = False, side_by_side: bool = False,
         opt_level: int = 2, renderer: str = "auto") -> Drawing:
    """Draw ``model`` (a model, graph or compiled model) to ``out``.

    ``out`` ending in ``.dot`` writes only DOT; ``.svg``/``.png``/``.pdf`` writes the picture
    and the DOT next to it. ``after_passes`` draws the optimised graph, ``side_by_side`` both.
    ``renderer`` is ``"auto"``, ``"dot"`` or ``"matplotlib"``."""
    from cnnc.compile import to_graph
    from cnnc.passes import optimize
    stem, ext = os.path.splitext(out)
    fmt = ext[1:].lower()
    if fmt != "dot" and fmt not in IMAGE_FORMATS:
        raise ConfigError(f"viz output {out!r} must end in .dot, .svg, .png or .pdf, got "
                          f"{ext or 'no suffix'!r}")
    if renderer not in ("auto", "dot", "matplotlib"):
        raise ConfigError(f"renderer must be 'auto', 'dot' or 'matplotlib', got {renderer!r}")
    before = to_graph(model)
    after = None
    if after_passes or side_by_side:
        after = before.copy()
        optimize(after, opt_level)
    if side_by_side:
        text = to_dot_side_by_side(before, after)
        panels = [(before, f"before passes: {len(before.ops)} ops"),
                  (after, f"after passes: {len(after.ops)} ops")]
    else:
        g = after if after is not None else before
        what = "after passes" if after is not None else "as built"
        text = to_dot(g, f"{g.name} ({what}): {len(g.ops)} ops")
        panels = [(g, f"{g.name} ({what}): {len(g.ops)} ops")]
    dot_path = out if fmt == "dot" else stem + ".dot"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(dot_path, "w", encoding="utf-8") as f:
        f.write(text)
    if fmt == "dot":
        return Drawing(dot_path, None, None, f"wrote {dot_path}")
    use_dot = renderer == "dot" or (renderer == "auto" and shutil.which("dot"))
    if use_dot:
        render_dot(text, out)
        return Drawing(dot_path, out, "dot", f"wrote {out} (Graphviz) and {dot_path}")
    if _has_matplotlib() and fmt in ("svg", "png", "pdf"):
        render_matplotlib(panels, out)
        return Drawing(dot_path, out, "matplotlib", f"wrote {out} (matplotlib layout) and "
                                                    f"{dot_path}")
    if renderer == "matplotlib":
        raise UnsupportedError("renderer 'matplotlib' was asked for but matplotlib is not "
                               "installed (pip install matplotlib)")
    return Drawing(dot_path, None, None,
                   f"wrote {dot_path}; neither Graphviz nor matplotlib is installed, so no "
                   f"{fmt.upper()} was drawn: install Graphviz (apt-get install graphviz) and "
                   f"run `dot -T{fmt} {dot_path} -o {out}`, or pip install \"cnnc[viz]\" (matplotlib)")
