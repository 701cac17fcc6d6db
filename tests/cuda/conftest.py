"""CUDA tests: on a machine without a usable GPU they run on Numba's CUDA simulator.

The simulator is chosen by ``NUMBA_ENABLE_CUDASIM=1`` before Numba is first imported, and it
then applies to the whole process. So it is enabled here only when pytest was asked for
``tests/cuda`` alone, Numba is not imported yet and no NVIDIA device node exists. In a run of
the whole suite the simulated tests are skipped in-process (with that reason) and
``test_driver.py`` runs them under the simulator in a subprocess instead.
"""

import glob
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # cuda_helpers


def gpu_present() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/proc/driver/nvidia/version")


def _only_cuda_tests(config) -> bool:
    paths = [Path(str(a).split("::")[0]).resolve() for a in config.args]
    return bool(paths) and all(p == HERE or HERE in p.parents for p in paths)


def pytest_configure(config):
    if ("numba" not in sys.modules and not gpu_present() and _only_cuda_tests(config)):
        os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
