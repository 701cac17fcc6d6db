"""Shared by the CUDA tests: whether CUDA (a GPU or the simulator) works in this process, and
the float64-reference comparison."""

from __future__ import annotations

import numpy as np
import pytest

TOL = 1e-4  # max |y - ref| / max |ref|


def cuda_state() -> tuple[bool, str]:
    try:
        from numba import cuda
    except Exception as e:  # numba-cuda missing or broken
        return False, f"numba.cuda cannot be imported: {e}"
    if cuda.is_available():
        return True, ""
    return False, ("no usable CUDA GPU and the CUDA simulator is off in this process "
                   "(tests/cuda/conftest.py turns it on only when pytest runs tests/cuda alone, "
                   "before Numba is imported); tests/cuda/test_driver.py runs these tests "
                   "under the simulator in a subprocess")


CUDA_OK, CUDA_REASON = cuda_state()
requires_cuda = pytest.mark.skipif(not CUDA_OK, reason=CUDA_REASON)


def rel_err(y, ref) -> float:
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    return float(np.max(np.abs(y - ref)) / max(np.max(np.abs(ref)), 1e-6))


def compile_cuda(graph, opt_level: int = 2, **options):
    """``graph`` optimised at ``opt_level`` and compiled by the CUDA backend (``options``:
    profile, force, tile)."""
    from cnnc.backends.numba_cuda import compile_graph
    from cnnc.passes import optimize
    g = graph.copy()
    report = optimize(g, opt_level)
    return compile_graph(g, report, **options)


def check(graph, x, opt_level: int = 2, **options):
    """Compile, run on ``x`` and compare with the float64 reference; returns the model."""
    from cnnc.backends.reference import run_reference
    model = compile_cuda(graph, opt_level, **options)
    y = model(x)
    err = rel_err(y, run_reference(graph, x, dtype=np.float64))
    assert err < TOL, f"relative error {err:.2e}\n{model.source()}"
    return model
