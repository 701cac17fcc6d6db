"""Makes the helper modules of this folder (graphgen, plan_sim) importable by the tests."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
