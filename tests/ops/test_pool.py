"""Pooling references against explicit window loops, the padding rules and the lecture's
shift invariance of max pooling."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnc.errors import ShapeError
from strategies import (op_graph, pool_attrs, pool_configs, rng_array, run_op, seeds,
                        window_starts)

TOL = dict(rtol=1e-12, atol=1e-12)


def pool_loops(x, cfg, op):
    """Each window enumerated tap by tap: max/mean over the real cells it covers; with
    count_include_pad the divisor counts every tap inside the padded input too."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (dh, dw) = cfg["pool_size"], cfg["strides"], cfg["dilation"]
    (pt, pb), (pl, pr) = cfg["pads"]
    ys = window_starts(h, kh, sh, dh, pt, pb, cfg["ceil_mode"])
    xs = window_starts(w, kw, sw, dw, pl, pr, cfg["ceil_mode"])
    out = np.empty((n, len(ys), len(xs), c))
    for a, py in enumerate(ys):
        for b, px in enumerate(xs):
            real, in_padded = [], 0
            for i in range(kh):
                for j in range(kw):
                    iy, ix = py + i * dh, px + j * dw  # padded coordinates
                    in_padded += iy < h + pt + pb and ix < w + pl + pr
                    if pt <= iy < pt + h and pl <= ix < pl + w:
                        real.append(x[:, iy - pt, ix - pl, :])
            assert real, "the strategy only makes windows with a real cell"
            if op == "max_pool2d":
                out[:, a, b] = np.max(real, axis=0)
            else:
                div = in_padded if cfg["count_include_pad"] else len(real)
                out[:, a, b] = np.sum(real, axis=0) / div
    return out


@settings(deadline=None, max_examples=150)
@given(pool_configs(), seeds, st.sampled_from(["max_pool2d", "avg_pool2d"]))
def test_pool_matches_window_loops(cfg, seed, op):
    x = rng_array(seed, cfg["x_shape"])
    y = run_op(op, [x], pool_attrs(cfg, op))
    assert y.shape == cfg["out_shape"]
    np.testing.assert_allclose(y, pool_loops(x, cfg, op), **TOL)


@settings(deadline=None, max_examples=30)
@given(pool_configs(), seeds)
def test_max_pool_never_takes_a_padded_cell(cfg, seed):
    x = -10.0 - np.abs(rng_array(seed, cfg["x_shape"]))  # all below the zero a pad would hold
    y = run_op("max_pool2d", [x], pool_attrs(cfg, "max_pool2d"))
    assert (y <= -10).all()
    assert np.isin(y, x).all()


def test_tf_same_avg_excludes_padding():
    """3x3 SAME, stride 1 on a 3x3 input of ones*v: every mean is v (pads not counted);
    with count_include_pad the corner divides by 9 and sees 4 real cells."""
    x = np.full((1, 3, 3, 1), 2.5)
    y = run_op("avg_pool2d", [x], {"pool_size": 3, "strides": 1, "padding": "same"})
    np.testing.assert_allclose(y, 2.5, **TOL)
    y = run_op("avg_pool2d", [x], {"pool_size": 3, "strides": 1, "padding": "same",
                                   "count_include_pad": True})
    assert y[0, 0, 0, 0] == pytest.approx(2.5 * 4 / 9)
    assert y[0, 1, 1, 0] == pytest.approx(2.5)
    assert y[0, 0, 1, 0] == pytest.approx(2.5 * 6 / 9)


def test_ceil_mode_drops_a_window_starting_in_the_right_padding():
    """w=5, k=2, s=3, pads 1/1: floor gives starts 0,3; ceil would add start 6, which is in
    the right padding (the input ends at 6), so it is dropped -> 2 outputs either way."""
    for ceil in (False, True):
        g = op_graph("max_pool2d", [(1, 5, 5, 1)], {"pool_size": 2, "strides": 3, "padding": 1,
                                                    "ceil_mode": ceil})
        assert g.outputs[0].type.shape == (1, 2, 2, 1)
    # w=6, k=2, s=3, pads 1/1: the extra start 6 holds x[5] -> kept in ceil mode
    g = op_graph("max_pool2d", [(1, 6, 6, 1)], {"pool_size": 2, "strides": 3, "padding": 1,
                                                "ceil_mode": True})
    assert g.outputs[0].type.shape == (1, 3, 3, 1)
    x = rng_array(5, (1, 6, 6, 1))
    y = run_op("max_pool2d", [x], {"pool_size": 2, "strides": 3, "padding": 1, "ceil_mode": True})
    assert y[0, 2, 2, 0] == x[0, 5, 5, 0]  # the partial window's only real cell


def test_ceil_mode_avg_count_include_pad_clips_to_padded_input():
    """w=4, k=3, s=2, pads 1/1, ceil: starts 0, 2, 4 in a padded extent of 6; the last window
    covers padded cells 4, 5 (6 is past it): divisor 2 along that axis, not 3."""
    x = rng_array(6, (1, 4, 4, 1))
    attrs = {"pool_size": 3, "strides": 2, "padding": 1, "ceil_mode": True,
             "count_include_pad": True}
    y = run_op("avg_pool2d", [x], attrs)
    assert y.shape == (1, 3, 3, 1)
    xp = np.pad(x[0, :, :, 0], 1)
    assert y[0, 2, 2, 0] == pytest.approx(xp[4:6, 4:6].sum() / 4)
    assert y[0, 0, 2, 0] == pytest.approx(xp[0:3, 4:6].sum() / 6)
    y = run_op("avg_pool2d", [x], {**attrs, "count_include_pad": False})
    assert y[0, 2, 2, 0] == pytest.approx(x[0, 3, 3, 0])


@pytest.mark.parametrize("attrs", [
    {"pool_size": 2, "strides": 1, "padding": 2},                         # pad >= kernel
    {"pool_size": 2, "strides": 1, "padding": 1, "dilation": 3},         # taps skip the input
])
def test_all_padding_window_is_rejected(attrs):
    shape = (1, 2, 2, 1)
    for op in ("max_pool2d", "avg_pool2d"):
        with pytest.raises(ShapeError, match="only padding"):
            op_graph(op, [shape], attrs)


def test_global_pools():
    x = rng_array(7, (3, 4, 5, 2))
    np.testing.assert_allclose(run_op("global_avg_pool", [x]),
                               [[x[b, :, :, c].mean() for c in range(2)] for b in range(3)], **TOL)
    y = run_op("global_max_pool", [x], {"keepdims": True})
    assert y.shape == (3, 1, 1, 2)
    np.testing.assert_array_equal(y[:, 0, 0], x.reshape(3, -1, 2).max(axis=1))


@settings(deadline=None, max_examples=30)
@given(seeds, st.integers(2, 4), st.data())
def test_max_pool_invariant_to_a_shift_within_the_window(seed, k, data):
    """Each k x k window's maximum sits strictly inside it, everything else is smaller; moving
    that maximum by (dy, dx) without leaving its window leaves the pooled output unchanged."""
    rng = np.random.default_rng(seed)
    cells = 3
    x = rng.uniform(-1, 0, (1, cells * k, cells * k, 1))
    moved = x.copy()
    for a in range(cells):
        for b in range(cells):
            py, px = rng.integers(0, k, 2)
            peak = rng.uniform(1, 2)
            x[0, a * k + py, b * k + px, 0] = peak
            ny = data.draw(st.integers(0, k - 1))
            nx_ = data.draw(st.integers(0, k - 1))
            moved[0, a * k + ny, b * k + nx_, 0] = peak
    attrs = {"pool_size": k, "strides": k}
    y, ym = run_op("max_pool2d", [x], attrs), run_op("max_pool2d", [moved], attrs)
    np.testing.assert_array_equal(y, ym)
    assert (y >= 1).all() and y.shape == (1, cells, cells, 1)


def test_ceil_mode_overhang_is_not_counted_with_count_include_pad():
    """ONNX reference / PyTorch: [1..5], k=2, s=2, no pads, ceil -> [1.5, 3.5, 5.0]; and a 6x6
    input, k=3, s=2, pads 1, ceil: the 4th window overhangs -> divisor 6 on edges, 4 in the
    corner (the overhang past the padded input never counts)."""
    x = np.arange(1.0, 6.0).reshape(1, 1, 5, 1)
    y = run_op("avg_pool2d", [x], {"pool_size": (1, 2), "strides": (1, 2), "ceil_mode": True,
                                   "count_include_pad": True})
    np.testing.assert_allclose(y.ravel(), [1.5, 3.5, 5.0], **TOL)
    x = rng_array(12, (1, 6, 6, 1))
    y = run_op("avg_pool2d", [x], {"pool_size": 3, "strides": 2, "padding": 1, "ceil_mode": True,
                                   "count_include_pad": True})[0, :, :, 0]
    assert y.shape == (4, 4)
    xp = np.pad(x[0, :, :, 0], 1)  # 8x8: the last window starts at 6 and covers 6, 7 only
    assert y[3, 3] == pytest.approx(xp[6:8, 6:8].sum() / 4)
    assert y[1, 3] == pytest.approx(xp[2:5, 6:8].sum() / 6)
    assert y[1, 1] == pytest.approx(xp[2:5, 2:5].sum() / 9)
