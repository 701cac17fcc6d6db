"""ONNX import, one operator at a time: small models (random weights, odd sizes) built with
onnx.helper run in ONNX Runtime and through cnnc (compiled for NumPy and the float64 reference),
equal within 1e-4 relative to the output's scale."""

from __future__ import annotations

import re

import numpy as np
import pytest

from onnx_build import check, inputs_for, model, node, ops, rand, run_ort

import cnnc
from cnnc.frontends.onnx.importer import load_onnx

from onnx import AttributeProto, TensorProto, helper  # noqa: E402  (onnx_build skips without onnx)

RNG = np.random.default_rng(1234)


def _x(*shape):
    return rand(RNG, *shape)


def conv_net(act=None, opset=17, **conv):
    """x (N,3,7,9) -> Conv(4 out) [-> act]."""
    w = _x(4, 3 // conv.get("group", 1), 3, 2)
    nodes = [node("Conv", ["x", "w", "b"], "c", **conv)]
    out = "c"
    if act is not None:
        op, attrs, extra = act
        nodes.append(node(op, ["c", *extra], "y", **attrs))
        out = "y"
    return model(nodes, [("x", ("N", 3, 7, 9))], [out], {"w": w, "b": _x(4)}, opset=opset)


def unary(op, opset=17, extra=(), inits=None, batch="N", **attrs):
    ins = {"w": _x(4, 3, 3, 2), "b": _x(4), **(inits or {})}
    nodes = [node("Conv", ["x", "w", "b"], "c", pads=[1, 0, 1, 1]),
             node(op, ["c", *extra], "y", **attrs)]
    return model(nodes, [("x", (batch, 3, 7, 9))], ["y"], ins, opset=opset)


def _after_abs(op, extra=(), inits=None, **attrs):
    """Conv -> Abs -> op (sqrt, log, a fractional power: on non-negative values)."""
    ins = {"w": _x(4, 3, 3, 2), "b": _x(4), **(inits or {})}
    nodes = [node("Conv", ["x", "w", "b"], "c", pads=[1, 0, 1, 1]), node("Abs", ["c"], "a"),
             node(op, ["a", *extra], "y", **attrs)]
    return model(nodes, [("x", ("N", 3, 7, 9))], ["y"], ins)


def _variadic(op):
    """op(conv, relu(conv), a per-channel constant)."""
    nodes = [node("Conv", ["x", "w", "b"], "c", pads=[1, 0, 1, 1]), node("Relu", ["c"], "r"),
             node(op, ["c", "r", "k"], "y")]
    return model(nodes, [("x", ("N", 3, 7, 9))], ["y"], {"w": _x(4, 3, 3, 2), "b": _x(4),
                                                          "k": _x(4, 1, 1)})


CASES = {
    # Conv variants
    "conv_plain": lambda: conv_net(),
    "conv_strided_dilated_pads": lambda: conv_net(strides=[2, 1], dilations=[1, 2],
                                                  pads=[1, 0, 2, 1]),
    "conv_group3": lambda: model(
        [node("Conv", ["x", "w"], "y", group=3, pads=[1, 1, 1, 1])],
        [("x", ("N", 6, 5, 7))], ["y"], {"w": _x(9, 2, 3, 3)}),
    "conv_depthwise": lambda: model(
        [node("Conv", ["x", "w", "b"], "y", group=5, kernel_shape=[3, 3], strides=[2, 2])],
        [("x", ("N", 5, 9, 8))], ["y"], {"w": _x(10, 1, 3, 3), "b": _x(10)}),
    "conv_valid": lambda: conv_net(auto_pad="VALID"),
    # activations
    "relu": lambda: unary("Relu"),
    "sigmoid": lambda: unary("Sigmoid"),
    "tanh": lambda: unary("Tanh"),
    "leaky_relu": lambda: unary("LeakyRelu", alpha=0.3),
    "leaky_relu_default": lambda: unary("LeakyRelu"),
    "hard_sigmoid": lambda: unary("HardSigmoid", alpha=0.3, beta=0.4),
    "hard_swish": lambda: unary("HardSwish"),
    "clip_inputs": lambda: unary("Clip", extra=("lo", "hi"),
                                 inits={"lo": np.float32(-0.5), "hi": np.float32(0.7)}),
    "clip_relu6": lambda: unary("Clip", extra=("lo", "hi"),
                                inits={"lo": np.float32(0), "hi": np.float32(6)}),
    "clip_max_only": lambda: unary("Clip", extra=("", "hi"), inits={"hi": np.float32(0.3)}),
    "clip_attrs_opset7": lambda: unary("Clip", opset=7, min=-0.2, max=0.4),
    "softmax_axis1_opset13": lambda: unary("Softmax", axis=1),
    "softmax_axis1_opset11": lambda: unary("Softmax", opset=11, axis=1),
    "softmax_last_opset11": lambda: unary("Softmax", opset=11, axis=-1),
    "erf": lambda: unary("Erf"),
    "gelu_opset20": lambda: unary("Gelu", opset=20),
    "gelu_tanh_opset20": lambda: unary("Gelu", opset=20, approximate="tanh"),
    "elu": lambda: unary("Elu", alpha=0.7),
    "selu": lambda: unary("Selu"),
    "selu_attrs": lambda: unary("Selu", alpha=1.2, gamma=0.9),
    "celu": lambda: unary("Celu", opset=12, alpha=1.5),
    "softplus": lambda: unary("Softplus"),
    "softsign": lambda: unary("Softsign"),
    "mish_opset18": lambda: unary("Mish", opset=18),
    "thresholded_relu": lambda: unary("ThresholdedRelu", alpha=0.4),
    "shrink": lambda: unary("Shrink", bias=0.2, lambd=0.5),
    "exp": lambda: unary("Exp"),
    "neg": lambda: unary("Neg"),
    "abs": lambda: unary("Abs"),
    "sqrt_of_abs": lambda: _after_abs("Sqrt"),
    "log_of_abs": lambda: _after_abs("Log"),
    "reciprocal_of_abs": lambda: _after_abs("Reciprocal"),
    "pow_scalar": lambda: unary("Pow", extra=("e",), inits={"e": np.float32(2.0)}),
    "pow_scalar_fraction": lambda: _after_abs("Pow", extra=("e",), inits={"e": np.float32(1.5)}),
    "pow_per_channel": lambda: _after_abs("Pow", extra=("e",),
                                          inits={"e": np.abs(_x(4, 1, 1)) + 0.5}),
    "prelu_per_channel": lambda: unary("PRelu", extra=("s",), inits={"s": _x(4, 1, 1)}),
    "prelu_scalar": lambda: unary("PRelu", extra=("s",), inits={"s": np.float32([0.3])}),
    "sum3": lambda: _variadic("Sum"),
    "max3": lambda: _variadic("Max"),
    "min3": lambda: _variadic("Min"),
    "mean3": lambda: _variadic("Mean"),
    "max1": lambda: unary("Max"),
    "log_softmax_axis1_opset13": lambda: unary("LogSoftmax", axis=1),
    "log_softmax_opset11": lambda: unary("LogSoftmax", opset=11, axis=1),
    "lrn": lambda: unary("LRN", size=3, alpha=1e-2, beta=0.75, bias=1.5),
    "constant_of_shape_bias": lambda: model(
        [node("ConstantOfShape", ["s"], "k", value=helper.make_tensor("v", TensorProto.FLOAT,
                                                                      [1], [0.25])),
         node("Conv", ["x", "w", "k"], "y")],
        [("x", ("N", 3, 7, 9))], ["y"], {"w": _x(4, 3, 3, 2), "s": np.array([4], np.int64)},
        opset=9),
    "identity": lambda: unary("Identity"),
    "dropout": lambda: unary("Dropout"),
    # pooling, normalisation
    "max_pool": lambda: unary("MaxPool", kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1]),
    "avg_pool_exclude": lambda: unary("AveragePool", kernel_shape=[3, 3], strides=[2, 2],
                                      pads=[1, 1, 1, 1]),
    "avg_pool_include": lambda: unary("AveragePool", kernel_shape=[3, 3], strides=[2, 2],
                                      pads=[1, 1, 1, 1], count_include_pad=1),
    "global_avg_pool": lambda: unary("GlobalAveragePool"),
    "global_max_pool": lambda: unary("GlobalMaxPool"),
    "reduce_sum_channels_opset13": lambda: unary("ReduceSum", extra=("ax",), opset=13,
                                                 inits={"ax": np.array([1], np.int64)}),
    "reduce_max_h_drop": lambda: unary("ReduceMax", opset=13, axes=[2], keepdims=0),
    "reduce_min_cw": lambda: unary("ReduceMin", opset=13, axes=[1, 3]),
    "reduce_l2_all": lambda: unary("ReduceL2", opset=13, keepdims=0),
    "reduce_l1_hw_opset18": lambda: unary("ReduceL1", opset=18, extra=("ax",),
                                          inits={"ax": np.array([-1, 2], np.int64)}),
    "reduce_sum_square_w": lambda: unary("ReduceSumSquare", opset=13, axes=[3], keepdims=0),
    "reduce_log_sum_exp_c": lambda: unary("ReduceLogSumExp", opset=13, axes=[1]),
    "reduce_mean_keep": lambda: unary("ReduceMean", opset=13, axes=[2, 3]),
    "reduce_mean_drop": lambda: unary("ReduceMean", opset=13, axes=[-1, -2], keepdims=0),
    "reduce_mean_opset18": lambda: unary("ReduceMean", opset=18, extra=("ax",), keepdims=0,
                                         inits={"ax": np.array([2, 3], np.int64)}),
    "batch_norm": lambda: unary(
        "BatchNormalization", extra=("g", "be", "mu", "var"), epsilon=1e-3,
        inits={"g": _x(4), "be": _x(4), "mu": _x(4),
               "var": np.abs(_x(4)) + 0.5}),
    "pad_constant": lambda: unary("Pad", opset=13, extra=("p", "v"), inits={
        "p": np.array([0, 0, 1, 2, 0, 1, 2, 0], np.int64), "v": np.float32(0.75)}),
    "pad_axes_opset18": lambda: unary("Pad", opset=18, extra=("p", "", "axes"), inits={
        "p": np.array([1, 0, 2, 3], np.int64), "axes": np.array([2, -1], np.int64)}),
    "pad_attrs_opset7": lambda: unary("Pad", opset=7, pads=[0, 1, 1, 0, 0, 0, 1, 2],
                                      value=-1.5),
    "pad_input_then_conv": lambda: model(
        [node("Pad", ["x", "p"], "xp"), node("Conv", ["xp", "w"], "y")],
        [("x", ("N", 3, 7, 9))], ["y"],
        {"p": np.array([0, 0, 2, 1, 0, 0, 0, 1], np.int64), "w": _x(2, 3, 3, 3)}),
    "transpose_perm": lambda: unary("Transpose", perm=[0, 2, 1, 3]),
    "flatten_axis2": lambda: unary("Flatten", axis=2, batch=3),  # merges the batch: static
    "cast_float": lambda: unary("Cast", to=TensorProto.FLOAT),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_operator_matches_onnxruntime(case):
    proto = CASES[case]()
    check(proto, *inputs_for(proto, RNG, batch=3))


def test_lrn_even_size_follows_the_spec_window():
    # ONNX Runtime refuses an even size (and onnx.reference's LRN loops over the batch, not the
    # channels), so the expected value is the spec's formula written out: channel c sums the
    # squares of channels c - floor((size - 1) / 2) .. c + ceil((size - 1) / 2)
    x = _x(2, 5, 3, 4)
    proto = model([node("LRN", ["x"], "y", size=4, alpha=0.3, beta=0.6, bias=1.2)],
                  [("x", ("N", 5, 3, 4))], ["y"])
    want = np.empty_like(x, dtype=np.float64)
    for c in range(5):
        window = x[:, max(0, c - 1):min(5, c + 3)].astype(np.float64)
        want[:, c] = x[:, c] / (1.2 + 0.3 / 4 * (window ** 2).sum(axis=1)) ** 0.6
    from onnx_build import assert_close
    assert_close(cnnc.compile(load_onnx(proto), target="numpy")(x), want, what="lrn size 4")


# ---- binary arithmetic with broadcasting -------------------------------------------------------
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("shape", [(4, 1, 1), (1, 4, 1, 1), (), (9,), (7, 1), (1, 1, 7, 9)])
def test_binary_broadcast_constant(op, shape):
    c = np.abs(_x(*shape)) + 0.5 if op == "Div" else _x(*shape)
    proto = model([node("Conv", ["x", "w"], "c", pads=[1, 1, 1, 1]),
                   node(op, ["c", "k"], "y")],
                  [("x", ("N", 3, 7, 9))], ["y"], {"w": _x(4, 3, 3, 3), "k": c})
    m = check(proto, _x(2, 3, 7, 9))
    assert "transpose" not in ops(m.to_graph())[1:-1]


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_binary_two_computed_tensors(op):
    nodes = [node("Conv", ["x", "w1"], "a", pads=[1, 1, 1, 1]),
             node("Conv", ["x", "w2"], "b0", pads=[1, 1, 1, 1]),
             node("Sigmoid", ["b0"], "b"),
             node(op, ["b", "a"], "y")]
    check(model(nodes, [("x", ("N", 3, 6, 5))], ["y"],
                {"w1": _x(4, 3, 3, 3), "w2": _x(4, 3, 3, 3)}), _x(2, 3, 6, 5))


def test_binary_constant_first_and_plain_rank2():
    nodes = [node("Flatten", ["x"], "f"), node("Sub", ["k", "f"], "y")]
    check(model(nodes, [("x", ("N", 2, 3, 2))], ["y"], {"k": _x(12)}), _x(3, 2, 3, 2))


# ---- Gemm, MatMul, Concat, Flatten, Reshape ----------------------------------------------------
@pytest.mark.parametrize("trans_a,trans_b,alpha,beta,cshape", [
    (0, 0, 1.0, 1.0, (5,)), (0, 1, 0.5, 2.0, (1, 5)), (1, 0, 1.5, 0.5, ()),
    (1, 1, 1.0, 1.0, (3, 5)), (0, 1, 1.0, 0.0, (5,))])
def test_gemm(trans_a, trans_b, alpha, beta, cshape):
    a_shape = (7, 3) if trans_a else (3, 7)
    if trans_a:  # A must be computed with a static batch: transpose a rank-2 graph input
        inputs = [("x", a_shape)]
    else:
        inputs = [("x", ("N", 7))]
    b = _x(5, 7) if trans_b else _x(7, 5)
    proto = model([node("Gemm", ["x", "b", "c"], "y", transA=trans_a, transB=trans_b,
                        alpha=alpha, beta=beta)], inputs, ["y"], {"b": b, "c": _x(*cshape)})
    check(proto, _x(*a_shape))


def test_gemm_computed_b_and_c():
    nodes = [node("Relu", ["x"], "r"),
             node("Gemm", ["x", "r", "x"], "y", transB=1, alpha=0.7, beta=1.3)]
    check(model(nodes, [("x", (4, 4))], ["y"]), _x(4, 4))


def test_matmul_constant_and_batched():
    nodes = [node("MatMul", ["x", "w"], "a"),
             node("Reshape", ["a", "s"], "r"),
             node("MatMul", ["r", "r2"], "y"),
             node("Transpose", ["r"], "r2", perm=[0, 2, 1])]
    nodes = [nodes[0], nodes[1], nodes[3], nodes[2]]
    check(model(nodes, [("x", ("N", 6))], ["y"],
                {"w": _x(6, 12), "s": np.array([0, 3, 4], np.int64)}), _x(2, 6))


def test_concat_channels_and_flatten_reshape():
    nodes = [node("Conv", ["x", "w1"], "a", pads=[1, 1, 1, 1]),
             node("Conv", ["x", "w2"], "b", pads=[1, 1, 1, 1]),
             node("Concat", ["a", "b"], "c", axis=1),
             node("Flatten", ["c"], "f"),
             node("Reshape", ["c", "s"], "r"),
             node("Relu", ["f"], "y1"),
             node("Relu", ["r"], "y2")]
    check(model(nodes, [("x", ("N", 3, 5, 4))], ["y1", "y2"],
                {"w1": _x(2, 3, 3, 3), "w2": _x(3, 3, 3, 3),
                 "s": np.array([0, 5, -1, 4], np.int64)}), _x(2, 3, 5, 4))


def test_concat_spatial_axis_with_constant():
    nodes = [node("Conv", ["x", "w"], "a", pads=[1, 1, 1, 1]),
             node("Concat", ["a", "k"], "y", axis=2)]
    check(model(nodes, [("x", (2, 3, 5, 4))], ["y"],
                {"w": _x(2, 3, 3, 3), "k": _x(2, 2, 3, 4)}), _x(2, 3, 5, 4))


def test_constant_node_weights():
    w = _x(4, 3, 1, 1)
    nodes = [node("Constant", [], "w", value=helper.make_tensor(
        "w", TensorProto.FLOAT, w.shape, w.ravel())),
        node("Constant", [], "s", value_floats=[0.5, 1.5, -2.0, 3.0]),
        node("Constant", [], "shape", value_ints=[4, 1, 1]),
        node("Reshape", ["s", "shape"], "s4"),
        node("Conv", ["x", "w"], "c"),
        node("Mul", ["c", "s4"], "y")]
    check(model(nodes, [("x", ("N", 3, 5, 5))], ["y"]), _x(2, 3, 5, 5))


def test_squeeze_unsqueeze_computed():
    nodes = [node("GlobalAveragePool", ["x"], "g"),
             node("Squeeze", ["g", "ax"], "s"),
             node("Unsqueeze", ["s", "ax1"], "u"),
             node("Relu", ["u"], "y")]
    check(model(nodes, [("x", ("N", 3, 5, 5))], ["y"],
                {"ax": np.array([2, 3], np.int64), "ax1": np.array([1], np.int64)}),
          _x(2, 3, 5, 5))


def test_shape_gather_chain_folds_to_flatten():
    """The chain exporters emit for ``x.view(x.size(0), -1)`` folds at import time."""
    nodes = [node("Conv", ["x", "w"], "c"),
             node("Shape", ["c"], "sh"),
             node("Gather", ["sh", "i0"], "n", axis=0),
             node("Unsqueeze", ["n", "ax"], "n1"),
             node("Concat", ["n1", "m1"], "target", axis=0),
             node("Reshape", ["c", "target"], "f"),
             node("Relu", ["f"], "y")]
    m = check(model(nodes, [("x", ("N", 3, 6, 5))], ["y"],
                    {"w": _x(4, 3, 3, 3), "i0": np.array(0, np.int64),
                     "ax": np.array([0], np.int64), "m1": np.array([-1], np.int64)}),
              _x(2, 3, 6, 5))
    assert ops(m.to_graph()) == ["transpose", "conv2d", "transpose", "flatten", "relu"]


def test_cast_constant_and_slice_shape():
    nodes = [node("Shape", ["x"], "sh"),
             node("Slice", ["sh", "st", "en"], "hw"),
             node("Cast", ["hw"], "hwf", to=TensorProto.FLOAT),
             node("Div", ["x", "hwf"], "y")]
    check(model(nodes, [("x", ("N", 3, 4, 4))], ["y"],
                {"st": np.array([2], np.int64), "en": np.array([3], np.int64)}), _x(2, 3, 4, 4))


def test_size_folds_to_a_constant_and_refuses_a_dynamic_batch():
    """LayerNormalization's expanded form divides by ``Size`` of a shape slice."""
    nodes = [node("Size", ["x"], "n"), node("Cast", ["n"], "nf", to=TensorProto.FLOAT),
             node("Div", ["x", "nf"], "y")]
    check(model(nodes, [("x", (2, 3, 4, 5))], ["y"]), _x(2, 3, 4, 5))
    with pytest.raises(cnnc.CnncError, match=r"Size.*symbolic dims \['N', 3, 4, 5\]"):
        load_onnx(model(nodes, [("x", ("N", 3, 4, 5))], ["y"]))


def test_batch_norm_rank2():
    nodes = [node("BatchNormalization", ["x", "g", "b", "m", "v"], "y")]
    check(model(nodes, [("x", ("N", 6))], ["y"],
                {"g": _x(6), "b": _x(6), "m": _x(6), "v": np.abs(_x(6)) + 0.1}), _x(5, 6))


def test_training_mode_batch_norm_of_constant_weights_folds():
    """Weight standardisation as NF-ResNets export it: the conv's weights pass through a
    training-mode BatchNormalization (their own statistics per output channel), folded at
    import; a computed input is refused."""
    rng = np.random.default_rng(21)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 2 + 0.5
    gain = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    nodes = [node("Reshape", ["w", "s1"], "w1"),
             node("BatchNormalization", ["w1", "gain", "zero", "zero", "one"], "w2",
                  training_mode=1, epsilon=1e-4),
             node("Reshape", ["w2", "s2"], "ws"),
             node("Conv", ["x", "ws"], "y", pads=[1, 1, 1, 1])]
    inits = {"w": w, "s1": np.array([1, 4, -1], np.int64), "gain": gain,
             "zero": np.zeros(4, np.float32), "one": np.ones(4, np.float32),
             "s2": np.array([4, 3, 3, 3], np.int64)}
    proto = model(nodes, [("x", ("N", 3, 6, 5))], [("y", ("N", 4, 6, 5))], inits, opset=15)
    flat = w.reshape(4, -1).astype(np.float64)
    std = (flat - flat.mean(1, keepdims=True)) / np.sqrt(flat.var(1, keepdims=True) + 1e-4)
    ws = (std * gain[:, None]).reshape(w.shape).astype(np.float32)
    plain = model([node("Conv", ["x", "ws"], "y", pads=[1, 1, 1, 1])], [("x", ("N", 3, 6, 5))],
                  [("y", ("N", 4, 6, 5))], {"ws": ws})
    check(proto, _x(2, 3, 6, 5), oracle=lambda p, *xs: run_ort(plain, *xs))
    computed = [node("BatchNormalization", ["x", "gain", "zero", "zero", "one"], "y",
                     training_mode=1, name="bn")]
    with pytest.raises(cnnc.CnncError, match=r"bn.*training_mode=1 \(only inference\)"):
        load_onnx(model(computed, [("x", ("N", 4, 3, 3))], [("y", ("N", 4, 3, 3))], inits,
                        opset=15))


def test_tensorflow_same_padding_computed_in_the_graph_folds():
    """TensorFlow-style SAME padding as timm's ``tf_`` models export it: the pad of a
    stride-2 conv computed from the input's static H and W (Shape, Gather, Cast, Div, Ceil,
    Mul, Sub, Max), then Pad and an unpadded Conv; the arithmetic folds at import."""
    f = TensorProto.FLOAT
    nodes = [node("Shape", ["x"], "shp"), node("Gather", ["shp", "hw_axes"], "hw", axis=0),
             node("Cast", ["hw"], "hwf", to=f), node("Div", ["hwf", "two"], "q"),
             node("Ceil", ["q"], "oc"), node("Sub", ["oc", "one"], "o1"),
             node("Mul", ["o1", "two"], "o2"), node("Add", ["o2", "three"], "need"),
             node("Sub", ["need", "hwf"], "tot"), node("Max", ["tot", "zero"], "totp"),
             node("Div", ["totp", "two"], "half"), node("Floor", ["half"], "lo"),
             node("Sub", ["totp", "lo"], "hi"),
             node("Concat", ["z2", "lo", "z2", "hi"], "padsf", axis=0),
             node("Cast", ["padsf"], "pads", to=TensorProto.INT64),
             node("Pad", ["x", "pads"], "xp"),
             node("Conv", ["xp", "w"], "y", strides=[2, 2])]
    inits = {"hw_axes": np.array([2, 3], np.int64), "two": np.float32(2.0),
             "one": np.float32(1.0), "three": np.float32(3.0), "zero": np.float32(0.0),
             "z2": np.zeros(2, np.float32), "w": _x(4, 3, 3, 3)}
    proto = model(nodes, [("x", ("N", 3, 7, 10))], [("y", ("N", 4, 4, 5))], inits)
    m = check(proto, _x(2, 3, 7, 10))
    assert {"pad", "conv2d"} <= {n.op for n in m.to_graph().nodes}
    assert not {"ceil", "floor", "div", "cast"} & {n.op for n in m.to_graph().nodes}


def test_an_unconverted_operator_on_constants_is_evaluated_at_import():
    """EdgeNeXt's positional encoding: CumSum of a constant mask, Sin and Cos of it (no
    converters) are computed at import by ONNX's reference implementation; the graph keeps
    only their result. On a computed input they are still refused, by name."""
    rng = np.random.default_rng(11)
    ones = np.ones((1, 3, 4, 5), np.float32)
    nodes = [node("CumSum", ["ones", "ax2"], "cy"), node("CumSum", ["ones", "ax3"], "cx"),
             node("Div", ["cy", "four"], "ny"), node("Sin", ["ny"], "sy"),
             node("Cos", ["cx"], "cosx"), node("Add", ["sy", "cosx"], "pos"),
             node("Add", ["x", "pos"], "y")]
    inits = {"ones": ones, "ax2": np.array(2, np.int64), "ax3": np.array(3, np.int64),
             "four": np.float32(4.0)}
    proto = model(nodes, [("x", ("N", 3, 4, 5))], [("y", ("N", 3, 4, 5))], inits)
    x = rand(rng, 2, 3, 4, 5)
    m = check(proto, x)
    assert not {"cumsum", "sin", "cos"} & set(ops(m.to_graph()))
    pos = np.sin(np.cumsum(ones, 2, dtype=np.float64) / 4) + np.cos(np.cumsum(ones, 3,
                                                                              dtype=np.float64))
    want = x + pos
    y = cnnc.compile(m, target="cpu")(x)
    assert np.abs(y - want).max() / np.abs(want).max() < 1e-6
    computed = model([node("CumSum", ["x", "ax2"], "y", name="scan")], [("x", ("N", 3, 4, 5))],
                     [("y", ("N", 3, 4, 5))], {"ax2": np.array(2, np.int64)})
    with pytest.raises(cnnc.UnsupportedError, match=r"'scan' \(CumSum\).*operator 'CumSum'"):
        load_onnx(computed)


def test_random_operators_and_failing_constant_nodes_are_not_evaluated():
    f = TensorProto.FLOAT
    noisy = model([node("RandomNormalLike", ["c"], "r", name="noise", dtype=f),
                   node("Add", ["x", "r"], "y")], [("x", (1, 2))], [("y", (1, 2))],
                  {"c": np.zeros((1, 2), np.float32)})
    with pytest.raises(cnnc.UnsupportedError, match=r"'noise'.*RandomNormalLike"):
        load_onnx(noisy)
    # an axis out of range: ONNX's reference refuses it, and the error names the node
    bad = model([node("CumSum", ["c", "ax"], "s", name="bad_axis"), node("Add", ["x", "s"], "y")],
                [("x", (1, 2))], [("y", (1, 2))],
                {"c": np.ones((1, 2), np.float32), "ax": np.array(5, np.int64)}, infer=False)
    with pytest.raises(cnnc.UnsupportedError, match=r"'bad_axis'.*reference implementation") as e:
        load_onnx(bad)
    assert e.value.__context__ is None or e.value.__suppress_context__   # no chained traceback


@pytest.mark.parametrize("attrs", [
    {"pads": [1, 2], "strides": [2], "dilations": [2], "group": 2},
    {"auto_pad": "SAME_UPPER", "strides": [2]},
    {},
])
def test_one_dimensional_conv(attrs):
    """A 1-D Conv runs as the 2-D conv of rows one pixel high, and gives back (N, C, L)."""
    rng = np.random.default_rng(12)
    w = rand(rng, 6, 4 // attrs.get("group", 1), 3)
    proto = model([node("Conv", ["x", "w", "b"], "y", **attrs)], [("x", ("N", 4, 11))], ["y"],
                  {"w": w, "b": rand(rng, 6)})
    check(proto, rand(rng, 3, 4, 11))


@pytest.mark.parametrize("attrs", [
    {"strides": [2], "pads": [1, 0], "output_padding": [1], "group": 2},
    {"strides": [3], "output_shape": [20]},
    {"auto_pad": "SAME_UPPER", "strides": [2], "dilations": [2]},
])
def test_one_dimensional_transposed_conv(attrs):
    rng = np.random.default_rng(15)
    w = rand(rng, 4, 6 // attrs.get("group", 1), 3)
    proto = model([node("ConvTranspose", ["x", "w", "b"], "y", **attrs)],
                  [("x", ("N", 4, 7))], ["y"], {"w": w, "b": rand(rng, 6)})
    x = rand(rng, 2, 4, 7)
    m = check(proto, x)
    want = run_ort(proto, x)[0].astype(np.float64)
    y = cnnc.compile(m, target="cpu")(x)
    assert np.abs(y - want).max() / np.abs(want).max() < 1e-5


def test_efficient_channel_attention_on_cpu():
    """timm's ECA block: the pooled channels as a sequence, a 5-tap 1-D conv along them, a
    sigmoid gate on the feature map."""
    rng = np.random.default_rng(13)
    nodes = [node("GlobalAveragePool", ["x"], "p"), node("Reshape", ["p", "seq"], "s"),
             node("Conv", ["s", "w"], "c", pads=[2, 2]), node("Sigmoid", ["c"], "g"),
             node("Reshape", ["g", "back"], "gate"), node("Mul", ["x", "gate"], "y")]
    inits = {"seq": np.array([2, 1, -1], np.int64), "w": rand(rng, 1, 1, 5),
             "back": np.array([2, -1, 1, 1], np.int64)}
    proto = model(nodes, [("x", (2, 16, 6, 6))], [("y", (2, 16, 6, 6))], inits)
    x = rand(rng, 2, 16, 6, 6)
    m = check(proto, x)
    want = run_ort(proto, x)[0].astype(np.float64)
    y = cnnc.compile(m, target="cpu")(x)
    assert np.abs(y - want).max() / np.abs(want).max() < 1e-5


def test_one_dimensional_conv_attributes_are_checked():
    w = rand(np.random.default_rng(14), 2, 2, 3)
    for attrs, words in (({"strides": [1, 1]}, "strides=[1, 1] of a 1-D Conv must have 1 value"),
                         ({"pads": [1]}, "pads=[1] of a 1-D Conv must have 2 values")):
        proto = model([node("Conv", ["x", "w"], "y", name="c1", **attrs)], [("x", (1, 2, 9))],
                      [("y", (1, 2, 7))], {"w": w}, infer=False)
        with pytest.raises(cnnc.CnncError, match=r"'c1'.*" + re.escape(words)):
            load_onnx(proto)
    empty = node("ConvTranspose", ["x", "w"], "y", name="t1")
    empty.attribute.append(helper.make_attribute("output_shape", [],
                                                 attr_type=AttributeProto.INTS))
    proto = model([empty], [("x", (1, 2, 9))], [("y", (1, 2, 11))], {"w": w}, infer=False)
    with pytest.raises(cnnc.CnncError, match=r"'t1'.*output_shape=\[\] of a 1-D "
                                             r"ConvTranspose must have a value"):
        load_onnx(proto)
