"""The ONNX backend node cases for CNN operators through cnnc's ``onnx.backend`` adapter
(cnnc/frontends/onnx/conformance.py says how cases are chosen, bound and classified).

numpy target: every case; no wrong answer, no crash, at least ``NUMPY_PASS_FLOOR`` passes.
cpu target (Numba compiles every case's kernels: several seconds a case): the first
``CPU_CASES_PER_OP`` cases of each operator that pass on numpy must pass on cpu too.
``tools/onnx_coverage.py`` runs the cpu target on every case numpy passes and writes
docs/ONNX_COVERAGE.md, whose list of unsupported cases must be the current one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

from cnnc.errors import ConfigError, ShapeError, UnsupportedError  # noqa: E402
from cnnc.frontends.onnx import conformance as C  # noqa: E402
from cnnc.frontends.onnx.backend import CnncBackend, bind_inputs  # noqa: E402

NUMPY_PASS_FLOOR = 554
CPU_CASES_PER_OP = 1
DOC = Path(__file__).resolve().parents[2] / "docs" / "ONNX_COVERAGE.md"


@pytest.fixture(scope="module")
def numpy_outcomes():
    return C.run_suite("numpy")


def _report(outcomes, statuses=("wrong", "crash")) -> str:
    return "\n".join(f"{o.status}: {o.name}: {o.reason}" for o in outcomes
                     if o.status in statuses)


def test_numpy_target_has_no_wrong_answer_or_crash(numpy_outcomes):
    c = C.counts(numpy_outcomes)
    assert c["wrong"] == 0 and c["crash"] == 0, _report(numpy_outcomes)
    assert c["pass"] >= NUMPY_PASS_FLOOR, c
    assert sum(c.values()) == len(numpy_outcomes)


def test_every_case_is_a_cnn_operator_with_float_or_bool_data():
    cases = C.cases()
    assert cases and all(c.op in C.CNN_OPS for c in cases)
    assert all(np.asarray(c.inputs[0]).dtype in (np.float32, np.bool_) for c in cases)
    assert any(np.asarray(c.inputs[0]).dtype == np.bool_ for c in cases)
    assert len({c.name for c in cases}) == len(cases)


@pytest.mark.slow
@pytest.mark.numba
def test_cpu_target_passes_what_numpy_passes(numpy_outcomes):
    passed = sorted((o.op, o.name) for o in numpy_outcomes if o.status == "pass")
    chosen, per_op = set(), {}
    for op, name in passed:
        if per_op.get(op, 0) < CPU_CASES_PER_OP:
            chosen.add(name)
            per_op[op] = per_op.get(op, 0) + 1
    outcomes = C.run_suite("cpu", chosen)
    assert len(outcomes) == len(chosen)
    assert [o for o in outcomes if o.status != "pass"] == [], _report(
        outcomes, ("unsupported", "wrong", "crash"))


def test_coverage_doc_lists_the_current_unsupported_cases(numpy_outcomes):
    assert DOC.exists(), "run python tools/onnx_coverage.py"

    def section(text):
        lines = text.split("## Unsupported cases (numpy target)", 1)[1].split("\n## ")[0]
        return [s for s in lines.splitlines() if s.startswith("| test_")]

    fresh = section(C.render(numpy_outcomes))
    assert section(DOC.read_text(encoding="utf-8")) == fresh, (
        "docs/ONNX_COVERAGE.md is stale: run python tools/onnx_coverage.py")


# ---- the adapter itself ----------------------------------------------------------------------
def _gemm_case():
    return next(c for c in C.cases() if c.name == "test_gemm_default_matrix_bias")


def test_prepare_and_run_by_position_and_by_name():
    case = _gemm_case()
    rep = CnncBackend.prepare(case.model)
    (y,) = rep.run(case.inputs)
    np.testing.assert_allclose(y, case.outputs[0], rtol=1e-5, atol=1e-6)
    (z,) = rep.run({rep.input_names[0]: case.inputs[0]})
    np.testing.assert_array_equal(y, z)
    (w,) = CnncBackend.run_model(case.model, case.inputs)
    np.testing.assert_array_equal(y, w)
    with pytest.raises(ShapeError, match="were not given"):
        rep.run({"nope": case.inputs[0]})


def test_devices_and_targets_are_checked():
    assert CnncBackend.supports_device("CPU") and not CnncBackend.supports_device("TPU")
    case = _gemm_case()
    with pytest.raises(ConfigError, match="device"):
        CnncBackend.prepare(case.model, device="TPU")
    with pytest.raises(ConfigError, match="does not run on device"):
        CnncBackend.prepare(case.model, device="CPU", target="cuda")
    with pytest.raises(ConfigError, match="unknown option"):
        CnncBackend.prepare(case.model, speed=3)


def test_bind_inputs_moves_inputs_to_initializers():
    onnx = pytest.importorskip("onnx")
    raw = next(c for c in C._all_cases() if c.name == "test_gemm_default_matrix_bias")
    names = [vi.name for vi in raw.model.graph.input]
    ins = [onnx.numpy_helper.to_array(a) if isinstance(a, onnx.TensorProto) else a
           for a in raw.data_sets[0][0]]
    bound = bind_inputs(raw.model, dict(zip(names[1:], ins[1:])))
    assert [vi.name for vi in bound.graph.input] == names[:1]
    assert {t.name for t in bound.graph.initializer} == set(names[1:])
    assert [vi.name for vi in raw.model.graph.input] == names  # the original is untouched
    with pytest.raises(ConfigError, match="not graph inputs"):
        bind_inputs(raw.model, {"nope": ins[0]})


def test_an_unsupported_case_is_classified_with_its_reason():
    case = next(c for c in C.cases() if c.name == "test_convtranspose_3d")  # 2-D only
    with pytest.raises(UnsupportedError, match="ConvTranspose"):
        CnncBackend.prepare(case.model)
    out = C.run_case(case)
    assert out.status == "unsupported" and "ConvTranspose" in out.reason
