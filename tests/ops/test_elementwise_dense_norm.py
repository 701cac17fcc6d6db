"""Activations, binary arithmetic, batch_norm, dense, matmul and softmax against their formulas."""

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
}


def test_every_activation_has_a_formula_here():
    from cnnc.ops.elementwise import ACTIVATIONS
    assert set(ACTIVATIONS) == set(ACT_FORMULAS)


@SETTINGS
@given(st.sampled_from(sorted(ACT_FORMULAS)), shapes(), seeds)
def test_activation_matches_formula(name, shape, seed):
    attrs, formula = ACT_FORMULAS[name]
    x = rng_array(seed, shape, scale=4.0)  # reaches every branch of the piecewise ones
    np.testing.assert_allclose(run_op(name, [x], attrs), formula(x), rtol=1e-12, atol=1e-12)


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
@given(st.sampled_from(["add", "sub", "mul", "div"]), shapes(2, 4), seeds, st.data())
def test_binary_broadcasting(op, shape, seed, data):
    other = tuple(d if data.draw(st.booleans()) else 1 for d in shape)
    other = other[data.draw(st.integers(0, 2)):]  # fewer dims broadcast from the right
    a, b = rng_array(seed, shape), rng_array(seed + 1, other) + 3.0
    want = {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b}[op]
    np.testing.assert_allclose(run_op(op, [a, b]), want, rtol=1e-12)


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
