"""The generated kernels compiled for a real GPU (sm_90) by NVVM - no GPU needed - and, where
``ptxas`` is available, assembled: the GEMM register tiles stay in registers (no spills, no
local-memory stack) and the shared-memory tiles fit. Runs where ``numba.cuda`` is in its
real mode and libNVVM is installed (the ``nvidia-cuda-nvcc`` wheel); skipped otherwise."""

import numpy as np
import pytest

import op_cases
from cnnc.backends.numba_cuda import convgen, simulated
from cnnc.backends.numba_cuda.lower import lower
from cnnc.ir import Graph
from cnnc.passes import optimize

pytestmark = pytest.mark.cuda
CC = (9, 0)


def _nvvm_reason() -> str | None:
    try:
        from numba import cuda
    except Exception as e:
        return f"numba.cuda cannot be imported: {e}"
    if simulated():
        return "numba.cuda is the simulator in this process (no NVVM compilation)"
    try:
        cuda.compile_ptx(lambda a: None, "void(float32[::1])", cc=CC)
    except Exception as e:
        return f"libNVVM is not available to compile PTX ({type(e).__name__}: {e})"[:300]
    return None


REASON = _nvvm_reason()
requires_nvvm = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def _graphs():
    """One conv with all four GPU tile variants, a grouped GEMM conv, a depthwise (direct)
    conv, and the op cases for pooling, softmax, broadcasting, pad, concat, transpose,
    matmul and global pooling."""
    rng = np.random.default_rng(0)
    g = Graph("convs")
    x = g.add_input(("N", 14, 14, 64), name="x")
    y = g.add("conv2d_fused", [x, g.constant(rng.standard_normal((3, 3, 64, 64))),
                               g.constant(rng.standard_normal(64)), x],
              {"padding": "same", "epilogue": ["add", "relu"]})
    y = g.add("conv2d", [y, g.constant(rng.standard_normal((3, 3, 16, 32)))],
              {"padding": "same", "strides": 2, "groups": 4})
    y = g.add("conv2d", [y, g.constant(rng.standard_normal((3, 3, 1, 32)))],
              {"padding": "same", "groups": 32})
    g.set_outputs(y)
    yield g
    for op in ("max_pool2d", "avg_pool2d", "softmax", "add", "pad", "concat", "transpose",
               "matmul", "global_avg_pool"):
        yield op_cases.build(op, rng)


@requires_nvvm
def test_every_kernel_compiles_to_ptx_without_spills():
    from cnnc.backends.numba_cuda.ptx import kernel_ptx, resources
    seen = 0
    for g in _graphs():
        lw = lower(g, optimize(g, 0).plan, convgen.GPU)
        for name, ptx in kernel_ptx(lw, CC).items():
            seen += 1
            assert ".entry" in ptx and "sm_90" in ptx
            info = resources(ptx, CC)
            if not info:
                continue  # no ptxas: the PTX compiled, resources unknown
            src = lw.kernels[name]
            assert info["spill_stores"] == 0 and info["spill_loads"] == 0, (info, src[:300])
            assert info["stack"] == 0, (info, src[:300])  # local arrays live in registers
            assert info["shared"] <= 48 * 1024
    assert seen >= 14
