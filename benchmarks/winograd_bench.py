"""Winograd F(2x2, 3x3) and F(4x4, 3x3) vs the direct 3x3 kernel, one conv layer at a time
(Numba CPU).

    python -m benchmarks.winograd_bench --compile-only   # fill the disk cache (no timing)
    flock -x /tmp/cnnc-cpu.lock python -m benchmarks.winograd_bench

Each layer is a SAME-padded 3x3 stride-1 conv with bias and ReLU compiled through
``cnnc.compile(..., target="cpu")`` twice: once with Winograd off (the direct kernel, with
its padded-copy kernel) and once for each Winograd tile side, forced on. The generated
``forward`` is timed directly
(best of ``--repeats`` warm calls, in ``--rounds`` interleaved rounds: the median round;
a direct conv on the im2col + BLAS path leaves OpenBLAS's workers spinning for ~0.1 s, which
slows the next model's first round). GFLOP/s are direct-equivalent: 2*OH*OW*Cout*9*Cin per
image over the time, next to the NumPy float32 GEMM peak of this ISA's BLAS measured in the
same run (in a fresh process: ``OPENBLAS_CORETYPE`` may pin older kernels in this one).
``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` (``../shared/cpu/README.md``) time another ISA's
code, e.g. AVX2 on an AVX-512 machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SHAPES = [  # (h, w, cin, cout)
    (56, 56, 64, 64), (28, 28, 128, 128), (14, 14, 256, 256), (7, 7, 512, 512),
    (112, 112, 64, 128), (56, 56, 128, 256), (56, 56, 256, 256), (28, 28, 256, 512),
    (28, 28, 512, 512), (14, 14, 512, 512),
    (32, 32, 16, 16), (16, 16, 32, 32), (8, 8, 64, 64),   # ResNet-20 (CIFAR)
]


def layer(h, w, cin, cout, seed=0):
    from cnnc.ir import Graph
    rng = np.random.default_rng(seed)
    g = Graph(f"conv{h}x{w}_{cin}_{cout}")
    x = g.add_input(("N", h, w, cin), name="x")
    wt = g.constant(rng.standard_normal((3, 3, cin, cout)).astype(np.float32) * 0.05)
    b = g.constant(rng.standard_normal(cout).astype(np.float32))
    g.set_outputs(g.add("conv2d_fused", [x, wt, b],
                        dict(strides=(1, 1), padding="same", dilation=(1, 1), groups=1,
                             epilogue=[("relu",)])))
    return g


def compiled(g, m: int):
    """``g`` compiled with Winograd off (``m`` = 0), or F(m x m, 3x3) taken wherever it
    applies (whatever the default plan's gates say on this ISA)."""
    import cnnc
    from cnnc.backends.numba_cpu import winograd
    old = winograd.ENABLED, winograd.GATES, winograd.f4_pays
    winograd.ENABLED = bool(m)
    winograd.GATES = {target().rate_isa: (0, 0)}
    winograd.f4_pays = lambda spec, cpu=None: m == 4
    try:
        return cnnc.compile(g, target="cpu", opt_level=0)
    finally:
        winograd.ENABLED, winograd.GATES, winograd.f4_pays = old


def target():
    from cnnc.backends.numba_cpu import target as t
    return t.effective()


def best_time(model, x, repeats):
    arena, offs, scratch = model._arena({"N": x.shape[0]})
    fwd, ws = model._forward, model._weights
    fwd(x, arena, offs, scratch, *ws)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fwd(x, arena, offs, scratch, *ws)
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compile-only", action="store_true")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5,
                   help="rounds over the three models, interleaved; the median round counts")
    p.add_argument("--shapes", default="", help="indices into SHAPES, e.g. 0,1,2")
    p.add_argument("--layers", default="", help="other layers, HxW:CIN:COUT, e.g. 7x7:256:256")
    args = p.parse_args(argv)
    from benchmarks.machine import cpu_model, gemm_peak
    shapes = [SHAPES[int(i)] for i in args.shapes.split(",")] if args.shapes else []
    for spec in filter(None, args.layers.split(",")):
        hw, cin, cout = spec.split(":")
        shapes.append((*map(int, hw.split("x")), int(cin), int(cout)))
    shapes = shapes or SHAPES
    models = [(s, [compiled(layer(*s), m) for m in (0, 2, 4)]) for s in shapes]
    if args.compile_only:
        return
    from benchmarks.alternate import child_env
    from benchmarks.machine import blas_kernels, gemm_peak_with
    # the peak of the BLAS built for this ISA, in a fresh process (this one's environment
    # may pin older kernels: OPENBLAS_CORETYPE)
    isa = "avx2" if target().isa == "avx2" else "native"
    peak = gemm_peak_with(child_env(isa))
    print(f"CPU {cpu_model()}, cnnc target {target().describe()}, batch {args.batch}, GEMM "
          f"peak {peak:.1f} GFLOP/s ({blas_kernels(child_env(isa))}, fresh process; "
          f"this process {gemm_peak():.1f})")
    print("| layer | direct ms | direct GF/s | " + " | ".join(
        f"F{m} ms | F{m} GF/s | F{m} x direct | F{m} x peak | F{m} rel err" for m in (2, 4))
        + " | default |")
    print("|---" * 14 + "|")
    rng = np.random.default_rng(1)
    for (h, w, cin, cout), (direct, *winos) in models:
        x = rng.standard_normal((args.batch, h, w, cin)).astype(np.float32)
        assert "winograd" not in direct.source()
        flops = 2 * h * w * cout * 9 * cin * args.batch
        rounds = [[best_time(mdl, x, args.repeats) for mdl in (direct, *winos)]
                  for _ in range(args.rounds)]
        td, *tws = np.median(rounds, axis=0)
        yd = direct(x)
        cells = [f"{td * 1e3:.3f}", f"{flops / td / 1e9:.0f}"]
        for m, wino, tw in zip((2, 4), winos, tws):
            assert f"winograd F({m}x{m}, 3x3)" in wino.source()
            err = np.max(np.abs(wino(x) - yd)) / np.max(np.abs(yd))
            cells += [f"{tw * 1e3:.3f}", f"{flops / tw / 1e9:.0f}", f"{td / tw:.2f}",
                      f"{flops / tw / 1e9 / peak:.2f}", f"{err:.1e}"]
        from cnnc.backends.numba_cpu import convgen
        from cnnc.backends.numba_cpu.convgen import ConvSpec
        pl = convgen.plan(ConvSpec(h, w, cin, 3, 3, cout, pads=(1, 1, 1, 1)), tuned=False)
        default = f"F({pl.wino}x{pl.wino})" if pl.strategy == "winograd" else pl.strategy
        print(f"| {h}x{w} {cin}->{cout} | " + " | ".join(cells) + f" | {default} |",
              flush=True)
    print(f"GEMM peak after: {gemm_peak_with(child_env(isa)):.1f} GFLOP/s")


if __name__ == "__main__":
    main()
