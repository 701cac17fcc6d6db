"""cnnc's compile time, cold and warm, for built-in models or ONNX files.

    python -m benchmarks.compile_time densenet121.onnx googlenet.onnx resnet18 --isa avx2

compiles each model (``cnnc.compile(model, target="cpu")``) twice in fresh processes over one
new cache directory: the first is the cold compile, the second the warm one (kernels loaded
from the on-disk cache). ``--isa avx2`` compiles the code an AVX2 + FMA CPU would run
(:func:`benchmarks.alternate.isa_env`). With one model and ``--json`` it times one compile in
this process and prints it as JSON (what each of those processes runs).
"""

from __future__ import annotations

import argparse
import json
import os
import time


def load(model: str, seed: int = 0):
    """The graph of a built-in model name or of an ONNX file (its own weights)."""
    import cnnc
    if model.endswith(".onnx"):
        return cnnc.load_onnx(model).to_graph()
    return cnnc.models.get(model, seed=seed).to_graph()


def time_one(model: str, seed: int = 0) -> dict:
    """Seconds of one compile in this process, and its distinct kernels and kernel calls."""
    import cnnc
    try:
        graph = load(model, seed)
        t0 = time.perf_counter()
        compiled = cnnc.compile(graph, target="cpu")
    except Exception as e:
        return {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"}
    names = compiled.lowered.kernel_names
    return {"seconds": time.perf_counter() - t0, "kernels": len(set(names)),
            "calls": len(names)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compile_time",
                                description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="built-in model names or .onnx files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--isa", default="native", help="native or avx2 (the table mode)")
    p.add_argument("--json", action="store_true", help="time one compile here, print JSON")
    args = p.parse_args(argv)
    if args.json:
        (model,) = args.models
        print(json.dumps(time_one(model, args.seed)))
        return
    from benchmarks import harness, machine
    from benchmarks.alternate import isa_env
    from benchmarks.run import compile_times
    env = isa_env(args.isa)
    os.environ.update(env)   # the worker processes inherit it
    print(f"# {machine.cpu_model()}, {machine.usable_cores()} cores; cnnc ISA {args.isa} "
          f"({env.get('NUMBA_CPU_NAME', 'host')}); load {machine.load_average()}\n")
    times = {}
    fmt = (lambda t: "-" if t is None else f"{t:.1f} s")
    for model in args.models:
        cold, warm, note = times[os.path.basename(model)] = compile_times(model, args.seed)
        print(f"{model}: cold {fmt(cold)}, warm {fmt(warm)}; {note}", flush=True)
    print("\n" + harness.format_compile_table(times))


if __name__ == "__main__":
    main()
