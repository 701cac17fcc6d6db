"""Every registered op: the type ``graph.add`` infers is the shape its reference produces, and the
reference gives the same numbers in float32 as in float64 (within fp32 tolerance).

:data:`CASES` must name every op of the registry: registering an op without adding an example
invocation here fails :func:`test_every_registered_op_has_cases`.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnc.backends.reference import evaluate
from cnnc.ir import Graph, verify
from cnnc.ops import REGISTRY
from strategies import conv_configs, pool_configs, rng_array, seeds

X4 = ("N", 6, 5, 4)
ACT = [((X4,), {}), (((2, 3),), {})]

#: op -> [(operand shapes, attrs, indices of operands that must be positive)]
CASES = {
    "conv2d": [((X4, (3, 3, 4, 6)), {"padding": "same"}),
               ((X4, (2, 3, 2, 6), (6,)), {"strides": 2, "dilation": (2, 1), "groups": 2}),
               (((2, 7, 7, 3), (3, 3, 1, 6)), {"groups": 3, "padding": ((1, 0), (2, 1))})],
    "conv2d_fused": [((X4, (3, 3, 4, 6), (6,)), {"epilogue": ["relu"], "padding": "same"}),
                     ((X4, (1, 1, 4, 3), (3,), (3,), (3,), ("N", 6, 5, 3)),
                      {"epilogue": ["scale_shift", "add", ("leaky_relu", 0.1)]})],
    "dense": [((("N", 5), (5, 3)), {}), (((2, 5), (5, 3), (3,)), {})],
    "dense_fused": [((("N", 5), (5, 3), (3,)), {"epilogue": [("clip", 0, 1)]}),
                    (((2, 5), (5, 3), (3,), (2, 3)), {"epilogue": ["add", "sigmoid"]})],
    "matmul": [(((2, 3, 4), (4, 5)), {}), (((1, 3, 4), (2, 4, 5)), {})],
    "softmax": [(((2, 3),), {}), ((X4,), {"axis": 1})],
    "max_pool2d": [((X4,), {}), ((X4,), {"pool_size": 3, "strides": 2, "padding": "same"}),
                   ((X4,), {"pool_size": 3, "strides": 2, "padding": 1, "ceil_mode": True})],
    "avg_pool2d": [((X4,), {}), ((X4,), {"pool_size": 3, "strides": 1, "padding": "same"}),
                   ((X4,), {"pool_size": 3, "strides": 2, "padding": 1, "ceil_mode": True,
                            "count_include_pad": True})],
    "global_avg_pool": [((X4,), {}), ((X4,), {"keepdims": True})],
    "global_max_pool": [((X4,), {}), ((X4,), {"keepdims": True})],
    "batch_norm": [((X4, (4,), (4,), (4,), (4,)), {}, {4}),
                   ((X4, (6,), (6,), (6,), (6,)), {"axis": 1, "epsilon": 1e-5}, {4})],
    "scale_shift": [((X4, (4,), (4,)), {})],
    "bias_add": [((X4, (4,)), {}), (((2, 3), (3,)), {})],
    "add": [((X4, (5, 4)), {}), (((2, 1), (1, 3)), {})],
    "sub": [((X4, X4), {})],
    "mul": [((X4, (4,)), {})],
    "div": [((X4, (1, 1, 4)), {}, {1})],
    "identity": ACT, "dropout": ACT, "relu": ACT, "relu6": ACT, "sigmoid": ACT, "tanh": ACT,
    "hard_swish": ACT, "hard_sigmoid": ACT, "leaky_relu": ACT + [((X4,), {"alpha": 0.01})],
    "clip": [((X4,), {"min": -0.5, "max": 0.5})],
    "erf": ACT, "gelu": ACT, "gelu_tanh": ACT, "softplus": ACT, "softsign": ACT, "mish": ACT,
    "exp": ACT, "neg": ACT, "abs": ACT, "elu": ACT + [((X4,), {"alpha": 0.5})],
    "floor": ACT, "ceil": ACT, "round": ACT,
    "selu": ACT, "celu": [((X4,), {"alpha": 2.0})], "swish": ACT + [((X4,), {"alpha": 1.7})],
    "thresholded_relu": ACT, "shrink": ACT + [((X4,), {"bias": 0.1, "lambd": 0.3})],
    "sqrt": [((X4,), {}, {0})], "log": [((X4,), {}, {0})], "reciprocal": [((X4,), {}, {0})],
    "pow_scalar": [((X4,), {"exponent": 2.0}), ((X4,), {"exponent": 1.5}, {0})],
    "pow": [((X4, (4,)), {}, {0})], "maximum": [((X4, (5, 4)), {})],
    "minimum": [((X4, X4), {})], "prelu": [((X4, (4,)), {}), ((X4, (6, 1, 1)), {})],
    "log_softmax": [(((2, 3),), {}), ((X4,), {"axis": 1})],
    "reduce": [((X4,), {"kind": "sum", "axes": (1, 2)}),
               ((X4,), {"kind": "l2", "axes": (-1,), "keepdims": True}),
               ((X4,), {"kind": "log_sum_exp", "axes": (0, 3)}),
               (((2, 3),), {"kind": "max", "axes": (0, 1)})],
    "lrn": [((X4,), {"size": 3}), ((X4,), {"size": 4, "alpha": 0.1, "beta": 0.5, "bias": 2.0})],
    "flatten": [((X4,), {}), (((2, 3, 4),), {"axis": 2})],
    "reshape": [((X4,), {"shape": (0, -1)}), ((X4,), {"shape": (-1, 5, 2, 2, 6)}),
                (((2, 12),), {"shape": (3, -1, 2)})],
    "concat": [((X4, ("N", 6, 5, 2)), {}), (((2, 3), (4, 3), (1, 3)), {"axis": 0})],
    "pad": [((X4,), {"pads": ((0, 0), (1, 2), (0, 1), (0, 0)), "value": -1.5})],
    "transpose": [((X4,), {"perm": (0, 3, 1, 2)}), (((2, 3, 4),), {"perm": (2, 0, 1)})],
}
CASES.update({  # normalisation, hardmax, Lp pooling, transposed convolution
    "layer_norm": [((X4, (4,), (4,)), {"axes": (-1,), "epsilon": 1e-3}),
                   ((X4, (5, 4), (5, 4)), {"axes": (2, 3)})],
    "group_norm": [((X4, (4,), (4,)), {"groups": 2, "epsilon": 1e-4})],
    "hardmax": [((X4,), {"axis": 2}), (((2, 3),), {})],
    "lp_pool2d": [((X4,), {"pool_size": 3, "strides": 2, "padding": "same", "p": 2.0}),
                  ((X4,), {"pool_size": 2, "padding": "valid", "p": 1.0})],
    "global_lp_pool": [((X4,), {"p": 3.0, "keepdims": True})],
    "conv2d_transpose": [((X4, (3, 2, 4, 3), (6,)),
                          {"strides": (2, 3), "padding": ((1, 0), (0, 2)),
                           "output_padding": (1, 0), "dilation": (1, 2), "groups": 2}),
                         ((X4, (2, 2, 4, 5)), {"strides": 2})],
    "conv2d_transpose_fused": [((X4, (2, 2, 4, 4), (4,), (4,), (4,), ("N", 12, 10, 4)),
                                {"strides": 2,
                                 "epilogue": ["scale_shift", "add", ("leaky_relu", 0.1)]})],
})


class B(tuple):
    """The shape of a bool operand."""


XB = B(X4)
CASES.update({  # comparisons (bool results), logic on bool operands, where
    **{op: [((X4, (5, 4)), {}), (((4, 1), (1, 6)), {})]
       for op in ("less", "greater", "equal", "less_equal", "greater_equal")},
    **{op: [((XB, B((5, 4))), {})] for op in ("logical_and", "logical_or", "logical_xor")},
    "logical_not": [((XB,), {})],
    "where": [((XB, X4, (5, 1)), {}), ((B((2, 1)), (1, 3), (2, 3)), {})],
})
CASES.update({  # slicing, gathering, tiling, broadcasting, resampling
    "slice": [((X4,), {"starts": (-1, 1), "ends": (-(2 ** 62), 5), "axes": (3, 1),
                       "steps": (-2, 3)}),
              (((2, 7),), {"starts": (9,), "ends": (-9,), "axes": (1,), "steps": (-1,)})],
    "take": [((X4,), {"axis": 3, "indices": (3, -1, 0), "indices_shape": (3,)}),
             ((X4,), {"axis": 1, "indices": (2,), "indices_shape": ()}),
             (((2, 5),), {"axis": 1, "indices": (0, 4, 1, 1), "indices_shape": (2, 2)})],
    "tile": [((X4,), {"repeats": (1, 2, 1, 3)})],
    "broadcast_to": [((("N", 1, 5, 1),), {"shape": (1, 6, 5, 4)}),
                     (((3, 1),), {"shape": (2, 3, 4)})],
    "resize": [((X4,), {"size": (12, 7), "scales": (2.0, 1.4), "mode": "linear"}),
               ((X4,), {"size": (3, 2), "scales": (0.5, 0.4), "coordinate_mode": "asymmetric",
                        "nearest_mode": "ceil"})],
})


def _cases():
    for op, cases in sorted(CASES.items()):
        for i, case in enumerate(cases):
            yield pytest.param(op, *case[:2], case[2] if len(case) > 2 else set(),
                               id=f"{op}-{i}")


def test_every_registered_op_has_cases():
    missing = sorted(set(REGISTRY) - set(CASES))
    extra = sorted(set(CASES) - set(REGISTRY))
    assert not missing, f"ops without a shape-rule case in CASES: {missing}"
    assert not extra, f"CASES names ops that are not registered: {extra}"


def _arrays(shapes, positive, batch, seed):
    out = []
    for i, s in enumerate(shapes):
        a = rng_array(seed + i, tuple(batch if d == "N" else d for d in s))
        out.append(a > 0 if isinstance(s, B) else np.abs(a) + 0.5 if i in positive else a)
    return out


@pytest.mark.parametrize("op,shapes,attrs,positive", list(_cases()))
def test_inferred_type_is_the_reference_shape(op, shapes, attrs, positive):
    g = Graph(op)
    ins = [g.add_input(s, "bool" if isinstance(s, B) else "float32", name=f"in{i}")
           for i, s in enumerate(shapes)]
    y = g.add(op, ins, attrs)
    g.set_outputs(y)
    verify(g)
    for batch, seed in ((1, 10), (3, 20)):
        xs = _arrays(shapes, positive, batch, seed)
        y64 = evaluate(g, xs, np.float64)[0]
        assert y64.shape == y.type.concrete({"N": batch}), (op, attrs)
        y32 = evaluate(g, xs, np.float32)[0]
        if y.type.dtype == "bool":
            assert y64.dtype == y32.dtype == np.bool_
            np.testing.assert_array_equal(y32, y64)
            if op != "equal":   # random floats are (almost) never equal
                assert 0 < y64.sum() < y64.size, "a case whose result is all one value"
            continue
        assert y64.dtype == np.float64
        assert y32.dtype == np.float32 and y32.shape == y64.shape
        scale = max(1.0, float(np.abs(y64).max()))
        np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=1e-5 * scale)


@settings(deadline=None, max_examples=40)
@given(conv_configs(max_hw=9), seeds, st.booleans())
def test_conv_rule_matches_reference_on_random_configs(cfg, seed, symbolic):
    g = Graph("conv")
    x = g.add_input(("N", *cfg["x_shape"][1:]) if symbolic else cfg["x_shape"])
    w = g.constant(rng_array(seed + 1, cfg["w_shape"]))
    y = g.add("conv2d", [x, w], {k: cfg[k] for k in ("strides", "padding", "dilation", "groups")})
    g.set_outputs(y)
    want = cfg["out_shape"]
    assert y.type.shape == (("N",) + want[1:] if symbolic else want)
    out = evaluate(g, [rng_array(seed, cfg["x_shape"])])[0]
    assert out.shape == want


@settings(deadline=None, max_examples=40)
@given(pool_configs(max_hw=9), seeds, st.sampled_from(["max_pool2d", "avg_pool2d"]))
def test_pool_rule_matches_reference_on_random_configs(cfg, seed, op):
    g = Graph(op)
    x = g.add_input(("N", *cfg["x_shape"][1:]))
    attrs = {k: cfg[k] for k in ("pool_size", "strides", "padding", "dilation", "ceil_mode")}
    y = g.add(op, [x], attrs)
    g.set_outputs(y)
    assert y.type.shape == ("N", *cfg["out_shape"][1:])
    out = evaluate(g, [rng_array(seed, cfg["x_shape"])])[0]
    assert out.shape == cfg["out_shape"]
    assert np.isfinite(out).all()
