"""Hypothesis fuzzing: random layer arguments and stacks, random call inputs, mutated ONNX and
artifact bytes. Every case ends in a result or a CnncError, never another exception.
(``python tools/fuzz.py --minutes N`` runs the same generators for longer.)"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzzgen as F

FAST = settings(deadline=None, max_examples=200, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def _ok(label):
    assert not label.startswith("RAW"), label


@FAST
@given(st.data())
def test_layer_arguments(data):
    _ok(F.classify(lambda: F.case_layer_args(F.HypothesisChooser(data))))


@settings(FAST, max_examples=300)
@given(st.data())
def test_random_stacks_compile_run_and_match_the_reference(data):
    _ok(F.classify(lambda: F.case_stack(F.HypothesisChooser(data))))


@pytest.mark.parametrize("target", ["numpy", "cpu"])
@settings(FAST, max_examples=150)
@given(data=st.data())
def test_call_inputs(compiled, target, data):
    _ok(F.classify(lambda: F.case_call(F.HypothesisChooser(data), compiled[target])))


@pytest.fixture(scope="module")
def onnx_seeds():
    pytest.importorskip("onnx")
    return F.onnx_seeds()


@settings(FAST, max_examples=400)
@given(data=st.data())
def test_mutated_onnx_bytes(onnx_seeds, data):
    c = F.HypothesisChooser(data)
    _, mutated = F.mutate(c, c.choice(onnx_seeds))
    _ok(F.classify(lambda: F.case_onnx(c, mutated)))


@pytest.fixture(scope="module")
def artifact_seed(tmp_path_factory):
    return F.artifact_seed(tmp_path_factory.mktemp("seed"))


@settings(FAST, max_examples=200)
@given(data=st.data())
def test_mutated_artifact_bytes(artifact_seed, tmp_path_factory, data):
    c = F.HypothesisChooser(data)
    _, mutated = F.mutate(c, artifact_seed)
    path = tmp_path_factory.getbasetemp() / "mutated.cnnc"
    _ok(F.classify(lambda: F.case_artifact(c, mutated, path)))
