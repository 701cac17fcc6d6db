"""Transposed convs against the direct conv of the same shape: ``python -m benchmarks.deconv
[--seconds S] [--rounds R]``.

Each case is a one-node graph compiled for target ``cpu``: the transposed conv as cnnc runs it
(register tiles where the kernel equals the stride, ``norm_kernels.conv_transpose_tiled``; a
tiled product and col2im otherwise, ``norm_kernels.conv_transpose_col2im``),
the same op in the gather form (``norm_kernels.TILED`` off), and the direct conv with the same
multiply-adds (its adjoint: kernel k, stride k, from the transposed conv's output size and
channels back to its input's). Interleaved round by round; medians in ms, GFLOP/s, and the
transposed conv's rate over the direct conv's.
"""

from __future__ import annotations

import argparse

import numpy as np

#: (name, input h, w, cin, cout, kernel, stride, padding)
CASES = [("2x2/2 64->32 56x56", 56, 56, 64, 32, 2, 2, "valid"),
         ("2x2/2 128->64 28x28", 28, 28, 128, 64, 2, 2, "valid"),
         ("2x2/2 256->128 14x14", 14, 14, 256, 128, 2, 2, "valid"),
         ("4x4/2 p1 64->64 28x28", 28, 28, 64, 64, 4, 2, ((1, 1), (1, 1))),
         ("3x3/2 p1 128->64 28x28", 28, 28, 128, 64, 3, 2, ((1, 1), (1, 1)))]


def _compiled(op, in_shape, w_shape, attrs, rng):
    import cnnc
    from cnnc.ir import Graph
    g = Graph(op)
    x = g.add_input(("N", *in_shape), name="x")
    g.set_outputs(g.add(op, [x, g.constant(rng.standard_normal(w_shape).astype(np.float32)),
                             g.constant(rng.standard_normal(w_shape[-1]).astype(np.float32))],
                        attrs))
    model = cnnc.compile(g, target="cpu")
    xs = rng.standard_normal((1, *in_shape)).astype(np.float32)
    return lambda: model(xs)


def main(argv=None) -> int:
    from cnnc.backends.numba_cpu import norm_kernels, target, tune
    p = argparse.ArgumentParser(prog="python -m benchmarks.deconv",
                                description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=0.2, help="timed seconds per round")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"# {target.effective().describe()}")
    print(f"{'case':24} {'tiled':>9} {'gather':>9} {'direct':>9}   GFLOP/s (tiled, gather, "
          f"direct)   tiled / direct")
    for name, h, w, cin, cout, k, s, pad in CASES:
        attrs = {"strides": s, "padding": pad}
        oh, ow = ((d - 1) * s + k - (0 if pad == "valid" else 2) for d in (h, w))
        runs = [_compiled("conv2d_transpose", (h, w, cin), (k, k, cin, cout), attrs, rng)]
        norm_kernels.TILED = False
        try:
            runs.append(_compiled("conv2d_transpose", (h, w, cin), (k, k, cin, cout), attrs, rng))
        finally:
            norm_kernels.TILED = True
        runs.append(_compiled("conv2d", (oh, ow, cout), (k, k, cout, cin), attrs, rng))
        for run in runs:
            tune.warm(run, 0.1)
        ms = [m * 1e3 for m in tune.interleaved(runs, args.rounds, args.seconds)]
        flops = 2.0 * h * w * cin * cout * k * k   # every input pixel meets every tap once
        rates = [flops / (m * 1e6) for m in ms]
        print(f"{name:24} " + " ".join(f"{m:9.3f}" for m in ms) + "   " +
              " ".join(f"{r:7.1f}" for r in rates) + f"   {rates[0] / rates[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
