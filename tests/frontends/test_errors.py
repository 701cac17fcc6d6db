"""Every misuse raises the right CnncError subclass, naming the layer and quoting the value."""

import numpy as np
import pytest

import cnnc
from cnnc import ConfigError, ShapeError
from cnnc import layers as L


@pytest.mark.parametrize("make, quoted", [
    (lambda: L.Conv2D(0, 3, name="c"), "0"),
    (lambda: L.Conv2D(2.5, 3, name="c"), "2.5"),
    (lambda: L.Conv2D(4, 0, name="c"), "0"),
    (lambda: L.Conv2D(4, (3, -1), name="c"), "(3, -1)"),
    (lambda: L.Conv2D(4, 3, strides=0, name="c"), "0"),
    (lambda: L.Conv2D(4, 3, dilation_rate="2", name="c"), "'2'"),
    (lambda: L.Conv2D(4, 3, padding="full", name="c"), "'full'"),
    (lambda: L.Conv2D(4, 3, activation="swish2", name="c"), "'swish2'"),
    (lambda: L.Conv2D(4, 3, groups=3, name="c"), "groups=3"),
    (lambda: L.Conv2D(4, 3, strides=2, dilation_rate=2, name="c"), "dilation_rate=2"),
    (lambda: L.Conv2D(4, 3, kernel_regularizer="l2", name="c"), "kernel_regularizer"),
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=0, name="c"), "0"),
    (lambda: L.MaxPooling2D(0, name="c"), "0"),
    (lambda: L.AveragePooling2D(2, strides=(1, 2, 3), name="c"), "(1, 2, 3)"),
    (lambda: L.MaxPool2D(2, padding="causal", name="c"), "'causal'"),
    (lambda: L.Dense(-1, name="c"), "-1"),
    (lambda: L.Dense(3, use_bias="yes", name="c"), "'yes'"),
    (lambda: L.Dropout(1.0, name="c"), "1.0"),
    (lambda: L.BatchNormalization(epsilon=0, name="c"), "0.0"),
    (lambda: L.BatchNormalization(momentum=2, name="c"), "2.0"),
    (lambda: L.ZeroPadding2D(-1, name="c"), "-1"),
    (lambda: L.Reshape((2, 0), name="c"), "(2, 0)"),
    (lambda: L.Activation("gelu2", name="c"), "'gelu2'"),
    (lambda: L.ReLU(max_value=-1, name="c"), "-1"),
    (lambda: L.Conv2D(4, 3, input_shape=(8, 0, 3), name="c"), "(8, 0, 3)"),
])
def test_bad_arguments_raise_config_error_at_construction(make, quoted):
    with pytest.raises(ConfigError) as e:
        make()
    assert "'c'" in str(e.value) and quoted in str(e.value)


def test_unnamed_layer_errors_name_the_layer_class():
    with pytest.raises(ConfigError, match=r"Conv2D layer 'conv2d'.*got 0"):
        L.Conv2D(0, 3)


def test_groups_must_divide_input_channels_at_build():
    with pytest.raises(ConfigError, match=r"'g'.*groups=2.*3 input channels"):
        cnnc.Sequential([cnnc.Input((8, 8, 3)), L.Conv2D(4, 3, groups=2, name="g")])


def test_kernel_larger_than_valid_input():
    with pytest.raises(ShapeError, match=r"'big'.*window 5.*padded input 3"):
        cnnc.Sequential([cnnc.Input((3, 3, 1)), L.Conv2D(2, 5, name="big")])
    with pytest.raises(ShapeError, match=r"'pool'"):
        L.MaxPooling2D(4, name="pool")(cnnc.Input((3, 3, 1)))
    # SAME padding makes it fit
    cnnc.Sequential([cnnc.Input((3, 3, 1)), L.Conv2D(2, 5, padding="same")])


def test_rank_mismatches_name_the_layer_and_shape():
    with pytest.raises(ShapeError, match=r"Dense layer 'fc'.*rank-2.*\(None, 4, 4, 2\)"):
        cnnc.Sequential([cnnc.Input((4, 4, 2)), L.Dense(3, name="fc")])
    with pytest.raises(ShapeError, match=r"Conv2D layer 'c'.*rank-4.*\(None, 10\)"):
        cnnc.Sequential([cnnc.Input((10,)), L.Conv2D(3, 1, name="c")])


def test_incompatible_merges():
    x = cnnc.Input((8, 8, 3))
    a, b = L.Conv2D(4, 1)(x), L.Conv2D(5, 1)(x)
    with pytest.raises(ShapeError, match=r"'plus'.*4.*5"):
        L.Add(name="plus")([a, b])
    c = L.MaxPooling2D()(a)
    with pytest.raises(ShapeError, match=r"'cat'.*\[N,4,4,4\]"):
        L.Concatenate(name="cat")([c, b])
    with pytest.raises(ConfigError, match=r"'plus2'.*at least 2.*single"):
        L.Add(name="plus2")(a)
    with pytest.raises(ShapeError, match=r"'rs'.*\(None, 8, 8, 4\) \(256 values.*\(5, -1\)"):
        L.Reshape((5, -1), name="rs")(a)


def test_set_weights_wrong_count_or_shape():
    conv = L.Conv2D(4, 3, name="cv")
    m = cnnc.Sequential([cnnc.Input((6, 6, 2)), conv])
    k, b = conv.get_weights()
    with pytest.raises(ShapeError, match=r"'cv'.*expected 2.*kernel \(3, 3, 2, 4\).*received 1"):
        conv.set_weights([k])
    with pytest.raises(ShapeError, match=r"'cv'.*'kernel' expected shape \(3, 3, 2, 4\), "
                                         r"received \(3, 3, 4, 2\)"):
        conv.set_weights([k.transpose(0, 1, 3, 2), b])
    with pytest.raises(ShapeError, match=r"expected 2 arrays.*received 3"):
        m.set_weights([k, b, b])
    np.testing.assert_array_equal(conv.get_weights()[0], k)  # unchanged after failures
    with pytest.raises(ShapeError, match=r"'late'.*not built"):
        L.Dense(3, name="late").set_weights([np.zeros((2, 3))])


def test_sequential_without_input_shape():
    m = cnnc.Sequential([L.Conv2D(4, 3), L.ReLU()], name="noin")
    for call in (m.to_graph, m.summary, m.count_params):
        with pytest.raises(ConfigError, match=r"'noin'.*Input\(shape="):
            call()
    with pytest.raises(ConfigError, match=r"'noin'.*Input"):
        cnnc.compile(m, target="numpy")


def test_sequential_misuse():
    with pytest.raises(ConfigError, match=r"only be the first"):
        cnnc.Sequential([L.ReLU(input_shape=(2, 2, 1)), cnnc.Input((2, 2, 1))])
    with pytest.raises(ConfigError, match=r"Sequential takes layers, got str"):
        cnnc.Sequential([cnnc.Input((2, 2, 1)), "relu"])
    with pytest.raises(ConfigError, match=r"two layers are named 'r'"):
        cnnc.Sequential([cnnc.Input((2, 2, 1)), L.ReLU(name="r"), L.ReLU(name="r")])


def test_functional_misuse():
    x, other = cnnc.Input((4, 4, 1)), cnnc.Input((4, 4, 1), name="other")
    y = L.Add()([x, other])
    with pytest.raises(ConfigError, match=r"depend on .*'other'"):
        cnnc.Model(x, y)
    with pytest.raises(ConfigError, match=r"symbolic tensors.*ndarray"):
        cnnc.Model(x, np.zeros(3))
    z = L.ReLU(name="dup")(L.ReLU(name="dup")(x))
    with pytest.raises(ConfigError, match=r"two layers are named 'dup'"):
        cnnc.Model(x, z)
    with pytest.raises(ConfigError, match=r"one input tensor, received 2"):
        L.ReLU()([x, other])


def test_zoo_argument_errors():
    with pytest.raises(ConfigError, match=r"resnet20.*input_shape.*\(32, 32\)"):
        cnnc.models.resnet20(input_shape=(32, 32))
    with pytest.raises(ConfigError, match=r"num_classes.*0"):
        cnnc.models.lenet5(num_classes=0)
    with pytest.raises(ConfigError, match=r"'resnet19'.*resnet18"):
        cnnc.models.get("resnet19")
    with pytest.raises(ShapeError):
        cnnc.models.vgg11(input_shape=(16, 16, 3))  # five 2x2 pools need at least 32x32
