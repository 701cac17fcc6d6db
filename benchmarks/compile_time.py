"""Time ``cnnc.compile(model, target="cpu")`` in this process and print it as JSON.

    CNNC_CACHE_DIR=/tmp/c python -m benchmarks.compile_time resnet20 --seed 0

The harness runs it twice in fresh subprocesses over one new cache directory: the first run
is the cold compile, the second the warm one (kernels loaded from the on-disk cache).
"""

from __future__ import annotations

import argparse
import json
import time


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import cnnc
    graph = cnnc.models.get(args.model, seed=args.seed).to_graph()
    t0 = time.perf_counter()
    try:
        cnnc.compile(graph, target="cpu")
        out = {"seconds": time.perf_counter() - t0}
    except Exception as e:
        out = {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
