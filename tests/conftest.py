"""Puts ``tests/`` on ``sys.path`` so shared test modules (``strategies``, ``op_cases``) import
by name. (Only ``tests/``: the repository root must never be on ``sys.path``.)"""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
