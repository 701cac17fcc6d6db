"""Shared fixtures of the tooling tests: one compiled Numba CPU model per module, seeded inputs,
and a machine peak fixed by the environment (no 2048² matmul per test)."""

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _fixed_peak(monkeypatch):
    monkeypatch.setenv("CNNC_PEAK_GFLOPS", "100")


@pytest.fixture(scope="module")
def resnet20_cpu():
    import cnnc
    return cnnc.compile(cnnc.models.get("resnet20"), target="cpu")


@pytest.fixture(scope="module")
def lenet5_cpu():
    import cnnc
    return cnnc.compile(cnnc.models.get("lenet5"), target="cpu")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
