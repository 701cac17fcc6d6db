"""The benchmark run: ``python -m benchmarks [--models ...] [--quick] [--repeats N] [--write]``.

For every model: build it once from the zoo (seeded), give its BatchNorms and biases seeded
random statistics (so the output checks exercise them), hand that one graph to every system,
check each system's output against cnnc's float64 reference and time it warm. cnnc's compile
time is measured cold (a fresh temporary ``CNNC_CACHE_DIR``) and warm (a second process over
the same cache). ``--write`` appends a dated section to ``benchmarks/RESULTS.md``.

``--isa native,avx2`` (either or both) runs :mod:`benchmarks.alternate` over the same models
and batch sizes instead: cnnc compiled for each ISA and ONNX Runtime on its kernels of that
ISA, each system in its own processes, alternated over ``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import harness, machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
#: model -> batch sizes (zoo default input shapes: 32x32 for LeNet-5/ResNet-20, 224x224 else)
CONFIGS = {"lenet5": (1, 64), "resnet20": (1, 64), "resnet18": (1, 8), "vgg11": (1,)}
QUICK = {"lenet5": (1,), "resnet20": (1,)}
#: below this many FLOPs per sample the NumPy reference backend is timed too
NUMPY_TIMED_FLOPS = 10e6


def randomize_statistics(graph, seed: int = 0):
    """Seeded random BatchNorm statistics and conv/dense biases, in place (the zoo starts them
    at identity and zero, which an output check would not notice being dropped)."""
    rng = np.random.default_rng(seed)

    def refill(value, array):
        array = np.asarray(array, np.float32)
        array.setflags(write=False)
        value.producer.data = array

    for node in graph.ops:
        if node.op == "batch_norm" and all(v.is_constant for v in node.inputs[1:]):
            c = node.inputs[1].type.shape[0]
            for v, a in zip(node.inputs[1:], (rng.uniform(0.5, 1.5, c), rng.normal(0, .1, c),
                                              rng.normal(0, .1, c), rng.uniform(0.5, 2, c))):
                refill(v, a)
        elif node.op in ("conv2d", "dense") and len(node.inputs) == 3 and \
                node.inputs[2].is_constant:
            refill(node.inputs[2], rng.normal(0, 0.05, node.inputs[2].type.shape))
    return graph


def compile_times(model: str, seed: int = 0, timeout: float = 1800) -> tuple:
    """(cold s, warm s, note): two fresh processes compiling ``model`` (a built-in name or
    an ONNX file) over one new cache; the note gives its distinct kernels and kernel calls."""
    with tempfile.TemporaryDirectory(prefix="cnnc-cache-") as cache:
        env = dict(os.environ, CNNC_CACHE_DIR=cache)
        out = []
        for _ in range(2):
            cmd = [sys.executable, "-m", "benchmarks.compile_time", model, "--seed", str(seed),
                   "--json"]
            try:
                p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                                   timeout=timeout)
                res = json.loads(p.stdout.strip().splitlines()[-1])
            except Exception as e:
                res = {"error": f"{type(e).__name__}: {str(e)[:160]}"}
            if "error" in res:
                return None, None, f"unavailable: {res['error']}"
            out.append(res["seconds"])
    return out[0], out[1], f"{res['kernels']} kernels, {res['calls']} calls"


def run(models, quick=False, repeats=None, threads=2, seed=0, torch_compile=True,
        compile_timing=True, log=print) -> dict:
    """Run the benchmark; returns the rows, compile times, peak and machine description."""
    import cnnc
    configs = QUICK if quick else CONFIGS
    thread_info = harness.set_threads(threads)
    gemm_n = 1024 if quick else 2048
    log(f"measuring the float32 GEMM peak ({gemm_n}^2) ...")
    peak = machine.gemm_peak(gemm_n, 3 if quick else 10)
    desc = machine.describe(thread_info, peak, gemm_n)
    log(desc)
    rows, ctimes = [], {}
    for name in models:
        if name not in configs:
            log(f"skipping {name}: no configuration{' in --quick mode' if quick else ''}")
            continue
        log(f"{name}: building (seed {seed}) ...")
        graph = randomize_statistics(cnnc.models.get(name, seed=seed).to_graph(), seed)
        if compile_timing:
            log(f"{name}: cnnc compile time (cold, then warm, in fresh processes) ...")
            ctimes[name] = compile_times(name, seed)
        systems = harness.build_systems(
            graph, threads, torch_compile,
            time_numpy=harness.count_flops(graph, 1) < NUMPY_TIMED_FLOPS)
        for batch in configs[name]:
            rows += harness.run_config(name, graph, batch, systems, seed=seed, repeats=repeats,
                                       min_seconds=0.05 if quick else 1.0,
                                       warmup=1 if quick else 3, log=log)
        del systems, graph
    end_peak = machine.gemm_peak(gemm_n, 3 if quick else 10)
    desc += (f"\n- float32 GEMM peak again at the end: {end_peak:.1f} GFLOP/s (% peak uses the "
             f"larger); load average at the end: {machine.load_average()}")
    return {"rows": rows, "compile": ctimes, "peak": max(peak, end_peak), "machine": desc}


def report(result: dict) -> str:
    parts = [result["machine"], "", harness.format_table(result["rows"], result["peak"])]
    if result["compile"]:
        parts += ["", harness.format_compile_table(result["compile"])]
    bad = [r for r in result["rows"] if r.note.startswith("MISMATCH")]
    if bad:
        parts += ["", "MISMATCH: " + ", ".join(f"{r.system} on {r.model}/{r.batch}"
                                                for r in bad)]
    return "\n".join(parts)


def append_results(text: str, argv: list[str], path: Path = RESULTS,
                   command: str = "python -m benchmarks") -> None:
    """Append a dated section (older sections are kept)."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    head = "" if path.exists() else "# cnnc benchmark results\n\nNewest section last.\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{head}\n## {stamp}: {command} {' '.join(argv)}\n\n{text}\n")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(CONFIGS),
                   help=f"comma-separated zoo names (default {','.join(CONFIGS)})")
    p.add_argument("--quick", action="store_true",
                   help="tiny repeats, lenet5 and resnet20 at batch 1 only")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed calls per measurement (default: >= 1 s and >= 10 calls)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-torch-compile", action="store_true")
    p.add_argument("--no-compile-time", action="store_true")
    p.add_argument("--write", action="store_true", help=f"append the results to {RESULTS.name}")
    p.add_argument("--isa", help="native, avx2 or both: cnnc and ONNX Runtime per ISA, each in "
                                 "its own processes (benchmarks.alternate)")
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds with --isa")
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.isa:
        from benchmarks import alternate
        configs = QUICK if args.quick else CONFIGS
        unknown = [m for m in models if m not in configs]
        if unknown:
            p.error(f"no configuration for {', '.join(unknown)}")
        pairs = ",".join(f"{m}:{b}" for m in models for b in configs[m])
        return alternate.main(["--models", pairs, "--isa", args.isa, "--rounds",
                               str(args.rounds), "--threads", str(args.threads), "--seed",
                               str(args.seed), "--seconds", "0.3" if args.quick else "1.5",
                               *(["--write"] if args.write else [])])
    if args.quick and args.repeats is None:
        args.repeats = 3
    result = run(models, args.quick, args.repeats, args.threads, args.seed,
                 not args.no_torch_compile, not args.no_compile_time,
                 log=lambda s: print(s, file=sys.stderr, flush=True))
    text = report(result)
    print(text)
    if args.write:
        append_results(text, argv)
    return 1 if "MISMATCH" in text else 0
