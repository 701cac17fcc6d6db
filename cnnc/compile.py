"""The driver: front-end model or graph -> verified, optimised graph -> backend."""

from __future__ import annotations

from cnnc.errors import ConfigError, UnsupportedError
from cnnc.ir.graph import Graph

TARGETS = ("auto", "numpy", "cpu", "cuda")


def to_graph(model) -> Graph:
    """A fresh copy of the graph behind a model, a graph or a compiled model."""
    if isinstance(model, Graph):
        return model.copy()
    if hasattr(model, "to_graph"):
        return model.to_graph()
    if hasattr(model, "graph") and isinstance(model.graph, Graph):
        return model.graph.copy()
    raise ConfigError(f"cnnc.compile expects a cnnc Model, Sequential or Graph, "
                      f"got {type(model).__name__}")


CUDA_EXTRA = ("target 'cuda' needs the numba-cuda package (pip install \"cnnc[cuda]\"); "
              "Numba's own numba.cuda module lacks the driver API the CUDA backend uses")


def numba_cuda_installed() -> bool:
    """Whether the ``numba-cuda`` package (the CUDA backend's runtime) is installed: without it
    ``numba.cuda`` is Numba's older built-in module, whose simulator lacks the API used here."""
    import importlib.util
    try:
        return importlib.util.find_spec("numba_cuda") is not None
    except (ImportError, ValueError):
        return False


def cuda_available() -> bool:
    if not numba_cuda_installed():
        return False
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:  # no numba-cuda, no driver: no GPU
        return False


def resolve_target(target: str) -> str:
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; expected one of {TARGETS}")
    if target == "auto":
        if cuda_available() and _has_backend("cuda"):
            from cnnc.backends.numba_cuda import simulated
            if not simulated():  # never pick the CUDA simulator (a Python thread per thread)
                return "cuda"
        return "cpu" if _has_backend("cpu") else "numpy"
    return target


def _has_backend(target: str) -> bool:
    import importlib.util
    name = {"cpu": "cnnc.backends.numba_cpu", "cuda": "cnnc.backends.numba_cuda"}[target]
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def check_weights_fit(graph: Graph) -> None:
    """Compiling copies the weights (folding, lowering): refuse a graph whose float32 weights
    would not fit in available memory, before any pass runs."""
    from cnnc.backends.base import check_memory
    total = sum(4 * int(n.data.size) for n in graph.nodes if n.op == "constant")
    check_memory(total, f"compiling graph {graph.name!r} (a copy of its weights)")


def compile(model, target: str = "auto", opt_level: int = 2, print_after=None,
            verify_each: bool = False, stream=None, tune: bool = False):
    """Compile ``model`` for ``target`` ("auto" | "numpy" | "cpu" | "cuda").

    ``print_after`` is None, "all" or a pass name: the IR is printed to ``stream`` (stdout)
    after those passes. ``tune=True`` (target cpu) first times candidate plans of every conv
    not yet tuned on this machine and keeps the fastest (as ``cnnc tune`` does; later
    compiles on this machine take them anyway). Returns a
    :class:`~cnnc.backends.base.CompiledModel`."""
    from cnnc.passes import optimize
    if opt_level not in (0, 1, 2):
        raise ConfigError(f"opt_level must be 0, 1 or 2, got {opt_level!r}")
    target = resolve_target(target)
    if tune and target != "cpu":
        raise ConfigError(f"tune=True tunes the cpu target's conv plans; target is {target!r}")
    if target == "cuda" and not numba_cuda_installed():
        raise UnsupportedError(CUDA_EXTRA)  # before any pass runs
    graph = to_graph(model)
    check_weights_fit(graph)
    report = optimize(graph, opt_level, print_after=print_after, verify_each=verify_each,
                      stream=stream)
    if tune:
        from cnnc.backends.numba_cpu.tune import tune_graph
        tune_graph(graph, batch=static_batch(graph))
    return compile_optimized(graph, report, target)


def static_batch(graph: Graph) -> int:
    """The batch a model runs at when its inputs fix it, else 1."""
    d = graph.inputs[0].type.shape[0] if graph.inputs and graph.inputs[0].type.shape else 1
    return d if isinstance(d, int) else 1


def compile_optimized(graph: Graph, report, target: str):
    """The backend step alone: ``graph`` is already optimised (``report`` says how)."""
    if target == "numpy":
        from cnnc.backends.reference import ReferenceModel
        return ReferenceModel(graph, report)
    if target == "cpu":
        if not _has_backend("cpu"):
            raise UnsupportedError("target 'cpu' (Numba CPU backend) is not available yet; "
                                   "use target='numpy'")
        from cnnc.backends.numba_cpu import compile_graph
        return compile_graph(graph, report)
    if not numba_cuda_installed():
        raise UnsupportedError(CUDA_EXTRA)
    if not cuda_available():
        raise UnsupportedError("target 'cuda': no CUDA device was found (numba.cuda reports "
                               "none); use target='cpu' or 'auto'")
    if not _has_backend("cuda"):
        raise UnsupportedError("target 'cuda' (Numba CUDA backend) is not available yet")
    from cnnc.backends.numba_cuda import compile_graph
    return compile_graph(graph, report)
