"""compare() and bisect_passes() point at planted faults: a wrong kernel, a broken rewrite."""

import numpy as np
import pytest

import cnnc
from cnnc import debug
from cnnc.passes import Pass, default_pipeline


def test_compare_cpu_all_nodes_agree(resnet20_cpu, rng):
    x = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
    r = debug.compare(resnet20_cpu, x, target="cpu", tol=1e-4)
    assert r.ok and r.first is None
    assert [c.name for c in r.checks] == [n.name for n in resnet20_cpu.graph.ops
                                          if n.op not in ("flatten", "reshape")]
    assert max(c.error for c in r.checks) < 1e-5 and "OK" in str(r)


@pytest.mark.parametrize("which", [1, 9])
def test_compare_points_at_a_wrong_kernel(resnet20_cpu, rng, monkeypatch, which):
    """A kernel replaced by one that adds 0.5 to a channel of its output: the first node that
    runs it is named, the nodes before it agree."""
    low = resnet20_cpu.lowered
    kname = low.kernel_names[which]
    culprit = low.kernel_nodes[low.kernel_names.index(kname)]
    good = getattr(resnet20_cpu.module, kname)

    held = low.halo_only.get(culprit.output.name)   # the output stored in a halo only

    def wrong(*args):
        good(*args)
        out = [a for a in args if isinstance(a, np.ndarray)
               and a.shape[1:] == culprit.output.shape[1:]][-1] if held is None else \
            debug.image_in_halo(args[-1], held[1], culprit.output.shape[1:])
        out[..., 1] += 0.5

    monkeypatch.setattr(resnet20_cpu.module, kname, wrong)
    x = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
    r = debug.compare(resnet20_cpu, x, tol=1e-4)
    assert not r.ok and r.first.name == culprit.name and r.first.op == culprit.op
    assert r.first.error > 1e-2 and r.first.worst[-1] == 1
    assert all(c.error < 1e-4 for c in r.checks[:r.checks.index(r.first)])
    text = str(r)
    assert f"FIRST DIVERGENCE at node %{culprit.name}" in text and "MISMATCH" in text
    # the compiled model itself is untouched by stepping through it
    monkeypatch.undo()
    y = resnet20_cpu(x)
    ref = cnnc.backends.reference.run_reference(resnet20_cpu.graph, x)
    assert debug.rel_error(y, ref) < 1e-4


def test_compare_numpy_target_and_end_to_end(rng):
    x = rng.standard_normal((2, 32, 32, 1)).astype(np.float32)
    r = debug.compare(cnnc.models.get("lenet5"), x, target="numpy")
    assert r.ok and r.end_to_end_error < 1e-5 and len(r.checks) == 8


class DropBias(Pass):
    """A broken rewrite: the first conv2d with a bias loses it."""

    name = "drop_bias"

    def run(self, graph, ctx):
        for node in graph.ops:
            if node.op == "conv2d" and len(node.inputs) == 3:
                v = graph.add("conv2d", node.inputs[:2], dict(node.attrs), before=node)
                graph.replace_uses(node.output, v)
                graph.remove(node)
                return True
        return False


def _lenet_with_biases(seed=0):
    m = cnnc.models.get("lenet5")
    r = np.random.default_rng(seed)
    m.set_weights([w + r.normal(0, 0.3, w.shape).astype(np.float32) if w.ndim == 1 else w
                   for w in m.get_weights()])
    return m


def test_bisect_names_the_broken_pass(rng):
    m = _lenet_with_biases()
    x = rng.standard_normal((2, 32, 32, 1)).astype(np.float32)
    clean = debug.bisect_passes(m, x)
    assert clean.ok and len(clean.steps) == len(default_pipeline(2))
    assert max(s.error for s in clean.steps) < 1e-9
    passes = default_pipeline(2)
    passes.insert(3, DropBias())
    r = debug.bisect_passes(m, x, passes=passes)
    assert not r.ok and r.culprit.name == "drop_bias" and r.culprit.index == 3
    assert r.culprit.error > 1e-3 and len(r.steps) == 4
    assert "CULPRIT: pass 'drop_bias' (#3)" in str(r)


def test_bisect_reports_a_pass_that_raises(rng):
    class Crash(Pass):
        name = "crash"

        def run(self, graph, ctx):
            raise RuntimeError("boom")

    x = rng.standard_normal((1, 32, 32, 1)).astype(np.float32)
    r = debug.bisect_passes(cnnc.models.get("lenet5"), x, passes=[*default_pipeline(1)[:2],
                                                                  Crash()])
    assert r.culprit.name == "crash" and "boom" in r.culprit.failure
