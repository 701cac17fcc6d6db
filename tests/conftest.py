"""Puts ``tests/`` on ``sys.path`` so shared test modules (``strategies``, ``op_cases``) import
by name. (Only ``tests/``: the repository root must never be on ``sys.path``.)

Under pytest-xdist with a worker per core, every cold compile stays in its test's process
(``CNNC_COMPILE_WORKERS=1``): the cores are busy already, and a compile worker's start cost
more than its share saved (three test files: 11 % less time; the whole suite 22:06 ->
19:30).
``test_compile_workers_take_their_share_and_the_setting_is_checked`` runs the worker path."""

import os
import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) >= (os.cpu_count() or 1) > 1:
    os.environ.setdefault("CNNC_COMPILE_WORKERS", "1")
