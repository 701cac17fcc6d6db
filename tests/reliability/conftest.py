"""Shared fixtures: one small model compiled once for target cpu (Numba compiles are slow);
the helper module of this folder (fuzzgen) made importable."""

import sys
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(scope="session")
def model():
    from fuzzgen import small_model
    return small_model()


@pytest.fixture(scope="session")
def compiled(model):
    """{target: compiled model} for numpy and cpu (cpu compiled once per session)."""
    import cnnc
    return {"numpy": cnnc.compile(model, target="numpy"),
            "cpu": cnnc.compile(model, target="cpu")}
