"""Whole zoo models on the Numba CPU backend vs the float64 reference, and the disk cache."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cnnc
from cnnc.backends.reference import run_reference

pytestmark = [pytest.mark.numba, pytest.mark.slow]


def _check(model, batches=(1, 3), tol=1e-4):
    compiled = cnnc.compile(model, target="cpu")
    graph = model.to_graph()
    rng = np.random.default_rng(7)
    for b in batches:
        x = rng.standard_normal((b, *graph.inputs[0].type.shape[1:])).astype(np.float32)
        y = compiled(x)
        ref = run_reference(graph, x, dtype=np.float64)
        err = np.max(np.abs(y - ref)) / np.max(np.abs(ref))
        assert err < tol, f"{graph.name} batch {b}: relative error {err:.2e}"
    return compiled


def test_lenet5():
    _check(cnnc.models.lenet5())


def test_resnet20_with_random_batchnorm_statistics():
    model = cnnc.models.resnet20()
    rng = np.random.default_rng(3)
    weights = []
    for w in model.get_weights():   # non-trivial BN statistics (var > 0)
        weights.append(rng.uniform(0.5, 1.5, w.shape).astype(np.float32) if w.ndim == 1
                       else w)
    model.set_weights(weights)
    compiled = _check(model, batches=(1, 5))
    assert not any(n.op == "batch_norm" for n in compiled.graph.ops)
    assert "conv2d_fused" in compiled.source() or "def k0" in compiled.source()


def test_resnet18_small_input():
    _check(cnnc.models.resnet18(input_shape=(64, 64, 3), num_classes=10), batches=(2,))


CHILD = textwrap.dedent("""
    import numpy as np, cnnc
    g = cnnc.models.lenet5()
    c = cnnc.compile(g, target="cpu")
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 1)).astype(np.float32)
    y = c(x)
    s = c.module.forward.stats
    print("HITS", sum(s.cache_hits.values()))
    print("OUT", repr(float(np.abs(y).sum())))
""")


def _child(cache):
    env = dict(os.environ, CNNC_CACHE_DIR=str(cache))
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env,
                       cwd="/")
    assert r.returncode == 0, r.stderr[-3000:]
    fields = dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)
    return fields


def test_second_process_hits_the_disk_cache_and_corrupt_entries_rebuild(tmp_path):
    first = _child(tmp_path)
    assert int(first["HITS"]) == 0
    second = _child(tmp_path)
    assert float(second["OUT"]) == pytest.approx(float(first["OUT"]), rel=1e-6)
    assert int(second["HITS"]) >= 1, f"second process did not load from the cache: {second}"
    # corrupt every cached file: the next compile must rebuild, not crash
    for root, _, files in os.walk(tmp_path):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"\x00garbage")
    third = _child(tmp_path)
    assert float(third["OUT"]) == pytest.approx(float(first["OUT"]), rel=1e-6)
