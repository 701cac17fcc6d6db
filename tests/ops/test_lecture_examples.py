"""The lecture's worked examples, as golden tests of the ops and the window arithmetic."""

import numpy as np
import pytest

from cnnc.ops.padding import effective_kernel, out_size, resolve_pads, same_pads
from strategies import op_graph, run_op

# the 4x4 input of the padding slides (VALID/SAME, w=4, f=3, s=1)
LECTURE_X = np.array([[2, 0, 1, 3],
                      [1, 1, 2, 3],
                      [4, 3, 2, 1],
                      [8, 3, 1, 3]], dtype=np.float64)

# the zero-padded 6x6 matrix drawn on the SAME slides
LECTURE_PADDED = np.array([[0, 0, 0, 0, 0, 0],
                           [0, 2, 0, 1, 3, 0],
                           [0, 1, 1, 2, 3, 0],
                           [0, 4, 3, 2, 1, 0],
                           [0, 8, 3, 1, 3, 0],
                           [0, 0, 0, 0, 0, 0]], dtype=np.float64)


def nhwc(a):
    return np.asarray(a, dtype=np.float64)[None, :, :, None]


def test_max_pool_worked_example():
    x = [[6, 3, 1, -3], [4, 1, 2, 0], [3, 1, 3, 2], [7, 1, 1, 1]]
    y = run_op("max_pool2d", [nhwc(x)], {"pool_size": 2, "strides": 2})
    np.testing.assert_array_equal(y[0, :, :, 0], [[6, 2], [7, 3]])


def test_avg_pool_worked_example():
    x = [[6, 3, 1, -3], [4, 3, 2, 0], [3, 1, 5, 1], [7, 1, 1, 1]]
    y = run_op("avg_pool2d", [nhwc(x)], {"pool_size": 2, "strides": 2})
    np.testing.assert_array_equal(y[0, :, :, 0], [[4, 0], [3, 2]])


def test_valid_and_same_output_sizes():
    for padding, want in (("valid", 2), ("same", 4)):
        g = op_graph("conv2d", [(1, 4, 4, 1), (3, 3, 1, 1)], {"padding": padding})
        assert g.outputs[0].type.shape == (1, want, want, 1)
    # VALID: w' = (4 - 3 + 2*0)/1 + 1 = 2; SAME needs p = 1: (4 - 3 + 2)/1 + 1 = 4
    assert out_size(4, 3, 1, 1, 0, 0) == 2
    assert same_pads(4, 3, 1) == (1, 1)
    assert out_size(4, 3, 1, 1, 1, 1) == 4


def test_same_padding_picture_is_np_pad():
    np.testing.assert_array_equal(np.pad(LECTURE_X, 1), LECTURE_PADDED)
    y = run_op("pad", [nhwc(LECTURE_X)], {"pads": ((0, 0), (1, 1), (1, 1), (0, 0))})
    np.testing.assert_array_equal(y[0, :, :, 0], LECTURE_PADDED)
    # SAME conv == VALID conv over the picture's padded matrix
    k = np.random.default_rng(0).standard_normal((3, 3, 1, 1))
    same = run_op("conv2d", [nhwc(LECTURE_X), k], {"padding": "same"})
    valid = run_op("conv2d", [nhwc(LECTURE_PADDED), k], {"padding": "valid"})
    np.testing.assert_allclose(same, valid, rtol=1e-12, atol=1e-12)
    # first output cell, by hand: the top-left 3x3 of the padded matrix times the kernel
    assert same[0, 0, 0, 0] == pytest.approx(float((LECTURE_PADDED[:3, :3] * k[:, :, 0, 0]).sum()))


@pytest.mark.parametrize("w,f,p,s,want", [
    (4, 3, 0, 1, 2), (4, 3, 1, 1, 4), (7, 3, 0, 2, 3), (32, 5, 2, 1, 32), (227, 11, 0, 4, 55),
    (224, 7, 3, 2, 112), (5, 1, 0, 1, 5), (6, 2, 0, 2, 3),
])
def test_output_size_formula(w, f, p, s, want):
    assert (w - f + 2 * p) // s + 1 == want  # the lecture's formula, floored when not exact
    assert out_size(w, f, s, 1, p, p) == want
    g = op_graph("conv2d", [(1, w, w, 1), (f, f, 1, 2)], {"strides": s, "padding": p})
    assert g.outputs[0].type.shape == (1, want, want, 2)


@pytest.mark.parametrize("w,f,s,pads,out", [
    (5, 2, 2, (0, 1), 3),   # total 1: the odd cell goes to the bottom/right
    (7, 3, 2, (1, 1), 4),
    (6, 3, 2, (0, 1), 3),
    (4, 4, 1, (1, 2), 4),
    (8, 1, 3, (0, 0), 3),
])
def test_tf_same_split(w, f, s, pads, out):
    assert same_pads(w, f, s) == pads
    assert resolve_pads("same", (w, w), (f, f), (s, s)) == (pads, pads)
    assert out_size(w, f, s, 1, *pads) == out == -(-w // s)


def test_tf_same_odd_padding_goes_bottom_right_in_the_values():
    """w=5, f=2, s=2 SAME: one padded cell, after the input; the last window sees x[4] and 0."""
    x = np.arange(1.0, 26.0).reshape(5, 5)
    k = np.ones((2, 2, 1, 1))
    y = run_op("conv2d", [nhwc(x), k], {"strides": 2, "padding": "same"})[0, :, :, 0]
    xp = np.pad(x, ((0, 1), (0, 1)))
    want = np.array([[xp[i:i + 2, j:j + 2].sum() for j in range(0, 5, 2)] for i in range(0, 5, 2)])
    np.testing.assert_array_equal(y, want)
    assert y[2, 2] == x[4, 4]  # only the real corner cell; its padded neighbours are zero


def test_dilated_effective_kernel():
    for k, d in ((3, 1), (3, 2), (3, 3), (2, 4), (1, 5)):
        assert effective_kernel(k, d) == (k - 1) * d + 1
    g = op_graph("conv2d", [(1, 8, 8, 2), (3, 3, 2, 4)], {"padding": "same", "dilation": 2})
    assert g.outputs[0].type.shape == (1, 8, 8, 4)
    assert same_pads(8, 3, 1, 2) == (2, 2)
    g = op_graph("conv2d", [(1, 8, 8, 2), (3, 3, 2, 4)], {"dilation": 2})
    assert g.outputs[0].type.shape == (1, 4, 4, 4)  # VALID: 8 - 5 + 1
