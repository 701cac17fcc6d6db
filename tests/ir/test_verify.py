"""The verifier catches each broken invariant and names the node at fault."""

from types import MappingProxyType

import numpy as np
import pytest

from cnnc.errors import VerificationError
from cnnc.ir import Graph, Node, TensorType, Value, verify
from strategies import rng_array


def chain(name="chain"):
    """x -> conv2d (layer 'c1') -> relu -> tanh."""
    g = Graph(name)
    x = g.add_input((1, 5, 5, 2), name="x")
    w = g.constant(rng_array(0, (3, 3, 2, 3)))
    c = g.add("conv2d", [x, w], {"strides": 1}, layer="c1")
    r = g.add("relu", [c])
    t = g.add("tanh", [r])
    g.set_outputs(t)
    verify(g)
    return g, c.producer, r.producer, t.producer


def test_type_mismatch():
    g, conv, relu, _ = chain()
    relu.output.type = TensorType((1, 3, 3, 4))
    with pytest.raises(VerificationError, match=r"node %1 \(relu\).*f32\[1,3,3,4\].*"
                                                r"f32\[1,3,3,3\]"):
        verify(g)
    g, conv, *_ = chain()
    conv.output.type = TensorType((1, 3, 3, 3), "float64")
    with pytest.raises(VerificationError, match=r"node %0 \(conv2d, layer 'c1'\)"):
        verify(g)


def test_use_before_definition():
    g, conv, relu, tanh = chain()
    ghost = Value("ghost", relu.output.type)
    tanh.inputs = (ghost,)
    with pytest.raises(VerificationError, match=r"node %2 \(tanh\): operand 0 %ghost is not "
                                                r"defined before use"):
        verify(g)


def test_value_defined_twice():
    g, conv, relu, tanh = chain()
    tanh.output.name = "1"
    with pytest.raises(VerificationError, match=r"two values are named %1 \(node %1 \(tanh\)\)"):
        verify(g)
    g, *_ = chain()
    g.inputs.append(g.inputs[0])
    with pytest.raises(VerificationError, match="%x is defined twice"):
        verify(g)


def test_operands_edited_in_place_are_seen():
    """A cycle made by assigning ``node.inputs`` directly (no graph method) is still found,
    and a legal in-place edit is not reported against a stale order."""
    g, conv, relu, tanh = chain()
    relu.inputs = (tanh.output,)
    with pytest.raises(VerificationError, match=r"cycle through node %\d \((relu|tanh)\)"):
        verify(g)
    g, conv, relu, tanh = chain()
    s = g.add("sigmoid", [conv.output])
    assert g.nodes[-1] is s.producer  # the order is computed (and cached) here
    relu.inputs = (s,)  # relu was scheduled before sigmoid; now it must come after
    verify(g)
    assert [n.op for n in g.ops] == ["conv2d", "sigmoid", "relu", "tanh"]


def test_result_must_point_back_to_its_node():
    g, conv, relu, tanh = chain()
    tanh.output.producer = relu
    with pytest.raises(VerificationError, match=r"node %2 \(tanh\).*point back"):
        verify(g)


def test_cycle():
    g, conv, relu, tanh = chain()
    g.replace_uses(conv.output, tanh.output)  # relu now reads tanh, which reads relu
    with pytest.raises(VerificationError, match=r"cycle through node %\d \((relu|tanh)\)"):
        verify(g)


@pytest.mark.parametrize("attrs,match", [
    ({"strides": (-1, 1), "padding": "valid", "dilation": (1, 1), "groups": 1},
     "strides must be >= 1, got -1"),
    ({"strides": (1, 1), "padding": "full", "dilation": (1, 1), "groups": 1}, "'full'"),
    ({"strides": (1, 1), "padding": "valid", "dilation": (1, 1), "groups": 1, "bias": True},
     r"unknown attribute\(s\) \['bias'\]"),
    ({"strides": 1, "padding": "valid", "dilation": (1, 1), "groups": 1}, "not normalised"),
    ({"strides": (1, 1), "padding": "VALID", "dilation": (1, 1), "groups": 1}, "not normalised"),
    ({"strides": (1, 1), "padding": "valid", "groups": 1}, "not normalised"),  # default missing
    ({"strides": (2, 2), "padding": "valid", "dilation": (1, 1), "groups": 1},
     r"result type is f32\[1,3,3,3\] but the shape rule gives f32\[1,2,2,3\]"),
])
def test_bad_or_unnormalised_attributes(attrs, match):
    g, conv, *_ = chain()
    conv.attrs = MappingProxyType(attrs)
    with pytest.raises(VerificationError, match=r"node %0 \(conv2d, layer 'c1'\)"):
        verify(g)
    with pytest.raises(VerificationError, match=match):
        verify(g)


def test_unknown_op_and_bad_arity():
    g, conv, relu, _ = chain()
    relu.op = "frobnicate"
    with pytest.raises(VerificationError, match=r"node %1 \(frobnicate\).*unknown op 'frobnicate'"):
        verify(g)
    g, conv, relu, _ = chain()
    relu.inputs = (conv.output, conv.output)
    with pytest.raises(VerificationError, match=r"node %1 \(relu\).*takes 1 operands, got 2"):
        verify(g)


def test_no_outputs_and_undefined_output():
    g, *_ = chain("lonely")
    g.set_outputs()
    with pytest.raises(VerificationError, match="graph 'lonely' has no outputs"):
        verify(g)
    g, *_ = chain()
    g.set_outputs(Value("nowhere", TensorType((1,))))
    with pytest.raises(VerificationError, match="graph output %nowhere is not defined"):
        verify(g)


def test_constant_data_must_match_its_type():
    g, conv, *_ = chain()
    w = conv.inputs[1].producer
    w.data = np.zeros((3, 3, 2, 4))
    with pytest.raises(VerificationError, match=r"node %w0 \(constant\).*f32\[3,3,2,3\]"):
        verify(g)


def test_where_is_quoted():
    g, conv, relu, _ = chain()
    relu.op = "frobnicate"
    with pytest.raises(VerificationError, match=r"\(after fold_batchnorm\)"):
        verify(g, "after fold_batchnorm")


def test_hand_built_node_verifies():
    g, conv, relu, tanh = chain()
    out = Value("extra", relu.output.type)
    node = Node("sigmoid", [relu.output], out)
    out.producer = node
    g._insert(node, None)
    g.set_outputs(tanh.output, out)
    verify(g)
