"""Numba CPU backend: the optimised graph becomes one generated module of fused kernels and a
jitted ``forward`` over a planned arena.

Process settings, applied before Numba starts its threads (setdefault: a user's choice wins):

* ``NUMBA_SLP_VECTORIZE=1``: the convolution register tiles rely on LLVM's SLP vectoriser,
  which Numba leaves off by default (12 instead of ~180 GFLOP/s for a 3x3 64->64 conv).
* ``OMP_WAIT_POLICY=active`` with ``GOMP_SPINCOUNT=10000``: between the back-to-back parallel
  kernels of one forward call the OpenMP workers spin briefly instead of sleeping (waking a
  sleeping team costs ~25 us per kernel: ResNet-20 at batch 1 took 2.6 ms instead of 0.45),
  and still go to sleep a few microseconds after a call, so they do not starve the BLAS
  threads of the GEMM kernels or the rest of the program (an unbounded spin did: an
  im2col + np.dot conv ran 8 ms instead of 1.6). Measured side by side in benchmarks/RESULTS.md.
* ``NUMBA_CPU_FEATURES`` = the host's features with ``-prefer-256-bit`` on an AVX-512 host
  (:func:`target.wide_vectors`): LLVM would otherwise compile the 16-lane tiles as pairs of
  8-lane halves on Intel CPUs, at half the speed. Set only when neither ``NUMBA_CPU_NAME``
  nor ``NUMBA_CPU_FEATURES`` is; Numba reads it when it first compiles.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_SLP_VECTORIZE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "active")
os.environ.setdefault("GOMP_SPINCOUNT", "10000")


def _prefer_wide_vectors() -> None:
    # before Numba is imported: a NUMBA_ variable set later makes Numba re-read its whole
    # configuration at the next compile, undoing settings made in numba.config meanwhile
    from cnnc.backends.numba_cpu.target import host_features, wide_vectors
    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        return
    host = host_features()
    if host and (wide := wide_vectors(host)) != host:
        os.environ["NUMBA_CPU_FEATURES"] = wide


_prefer_wide_vectors()

import numba  # noqa: E402

numba.config.SLP_VECTORIZE = int(os.environ["NUMBA_SLP_VECTORIZE"])
if "NUMBA_CPU_FEATURES" in os.environ:   # Numba was imported before this module
    numba.config.CPU_FEATURES = os.environ["NUMBA_CPU_FEATURES"]


def compile_graph(graph, report=None):
    """Lower ``graph`` (already optimised), load or build its kernels, return the model."""
    import sys
    import time

    from cnnc.backends.numba_cpu.lower import lower
    from cnnc.backends.numba_cpu.runtime import (NumbaCpuModel, compile_kernels, load_lowered,
                                                 load_module)
    from cnnc.errors import CnncError
    from cnnc.passes.memory_plan import plan_memory
    plan = getattr(report, "plan", None) or plan_memory(graph)
    lowered = lower(graph, plan)
    if report is not None:
        report.remarks.extend(("cpu plan", node.describe(), msg) for node, msg in lowered.remarks)
    module = load_lowered(lowered)
    model = NumbaCpuModel(graph, report, plan, lowered, module)
    tty = sys.stderr.isatty()

    def progress(done, total):
        print(f"\rcnnc: compiling kernels for {graph.name!r}: {done}/{total}", file=sys.stderr,
              end="", flush=True)

    t0 = time.perf_counter()
    try:
        compile_kernels(lowered, module, progress=progress if tty else None)
        model.warm_up()
    except CnncError:
        raise
    except Exception:  # a corrupt or stale Numba cache entry: rebuild it once from scratch,
        module = load_module(lowered.source, True)   # its kernels in the module itself
        model = NumbaCpuModel(graph, report, plan, lowered, module)
        compile_kernels(lowered, module, workers=1)
        model.warm_up()
    t = model.compile_seconds = time.perf_counter() - t0
    if tty:
        print(f" - ready in {t:.1f} s", file=sys.stderr)
    return model
