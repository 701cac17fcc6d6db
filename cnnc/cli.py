"""The ``cnnc`` command line: demo, compile, run, bench.

Every cnnc error is printed as one line (no traceback) and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from cnnc.errors import CnncError, ConfigError

TARGET_CHOICES = ("auto", "numpy", "cpu", "cuda")


def load_model(name: str, **kw):
    """A zoo name (``resnet20``) or a path to an ``.onnx`` file."""
    if name.endswith(".onnx"):
        try:
            from cnnc.frontends.onnx import load_onnx
        except ImportError as e:
            raise ConfigError(f"cannot load {name!r}: ONNX import is not available ({e})") from None
        return load_onnx(name)
    from cnnc import models
    return models.get(name, **kw)


def _input_for(graph, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(v.type.concrete({"N": batch})).astype(np.float32)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cnnc", description="A compiler for convolutional networks.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="compile a zoo model, run it and check it against the reference")
    d.add_argument("model", nargs="?", default="resnet20")
    d.add_argument("--target", default="auto", choices=TARGET_CHOICES)
    d.add_argument("--batch", type=int, default=8)
    d.add_argument("--repeats", type=int, default=10)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--show-constants", action="store_true", help="print weight constants too")
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("compile", help="run the pass pipeline and show the IR, stats or remarks")
    c.add_argument("model", help="zoo name (see `cnnc models`) or .onnx path")
    c.add_argument("--target", default="numpy", choices=TARGET_CHOICES)
    c.add_argument("--opt-level", type=int, default=2, choices=(0, 1, 2))
    c.add_argument("--print-after-all", action="store_true")
    c.add_argument("--print-after", metavar="PASS")
    c.add_argument("--stats", action="store_true", help="node counts, fusions, pass times, memory")
    c.add_argument("--remarks", action="store_true", help="why folds/fusions did not happen")
    c.add_argument("--verify", action="store_true", help="verify the IR after every pass")
    c.set_defaults(func=cmd_compile)

    m = sub.add_parser("models", help="list the model zoo")
    m.set_defaults(func=lambda a: print("\n".join(__import__("cnnc.models").models.names())) or 0)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except CnncError as e:
        print(f"cnnc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
