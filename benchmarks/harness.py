"""Benchmark building blocks: FLOP counting, warm timing, the systems under test, output checks
and the result table.

Every system gets the same graph (the same weights) and the same input; each is called warm
(warm-up calls first) and timed by the median of repeated calls. Optional peers (PyTorch,
ONNX Runtime) are imported lazily; a system that cannot be built or run becomes an
``unavailable: <error>`` row instead of stopping the run.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from cnnc.profile import node_macs

#: relative error (max |y - ref| / max |ref|) above which a system's output is flagged
TOLERANCE = 1e-3
#: the systems compared against cnnc
PEERS = ("torch-eager", "torch-compile", "onnxruntime")


# ---- FLOPs ---------------------------------------------------------------------------------
def count_flops(graph, batch: int = 1) -> int:
    """2 x MACs of the graph's convolutions and dense layers for a batch of ``batch``."""
    symbols = {d for v in graph.inputs for d in v.type.shape if isinstance(d, str)}
    bindings = {s: batch for s in symbols}
    return 2 * sum(node_macs(n, bindings) for n in graph.ops)


# ---- timing --------------------------------------------------------------------------------
def measure(fn: Callable, x, repeats: int | None = None, min_seconds: float = 1.0,
            min_repeats: int = 10, warmup: int = 3, max_seconds: float = 60.0,
            stats: dict | None = None, pause: float = 0.0):
    """(median seconds, repeats) of warm calls ``fn(x)``; ``stats``, when given, receives
    their mean and 90th percentile too (a runtime that stalls now and then beside a busy
    neighbour can have a good median and a poor mean).

    Without ``repeats``: enough calls for ``min_seconds`` in total, at least ``min_repeats``
    (fewer only when that would pass ``max_seconds``).  ``pause``: seconds of sleep before
    each timed call, not timed (a server answering one request at a time; the pauses count
    towards ``min_seconds``)."""
    for _ in range(warmup):
        fn(x)
    if repeats is None:
        t0 = time.perf_counter()
        fn(x)
        one = max(time.perf_counter() - t0, 1e-7) + pause
        repeats = max(min_repeats, math.ceil(min_seconds / one))
        repeats = max(3, min(repeats, int(max_seconds / one)))
    times = []
    for _ in range(repeats):
        if pause:
            time.sleep(pause)
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    if stats is not None:
        stats["mean"] = statistics.fmean(times)
        stats["p90"] = statistics.quantiles(times, n=10)[-1] if len(times) > 1 else times[0]
    return statistics.median(times), repeats


# ---- systems -------------------------------------------------------------------------------
@dataclass
class System:
    """A callable on an NHWC float32 array, or the reason it is unavailable."""

    name: str
    fn: Callable | None = None
    error: str | None = None
    timed: bool = True
    info: dict = field(default_factory=dict)


def _short(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg[:160]}"


def _first(y):
    return y[0] if isinstance(y, (tuple, list)) else y


def cnnc_system(graph, target: str) -> System:
    import cnnc
    name = f"cnnc-{target}"
    try:
        t0 = time.perf_counter()
        compiled = cnnc.compile(graph, target=target)
        seconds = time.perf_counter() - t0
    except Exception as e:  # backend not ready or failing: report it, keep going
        return System(name, error=_short(e))
    return System(name, lambda x: _first(compiled(x)), info={"compile_s": seconds})


def torch_systems(graph, threads: int, compile_: bool = True) -> list[System]:
    """PyTorch eager and ``torch.compile`` over the same module (NCHW inside)."""
    try:
        import torch

        from benchmarks.torch_peer import torch_module
        torch.set_num_threads(threads)
        module = torch_module(graph).eval()
    except Exception as e:
        out = [System("torch-eager", error=_short(e))]
        return out + ([System("torch-compile", error=_short(e))] if compile_ else [])

    def call(mod):
        def fn(x):
            with torch.inference_mode():
                return _first(mod(torch.from_numpy(x))).numpy()
        return fn

    systems = [System("torch-eager", call(module))]
    if compile_:
        try:
            import torch._inductor.config as inductor_config
            # compile in this process: a pool of compile workers would share the cores
            # with the systems being timed
            inductor_config.compile_threads = 1
            compiled = torch.compile(module, dynamic=False)
            systems.append(System("torch-compile", call(compiled)))
        except Exception as e:
            systems.append(System("torch-compile", error=_short(e)))
    return systems


def onnxruntime_system(graph, threads: int) -> System:
    try:
        import onnxruntime as ort

        from cnnc.frontends.onnx.export import export_onnx
        proto = export_onnx(graph)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        sess = ort.InferenceSession(proto.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        del proto
    except Exception as e:
        return System("onnxruntime", error=_short(e))
    name = sess.get_inputs()[0].name
    return System("onnxruntime", lambda x: sess.run(None, {name: x})[0])


def build_systems(graph, threads: int = 2, torch_compile: bool = True,
                  time_numpy: bool = False) -> list[System]:
    """Every system over ``graph``: cnnc-cpu, cnnc-numpy (timed only when ``time_numpy``),
    PyTorch eager, torch.compile and ONNX Runtime."""
    set_threads(threads)
    systems = [cnnc_system(graph, "cpu")]
    numpy_sys = cnnc_system(graph, "numpy")
    numpy_sys.timed = time_numpy
    systems.append(numpy_sys)
    systems += torch_systems(graph, threads, torch_compile)
    systems.append(onnxruntime_system(graph, threads))
    return systems


def set_threads(threads: int) -> dict:
    """Pin every runtime that can be told to ``threads`` threads; returns what was set."""
    out = {}
    try:  # torch first: its OpenMP runtime keeps its own defaults (cnnc's CPU backend sets
        import torch  # OMP_WAIT_POLICY=passive for the runtimes loaded after it)
        torch.set_num_threads(threads)
        out["torch"] = torch.get_num_threads()
    except Exception:
        pass
    try:
        import numba
        n = min(threads, numba.config.NUMBA_NUM_THREADS)
        numba.set_num_threads(n)
        out["numba"] = n
    except Exception:
        pass
    out["onnxruntime"] = threads
    return out


# ---- checks and rows -----------------------------------------------------------------------
def max_rel_err(y, ref) -> float:
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    if y.shape != ref.shape:
        return math.inf
    return float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-12))


@dataclass
class Row:
    model: str
    batch: int
    system: str
    flops: int
    ms: float | None = None
    repeats: int = 0
    err: float | None = None
    note: str = ""


def run_config(model: str, graph, batch: int, systems: list[System], *, seed: int = 0,
               repeats: int | None = None, min_seconds: float = 1.0, warmup: int = 3,
               log=None) -> list[Row]:
    """Check and time every system on one (model, batch) configuration."""
    from cnnc.backends.reference import run_reference
    shape = graph.inputs[0].type.shape
    x = np.random.default_rng(seed + batch).standard_normal((batch, *shape[1:]))
    x = x.astype(np.float32)
    ref = _first(run_reference(graph, x))
    flops = count_flops(graph, batch)
    rows = []
    for s in systems:
        row = Row(model, batch, s.name, flops)
        rows.append(row)
        if s.error is not None:
            row.note = f"unavailable: {s.error}"
            continue
        if log:
            log(f"  {model} batch {batch}: {s.name} ...")
        try:
            row.err = max_rel_err(s.fn(x), ref)
            if row.err > TOLERANCE:
                row.note = f"MISMATCH (> {TOLERANCE:g})"
            if s.timed:
                sec, row.repeats = measure(s.fn, x, repeats, min_seconds, warmup=warmup)
                row.ms = sec * 1e3
            else:
                row.note = (row.note + "; " if row.note else "") + "not timed"
        except Exception as e:
            row.note = f"unavailable: {_short(e)}"
    return rows


# ---- tables --------------------------------------------------------------------------------
def format_table(rows: list[Row], peak_gflops: float | None) -> str:
    """A Markdown table: ratio to the fastest peer of the same config, GFLOP/s, % of peak."""
    best = {}
    for r in rows:
        if r.system in PEERS and r.ms is not None:
            key = (r.model, r.batch)
            best[key] = min(best.get(key, math.inf), r.ms)
    head = ("| model | batch | system | median ms | x best peer | GFLOP/s | % peak | "
            "max rel err | repeats | note |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        b = best.get((r.model, r.batch))
        if r.ms is None:
            ms = ratio = gf = pk = "-"
        else:
            gflops = r.flops / (r.ms * 1e-3) / 1e9
            ms, gf = f"{r.ms:.3f}", f"{gflops:.1f}"
            ratio = f"{r.ms / b:.2f}" if b else "-"
            pk = f"{100 * gflops / peak_gflops:.1f}" if peak_gflops else "-"
        err = "-" if r.err is None else f"{r.err:.1e}"
        lines.append(f"| {r.model} | {r.batch} | {r.system} | {ms} | {ratio} | {gf} | {pk} | "
                     f"{err} | {r.repeats or '-'} | {r.note} |")
    return "\n".join(lines)


def format_compile_table(times: dict[str, tuple]) -> str:
    lines = ["| model | cnnc compile cold s | cnnc compile warm s | note |", "|---|---|---|---|"]
    for model, (cold, warm, note) in times.items():
        fmt = (lambda t: "-" if t is None else f"{t:.2f}")
        lines.append(f"| {model} | {fmt(cold)} | {fmt(warm)} | {note} |")
    return "\n".join(lines)
