"""Numba CUDA backend: the optimised graph becomes one generated module of ``@cuda.jit``
kernels (one per fused node) run over a planned device arena.

    model = cnnc.compile(net, target="cuda")
    y = model(x)                 # NumPy in, NumPy out
    y_dev = model(x_dev)         # device array in (CuPy, PyTorch, Numba), device array out
    print(model.source())        # the generated kernels
    print(model.strategies())    # gemm tile / direct kernel chosen per conv and dense

The generated source is written to the on-disk cache shared with the CPU backend
(``$CNNC_CACHE_DIR``, see :mod:`cnnc.backends.numba_cpu.runtime`) and imported from there:
Numba-CUDA's ``cache=True`` keeps the compiled kernels beside it, tracebacks point at real
lines, and a second process compiling the same model skips NVVM.

On the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, one Python thread per CUDA thread) the
same generators run with small blocks and tiles (``convgen.SIM``), chosen automatically.
"""

from __future__ import annotations


def simulated() -> bool:
    """Whether ``numba.cuda`` is the CUDA simulator in this process."""
    try:
        from numba.cuda.core import config
    except ImportError:  # older numba-cuda layouts
        from numba import config
    return bool(getattr(config, "ENABLE_CUDASIM", 0))


def compile_graph(graph, report=None, *, profile: str | None = None, force: str | None = None,
                  tile=None):
    """Lower ``graph`` (already optimised) and build the model; kernels compile now.

    ``profile`` ("gpu" | "sim", default by the process) picks launch and tile sizes;
    ``force`` ("gemm" | "direct") and ``tile`` (a :class:`convgen.Tile`) override the
    per-shape conv/dense strategy (used by tests)."""
    from cnnc.backends.numba_cpu.runtime import load_module
    from cnnc.backends.numba_cuda import convgen
    from cnnc.backends.numba_cuda.lower import lower
    from cnnc.backends.numba_cuda.runtime import NumbaCudaModel
    from cnnc.errors import ConfigError
    from cnnc.passes.memory_plan import plan_memory
    if profile is None:
        profile = "sim" if simulated() else "gpu"
    if profile not in ("gpu", "sim"):
        raise ConfigError(f"profile must be 'gpu' or 'sim', got {profile!r}")
    if force not in (None, "gemm", "direct"):
        raise ConfigError(f"force must be None, 'gemm' or 'direct', got {force!r}")
    prof = convgen.SIM if profile == "sim" else convgen.GPU
    plan = getattr(report, "plan", None) or plan_memory(graph)
    lowered = lower(graph, plan, prof, force, tile)
    module = load_module(lowered.source)
    model = NumbaCudaModel(graph, report, plan, lowered, module, prof)
    if not simulated():  # compile batch 1's kernels now (the simulator has nothing to compile)
        model.warm_up()
    return model
