"""Numba CPU backend: the optimised graph becomes one generated module of fused kernels and a
jitted ``forward`` over a planned arena.

Process settings, applied before Numba starts (setdefault: a user's choice wins):
``NUMBA_SLP_VECTORIZE=1`` (the convolution register tiles rely on LLVM's SLP vectoriser) and
``OMP_WAIT_POLICY=passive`` (Numba's OpenMP workers must not spin on the cores that
OpenBLAS's threads need right after a parallel loop).
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_SLP_VECTORIZE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numba  # noqa: E402

numba.config.SLP_VECTORIZE = int(os.environ["NUMBA_SLP_VECTORIZE"])


def compile_graph(graph, report=None):
    """Lower ``graph`` (already optimised), load or build its kernels, return the model."""
    import sys
    import time

    from cnnc.backends.numba_cpu.lower import lower
    from cnnc.backends.numba_cpu.runtime import NumbaCpuModel, compile_kernels, load_module
    from cnnc.errors import CnncError
    from cnnc.passes.memory_plan import plan_memory
    plan = getattr(report, "plan", None) or plan_memory(graph)
    lowered = lower(graph, plan)
    module = load_module(lowered.source)
    model = NumbaCpuModel(graph, report, plan, lowered, module)
    tty = sys.stderr.isatty()

    def progress(done, total):
        print(f"\rcnnc: compiling kernels for {graph.name!r}: {done}/{total} (this process's "
              f"share)", file=sys.stderr, end="", flush=True)

    t0 = time.perf_counter()
    try:
        compile_kernels(lowered, module, progress=progress if tty else None)
        model.warm_up()
    except CnncError:
        raise
    except Exception:  # a corrupt or stale Numba cache entry: rebuild it once from scratch
        model = NumbaCpuModel(graph, report, plan, lowered, load_module(lowered.source, True))
        model.warm_up()
    t = model.compile_seconds = time.perf_counter() - t0
    if tty:
        print(f" - ready in {t:.1f} s", file=sys.stderr)
    return model
