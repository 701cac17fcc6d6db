"""Small parallel kernels run on one thread; forward leaves the caller's thread count as it
found it (after a failure too), and stays in Numba's disk cache."""

import math
import os
import re
import subprocess
import sys
import threading

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


def test_depthwise_convs_and_large_weights_count_more_work():
    """A depthwise conv's multiply-adds count DEPTHWISE_WORK (it runs at a fraction of a dense
    conv's GFLOP/s); a layer whose weights make WEIGHT_WORK times their count at least
    SERIAL_WORK runs on every thread at any batch (reading them is memory-bound)."""
    from cnnc.backends.numba_cpu.lower import lower as lower_graph
    from cnnc.passes.memory_plan import plan_memory
    rng = np.random.default_rng(3)
    g = Graph("dw_se")
    x = g.add_input(("N", 14, 14, 200), name="x")
    dw = g.constant(rng.standard_normal((3, 3, 1, 200)).astype(np.float32))
    y = g.add("conv2d", [x, dw], {"strides": (1, 1), "padding": "same", "dilation": (1, 1),
                                  "groups": 200})
    p = g.add("global_avg_pool", [y], {"keepdims": True})
    cin, cout = 200, -(-lower.SERIAL_WORK // (lower.WEIGHT_WORK * 200))
    w = g.constant(rng.standard_normal((1, 1, cin, cout)).astype(np.float32))
    g.set_outputs(g.add("conv2d", [p, w], {"strides": (1, 1), "padding": "valid",
                                           "dilation": (1, 1), "groups": 1}))
    src = lower_graph(g, plan_memory(g)).source
    work = 14 * 14 * 200 * 9 * lower.DEPTHWISE_WORK
    assert work > 2 * 14 * 14 * 200 * 9
    assert f"set_threads(1 if sym_n * {work} < {lower.SERIAL_WORK} else nt)" in src
    # the 1x1 conv on the pooled 1x1 image: by its multiply-adds one thread up to a batch
    # of ~WEIGHT_WORK / 2, by its weights every thread
    assert 2 * cin * cout < lower.SERIAL_WORK <= lower.WEIGHT_WORK * cin * cout
    body = src[src.index("def forward("):].splitlines()
    call = [i for i, line in enumerate(body) if "conv2d -> " in line][-1]
    assert body[call - 1].strip() == "set_threads(nt)"
    m = cnnc.compile(g, target="cpu")
    for n in (1, 3):
        xs = rng.standard_normal((n, 14, 14, 200)).astype(np.float32)
        ref = run_reference(m.graph, xs)
        assert np.abs(m(xs) - ref).max() / np.abs(ref).max() < 1e-5


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
    m._local = threading.local()   # a fresh thread: arenas sized anew
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


# ---- the team size under contention (contention.py) ------------------------------------------
def _drive(chooser, full, seconds_of, start=0.0, calls=400, step=0.01):
    """Run ``calls`` calls on a fake clock, each taking ``seconds_of(threads)``; returns the
    thread counts used."""
    now, used = start, []
    for _ in range(calls):
        n = chooser.threads(full, now)
        now += seconds_of(n)
        chooser.record(seconds_of(n), now)
        now += step
        used.append(n)
    return used, now


def test_a_busy_machine_moves_the_calls_to_one_thread_and_back():
    from cnnc.backends.numba_cpu import contention
    c = contention.TeamChooser()
    # quiet: two threads take 10 ms, one 18 ms; probes of one thread never win
    quiet = {2: 0.010, 1: 0.018}.get
    used, now = _drive(c, 2, quiet, calls=300)
    assert used[0] == 2 and not c.single and c.switches == 0
    probes = used.count(1)
    # the intervals double: at most 1 + log2(elapsed / first interval) probes
    assert 0 < probes <= contention.PROBE_CALLS * (1 + math.log2(now / contention.FIRST_PROBE_S))
    assert c.interval > contention.FIRST_PROBE_S
    # a neighbour: two threads 39 ms, one 18 ms -> the next probe switches to one thread
    busy = {2: 0.039, 1: 0.018}.get
    used, now = _drive(c, 2, busy, start=now, calls=600)
    assert c.single and c.switches == 1
    assert used.count(2) < 0.1 * len(used)   # the switch and the probes of two threads
    # the neighbour leaves: a probe of the full team wins it back
    used, now = _drive(c, 2, quiet, start=now, calls=600)
    assert not c.single and c.switches == 2 and used[-100:].count(2) > 95


def test_one_thread_callers_and_the_switch_off_keep_their_count(monkeypatch):
    from cnnc.backends.numba_cpu import contention
    c = contention.TeamChooser()
    used, _ = _drive(c, 1, {1: 0.02}.get, calls=100)
    assert set(used) == {1}
    monkeypatch.setattr(contention, "ENABLED", False)
    c = contention.TeamChooser()
    used, _ = _drive(c, 2, {2: 0.039, 1: 0.018}.get, calls=200)
    assert set(used) == {2}


def test_a_model_on_one_thread_computes_the_same_and_restores_the_count():
    """A model whose chooser took one thread (forced here) gives the same output as on the
    whole team, and leaves the caller's thread count as it found it."""
    m = cnnc.compile(_graph("N"), target="cpu")
    x = np.random.default_rng(3).standard_normal((40, 12, 12, 8)).astype(np.float32)
    before = get_threads()
    y_team = m(x)
    team = m.team({"N": 40})
    assert len(team.recent) == 1    # the call was timed
    team.size = 1
    assert team.threads(before, 0.0) == 1 or before == 1
    y_one = m(x)
    assert get_threads() == before
    ref = run_reference(m.graph, x)
    assert np.abs(y_one - ref).max() / np.abs(ref).max() < 1e-5
    assert np.array_equal(y_one, y_team)


def test_warm_up_and_stepped_calls_run_on_the_callers_threads_and_are_not_timed():
    """The warm-up that loads the kernels and the debugger's and profiler's stepped forward
    take seconds: neither may become a sample of the model's speed (recorded, such a call
    made the next probe of one thread win, and cnnc profile's whole-call line read the
    one-thread time), and a stepped call's kernels run on the caller's thread count even
    while the chooser holds one thread."""
    from cnnc.backends.base import prepare_inputs
    from cnnc.debug import ForwardStepper
    m = cnnc.compile(_graph("N"), target="cpu")
    assert not m.team({"N": 1}).recent     # compile ran the warm-up at batch 1
    x = np.random.default_rng(5).standard_normal((40, 12, 12, 8)).astype(np.float32)
    before = get_threads()
    m(x)
    team = m.team({"N": 40})
    team.size = 1                    # the chooser holds one thread
    recent = list(team.recent)
    seen = []
    arrays, bindings = prepare_inputs(m.graph, [x])
    out = ForwardStepper(m).run(arrays, bindings,
                                on_call=lambda step, fn, args: (seen.append(get_threads()),
                                                                fn(*args)))
    assert list(team.recent) == recent and not team.probing
    assert seen and seen[0] == before    # the first conv is large enough for the whole team
    assert get_threads() == before and np.array_equal(out[0], m(x))


def test_on_more_cores_the_team_shrinks_a_thread_at_a_time_and_grows_back():
    from cnnc.backends.numba_cpu import contention
    c = contention.TeamChooser()
    # 8 threads allowed; two busy neighbours: 6 threads are fastest
    busy = (lambda n: {8: 0.030, 7: 0.022, 6: 0.012, 5: 0.014, 4: 0.016}.get(n, 0.03))
    used, now = _drive(c, 8, busy, calls=1500)
    assert c.current() == 6 and not c.single
    assert used[-200:].count(6) > 180
    quiet = (lambda n: 0.08 / n)
    used, now = _drive(c, 8, quiet, start=now, calls=3000)
    assert c.current() == 8 and used[-200:].count(8) > 180


def test_probes_of_a_slow_model_cost_a_bounded_share_of_its_time():
    from cnnc.backends.numba_cpu import contention
    # VGG-like: 55 ms on two threads, 100 ms on one; quiet machine
    c = contention.TeamChooser()
    quiet = {2: 0.055, 1: 0.100}.get
    used, now = _drive(c, 2, quiet, calls=400, step=0.0)
    extra = used.count(1) * (0.100 - 0.055)
    assert c.switches == 0 and 0 < used.count(1)
    # the first probe comes after FIRST_PROBE_S; after it, each costs <= PROBE_SHARE of the wait
    assert extra <= contention.PROBE_SHARE * now + contention.PROBE_CALLS * 0.045 + 1e-9
    # a probe that stalled (1 s of calls) delays the next one by at most MAX_PROBE_WAIT_S
    c = contention.TeamChooser()
    used, now = _drive(c, 2, quiet, calls=4, step=0.0)   # before the first probe
    assert used == [2] * 4
    stalled = {2: 0.055, 1: 0.5}.get
    used, now = _drive(c, 2, stalled, start=now, calls=3, step=0.0)
    assert used == [2, 1, 1] and not c.probing
    assert c.next_probe - now == pytest.approx(contention.MAX_PROBE_WAIT_S)


def test_one_thread_runs_each_parallel_loop_as_a_plain_loop_of_its_helper():
    """Each parallel loop whose body is a helper (here the dense layer's batch-1 loop and its
    row-tile loop) also runs as a plain loop of the same helper when forward set one thread:
    Numba's parallel launch costs ~0.8 us even on one thread.  Either way the values are the
    reference's, and a forced thread count of one gives the team's values exactly."""
    rng = np.random.default_rng(11)
    g = Graph("dense_loops")
    x = g.add_input(("N", 96), name="x")
    y = g.add("dense", [x, g.constant(rng.standard_normal((96, 40)).astype(np.float32)),
                        g.constant(rng.standard_normal(40).astype(np.float32))])
    g.set_outputs(g.add("tanh", [y]))
    m = cnnc.compile(g, target="cpu")
    src = m.source()
    loops = re.findall(r"if get_threads\(\) == 1:.*\n\s+for (\w+) in range\((.*)\):\n\s+(\w+)\("
                       r"(.*)\n\s+else:\n\s+for (\w+) in prange\((.*)\):\n\s+(\w+)\((.*)\n", src)
    assert len(loops) == 2 and all(a[:4] == a[4:] for a in loops), loops
    assert src.count("prange(") == 2
    big = -(-lower.SERIAL_WORK // (2 * 96 * 40))
    before = get_threads()
    for n in (1, 5, big):
        xs = rng.standard_normal((n, 96)).astype(np.float32)
        ref = run_reference(m.graph, xs)
        out = m(xs)
        assert np.abs(out - ref).max() / np.abs(ref).max() < 1e-5
        assert get_threads() == before
    team = m.team({"N": big})
    team.size = 1
    assert team.threads(before, 0.0) == 1 or before == 1
    assert np.array_equal(m(xs), out)
