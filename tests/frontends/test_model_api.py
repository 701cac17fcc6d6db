"""Sequential and functional models: graph form, weights, naming, summary, compile."""

import numpy as np
import pytest

import cnnc
from cnnc import layers as L
from cnnc.backends.reference import run_reference

rng = np.random.default_rng(7)


def stack():
    return [L.Conv2D(8, 3, strides=2, padding="same", activation="relu"),
            L.BatchNormalization(epsilon=1e-2),
            L.DepthwiseConv2D(3, padding="same", depth_multiplier=2),
            L.MaxPooling2D(2, padding="same"), L.Dropout(0.25), L.Flatten(),
            L.Dense(10, activation="softmax")]


def test_sequential_and_functional_build_the_same_graph():
    seq = cnnc.Sequential([cnnc.Input((9, 11, 3))] + stack(), name="net")
    x = cnnc.Input((9, 11, 3))
    y = x
    for layer in stack():
        y = layer(y)
    fun = cnnc.Model(x, y, name="net")
    fun.set_weights(seq.get_weights())
    assert str(seq.to_graph()) == str(fun.to_graph())
    assert [l.name for l in seq.layers] == [l.name for l in fun.layers[1:]]
    xs = rng.normal(size=(2, 9, 11, 3))
    np.testing.assert_array_equal(run_reference(seq.to_graph(), xs),
                                  run_reference(fun.to_graph(), xs))


def test_input_shape_on_first_layer_equals_explicit_input():
    a = cnnc.Sequential([L.Conv2D(4, 3, input_shape=(8, 8, 2)), L.ReLU()], name="m")
    b = cnnc.Sequential([cnnc.Input((8, 8, 2)), L.Conv2D(4, 3), L.ReLU()], name="m")
    b.set_weights(a.get_weights())
    assert str(a.to_graph()) == str(b.to_graph())


def test_to_graph_is_fresh_named_and_batch_symbolic():
    m = cnnc.Sequential([cnnc.Input((6, 6, 3)), L.Conv2D(4, 3), L.GlobalAveragePooling2D()])
    g1, g2 = m.to_graph(), m.to_graph()
    assert g1 is not g2 and str(g1) == str(g2)
    assert g1.inputs[0].name == "x" and g1.inputs[0].type.shape == ("N", 6, 6, 3)
    assert g1.outputs and g1.outputs[0].type.shape == ("N", 4)
    g1.remove(g1.ops[-1])  # mutating one graph leaves the next one whole
    cnnc.verify(m.to_graph())
    layers = {n.layer for n in m.to_graph().nodes}
    assert layers == {"conv2d", "global_average_pooling2d"}


def test_weights_round_trip_and_change_the_output():
    m = cnnc.Sequential([cnnc.Input((7, 7, 3))] + stack())
    ws = m.get_weights()
    assert [w.shape for w in ws] == [(3, 3, 3, 8), (8,), (8,), (8,), (8,), (8,), (3, 3, 8, 2),
                                     (16,), (64, 10), (10,)]
    new = [rng.normal(scale=0.2, size=w.shape) for w in ws]
    new[5] = np.abs(new[5]) + 0.5  # a positive moving variance
    m.set_weights(new)
    for a, b in zip(m.get_weights(), new):
        np.testing.assert_array_equal(a, b)
    assert all(a.dtype == np.float64 for a in m.get_weights())
    x = rng.normal(size=(2, 7, 7, 3))
    y1 = run_reference(m.to_graph(), x)
    m.set_weights([w * 1.5 for w in new])
    assert not np.allclose(y1, run_reference(m.to_graph(), x))


def test_default_weights_keras_like_and_seeded():
    conv = L.Conv2D(16, 3, seed=3)
    m = cnnc.Sequential([cnnc.Input((5, 5, 4)), conv, L.BatchNormalization()])
    k, b = conv.get_weights()
    limit = np.sqrt(6 / (9 * 4 + 9 * 16))
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.9 * limit and not b.any()
    g, beta, mean, var = m.layers[1].get_weights()
    assert (g == 1).all() and (beta == 0).all() and (mean == 0).all() and (var == 1).all()
    again = L.Conv2D(16, 3, seed=3)
    again(cnnc.Input((5, 5, 4)))
    np.testing.assert_array_equal(again.get_weights()[0], k)
    other = L.Conv2D(16, 3, seed=4)
    other(cnnc.Input((5, 5, 4)))
    assert not np.array_equal(other.get_weights()[0], k)


def test_auto_names_are_numbered_per_model():
    for _ in range(2):
        m = cnnc.Sequential([cnnc.Input((8, 8, 1)), L.Conv2D(2, 3), L.Conv2D(2, 3),
                             L.ReLU(), L.Conv2D(2, 3, name="last")])
        assert [l.name for l in m.layers] == ["conv2d", "conv2d_1", "re_lu", "last"]
    x = cnnc.Input((8, 8, 1))
    y = L.Add()([L.Conv2D(2, 1)(x), L.Conv2D(2, 1)(x)])
    m = cnnc.Model(x, y)
    assert [l.name for l in m.layers] == ["input_layer", "conv2d", "conv2d_1", "add"]


def test_multi_input_multi_output_model():
    a, b = cnnc.Input((6, 6, 2), name="left"), cnnc.Input((6, 6, 3))
    cat = L.Concatenate()([a, L.Conv2D(2, 1)(b)])
    m = cnnc.Model([a, b], [L.GlobalMaxPooling2D()(cat), L.Multiply()([a, a])])
    g = m.to_graph()
    assert [v.name for v in g.inputs] == ["left", "x"] and len(g.outputs) == 2
    xa, xb = rng.normal(size=(2, 6, 6, 2)), rng.normal(size=(2, 6, 6, 3))
    y1, y2 = cnnc.compile(m, target="numpy")(xa, xb)
    w = m.layers[2].get_weights()[0][0, 0]
    want = np.concatenate([xa, xb @ w], axis=-1).max(axis=(1, 2))
    np.testing.assert_allclose(y1, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y2, xa * xa, rtol=1e-6)


def test_summary_table():
    m = cnnc.Sequential([cnnc.Input((9, 9, 3)), L.Conv2D(8, 3, name="c"),
                         L.BatchNormalization(name="bn"), L.Flatten(), L.Dense(4)], name="demo")
    lines = []
    text = m.summary(print_fn=lines.append)
    assert lines == [text]
    assert 'Model: "demo"' in text
    assert "c (Conv2D)" in text and "(None, 7, 7, 8)" in text and "224" in text
    assert "bn (BatchNormalization)" in text and "32" in text
    assert "dense (Dense)" in text and "(None, 4)" in text and "1,572" in text
    total = 224 + 32 + 392 * 4 + 4
    assert m.count_params() == total
    assert f"Total params: {total:,}" in text
    assert f"Trainable params: {total - 16:,}" in text and "Non-trainable params: 16" in text


def test_eager_layer_call_uses_the_reference():
    conv = L.Conv2D(3, 2, strides=2, activation="relu")
    x = rng.normal(size=(2, 4, 4, 5))
    y = conv(x)
    k, b = conv.get_weights()
    want = np.maximum(np.einsum("nhiwjc,ijcd->nhwd", x.reshape(2, 2, 2, 2, 2, 5), k) + b, 0)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-9)


def test_compile_matches_reference_and_keras_semantics_of_bn():
    bn = L.BatchNormalization(epsilon=0.05, center=False)
    m = cnnc.Sequential([cnnc.Input((3, 3, 4)), bn])
    assert bn.weight_names == ["gamma", "moving_mean", "moving_variance"]
    g, mu, var = rng.normal(size=4), rng.normal(size=4), rng.uniform(0.5, 2, 4)
    m.set_weights([g, mu, var])
    x = rng.normal(size=(2, 3, 3, 4))
    want = g * (x - mu) / np.sqrt(var + 0.05)
    np.testing.assert_allclose(run_reference(m.to_graph(), x), want, rtol=1e-12)
    np.testing.assert_allclose(cnnc.compile(m, target="numpy")(x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer, fn", [
    (L.ReLU(), lambda x: np.maximum(x, 0)),
    (L.ReLU(max_value=6.0), lambda x: np.clip(x, 0, 6)),
    (L.ReLU(max_value=1.5), lambda x: np.clip(x, 0, 1.5)),
    (L.ReLU(max_value=2.0, negative_slope=0.1),
     lambda x: np.minimum(np.where(x > 0, x, .1 * x), 2)),
    (L.LeakyReLU(), lambda x: np.where(x > 0, x, 0.3 * x)),
    (L.Activation("leaky_relu"), lambda x: np.where(x > 0, x, 0.2 * x)),
    (L.Activation("relu6"), lambda x: np.clip(x, 0, 6)),
    (L.Activation("sigmoid"), lambda x: 1 / (1 + np.exp(-x))),
    (L.Activation("tanh"), np.tanh),
    (L.Activation("linear"), lambda x: x),
    (L.Activation("hard_sigmoid"), lambda x: np.clip(x + 3, 0, 6) / 6),
    (L.Activation("hard_swish"), lambda x: x * np.clip(x + 3, 0, 6) / 6),
    (L.Softmax(axis=1), lambda x: np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)),
    (L.Reshape((4, -1)), lambda x: x.reshape(len(x), 4, -1)),
    (L.ZeroPadding2D(((1, 2), (0, 3))), lambda x: np.pad(x, ((0, 0), (1, 2), (0, 3), (0, 0)))),
])
def test_elementwise_and_shape_layers(layer, fn):
    x = rng.normal(scale=4, size=(2, 4, 3, 2))
    np.testing.assert_allclose(layer(x), fn(x), rtol=1e-12, atol=1e-12)
