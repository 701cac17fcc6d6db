"""Memory-bound kernels against this machine's copy bandwidth:
``python -m benchmarks.bandwidth [--batch N] [--repeats R] [--cases NAME,...] [--ort]``.

Each case is a one-node graph (an elementwise op, LayerNorm, Resize, a pool) compiled for
target ``cpu``; its kernel is timed by ``cnnc profile`` (median of warm calls) and its GB/s
(every operand and the output, each counted once) is set against a parallel copy of the same
number of bytes (read + write, on every core Numba uses), timed in the same run right before
it.  Caches matter: at batch 1 most cases fit the L2/L3, at batch 8 most do not; the copy is
sized like each case, so the ratio compares like with like.  The column ``machine`` sets the
same GB/s against the machine's copy bandwidth, a copy of :data:`MACHINE_COPY_BYTES` (memory,
not cache; the fastest of 20 copies, as STREAM reports it), measured once at the start.

``--ort`` adds ONNX Runtime's median for the same one-node graph (cnnc's ONNX export), timed
in a child process of its own so that neither runtime's worker threads slow the other;
``--ort-isa avx2`` runs ORT's AVX2 kernels there (:mod:`benchmarks.ort_isa`), the peer of
cnnc's AVX2 code (``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` of an AVX2 target).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import machine

#: name -> (op, input shape at batch 1 (without N), attrs, extra operands as shapes)
CASES = {
    "relu 56x56x256": ("relu", (56, 56, 256), {}, ()),
    "gelu 56x56x256": ("gelu", (56, 56, 256), {}, ()),
    "sigmoid 56x56x256": ("sigmoid", (56, 56, 256), {}, ()),
    "add 56x56x256": ("add", (56, 56, 256), {}, ((56, 56, 256),)),
    "add bias 56x56x256": ("add", (56, 56, 256), {}, ((256,),)),
    "layer_norm C 56x56x96": ("layer_norm", (56, 56, 96), {"axes": (-1,)}, ((96,), (96,))),
    "layer_norm 196x768": ("layer_norm", (196, 768), {"axes": (-1,)}, ((768,), (768,))),
    "resize nearest 2x 28x28x256": ("resize", (28, 28, 256),
                                    {"scales": (2.0, 2.0), "size": (56, 56),
                                     "mode": "nearest", "coordinate_mode": "asymmetric",
                                     "nearest_mode": "floor"}, ()),
    "resize linear 2x 28x28x256": ("resize", (28, 28, 256),
                                   {"scales": (2.0, 2.0), "size": (56, 56), "mode": "linear",
                                    "coordinate_mode": "half_pixel"}, ()),
    "max_pool 2x2 56x56x128": ("max_pool2d", (56, 56, 128),
                               {"pool_size": (2, 2), "strides": (2, 2)}, ()),
}


#: bytes the machine's copy bandwidth is measured on (read + write), well past any L3 here
MACHINE_COPY_BYTES = 512 * 2**20


def _graph(name, op, shape, attrs, extras, rng):
    from cnnc.ir import Graph
    g = Graph(name.replace(" ", "_"))
    x = g.add_input(("N", *shape), name="x")
    ins = [x] + [g.constant(rng.standard_normal(s).astype(np.float32)) for s in extras]
    g.set_outputs(g.add(op, ins, attrs))
    return g


def _parallel_copy():
    import cnnc.backends.numba_cpu  # noqa: F401  (its thread settings)
    from numba import njit, prange

    @njit(parallel=True, cache=False)
    def copy(src, dst):
        for i in prange(src.size):
            dst[i] = src[i]
    return copy


def copy_gbps(n_bytes: int, repeats: int, best: bool = False) -> float:
    """GB/s of a parallel float32 copy moving ``n_bytes`` in all (half read, half written):
    of the median copy, or of the fastest with ``best`` (STREAM's convention)."""
    n = max(n_bytes // 8, 1)
    parallel_copy = _parallel_copy()
    src = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    dst = np.empty_like(src)
    parallel_copy(src, dst)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        parallel_copy(src, dst)
        times.append(time.perf_counter() - t0)
    return 8 * n / (min(times) if best else statistics.median(times)) / 1e9


def _case_graph(name: str, rng):
    op, shape, attrs, extras = CASES[name]
    return _graph(name, op, shape, attrs, extras, rng), shape


def ort_ms(name: str, batch: int, repeats: int, threads: int = 2) -> float:
    """ONNX Runtime's median ms for case ``name`` (run in this process: see :func:`main`)."""
    from benchmarks import harness
    rng = np.random.default_rng(0)
    g, shape = _case_graph(name, rng)
    system = harness.onnxruntime_system(g, threads)
    if system.error:
        raise RuntimeError(system.error)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    for _ in range(5):
        system.fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        system.fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _ort_child(name: str, batch: int, repeats: int, isa: str = "native") -> str:
    from benchmarks.ort_isa import ort_env
    cmd = [sys.executable, "-m", "benchmarks.bandwidth", "--ort-worker", name,
           "--batch", str(batch), "--repeats", str(repeats)]
    p = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True,
                       text=True, env=ort_env(isa))
    try:
        return f"{json.loads(p.stdout.strip().splitlines()[-1])['ms']:8.4f}"
    except (ValueError, IndexError, KeyError):
        return f"{'n/a':>8}"


def main(argv=None) -> int:
    import cnnc
    p = argparse.ArgumentParser(prog="python -m benchmarks.bandwidth")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--ort", action="store_true", help="add ONNX Runtime's time per case")
    p.add_argument("--ort-isa", choices=("native", "avx2"), default="native",
                   help="ORT's own kernels for this CPU, or its AVX2 ones")
    p.add_argument("--ort-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ort_worker:
        print(json.dumps({"ms": ort_ms(args.ort_worker, args.batch, args.repeats)}))
        return 0
    if args.ort:   # an ORT that cannot be held to the ISA is refused before any work
        from benchmarks.ort_isa import ort_env
        ort_env(args.ort_isa)
    print(f"# {machine.cpu_model()}, {machine.usable_cores()} cores, flags "
          f"{machine.cpu_flags()}; cnnc target {machine.cpu_target()}; load "
          f"{machine.load_average()}; batch {args.batch}"
          + (f"; ONNX Runtime {args.ort_isa}" if args.ort else ""))
    big = copy_gbps(MACHINE_COPY_BYTES, 20, best=True)
    print(f"# the machine's copy bandwidth: {big:.1f} GB/s (a parallel copy of "
          f"{MACHINE_COPY_BYTES // 2**20} MiB, past the caches; the fastest of 20)")
    rng = np.random.default_rng(0)
    print(f"{'case':32} {'MiB':>7} {'ms':>8} {'GB/s':>7} {'copy GB/s':>9} {'ratio':>6} "
          f"{'machine':>7}" + (f" {'ORT ms':>8}" if args.ort else ""))
    for name in args.cases.split(","):
        g, shape = _case_graph(name, rng)
        compiled = cnnc.compile(g, target="cpu")
        x = rng.standard_normal((args.batch, *shape)).astype(np.float32)
        prof = compiled.profile(x, repeats=args.repeats)
        row = max(prof.rows, key=lambda r: r.ms)
        ref = copy_gbps(row.bytes, args.repeats)
        peer = (f" {_ort_child(name, args.batch, args.repeats, args.ort_isa)}" if args.ort
                else "")
        print(f"{name:32} {row.bytes / 2**20:7.2f} {row.ms:8.4f} {row.gbps:7.1f} {ref:9.1f} "
              f"{row.gbps / ref:6.2f} {row.gbps / big:7.2f}" + peer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
