"""What an activation after a conv costs: ``python -m benchmarks.epilogue [--seconds S]``.

Each conv kernel is timed bare and with one activation in its epilogue (tanh, sigmoid, SiLU,
GELU: the transcendental ones, which a register-tiled conv hands to its loop-vectorized tail
function, kernels.tail_function), compiled as cnnc compiles them (``tune.build``: the padded
copy included), interleaved round by round; medians in ms.
"""

from __future__ import annotations

import argparse
import dataclasses

from cnnc.backends.numba_cpu import convgen, target, tune

S = convgen.ConvSpec
#: (name, spec, batch)
CASES = [("3x3 64->64 56x56", S(56, 56, 64, 3, 3, 64, (1, 1), (1, 1, 1, 1)), 1),
         ("1x1 16->96 112x112", S(112, 112, 16, 1, 1, 96), 1),
         ("LeNet 5x5 1->6 32x32", S(32, 32, 1, 5, 5, 6), 64)]
ACTIVATIONS = [(), (("tanh",),), (("sigmoid",),), (("swish", 1.0),), (("gelu",),)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.epilogue",
                                description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=0.1, help="timed seconds per round")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    print(f"# {target.effective().describe()}")
    print(f"{'conv':24} " + " ".join(f"{(a[0][0] if a else 'bare'):>9}" for a in ACTIVATIONS))
    for name, spec, batch in CASES:
        runs = []
        for act in ACTIVATIONS:
            s = dataclasses.replace(spec, epilogue=act)
            run = tune.build(s, convgen.plan(s, tuned=False), batch)
            tune.warm(run, 0.1)
            runs.append(run)
        med = tune.interleaved(runs, args.rounds, args.seconds)
        print(f"{name + f' b{batch}':24} " + " ".join(f"{m * 1e3:9.3f}" for m in med))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
