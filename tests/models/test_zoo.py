"""The model zoo: published parameter counts, structure, and runs through cnnc.compile.

Counting convention: ``count_params()`` counts every weight like Keras (BN moving mean and
variance included); ``count_params(trainable=True)`` leaves the moving statistics out, which
is what torchvision's published numbers count.
"""

import time

import numpy as np
import pytest

import cnnc
from cnnc.backends.reference import run_reference

# name: (trainable params, all params incl. BN moving statistics) at the default input shape
COUNTS = {
    "lenet5": (61_706, 61_706),
    "alexnet": (61_100_840, 61_100_840),       # torchvision AlexNet
    "vgg11": (132_863_336, 132_863_336),
    "vgg16": (138_357_544, 138_357_544),
    "resnet18": (11_689_512, 11_699_112),
    "resnet34": (21_797_672, 21_814_696),
    "resnet50": (25_557_032, 25_610_152),
    "resnet20": (272_474, 274_042),            # option B: 1x1 conv + BN projections
    "mobilenet_v2": (3_504_872, 3_538_984),    # Keras Applications MobileNetV2
    "unet": (482_754, 484_162),                # 64x64x3, 2 classes, 16 base filters, depth 3
}


def test_names_and_get():
    assert cnnc.models.names() == sorted(COUNTS)
    m = cnnc.models.get("lenet5", num_classes=7, seed=3)
    assert m.to_graph().outputs[0].type.shape == ("N", 7)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_counts(name):
    m = cnnc.models.get(name)
    trainable, total = COUNTS[name]
    assert m.count_params(trainable=True) == trainable
    assert m.count_params() == total
    if total > 30_000_000:  # copying 0.5 GB of weights adds nothing to the check
        return
    assert sum(w.size for w in m.get_weights()) == total
    g = m.to_graph()
    assert sum(c.size for c in g.constants().values()) == total
    cnnc.verify(g)


def test_resnet50_builds_quickly():
    t = time.perf_counter()
    m = cnnc.models.resnet50()
    m.to_graph()
    assert time.perf_counter() - t < 5.0


@pytest.mark.parametrize("name, adds, convs", [("resnet18", 8, 20), ("resnet34", 16, 36),
                                               ("resnet50", 16, 53), ("resnet20", 9, 21)])
def test_resnet_structure(name, adds, convs):
    g = cnnc.models.get(name).to_graph()
    ops = [n.op for n in g.ops]
    assert ops.count("add") == adds and ops.count("conv2d") == convs
    assert ops.count("batch_norm") == convs
    # every residual sum is followed by a ReLU
    users = g.users()
    for n in g.ops:
        if n.op == "add":
            assert [u.op for u in users[n.output]] == ["relu"]


def test_resnet_stride2_convs_pad_same():
    g = cnnc.models.resnet18().to_graph()
    shapes = [n.output.type.shape for n in g.ops if n.op in ("conv2d", "max_pool2d")]
    assert shapes[0] == ("N", 112, 112, 64) and shapes[1] == ("N", 56, 56, 64)
    assert shapes[-1] == ("N", 7, 7, 512)


RUNS = [("lenet5", (32, 32, 1)), ("resnet20", (32, 32, 3)), ("resnet18", (64, 64, 3)),
        ("resnet50", (32, 32, 3)), ("vgg11", (32, 32, 3)), ("alexnet", (67, 67, 3))]


@pytest.mark.parametrize("name, shape", RUNS)
def test_compiled_numpy_matches_reference(name, shape):
    m = cnnc.models.get(name, input_shape=shape, num_classes=10, seed=1)
    x = np.random.default_rng(5).normal(size=(2, *shape))
    want = run_reference(m.to_graph(), x)
    got = cnnc.compile(m, target="numpy")(x)
    assert got.shape == (2, 10) and np.isfinite(want).all()
    assert np.abs(want[0] - want[1]).max() > 1e-4 * np.abs(want).max()  # input-dependent
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())


def test_seed_is_deterministic_and_matters():
    a, b, c = (cnnc.models.resnet20(seed=s) for s in (0, 0, 1))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])
    assert str(a.to_graph()) == str(b.to_graph())


def test_zoo_layer_names_are_per_model():
    names = [l.name for l in cnnc.models.resnet20().layers][:4]
    assert names == ["input_layer", "conv2d", "batch_normalization", "re_lu"]
    assert [l.name for l in cnnc.models.lenet5().layers][:2] == ["conv2d", "average_pooling2d"]
