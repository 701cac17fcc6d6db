"""The printer's exact text, TensorType validation and attribute errors."""

import numpy as np
import pytest

from cnnc.errors import ConfigError, DTypeError, ShapeError, UnsupportedError
from cnnc.ir import Graph, TensorType, format_graph, format_node
from cnnc.ir.printer import format_attr
from strategies import rng_array

GOLDEN = """\
graph tiny(%x: f32[N,8,8,3]) {
  %w0: f32[3,3,3,4] = constant
  %w1: f32[4] = constant
  %0: f32[N,8,8,4] = conv2d_fused(%x, %w0, %w1) {strides=[1,1], padding=same, dilation=[1,1], \
groups=1, epilogue=[leaky_relu(0.1),clip(0.0,6.0)]}
  %1: f32[N,4,4,4] = max_pool2d(%0) {pool_size=[2,2], strides=[2,2], padding=[[0,1],[0,1]], \
dilation=[1,1], ceil_mode=true}
  %2: f32[N,4,4,4] = avg_pool2d(%0) {pool_size=[2,2], strides=[2,2], padding=valid, \
dilation=[1,1], ceil_mode=false, count_include_pad=true}
  %3: f32[N,4,4,4] = add(%1, %2)
  %4: f32[N,64] = flatten(%3) {axis=1}
  %w2: f32[64,10] = constant
  %5: f32[N,10] = dense(%4, %w2)
  %6: f32[N,10] = softmax(%5) {axis=-1}
  %7: f32[N,8,8,4] = batch_norm(%0, %w1, %w1, %w1, %w1) {epsilon=1e-05, axis=-1}
  return %6, %5
}"""


def tiny() -> Graph:
    g = Graph("tiny")
    x = g.add_input(("N", 8, 8, 3), name="x")
    w0 = g.constant(rng_array(0, (3, 3, 3, 4)).astype(np.float32))
    b0 = g.constant(rng_array(1, (4,)).astype(np.float32) ** 2)
    c = g.add("conv2d_fused", [x, w0, b0],
              {"padding": "SAME", "epilogue": [("leaky_relu", 0.1), ("clip", 0, 6)]}, layer="conv")
    p = g.add("max_pool2d", [c], {"pool_size": 2, "padding": ((0, 1), [0, 1]), "ceil_mode": 1})
    a = g.add("avg_pool2d", [c], {"count_include_pad": True})
    f = g.add("flatten", [g.add("add", [p, a])])
    d = g.add("dense", [f, g.constant(rng_array(2, (64, 10)))])
    s = g.add("softmax", [d])
    g.add("batch_norm", [c, b0, b0, b0, b0], {"epsilon": 1e-5})  # dead, but printed
    g.set_outputs(s, d)
    return g


def test_printer_golden_text():
    g = tiny()
    assert str(g) == GOLDEN
    assert str(g.copy()) == GOLDEN
    no_consts = format_graph(g, constants=False)
    assert no_consts == "\n".join(ln for ln in GOLDEN.splitlines() if "= constant" not in ln)


def test_format_attr():
    assert format_attr(True) == "true" and format_attr(False) == "false"
    assert format_attr(0.2) == "0.2" and format_attr(1e-05) == "1e-05"
    assert format_attr(-3) == "-3" and format_attr(None) == "none"
    assert format_attr(()) == "[]"
    assert format_attr(((1, 2), (3, 4))) == "[[1,2],[3,4]]"
    assert format_attr((("relu",), ("leaky_relu", 0.3))) == "[relu,leaky_relu(0.3)]"


def test_node_repr_is_its_line():
    g = tiny()
    conv = g.ops[0]
    assert repr(conv) == format_node(conv) == GOLDEN.splitlines()[3].strip()
    assert conv.describe() == "node %0 (conv2d_fused, layer 'conv')"


# ---- TensorType --------------------------------------------------------------------------------
def test_tensor_type_normalises_and_prints():
    t = TensorType([np.int64(2), "N", 3])
    assert t.shape == (2, "N", 3) and type(t.shape[0]) is int
    assert str(t) == "f32[2,N,3]" and t.rank == 3 and not t.is_static
    assert t.concrete({"N": 5}) == (2, 5, 3)
    assert TensorType((2, 3), "float64").nbytes() == 48
    assert TensorType(("N", 4)).nbytes({"N": 3}) == 48
    assert hash(t) == hash(TensorType((2, "N", 3)))


@pytest.mark.parametrize("shape,match", [
    ((2, -1), "must be >= 0, got -1"),
    ((2, 3.0), "int or a symbol, got 3.0"),
    ((True, 3), "int or a symbol, got True"),
    ((None,), "int or a symbol, got None"),
])
def test_tensor_type_rejects_bad_dims(shape, match):
    with pytest.raises(ShapeError, match=match):
        TensorType(shape)


def test_tensor_type_rejects_bad_dtype_and_unbound_symbols():
    with pytest.raises(DTypeError, match="'complex64'"):
        TensorType((2,), "complex64")
    with pytest.raises(ShapeError, match="symbol 'N' .* unbound"):
        TensorType(("N", 2)).concrete({})


# ---- attributes --------------------------------------------------------------------------------
def _conv(attrs, layer=None):
    g = Graph()
    x = g.add_input((1, 6, 6, 2))
    w = g.constant(rng_array(0, (3, 3, 2, 4)))
    return g.add("conv2d", [x, w], attrs, layer=layer)


@pytest.mark.parametrize("attrs,match", [
    ({"stride": 2}, r"conv2d \(layer 'c'\): unknown attribute\(s\) \['stride'\]"),
    ({"strides": -1}, r"conv2d \(layer 'c'\): strides must be >= 1, got -1"),
    ({"strides": (1, 0)}, r"strides must be >= 1, got 0"),
    ({"strides": "2"}, r"strides must be an integer, got '2'"),
    ({"strides": (1, 2, 3)}, r"strides must be an int or a pair of ints, got \(1, 2, 3\)"),
    ({"strides": 1.5}, r"strides must be an integer, got 1.5"),
    ({"strides": True}, r"strides must be an integer, got True"),
    ({"padding": "full"}, r"padding must be 'valid', 'same' or explicit pads, got 'full'"),
    ({"padding": -1}, r"padding must be >= 0, got -1"),
    ({"padding": ((1, 1), (1, -2))}, r"padding must be >= 0, got -2"),
    ({"padding": (1, 2, 3)}, r"padding must be .*got \(1, 2, 3\)"),
    ({"groups": 0}, r"groups must be >= 1, got 0"),
    ({"dilation": "x"}, r"dilation must be an integer, got 'x'"),
])
def test_attribute_errors_name_the_op_and_the_value(attrs, match):
    with pytest.raises(ConfigError, match=match):
        _conv(attrs, layer="c")


def test_attribute_normalisation():
    v = _conv({"strides": np.int64(2), "padding": [1, 2], "dilation": [1, 1]})
    attrs = v.producer.attrs
    assert attrs["strides"] == (2, 2) and type(attrs["strides"][0]) is int
    assert attrs["padding"] == ((1, 1), (2, 2))
    assert list(attrs) == ["strides", "padding", "dilation", "groups"]
    with pytest.raises(TypeError):
        attrs["groups"] = 2  # frozen


def test_other_attribute_kinds_and_arity():
    g = Graph()
    x = g.add_input((2, 3))
    with pytest.raises(ConfigError, match=r"clip needs attribute 'max'"):
        g.add("clip", [x], {"min": 0})
    with pytest.raises(ConfigError, match=r"leaky_relu: alpha must be a number, got 'big'"):
        g.add("leaky_relu", [x], {"alpha": "big"})
    with pytest.raises(ConfigError, match=r"keepdims must be a bool, got 2"):
        g.add("global_avg_pool", [g.add_input((1, 2, 2, 3))], {"keepdims": 2})
    with pytest.raises(ConfigError, match=r"perm must be a list of ints, got 'abc'"):
        g.add("transpose", [x], {"perm": "abc"})
    with pytest.raises(ConfigError, match=r"relu takes 1 operands, got 2"):
        g.add("relu", [x, x])
    with pytest.raises(ConfigError, match=r"epilogue step 'no_such_step'"):
        g.add("dense_fused", [x, g.constant(rng_array(0, (3, 2))), g.constant(np.ones(2) * 2)],
              {"epilogue": ["no_such_step"]})
    with pytest.raises(UnsupportedError, match="unknown op 'frobnicate'"):
        g.add("frobnicate", [x])
    with pytest.raises(ConfigError, match="operand 0 of relu must be a Value, got ndarray"):
        g.add("relu", [np.ones((2, 3))])


def test_shape_errors_name_the_layer():
    g = Graph()
    x = g.add_input((1, 6, 6, 3))
    w = g.constant(rng_array(0, (3, 3, 2, 4)))
    with pytest.raises(ShapeError, match=r"conv2d \(layer 'c7'\): kernel expects 2 input "
                                         r"channels .* has 3 channels"):
        g.add("conv2d", [x, w], layer="c7")
    with pytest.raises(ShapeError, match=r"groups=2 does not divide the 3 input channels"):
        g.add("conv2d", [x, w], {"groups": 2})
    with pytest.raises(ShapeError, match=r"window 5 .* larger than the padded input 3"):
        g.add("conv2d", [g.add_input((1, 3, 3, 2)), w], {"dilation": 2})
