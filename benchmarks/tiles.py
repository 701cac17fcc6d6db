"""Register-tile candidates of the blocked conv, timed on this machine:
``python -m benchmarks.tiles [--shapes NAME,...] [--tiles PxCB,...] [--seconds S]``.

Every candidate kernel is compiled first (under a shared lock on ``/tmp/cnnc-cpu.lock``, if
the file can be opened), then all are timed under an exclusive lock, interleaved round by
round so that drift hits every candidate alike; medians in GFLOP/s, the NumPy float32 GEMM
peak measured in the same run printed first.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import statistics


from cnnc.backends.numba_cpu import convgen, target, tune
from benchmarks import machine

S = convgen.ConvSpec
#: ResNet-18 (224), ResNet-20 (32), VGG-11 and LeNet-5 conv shapes, batch 1
SHAPES = {
    "r18-7x7s2": S(224, 224, 3, 7, 7, 64, (2, 2), (3, 3, 3, 3)),
    "r18-3x3-56-64": S(56, 56, 64, 3, 3, 64, (1, 1), (1, 1, 1, 1)),
    "r18-3x3s2-56-128": S(56, 56, 64, 3, 3, 128, (2, 2), (1, 1, 1, 1)),
    "r18-3x3-28-128": S(28, 28, 128, 3, 3, 128, (1, 1), (1, 1, 1, 1)),
    "r18-3x3-14-256": S(14, 14, 256, 3, 3, 256, (1, 1), (1, 1, 1, 1)),
    "r18-3x3-7-512": S(7, 7, 512, 3, 3, 512, (1, 1), (1, 1, 1, 1)),
    "r18-1x1s2-56-128": S(56, 56, 64, 1, 1, 128, (2, 2)),
    "r20-3x3-32-16": S(32, 32, 16, 3, 3, 16, (1, 1), (1, 1, 1, 1)),
    "r20-3x3-16-32": S(16, 16, 32, 3, 3, 32, (1, 1), (1, 1, 1, 1)),
    "r20-3x3-8-64": S(8, 8, 64, 3, 3, 64, (1, 1), (1, 1, 1, 1)),
    "vgg-3x3-224-3": S(224, 224, 3, 3, 3, 64, (1, 1), (1, 1, 1, 1)),
    "vgg-3x3-112-128": S(112, 112, 64, 3, 3, 128, (1, 1), (1, 1, 1, 1)),
    "lenet-5x5-32-1": S(32, 32, 1, 5, 5, 6),
    "lenet-5x5-14-6": S(14, 14, 6, 5, 5, 16),
}


@contextlib.contextmanager
def _lock(mode):
    try:
        f = open("/tmp/cnnc-cpu.lock", "a")
    except OSError:
        yield
        return
    with f:
        fcntl.flock(f, mode)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tiles")
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--tiles", default="default,4x16,8x8,4x8,6x8,4x24,6x16,2x32,3x16",
                   help="PxCB[lv|nolv] candidates (lv/nolv: loop vectorizer on/off, else the "
                   "plan's); 'default' is the plan of the effective target, "
                   "'before' the AVX-512 plan compiled with the loop vectorizer on")
    p.add_argument("--seconds", type=float, default=0.15, help="per candidate and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--loop-vectorize", action="store_true",
                   help="also time each candidate compiled with LLVM's loop vectorizer on")
    args = p.parse_args(argv)
    print(f"target: {target.effective().describe()}")
    print(f"CPU: {machine.cpu_model()}; flags: {machine.cpu_flags()}")
    cands = {}
    with _lock(fcntl.LOCK_SH):
        for name in args.shapes.split(","):
            spec = SHAPES[name]
            base = convgen.plan(spec)
            for t in args.tiles.split(","):
                if t == "default":
                    pl = base
                elif t == "before":   # the plan and compile options of earlier releases
                    pl = convgen.plan(spec, target.AVX512)
                else:
                    # PxCB, optionally with "lv" / "nolv": the loop vectorizer on / off
                    lv = {"lv": True, "nolv": False}.get(t.lstrip("0123456789x"))
                    tp, tcb = map(int, t.rstrip("lvno").split("x"))
                    pl = dataclasses.replace(base, p=tp, cb=tcb)
                    if lv is not None:
                        pl = dataclasses.replace(pl, loop_vectorize=lv)
                if pl.strategy != "blocked":
                    continue
                label = (f"{pl.p}x{pl.cb}{'' if pl.loop_vectorize else ' noLV'}"
                         + (f" ({t})" if t in ("default", "before") else ""))
                cands[(name, label)] = tune.build(spec, pl)
                if args.loop_vectorize:
                    lv = dataclasses.replace(pl, loop_vectorize=True)
                    cands[(name, label + " LV")] = tune.build(spec, lv)
    res: dict = {k: [] for k in cands}
    with _lock(fcntl.LOCK_EX):
        peak = machine.gemm_peak(2048, 5)
        print(f"NumPy float32 GEMM peak (2048^2, median of 5): {peak:.1f} GFLOP/s")
        for _ in range(args.rounds):
            for k, run in cands.items():
                res[k].append(tune.median_seconds(run, args.seconds))
        peak2 = machine.gemm_peak(2048, 5)
    print(f"GEMM peak again at the end: {peak2:.1f} GFLOP/s")
    for (name, label), ts in res.items():
        t = statistics.median(ts)
        print(f"{name:18s} {label:14s} {SHAPES[name].flops_per_image / t / 1e9:7.1f} GFLOP/s"
              f"  {t * 1e3:8.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
