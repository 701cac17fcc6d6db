"""MobileNetV2 and the small U-Net compiled for cpu against the float64 reference."""

import time

import numpy as np
import pytest

import cnnc
from cnnc.backends.reference import run_reference
from cnnc.errors import ConfigError


def _check_cpu(m, shape):
    x = np.random.default_rng(3).standard_normal((2, *shape)).astype(np.float32)
    ref = run_reference(m.to_graph(), x)
    t = time.perf_counter()
    got = cnnc.compile(m, target="cpu")(x)
    print(f"{m.name}: cpu compile + run {time.perf_counter() - t:.1f} s")
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-4


def _perturb(m, seed):
    """Random BN statistics and biases, so that every weight matters."""
    rng = np.random.default_rng(seed)
    m.set_weights([w + (rng.uniform(0, 0.5, w.shape) if w.ndim == 1 else 0)
                   for w in m.get_weights()])
    return m


@pytest.mark.slow
@pytest.mark.numba
def test_mobilenet_v2_cpu():
    m = _perturb(cnnc.models.mobilenet_v2(input_shape=(32, 32, 3), num_classes=10), 1)
    g = m.to_graph()
    assert sum(n.op == "add" for n in g.ops) == 10
    _check_cpu(m, (32, 32, 3))


@pytest.mark.slow
@pytest.mark.numba
def test_unet_cpu():
    m = _perturb(cnnc.models.unet(input_shape=(32, 32, 3), num_classes=3), 2)
    ops = [n.op for n in m.to_graph().ops]
    assert ops.count("conv2d_transpose") == 3 and ops.count("concat") == 3
    assert m.to_graph().outputs[0].type.shape == ("N", 32, 32, 3)
    _check_cpu(m, (32, 32, 3))


def test_unet_checks_its_input_size():
    with pytest.raises(ConfigError, match="divisible by 2\\*\\*depth"):
        cnnc.models.unet(input_shape=(36, 36, 3))
