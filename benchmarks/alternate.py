"""cnnc against ONNX Runtime, each timed in its own fresh process, alternated over rounds.

    python -m benchmarks.alternate --models resnet18:1,resnet20:1 --isa native,avx2 --rounds 5
    python -m benchmarks.alternate --models resnet20:1 --neighbour      # one core kept busy
    python -m benchmarks.alternate --models resnet20:1 --pause 1        # 1 ms between calls
    python -m benchmarks.alternate --models path/to/model.onnx:1        # a model file

Timing every system in one process lets one runtime's idle worker threads (spinning OpenMP or
ONNX Runtime pools) slow the other, and a slow drift of the machine favours whichever system
ran at the better moment. Here each round runs one worker process per system, in an order
that rotates every round (A B C, B C A, ...); a worker builds the same seeded graph, checks its
output against the float64 reference, warms up and reports the median of warm calls. The
ratio cnnc / ORT is taken per round, and the table gives its median and range.

``--isa avx2`` compiles cnnc's kernels for an AVX2 + FMA CPU without AVX-512 (Numba's
``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES``; see :func:`isa_env`) and runs NumPy's BLAS on
OpenBLAS's AVX2 kernels, so an AVX-512 machine can time the code an AVX2 machine would run;
``--isa native`` lets OpenBLAS pick the kernels for this CPU (an ``OPENBLAS_CORETYPE`` in the
environment is dropped for it: see :func:`child_env`). The header gives the GEMM peak of each.
ONNX Runtime runs once per ISA too: natively, and for ``avx2`` on its own AVX2 kernels (a
copy of it whose kernel library skips its AVX-512 kernels: :mod:`benchmarks.ort_isa`), and
each cnnc row's ratio is to ORT of the same ISA. ``--neighbour`` runs a busy loop on one core
during every measurement: what a noisy neighbour costs each runtime. ``--pause MS`` sleeps
before each timed call, as a server answering one request at a time does between requests
(runtimes whose worker threads go to sleep in the pause pay for waking them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.ort_isa import ort_env

ROOT = Path(__file__).resolve().parents[1]
#: LLVM CPU name used for ``--isa avx2`` (AMD Zen 3: AVX2 + FMA, 16 ymm registers)
AVX2_CPU = "znver3"
#: features an AVX2 target must not have
NOT_AVX2 = ("avx512", "amx", "avx10", "evex512")


def isa_env(isa: str) -> dict[str, str]:
    """Environment variables that make Numba compile for ``isa`` ("native" or "avx2")."""
    if isa == "native":
        return {}
    if isa != "avx2":
        raise ValueError(f"unknown ISA {isa!r}; expected 'native' or 'avx2'")
    import llvmlite.binding as ll
    feats = []
    for f in ll.get_host_cpu_features().flatten().split(","):
        if f and f[1:].startswith(NOT_AVX2):
            f = "-" + f[1:]
        feats.append(f)
    have = {f[1:] for f in feats if f.startswith("+")}
    if not {"avx2", "fma"} <= have:
        raise RuntimeError("this CPU lacks AVX2 + FMA: code built for --isa avx2 would not run")
    return {"NUMBA_CPU_NAME": AVX2_CPU, "NUMBA_CPU_FEATURES": ",".join(feats)}


def child_env(isa: str, base=None) -> dict[str, str]:
    """The environment of a process that runs ``isa``'s code: :func:`isa_env` for Numba, and
    NumPy's BLAS on the OpenBLAS kernels of that ISA (``machine.BLAS_CORETYPE``), or on those
    OpenBLAS picks for this CPU for "native"."""
    from benchmarks.machine import BLAS_CORETYPE
    env = dict(os.environ if base is None else base, **isa_env(isa))
    env.pop("OPENBLAS_CORETYPE", None)
    if isa in BLAS_CORETYPE:
        env["OPENBLAS_CORETYPE"] = BLAS_CORETYPE[isa]
    return env


# ---- the worker: one system, one configuration, one measurement ----------------------------
def worker(system: str, model: str, batch: int, seed: int, seconds: float,
           threads: int, pause: float = 0.0) -> dict:
    import numpy as np

    from benchmarks import harness
    from benchmarks.run import randomize_statistics
    import cnnc
    from cnnc.backends.reference import run_reference
    harness.set_threads(threads)
    if system == "onnxruntime":   # which copy of it this process imported (benchmarks.ort_isa)
        import onnxruntime
        ort_file = onnxruntime.__file__
    if model.endswith(".onnx"):   # the user's own model, with its own weights
        graph = cnnc.load_onnx(model).to_graph()
    else:
        graph = randomize_statistics(cnnc.models.get(model, seed=seed).to_graph(), seed)
    s = (harness.cnnc_system(graph, "cpu") if system == "cnnc"
         else harness.onnxruntime_system(graph, threads))
    if s.error:
        return {"error": s.error}
    shape = graph.inputs[0].type.shape
    x = np.random.default_rng(seed + batch).standard_normal((batch, *shape[1:]))
    x = x.astype(np.float32)
    err = harness.max_rel_err(s.fn(x), harness._first(run_reference(graph, x)))
    stats: dict = {}
    sec, reps = harness.measure(s.fn, x, None, seconds, warmup=5, stats=stats,
                                pause=pause / 1e3)
    out = {"ms": sec * 1e3, "mean_ms": stats["mean"] * 1e3, "p90_ms": stats["p90"] * 1e3,
           "repeats": reps, "err": err}
    if system == "cnnc":
        out["compile_s"] = s.info.get("compile_s")
    else:
        out["onnxruntime"] = ort_file
    return out


def _run_worker(system, isa, model, batch, args) -> dict:
    env = child_env(isa) if system == "cnnc" else ort_env(isa)
    cmd = [sys.executable, "-m", "benchmarks.alternate", "--worker", system, "--models",
           f"{model}:{batch}", "--seed", str(args.seed), "--seconds", str(args.seconds),
           "--threads", str(args.threads), "--pause", str(args.pause)]
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=args.timeout)
        res = json.loads(p.stdout.strip().splitlines()[-1])
        where = env.get("PYTHONPATH", "").split(os.pathsep)[0]
        if system == "onnxruntime" and isa != "native" and \
                not res.get("onnxruntime", where).startswith(where):
            return {"error": f"imported {res['onnxruntime']}, not the {isa} copy in {where}"}
        return res
    except Exception as e:  # a failing worker becomes a row note, not a crash
        tail = getattr(e, "stderr", None) or (p.stderr[-300:] if "p" in locals() else "")
        return {"error": f"{type(e).__name__}: {str(e)[:120]} {tail}"}


def _neighbour():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def alternate(configs, isas, args, log=print) -> list[dict]:
    """One row per (model, batch, system): per-round ms and the per-round ratio to ORT of
    the same ISA."""
    systems = [("cnnc", isa) for isa in isas] + [("onnxruntime", isa) for isa in isas]
    rows = []
    med = (lambda v: statistics.median(v) if v else None)
    for model, batch in configs:
        times = {s: [] for s in systems}
        means = {s: [] for s in systems}   # mean and 90th percentile ms of each round
        p90s = {s: [] for s in systems}
        info = {}
        for r in range(args.rounds + 1):   # round 0 compiles and fills the caches: not kept
            order = systems[r % len(systems):] + systems[:r % len(systems)]
            busy = _neighbour() if args.neighbour else None
            try:
                for s in order:
                    res = _run_worker(s[0], s[1], model, batch, args)
                    if "error" in res:
                        info[s] = res["error"]
                        continue
                    if r == 0:
                        info[s] = res
                    else:
                        times[s].append(res["ms"])
                        means[s].append(res.get("mean_ms", res["ms"]))
                        p90s[s].append(res.get("p90_ms", res["ms"]))
            finally:
                if busy:
                    busy.kill()
            log(f"{model}:{batch} round {r}: " + ", ".join(
                f"{a}-{b} {t[-1]:.3f}" for (a, b), t in times.items() if t and r))
        for s in systems:
            t = times[s]
            ort, ort_means = ((times[("onnxruntime", s[1])], means[("onnxruntime", s[1])])
                              if s[0] == "cnnc" else ([], []))
            ratios = [a / b for a, b in zip(t, ort)] if ort else []
            mean_ratios = [a / b for a, b in zip(means[s], ort_means)]
            first = info.get(s)
            rows.append({"model": model, "batch": batch, "system": f"{s[0]}-{s[1]}",
                         "ms": med(t),
                         "mean_ms": med(means[s]), "p90_ms": med(p90s[s]),
                         "mean_ratio": med(mean_ratios) if mean_ratios else None,
                         "ratio": statistics.median(ratios) if ratios else None,
                         "lo": min(ratios, default=None), "hi": max(ratios, default=None),
                         "err": first.get("err") if isinstance(first, dict) else None,
                         "compile_s": first.get("compile_s") if isinstance(first, dict)
                         else None, "note": first if isinstance(first, str) else ""})
    return rows


def format_rows(rows) -> str:
    f = (lambda v, p=3: "-" if v is None else f"{v:.{p}f}")
    lines = ["| model | batch | system | median ms | x ORT of its ISA (median of rounds) | range | "
             "mean ms | p90 ms | x ORT by means | max rel err | first compile s | note |",
             "|" + "---|" * 12]
    for r in rows:
        rng = "-" if r["lo"] is None else f"{r['lo']:.2f}–{r['hi']:.2f}"
        err = "-" if r["err"] is None else f"{r['err']:.1e}"
        lines.append(f"| {r['model']} | {r['batch']} | {r['system']} | {f(r['ms'])} | "
                     f"{f(r['ratio'], 2)} | {rng} | {f(r.get('mean_ms'))} | "
                     f"{f(r.get('p90_ms'))} | {f(r.get('mean_ratio'), 2)} | {err} | "
                     f"{f(r['compile_s'], 1)} | {r['note'][:80]} |")
    return "\n".join(lines)


def parse_configs(text: str) -> list[tuple[str, int]]:
    out = []
    for item in text.split(","):
        name, _, b = item.strip().rpartition(":")
        out.append((name, int(b)) if name else (b, 1))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.alternate",
                                description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet20:1,resnet18:1,lenet5:64",
                   help="comma-separated model:batch")
    p.add_argument("--isa", default="native", help="comma-separated: native, avx2")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.0, help="timed seconds per worker")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--neighbour", action="store_true", help="keep one core busy meanwhile")
    p.add_argument("--pause", type=float, default=0.0,
                   help="milliseconds of sleep before each timed call (not timed)")
    p.add_argument("--write", action="store_true", help="append the table to RESULTS.md")
    p.add_argument("--worker", choices=("cnnc", "onnxruntime"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    configs = parse_configs(args.models)
    if args.worker:
        (model, batch), = configs
        print(json.dumps(worker(args.worker, model, batch, args.seed, args.seconds,
                                args.threads, args.pause)))
        return 0
    from benchmarks import machine
    from benchmarks.run import append_results
    isas = [i.strip() for i in args.isa.split(",") if i.strip()]
    for isa in isas:   # refuse an unknown or unrunnable ISA, for either system, before any work
        isa_env(isa)
        ort_env(isa)
    peak = machine.gemm_peak(2048, 10)
    head = machine.describe({"numba": args.threads, "onnxruntime": args.threads}, peak, 2048)
    head += "\n- float32 GEMM peak of each ISA's BLAS (fresh process): " + ", ".join(
        f"{i} {machine.gemm_peak_with(child_env(i)):.1f} GFLOP/s "
        f"({machine.blas_kernels(child_env(i))})" for i in isas)
    head += (f"\n- cnnc ISA: " + ", ".join(
        f"{i} ({isa_env(i).get('NUMBA_CPU_NAME', 'host')})" for i in isas) +
        "; ONNX Runtime: " + ", ".join(
            "native (the kernels it picks for this CPU)" if i == "native" else
            f"{i} (its AVX2 kernels: {ort_env(i)['PYTHONPATH'].split(os.pathsep)[0]})"
            for i in isas) +
        f"; {args.rounds} alternated rounds, each system in its own process"
        + ("; one core kept busy by a neighbour process" if args.neighbour else "")
        + (f"; a pause of {args.pause:g} ms before each timed call" if args.pause else ""))
    log = (lambda s: print(s, file=sys.stderr, flush=True))
    log(head)
    rows = alternate(configs, isas, args, log)
    text = head + "\n\n" + format_rows(rows)
    print(text)
    if args.write:
        append_results(text, argv if argv is not None else sys.argv[1:],
                       command="python -m benchmarks.alternate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
