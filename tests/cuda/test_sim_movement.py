"""The data-movement kernels (slice, take, tile, broadcast_to, resize) on CUDA
(the simulator on tiny shapes) against the float64 reference, on the graphs of
tests/backends/test_numba_cpu_movement.py."""

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cuda_helpers import check, requires_cuda

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends"))
from test_numba_cpu_movement import movement_cases  # noqa: E402

pytestmark = [pytest.mark.cuda, requires_cuda]


@settings(deadline=None, max_examples=25)
@given(case=movement_cases(max_hw=4, max_c=3, allow_empty=False), seed=st.integers(0, 2 ** 16))
def test_movement_kernels_match_reference(case, seed):
    g, shape = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    check(g, x, opt_level=0)
