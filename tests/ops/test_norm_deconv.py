"""Normalisation, hardmax, Lp pooling and transposed conv: references against independent definitions (PyTorch where it has the
op), and the Numba CPU kernels against the float64 reference on random geometries
(hypothesis; fresh random inputs each example, float32 relative error well under 1e-4)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import cnnc
from cnnc.backends.reference import run_reference
from cnnc.errors import CnncError, ShapeError
from cnnc.ir import Graph
from cnnc.ops.registry import get_op

torch = pytest.importorskip("torch")


def _ev(op, arrays, **attrs):
    d = get_op(op)
    return d.evaluate(arrays, d.check_attrs(attrs, "test"))


def _rel(y, ref):
    return float(np.max(np.abs(np.asarray(y, np.float64) - ref)) / max(np.max(np.abs(ref)), 1e-6))


deconv_cfg = st.fixed_dictionaries({
    "h": st.integers(1, 5), "w": st.integers(1, 5), "g": st.sampled_from([1, 2]),
    "cig": st.integers(1, 3), "cog": st.integers(1, 3), "kh": st.integers(1, 4),
    "kw": st.integers(1, 4), "sh": st.integers(1, 3), "sw": st.integers(1, 3),
    "dh": st.integers(1, 2), "dw": st.integers(1, 2), "p": st.integers(0, 2),
    "op": st.integers(0, 2), "seed": st.integers(0, 2**31 - 1)})


def _deconv_case(c):
    rng = np.random.default_rng(c["seed"])
    p = min(c["p"], c["kh"] - 1, c["kw"] - 1)  # torch: padding <= dilation * (k - 1)
    op = min(c["op"], max(c["sh"], c["dh"]) - 1, max(c["sw"], c["dw"]) - 1)
    x = rng.standard_normal((2, c["g"] * c["cig"], c["h"], c["w"]))
    w = rng.standard_normal((c["g"] * c["cig"], c["cog"], c["kh"], c["kw"]))
    b = rng.standard_normal(c["g"] * c["cog"])
    for n, k, s, d in ((c["h"], c["kh"], c["sh"], c["dh"]), (c["w"], c["kw"], c["sw"], c["dw"])):
        assume((n - 1) * s + (k - 1) * d + 1 - 2 * p + op >= 1)
    attrs = dict(strides=(c["sh"], c["sw"]), padding=p, output_padding=(op, op),
                 dilation=(c["dh"], c["dw"]), groups=c["g"])
    return x, w, b, attrs


@settings(deadline=None, max_examples=60)
@given(deconv_cfg)
def test_conv_transpose_reference_matches_torch(c):
    x, w, b, a = _deconv_case(c)
    ref = torch.nn.functional.conv_transpose2d(
        torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=a["strides"],
        padding=a["padding"], output_padding=a["output_padding"], dilation=a["dilation"],
        groups=a["groups"]).numpy()
    y = _ev("conv2d_transpose", [x.transpose(0, 2, 3, 1), w.transpose(2, 3, 0, 1), b], **a)
    np.testing.assert_allclose(y.transpose(0, 3, 1, 2), ref, rtol=1e-10, atol=1e-10)


def test_layer_group_instance_norm_references_match_torch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 4, 6))
    s, b = rng.standard_normal(6), rng.standard_normal(6)
    ref = torch.nn.functional.layer_norm(torch.tensor(x), (6,), torch.tensor(s),
                                         torch.tensor(b), 1e-5).numpy()
    np.testing.assert_allclose(_ev("layer_norm", [x, s, b], axes=(-1,), epsilon=1e-5), ref,
                               rtol=1e-10, atol=1e-10)
    xt = torch.tensor(x.transpose(0, 3, 1, 2))
    for groups in (1, 2, 3, 6):
        ref = torch.nn.functional.group_norm(xt, groups, torch.tensor(s), torch.tensor(b),
                                             1e-4).numpy()
        y = _ev("group_norm", [x, s, b], groups=groups, epsilon=1e-4)
        np.testing.assert_allclose(y.transpose(0, 3, 1, 2), ref, rtol=1e-9, atol=1e-9)
    ref = torch.nn.functional.lp_pool2d(xt, 2, 2, 2).numpy()
    y = _ev("lp_pool2d", [x], pool_size=2, strides=2, p=2.0)
    np.testing.assert_allclose(y.transpose(0, 3, 1, 2), ref, rtol=1e-10)


def test_hardmax_picks_the_first_maximum():
    x = np.array([[1.0, 3.0, 3.0, 0.0], [np.nan, 1.0, np.nan, 2.0]])
    np.testing.assert_array_equal(_ev("hardmax", [x], axis=-1),
                                  [[0, 1, 0, 0], [1, 0, 0, 0]])


def test_bad_shapes_are_typed_errors():
    g = Graph("t")
    x = g.add_input(("N", 4, 4, 6))
    with pytest.raises(ShapeError, match="does not divide"):
        g.add("group_norm", [x, g.constant(np.ones(6)), g.constant(np.ones(6))], {"groups": 4})
    with pytest.raises(ShapeError, match="does not broadcast"):
        g.add("layer_norm", [x, g.constant(np.ones(5)), g.constant(np.ones(6))])
    with pytest.raises(ShapeError, match="input channels"):
        g.add("conv2d_transpose", [x, g.constant(np.ones((3, 3, 5, 2)))])
    with pytest.raises(ShapeError, match="crop the whole"):
        g.add("conv2d_transpose", [x, g.constant(np.ones((1, 1, 6, 2)))],
              {"padding": ((3, 2), (0, 0))})
    with pytest.raises(CnncError, match="p >= 1"):
        g.add("lp_pool2d", [x], {"p": 0.5})


# ---- the Numba CPU kernels vs the float64 reference ------------------------------------------
def _check_cpu(g, x, tol=2e-6):
    compiled = cnnc.compile(g, target="cpu")
    for batch in (1, 2):
        xb = np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])))
        xb = xb + np.random.default_rng(batch).standard_normal(xb.shape).astype(np.float32)
        ref = run_reference(g, xb)
        assert _rel(compiled(xb), ref) < tol


@settings(deadline=None, max_examples=6)
@given(deconv_cfg, st.sampled_from([(), ("relu",), ("leaky_relu", 0.1)]))
def test_conv_transpose_cpu_kernel(c, act):
    x, w, b, a = _deconv_case(c)
    g = Graph("dc")
    xin = g.add_input(("N", c["h"], c["w"], x.shape[1]), name="x")
    y = g.add("conv2d_transpose", [xin, g.constant(w.transpose(2, 3, 0, 1).astype(np.float32)),
                                   g.constant(b.astype(np.float32))],
              {**a, "padding": ((a["padding"],) * 2,) * 2})
    if act:
        y = g.add(act[0], [y], {"alpha": act[1]} if len(act) > 1 else {})
    g.set_outputs(y)
    _check_cpu(g, x.transpose(0, 2, 3, 1).astype(np.float32))


@settings(deadline=None, max_examples=5)
@given(st.integers(1, 3).flatmap(lambda r: st.tuples(
    st.just(r), st.lists(st.integers(1, 3), min_size=1, max_size=3, unique=True))),
    st.integers(0, 2**31 - 1))
def test_layer_norm_cpu_kernel_any_axes(ra, seed):
    _, axes = ra
    rng = np.random.default_rng(seed)
    shape = (5, 4, 6)
    s_shape = tuple(d if k + 1 in axes else 1 for k, d in enumerate(shape))
    g = Graph("ln")
    x = g.add_input(("N", *shape), name="x")
    y = g.add("layer_norm", [x, g.constant(rng.standard_normal(s_shape).astype(np.float32)),
                             g.constant(rng.standard_normal(shape[-1]).astype(np.float32))],
              {"axes": tuple(axes), "epsilon": 1e-5})
    g.set_outputs(y)
    _check_cpu(g, rng.standard_normal((1, *shape)).astype(np.float32) * 3 + 1)


@pytest.mark.parametrize("b_shape", [(64,), (1, 64)])   # the contiguous and tabulated kernels
def test_layer_norm_cpu_kernel_far_from_zero(b_shape):
    """Slices whose mean is 10^4 of their deviations, with an outlier first element (the
    kernel's shift): every output within 2e-6 of the largest, each element within 1e-5 of
    its own size where it is not near zero."""
    rng = np.random.default_rng(7)
    shape = (3, 5, 64)
    x = (1000 + 0.1 * rng.standard_normal((2, *shape))).astype(np.float32)
    x[..., 0] += 0.5
    g = Graph("ln_far")
    xin = g.add_input(("N", *shape), name="x")
    g.set_outputs(g.add("layer_norm", [xin, g.constant(rng.standard_normal(64).astype(np.float32)),
                                       g.constant(rng.standard_normal(b_shape).astype(np.float32))],
                        {"axes": (2,), "epsilon": 1e-5}))
    ref = run_reference(g, x)
    y = np.asarray(cnnc.compile(g, target="cpu")(x), np.float64)
    assert _rel(y, ref) < 2e-6
    big = np.abs(ref) > 0.1
    assert np.max(np.abs(y - ref)[big] / np.abs(ref)[big]) < 1e-5


@pytest.mark.parametrize("width", [96, 4096, 4097])
def test_layer_norm_cpu_kernel_short_and_long_slices(width):
    """Slices of at most SHORT elements are normalised two at a time with float32 sums (an
    odd count leaves the last one for after the parallel loop), longer ones one at a time with
    float64 sums. Far from zero, with every fifth slice's first element (the shift) 30
    deviations out, so that the float32 sums are redone around the mean: each output within
    1e-6 of the largest."""
    from cnnc.backends.numba_cpu.norm_kernels import SHORT, layer_norm
    assert ("2 * i + 1" in layer_norm("k", ("N", width), (1,), (width,), (width,), 1e-5)) == (
        width <= SHORT)
    rng = np.random.default_rng(width)
    x = (50 + rng.standard_normal((7, width))).astype(np.float32)
    x[::5, 0] += 30
    g = Graph("ln_widths")
    xin = g.add_input(("N", width), name="x")
    g.set_outputs(g.add("layer_norm", [xin, g.constant(rng.standard_normal(width).astype(
        np.float32)), g.constant(rng.standard_normal(width).astype(np.float32))],
        {"axes": (1,), "epsilon": 1e-5}))
    assert _rel(cnnc.compile(g, target="cpu")(x), run_reference(g, x)) < 1e-6


@pytest.mark.parametrize("axes,s_shape,b_shape", [((3,), (6,), (1, 6)), ((2, 3), (4, 6), (4, 6)),
                                                  ((1, 2, 3), (1,), (5, 4, 6)),
                                                  ((2, 3), (1, 4, 6), (6,))])
def test_layer_norm_cpu_kernel_trailing_axes(axes, s_shape, b_shape):
    """Normalised axes last, scale and bias over them or single values: the contiguous kernel
    (the last case, a bias over fewer axes, takes the tabulated one); both match."""
    from cnnc.backends.numba_cpu.norm_kernels import layer_norm
    rng = np.random.default_rng(sum(axes))
    shape = (5, 4, 6)
    src = layer_norm("k", ("N", *shape), axes, s_shape, b_shape, 1e-5)
    assert ("roff" in src) == (b_shape == (6,))
    g = Graph("ln_trailing")
    x = g.add_input(("N", *shape), name="x")
    y = g.add("layer_norm", [x, g.constant(rng.standard_normal(s_shape).astype(np.float32)),
                             g.constant(rng.standard_normal(b_shape).astype(np.float32))],
              {"axes": axes, "epsilon": 1e-5})
    g.set_outputs(y)
    _check_cpu(g, rng.standard_normal((3, *shape)).astype(np.float32) * 3 + 1)
