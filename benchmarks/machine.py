"""The machine a benchmark ran on: CPU, cores, library versions, and its measured float32 GEMM
peak (NumPy's BLAS on every core it is allowed to use)."""

from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> str:
    """Other work on the machine skews timings: report the load when the run starts."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def versions() -> dict[str, str]:
    import cnnc
    out = {"python": platform.python_version(), "numpy": np.__version__,
           "cnnc": cnnc.__version__}
    for name in ("numba", "torch", "onnxruntime", "onnx"):
        try:
            out[name] = __import__(name).__version__
        except Exception:
            out[name] = "not installed"
    return out


#: the OpenBLAS kernels an ISA's BLAS calls run (OpenBLAS reads ``OPENBLAS_CORETYPE`` once,
#: when it loads): Haswell's are its AVX2 + FMA ones.  On an AVX-512 CPU they reach about
#: half of its float32 GEMM peak, so a GEMM peak measured under them is an AVX2 machine's.
BLAS_CORETYPE = {"avx2": "Haswell"}


def blas_kernels(env=None) -> str:
    """Which OpenBLAS kernels NumPy's BLAS runs in environment ``env`` (default: this
    process's)."""
    from cnnc.profile import blas_coretype
    core = blas_coretype(env)
    return (f"OpenBLAS {core} kernels (OPENBLAS_CORETYPE={core})" if core
            else "OpenBLAS kernels chosen for this CPU")


def gemm_peak_with(env: dict, n: int = 2048, repeats: int = 10) -> float:
    """:func:`gemm_peak` in a fresh process with environment ``env`` (the BLAS kernels are
    chosen when NumPy loads, so another choice needs another process)."""
    import subprocess
    import sys
    code = f"from benchmarks.machine import gemm_peak; print(gemm_peak({n}, {repeats}))"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                       text=True, check=True)
    return float(p.stdout.split()[-1])


def gemm_peak(n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a float32 ``n x n`` NumPy matmul (median of ``repeats`` warm calls)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def cpu_target() -> str:
    """The LLVM target cnnc's CPU kernels are compiled for, and its vector ISA."""
    from cnnc.backends.numba_cpu import target
    return target.effective().describe()


def cpu_flags() -> str:
    """The vector-relevant flags of /proc/cpuinfo (empty where it cannot be read)."""
    keep = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "asimd")
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return " ".join(k for k in keep if k in have)
    except OSError:
        pass
    return ""


def describe(threads: dict, peak_gflops: float, gemm_n: int) -> str:
    """A Markdown bullet list of the machine, thread settings and GEMM peak."""
    v = versions()
    lines = [f"- CPU: {cpu_model()} ({usable_cores()} usable cores, os.cpu_count "
             f"{os.cpu_count()}), {platform.system()} {platform.machine()}; flags: "
             f"{cpu_flags() or 'unknown'}",
             f"- cnnc CPU kernels compiled for {cpu_target()}",
             "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
             "- threads: " + ", ".join(f"{k} {val}" for k, val in threads.items()) +
             f", NumPy BLAS default (all usable cores)",
             f"- float32 GEMM peak (NumPy matmul {gemm_n}x{gemm_n}, median, "
             f"{blas_kernels()}): {peak_gflops:.1f} GFLOP/s",
             f"- load average at start (1, 5, 15 min): {load_average()}"]
    return "\n".join(lines)
