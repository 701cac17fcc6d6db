"""The pass manager and the rewrite driver: pipelines, print_after, verify_each, the report,
"no change" means untouched, and loop detection."""

from __future__ import annotations

import io

import numpy as np
import pytest

from cnnc.errors import CnncError, ConfigError, VerificationError
from cnnc.ir import Graph
from cnnc.passes import Pass, Rule, apply_rules, default_pipeline, optimize, run_pipeline
from cnnc.passes.manager import PassContext
from graphgen import random_case, resnet_like


def names(level):
    return [p.name for p in default_pipeline(level)]


def test_pipelines_per_level():
    assert names(0) == ["verify", "infer_shapes"]
    cleanup = ["cancel_transposes", "eliminate_noops", "constant_fold", "cse", "dce"]
    assert names(1) == names(0) + cleanup
    assert names(2) == names(1) + ["fold_pad", "fold_batchnorm", "idioms", "fuse_epilogue"] + cleanup
    with pytest.raises(ConfigError, match="opt_level"):
        default_pipeline(3)


def test_opt_level_0_changes_nothing_but_names():
    g = resnet_like(blocks=1)
    before = [n.op for n in g.nodes]
    report = optimize(g, opt_level=0)
    assert [n.op for n in g.nodes] == before and not report.changed
    assert report.plan is not None


def test_print_after_named_pass_and_all():
    g, s = resnet_like(blocks=1), io.StringIO()
    optimize(g, print_after="fuse_epilogue", stream=s)
    text = s.getvalue()
    assert text.count("// IR after pass fuse_epilogue") == 1 and "conv2d_fused" in text
    g, s = resnet_like(blocks=1), io.StringIO()
    optimize(g, print_after="all", stream=s)
    assert s.getvalue().count("// IR after pass") == len(names(2))


def test_print_after_unknown_pass_lists_names():
    with pytest.raises(ConfigError) as e:
        optimize(resnet_like(blocks=1), print_after="fold_bn")
    assert "fold_batchnorm" in str(e.value) and "'fold_bn'" in str(e.value)


class BreakTypes(Pass):
    """A buggy pass: gives a value a wrong type."""
    name = "break_types"

    def run(self, graph, ctx):
        graph.ops[0].output.type = graph.ops[0].output.type.with_shape(("N", 1))
        return True


def test_verify_each_names_the_failing_pass_and_those_before():
    passes = default_pipeline(1)[:3] + [BreakTypes()]
    with pytest.raises(VerificationError) as e:
        run_pipeline(resnet_like(blocks=1), passes, verify_each=True)
    msg = str(e.value)
    assert "after pass 'break_types'" in msg and "verify, infer_shapes, cancel_transposes" in msg
    run_pipeline(resnet_like(blocks=1), passes, verify_each=False)  # not checked: no error


def test_report_summary_remarks_and_plan():
    g = resnet_like(blocks=3)
    report = optimize(g)
    text = report.summary()
    assert report.stats == text
    for part in ("batch_norm", "conv2d_fused", "fused groups", "fold_batchnorm", "ms",
                 "planned peak", "without reuse"):
        assert part in text, part
    assert report.ops_before["batch_norm"] == 8 and report.ops_after["batch_norm"] == 0
    assert [r.name for r in report.results] == names(2)
    assert report.plan.peak_bytes({"N": 8}) < report.plan.naive_bytes({"N": 8})
    # remarks name the final graph: the skip-connection value exists there
    assert report.remarks and all(len(r) == 3 for r in report.remarks)
    final = {n.output.name for n in g.nodes}
    for p, node, msg in report.remarks:
        assert p == "fuse_epilogue" and node.split()[1].lstrip("%") in final
    assert report.remarks_text().count("\n") == len(report.remarks) - 1


def test_graph_is_renumbered():
    g = resnet_like(blocks=2)
    optimize(g)
    assert [n.output.name for n in g.ops] == [str(i) for i in range(len(g.ops))]


@pytest.mark.parametrize("seed", range(12))
def test_no_change_leaves_graph_identical(seed):
    """Every pass on an already optimised graph: reports no change, same text, same nodes."""
    g = random_case(seed).graph
    optimize(g)
    for p in default_pipeline(2):
        text, nodes = str(g), g.nodes
        assert p.run(g, PassContext()) is False, p.name
        assert str(g) == text and all(a is b for a, b in zip(g.nodes, nodes)), p.name
        assert len(g.nodes) == len(nodes)


def test_rules_that_undo_each_other_are_caught():
    g = Graph("loop")
    x = g.add_input(("N", 3), name="x")
    g.set_outputs(g.add("relu", [x]))

    def to_tanh(node, rw):
        rw.replace_node(node, "tanh", node.inputs)

    def to_relu(node, rw):
        rw.replace_node(node, "relu", node.inputs)

    rules = [Rule("relu_to_tanh", ("relu",), to_tanh), Rule("tanh_to_relu", ("tanh",), to_relu)]
    with pytest.raises(CnncError, match="relu_to_tanh.*tanh_to_relu|tanh_to_relu.*relu_to_tanh"):
        apply_rules(g, rules, pass_name="ping_pong")


def test_rule_without_match_reports_no_change():
    g = random_case(1).graph
    text = str(g)
    assert apply_rules(g, [Rule("never", (), lambda n, rw: None)]) is False
    assert str(g) == text


def test_optimize_result_runs_like_before():
    g = resnet_like(blocks=3)
    from cnnc.backends.reference import run_reference
    x = np.random.default_rng(0).standard_normal((3, 16, 16, 3))
    want = run_reference(g, x)
    optimize(g, verify_each=True)
    np.testing.assert_allclose(run_reference(g, x), want, rtol=1e-9, atol=1e-12)
