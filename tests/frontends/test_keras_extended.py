"""The newer Keras layers and activation names, each against an independent NumPy
definition of Keras 3's semantics (eager calls run the float64 reference), and one model with
all of them compiled for cpu against the reference."""

from __future__ import annotations

import numpy as np
import pytest

import cnnc
from cnnc import layers as L
from cnnc.backends.reference import run_reference
from cnnc.errors import ConfigError, ShapeError, UnsupportedError
from cnnc.frontends.keras.extended import deconv_output_length

rng = np.random.default_rng(11)


def rnd(*shape):
    return rng.standard_normal(shape)


def _call(layer, *xs):
    return layer(list(xs) if len(xs) > 1 else xs[0])


def _conv_transpose_numpy(x, k, b, strides, padding, output_padding=None):
    """TF's conv2d_transpose: scatter, then crop ``total // 2`` (SAME) at the start."""
    n, h, w, _ = x.shape
    kh, kw, f, _ = k.shape
    out_len = [deconv_output_length(d, kk, padding, None if output_padding is None else op,
                                    s, 1) for d, kk, s, op in
               zip((h, w), (kh, kw), strides, output_padding or (0, 0))]
    full = np.zeros((n, (h - 1) * strides[0] + kh + 8, (w - 1) * strides[1] + kw + 8, f))
    for i in range(h):
        for j in range(w):
            full[:, i * strides[0]:i * strides[0] + kh, j * strides[1]:j * strides[1] + kw] += \
                np.einsum("nc,abfc->nabf", x[:, i, j], k)
    starts = [0, 0]
    if padding == "same":
        starts = [max((d - 1) * s + kk - o, 0) // 2 for d, s, kk, o in
                  zip((h, w), strides, (kh, kw), out_len)]
    return full[:, starts[0]:starts[0] + out_len[0], starts[1]:starts[1] + out_len[1]] + b


@pytest.mark.parametrize("k,s,padding,op", [(3, 2, "same", None), (3, 2, "valid", None),
                                            (2, 2, "same", None), (1, 2, "same", None),
                                            (4, 2, "same", None), (3, 2, "same", 1),
                                            (3, 3, "valid", 2), (5, (2, 1), "same", None)])
def test_conv2d_transpose(k, s, padding, op):
    layer = L.Conv2DTranspose(4, k, strides=s, padding=padding, output_padding=op)
    x = rnd(2, 5, 4, 3)
    y = layer(x)
    kernel, bias = layer.get_weights()
    assert kernel.shape == (k, k, 4, 3)
    layer.set_weights([kernel, rnd(4)])
    kernel, bias = layer.get_weights()
    strides = s if isinstance(s, tuple) else (s, s)
    ref = _conv_transpose_numpy(x, kernel.astype(np.float64), bias, strides, padding,
                                None if op is None else (op, op))
    y = layer(x)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_conv2d_transpose_matches_torch_valid():
    torch = pytest.importorskip("torch")
    layer = L.Conv2DTranspose(6, 3, strides=2, activation="relu")
    x = rnd(1, 4, 5, 2)
    layer(x)
    k, b = layer.get_weights()
    layer.set_weights([k, rnd(6)])
    k, b = layer.get_weights()
    t = torch.nn.functional.conv_transpose2d(torch.tensor(x.transpose(0, 3, 1, 2)),
                                             torch.tensor(k.transpose(3, 2, 0, 1), dtype=torch.float64),
                                             torch.tensor(b, dtype=torch.float64), stride=2)
    ref = np.maximum(t.numpy().transpose(0, 2, 3, 1), 0)
    np.testing.assert_allclose(layer(x), ref, rtol=1e-4, atol=1e-5)


def test_separable_conv2d():
    layer = L.SeparableConv2D(5, 3, padding="same", depth_multiplier=2, activation="relu")
    x = rnd(2, 6, 6, 3)
    layer(x)
    dk, pk, b = layer.get_weights()
    assert dk.shape == (3, 3, 3, 2) and pk.shape == (1, 1, 6, 5) and b.shape == (5,)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    dw = np.zeros((2, 6, 6, 6))
    for i in range(3):
        for j in range(3):
            dw += (xp[:, i:i + 6, j:j + 6, :, None] * dk[i, j]).reshape(2, 6, 6, 6)
    ref = np.maximum(dw @ pk[0, 0] + b, 0)
    np.testing.assert_allclose(layer(x), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis", [-1, [1, 2], [1, 2, 3], 2])
def test_layer_normalization(axis):
    layer = L.LayerNormalization(axis=axis)
    x = rnd(2, 4, 5, 6) * 3 + 1
    layer(x)
    g, b = layer.get_weights()
    layer.set_weights([rnd(*g.shape), rnd(*b.shape)])
    g, b = layer.get_weights()
    axes = tuple(a % 4 for a in (axis if isinstance(axis, list) else [axis]))
    shape = [x.shape[a] if a in axes else 1 for a in range(4)]
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    ref = (x - mean) / np.sqrt(var + 1e-3) * g.reshape(shape) + b.reshape(shape)
    np.testing.assert_allclose(layer(x), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("groups", [1, 2, -1])
def test_group_normalization(groups):
    layer = L.GroupNormalization(groups=groups, epsilon=1e-5)
    x = rnd(2, 3, 5, 4) * 2
    layer(x)
    layer.set_weights([rnd(4), rnd(4)])
    g, b = layer.get_weights()
    gg = 4 if groups == -1 else groups
    xg = x.reshape(2, 3, 5, gg, 4 // gg)
    ref = ((xg - xg.mean(axis=(1, 2, 4), keepdims=True)) /
           np.sqrt(xg.var(axis=(1, 2, 4), keepdims=True) + 1e-5)).reshape(x.shape) * g + b
    np.testing.assert_allclose(layer(x), ref, rtol=1e-4, atol=1e-5)


def test_prelu_elu_rescaling():
    x = rnd(2, 3, 4, 5)
    p = L.PReLU(shared_axes=[1, 2])
    p(x)
    assert p.get_weights()[0].shape == (1, 1, 5)
    alpha = rnd(1, 1, 5)
    p.set_weights([alpha])
    np.testing.assert_allclose(p(x), np.where(x >= 0, x, alpha * x), rtol=1e-6)
    np.testing.assert_allclose(L.ELU(alpha=0.7)(x), np.where(x > 0, x, 0.7 * np.expm1(x)),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(L.Rescaling(1 / 255, offset=-0.5)(x), x / 255 - 0.5, rtol=1e-6)


def test_merges():
    a, b, c = rnd(2, 3, 4), rnd(2, 3, 4), rnd(2, 3, 4)
    np.testing.assert_allclose(L.Subtract()([a, b]), a - b, rtol=1e-6)
    np.testing.assert_allclose(L.Maximum()([a, b, c]), np.maximum(np.maximum(a, b), c))
    np.testing.assert_allclose(L.Minimum()([a, b]), np.minimum(a, b))
    np.testing.assert_allclose(L.Average()([a, b, c]), (a + b + c) / 3, rtol=1e-5)
    with pytest.raises(ConfigError, match="exactly 2"):
        L.Subtract()([a, b, c])


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


KERAS_ACTIVATIONS = {
    "gelu": lambda x: 0.5 * x * (1 + __import__("scipy.special").special.erf(x / np.sqrt(2))),
    "silu": lambda x: x * _sigmoid(x), "swish": lambda x: x * _sigmoid(x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)),
    "celu": lambda x: np.maximum(x, 0) + np.minimum(0, np.expm1(x)),
    "softplus": lambda x: np.log1p(np.exp(x)), "softsign": lambda x: x / (1 + np.abs(x)),
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "hard_sigmoid": lambda x: np.clip(x + 3, 0, 6) / 6,
    "hard_silu": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "hard_swish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "relu6": lambda x: np.clip(x, 0, 6), "relu": lambda x: np.maximum(x, 0),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "log_softmax": lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True)),
    "exponential": np.exp, "tanh": np.tanh, "sigmoid": _sigmoid, "linear": lambda x: x,
    "hard_tanh": lambda x: np.clip(x, -1, 1),
    "soft_shrink": lambda x: np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0)),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0),
    "log_sigmoid": lambda x: np.log(_sigmoid(x)),
    "softmax": lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True),
}


@pytest.mark.parametrize("name", sorted(KERAS_ACTIVATIONS))
def test_keras_activation_names(name):
    x = rnd(3, 7) * 3
    np.testing.assert_allclose(L.Activation(name)(x), KERAS_ACTIVATIONS[name](x), rtol=2e-5,
                               atol=1e-6)


def test_errors_are_typed_and_name_the_layer():
    with pytest.raises(ConfigError, match="Conv2DTranspose layer .*output_padding"):
        L.Conv2DTranspose(2, 3, strides=2, output_padding=2)
    with pytest.raises(UnsupportedError, match="rms_scaling"):
        L.LayerNormalization(rms_scaling=True)
    x = cnnc.Input((4, 4, 6))
    with pytest.raises(ShapeError, match="GroupNormalization layer .*groups=4"):
        L.GroupNormalization(groups=4)(x)
    with pytest.raises(UnsupportedError, match="last"):
        L.GroupNormalization(groups=2, axis=1)(x)
    with pytest.raises(ShapeError, match="Conv2DTranspose layer .*rank-4"):
        L.Conv2DTranspose(2, 3)(cnnc.Input((4, 6)))


@pytest.mark.numba
def test_all_layers_in_one_model_compile_for_cpu():
    x = cnnc.Input((8, 8, 3))
    y = L.Conv2DTranspose(6, 3, strides=2, padding="same", activation="gelu")(x)
    y = L.SeparableConv2D(8, 3, strides=2, padding="same", activation="silu")(y)
    y = L.LayerNormalization()(y)
    z = L.GroupNormalization(groups=4)(y)
    z = L.PReLU()(z)
    z = L.ELU()(z)
    y = L.Average()([L.Subtract()([y, z]), L.Maximum()([y, z]), L.Minimum()([y, z])])
    y = L.Rescaling(0.5, offset=0.1)(y)
    y = L.Activation("mish")(y)
    m = cnnc.Model(x, y)
    m.set_weights([w + rng.standard_normal(w.shape) * 0.3 for w in m.get_weights()])
    compiled = cnnc.compile(m, target="cpu")
    xs = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    ref = run_reference(m.to_graph(), xs)
    err = np.abs(compiled(xs) - ref).max() / np.abs(ref).max()
    assert err < 1e-5
