"""Differential debugging: which node, or which pass, first makes a result wrong.

    r = cnnc.debug.compare(model, x, target="cpu")   # compiled vs float64 reference, per node
    print(r)          # "first divergence at %12 conv2d_fused 3x3/1 32→32 [add,relu] ..."
    b = cnnc.debug.bisect_passes(model, x)           # the pipeline one pass at a time
    print(b)          # "first pass that changes the result: fold_batchnorm (#9) ..."

For the Numba CPU target, :class:`ForwardStepper` runs the generated ``forward`` one
statement at a time in Python (same kernels, same arena), so every kernel's output buffer can
be read right after the kernel wrote it, before a later node reuses the buffer. It is also
what :mod:`cnnc.profile` times.
"""

from __future__ import annotations

import ast
import contextlib
from dataclasses import dataclass, field

import numpy as np

from cnnc.errors import CnncError, UnsupportedError


# ---- stepping through the generated forward ----------------------------------------------
@dataclass
class Step:
    """One statement of ``forward``. Kernel calls have ``kernel``, ``node`` (the IR node the
    call lowers), ``args`` (compiled argument tuple) and ``last`` (last call of that node)."""

    text: str
    code: object
    kernel: str | None = None
    node: object = None
    args: object = None
    last: bool = False
    #: a ``for`` loop over batch chunks (a Winograd conv's two kernels): ``code`` evaluates
    #: its range, ``target`` names its variable and ``body`` lists its statements
    target: str | None = None
    body: list = field(default_factory=list)
    in_loop: bool = False


class ForwardStepper:
    """The ``forward`` of a Numba CPU model as a list of :class:`Step`.

    :meth:`run` binds the same arguments the compiled model passes (it stands in for
    ``forward`` during one ``model.run`` call) and executes each statement with the generated
    module's globals; ``on_call(step, fn, args)`` runs each kernel call (default: call it once)
    and ``after_node(node, output)`` sees each node's output buffer after its last kernel."""

    def __init__(self, compiled):
        lowered = getattr(compiled, "lowered", None)
        module = getattr(compiled, "module", None)
        if lowered is None or module is None or not hasattr(lowered, "kernel_nodes"):
            raise UnsupportedError(f"cannot step through {compiled!r}: only Numba CPU models "
                                   f"(target 'cpu') expose a per-kernel forward")
        self.compiled = compiled
        tree = ast.parse(compiled.source())
        fns = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        fn = fns.get("forward")
        if fn is None:
            raise CnncError("the generated module has no forward function")
        self.params = [a.arg for a in fn.args.args]
        self.result = None
        body = _inline_stages(fn.body, fns, getattr(lowered, "stages", {}))
        for stmt in body:
            if isinstance(stmt, ast.Return):
                self.result = compile(ast.Expression(stmt.value), "<forward>", "eval")
        body = [stmt for stmt in body if not isinstance(stmt, ast.Return)]
        self.steps: list[Step] = _parse(body, set(lowered.kernel_names))
        calls = self.calls
        if len(calls) != len(lowered.kernel_nodes):
            raise CnncError(f"forward has {len(calls)} kernel calls but the lowering recorded "
                            f"{len(lowered.kernel_nodes)}")
        for step, node in zip(calls, lowered.kernel_nodes):
            step.node = node
        for a, b in zip(calls, calls[1:] + [None]):
            a.last = b is None or b.node is not a.node

    def _globals(self) -> dict:
        """The generated module's globals, with the interpreter's twin of each intrinsic."""
        from cnnc.backends.numba_cpu.views import py_view
        return {**vars(self.compiled.module), "view": py_view}

    @property
    def calls(self) -> list[Step]:
        """The kernel calls, loop bodies once, in the order of the lowering's kernels."""
        return _calls(self.steps)

    def _walk(self, steps, env, at=None):
        """Run the statements of ``steps`` that are not kernel calls in ``env`` and yield the
        kernel calls (a loop's once per iteration), and ``None`` after each loop; ``at`` (a
        list) holds the statement being run."""
        for step in steps:
            if at is not None:
                at[:] = [step]
            if step.target is not None:
                for value in eval(step.code, env):
                    env[step.target] = value
                    yield from self._walk(step.body, env, at)
                yield None
            elif step.kernel is None:
                exec(step.code, env)
            else:
                yield step

    def execute(self, bound: dict, on_call=None, after_node=None):
        env = self._globals()
        env.update(bound)
        lowered = self.compiled.lowered
        done = {}   # nodes whose last kernel runs in a loop: shown once the loop is over
        for step in self._walk(self.steps, env):
            if step is None:
                for node, args in done.values():
                    after_node(node, _output_buffer(env, node, args, lowered))
                done = {}
                continue
            fn, args = env[step.kernel], eval(step.args, env)
            if on_call is None:
                fn(*args)
            else:
                on_call(step, fn, args)
            if step.last and after_node is not None:
                if step.in_loop:
                    done[id(step.node)] = step.node, args
                else:
                    after_node(step.node, _output_buffer(env, step.node, args, lowered))
        return eval(self.result, env) if self.result is not None else ()

    def locate_failure(self, args) -> tuple[object, str] | None:
        """Run ``forward(*args)`` statement by statement; (node, statement) of the first one
        that raises (a statement that is not a kernel call is charged to the node of the next
        kernel call), or None when every statement runs."""
        env = self._globals()
        env.update(zip(self.params, args))
        at = []
        try:
            for step in self._walk(self.steps, env, at):
                if step is not None:
                    env[step.kernel](*eval(step.args, env))
        except Exception:  # noqa: BLE001 - the caller reports the original exception
            flat = _flat(self.steps)
            node = next((s.node for s in flat[flat.index(at[0]):] if s.kernel), None)
            return node, at[0].text
        return None

    def run(self, arrays, bindings, on_call=None, after_node=None):
        """Run the model once, statement by statement; returns its outputs (copies)."""
        model = self.compiled
        done = []

        def stand_in(*args):
            if len(args) != len(self.params):
                raise CnncError(f"forward takes {len(self.params)} arguments, the model "
                                f"passed {len(args)}")
            done.append(True)
            return self.execute(dict(zip(self.params, args)), on_call, after_node)

        if hasattr(model, "_forward"):
            own = "_forward" in vars(model)
            saved = vars(model).get("_forward")
            model._forward = stand_in
            untimed = getattr(model, "untimed", contextlib.nullcontext)
            try:
                with untimed():
                    outs = model.run(arrays, bindings)
            finally:
                if own:
                    model._forward = saved
                else:
                    del model._forward
            if done:
                return outs
        # the model does not call ``_forward``: bind the prototype's argument order
        arena = model._arena(bindings)
        arena = arena if isinstance(arena, tuple) else (arena,)
        outs = stand_in(*arrays, *arena, *model._weights)
        return [np.array(y, dtype=np.float32, copy=True) for y in outs]


def _flat(steps) -> list[Step]:
    """``steps`` with each loop followed by its statements, in order."""
    return [f for s in steps for f in [s, *_flat(s.body)]]


def _calls(steps) -> list[Step]:
    """The kernel calls among ``steps`` and in their loops, in order."""
    return [s for s in _flat(steps) if s.kernel]


def _parse(stmts, kernels, in_loop=False) -> list[Step]:
    """:class:`Step` s of ``forward``'s statements ``stmts`` (ast), kernel calls of the names in
    ``kernels`` marked (their nodes are set by the caller, in call order)."""
    steps = []
    for stmt in stmts:
        if isinstance(stmt, ast.For):   # a loop over batch chunks
            steps.append(Step(f"for {ast.unparse(stmt.target)} in {ast.unparse(stmt.iter)}",
                              compile(ast.Expression(stmt.iter), "<forward>", "eval"),
                              target=stmt.target.id, body=_parse(stmt.body, kernels, True)))
            continue
        step = Step(ast.unparse(stmt), compile(ast.Module([stmt], []), "<forward>", "exec"),
                    in_loop=in_loop)
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) \
                and call.func.id in kernels:
            step.kernel = call.func.id
            tup = ast.Tuple([*call.args], ast.Load())
            step.args = compile(ast.fix_missing_locations(ast.Expression(tup)),
                                "<forward>", "eval")
        steps.append(step)
    return steps


def _inline_stages(body, fns, stages) -> list:
    """``forward``'s statements with each call of a stage (backends/numba_cpu/stages.py)
    replaced by the stage's own statements: a stage's parameters are named like the
    ``forward`` variables it is called with, and its locals like ``forward``'s own."""
    out = []
    for stmt in body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) \
                and call.func.id in stages:
            out.extend(fns[call.func.id].body)
        else:
            out.append(stmt)
    return out


def image_in_halo(buf, h, shape):
    """The (n, rows, cols, c) images (``shape`` without n) held in the zero-bordered halo
    ``buf`` (n, h.rows, h.width) of geometry ``h`` (backends/numba_cpu/convgen.Halo), as a
    view."""
    rows, cols, c = shape
    first = h.left * c
    return buf[:, h.top:h.top + rows, first:first + cols * c].reshape(-1, rows, cols, c)


def _output_buffer(env, node, args, lowered=None):
    """The array a node's kernel wrote: the ``v<name>`` local of the generated forward, or the
    image inside the zero-bordered halo a conv stored it in alone (lower.Lowered.halo_only)."""
    held = getattr(lowered, "halo_only", {}).get(node.output.name)
    if held is not None:
        return image_in_halo(env[held[0]], held[1], node.output.shape[1:])
    buf = env.get(f"v{node.output.name}")
    if isinstance(buf, np.ndarray):
        return buf
    want = len(node.output.shape)
    for a in reversed(args):  # otherwise the last argument of the output's rank
        if isinstance(a, np.ndarray) and a.ndim == want:
            return a
    raise CnncError(f"cannot find the output buffer of {node.describe()}")


# ---- compare: compiled vs reference, node by node ------------------------------------------
def rel_error(got, ref) -> float:
    """max |got - ref| / max |ref| (inf on a shape mismatch or a non-finite value)."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return float("inf")
    if not np.all(np.isfinite(got)):
        return float("inf")
    return float(np.max(np.abs(got - ref), initial=0.0) / max(np.max(np.abs(ref), initial=0.0),
                                                              1e-30))


@dataclass
class NodeCheck:
    """One node's output checked against the reference."""

    name: str
    op: str
    label: str
    layer: str | None
    error: float
    shape: tuple
    ref_shape: tuple
    worst: tuple = ()          # index of the largest difference
    got: float = 0.0
    expected: float = 0.0

    def describe(self) -> str:
        layer = f" (layer {self.layer!r})" if self.layer else ""
        text = (f"%{self.name} {self.label}{layer}: relative error {self.error:.2e}, "
                f"output {self.shape}")
        if self.shape != self.ref_shape:
            return text + f" but the reference has {self.ref_shape}"
        if self.worst:
            text += (f"; worst at {self.worst}: got {self.got:.6g}, expected "
                     f"{self.expected:.6g}")
        return text


@dataclass
class CompareResult:
    """What :func:`compare` found; ``ok`` is False when some node diverged."""

    model: str
    target: str
    tol: float
    checks: list[NodeCheck] = field(default_factory=list)
    first: NodeCheck | None = None
    output_error: float = 0.0
    end_to_end_error: float | None = None   # vs the reference of the unoptimised graph
    per_node: bool = True

    @property
    def ok(self) -> bool:
        e2e = self.end_to_end_error
        return self.first is None and self.output_error <= self.tol and (
            e2e is None or e2e <= self.tol)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        head = f"compare {self.model!r} on target {self.target!r} (tolerance {self.tol:g})"
        lines = [head]
        if not self.per_node:
            lines.append(f"  no per-node trace for target {self.target!r}: outputs only")
        if self.first is not None:
            before = self.checks[:self.checks.index(self.first)]
            agree = max((c.error for c in before), default=0.0)
            lines.append(f"  FIRST DIVERGENCE at node {self.first.describe()}")
            lines.append(f"  the {len(before)} node(s) before it agree (max relative error "
                         f"{agree:.2e})")
        elif self.per_node:
            worst = max(self.checks, key=lambda c: c.error, default=None)
            if worst is not None:
                lines.append(f"  all {len(self.checks)} nodes agree; largest relative error "
                             f"{worst.error:.2e} at %{worst.name} {worst.label}")
        lines.append(f"  output: relative error {self.output_error:.2e} vs the float64 "
                     f"reference of the optimised graph")
        if self.end_to_end_error is not None:
            lines.append(f"  end to end: relative error {self.end_to_end_error:.2e} vs the "
                         f"float64 reference of the unoptimised graph")
            if self.first is None and self.end_to_end_error > self.tol:
                lines.append("  every kernel matches the optimised graph but the optimised "
                             "graph does not match the model: a pass changed the result "
                             "(run cnnc.debug.bisect_passes)")
        lines.append("  OK" if self.ok else "  MISMATCH")
        return "\n".join(lines)


def _check(node, got, ref) -> NodeCheck:
    from cnnc.viz import op_label
    got = np.asarray(got)
    ref = np.asarray(ref)
    c = NodeCheck(node.output.name, node.op, op_label(node), node.layer, rel_error(got, ref),
                  tuple(got.shape), tuple(ref.shape))
    if got.shape == ref.shape and got.size:
        diff = np.abs(got.astype(np.float64) - ref)
        diff[~np.isfinite(diff)] = np.inf
        idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
        c.worst = tuple(int(i) for i in idx)
        c.got, c.expected = float(got[idx]), float(ref[idx])
    return c


def compare(model, x, target: str = "cpu", tol: float = 1e-4, opt_level: int = 2,
            stop_at_first: bool = False) -> CompareResult:
    """Run ``model`` compiled for ``target`` and the float64 reference node by node.

    ``model`` is a model or graph (compiled here) or an already compiled model (its
    optimised graph is the reference). ``x`` is one input array or a list of them. The
    result names the first node whose output is off by more than ``tol`` (relative to the
    largest magnitude of the reference output)."""
    import cnnc
    from cnnc.backends.base import CompiledModel, prepare_inputs
    from cnnc.backends.reference import evaluate
    from cnnc.compile import to_graph
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    original = None
    if isinstance(model, CompiledModel):
        compiled = model
    else:
        original = to_graph(model)
        compiled = cnnc.compile(original.copy(), target=target, opt_level=opt_level)
    graph = compiled.graph
    arrays, bindings = prepare_inputs(graph, xs)
    trace: dict = {}
    ref_outs = evaluate(graph, prepare_inputs(graph, xs, np.float64)[0], np.float64,
                        trace=trace)
    result = CompareResult(graph.name, compiled.target, tol)

    def after_node(node, out):
        if stop_at_first and result.first is not None:
            return
        check = _check(node, out, trace[node.output.name])
        result.checks.append(check)
        if result.first is None and not check.error <= tol:
            result.first = check

    if compiled.target == "cpu":
        outs = ForwardStepper(compiled).run(arrays, bindings, after_node=after_node)
    elif compiled.target == "numpy":
        f32: dict = {}
        outs = evaluate(graph, arrays, np.float32, trace=f32)
        for node in graph.ops:
            after_node(node, f32[node.output.name])
    else:
        result.per_node = False
        outs = compiled.run(arrays, bindings)
    result.output_error = max(rel_error(o, r) for o, r in zip(outs, ref_outs))
    if original is not None:
        ref0 = evaluate(original, prepare_inputs(original, xs, np.float64)[0], np.float64)
        result.end_to_end_error = max(rel_error(o, r) for o, r in zip(outs, ref0))
    return result


# ---- bisect the pass pipeline -------------------------------------------------------------
@dataclass
class PassStep:
    index: int
    name: str
    changed: bool
    ops: int
    error: float
    failure: str = ""


@dataclass
class BisectResult:
    """:func:`bisect_passes`'s answer: every pass with the error after it, and the culprit."""

    model: str
    tol: float
    steps: list[PassStep] = field(default_factory=list)
    culprit: PassStep | None = None

    @property
    def ok(self) -> bool:
        return self.culprit is None

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        lines = [f"bisect the passes of {self.model!r} (float64 reference, tolerance "
                 f"{self.tol:g})", "   #  pass                changed  ops   rel. error"]
        for s in self.steps:
            mark = "  <-- first to change the result" if s is self.culprit else ""
            lines.append(f"  {s.index:>2}  {s.name:<18}  {'yes' if s.changed else '-':<7} "
                         f"{s.ops:>4}   {s.error:.2e}{mark}" + (f"  {s.failure}" if s.failure
                                                                else ""))
        if self.culprit is None:
            lines.append("  every pass preserves the result")
        else:
            lines.append(f"  CULPRIT: pass {self.culprit.name!r} (#{self.culprit.index})")
        return "\n".join(lines)


def bisect_passes(model, x, tol: float = 1e-6, opt_level: int = 2,
                  passes=None) -> BisectResult:
    """Run the pipeline (``passes`` or ``default_pipeline(opt_level)``) one pass at a time,
    evaluating the graph in float64 after each; name the first pass after which the output
    differs from the unoptimised graph's by more than ``tol`` (or that breaks the IR)."""
    from cnnc.backends.base import prepare_inputs
    from cnnc.backends.reference import evaluate
    from cnnc.compile import to_graph
    from cnnc.ir.verify import verify
    from cnnc.passes import PassContext, default_pipeline
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    graph = to_graph(model)
    arrays = prepare_inputs(graph, xs, np.float64)[0]
    ref = evaluate(graph, arrays, np.float64)
    passes = list(passes) if passes is not None else default_pipeline(opt_level)
    ctx = PassContext(opt_level)
    result = BisectResult(graph.name, tol)
    for i, p in enumerate(passes):
        failure = ""
        changed = False
        try:
            changed = bool(p.run(graph, ctx))
            verify(graph, f"after pass {p.name!r}")
            outs = evaluate(graph, arrays, np.float64)
            err = max(rel_error(o, r) for o, r in zip(outs, ref))
        except Exception as e:  # a pass that raises or breaks the IR is the culprit too
            failure, err = f"{type(e).__name__}: {e}", float("inf")
        step = PassStep(i, p.name, changed, len(graph.ops), err, failure)
        result.steps.append(step)
        if not err <= tol:
            result.culprit = step
            break
    return result
