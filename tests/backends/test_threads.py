"""Small parallel kernels run on one thread; forward leaves the caller's thread count as it
found it (after a failure too), and stays in Numba's disk cache."""

import os
import subprocess
import sys

import numpy as np
import pytest

import cnnc
from cnnc.backends.numba_cpu import lower
from cnnc.backends.numba_cpu.threads import get_threads, set_threads
from cnnc.backends.reference import run_reference
from cnnc.errors import KernelError
from cnnc.ir import Graph

pytestmark = pytest.mark.numba


def _graph(batch):
    rng = np.random.default_rng(5)
    g = Graph(f"threads_{batch}")
    x = g.add_input((batch, 12, 12, 8), name="x")
    w = g.constant(rng.standard_normal((3, 3, 8, 16)).astype(np.float32))
    y = g.add("conv2d", [x, w], {"strides": (1, 1), "padding": "same", "dilation": (1, 1),
                                 "groups": 1})
    g.set_outputs(g.add("relu", [y]))
    return g


def test_the_thread_count_follows_the_work_and_is_restored():
    work = 2 * 12 * 12 * 16 * 9 * 8          # the conv's operations per image
    dynamic = cnnc.compile(_graph("N"), target="cpu")
    src = dynamic.source()
    assert f"set_threads(1 if sym_n * {work} < {lower.SERIAL_WORK} else nt)" in src
    body = src[src.index("def forward("):].split("\n\n")[0].splitlines()
    assert body[-1].strip().startswith("return") and body[-2].strip() == "set_threads(nt)"
    big = -(-lower.SERIAL_WORK // work)       # the first batch run on every thread
    static_small = cnnc.compile(_graph(1), target="cpu").source()
    static_big = cnnc.compile(_graph(big), target="cpu").source()
    assert "set_threads(1)" in static_small and "set_threads(1)" not in static_big
    rng = np.random.default_rng(0)
    before = get_threads()
    for n in (1, big):
        x = rng.standard_normal((n, 12, 12, 8)).astype(np.float32)
        ref = run_reference(dynamic.graph, x)
        assert np.abs(dynamic(x) - ref).max() / np.abs(ref).max() < 1e-5
        assert get_threads() == before
    if before > 1:   # a caller's own choice survives too
        set_threads(1)
        try:
            dynamic(rng.standard_normal((big, 12, 12, 8)).astype(np.float32))
            assert get_threads() == 1
        finally:
            set_threads(before)


def test_a_transposed_conv_counts_its_multiply_adds():
    """Its output (28x28x16 here) is small next to its work: counted by output bytes it ran
    on one thread, at half speed (benchmarks/RESULTS.md)."""
    from cnnc.backends.numba_cpu.lower import lower as lower_graph
    from cnnc.passes.memory_plan import plan_memory
    g = Graph("deconv")
    x = g.add_input(("N", 14, 14, 128), name="x")
    w = g.constant(np.random.default_rng(1).standard_normal((2, 2, 128, 16)).astype(np.float32))
    g.set_outputs(g.add("conv2d_transpose", [x, w], {"strides": 2}))
    work = 2 * 14 * 14 * 128 * 2 * 2 * 16     # every input value meets every tap
    src = lower_graph(g, plan_memory(g)).source
    assert f"set_threads(1 if sym_n * {work} < {lower.SERIAL_WORK} else nt)" in src


def test_a_memory_bound_kernel_counts_its_values():
    from cnnc.backends.numba_cpu.lower import lower as lower_graph
    from cnnc.passes.memory_plan import plan_memory
    g = Graph("ln")
    x = g.add_input(("N", 196, 768), name="x")
    rng = np.random.default_rng(2)
    scale, bias = (g.constant(rng.standard_normal(768).astype(np.float32)) for _ in range(2))
    g.set_outputs(g.add("layer_norm", [x, scale, bias], {"axes": (-1,)}))
    src = lower_graph(g, plan_memory(g)).source
    work = 196 * 768 * lower.ELEMENT_WORK    # above SERIAL_WORK at batch 1: two threads
    assert work >= lower.SERIAL_WORK
    assert f"set_threads(1 if sym_n * {work} < {lower.SERIAL_WORK} else nt)" in src


def test_a_failed_call_restores_the_thread_count():
    m = cnnc.compile(_graph("N"), target="cpu")
    before = get_threads()
    m.lowered.scratch_needs = []     # sabotage: the padded conv's scratch is missing
    m._local.arenas = {}
    with pytest.raises(KernelError):
        m(np.ones((1, 12, 12, 8), np.float32))
    assert get_threads() == before


def test_forward_with_thread_control_is_cached_on_disk(tmp_path):
    """A second process loads every function from the cache: no 'cannot cache' warning
    (numba.set_num_threads inside forward would cause one) and a warm compile."""
    code = ("import warnings, time, cnnc\n"
            "warnings.simplefilter('error')\n"
            "m = cnnc.Sequential([cnnc.layers.Input((12, 12, 8)), cnnc.layers.Conv2D(16, 3),\n"
            "                     cnnc.layers.Flatten(), cnnc.layers.Dense(4)])\n"
            "t = time.perf_counter()\n"
            "cnnc.compile(m, target='cpu')\n"
            "print(time.perf_counter() - t)\n")
    env = dict(os.environ, CNNC_CACHE_DIR=str(tmp_path))
    for _ in range(2):
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
    assert float(p.stdout.split()[-1]) < 5, "the second compile loaded from the cache"
