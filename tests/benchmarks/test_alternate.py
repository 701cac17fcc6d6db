"""The alternated-process benchmark: its AVX2 target environment, the rotation of systems
over rounds and the per-round ratio (workers stubbed: no timing here), and one real worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from isa_targets import host_runs_avx2

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the benchmarks live in the repository, not in the package
    sys.path.insert(0, str(ROOT))

from benchmarks import alternate  # noqa: E402


def test_avx2_environment_has_no_avx512():
    if not host_runs_avx2():
        with pytest.raises(RuntimeError, match="AVX2"):
            alternate.isa_env("avx2")
        return
    env = alternate.isa_env("avx2")
    feats = env["NUMBA_CPU_FEATURES"].split(",")
    assert env["NUMBA_CPU_NAME"] == "znver3"
    assert "+avx2" in feats and "+fma" in feats
    assert not [f for f in feats if f.startswith("+avx512") or f.startswith("+amx")]
    assert alternate.isa_env("native") == {}
    with pytest.raises(ValueError, match="neon"):
        alternate.isa_env("neon")


def test_child_environment_sets_the_isas_blas_kernels():
    from benchmarks import machine
    base = {"OPENBLAS_CORETYPE": "Haswell", "KEEP": "1"}
    native = alternate.child_env("native", base)
    assert native == {"KEEP": "1"}   # OpenBLAS picks this CPU's kernels
    assert machine.blas_kernels(native) == "OpenBLAS kernels chosen for this CPU"
    if host_runs_avx2():
        avx2 = alternate.child_env("avx2", {"KEEP": "1"})
        assert avx2["OPENBLAS_CORETYPE"] == "Haswell" and avx2["KEEP"] == "1"
        assert avx2["NUMBA_CPU_NAME"] == "znver3"
        assert "Haswell" in machine.blas_kernels(avx2)
        peak = machine.gemm_peak_with(avx2, 64, 2)   # runs in a fresh process
        assert peak > 0


def test_rounds_rotate_and_ratios_are_taken_per_round(monkeypatch):
    calls = []
    # cnnc takes 2 ms in round 1 and 3 ms in round 2, ORT 1 ms then 2 ms: ratios 2.0, 1.5
    table = {("cnnc", 1): 2.0, ("cnnc", 2): 3.0, ("onnxruntime", 1): 1.0,
             ("onnxruntime", 2): 2.0}

    def fake(system, isa, model, batch, args):
        rnd = sum(1 for c in calls if c[0] == system)
        calls.append((system, isa))
        if rnd == 0:
            return {"ms": 99.0, "err": 1e-7, "compile_s": 1.5}   # round 0: compiling
        ms = table[(system, rnd)]
        return {"ms": ms, "mean_ms": 2 * ms, "p90_ms": 3 * ms, "err": 1e-7}

    monkeypatch.setattr(alternate, "_run_worker", fake)
    args = SimpleNamespace(rounds=2, neighbour=False)
    rows = alternate.alternate([("m", 1)], ["native"], args, log=lambda s: None)
    assert [c[0] for c in calls] == ["cnnc", "onnxruntime", "onnxruntime", "cnnc",
                                     "cnnc", "onnxruntime"]
    cnnc_row = rows[0]
    assert cnnc_row["system"] == "cnnc-native" and cnnc_row["ms"] == 2.5
    assert cnnc_row["ratio"] == pytest.approx(1.75)
    assert (cnnc_row["lo"], cnnc_row["hi"]) == (1.5, 2.0) and cnnc_row["compile_s"] == 1.5
    assert cnnc_row["mean_ms"] == 5.0 and cnnc_row["p90_ms"] == 7.5
    assert cnnc_row["mean_ratio"] == pytest.approx(1.75)
    assert ("| m | 1 | cnnc-native | 2.500 | 1.75 | 1.50–2.00 | 5.000 | 7.500 | 1.75 |"
            in alternate.format_rows(rows))


@pytest.mark.numba
def test_a_worker_checks_and_times_one_system():
    out = alternate.worker("cnnc", "lenet5", 1, seed=0, seconds=0.01, threads=1)
    assert out["err"] < 1e-4 and out["ms"] > 0 and out["repeats"] >= 10


def test_a_pause_between_calls_reaches_the_workers(monkeypatch):
    seen = []

    def fake_run(cmd, **kw):
        seen.append(cmd)
        return SimpleNamespace(stdout='{"ms": 1.0}\n', stderr="")
    monkeypatch.setattr(alternate.subprocess, "run", fake_run)
    args = SimpleNamespace(seed=0, seconds=0.1, threads=1, pause=1.5, timeout=10)
    assert alternate._run_worker("cnnc", "native", "lenet5", 1, args) == {"ms": 1.0}
    cmd, = seen
    assert cmd[cmd.index("--pause") + 1] == "1.5"


def test_each_isas_cnnc_is_compared_with_onnxruntime_of_that_isa(monkeypatch):
    # per round: cnnc-native 2, cnnc-avx2 6, ORT native 1, ORT avx2 3 (ms)
    table = {("cnnc", "native"): 2.0, ("cnnc", "avx2"): 6.0, ("onnxruntime", "native"): 1.0,
             ("onnxruntime", "avx2"): 3.0}
    seen = []

    def fake(system, isa, model, batch, args):
        seen.append((system, isa))
        return {"ms": table[(system, isa)], "err": 1e-7}

    monkeypatch.setattr(alternate, "_run_worker", fake)
    args = SimpleNamespace(rounds=1, neighbour=False)
    rows = alternate.alternate([("m", 1)], ["native", "avx2"], args, log=lambda s: None)
    assert sorted(set(seen)) == sorted(table)
    by = {r["system"]: r for r in rows}
    assert by["cnnc-native"]["ratio"] == pytest.approx(2.0)
    assert by["cnnc-avx2"]["ratio"] == pytest.approx(2.0)   # 6 / 3, not 6 / 1
    assert by["onnxruntime-avx2"]["ms"] == 3.0 and by["onnxruntime-avx2"]["ratio"] is None


def test_the_avx2_copy_of_onnxruntime_skips_only_the_avx512_state_test():
    from benchmarks import ort_isa
    code = b"\x90" * 7 + b"\x48\xf7\xd0" + ort_isa.AVX512_STATE_TEST + b"\x54\x01\x00\x00\xc3"
    out = ort_isa.patch_library(code)
    at = code.index(ort_isa.AVX512_STATE_TEST)
    assert len(out) == len(code)
    assert out[:at + 2] == code[:at + 2] and out[at + 8:] == code[at + 8:]
    assert out[at + 2:at + 8] == ort_isa.NOP6      # the whole je rel32, and nothing else
    for bad in (b"\x90" * 16, code + code):        # not found, found twice: refused
        with pytest.raises(RuntimeError, match="AVX-512 state test"):
            ort_isa.patch_library(bad)
    with pytest.raises(ValueError, match="neon"):
        ort_isa.ort_env("neon")
    assert ort_isa.ort_env("native", {"A": "1"}) == {"A": "1"}


def test_the_avx2_copy_of_onnxruntime_is_made_once(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from benchmarks import ort_isa
    capi = Path(ort.__file__).parent / "capi"
    counts = [p.read_bytes().count(ort_isa.AVX512_STATE_TEST) for p in capi.glob("*.so*")]
    if any(n > 1 for n in counts) or not any(counts):   # another build: refused, clearly
        with pytest.raises(RuntimeError, match="AVX-512 state test"):
            ort_isa.avx2_onnxruntime(tmp_path)
        return
    root = ort_isa.avx2_onnxruntime(tmp_path)
    libs = sorted((Path(root) / "onnxruntime" / "capi").glob("*.so*"))
    patched = [p for p in libs if ort_isa.AVX512_STATE_TEST in p.read_bytes()]
    assert not patched and "patched" in (Path(root) / ort_isa.MARK).read_text()
    stamp = (Path(root) / ort_isa.MARK).stat().st_mtime_ns
    assert ort_isa.avx2_onnxruntime(tmp_path) == root
    assert (Path(root) / ort_isa.MARK).stat().st_mtime_ns == stamp
    # and a process with the copy first on its path imports it and still computes right
    code = ("import numpy as np, onnx, onnxruntime as ort\n"
            "from onnx import helper as h, TensorProto as T\n"
            "w = np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32)\n"
            "g = h.make_graph([h.make_node('Conv', ['x', 'w'], ['y'])], 'g',\n"
            "    [h.make_tensor_value_info('x', T.FLOAT, [1, 3, 9, 9])],\n"
            "    [h.make_tensor_value_info('y', T.FLOAT, [1, 8, 7, 7])],\n"
            "    [onnx.numpy_helper.from_array(w, 'w')])\n"
            "m = h.make_model(g, opset_imports=[h.make_opsetid('', 17)])\n"
            "s = ort.InferenceSession(m.SerializeToString(), providers=['CPUExecutionProvider'])\n"
            "x = np.random.default_rng(1).standard_normal((1, 3, 9, 9)).astype(np.float32)\n"
            "y = s.run(None, {'x': x})[0].astype(np.float64)\n"
            "c = np.lib.stride_tricks.sliding_window_view(\n"
            "    x[0].astype(np.float64), (3, 3), (1, 2))\n"
            "ref = np.einsum('cijkl,ockl->oij', c, w.astype(np.float64))\n"
            "print(ort.__file__, float(np.abs(y[0] - ref).max() / np.abs(ref).max()))\n")
    env = ort_isa.ort_env("avx2", {"PATH": os.environ.get("PATH", "")}, tmp_path)
    assert env["PYTHONPATH"] == root
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    where, err = p.stdout.split()
    assert where.startswith(root) and float(err) < 1e-5, p.stderr[-500:]


def test_the_main_benchmark_with_isa_runs_the_alternated_one(monkeypatch):
    from benchmarks import run
    seen = []
    monkeypatch.setattr(alternate, "main", lambda argv: seen.append(argv) or 0)
    assert run.main(["--models", "resnet20,lenet5", "--isa", "native,avx2", "--rounds", "2"]) == 0
    argv, = seen
    opts = dict(zip(argv[::2], argv[1::2]))
    assert opts["--models"] == "resnet20:1,resnet20:64,lenet5:1,lenet5:64"
    assert opts["--isa"] == "native,avx2" and opts["--rounds"] == "2"
    with pytest.raises(SystemExit):
        run.main(["--models", "nosuchmodel", "--isa", "avx2"])
