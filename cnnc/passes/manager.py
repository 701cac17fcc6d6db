"""The pass manager: pipelines per opt level, timing, verification between passes, IR dumps.

    report = run_pipeline(graph, default_pipeline(2), verify_each=True, print_after="fuse_epilogue")
    print(report.summary())

A :class:`Pass` has a ``name`` and ``run(graph, ctx) -> bool`` (whether it changed the graph).
With ``verify_each`` the verifier runs after every pass; a failure names that pass and the
passes that ran before it.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from cnnc.errors import CnncError, ConfigError, VerificationError
from cnnc.ir.verify import verify


class Pass:
    """One step of a pipeline. Subclasses set ``name`` and implement :meth:`run`."""

    name = "pass"

    def run(self, graph, ctx: "PassContext") -> bool:
        raise NotImplementedError(f"pass {self.name!r} has no run()")

    def __repr__(self) -> str:
        return f"<Pass {self.name}>"


@dataclass
class Remark:
    """Why a rewrite did not happen. Names are resolved when the report is finalised (after
    renumbering) while the node and the values it mentions are still in the graph; otherwise
    the text captured when the remark was made is kept."""

    pass_name: str
    node: object
    template: str
    values: tuple
    node_text: str = ""
    message_text: str = ""

    def capture(self) -> None:
        self.node_text = self.node.describe()
        self.message_text = self.template.format(*(f"%{v.name}" for v in self.values))

    def as_tuple(self) -> tuple[str, str, str]:
        return (self.pass_name, self.node_text, self.message_text)


class PassContext:
    """What passes share: the opt level and the remarks of the current pass."""

    def __init__(self, opt_level: int = 2):
        self.opt_level = opt_level
        self.remarks: list[Remark] = []
        #: id(value) -> (value, the value that replaced it): remarks follow it to the final
        #: graph; the replaced value stays referenced so that its id is never reused
        self.forward: dict[int, tuple] = {}

    def remark(self, pass_name: str, node, template: str, values=()) -> None:
        r = Remark(pass_name, node, template, tuple(values))
        r.capture()
        self.remarks.append(r)


@dataclass
class PassResult:
    name: str
    changed: bool
    seconds: float
    nodes_before: int
    nodes_after: int
    remarks: list = field(default_factory=list)


@dataclass
class PipelineReport:
    """What a pipeline run did; ``summary()`` is the text of ``cnnc compile --stats``."""

    opt_level: int
    results: list[PassResult] = field(default_factory=list)
    remarks: list[tuple[str, str, str]] = field(default_factory=list)
    ops_before: Counter = field(default_factory=Counter)
    ops_after: Counter = field(default_factory=Counter)
    fused_groups: list[str] = field(default_factory=list)
    plan: object = None
    bindings: dict = field(default_factory=lambda: {"N": 1})

    @property
    def changed(self) -> bool:
        return any(r.changed for r in self.results)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.results)

    @property
    def stats(self) -> str:
        return self.summary()

    def summary(self) -> str:
        lines = [f"opt_level {self.opt_level}: {sum(self.ops_before.values())} ops before, "
                 f"{sum(self.ops_after.values())} after (constants not counted)"]
        lines.append("  op counts (before -> after):")
        for op in sorted(set(self.ops_before) | set(self.ops_after)):
            lines.append(f"    {op:<18} {self.ops_before[op]:>4} -> {self.ops_after[op]:>4}")
        if self.fused_groups:
            lines.append(f"  fused groups ({len(self.fused_groups)}):")
            for g, n in sorted(Counter(self.fused_groups).items()):
                lines.append(f"    {n:>4} x {g}")
        lines.append("  passes (time, changed, nodes before -> after):")
        for r in self.results:
            lines.append(f"    {r.name:<16} {r.seconds * 1e3:8.2f} ms  "
                         f"{'changed' if r.changed else '-      '}  "
                         f"{r.nodes_before:>4} -> {r.nodes_after:>4}")
        lines.append(f"    {'total':<16} {self.seconds * 1e3:8.2f} ms")
        if self.plan is not None:
            b = dict(self.bindings)
            peak, naive = self.plan.peak_bytes(b), self.plan.naive_bytes(b)
            ratio = f" ({peak / naive:.0%} of no reuse)" if naive else ""
            lines.append(f"  memory ({', '.join(f'{k}={v}' for k, v in b.items())}): planned peak "
                         f"{_bytes(peak)} in {self.plan.num_buffers} buffers vs "
                         f"{_bytes(naive)} without reuse{ratio}")
        if self.remarks:
            lines.append(f"  remarks: {len(self.remarks)} (see remarks_text())")
        return "\n".join(lines)

    def remarks_text(self) -> str:
        if not self.remarks:
            return "no remarks"
        return "\n".join(f"[{p}] {node}: {msg}" for p, node, msg in self.remarks)


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def op_counts(graph) -> Counter:
    return Counter(n.op for n in graph.ops)


def default_pipeline(opt_level: int) -> list[Pass]:
    """0: verify + shape inference; 1: + cleanup; 2: + pad/BN folding, activation idioms,
    fusion, cleanup again."""
    from cnnc.passes.cancel_transposes import CancelTransposes
    from cnnc.passes.constant_fold import ConstantFold
    from cnnc.passes.cse import CSE
    from cnnc.passes.dce import DCE
    from cnnc.passes.eliminate_noops import EliminateNoops
    from cnnc.passes.fold_batchnorm import FoldBatchNorm
    from cnnc.passes.fold_pad import FoldPad
    from cnnc.passes.fuse_epilogue import FuseEpilogue
    from cnnc.passes.idioms import Idioms
    from cnnc.passes.infer_shapes import InferShapes, Verify
    if opt_level not in (0, 1, 2):
        raise ConfigError(f"opt_level must be 0, 1 or 2, got {opt_level!r}")

    def cleanup():
        return [CancelTransposes(), EliminateNoops(), ConstantFold(), CSE(), DCE()]

    passes: list[Pass] = [Verify(), InferShapes()]
    if opt_level >= 1:
        passes += cleanup()
    if opt_level >= 2:
        passes += [FoldPad(), FoldBatchNorm(), Idioms(), FuseEpilogue(), *cleanup()]
    return passes


def _check_print_after(print_after, passes) -> None:
    if print_after is None or print_after == "all":
        return
    names = list(dict.fromkeys(p.name for p in passes))
    if not isinstance(print_after, str) or print_after not in names:
        raise ConfigError(f"print_after must be None, 'all' or one of the pass names {names}, "
                          f"got {print_after!r}")


def run_pipeline(graph, passes: list[Pass], *, opt_level: int = 2, print_after=None,
                 verify_each: bool = False, stream=None) -> PipelineReport:
    """Run ``passes`` over ``graph`` in place, then renumber it and plan its memory."""
    from cnnc.passes.memory_plan import plan_memory
    _check_print_after(print_after, passes)
    stream = stream if stream is not None else sys.stdout
    ctx = PassContext(opt_level)
    report = PipelineReport(opt_level, ops_before=op_counts(graph))
    done: list[str] = []
    for i, p in enumerate(passes):
        before = len(graph.nodes)
        first_remark = len(ctx.remarks)
        t0 = time.perf_counter()
        try:
            changed = bool(p.run(graph, ctx))
        except CnncError:
            raise
        except Exception as e:  # a bug in a pass: say which one
            raise CnncError(f"pass {p.name!r} (#{i}) failed: {type(e).__name__}: {e}") from e
        dt = time.perf_counter() - t0
        done.append(p.name)
        if verify_each:
            try:
                verify(graph, f"after pass {p.name!r}")
            except VerificationError as e:
                ran = ", ".join(done[:-1]) or "none"
                raise VerificationError(f"IR is invalid after pass {p.name!r} (#{i}; passes "
                                        f"before it: {ran}): {e}") from e
        report.results.append(PassResult(p.name, changed, dt, before, len(graph.nodes),
                                         ctx.remarks[first_remark:]))
        if print_after == "all" or print_after == p.name:
            print(f"// IR after pass {p.name} (#{i})", file=stream)
            print(graph, file=stream)
    graph.renumber()
    report.remarks = _final_remarks(graph, ctx)
    report.ops_after = op_counts(graph)
    report.fused_groups = [_group_name(n) for n in graph.ops
                           if n.op in ("conv2d_fused", "dense_fused")]
    report.plan = plan_memory(graph)
    return report


def _final_remarks(graph, ctx: PassContext) -> list[tuple[str, str, str]]:
    """Remarks named after the final (renumbered) graph: a node or value that was replaced is
    followed to its replacement; when that is gone too, the text captured at the time stays."""
    alive = {id(n.output) for n in graph.nodes} | {id(v) for v in graph.inputs}

    def follow(v):
        seen = 0
        while id(v) in ctx.forward and seen < 10_000:
            v, seen = ctx.forward[id(v)][1], seen + 1
        return v

    out: dict[tuple, None] = {}
    for r in ctx.remarks:
        node_v = follow(r.node.output)
        values = tuple(follow(v) for v in r.values)
        if id(node_v) in alive and all(id(v) in alive for v in values):
            r = Remark(r.pass_name, node_v.producer, r.template, values)
            r.capture()
        out[r.as_tuple()] = None
    return list(out)


def _group_name(node) -> str:
    base = node.op.replace("_fused", "")
    steps = [s[0] for s in node.attrs["epilogue"]]
    return "+".join([base, "bias", *steps])
