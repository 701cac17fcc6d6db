"""Input validation of compiled models (backends.base.prepare_inputs) through
``cnnc.compile(graph, target="numpy")``, and the reference interpreter in float32 vs float64."""

import numpy as np
import pytest

import cnnc
from cnnc.backends.base import prepare_inputs
from cnnc.backends.reference import evaluate, run_reference
from cnnc.errors import CnncError, DTypeError, ShapeError
from cnnc.ir import Graph
from strategies import rng_array


def net() -> Graph:
    g = Graph("net")
    x = g.add_input(("N", 8, 8, 3), name="image")
    c = g.add("conv2d", [x, g.constant(rng_array(0, (3, 3, 3, 4))),
                         g.constant(rng_array(1, (4,)))], {"padding": "same"})
    bn = g.add("batch_norm", [c, *(g.constant(rng_array(i, (4,))) for i in (2, 3, 4)),
                              g.constant(np.abs(rng_array(5, (4,))) + 0.5)])
    p = g.add("max_pool2d", [g.add("relu", [bn])])
    d = g.add("dense", [g.add("flatten", [p]), g.constant(rng_array(6, (64, 5)))])
    g.set_outputs(g.add("softmax", [d]))
    return g


@pytest.fixture(scope="module")
def model():
    return cnnc.compile(net(), target="numpy")


def test_compiled_model_matches_the_float64_reference(model):
    x = rng_array(7, (3, 8, 8, 3))
    y = model(x)
    assert y.dtype == np.float32 and y.shape == (3, 5)
    np.testing.assert_allclose(y, run_reference(model.graph, x), rtol=1e-4, atol=1e-6)
    assert model.source() == str(model.graph) and "(%image" in model.source()


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_any_batch_size_from_one_model(model, batch):
    x = rng_array(batch, (batch, 8, 8, 3))
    y = model(x)
    assert y.shape == (batch, 5)
    for i in range(batch):  # each sample alone gives its own row
        np.testing.assert_allclose(model(x[i:i + 1])[0], y[i], rtol=1e-5, atol=1e-7)


def test_nan_stays_in_its_sample(model):
    x = rng_array(8, (3, 8, 8, 3))
    x[1, 4, 4, 2] = np.nan
    y = model(x)
    assert np.isnan(y[1]).any()
    assert np.isfinite(y[[0, 2]]).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.int64, np.uint8])
def test_numeric_dtypes_are_cast(model, dtype):
    x = (rng_array(9, (2, 8, 8, 3)) * 3).astype(dtype)
    np.testing.assert_allclose(model(x), model(x.astype(np.float32)), rtol=1e-6, atol=1e-7)


def test_layout_of_the_input_does_not_matter(model):
    x = rng_array(10, (4, 8, 8, 3))
    want = model(np.ascontiguousarray(x))
    np.testing.assert_array_equal(model(np.asfortranarray(x)), want)
    strided = rng_array(11, (8, 16, 8, 6))[::2, ::2, :, ::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(model(strided), model(strided.copy()))
    np.testing.assert_array_equal(model(x.tolist()), want)  # nested lists are arrays too


@pytest.mark.parametrize("bad,exc,match", [
    ("img", DTypeError, r"input %image of model 'net' must be a NumPy array, got str"),
    (None, DTypeError, r"input %image .* got NoneType"),
    (np.full((1, 8, 8, 3), "a"), DTypeError, r"input %image .* numeric dtype, got <U1"),
    (np.empty((1, 8, 8, 3), dtype=object), DTypeError,
     r"input %image .* numeric dtype, got object"),
    (np.zeros((1, 8, 8, 3), dtype=bool), DTypeError, r"input %image .* numeric dtype, got bool"),
    (np.zeros((1, 8, 8, 3), dtype=complex), DTypeError, r"numeric dtype, got complex128"),
    (rng_array(0, (8, 8, 3)), ShapeError, r"input %image .* expects rank 4 f32\[N,8,8,3\], "
                                          r"got shape \(8, 8, 3\)"),
    (rng_array(0, (1, 7, 8, 3)), ShapeError, r"dim 1: expected 8, got 7"),
    (rng_array(0, (1, 8, 9, 3)), ShapeError, r"dim 2: expected 8, got 9"),
    (rng_array(0, (1, 8, 8, 4)), ShapeError, r"dim 3: expected 3, got 4"),
    (rng_array(0, (0, 8, 8, 3)), ShapeError, r"dim 0 \(N\) must be >= 1, got 0"),
    ([[1, 2], [3]], DTypeError, r"input %image .* cannot be converted"),
])
def test_bad_inputs(model, bad, exc, match):
    with pytest.raises(exc, match=match):
        model(bad)
    assert issubclass(exc, CnncError)


def test_wrong_input_count(model):
    x = rng_array(0, (1, 8, 8, 3))
    with pytest.raises(ShapeError, match=r"model 'net' takes 1 input\(s\) \(f32\[N,8,8,3\]\), "
                                         r"got 2"):
        model(x, x)
    with pytest.raises(ShapeError, match="got 0"):
        model()


def test_batch_symbol_must_agree_across_inputs():
    g = Graph("two")
    a, b = g.add_input(("N", 3), name="a"), g.add_input(("N", 3), name="b")
    g.set_outputs(g.add("add", [a, b]))
    arrays, bindings = prepare_inputs(g, [rng_array(0, (4, 3)), rng_array(1, (4, 3))])
    assert bindings == {"N": 4}
    assert all(x.dtype == np.float32 and x.flags.c_contiguous for x in arrays)
    with pytest.raises(ShapeError, match=r"input %b of model 'two': dim 0 \(N\) is 2 but "
                                         r"another input has N=4"):
        prepare_inputs(g, [rng_array(0, (4, 3)), rng_array(1, (2, 3))])


def test_float32_and_float64_evaluation_agree():
    g = net()
    x = rng_array(12, (5, 8, 8, 3))
    y64 = evaluate(g, [x], np.float64)[0]
    y32 = evaluate(g, [x], np.float32)[0]
    assert y64.dtype == np.float64 and y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-6)
    assert not np.array_equal(y32.astype(np.float64), y64)  # really computed in two precisions


def test_compile_does_not_touch_the_callers_graph():
    g = net()
    text = str(g)
    model = cnnc.compile(g, target="numpy")
    assert model.graph is not g and str(g) == text
    with pytest.raises(cnnc.ConfigError, match="unknown target 'tpu'"):
        cnnc.compile(g, target="tpu")
