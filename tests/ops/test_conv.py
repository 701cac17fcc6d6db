"""conv2d and conv2d_fused references against independent formulations, and the lecture's
properties of convolution (translation equivariance, linearity)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnc.ops.fused import step
from strategies import conv_configs, conv_loops, rng_array, run_op, seeds

TOL = dict(rtol=1e-10, atol=1e-10)
SETTINGS = settings(deadline=None, max_examples=80)


def attrs_of(cfg):
    return {k: cfg[k] for k in ("strides", "padding", "dilation", "groups")}


def conv_im2col(x, w, strides, pads, dilation, groups):
    """im2col: each output pixel's receptive field as a row, times the reshaped kernel."""
    n, h, wd, cin = x.shape
    kh, kw, cig, cout = w.shape
    (sh, sw), (dh, dw) = strides, dilation
    xp = np.pad(x, ((0, 0), *pads, (0, 0)))
    oh = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[2] - (kw - 1) * dw - 1) // sw + 1
    iy = (np.arange(oh) * sh)[:, None] + (np.arange(kh) * dh)[None, :]       # (oh, kh)
    ix = (np.arange(ow) * sw)[:, None] + (np.arange(kw) * dw)[None, :]       # (ow, kw)
    cols = xp[:, iy[:, None, :, None], ix[None, :, None, :], :]            # n,oh,ow,kh,kw,cin
    cog = cout // groups
    outs = []
    for g in range(groups):
        a = cols[..., g * cig:(g + 1) * cig].reshape(n * oh * ow, kh * kw * cig)
        k = w[..., g * cog:(g + 1) * cog].reshape(kh * kw * cig, cog)
        outs.append((a @ k).reshape(n, oh, ow, cog))
    return np.concatenate(outs, axis=-1)


@SETTINGS
@given(conv_configs(max_hw=5, max_cpg=2), seeds, st.booleans())
def test_conv2d_matches_nested_loops(cfg, seed, with_bias):
    x = rng_array(seed, cfg["x_shape"])
    w = rng_array(seed + 1, cfg["w_shape"])
    b = rng_array(seed + 2, cfg["w_shape"][-1:]) if with_bias else None
    y = run_op("conv2d", [x, w] + ([b] if with_bias else []), attrs_of(cfg))
    assert y.shape == cfg["out_shape"]
    want = conv_loops(x, w, b, cfg["strides"], cfg["pads"], cfg["dilation"], cfg["groups"])
    np.testing.assert_allclose(y, want, **TOL)


@SETTINGS
@given(conv_configs(max_hw=12, max_k=4, max_groups=4, max_cpg=4, max_batch=3), seeds)
def test_conv2d_matches_im2col(cfg, seed):
    x, w = rng_array(seed, cfg["x_shape"]), rng_array(seed + 1, cfg["w_shape"])
    y = run_op("conv2d", [x, w], attrs_of(cfg))
    want = conv_im2col(x, w, cfg["strides"], cfg["pads"], cfg["dilation"], cfg["groups"])
    np.testing.assert_allclose(y, want, **TOL)


def test_depthwise_channel_order():
    """groups=cin with multiplier m: output channel c*m + k reads input channel c only."""
    x = rng_array(3, (2, 5, 5, 3))
    w = rng_array(4, (3, 3, 1, 6))
    y = run_op("conv2d", [x, w], {"groups": 3, "padding": "same"})
    for c in range(3):
        for k in range(2):
            one = run_op("conv2d", [x[..., c:c + 1], w[..., c * 2 + k:c * 2 + k + 1]],
                         {"padding": "same"})
            np.testing.assert_allclose(y[..., c * 2 + k], one[..., 0], **TOL)


EPILOGUES = [
    (), ("relu",), (("leaky_relu", 0.1),), (("clip", -0.5, 0.7),), ("sigmoid", "tanh"),
    ("scale_shift", "relu6"), ("add", "relu"), ("scale_shift", "add", "hard_swish"),
    ("hard_sigmoid",),
]


def _extras(epilogue, out_shape, seed):
    extras, c = [], out_shape[-1]
    for s in epilogue:
        name = s if isinstance(s, str) else s[0]
        if name == "scale_shift":
            extras += [rng_array(seed, (c,)), rng_array(seed + 1, (c,))]
        elif name == "add":
            extras.append(rng_array(seed + 2, out_shape))
    return extras


def _apply_by_hand(y, epilogue, extras):
    it = iter(extras)
    acts = {"relu": lambda v: np.maximum(v, 0), "relu6": lambda v: np.clip(v, 0, 6),
            "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh,
            "hard_sigmoid": lambda v: np.clip(0.2 * v + 0.5, 0, 1),
            "hard_swish": lambda v: v * np.clip(v + 3, 0, 6) / 6}
    for s in epilogue:
        name, *p = (s,) if isinstance(s, str) else s
        if name == "scale_shift":
            y = y * next(it) + next(it)
        elif name == "add":
            y = y + next(it)
        elif name == "leaky_relu":
            y = np.where(y > 0, y, p[0] * y)
        elif name == "clip":
            y = np.clip(y, p[0], p[1])
        else:
            y = acts[name](y)
    return y


@settings(deadline=None, max_examples=30)
@given(conv_configs(max_hw=6), seeds, st.sampled_from(EPILOGUES))
def test_conv2d_fused_is_conv_then_epilogue(cfg, seed, epilogue):
    x, w = rng_array(seed, cfg["x_shape"]), rng_array(seed + 1, cfg["w_shape"])
    b = rng_array(seed + 2, cfg["w_shape"][-1:])
    extras = _extras(epilogue, cfg["out_shape"], seed + 3)
    y = run_op("conv2d_fused", [x, w, b, *extras], {**attrs_of(cfg), "epilogue": epilogue})
    base = run_op("conv2d", [x, w, b], attrs_of(cfg))
    np.testing.assert_allclose(y, _apply_by_hand(base, epilogue, extras), **TOL)


@pytest.mark.parametrize("epilogue", EPILOGUES)
def test_dense_fused_is_dense_then_epilogue(epilogue):
    x, w, b = rng_array(1, (4, 6)), rng_array(2, (6, 5)), rng_array(3, (5,))
    extras = _extras(epilogue, (4, 5), 4)
    y = run_op("dense_fused", [x, w, b, *extras], {"epilogue": epilogue})
    np.testing.assert_allclose(y, _apply_by_hand(x @ w + b, epilogue, extras), **TOL)


def test_epilogue_step_validation():
    from cnnc.errors import ConfigError
    assert step("clip", 0, 6) == ("clip", 0.0, 6.0)
    assert step("leaky_relu") == ("leaky_relu", 0.2)  # defaults of the activation op
    assert step("hard_sigmoid", 0.25) == ("hard_sigmoid", 0.25, 0.5)
    with pytest.raises(ConfigError, match="clip"):
        step("clip", 0)
    with pytest.raises(ConfigError, match="no_such_step"):
        step("no_such_step")
    assert step("swish") == ("swish", 1.0)
    with pytest.raises(ConfigError, match="leaky_relu"):
        step("leaky_relu", 0.1, 0.2)


# ---- the lecture's properties --------------------------------------------------------------
@settings(deadline=None, max_examples=30)
@given(seeds, st.integers(1, 3), st.integers(1, 3), st.integers(-3, 3), st.integers(-3, 3),
       st.sampled_from(["valid", "same"]), st.integers(1, 2))
def test_translation_equivariance(seed, kh, kw, dy, dx, padding, dilation):
    """Shift the content inside a zero border by (dy, dx): a stride-1 output shifts the same."""
    rng = np.random.default_rng(seed)
    content = rng.standard_normal((2, 4, 4, 2))
    border = 3 + (max(kh, kw) - 1) * dilation
    x = np.zeros((2, 4 + 2 * border, 4 + 2 * border, 2))
    x[:, border:border + 4, border:border + 4] = content
    shifted = np.roll(x, (dy, dx), axis=(1, 2))  # content stays inside the zero border
    w = rng.standard_normal((kh, kw, 2, 3))
    attrs = {"padding": padding, "dilation": dilation}
    y, ys = run_op("conv2d", [x, w], attrs), run_op("conv2d", [shifted, w], attrs)
    np.testing.assert_allclose(np.roll(y, (dy, dx), axis=(1, 2)), ys, **TOL)
    assert np.abs(y).max() > 0


@SETTINGS
@given(conv_configs(max_hw=6), seeds, st.floats(-3, 3), st.floats(-3, 3))
def test_conv_is_linear(cfg, seed, a, c):
    x1, x2 = rng_array(seed, cfg["x_shape"]), rng_array(seed + 1, cfg["x_shape"])
    w = rng_array(seed + 2, cfg["w_shape"])
    attrs = attrs_of(cfg)
    lhs = run_op("conv2d", [a * x1 + c * x2, w], attrs)
    rhs = a * run_op("conv2d", [x1, w], attrs) + c * run_op("conv2d", [x2, w], attrs)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-9, atol=1e-9)
    # linear in the kernel too
    w2 = rng_array(seed + 3, cfg["w_shape"])
    np.testing.assert_allclose(run_op("conv2d", [x1, w + w2], attrs),
                               run_op("conv2d", [x1, w], attrs) + run_op("conv2d", [x1, w2], attrs),
                               rtol=1e-9, atol=1e-9)
