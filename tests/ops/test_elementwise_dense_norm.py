"""Activations, binary arithmetic, batch_norm, dense, matmul and softmax against their formulas."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import rng_array, run_op, seeds, shapes

SETTINGS = settings(deadline=None, max_examples=30)

ACT_FORMULAS = {
    "relu": ({}, lambda x: np.where(x > 0, x, 0.0)),
    "relu6": ({}, lambda x: np.where(x > 6, 6.0, np.where(x > 0, x, 0.0))),
    "clip": ({"min": -0.5, "max": 1.5}, lambda x: np.where(x < -0.5, -0.5,
                                                            np.where(x > 1.5, 1.5, x))),
    "leaky_relu": ({"alpha": 0.3}, lambda x: np.where(x > 0, x, 0.3 * x)),
    "sigmoid": ({}, lambda x: 1 / (1 + np.exp(-x))),
    "tanh": ({}, lambda x: (np.exp(2 * x) - 1) / (np.exp(2 * x) + 1)),
    "hard_sigmoid": ({"alpha": 0.2, "beta": 0.5},
                     lambda x: np.where(x < -2.5, 0.0, np.where(x > 2.5, 1.0, 0.2 * x + 0.5))),
    "hard_swish": ({}, lambda x: np.where(x < -3, 0.0, np.where(x > 3, x, x * (x + 3) / 6))),
    # the erf family by Python's math.erf/erfc (the op uses scipy's)
    "erf": ({}, lambda x: np.vectorize(math.erf)(x)),
    "gelu": ({}, lambda x: x * np.vectorize(math.erfc)(-x / math.sqrt(2)) / 2),
    "gelu_tanh": ({}, lambda x: x / 2 * (1 + np.tanh(math.sqrt(2 / math.pi) *
                                                     (x + 0.044715 * x * x * x)))),
    "elu": ({"alpha": 0.7}, lambda x: np.where(x > 0, x, 0.7 * (np.exp(np.minimum(x, 0)) - 1))),
    "selu": ({"alpha": 1.5, "gamma": 1.2},
             lambda x: 1.2 * np.where(x > 0, x, 1.5 * (np.exp(np.minimum(x, 0)) - 1))),
    "celu": ({"alpha": 2.0}, lambda x: np.where(x > 0, x, 2.0 * (np.exp(np.minimum(x, 0) / 2)
                                                                  - 1))),
    "softplus": ({}, lambda x: np.log(1 + np.exp(x))),
    "softsign": ({}, lambda x: x / (1 + np.abs(x))),
    "mish": ({}, lambda x: x * np.tanh(np.log(1 + np.exp(x)))),
    "swish": ({"alpha": 1.5}, lambda x: x / (1 + np.exp(-1.5 * x))),
    "thresholded_relu": ({"alpha": 0.5}, lambda x: np.where(x > 0.5, x, 0.0)),
    "shrink": ({"bias": 0.25, "lambd": 1.0},
               lambda x: np.where(x < -1, x + 0.25, np.where(x > 1, x - 0.25, 0.0))),
    "sqrt": ({}, lambda x: np.abs(x) ** 0.5 * np.where(x >= 0, 1, np.nan)),
    "exp": ({}, lambda x: np.e ** x),
    "log": ({}, lambda x: np.vectorize(lambda v: math.log(v) if v > 0 else np.nan)(x)),
    "neg": ({}, lambda x: 0 - x),
    "abs": ({}, lambda x: np.where(x < 0, -x, x)),
    "reciprocal": ({}, lambda x: 1 / x),
    "pow_scalar": ({"exponent": 3.0}, lambda x: x * x * x),
    # Python's own rounding (round: half to even)
    "floor": ({}, lambda x: np.vectorize(lambda v: float(math.floor(v)))(x)),
    "ceil": ({}, lambda x: np.vectorize(lambda v: float(math.ceil(v)))(x)),
    "round": ({}, lambda x: np.vectorize(lambda v: float(round(v)))(x)),
}


def test_every_activation_has_a_formula_here():
    from cnnc.ops.elementwise import ACTIVATIONS
    assert set(ACTIVATIONS) == set(ACT_FORMULAS)


@SETTINGS
@given(st.sampled_from(sorted(ACT_FORMULAS)), shapes(), seeds)
def test_activation_matches_formula(name, shape, seed):
    attrs, formula = ACT_FORMULAS[name]
    x = rng_array(seed, shape, scale=4.0)  # reaches every branch of the piecewise ones
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(run_op(name, [x], attrs), formula(x), rtol=1e-12,
                                   atol=1e-12)


def test_unary_math_at_the_edges_of_its_domain():
    x = np.array([[0.0, -0.0, -1.0, 1e-30, 40.0, -10.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning for a result that is nan or inf
        log, sqrt, rec = (run_op(op, [x]) for op in ("log", "sqrt", "reciprocal"))
        softplus, gelu = run_op("softplus", [x]), run_op("gelu", [x])
    assert log[0, 0] == -np.inf and np.isnan(log[0, 2]) and sqrt[0, 1] == 0
    assert np.isnan(sqrt[0, 2]) and rec[0, 0] == np.inf and rec[0, 1] == -np.inf
    np.testing.assert_allclose(softplus[0, 4:], [40.0, math.log1p(math.exp(-10.0))], rtol=1e-12)
    # the negative tail of gelu keeps its relative accuracy (1 + erf would round to 0)
    np.testing.assert_allclose(gelu[0, 5], -10 * math.erfc(10 / math.sqrt(2)) / 2, rtol=1e-12)
    assert gelu[0, 5] < 0 and 1 + math.erf(-10 / math.sqrt(2)) == 0


def test_pow_scalar_follows_numpy_power():
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    for e in (2.0, 3.0, -1.0, 0.5, 2.5, 0.0):
        with np.errstate(all="ignore"):
            np.testing.assert_allclose(run_op("pow_scalar", [x], {"exponent": e}),
                                       np.power(x, e), rtol=1e-12)


def test_activation_default_attributes():
    x = rng_array(1, (3, 7), scale=4)
    np.testing.assert_allclose(run_op("leaky_relu", [x]), np.where(x > 0, x, 0.2 * x))
    np.testing.assert_allclose(run_op("hard_sigmoid", [x]), np.clip(0.2 * x + 0.5, 0, 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_stable_for_large_inputs(dtype):
    x = np.array([[-1e4, -800.0, -50.0, -1e-3, 0.0, 1e-3, 50.0, 800.0, 1e4]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = run_op("sigmoid", [x], dtype=dtype)
    assert y.dtype == dtype and np.isfinite(y).all()
    assert y[0, 0] == 0 and y[0, -1] == 1 and y[0, 4] == 0.5
    np.testing.assert_allclose(y + y[:, ::-1], 1, atol=1e-6)  # sigmoid(-x) = 1 - sigmoid(x)


@SETTINGS
@given(st.sampled_from(["add", "sub", "mul", "div", "pow", "maximum", "minimum", "prelu"]),
       shapes(2, 4), seeds, st.data())
def test_binary_broadcasting(op, shape, seed, data):
    other = tuple(d if data.draw(st.booleans()) else 1 for d in shape)
    other = other[data.draw(st.integers(0, 2)):]  # fewer dims broadcast from the right
    a, b = rng_array(seed, shape), rng_array(seed + 1, other) + 3.0
    if op == "pow":
        a = np.abs(a)
    bb = np.broadcast_to(b, np.broadcast_shapes(a.shape, b.shape))
    want = {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b,
            "pow": np.exp(np.log(a) * b),
            "maximum": np.where(a > bb, a, bb), "minimum": np.where(a < bb, a, bb),
            "prelu": np.where(a >= 0, a, a * bb)}[op]
    np.testing.assert_allclose(run_op(op, [a, b]), want, rtol=1e-12)


def test_maximum_and_minimum_propagate_nan():
    a, b = np.array([np.nan, 1.0, 2.0]), np.array([0.0, np.nan, 1.0])
    np.testing.assert_array_equal(run_op("maximum", [a, b]), [np.nan, np.nan, 2.0])
    np.testing.assert_array_equal(run_op("minimum", [a, b]), [np.nan, np.nan, 1.0])


@SETTINGS
@given(shapes(2, 4), seeds, st.sampled_from([1e-3, 1e-5]), st.data())
def test_batch_norm_formula(shape, seed, eps, data):
    axis = data.draw(st.sampled_from([-1, len(shape) - 1, 1]))
    c = shape[axis]
    x = rng_array(seed, shape)
    gamma, beta, mean = (rng_array(seed + i, (c,)) for i in (1, 2, 3))
    var = np.abs(rng_array(seed + 4, (c,))) + 0.1
    y = run_op("batch_norm", [x, gamma, beta, mean, var], {"epsilon": eps, "axis": axis})
    xm = np.moveaxis(x, axis, -1)
    want = np.moveaxis(gamma * (xm - mean) / np.sqrt(var + eps) + beta, -1, axis)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)


def test_scale_shift_and_bias_add():
    x, s, t = rng_array(1, (2, 3, 4)), rng_array(2, (4,)), rng_array(3, (4,))
    np.testing.assert_allclose(run_op("scale_shift", [x, s, t]), x * s + t)
    np.testing.assert_allclose(run_op("bias_add", [x, t]), x + t)
    np.testing.assert_array_equal(run_op("identity", [x]), x)
    np.testing.assert_array_equal(run_op("dropout", [x], {"rate": 0.7}), x)


@SETTINGS
@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 6), seeds, st.booleans())
def test_dense_is_a_sum_of_products(n, fin, fout, seed, bias):
    x, w, b = rng_array(seed, (n, fin)), rng_array(seed + 1, (fin, fout)), rng_array(seed, (fout,))
    y = run_op("dense", [x, w, b] if bias else [x, w])
    want = np.array([[sum(x[i, k] * w[k, j] for k in range(fin)) + (b[j] if bias else 0)
                      for j in range(fout)] for i in range(n)])
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)


def test_matmul_batched():
    a, b = rng_array(1, (2, 1, 3, 4)), rng_array(2, (5, 4, 2))
    y = run_op("matmul", [a, b])
    assert y.shape == (2, 5, 3, 2)
    np.testing.assert_allclose(y[1, 3], a[1, 0] @ b[3], rtol=1e-12)


@SETTINGS
@given(shapes(1, 4), seeds, st.floats(-50, 50), st.data())
def test_softmax_sums_to_one_and_is_shift_invariant(shape, seed, shift, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = rng_array(seed, shape, scale=5)
    y = run_op("softmax", [x], {"axis": axis})
    assert (y > 0).all()
    np.testing.assert_allclose(y.sum(axis=axis), 1, rtol=1e-12)
    np.testing.assert_allclose(run_op("softmax", [x + shift], {"axis": axis}), y, rtol=1e-9)
    e = np.exp(x)
    np.testing.assert_allclose(y, e / e.sum(axis=axis, keepdims=True), rtol=1e-10)


def test_softmax_of_large_logits_is_finite():
    y = run_op("softmax", [np.array([[1000.0, 999.0, -1000.0]])])
    np.testing.assert_allclose(y, [[1 / (1 + np.exp(-1)), 1 / (1 + np.e), 0]], rtol=1e-12)


@SETTINGS
@given(shapes(1, 4), seeds, st.data())
def test_log_softmax_is_the_log_of_softmax(shape, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = rng_array(seed, shape, scale=5)
    y = run_op("log_softmax", [x], {"axis": axis})
    np.testing.assert_allclose(y, np.log(run_op("softmax", [x], {"axis": axis})), rtol=1e-9,
                               atol=1e-12)
    big = run_op("log_softmax", [np.array([[1000.0, 0.0]])])
    np.testing.assert_allclose(big, [[-math.log1p(math.exp(-1000.0)), -1000.0]], rtol=1e-12)
