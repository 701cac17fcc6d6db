"""Smoke tests of the benchmark harness on a tiny graph (2 repeats, no torch.compile, no
Numba compile) and exact checks of its FLOP counter."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the harness lives in the repository, not in the package
    sys.path.insert(0, str(ROOT))

from benchmarks import harness, run  # noqa: E402
from cnnc.ir import Graph  # noqa: E402


def tiny_graph(seed=0):
    """conv(3x3 same) + BN + relu -> max pool -> flatten -> dense(5): (N, 8, 8, 3) -> (N, 5)."""
    rng = np.random.default_rng(seed)
    g = Graph("tiny")
    x = g.add_input(("N", 8, 8, 3), name="x")
    y = g.add("conv2d", [x, g.constant(rng.standard_normal((3, 3, 3, 4)) * 0.3),
                         g.constant(np.zeros(4))], {"padding": "same"})
    stats = [np.ones(4), np.zeros(4), np.zeros(4), np.ones(4)]
    y = g.add("batch_norm", [y, *map(g.constant, stats)], {"epsilon": 1e-5})
    y = g.add("relu", [y])
    y = g.add("max_pool2d", [y], {"pool_size": 2, "strides": 2})
    y = g.add("flatten", [y])
    y = g.add("dense", [y, g.constant(rng.standard_normal((64, 5)) * 0.1)])
    g.set_outputs(y)
    return g


# ---- FLOPs ---------------------------------------------------------------------------------
def test_flops_of_a_conv_and_a_dense_by_hand():
    g = tiny_graph()
    conv = 8 * 8 * 4 * (3 * 3 * 3)  # output cells x MACs per cell
    dense = 64 * 5
    assert harness.count_flops(g, 1) == 2 * (conv + dense) == 14464
    assert harness.count_flops(g, 7) == 7 * 14464


def test_flops_of_a_strided_grouped_conv():
    g = Graph("g")
    x = g.add_input(("N", 9, 9, 4), name="x")
    y = g.add("conv2d", [x, g.constant(np.random.default_rng(0).standard_normal((3, 3, 2, 6)))],
              {"strides": 2, "groups": 2})
    g.set_outputs(y)
    assert y.type.shape[1:] == (4, 4, 6)
    # each of the 4*4*6 outputs reads a 3x3 window of its group's 2 channels
    assert harness.count_flops(g, 2) == 2 * 2 * (4 * 4 * 6) * (3 * 3 * 2)


def test_flops_of_a_transposed_conv():
    g = Graph("t")
    x = g.add_input(("N", 5, 6, 3), name="x")
    y = g.add("conv2d_transpose", [x, g.constant(np.random.default_rng(0).standard_normal(
        (4, 4, 3, 7)).astype(np.float32))], {"strides": 2, "padding": ((1, 1), (1, 1))})
    g.set_outputs(y)
    assert y.type.shape[1:] == (10, 12, 7)
    # every input value meets every tap of every output channel once, cropped or not
    assert harness.count_flops(g, 3) == 2 * 3 * (5 * 6 * 3) * (4 * 4 * 7)


# ---- timing and systems --------------------------------------------------------------------
def test_measure_runs_warmup_plus_repeats():
    calls = []
    med, n = harness.measure(lambda x: calls.append(x), 0, repeats=2, warmup=1)
    assert n == 2 and len(calls) == 3 and med >= 0
    med, n = harness.measure(lambda x: None, 0, min_seconds=0.001, min_repeats=10, warmup=0)
    assert n >= 10


def test_measure_pauses_before_each_timed_call_without_timing_it():
    import time
    starts = []

    def fn(x):
        starts.append(time.perf_counter())
    med, n = harness.measure(fn, 0, repeats=5, warmup=0, pause=0.01)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert n == 5 and min(gaps) >= 0.01 and med < 0.005


def test_measure_reports_the_mean_and_the_90th_percentile():
    """One call in ten stalls: the median misses it, the mean and the p90 do not."""
    import time
    k = iter(range(1000))

    def fn(x):
        time.sleep(0.02 if next(k) % 10 == 9 else 0.001)
    stats = {}
    med, n = harness.measure(fn, 0, repeats=20, warmup=0, stats=stats)
    assert n == 20 and med < 0.01
    assert stats["mean"] > 2 * med and stats["p90"] >= med


def _systems(graph):
    systems = [harness.cnnc_system(graph, "numpy"),
               harness.System("cnnc-cpu", error="UnsupportedError: not built here")]
    try:
        import torch  # noqa: F401
        systems += harness.torch_systems(graph, threads=1, compile_=False)
    except ImportError:
        pass
    try:
        import onnxruntime  # noqa: F401
        import onnx  # noqa: F401
        systems.append(harness.onnxruntime_system(graph, threads=1))
    except ImportError:
        pass
    return systems


def test_run_config_checks_and_times_every_system():
    g = tiny_graph()
    systems = _systems(g)
    rows = harness.run_config("tiny", g, 3, systems, repeats=2, warmup=1)
    assert [r.system for r in rows] == [s.name for s in systems]
    by = {r.system: r for r in rows}
    assert by["cnnc-cpu"].ms is None and by["cnnc-cpu"].note.startswith("unavailable: ")
    for r in rows:
        assert r.flops == 3 * 14464
        if r.system == "cnnc-cpu":
            continue
        assert r.note == "", r.note
        assert r.ms is not None and r.ms > 0 and r.repeats == 2
        assert r.err is not None and r.err < 1e-5  # float32 vs the float64 reference
    table = harness.format_table(rows, peak_gflops=100.0)
    assert "| tiny | 3 | cnnc-cpu | - |" in table
    assert len(table.splitlines()) == 2 + len(rows)


def test_a_wrong_output_is_flagged():
    g = tiny_graph()
    ok = harness.cnnc_system(g, "numpy")
    bad = harness.System("broken", lambda x: ok.fn(x) * 1.01)
    rows = harness.run_config("tiny", g, 1, [bad], repeats=2, warmup=0)
    assert rows[0].note.startswith("MISMATCH") and rows[0].err == pytest.approx(0.01, rel=1e-3)


def test_table_ratios_and_peak():
    rows = [harness.Row("m", 1, "cnnc-cpu", int(2e9), ms=20.0, repeats=10, err=1e-7),
            harness.Row("m", 1, "torch-eager", int(2e9), ms=10.0, repeats=10, err=1e-7),
            harness.Row("m", 1, "onnxruntime", int(2e9), ms=40.0, repeats=10, err=1e-7)]
    lines = harness.format_table(rows, peak_gflops=400.0).splitlines()
    cells = [c.strip() for c in lines[2].split("|")[1:-1]]
    # 2 GFLOP in 20 ms = 100 GFLOP/s = 25 % of 400; twice the best peer (10 ms)
    assert cells[3:7] == ["20.000", "2.00", "100.0", "25.0"]
    assert math.isclose(float(lines[3].split("|")[5]), 1.0)


def test_max_rel_err():
    ref = np.array([1.0, -4.0])
    assert harness.max_rel_err(ref + [0.0, 0.004], ref) == pytest.approx(1e-3)
    assert harness.max_rel_err(np.zeros(3), ref) == math.inf


# ---- the run's helpers ---------------------------------------------------------------------
def test_randomize_statistics_changes_bn_and_keeps_shapes():
    from cnnc.backends.reference import run_reference
    g = tiny_graph()
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 3))
    before = run_reference(g, x)
    run.randomize_statistics(g, seed=3)
    bn = next(n for n in g.ops if n.op == "batch_norm")
    assert not np.allclose(bn.inputs[1].data, 1.0)
    assert (bn.inputs[4].data > 0).all()
    after = run_reference(g, x)
    assert after.shape == before.shape and not np.allclose(after, before)


def test_append_results_keeps_history(tmp_path):
    path = tmp_path / "RESULTS.md"
    run.append_results("first table", ["--quick"], path)
    run.append_results("second table", ["--models", "lenet5"], path)
    text = path.read_text()
    assert text.index("first table") < text.index("second table")
    assert text.count("## ") == 2 and "python -m benchmarks --quick" in text


def test_machine_description():
    from benchmarks import machine
    peak = machine.gemm_peak(128, 2)
    desc = machine.describe({"torch": 2}, peak, 128)
    assert peak > 0 and "CPU:" in desc and "numpy" in desc and "GFLOP/s" in desc
