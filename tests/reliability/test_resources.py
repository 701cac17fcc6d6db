"""Absurd memory requests are refused with ResourceError before anything is allocated."""

import numpy as np
import pytest

import cnnc
from cnnc import ResourceError
from cnnc import layers as L
from cnnc.backends import base


def test_resource_error_is_a_cnnc_and_memory_error():
    assert issubclass(ResourceError, cnnc.CnncError) and issubclass(ResourceError, MemoryError)


def test_available_memory_is_reported():
    avail = base.available_memory()
    assert avail is None or avail > 0


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_huge_batch_is_refused_before_the_input_is_copied(compiled, target):
    c = compiled[target]
    # a broadcast view: no memory behind it, but casting it would need ~1.4 TB
    x = np.broadcast_to(np.float64(0.5), (10**9, 6, 6, 2))
    with pytest.raises(ResourceError, match=r"'small'.*N=1000000000.*GiB.*available"):
        c(x)
    y = c(np.full((2, 6, 6, 2), 0.5))  # still usable afterwards
    assert y.shape == (2, 3)


def test_resnet20_absurd_batch_on_the_reference():
    c = cnnc.compile(cnnc.models.resnet20(), target="numpy")
    x = np.broadcast_to(np.float32(1), (10**7, 32, 32, 3))
    with pytest.raises(ResourceError, match=r"'resnet20'.*N=10000000"):
        c(x)


def test_model_with_a_100000_square_input():
    m = cnnc.Sequential([cnnc.Input((100000, 100000, 1)), L.Conv2D(2, 3)], name="wide")
    c = cnnc.compile(m, target="numpy")  # compiling allocates nothing per sample
    with pytest.raises(ResourceError, match=r"'wide'.*N=1"):
        c(np.broadcast_to(np.float32(1), (1, 100000, 100000, 1)))


def test_cpu_arena_refuses_absurd_bindings(compiled):
    c = compiled["cpu"]
    with pytest.raises(ResourceError, match=r"arena of model 'small'.*N=10000000000"):
        c._arena({"N": 10**10})


def test_absurd_weights_are_refused_when_the_layer_is_built():
    with pytest.raises(ResourceError, match=r"Conv2D layer 'huge'.*kernel of shape"):
        cnnc.Sequential([cnnc.Input((8, 8, 3)), L.Conv2D(10**12, 3, name="huge")])
    with pytest.raises(ResourceError, match=r"Dense layer 'fc'"):
        cnnc.Sequential([cnnc.Input((10,)), L.Dense(10**12, name="fc")])


def test_compile_refuses_weights_that_do_not_fit(model, monkeypatch):
    monkeypatch.setattr(base, "available_memory", lambda: 256)
    with pytest.raises(ResourceError, match=r"compiling graph 'small'.*weights"):
        cnnc.compile(model, target="numpy")


def test_unknown_memory_never_blocks(compiled, monkeypatch):
    monkeypatch.setattr(base, "available_memory", lambda: None)
    x = np.random.default_rng(0).standard_normal((3, 6, 6, 2))
    assert compiled["numpy"](x).shape == (3, 3)
