"""cnnc.nn eager ops against explicit-loop formulations of TF's semantics (float64)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnc
from cnnc import ConfigError, ShapeError
from strategies import conv_loops


def tf_pads(n, k, s, d, padding):
    """(before, after, out) along one axis, TF rules written out."""
    ke = (k - 1) * d + 1
    if padding == "VALID":
        return 0, 0, (n - ke) // s + 1
    if padding == "SAME":
        out = -(-n // s)
        total = max((out - 1) * s + ke - n, 0)
        return total // 2, total - total // 2, out
    a, b = padding
    return a, b, (n + a + b - ke) // s + 1


def loop_pool(x, k, s, pads, mode):
    n, h, wd, c = x.shape
    (pt, _, oh), (pl, _, ow) = pads
    y = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s[0] - pt, j * s[1] - pl
            win = x[:, max(r0, 0):min(r0 + k[0], h), max(c0, 0):min(c0 + k[1], wd), :]
            y[:, i, j] = win.max(axis=(1, 2)) if mode == "max" else win.mean(axis=(1, 2))
    return y


@settings(deadline=None, max_examples=40)
@given(st.data())
def test_conv2d_matches_loops(data):
    h, w = data.draw(st.integers(3, 9)), data.draw(st.integers(3, 9))
    groups = data.draw(st.sampled_from([1, 1, 2]))
    cin, cout = 2 * groups, data.draw(st.sampled_from([2, 4]))
    kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    s = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    d = (1, 1) if max(s) > 1 else (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    padding = data.draw(st.sampled_from(["VALID", "SAME", "same", "explicit"]))
    if padding == "explicit":
        ph, pw = (data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))), (1, 0)
        arg, axes = [[0, 0], list(ph), list(pw), [0, 0]], (ph, pw)
    else:
        arg, axes = padding, (padding.upper(), padding.upper())
    pads = [tf_pads(n, k, st_, dd, p) for n, k, st_, dd, p in zip((h, w), (kh, kw), s, d, axes)]
    if min(p[2] for p in pads) < 1:
        return
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.normal(size=(2, h, w, cin))
    f = rng.normal(size=(kh, kw, cin // groups, cout))
    strides = data.draw(st.sampled_from([list(s), [1, *s, 1]])) if s[0] != s[1] else \
        data.draw(st.sampled_from([s[0], [s[0]], [1, *s, 1]]))
    y = cnnc.nn.conv2d(x, f, strides=strides, padding=arg, dilations=list(d))
    assert y.dtype == np.float64
    want = conv_loops(x, f, None, s, [p[:2] for p in pads], d, groups)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10)


@settings(deadline=None, max_examples=40)
@given(st.integers(2, 9), st.integers(2, 9), st.integers(1, 3), st.integers(1, 3),
       st.sampled_from(["VALID", "SAME", "Same"]), st.sampled_from(["max", "avg"]),
       st.integers(0, 2**16))
def test_pools_match_loops(h, w, k, s, padding, mode, seed):
    pads = [tf_pads(n, k, s, 1, padding.upper()) for n in (h, w)]
    if min(p[2] for p in pads) < 1:
        return
    x = np.random.default_rng(seed).normal(size=(2, h, w, 3))
    fn = cnnc.nn.max_pool2d if mode == "max" else cnnc.nn.avg_pool2d
    y = fn(x, ksize=[1, k, k, 1], strides=s, padding=padding)
    np.testing.assert_allclose(y, loop_pool(x, (k, k), (s, s), pads, mode), rtol=1e-12)


def test_max_pool_explicit_padding_never_picks_the_pad():
    x = -np.random.default_rng(1).uniform(1, 2, size=(1, 3, 3, 1))
    y = cnnc.nn.max_pool2d(x, 2, 1, [[0, 0], [1, 1], [1, 1], [0, 0]])
    assert y.shape == (1, 4, 4, 1) and (y < 0).all()


def test_bias_add_and_relu():
    rng = np.random.default_rng(2)
    x, b = rng.normal(size=(2, 3, 3, 4)), rng.normal(size=4)
    np.testing.assert_array_equal(cnnc.nn.bias_add(x, b), x + b)
    np.testing.assert_array_equal(cnnc.nn.relu(x), np.where(x > 0, x, 0))
    y32 = cnnc.nn.relu(x.astype(np.float32))
    assert y32.dtype == np.float32


def test_nn_errors_quote_the_argument():
    x, f = np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 4))
    with pytest.raises(ConfigError, match=r"conv2d.*padding.*'FULL'"):
        cnnc.nn.conv2d(x, f, 1, "FULL")
    with pytest.raises(ConfigError, match=r"strides.*\[2, 2, 2\]"):
        cnnc.nn.conv2d(x, f, [2, 2, 2], "VALID")
    with pytest.raises(ConfigError, match=r"strides.*\[2, 1, 1, 1\]"):
        cnnc.nn.conv2d(x, f, [2, 1, 1, 1], "VALID")
    with pytest.raises(ShapeError, match=r"input must be 4-D.*\(5, 5, 2\)"):
        cnnc.nn.conv2d(x[0], f, 1, "VALID")
    with pytest.raises(ShapeError, match=r"3 channels.*2 input channels"):
        cnnc.nn.conv2d(np.ones((1, 5, 5, 3)), f, 1, "VALID")
    with pytest.raises(ShapeError, match=r"window 7"):
        cnnc.nn.conv2d(x, np.ones((7, 7, 2, 1)), 1, "VALID")
    with pytest.raises(ConfigError, match=r"avg_pool2d.*'VALID' or 'SAME'"):
        cnnc.nn.avg_pool2d(x, 2, 2, [[0, 0], [1, 1], [1, 1], [0, 0]])
    with pytest.raises(ConfigError, match=r"ksize.*0"):
        cnnc.nn.max_pool2d(x, 0, 1, "VALID")
