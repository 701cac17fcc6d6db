"""Write docs/ONNX_COVERAGE.md: the ONNX node cases for CNN operators run through cnnc.

    python tools/onnx_coverage.py            # numpy target, then cpu on the cases numpy passes
    python tools/onnx_coverage.py --no-cpu   # numpy target only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    from cnnc.frontends.onnx import conformance as C
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-cpu", action="store_true", help="skip the cpu target")
    p.add_argument("--out", default=str(ROOT / "docs" / "ONNX_COVERAGE.md"))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    numpy = C.run_suite("numpy")
    print(f"numpy: {C.counts(numpy)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    cpu = None
    if not args.no_cpu:
        passed = {o.name for o in numpy if o.status == "pass"}
        cpu = []
        for k, case in enumerate(c for c in C.cases() if c.name in passed):
            cpu.append(C.run_case(case, "cpu"))
            print(f"\rcpu: {k + 1}/{len(passed)}", end="", file=sys.stderr, flush=True)
        print(f"\ncpu: {C.counts(cpu)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    Path(args.out).write_text(C.render(numpy, cpu), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    bad = [o for o in numpy + (cpu or []) if o.status in ("wrong", "crash")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
