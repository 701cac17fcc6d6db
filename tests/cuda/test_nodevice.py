"""What needs no CUDA device: the error for ``target="cuda"`` without one, the choice of
``target="auto"``, the GPU launch configuration (tile variants per batch size) and the
benchmark script's clean refusal."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import cnnc
from cnnc.backends.numba_cuda import convgen
from cnnc.backends.numba_cuda.lower import lower
from cnnc.compile import resolve_target, to_graph
from cnnc.errors import UnsupportedError
from cnnc.ir import Graph
from cnnc.passes import optimize
from cuda_helpers import CUDA_OK

pytestmark = pytest.mark.cuda
ROOT = Path(__file__).resolve().parents[2]


def _relu_graph():
    g = Graph("tiny")
    g.set_outputs(g.add("relu", [g.add_input(("N", 4), name="x")]))
    return g


@pytest.mark.skipif(CUDA_OK, reason="a CUDA device (or the simulator) is usable here")
def test_cuda_target_without_a_device_raises_a_clear_error():
    with pytest.raises(UnsupportedError, match="no CUDA device was found"):
        cnnc.compile(_relu_graph(), target="cuda")
    assert resolve_target("auto") in ("cpu", "numpy")


def test_tiles_are_consistent():
    spec = convgen.ConvSpec(8, 8, 16, 3, 3, 64)
    for prof in (convgen.GPU, convgen.SIM):
        for cout in (4, 16, 32, 64, 512):
            for t in prof.tiles(convgen.ConvSpec(8, 8, 16, 3, 3, cout)):
                assert t.bm % t.tm == 0 and t.bn % t.tn == 0
                assert t.threads <= 1024 and (prof is convgen.SIM or t.threads == 256)
                assert 4 * (t.bk * (t.bm + 1) + t.bk * t.bn) <= 48 * 1024  # static smem
    assert convgen.pick([(4, 1, 1), (8, 1, 1), (20, 1, 1)], 16) == 2
    assert convgen.pick([(40, 2, 1), (80, 2, 1)], 16) == 0
    assert convgen.pick([(1, 1, 1), (3, 1, 1), (2, 1, 1)], 100) == 1
    assert convgen.choose(spec) == "gemm"
    assert convgen.choose(convgen.ConvSpec(8, 8, 16, 3, 3, 16, groups=16)) == "direct"


def test_gpu_launches_cover_the_output_and_adapt_to_the_batch():
    """ResNet-18: every GEMM grid covers all pixels x channels; batch 32 keeps the largest
    tile everywhere but the 7x7 stage, batch 1 moves to smaller tiles for more blocks."""
    g = to_graph(cnnc.models.get("resnet18"))
    report = optimize(g, 2)
    lw = lower(g, report.plan, convgen.GPU)
    target = 132 * convgen.BLOCKS_PER_SM
    first = {1: 0, 32: 0}
    for launch in lw.launches:
        if len(launch.variants) == 1:
            continue
        for batch in (1, 32):
            count = launch.count({"N": batch})
            grids = [grid(count) for _, grid, _ in launch.variants]
            i = convgen.pick(grids, target)
            first[batch] += i == 0
            n, oh, ow, cout = launch.node.output.type.concrete({"N": batch}) \
                if len(launch.node.output.shape) == 4 else (batch, 1, 1,
                                                            launch.node.output.shape[1])
            src = lw.kernels[launch.variants[i][0]]
            bm, bn = (int(v) for v in src.split("tile ")[1].split("x")[:2])
            assert grids[i][0] * bm >= n * oh * ow and grids[i][1] * bn >= cout
    assert first[32] > first[1]


def test_benchmark_script_refuses_cleanly_without_a_gpu():
    if CUDA_OK:
        pytest.skip("a CUDA device (or the simulator) is usable here: the script would run")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    r = subprocess.run([sys.executable, "-P", str(ROOT / "benchmarks" / "cuda_bench.py"),
                        "--cases", "resnet20:1"], capture_output=True, text=True, env=env,
                       cwd=str(ROOT), timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no CUDA GPU" in r.stderr and "Traceback" not in r.stderr, r.stderr


HIDE_NUMBA_CUDA = """
import sys
class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name == "numba_cuda" or name.startswith("numba_cuda."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Hide())
"""


def test_cuda_target_without_the_numba_cuda_package_asks_for_the_extra():
    """Only Numba's built-in numba.cuda (no numba-cuda package), simulator on: a clear
    UnsupportedError before any pass runs, and "auto" picks the cpu."""
    code = HIDE_NUMBA_CUDA + """
import cnnc
from cnnc.compile import resolve_target
from cnnc.errors import UnsupportedError
g = cnnc.models.lenet5()
try:
    cnnc.compile(g, target="cuda", print_after="all")
except UnsupportedError as e:
    print("ERROR", e)
print("AUTO", resolve_target("auto"))
"""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    r = subprocess.run([sys.executable, "-P", "-c", code], cwd=str(ROOT), env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert any(line.startswith("ERROR") and 'pip install "cnnc[cuda]"' in line
               for line in lines), r.stdout[-2000:]
    assert "AUTO cpu" in lines
    assert "conv2d" not in r.stdout, "the passes ran (their IR was printed) before the error"
