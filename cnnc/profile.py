"""Per-node cost model and per-kernel profiles.

    p = compiled.profile(x, repeats=20)     # or cnnc.profile.profile(compiled, x)
    print(p)                                # node, op, shape, FLOPs, bytes, ms, GFLOP/s, % peak
    p.to_csv("prof.csv"); p.plot("prof.png")
    print(cnnc.profile.summary(compiled))   # node, op, output shape, params, FLOPs

FLOPs count a multiply-add as 2 and every elementwise step (bias, epilogue step, activation,
addition) as 1 per output element; pooling counts one per window tap, shape ops nothing.
Bytes moved are every operand (weights included) plus the output, float32.

Numba CPU kernels are timed by stepping through the generated ``forward`` (see
:class:`cnnc.debug.ForwardStepper`): each kernel is called from Python, warm, and timed by the
median of ``repeats`` calls, so tiny kernels carry a few microseconds of dispatch overhead.
Kernels that write in place over an operand are re-run on their own output; the timing is not
affected, the values in later buffers are. For the ``numpy`` target every node's reference is
timed the same way.

The machine's float32 peak is a NumPy 2048x2048 matmul (median), measured once and cached in
the user cache directory (``$CNNC_CACHE_DIR`` or ``~/.cache/cnnc``); ``$CNNC_PEAK_GFLOPS``
overrides it.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from cnnc.errors import ConfigError, UnsupportedError

VIEW_OPS = ("flatten", "reshape", "identity", "dropout")
SHAPE_OPS = VIEW_OPS + ("transpose", "pad", "concat", "constant")
ITEMSIZE = 4


# ---- cost model ---------------------------------------------------------------------------
def _numel(value, bindings) -> int:
    return int(np.prod(value.type.concrete(bindings), dtype=np.int64))


def node_macs(node, bindings: dict) -> int:
    """Multiply-accumulates of one conv, transposed conv, dense or matmul node (0 for every
    other op) for ``bindings`` (e.g. ``{"N": 8}``)."""
    op = node.op
    if op in ("conv2d", "conv2d_fused"):
        kh, kw, cig, _ = node.inputs[1].shape
        return _numel(node.output, bindings) * kh * kw * cig
    if op in ("conv2d_transpose", "conv2d_transpose_fused"):
        kh, kw, _, cog = node.inputs[1].shape   # every input value meets every tap once
        return _numel(node.inputs[0], bindings) * kh * kw * cog
    if op in ("dense", "dense_fused"):
        return _numel(node.output, bindings) * node.inputs[1].shape[0]
    if op == "matmul":
        return _numel(node.output, bindings) * node.inputs[0].type.concrete(bindings)[-1]
    return 0


def node_flops(node, bindings: dict) -> int:
    """Floating-point operations of one node for ``bindings`` (e.g. ``{"N": 8}``)."""
    op, out = node.op, _numel(node.output, bindings)
    epi = len(node.attrs.get("epilogue", ()))
    epi += sum(1 for s in node.attrs.get("epilogue", ()) if s[0] == "scale_shift")
    macs = node_macs(node, bindings)
    if op == "matmul":
        return 2 * macs
    if macs:  # a multiply-add is 2, the bias and each epilogue step 1 per output
        return 2 * macs + out * ((1 if len(node.inputs) > 2 else 0) + epi)
    if op in ("max_pool2d", "avg_pool2d"):
        kh, kw = node.attrs["pool_size"]
        return out * kh * kw
    if op in ("global_avg_pool", "global_max_pool"):
        return _numel(node.inputs[0], bindings)
    if op in ("batch_norm", "scale_shift"):
        return 2 * out
    if op == "softmax":
        return 4 * out
    if op in SHAPE_OPS:
        return 0
    return out  # elementwise: activations, add, bias_add, ...


def node_params(node) -> int:
    """Scalars in the node's constant operands (its weights)."""
    return sum(int(v.data.size) for v in node.inputs if v.is_constant)


def node_bytes(node, bindings: dict) -> int:
    """Bytes read and written: every operand (weights included) and the output (float32)."""
    if node.op in VIEW_OPS:
        return 0
    return ITEMSIZE * (sum(_numel(v, bindings) for v in node.inputs) + _numel(node.output,
                                                                              bindings))


def _bindings(graph, batch: int) -> dict:
    return {d: batch for v in graph.inputs for d in v.type.shape if isinstance(d, str)}


def summary(compiled, batch: int = 1) -> str:
    """A table of the compiled graph: node, op + epilogue, output shape, params, FLOPs."""
    from cnnc.viz import op_label, shape_text
    graph = getattr(compiled, "graph", compiled)
    b = _bindings(graph, batch)
    rows = [(f"%{n.name}", op_label(n), shape_text(n.output.shape), f"{node_params(n):,}",
             f"{node_flops(n, b):,}") for n in graph.ops]
    head = ("node", "op", "output shape", "params", f"FLOPs (N={batch})")
    target = getattr(compiled, "target", "graph")
    total_p = sum(node_params(n) for n in graph.ops)
    total_f = sum(node_flops(n, b) for n in graph.ops)
    lines = [f"{graph.name} ({target}): {len(rows)} nodes"]
    if hasattr(compiled, "cpu_description"):
        lines.append(f"cpu target: {compiled.cpu_description()}")
    lines += _table(head, rows, right=(3, 4))
    lines.append(f"total: {total_p:,} params, {total_f:,} FLOPs per batch of {batch} "
                 f"({total_f / 1e6:.2f} MFLOP)")
    return "\n".join(lines)


def _table(head, rows, right=()) -> list[str]:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def fmt(r):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return [fmt(head), rule, *(fmt(r) for r in rows), rule]


# ---- machine peak -------------------------------------------------------------------------
def _cache_file() -> str:
    d = os.environ.get("CNNC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cnnc")
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, "peak.json")


def _machine_key() -> str:
    import platform
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")),
                       cpu)
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return f"{cpu}|{cores} cores|numpy {np.__version__}{_blas_override()}"


def blas_coretype(env=None) -> str:
    """The OpenBLAS kernels ``OPENBLAS_CORETYPE`` forces in environment ``env`` (default:
    this process's; OpenBLAS reads it when NumPy loads), or "" when OpenBLAS picks them for
    the CPU.  Haswell's AVX2 kernels reach about half of an AVX-512 CPU's GEMM rate, so a
    peak measured under them is not the CPU's."""
    return (os.environ if env is None else env).get("OPENBLAS_CORETYPE", "")


def _blas_override() -> str:
    core = blas_coretype()
    return f", OPENBLAS_CORETYPE={core}" if core else ""


def measure_peak(n: int = 2048, repeats: int = 5, rounds: int = 3) -> float:
    """GFLOP/s of a float32 ``n x n`` NumPy matmul: the median of ``repeats`` warm calls,
    the best of ``rounds`` such medians (a busy moment must not stay cached as the peak)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)
    best = min(_median_ms(lambda: np.matmul(a, b, out=out), repeats) for _ in range(rounds))
    return 2 * n ** 3 / (best * 1e-3) / 1e9


def peak_gflops(refresh: bool = False) -> float:
    """The machine's float32 peak, measured once and cached per CPU/cores/NumPy."""
    env = os.environ.get("CNNC_PEAK_GFLOPS")
    if env:
        try:
            return float(env)
        except ValueError:
            raise ConfigError(f"CNNC_PEAK_GFLOPS must be a number, got {env!r}") from None
    path, key = _cache_file(), _machine_key()
    data = {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        pass
    old = data.get(key)
    if not refresh and isinstance(old, (int, float)):
        return float(old)
    data[key] = measure_peak()
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)
    return data[key]


# ---- profiles -----------------------------------------------------------------------------
@dataclass
class ProfileRow:
    node: str
    op: str
    shape: str
    flops: int
    bytes: int
    ms: float
    gflops: float = 0.0
    pct_peak: float = 0.0
    share: float = 0.0

    @property
    def gbps(self) -> float:
        """Bytes moved (inputs, weights and output, each once) per second, in GB/s: the
        rate of the memory-bound kernels (pools, elementwise ops, norms, data movement)."""
        return self.bytes / (self.ms * 1e-3) / 1e9 if self.ms > 0 else 0.0


@dataclass
class Profile:
    """Per-node timings of one compiled model at one batch size."""

    model: str
    target: str
    batch: int
    repeats: int
    peak_gflops: float
    rows: list[ProfileRow] = field(default_factory=list)
    end_to_end_ms: float = 0.0
    cpu: str = ""   # the LLVM target of a cpu model's kernels

    @property
    def total_ms(self) -> float:
        return sum(r.ms for r in self.rows)

    def __str__(self) -> str:
        return self.table()

    def table(self, top: int | None = None) -> str:
        rows = sorted(self.rows, key=lambda r: -r.ms)[:top] if top else self.rows
        head = ("node", "op", "output shape", "MFLOP", "KiB moved", "ms", "GFLOP/s", "GB/s",
                "% peak", "share")
        body = [(r.node, r.op, r.shape, f"{r.flops / 1e6:.2f}", f"{r.bytes / 1024:.0f}",
                 f"{r.ms:.3f}", f"{r.gflops:.1f}", f"{r.gbps:.1f}", f"{r.pct_peak:.1f}",
                 f"{100 * r.share:.1f}%") for r in rows]
        flops = sum(r.flops for r in self.rows)
        lines = [f"profile of {self.model!r} on {self.target}, batch {self.batch}, median of "
                 f"{self.repeats} warm calls per node; float32 peak {self.peak_gflops:.1f} "
                 f"GFLOP/s (NumPy matmul 2048²{_blas_override()})"]
        if self.cpu:
            lines.append(f"cpu target: {self.cpu}")
        lines += _table(head, body, right=(3, 4, 5, 6, 7, 8, 9))
        gf = flops / (self.total_ms * 1e-3) / 1e9 if self.total_ms > 0 else 0.0
        lines.append(f"sum of nodes: {self.total_ms:.3f} ms, {flops / 1e6:.2f} MFLOP, "
                     f"{gf:.1f} GFLOP/s ({100 * gf / self.peak_gflops:.1f}% of peak)")
        if self.end_to_end_ms:
            lines.append(f"whole model call (median): {self.end_to_end_ms:.3f} ms")
        return "\n".join(lines)

    def to_csv(self, path: str) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["node", "op", "output_shape", "flops", "bytes", "ms", "gflops",
                        "gbps", "pct_peak", "share"])
            for r in self.rows:
                w.writerow([r.node, r.op, r.shape, r.flops, r.bytes, f"{r.ms:.6f}",
                            f"{r.gflops:.3f}", f"{r.gbps:.3f}", f"{r.pct_peak:.3f}",
                            f"{r.share:.5f}"])

    def plot(self, path: str) -> None:
        """A horizontal bar chart of time per node (matplotlib)."""
        try:
            import matplotlib
            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError:
            raise UnsupportedError("the profile chart needs matplotlib (pip install "
                                   "matplotlib); the table and --csv work without it") from None
        rows = self.rows
        fig, ax = plt.subplots(figsize=(9, 1.2 + 0.26 * len(rows)))
        y = np.arange(len(rows))[::-1]
        ax.barh(y, [r.ms for r in rows], color="#5b8bd0")
        ax.set_yticks(y, [f"%{r.node.lstrip('%')} {r.op}" for r in rows], fontsize=7)
        for yi, r in zip(y, rows):
            ax.text(r.ms, yi, f" {r.ms:.3f} ms, {r.pct_peak:.0f}% peak", va="center",
                    fontsize=6)
        ax.set_xlabel("ms (median)")
        ax.set_title(f"{self.model} on {self.target}, batch {self.batch}: "
                     f"{self.total_ms:.2f} ms over {len(rows)} nodes", fontsize=9)
        ax.margins(x=0.25)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


#: the whole-call line times calls for at least this long (and at least 3 calls): ten calls
#: of a 0.25 ms model span 2.5 ms, which one stall of a shared machine's neighbour skews
#: (ResNet-20 at batch 1 read 0.61 ms over 10 calls, 0.34 over 0.5 s, in the same minute)
E2E_SECONDS = 0.3


def _median_ms(fn, repeats: int, seconds: float = 0.0) -> float:
    """Median ms of ``repeats`` calls of ``fn``, or of more calls where they take less than
    ``seconds`` in all."""
    times = []
    end = time.perf_counter() + seconds
    while len(times) < repeats or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def profile(compiled, x, repeats: int = 20, peak: float | None = None) -> Profile:
    """Time every node of ``compiled`` on input ``x`` (an array or a list of arrays)."""
    from cnnc.backends.base import prepare_inputs
    from cnnc.viz import op_label, shape_text
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ConfigError(f"repeats must be a positive integer, got {repeats!r}")
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    graph = compiled.graph
    arrays, bindings = prepare_inputs(graph, xs)
    batch = int(arrays[0].shape[0]) if arrays and arrays[0].ndim else 1  # also a fixed batch
    times: dict[int, float] = {}
    nodes: dict[int, object] = {}
    if compiled.target == "cpu":
        from cnnc.debug import ForwardStepper
        stepper = ForwardStepper(compiled)

        def on_call(step, fn, args):
            fn(*args)  # warm
            times[id(step.node)] = times.get(id(step.node), 0.0) + _median_ms(
                lambda: fn(*args), repeats)
            nodes[id(step.node)] = step.node

        stepper.run(arrays, bindings, on_call=on_call)
    elif compiled.target == "numpy":
        _profile_reference(graph, arrays, repeats, times, nodes)
    else:
        raise UnsupportedError(f"per-kernel profiles exist for targets 'cpu' and 'numpy', "
                               f"not {compiled.target!r}")
    compiled(*xs)
    e2e = _median_ms(lambda: compiled(*xs), max(3, min(repeats, 10)), E2E_SECONDS)
    rows = []
    for node in graph.ops:
        if id(node) not in times:
            continue
        ms = times[id(node)]
        flops = node_flops(node, bindings)
        gf = flops / (ms * 1e-3) / 1e9 if ms > 0 else 0.0
        rows.append(ProfileRow(f"%{node.name}", op_label(node),
                               shape_text(node.output.type.concrete(bindings)), flops,
                               node_bytes(node, bindings), ms, gf))
    if peak is None:
        peak = peak_gflops()
        if max((r.gflops for r in rows), default=0.0) > peak and \
                not os.environ.get("CNNC_PEAK_GFLOPS"):
            # a kernel beat the cached peak: it was measured on a busy machine; again, once
            peak = peak_gflops(refresh=True)
    prof = Profile(graph.name, compiled.target, batch, repeats, peak, end_to_end_ms=e2e)
    if hasattr(compiled, "cpu_description"):
        prof.cpu = compiled.cpu_description()
    for r in rows:
        r.pct_peak = 100 * r.gflops / peak
    prof.rows = rows
    total = prof.total_ms
    for r in prof.rows:
        r.share = r.ms / total if total > 0 else 0.0
    return prof


def _profile_reference(graph, arrays, repeats, times, nodes) -> None:
    from cnnc.ops.registry import get_op
    env = {id(v): a for v, a in zip(graph.inputs, arrays)}
    for node in graph.nodes:
        if node.op == "constant":
            data = node.data
            env[id(node.output)] = data.astype(np.float32) if data.dtype.kind == "f" else data
            continue
        opdef, args, attrs = get_op(node.op), [env[id(v)] for v in node.inputs], dict(node.attrs)
        env[id(node.output)] = np.asarray(opdef.evaluate(args, attrs))
        times[id(node)] = _median_ms(lambda: opdef.evaluate(args, attrs), repeats)
        nodes[id(node)] = node
