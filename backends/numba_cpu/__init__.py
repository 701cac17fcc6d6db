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
    from cnnc.backends.numba_cpu.runtime import NumbaCpuModel, load_module
    from cnnc.errors import CnncError
    from cnnc.passes.memory_plan import plan_memory
    plan = getattr(report, "plan", None) or plan_memory(graph)
    lowered = lower(graph, plan)
    module = load_module(lowered.source)
    model = NumbaCpuModel(graph, report, plan, lowered, module)
    if sys.stderr.isatty():
        print(f"cnnc: compiling {len(lowered.kernel_names)} kernels for {graph.name!r} ...",
              file=sys.stderr, end="", flush=True)
    try:
        t = model.warm_up()
    except CnncError:
        raise
    except Exception:  # a corrupt or stale Numba cache entry: rebuild it once from scratch
        model = NumbaCpuModel(graph, report, plan, lowered, load_module(lowered.source, True))
        t = model.warm_up()
    if sys.stderr.isatty():
        print(f" {t:.1f} s", file=sys.stderr)
    return model
