"""GPU benchmark: cnnc's CUDA backend against PyTorch (cuDNN), float32, TF32 off and on.

    python benchmarks/cuda_bench.py                      # every case
    python benchmarks/cuda_bench.py --cases resnet20:1 --repeats 20

Cases (model:batch): ResNet-18 at 224x224 with batch 1 and 32, ResNet-20 at 32x32 with batch 1
and 256. Each system runs the same weights (PyTorch through ``benchmarks/torch_peer.py``,
NCHW inside). Inputs and outputs stay on the GPU for both (cnnc is called with a device array
and returns one), every timed call ends with a device synchronisation, and the table shows
the median of ``--repeats`` calls after ``--warmup`` untimed ones (cnnc compiles a batch
size's kernels on its first call). TFLOP/s = 2 x MACs of the convolutions and dense layers /
median time. "rel err" is max |y - y_torch_fp32| / max |y_torch_fp32|.

Needs an NVIDIA GPU with numba-cuda (``pip install cnnc[cuda]``) and, for the peer rows, a
CUDA build of PyTorch; without a GPU it exits with status 2 and says so.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

CASES = {"resnet18:1": ("resnet18", (224, 224, 3), 1),
         "resnet18:32": ("resnet18", (224, 224, 3), 32),
         "resnet20:1": ("resnet20", (32, 32, 3), 1),
         "resnet20:256": ("resnet20", (32, 32, 3), 256)}


def gpu_or_reason() -> str | None:
    """None when numba.cuda sees a real GPU, else why not."""
    try:
        from numba import cuda
    except Exception as e:
        return f"numba-cuda is not usable ({e}); install it with pip install 'cnnc[cuda]'"
    from cnnc.backends.numba_cuda import simulated
    if simulated():
        return "NUMBA_ENABLE_CUDASIM is set: the CUDA simulator cannot be benchmarked"
    if not cuda.is_available():
        return "no CUDA GPU was found (numba.cuda.is_available() is False)"
    return None


def build_graph(name: str, shape):
    import cnnc
    from cnnc.compile import to_graph
    return to_graph(cnnc.models.get(name, input_shape=shape))


def median_seconds(fn, sync, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _peer_tools():
    try:
        from benchmarks.harness import count_flops
        from benchmarks.torch_peer import torch_module
    except ImportError:  # run as a script: benchmarks/ itself is on sys.path
        from harness import count_flops
        from torch_peer import torch_module
    return count_flops, torch_module


def _torch():
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed"
    if not torch.cuda.is_available():
        return None, "PyTorch has no CUDA device"
    return torch, ""


def run_case(key: str, warmup: int, repeats: int, rows: list) -> None:
    from numba import cuda

    import cnnc
    count_flops, torch_module = _peer_tools()
    name, shape, batch = CASES[key]
    graph = build_graph(name, shape)
    flops = count_flops(graph, batch)
    x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
    t0 = time.perf_counter()
    model = cnnc.compile(graph, target="cuda")
    compile_s = time.perf_counter() - t0
    xd = cuda.to_device(x)
    t = median_seconds(lambda: model(xd), cuda.synchronize, warmup, repeats)
    y = model(xd).copy_to_host()
    rows.append([key, f"cnnc-cuda (compile {compile_s:.1f} s)", t, flops / t / 1e12, y])
    torch, why = _torch()
    if torch is None:
        rows.append([key, f"torch: {why}", None, None, None])
        return
    module = torch_module(graph).cuda().eval()
    xt = torch.from_numpy(x).cuda()
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True
        with torch.inference_mode():
            t = median_seconds(lambda: module(xt), torch.cuda.synchronize, warmup, repeats)
            yt = module(xt)
            yt = (yt[0] if isinstance(yt, (tuple, list)) else yt).float().cpu().numpy()
        rows.append([key, f"torch cuDNN tf32={'on' if tf32 else 'off'}", t, flops / t / 1e12,
                     yt])


def format_rows(rows: list) -> str:
    ref = {r[0]: r[4] for r in rows if r[1] == "torch cuDNN tf32=off"}
    lines = [f"{'case':<14} {'system':<34} {'median ms':>10} {'TFLOP/s':>8} {'rel err':>9}"]
    for key, system, t, tflops, y in rows:
        if t is None:
            lines.append(f"{key:<14} {system:<34} {'-':>10} {'-':>8} {'-':>9}")
            continue
        r = ref.get(key)
        err = (float(np.max(np.abs(y - r)) / max(np.max(np.abs(r)), 1e-12))
               if r is not None else float("nan"))
        lines.append(f"{key:<14} {system:<34} {t * 1e3:>10.3f} {tflops:>8.2f} {err:>9.1e}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES),
                   help=f"comma-separated, from {', '.join(CASES)}")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=50)
    args = p.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; expected some of {list(CASES)}")
    why = gpu_or_reason()
    if why:
        print(f"cuda_bench: {why}; this benchmark needs an NVIDIA GPU", file=sys.stderr)
        return 2
    from numba import cuda
    print(f"device: {cuda.get_current_device().name}", flush=True)
    rows: list = []
    for key in cases:
        run_case(key, args.warmup, args.repeats, rows)
        print(format_rows([r for r in rows if r[0] == key]), flush=True)
    print("\n" + format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
