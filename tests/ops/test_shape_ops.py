"""flatten, reshape (0 and -1, symbolic batch), concat, pad, transpose."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnc.backends.reference import run_reference
from cnnc.errors import ConfigError, ShapeError
from cnnc.ir import Graph
from strategies import op_graph, rng_array, run_op, seeds, shapes

SETTINGS = settings(deadline=None, max_examples=30)


@SETTINGS
@given(shapes(4, 4), seeds)
def test_flatten_is_row_major_over_h_w_c(shape, seed):
    x = rng_array(seed, shape)
    y = run_op("flatten", [x])
    n, h, w, c = shape
    assert y.shape == (n, h * w * c)
    for b in range(n):
        flat = [x[b, i, j, k] for i in range(h) for j in range(w) for k in range(c)]
        np.testing.assert_array_equal(y[b], flat)


def test_flatten_symbolic_batch():
    g = Graph()
    x = g.add_input(("N", 3, 4, 5))
    assert g.add("flatten", [x]).type.shape == ("N", 60)
    ones = g.add_input(("N", 1, 1, 5))
    assert g.add("flatten", [ones], {"axis": 3}).type.shape == ("N", 5)  # N*1*1 is N
    for axis in (0, 2, 4):  # N*3 or N*60 cannot be written with one symbol
        with pytest.raises(ShapeError, match="flatten"):
            g.add("flatten", [x], {"axis": axis})
    with pytest.raises(ShapeError, match="out of range"):
        g.add("flatten", [x], {"axis": 5})


@pytest.mark.parametrize("shape_in,target,want", [
    ((2, 3, 4), (0, -1), (2, 12)),
    ((2, 3, 4), (-1, 4), (6, 4)),
    ((2, 3, 4), (0, 0, 2, 2), (2, 3, 2, 2)),
    ((2, 3, 4), (4, 0, -1), (4, 3, 2)),
    ((2, 12), (0, 3, 2, 2), (2, 3, 2, 2)),
    ((6,), (-1,), (6,)),
])
def test_reshape_static(shape_in, target, want):
    x = rng_array(1, shape_in)
    y = run_op("reshape", [x], {"shape": target})
    assert y.shape == want
    np.testing.assert_array_equal(y.ravel(), x.ravel())  # row-major order kept
    assert op_graph("reshape", [shape_in], {"shape": target}).outputs[0].type.shape == want


@pytest.mark.parametrize("target,want", [
    ((0, -1), ("N", 24)),
    ((0, 6, 4), ("N", 6, 4)),
    ((-1, 24), ("N", 24)),
    ((-1, 2, 3, 4), ("N", 2, 3, 4)),
    ((0, -1, 2), ("N", 12, 2)),
    ((-1, 0, 12), ("N", 2, 12)),   # 0 copies the 2; -1 is then N exactly
])
def test_reshape_symbolic_batch(target, want):
    g = Graph()
    x = g.add_input(("N", 2, 3, 4))
    y = g.add("reshape", [x], {"shape": target})
    assert y.type.shape == want
    g.set_outputs(y)
    for n in (1, 3):
        a = rng_array(n, (n, 2, 3, 4))
        out = run_reference(g, a)
        assert out.shape == tuple(n if d == "N" else d for d in want)
        np.testing.assert_array_equal(out.ravel(), a.ravel())


@pytest.mark.parametrize("target", [
    (-1, 5),          # 24 not divisible by 5
    (-1, -1),         # two -1
    (-1, 12),         # -1 would be N*2: a symbol times a size
    (24,),            # drops N
    (0, 5, -2),       # negative size
    (0, 0, 0, 0, 0),  # 0 past the input rank
    (0, 25),          # wrong element count
])
def test_reshape_rejects(target):
    g = Graph()
    x = g.add_input(("N", 2, 3, 4))
    with pytest.raises(ShapeError, match=r"reshape"):
        g.add("reshape", [x], {"shape": target})


@SETTINGS
@given(shapes(1, 4), st.integers(1, 3), seeds, st.data())
def test_concat(shape, k, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    parts = []
    for i in range(k):
        s = list(shape)
        s[axis] = data.draw(st.integers(1, 3))
        parts.append(rng_array(seed + i, s))
    y = run_op("concat", parts, {"axis": axis})
    assert y.shape[axis] == sum(p.shape[axis] for p in parts)
    start = 0
    for p in parts:
        idx = [slice(None)] * len(shape)
        idx[axis] = slice(start, start + p.shape[axis])
        np.testing.assert_array_equal(y[tuple(idx)], p)
        start += p.shape[axis]


def test_concat_rejects_mismatch():
    with pytest.raises(ShapeError, match="operand 1"):
        op_graph("concat", [(2, 3, 4), (2, 2, 4)], {"axis": -1})


@SETTINGS
@given(shapes(1, 4), seeds, st.floats(-3, 3), st.data())
def test_pad(shape, seed, value, data):
    pads = tuple((data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in shape)
    x = rng_array(seed, shape)
    y = run_op("pad", [x], {"pads": pads, "value": value})
    assert y.shape == tuple(d + a + b for d, (a, b) in zip(shape, pads))
    inner = tuple(slice(a, a + d) for d, (a, _) in zip(shape, pads))
    np.testing.assert_array_equal(y[inner], x)
    mask = np.ones(y.shape, bool)
    mask[inner] = False
    assert (y[mask] == value).all()


def test_pad_attribute_is_normalised():
    """Lists, tuples and integer arrays all become nested int tuples (hashable, printable)."""
    for pads in ([[0, 0], [1, 2]], np.array([[0, 0], [1, 2]]), ((0, 0), (np.int64(1), 2))):
        g = op_graph("pad", [(2, 3)], {"pads": pads})
        node = g.ops[0]
        assert node.attrs["pads"] == ((0, 0), (1, 2))
        assert "pads=[[0,0],[1,2]]" in str(g)
        hash(tuple(node.attrs.values()))
    for bad in ([[0, -1], [0, 0]], [[0, 1, 2]], 3, [[0.5, 1], [0, 0]]):
        with pytest.raises(ConfigError, match="pads"):
            op_graph("pad", [(2, 3)], {"pads": bad})
    with pytest.raises(ShapeError, match="pads"):
        op_graph("pad", [(2, 3)], {"pads": [[0, 0]]})


@SETTINGS
@given(shapes(1, 5), seeds, st.data())
def test_transpose(shape, seed, data):
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    x = rng_array(seed, shape)
    y = run_op("transpose", [x], {"perm": perm})
    assert y.shape == tuple(shape[p] for p in perm)
    idx = tuple(data.draw(st.integers(0, d - 1)) for d in shape)
    assert y[tuple(idx[p] for p in perm)] == x[idx]


def test_transpose_rejects_bad_perm():
    with pytest.raises(ShapeError, match="perm"):
        op_graph("transpose", [(2, 3, 4)], {"perm": (0, 0, 1)})
