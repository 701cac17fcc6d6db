"""Shared hypothesis strategies for shapes, window configurations and random arrays.

Every strategy here produces a configuration that cnnc must accept; the window arithmetic used to
filter them is written out independently of ``cnnc.ops.padding`` so tests can use it as an
oracle. ``tests/conftest.py`` puts ``tests/`` on ``sys.path``, so any test imports it by name::

    from strategies import conv_configs, pool_configs, rng_arrays
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

SYMBOL = "N"


# ---- independent window arithmetic (oracle) ----------------------------------------------------
def eff_kernel(k: int, d: int) -> int:
    """Span of a dilated kernel: the lecture's ``f`` for a kernel of ``k`` taps spaced ``d``."""
    return (k - 1) * d + 1


def tf_same_pads(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME rule: output ceil(n/s), odd total padding puts the extra cell after."""
    out = -(-n // s)
    total = max((out - 1) * s + eff_kernel(k, d) - n, 0)
    return total // 2, total - total // 2


def explicit_pads(padding, n_hw, k_hw, s_hw, d_hw) -> tuple[tuple[int, int], tuple[int, int]]:
    """Any padding attribute form -> ((top, bottom), (left, right))."""
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        return tuple(tf_same_pads(n, k, s, d) for n, k, s, d in zip(n_hw, k_hw, s_hw, d_hw))
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    return tuple(tuple(p) for p in padding)


def window_starts(n: int, k: int, s: int, d: int, before: int, after: int,
                  ceil_mode: bool = False) -> list[int]:
    """Start offsets (in padded coordinates) of every window, by enumeration.

    Floor mode keeps the windows that fit in the padded input; ceil mode adds the partial
    window after the last full one, unless it would start in the right padding."""
    length, span = n + before + after, eff_kernel(k, d)
    starts = [p for p in range(0, length, s) if p + span <= length]
    if ceil_mode and starts and starts[-1] + span < length:
        nxt = starts[-1] + s
        if nxt < n + before:
            starts.append(nxt)
    return starts


def conv_loops(x, w, b, strides, pads, dilation, groups):
    """Convolution by its definition, one multiply-add at a time (7 nested loops): NHWC
    ``x``, HWIO ``w``, ``b`` a bias or None, ``pads`` ((top, bottom), (left, right))."""
    n, h, wd, cin = x.shape
    kh, kw, cig, cout = w.shape
    (pt, pb), (pl, pr) = pads
    (sh, sw), (dh, dw) = strides, dilation
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    cog = cout // groups
    y = np.zeros((n, oh, ow, cout))
    for b_ in range(n):
        for oy in range(oh):
            for ox in range(ow):
                for co in range(cout):
                    g = co // cog
                    acc = 0.0 if b is None else b[co]
                    for i in range(kh):
                        for j in range(kw):
                            for ci in range(cig):
                                iy, ix = oy * sh + i * dh - pt, ox * sw + j * dw - pl
                                if 0 <= iy < h and 0 <= ix < wd:
                                    acc += x[b_, iy, ix, g * cig + ci] * w[i, j, ci, co]
                    y[b_, oy, ox, co] = acc
    return y


def has_real_cell_everywhere(n, k, s, d, before, after, ceil_mode=False) -> bool:
    """Whether every window holds at least one cell of the unpadded input."""
    return all(any(before <= p + t * d < before + n for t in range(k))
               for p in window_starts(n, k, s, d, before, after, ceil_mode))


# ---- arrays ------------------------------------------------------------------------------------
def rng_array(seed: int, shape, scale: float = 1.0) -> np.ndarray:
    """A float64 standard-normal array (never all zeros or ones)."""
    return np.random.default_rng(seed).standard_normal(shape) * scale


seeds = st.integers(0, 2**32 - 1)


# ---- strategies --------------------------------------------------------------------------------
def _padding(max_pad: int = 2):
    pair = st.tuples(st.integers(0, max_pad), st.integers(0, max_pad))
    return st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, max_pad),
                     st.tuples(pair, pair))


def _min_side(padding, axis: int, k: int, d: int) -> int:
    """The smallest input side whose padded extent holds one window."""
    if padding in ("valid", "same"):
        return 1 if padding == "same" else eff_kernel(k, d)
    b, a = (padding, padding) if isinstance(padding, int) else padding[axis]
    return max(1, eff_kernel(k, d) - b - a)


@st.composite
def conv_configs(draw, max_hw: int = 7, max_k: int = 3, max_groups: int = 3,
                 max_cpg: int = 3, max_batch: int = 2, max_stride: int = 3,
                 max_dilation: int = 2) -> dict:
    """A valid conv2d: ``dict(x_shape, w_shape, strides, padding, dilation, groups, pads,
    out_shape)`` with NHWC input, HWIO kernel ``(kh, kw, cin/groups, cout)``."""
    groups = draw(st.integers(1, max_groups))
    cin = groups * draw(st.integers(1, max_cpg))
    cout = groups * draw(st.integers(1, max_cpg))
    kh, kw = draw(st.integers(1, max_k)), draw(st.integers(1, max_k))
    strides = (draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride)))
    dilation = (draw(st.integers(1, max_dilation)), draw(st.integers(1, max_dilation)))
    padding = draw(_padding())
    h, w = (draw(st.integers(_min_side(padding, i, k, d), max(max_hw, eff_kernel(k, d))))
            for i, (k, d) in enumerate(zip((kh, kw), dilation)))
    n = draw(st.integers(1, max_batch))
    pads = explicit_pads(padding, (h, w), (kh, kw), strides, dilation)
    out = tuple(len(window_starts(size, k, s, d, b, a))
                for size, k, s, d, (b, a) in zip((h, w), (kh, kw), strides, dilation, pads))
    return dict(x_shape=(n, h, w, cin), w_shape=(kh, kw, cin // groups, cout), strides=strides,
                padding=padding, dilation=dilation, groups=groups, pads=pads,
                out_shape=(n, *out, cout))


@st.composite
def pool_configs(draw, max_hw: int = 7, max_k: int = 3, max_batch: int = 2,
                 max_channels: int = 3, dilation: bool = True) -> dict:
    """A valid max/avg pooling configuration in which every window holds a real cell:
    ``dict(x_shape, pool_size, strides, padding, dilation, ceil_mode, count_include_pad,
    pads, out_shape)``."""
    k = (draw(st.integers(1, max_k)), draw(st.integers(1, max_k)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    padding = draw(_padding())
    ceil_mode = draw(st.booleans())
    h, w = (draw(st.integers(_min_side(padding, i, kk, d), max(max_hw, eff_kernel(kk, d))))
            for i, (kk, d) in enumerate(zip(k, dil)))
    x_shape = (draw(st.integers(1, max_batch)), h, w, draw(st.integers(1, max_channels)))
    pads = explicit_pads(padding, (h, w), k, strides, dil)
    assume(all(has_real_cell_everywhere(size, kk, s, d, b, a, ceil_mode)
               for size, kk, s, d, (b, a) in zip((h, w), k, strides, dil, pads)))
    out = tuple(len(window_starts(size, kk, s, d, b, a, ceil_mode))
                for size, kk, s, d, (b, a) in zip((h, w), k, strides, dil, pads))
    return dict(x_shape=x_shape, pool_size=k, strides=strides, padding=padding, dilation=dil,
                ceil_mode=ceil_mode, count_include_pad=draw(st.booleans()), pads=pads,
                out_shape=(x_shape[0], *out, x_shape[3]))


def pool_attrs(cfg: dict, op: str) -> dict:
    """The attributes of ``op`` (max_pool2d / avg_pool2d) for a :func:`pool_configs` draw."""
    keys = ["pool_size", "strides", "padding", "dilation", "ceil_mode"]
    if op == "avg_pool2d":
        keys.append("count_include_pad")
    return {k: cfg[k] for k in keys}


def shapes(min_rank: int = 1, max_rank: int = 4, max_side: int = 5):
    """A static shape with dims >= 1."""
    return st.lists(st.integers(1, max_side), min_size=min_rank, max_size=max_rank).map(tuple)


# ---- single-op graphs ---------------------------------------------------------------------------
def op_graph(op: str, shapes, attrs=None, name: str = "g"):
    """``op(in0, in1, ...) {attrs}`` with one graph input per operand; returns the graph."""
    from cnnc.ir import Graph
    g = Graph(name)
    ins = [g.add_input(s, name=f"in{i}") for i, s in enumerate(shapes)]
    g.set_outputs(g.add(op, ins, attrs or {}))
    return g


def run_op(op: str, arrays, attrs=None, dtype=np.float64) -> np.ndarray:
    """Evaluate one op through a graph and the reference interpreter in ``dtype``."""
    from cnnc.backends.reference import evaluate
    g = op_graph(op, [a.shape for a in arrays], attrs)
    return evaluate(g, [np.asarray(a) for a in arrays], dtype)[0]
