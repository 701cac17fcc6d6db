"""The ONNX backend node test cases (``onnx.backend.test.case.node``) for CNN operators, run
through :mod:`cnnc.frontends.onnx.backend`.

Each case is one operator (or its function expansion, ``..._expanded``) with inputs and
expected outputs. A compiler specialises weights and shape arguments ahead of time, so every
graph input after the first is bound as an initializer and only the first is fed at run time.
Only float and bool cases are run: the first input and every output are float32 or bool (a
bool output must come back bool). Each case ends as

* ``pass``: every output matches (``rtol`` of the case; ``atol`` the case's, or 1e-5 of the
  expected output's scale when that is larger: cnnc computes in float32 and the expected
  values often come from float64 NumPy);
* ``unsupported``: cnnc raised :class:`~cnnc.errors.UnsupportedError` while importing or
  compiling (the reason is kept);
* ``wrong``: it ran and an output has the wrong shape or values;
* ``crash``: any other exception (an error type a valid model must never produce).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np

#: the operators whose node cases are run (a case counts when its operator is one of these)
CNN_OPS = frozenset("""
Conv ConvTranspose MaxPool AveragePool GlobalAveragePool GlobalMaxPool LpPool GlobalLpPool
BatchNormalization InstanceNormalization LayerNormalization GroupNormalization LRN
Relu LeakyRelu PRelu Elu Selu Celu Gelu Sigmoid HardSigmoid HardSwish Tanh Softplus Softsign
Mish Swish ThresholdedRelu Shrink Clip Softmax LogSoftmax Hardmax
Erf Sqrt Exp Log Neg Abs Reciprocal Floor Ceil Round Pow Add Sub Mul Div Sum Max Min Mean
ReduceMean ReduceMax ReduceMin ReduceSum ReduceSumSquare ReduceL1 ReduceL2 ReduceLogSumExp
Gemm MatMul Flatten Reshape Transpose Concat Split Slice Gather Pad Resize Upsample Expand
ConstantOfShape Tile DepthToSpace SpaceToDepth Squeeze Unsqueeze Identity Dropout
Less Greater Equal LessOrEqual GreaterOrEqual Not And Or Xor Where
""".split())

STATUSES = ("pass", "unsupported", "wrong", "crash")
FLOAT, BOOL = 1, 9  # TensorProto element types: cases whose data are float or bool


@dataclass
class Case:
    name: str
    op: str
    model: object        # onnx.ModelProto with inputs 1.. bound as initializers
    inputs: list         # the arrays fed at run time (the first graph input)
    outputs: list        # the expected outputs
    rtol: float
    atol: float


@dataclass
class Outcome:
    name: str
    op: str
    status: str
    reason: str = ""


_ALL = None


def _all_cases():
    global _ALL
    if _ALL is None:
        from onnx.backend.test.case.node import collect_testcases
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            _ALL = list(collect_testcases())
    return _ALL


def _op_of(case, by_name) -> str | None:
    nodes = case.model.graph.node
    if len(nodes) == 1 and not re.search(r"_expanded(_ver\d+)?$", case.name):
        return nodes[0].op_type
    base = re.sub(r"_expanded(_ver\d+)?$", "", case.name)
    return by_name.get(base)


def _array(onnx, v):
    return onnx.numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else v


_CASES: dict = {}


def cases(ops=CNN_OPS) -> list[Case]:
    """The float node cases of ``ops``, with every input after the first bound (built once
    per process; the models are shared, so callers must not modify them)."""
    key = frozenset(ops)
    if key not in _CASES:
        _CASES[key] = _build_cases(key)
    return _CASES[key]


def _build_cases(ops) -> list[Case]:
    import onnx

    from cnnc.frontends.onnx.backend import bind_inputs
    raw = _all_cases()
    by_name = {c.name: c.model.graph.node[0].op_type for c in raw
               if len(c.model.graph.node) == 1}
    out = []
    for c in raw:
        op = _op_of(c, by_name)
        if op not in ops or not c.data_sets:
            continue
        g = c.model.graph
        if not g.input or g.input[0].type.tensor_type.elem_type not in (FLOAT, BOOL) or any(
                o.type.tensor_type.elem_type not in (FLOAT, BOOL) for o in g.output):
            continue
        ins, outs = c.data_sets[0]
        ins = [_array(onnx, a) for a in ins]
        outs = [_array(onnx, a) for a in outs]
        # inputs are given for the present graph inputs, in order
        names = [vi.name for vi in g.input]
        model = bind_inputs(c.model, dict(zip(names[1:], ins[1:])))
        out.append(Case(c.name, op, model, ins[:1], outs, c.rtol, c.atol))
    return out


def _compare(got, want, rtol, atol) -> str | None:
    if len(got) != len(want):
        return f"{len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape:
            return f"output {i} has shape {g.shape}, expected {w.shape}"
        if (g.dtype == bool) != (w.dtype == bool):
            return f"output {i} has dtype {g.dtype}, expected {w.dtype}"
        wf = w.astype(np.float64)
        finite = np.abs(wf[np.isfinite(wf)])
        tol = max(atol, 1e-5 * float(finite.max(initial=0.0)))
        try:
            np.testing.assert_allclose(g.astype(np.float64), wf, rtol=rtol, atol=tol)
        except AssertionError as e:
            lines = [s.strip() for s in str(e).splitlines() if s.strip()]
            return f"output {i}: " + "; ".join(lines[1:4])
    return None


def run_case(case: Case, target: str = "numpy") -> Outcome:
    from cnnc.errors import UnsupportedError
    from cnnc.frontends.onnx.backend import CnncBackend
    try:
        rep = CnncBackend.prepare(case.model, target=target)
    except UnsupportedError as e:
        return Outcome(case.name, case.op, "unsupported", str(e))
    except Exception as e:  # noqa: BLE001 - the point is to classify every failure
        return Outcome(case.name, case.op, "crash", f"prepare: {type(e).__name__}: {e}")
    try:
        with np.errstate(all="ignore"):
            got = rep.run(case.inputs)
    except Exception as e:  # noqa: BLE001
        return Outcome(case.name, case.op, "crash", f"run: {type(e).__name__}: {e}")
    why = _compare(got, case.outputs, case.rtol, case.atol)
    return Outcome(case.name, case.op, "wrong" if why else "pass", why or "")


def run_suite(target: str = "numpy", selected=None) -> list[Outcome]:
    """Every case (or those named in ``selected``) on ``target``."""
    return [run_case(c, target) for c in cases()
            if selected is None or c.name in selected]


def counts(outcomes) -> dict[str, int]:
    return {s: sum(o.status == s for o in outcomes) for s in STATUSES}


def short_reason(reason: str) -> str:
    """A reason without the list of supported operators that import errors carry."""
    reason = re.sub(r" \(supported: [^)]*\)", "", reason)
    return reason.replace("|", "\\|").replace("\n", " ")


def render(numpy_outcomes, cpu_outcomes=None) -> str:
    """docs/ONNX_COVERAGE.md: counts per target, per operator, and every unsupported case
    with its reason."""
    import onnx
    lines = ["# ONNX node-test coverage", "",
             "Generated by `python tools/onnx_coverage.py` (do not edit by hand) from the "
             f"node cases of onnx {onnx.__version__} (`onnx.backend.test.case.node`) for CNN "
             "operators, float and bool cases only, every graph input after the first bound as an "
             "initializer (see `cnnc/frontends/onnx/conformance.py`).", "",
             "| target | cases | " + " | ".join(STATUSES) + " |",
             "| --- | --- | " + " | ".join("---" for _ in STATUSES) + " |"]
    targets = [("numpy", numpy_outcomes)]
    if cpu_outcomes is not None:
        targets.append(("cpu (cases that pass on numpy)", cpu_outcomes))
    for name, outs in targets:
        c = counts(outs)
        lines.append(f"| {name} | {len(outs)} | " + " | ".join(str(c[s]) for s in STATUSES)
                     + " |")
    lines += ["", "## Per operator (numpy target)", "",
              "| operator | " + " | ".join(STATUSES) + " |",
              "| --- | " + " | ".join("---" for _ in STATUSES) + " |"]
    for op in sorted({o.op for o in numpy_outcomes}):
        c = counts([o for o in numpy_outcomes if o.op == op])
        lines.append(f"| {op} | " + " | ".join(str(c[s]) for s in STATUSES) + " |")
    lines += ["", "## Unsupported cases (numpy target)", "", "| case | operator | reason |",
              "| --- | --- | --- |"]
    for o in sorted(numpy_outcomes, key=lambda o: (o.op, o.name)):
        if o.status == "unsupported":
            lines.append(f"| {o.name} | {o.op} | {short_reason(o.reason)} |")
    cpu_unsupported = [o for o in cpu_outcomes or [] if o.status == "unsupported"]
    if cpu_unsupported:
        lines += ["", "## Passing on numpy, unsupported on cpu", "", "| case | operator | reason |",
                  "| --- | --- | --- |"]
        lines += [f"| {o.name} | {o.op} | {short_reason(o.reason)} |" for o in cpu_unsupported]
    bad = [o for outs in (numpy_outcomes, cpu_outcomes or []) for o in outs
           if o.status in ("wrong", "crash")]
    if bad:
        lines += ["", "## Wrong answers and crashes", "", "| case | status | reason |",
                  "| --- | --- | --- |"]
        lines += [f"| {o.name} | {o.status} | {short_reason(o.reason)} |" for o in bad]
    return "\n".join(lines) + "\n"
