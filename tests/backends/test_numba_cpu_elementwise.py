"""The Numba CPU kernels of the elementwise ops (activations, unary math, maximum, minimum,
prelu, pow, log_softmax) against the float64 reference on fresh random float32 inputs: each
float32 result within 1e-4 relative of the float64 value (a value that underflows float32 is
compared absolutely), and NaN / infinity exactly where the float32 rounding of the reference
has them. Every op is compiled once, in one graph with one output per op."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cnnc
from cnnc.backends.reference import run_reference
from cnnc.ir import Graph
from cnnc.ops.elementwise import ACTIVATIONS

pytestmark = pytest.mark.numba

WIDTH = 37
ATTRS = {"clip": {"min": -0.5, "max": 0.7}, "pow_scalar": {"exponent": 2.5},
         "elu": {"alpha": 0.6}, "celu": {"alpha": 1.7}, "swish": {"alpha": 0.8},
         "shrink": {"bias": 0.2, "lambd": 0.4}, "thresholded_relu": {"alpha": 0.3}}
BINARY = ("pow", "maximum", "minimum", "prelu")
SMALL = 1e-37  # below float32's smallest normal number differences are absolute


def _graph():
    rng = np.random.default_rng(7)
    g = Graph("elementwise")
    x = g.add_input(("N", WIDTH), name="x")
    names, outs = [], []
    for op in sorted(ACTIVATIONS):
        names.append(op)
        outs.append(g.add(op, [x], ATTRS.get(op)))
    for op in BINARY:
        c = rng.uniform(0.25, 2.0, WIDTH).astype(np.float32)
        if op != "pow":
            c *= rng.choice([-1, 1], WIDTH).astype(np.float32)
        names.append(op)
        outs.append(g.add(op, [x, g.constant(c)]))
    for op in ("softmax", "log_softmax"):
        names.append(op)
        outs.append(g.add(op, [x], {"axis": -1}))
    g.set_outputs(*outs)
    return g, names


@pytest.fixture(scope="module")
def compiled():
    g, names = _graph()
    return g, names, cnnc.compile(g, target="cpu", opt_level=0)


def check_close(name, got, ref):
    with np.errstate(all="ignore"):
        r32 = ref.astype(np.float32)
    special = ~np.isfinite(r32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[special], r32[special], err_msg=name)
    ok = ~special
    err = np.abs(got[ok].astype(np.float64) - ref[ok])
    bound = 1e-4 * np.abs(ref[ok]) + SMALL
    worst = np.argmax(err - bound) if err.size else 0
    assert (err <= bound).all(), (f"{name}: {got[ok][worst]!r} vs {ref[ok][worst]!r} "
                                  f"(relative error {err[worst] / abs(ref[ok][worst]):.2e})")


finite32 = st.floats(-60, 60, width=32, allow_nan=False, allow_infinity=False)


@settings(deadline=None, max_examples=40)
@given(st.integers(1, 3), st.data())
def test_kernels_match_the_float64_reference(compiled, batch, data):
    g, names, model = compiled
    scale = data.draw(st.sampled_from([1e-3, 1.0, 1.0, 8.0]))
    x = data.draw(hnp.arrays(np.float32, (batch, WIDTH), elements=finite32))
    x = (x * np.float32(scale)).astype(np.float32)
    got = model(x)
    with np.errstate(all="ignore"):
        ref = run_reference(g, x, dtype=np.float64)
    for name, y, r in zip(names, got, ref, strict=True):
        check_close(name, y, r)


def test_special_values(compiled):
    g, names, model = compiled
    x = np.zeros((1, WIDTH), np.float32)
    x[0, :8] = [0.0, -0.0, np.nan, np.inf, 89.0, -89.0, 3.9, -3.9]
    got = model(x)
    with np.errstate(all="ignore"):
        ref = run_reference(g, x, dtype=np.float64)
    for name, y, r in zip(names, got, ref, strict=True):
        if name in ("softmax", "log_softmax"):
            continue  # a NaN or inf in a row makes the whole row NaN
        check_close(name, y[:, :3], r[:, :3])  # zeros and NaN
        check_close(name, y[:, 4:], r[:, 4:])  # large, and erf's switch points


EPILOGUE_ACTS = ["gelu", ("elu", 0.5), "mish", ("swish", 1.2), "erf", ("pow_scalar", 2.0),
                 "gelu_tanh", ("shrink", 0.1, 0.2), "softsign"]


def test_activations_fuse_into_conv_and_dense_epilogues():
    rng = np.random.default_rng(3)
    g = Graph("fused")
    x = g.add_input(("N", 6, 5, 3), name="x")
    y = g.add("conv2d", [x, g.constant(rng.standard_normal((3, 3, 3, 8)).astype(np.float32)),
                         g.constant(rng.standard_normal(8).astype(np.float32))],
              {"padding": "same"})
    for st_ in EPILOGUE_ACTS:
        name, *params = (st_,) if isinstance(st_, str) else st_
        keys = {"elu": ["alpha"], "swish": ["alpha"], "pow_scalar": ["exponent"],
                "shrink": ["bias", "lambd"]}.get(name, [])
        y = g.add(name, [y], dict(zip(keys, params)))
    f = g.add("flatten", [y])
    d = g.add("dense", [f, g.constant(rng.standard_normal((240, 4)).astype(np.float32) / 10)])
    d = g.add("celu", [d], {"alpha": 1.5})
    d = g.add("log_softmax", [d])
    g.set_outputs(d)
    model = cnnc.compile(g, target="cpu", opt_level=2)
    fused = [n for n in model.graph.nodes if n.op in ("conv2d_fused", "dense_fused")]
    assert [s[0] for s in fused[0].attrs["epilogue"]] == [
        s if isinstance(s, str) else s[0] for s in EPILOGUE_ACTS]
    assert [s[0] for s in fused[1].attrs["epilogue"]] == ["celu"]
    for batch in (1, 4):
        xs = rng.standard_normal((batch, 6, 5, 3)).astype(np.float32)
        ref = run_reference(g, xs, dtype=np.float64)
        got = model(xs)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_rounding_at_ties_and_at_the_edges_of_float32():
    """floor, ceil and round (half to even) exactly as NumPy: ties, the float32 neighbours of
    +-0.5, values at and past 2^23 (integral already), infinities and NaN."""
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 123456.5, -7.5, -0.49999997, 0.49999997,
                  2.0000002, -3.7, 3.7, 8388607.5, -8388607.5, 8388608.0, 1e30, -1e30,
                  np.inf, -np.inf, np.nan, 0.0], np.float32)
    x = np.concatenate([x, np.random.default_rng(4).uniform(-50, 50, 42).astype(np.float32)])
    for op in ("floor", "ceil", "round"):
        g = Graph(op)
        i = g.add_input(("N", x.size), name="x")
        g.set_outputs(g.add(op, [i]))
        got = cnnc.compile(g, target="cpu")(x[None])[0]
        np.testing.assert_array_equal(got, getattr(np, op)(x), err_msg=op)


@pytest.mark.parametrize("batch", [1, 3])
def test_constants_over_all_but_the_batch_axis(batch):
    """Operands that span the last axes of the output: rows of 9 x 31 x 37 values (split into
    parallel chunks, the last one ragged), of 31 x 37 and of 37 (whole rows), for binary ops
    and an activation after them, at batch 1 (one row) and 3."""
    rng = np.random.default_rng(11)
    g = Graph("rows")
    x = g.add_input(("N", 9, 31, WIDTH), name="x")
    outs = []
    for shape, op in [((9, 31, WIDTH), "add"), ((31, WIDTH), "mul"), ((WIDTH,), "prelu"),
                      ((9, 31, WIDTH), "maximum")]:
        c = g.constant(rng.standard_normal(shape).astype(np.float32))
        outs.append(g.add("tanh", [g.add(op, [x, c])]) if op == "mul" else g.add(op, [x, c]))
    g.set_outputs(*outs)
    model = cnnc.compile(g, target="cpu")
    assert "n_ch" in model.source()   # the chunked loop is there
    xs = rng.standard_normal((batch, 9, 31, WIDTH)).astype(np.float32)
    for k, (y, r) in enumerate(zip(model(xs), run_reference(g, xs, dtype=np.float64),
                                   strict=True)):
        check_close(f"output {k}", y, r)
