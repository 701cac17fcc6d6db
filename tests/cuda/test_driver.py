"""Runs the simulated CUDA tests (``test_sim_*.py``) in a subprocess with
``NUMBA_ENABLE_CUDASIM=1`` when they cannot run in this process (no GPU, and Numba was
imported before the simulator could be switched on): so a plain ``pytest`` on a machine
without a GPU still runs every CUDA kernel test."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cuda_helpers import CUDA_OK

pytestmark = pytest.mark.cuda
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHILD = "CNNC_CUDA_SIM_CHILD"


def test_simulated_cuda_suite_in_a_subprocess():
    if os.environ.get(CHILD):
        pytest.skip("this is the simulator subprocess itself")
    if CUDA_OK:
        pytest.skip("CUDA (a GPU or the simulator) works in this process: the tests ran here")
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed (pip install 'cnnc[cuda]')")
    files = sorted(str(p) for p in HERE.glob("test_sim_*.py"))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", **{CHILD: "1"})
    # -P: the repository root must not shadow the installed package
    r = subprocess.run([sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        *files], cwd=str(ROOT), env=env, capture_output=True, text=True,
                       timeout=900)
    tail = r.stdout[-4000:] + r.stderr[-2000:]
    print(tail)
    assert r.returncode == 0, f"simulated CUDA tests failed:\n{tail}"
    summary = r.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, summary
