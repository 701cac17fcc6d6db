"""Per-kernel profiles, the summary table, the cached machine peak."""

import csv

import numpy as np
import pytest

import cnnc
from cnnc import profile as prof
from cnnc.cli import main


def test_cpu_profile_times_every_kernel(lenet5_cpu, rng):
    x = rng.standard_normal((4, 32, 32, 1)).astype(np.float32)
    p = lenet5_cpu.profile(x, repeats=3)
    kernels = [n for n in lenet5_cpu.graph.ops if n.op != "flatten"]
    assert [r.node for r in p.rows] == [f"%{n.name}" for n in kernels]
    assert all(r.ms > 0 for r in p.rows) and abs(sum(r.share for r in p.rows) - 1) < 1e-9
    first = p.rows[0]  # conv 5x5 1->6 on 32x32 (28x28 out) + bias + tanh, batch 4
    assert first.op == "conv2d_fused 5x5/1 1→6 [tanh]" and first.shape == "4×28×28×6"
    assert first.flops == 4 * 28 * 28 * 6 * (2 * 25 + 2)
    assert first.bytes == 4 * (4 * 32 * 32 + 25 * 6 + 6 + 4 * 28 * 28 * 6)
    assert first.gflops == pytest.approx(first.flops / first.ms / 1e6)
    assert first.pct_peak == pytest.approx(first.gflops)  # peak fixed at 100 GFLOP/s
    assert first.gbps == pytest.approx(first.bytes / first.ms / 1e6)
    pool = p.rows[1]   # memory-bound: its rate is the bytes it moves
    assert pool.op.startswith("avg_pool2d") and pool.gbps > pool.gflops
    text = str(p)
    assert "% peak" in text and "dense_fused 400→120 [tanh]" in text and "share" in text
    assert "GB/s" in text.splitlines()[2]


def test_the_whole_call_line_times_a_window_not_just_a_few_calls(monkeypatch):
    """On a fake clock where each call takes 1 ms: the given count of calls when they fill
    the window, more calls when they do not; the median of what was timed."""
    clock = [0.0]
    calls = []
    monkeypatch.setattr(prof.time, "perf_counter", lambda: clock[0])

    def call():
        calls.append(1)
        clock[0] += 0.001 * (3 if len(calls) == 1 else 1)   # the first call stalls
    assert prof._median_ms(call, 5) == pytest.approx(1.0) and len(calls) == 5
    calls.clear()
    assert prof._median_ms(call, 5, seconds=0.05) == pytest.approx(1.0)
    assert 47 <= len(calls) <= 49   # until 50 ms of calls (the first took 3)


def test_numpy_profile_times_every_node(rng):
    c = cnnc.compile(cnnc.models.get("lenet5"), target="numpy")
    p = c.profile(rng.standard_normal((2, 32, 32, 1)).astype(np.float32), repeats=2)
    assert len(p.rows) == len(c.graph.ops) and p.target == "numpy"


def test_summary_table(lenet5_cpu):
    text = lenet5_cpu.summary(print_fn=None)
    assert "conv2d_fused 5x5/1 1→6 [tanh]" in text and "N×28×28×6" in text
    assert "48,120" in text  # dense 400->120 params
    assert "total: 61,706 params" in text


def test_peak_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.delenv("CNNC_PEAK_GFLOPS")
    monkeypatch.setenv("CNNC_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(prof, "measure_peak", lambda: calls.append(1) or 123.0)
    assert prof.peak_gflops() == 123.0 and prof.peak_gflops() == 123.0
    assert len(calls) == 1 and (tmp_path / "peak.json").exists()
    assert prof.peak_gflops(refresh=True) == 123.0 and len(calls) == 2


def test_the_peak_is_kept_per_blas_kernel_choice(tmp_path, monkeypatch):
    """OPENBLAS_CORETYPE picks NumPy's GEMM kernels (AVX2 ones on an AVX-512 CPU run at half
    its rate): a peak measured under one choice is not reused under another."""
    monkeypatch.setenv("CNNC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CNNC_PEAK_GFLOPS", raising=False)
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setattr(prof, "measure_peak", lambda: 100.0)
    assert prof.peak_gflops() == 100.0
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    monkeypatch.setattr(prof, "measure_peak", lambda: 200.0)
    assert prof.peak_gflops() == 200.0
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert prof.peak_gflops() == 100.0


def test_measure_peak_is_a_positive_rate():
    assert prof.measure_peak(n=128, repeats=2, rounds=1) > 0


def test_cli_profile_csv_and_png(tmp_path, capsys):
    out_csv, out_png = tmp_path / "p.csv", tmp_path / "p.png"
    args = ["profile", "lenet5", "--target", "cpu", "--batch", "2", "--repeats", "2",
            "--csv", str(out_csv)]
    try:
        import matplotlib  # noqa: F401
        args += ["--png", str(out_png)]
    except ImportError:
        out_png = None
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "GFLOP/s" in text and "% peak" in text
    rows = list(csv.DictReader(out_csv.open(encoding="utf-8")))
    assert len(rows) == 7 and rows[0]["op"] == "conv2d_fused 5x5/1 1→6 [tanh]"
    assert float(rows[0]["ms"]) > 0 and int(rows[0]["flops"]) == 2 * 28 * 28 * 6 * 52
    assert float(rows[0]["gbps"]) == pytest.approx(
        int(rows[0]["bytes"]) / float(rows[0]["ms"]) / 1e6, rel=1e-3)
    if out_png is not None:
        assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_stale_low_peak_is_measured_again(lenet5_cpu, rng, tmp_path, monkeypatch):
    """A peak cached on a busy machine, below what a kernel reaches, is measured once more."""
    monkeypatch.delenv("CNNC_PEAK_GFLOPS")
    monkeypatch.setenv("CNNC_CACHE_DIR", str(tmp_path))
    (tmp_path / "peak.json").write_text('{"%s": 0.001}' % prof._machine_key())
    monkeypatch.setattr(prof, "measure_peak", lambda: 777.0)
    p = lenet5_cpu.profile(rng.standard_normal((2, 32, 32, 1)).astype(np.float32), repeats=2)
    assert p.peak_gflops == 777.0 and prof.peak_gflops() == 777.0
    assert p.rows[0].pct_peak == pytest.approx(100 * p.rows[0].gflops / 777.0)
