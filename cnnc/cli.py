"""The ``cnnc`` command line: demo, compile, run, bench, profile, tune, viz, explain, debug,
models.

A MODEL is a zoo name (``cnnc models``) or a path to an ``.onnx`` file, everywhere.

Exit status: 0 ok; 1 a wrong result (a mismatch against the reference); 2 a user error (a
cnnc error, a bad argument: one line, no traceback); 3 an internal error (a short message;
``cnnc --traceback ...`` shows the traceback).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cnnc.errors import CnncError, ConfigError

TARGET_CHOICES = ("auto", "numpy", "cpu", "cuda")


def load_model(name: str, **kw):
    """A zoo name (``resnet20``) or a path to an ``.onnx`` file."""
    if name.endswith(".onnx"):
        if not os.path.isfile(name):
            raise ConfigError(f"model file {name!r} does not exist")
        try:
            from cnnc.frontends.onnx import load_onnx
        except ImportError as e:
            raise ConfigError(f"cannot load {name!r}: ONNX import is not available ({e})") from None
        return load_onnx(name)
    from cnnc import models
    return models.get(name, **kw)


def _input_for(graph, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    syms = {d: batch for v in graph.inputs for d in v.type.shape if isinstance(d, str)}
    return [rng.standard_normal(v.type.concrete(syms)).astype(np.float32)
            for v in graph.inputs]


def cmd_demo(args) -> int:
    import cnnc
    from cnnc.backends.reference import run_reference
    from cnnc.compile import resolve_target
    model = load_model(args.model)
    target = resolve_target(args.target)
    before = model.to_graph()
    print(f"== {args.model}: IR before compilation ({len(before.ops)} ops)")
    print(before.__str__() if args.show_constants else _ops_only(before))
    t0 = time.perf_counter()
    compiled = cnnc.compile(model, target=target)
    t_compile = time.perf_counter() - t0
    print(f"\n== IR after compilation for target {target!r} ({len(compiled.graph.ops)} ops, "
          f"compiled in {t_compile:.2f} s)")
    print(compiled.graph.__str__() if args.show_constants else _ops_only(compiled.graph))
    xs = _input_for(before, args.batch, args.seed)
    y = compiled(*xs)
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        compiled(*xs)
        times.append(time.perf_counter() - t)
    ref = run_reference(before, *xs, dtype=np.float64)
    err = float(np.max(np.abs(y - ref)) / max(np.max(np.abs(ref)), 1e-30))
    print(f"\n== ran batch {args.batch}: output {y.shape}, "
          f"median {np.median(times) * 1e3:.3f} ms over {args.repeats} runs")
    print(f"   relative error vs the float64 reference of the unoptimised graph: {err:.2e}")
    print(f"   first sample's top class: {int(np.argmax(y[0]))}")
    if not err < 1e-4:
        print("error: the compiled model disagrees with the reference", file=sys.stderr)
        return 1
    print("OK")
    return 0


def _ops_only(graph) -> str:
    from cnnc.ir.printer import format_graph
    return format_graph(graph, constants=False)


def cmd_compile(args) -> int:
    import cnnc
    model = load_model(args.model)
    print_after = "all" if args.print_after_all else args.print_after
    compiled = cnnc.compile(model, target=args.target, opt_level=args.opt_level,
                            print_after=print_after, verify_each=args.verify)
    report = compiled.report
    if args.stats and report is not None:
        print(report.summary())
    if args.remarks and report is not None:
        print(report.remarks_text())
    if not (args.stats or args.remarks or print_after):
        print(_ops_only(compiled.graph))
    return 0


def cmd_run(args) -> int:
    """Run a model on an input .npy and write the output .npy."""
    import cnnc
    from cnnc.compile import to_graph
    if not os.path.isfile(args.input):
        raise ConfigError(f"--input {args.input!r} does not exist")
    try:
        x = np.load(args.input, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ConfigError(f"--input {args.input!r} is not a NumPy .npy array file: {e}") from None
    if not isinstance(x, np.ndarray):  # an .npz archive
        raise ConfigError(f"--input {args.input!r} must hold one array (.npy), got an archive "
                          f"of {list(x.keys())}")
    if not args.output.endswith(".npy"):
        raise ConfigError(f"--output must end in .npy, got {args.output!r}")
    model = load_model(args.model)
    graph = to_graph(model)
    if len(graph.inputs) != 1:
        raise ConfigError(f"model {graph.name!r} takes {len(graph.inputs)} inputs; cnnc run "
                          f"feeds one --input")
    if x.ndim == len(graph.inputs[0].shape) - 1:  # one sample without its batch axis
        x = x[None]
        print(f"note: input {x.shape[1:]} has no batch axis; running it as a batch of 1")
    compiled = cnnc.compile(graph, target=args.target, opt_level=args.opt_level)
    t0 = time.perf_counter()
    y = compiled(x)
    dt = time.perf_counter() - t0
    outs = y if isinstance(y, tuple) else (y,)
    np.save(args.output, outs[0])
    print(f"ran {graph.name!r} on {compiled.target}: input {x.shape} -> output "
          f"{outs[0].shape} in {dt * 1e3:.2f} ms; wrote {args.output}")
    if args.check:
        from cnnc.backends.reference import run_reference
        from cnnc.debug import rel_error
        ref = run_reference(to_graph(model), x, dtype=np.float64)
        err = rel_error(outs[0], ref if not isinstance(ref, tuple) else ref[0])
        print(f"relative error vs the float64 reference: {err:.2e} (tolerance {args.tol:g})")
        if not err <= args.tol:
            print("cnnc: mismatch: the output disagrees with the reference", file=sys.stderr)
            return 1
    return 0


def repo_root() -> Path | None:
    """The repository checkout this cnnc runs from (holding benchmarks/), or None."""
    import cnnc
    root = Path(cnnc.__file__).resolve().parents[1]
    return root if (root / "benchmarks" / "__main__.py").is_file() else None


def cmd_bench(args) -> int:
    root = repo_root()
    if root is None:
        raise ConfigError("cnnc bench runs the benchmarks/ folder of a repository checkout, "
                          "which an installed cnnc does not include: clone the repository, "
                          "pip install -e it and run cnnc bench (or python -m benchmarks) there")
    extra = [a for a in args.bench_args if a != "--"]
    cmd = [sys.executable, "-m", "benchmarks", *extra]
    print(f"running {' '.join(cmd[1:])} in {root}", flush=True)
    return subprocess.call(cmd, cwd=root)


def _compiled(args, batch_input: bool = True):
    import cnnc
    from cnnc.compile import to_graph
    graph = to_graph(load_model(args.model))
    compiled = cnnc.compile(graph.copy(), target=args.target,
                            opt_level=getattr(args, "opt_level", 2))
    xs = _input_for(graph, args.batch, args.seed) if batch_input else None
    return graph, compiled, xs


def cmd_profile(args) -> int:
    from cnnc.profile import peak_gflops, profile
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {args.repeats}")
    if args.refresh_peak:
        peak_gflops(refresh=True)
    _, compiled, xs = _compiled(args)
    prof = profile(compiled, xs, repeats=args.repeats)
    print(prof.table(top=args.top))
    if args.csv:
        prof.to_csv(args.csv)
        print(f"wrote {args.csv}")
    if args.png:
        prof.plot(args.png)
        print(f"wrote {args.png}")
    return 0


def cmd_tune(args) -> int:
    from cnnc.backends.numba_cpu import target
    from cnnc.backends.numba_cpu.tune import tune_graph
    from cnnc.compile import to_graph
    from cnnc.passes import optimize
    if args.budget <= 0:
        raise ConfigError(f"--budget must be > 0 seconds, got {args.budget}")
    graph = to_graph(load_model(args.model))
    optimize(graph, 2)
    print(f"tuning the conv plans of {graph.name!r} for {target.effective().describe()}",
          flush=True)
    done = tune_graph(graph, batch=args.batch, budget=args.budget, force=args.force)
    print(done.table())
    print(f"{len(done.results)} tuned, {len(done.cached)} tuned before, "
          f"{len(done.skipped)} left at the default (budget spent) in {done.seconds:.1f} s; "
          f"stored in {done.path}")
    return 0


def cmd_viz(args) -> int:
    from cnnc.viz import draw
    result = draw(load_model(args.model), args.out, after_passes=args.after_passes,
                  side_by_side=args.side_by_side, opt_level=args.opt_level,
                  renderer=args.renderer)
    if result.image_path is None and result.dot_path != args.out:
        # the picture asked for was not drawn: the DOT and the advice stay, the exit says so
        print(f"cnnc: error: {result.message}", file=sys.stderr)
        return 2
    print(result.message)
    return 0


def cmd_explain(args) -> int:
    from cnnc.explain import explain
    explain(load_model(args.model), channels=args.channels)
    return 0


def cmd_debug(args) -> int:
    from cnnc import debug
    from cnnc.compile import to_graph
    graph = to_graph(load_model(args.model))
    xs = _input_for(graph, args.batch, args.seed)
    if args.passes:
        result = debug.bisect_passes(graph, xs, tol=args.tol or 1e-6, opt_level=args.opt_level)
    else:
        result = debug.compare(graph, xs, target=args.target, tol=args.tol or 1e-4,
                               opt_level=args.opt_level)
    print(result)
    return 0 if result.ok else 1


def _models(args) -> int:
    from cnnc import models
    print("\n".join(models.names()))
    return 0


def _model_args(p, target="auto", batch=None):
    p.add_argument("model", help="zoo name (see `cnnc models`) or .onnx path")
    p.add_argument("--target", default=target, choices=TARGET_CHOICES)
    if batch is not None:
        p.add_argument("--batch", type=positive_int, default=batch)
        p.add_argument("--seed", type=int, default=0, help="seed of the random input")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cnnc", description="A compiler for convolutional networks. "
                                "MODEL is a zoo name (cnnc models) or an .onnx file.",
                                epilog="exit status: 0 ok, 1 wrong result, 2 user error, "
                                       "3 internal error")
    p.add_argument("--traceback", action="store_true",
                   help="show the full traceback of an internal error")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="compile a model, run it and check it against the reference")
    d.add_argument("model", nargs="?", default="resnet20")
    d.add_argument("--target", default="auto", choices=TARGET_CHOICES)
    d.add_argument("--batch", type=positive_int, default=8)
    d.add_argument("--repeats", type=positive_int, default=10)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--show-constants", action="store_true", help="print weight constants too")
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("compile", help="run the pass pipeline and show the IR, stats or remarks")
    _model_args(c, target="numpy")
    c.add_argument("--opt-level", type=int, default=2, choices=(0, 1, 2))
    c.add_argument("--print-after-all", action="store_true")
    c.add_argument("--print-after", metavar="PASS")
    c.add_argument("--stats", action="store_true", help="node counts, fusions, pass times, memory")
    c.add_argument("--remarks", action="store_true", help="why folds/fusions did not happen")
    c.add_argument("--verify", action="store_true", help="verify the IR after every pass")
    c.set_defaults(func=cmd_compile)

    r = sub.add_parser("run", help="run a model on an input .npy, write the output .npy")
    _model_args(r)
    r.add_argument("--input", required=True, metavar="X.npy")
    r.add_argument("--output", required=True, metavar="Y.npy")
    r.add_argument("--opt-level", type=int, default=2, choices=(0, 1, 2))
    r.add_argument("--check", action="store_true",
                   help="also compare with the float64 reference (exit 1 on a mismatch)")
    r.add_argument("--tol", type=float, default=1e-4)
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("bench", help="run the benchmarks (python -m benchmarks) of a checkout")
    b.add_argument("bench_args", nargs=argparse.REMAINDER,
                   help="passed on, e.g. cnnc bench --quick --models lenet5")
    b.set_defaults(func=cmd_bench)

    pr = sub.add_parser("profile", help="time every kernel: ms, GFLOP/s, %% of peak, share")
    _model_args(pr, batch=8)
    pr.add_argument("--repeats", type=positive_int, default=20, help="timed calls per kernel (median)")
    pr.add_argument("--top", type=int, default=None, help="only the N slowest nodes")
    pr.add_argument("--csv", metavar="OUT.csv")
    pr.add_argument("--png", metavar="OUT.png", help="bar chart (needs matplotlib)")
    pr.add_argument("--refresh-peak", action="store_true",
                    help="measure the machine's float32 peak again")
    pr.set_defaults(func=cmd_profile)

    t = sub.add_parser("tune", help="time candidate conv plans on this machine; later cpu "
                                    "compiles here take the fastest")
    t.add_argument("model", help="zoo name (see `cnnc models`) or .onnx path")
    t.add_argument("--batch", type=positive_int, default=1, help="batch the plans are timed at")
    t.add_argument("--budget", type=float, default=120.0,
                   help="seconds; specs not reached keep the default plan (default 120)")
    t.add_argument("--force", action="store_true", help="re-time specs tuned before")
    t.set_defaults(func=cmd_tune)

    v = sub.add_parser("viz", help="draw the graph (DOT, SVG/PNG via Graphviz or matplotlib)")
    v.add_argument("model", help="zoo name (see `cnnc models`) or .onnx path")
    v.add_argument("--out", default="graph.svg", help=".svg, .png, .pdf or .dot (default "
                                                      "graph.svg; the .dot is written beside)")
    v.add_argument("--after-passes", action="store_true", help="draw the optimised graph")
    v.add_argument("--side-by-side", action="store_true", help="before and after, together")
    v.add_argument("--opt-level", type=int, default=2, choices=(0, 1, 2))
    v.add_argument("--renderer", default="auto", choices=("auto", "dot", "matplotlib"))
    v.set_defaults(func=cmd_viz)

    e = sub.add_parser("explain", help="per layer: output-size formula, padding, receptive "
                                       "field, params, FLOPs, folded BatchNorms")
    e.add_argument("model", help="zoo name (see `cnnc models`) or .onnx path")
    e.add_argument("--channels", type=int, default=4, help="BatchNorm channels shown")
    e.set_defaults(func=cmd_explain)

    g = sub.add_parser("debug", help="compare the compiled model with the reference node by "
                                     "node, or (--passes) bisect the pass pipeline")
    _model_args(g, batch=2)
    g.add_argument("--passes", action="store_true", help="find the first pass that changes "
                                                         "the result")
    g.add_argument("--opt-level", type=int, default=2, choices=(0, 1, 2))
    g.add_argument("--tol", type=float, default=None)
    g.set_defaults(func=cmd_debug)

    m = sub.add_parser("models", help="list the model zoo")
    m.set_defaults(func=_models)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and getattr(args, "command", None) != "bench":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # --help (0) or a bad argument (2)
        return e.code if isinstance(e.code, int) else 2
    if extra:  # options for python -m benchmarks
        args.bench_args = [*args.bench_args, *extra]
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except CnncError as e:
        print(f"cnnc: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug in cnnc: short message, traceback on request
        if args.traceback:
            import traceback
            traceback.print_exc()
        print(f"cnnc: internal error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        if not args.traceback:
            print("cnnc: rerun with `cnnc --traceback ...` to see where it happened",
                  file=sys.stderr)
        return 3


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
