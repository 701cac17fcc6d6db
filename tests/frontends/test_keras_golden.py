"""cnnc against real Keras 3 (torch backend, float64): fixtures from tests/data.

The same builder functions (tests/data/golden_specs.py) construct the Keras model and the cnnc
model; weights travel by layer name through ``set_weights``. cnnc's float64 reference must
match Keras to 1e-5 relative.

Keras 3's torch backend pads asymmetric SAME pooling windows by *replicating* the edge
(``_apply_same_padding`` with ``mode="replicate"``), which changes average pooling wherever a
window holds more than one real cell plus padding; TF (and cnnc) average the real cells only.
``avg_pool_asymmetric`` is therefore checked against a hand-written TF formula instead.
"""

import importlib.util
import pathlib

import numpy as np
import pytest

import cnnc
from cnnc.backends.reference import run_reference

DATA = pathlib.Path(__file__).parents[1] / "data"
RTOL = 1e-5


def _specs():
    spec = importlib.util.spec_from_file_location("golden_specs", DATA / "golden_specs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.SPECS


SPECS = _specs()


def load(name):
    with np.load(DATA / f"keras_{name}.npz") as f:
        data = dict(f)
    weights = {}
    for key in sorted(k for k in data if k.startswith("w/")):
        _, layer, i = key.split("/")
        weights.setdefault(layer, {})[int(i)] = data[key]
    ins = [data[f"in/{j}"] for j in range(sum(k.startswith("in/") for k in data))]
    outs = [data[f"out/{j}"] for j in range(sum(k.startswith("out/") for k in data))]
    return {l: [w[i] for i in sorted(w)] for l, w in weights.items()}, ins, outs


def build_with_keras_weights(name):
    model = SPECS[name](cnnc)
    weights, ins, outs = load(name)
    for layer_name, ws in weights.items():
        model.get_layer(layer_name).set_weights(ws)
    return model, ins, outs


def assert_close(got, want):
    assert got.shape == want.shape
    scale = max(np.abs(want).max(), 1e-3)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale)


@pytest.mark.parametrize("name", ["conv_same", "depthwise", "branches", "pool_same"])
def test_matches_keras(name):
    model, ins, outs = build_with_keras_weights(name)
    got = run_reference(model.to_graph(), *ins)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(outs)
    for g, w in zip(got, outs):
        assert_close(g, w)


def test_fixture_weights_are_not_trivial():
    weights, ins, _ = load("conv_same")
    mean, var = weights["bn"][2], weights["bn"][3]
    assert np.abs(mean).max() > 0.1 and np.abs(var - 1).max() > 0.1
    assert np.std(ins[0]) > 0.5


def tf_avg_pool_same(x, k, s):
    """TF's SAME average pooling, written out: the mean of the real cells of each window."""
    n, h, w, c = x.shape
    oh, ow = -(-h // s), -(-w // s)
    pt = max((oh - 1) * s + k - h, 0) // 2
    pl = max((ow - 1) * s + k - w, 0) // 2
    y = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s - pt, j * s - pl
            win = x[:, max(r0, 0):min(r0 + k, h), max(c0, 0):min(c0 + k, w), :]
            y[:, i, j, :] = win.mean(axis=(1, 2))
    return y


def test_avg_pool_asymmetric_same_follows_tf_not_keras_torch():
    model, ins, outs = build_with_keras_weights("avg_pool_asymmetric")
    got = run_reference(model.to_graph(), *ins)
    assert_close(got, tf_avg_pool_same(ins[0], 3, 2))
    # Keras-torch agrees away from the padded bottom/right edge and differs on it
    assert_close(got[:, :-1, :-1], outs[0][:, :-1, :-1])
    assert np.abs(got[:, -1] - outs[0][:, -1]).max() > 1e-3
