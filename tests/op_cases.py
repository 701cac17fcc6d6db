"""One small graph per registry op, built with random weights: what the backend tests run."""

from __future__ import annotations

import numpy as np

from cnnc.ir import Graph


def _g(rng, shape=("N", 7, 6, 4)):
    g = Graph("case")
    return g, g.add_input(shape, name="x")


def _c(g, rng, *shape):
    return g.constant(rng.standard_normal(shape).astype(np.float32))


def build(op: str, rng) -> Graph:
    """A graph whose output depends on one ``op`` node (plus what it needs around it)."""
    g, x = _g(rng)
    if op in ("relu", "relu6", "sigmoid", "tanh", "hard_swish", "identity"):
        y = g.add(op, [x])
    elif op == "clip":
        y = g.add(op, [x], {"min": -0.5, "max": 0.7})
    elif op == "leaky_relu":
        y = g.add(op, [x], {"alpha": 0.15})
    elif op == "hard_sigmoid":
        y = g.add(op, [x], {"alpha": 0.3, "beta": 0.4})
    elif op in ("erf", "gelu", "gelu_tanh", "softplus", "softsign", "mish", "exp", "neg", "abs",
                "selu", "swish", "thresholded_relu"):
        y = g.add(op, [x])
    elif op in ("elu", "celu"):
        y = g.add(op, [x], {"alpha": 0.6})
    elif op == "shrink":
        y = g.add(op, [x], {"bias": 0.2, "lambd": 0.4})
    elif op in ("sqrt", "log", "reciprocal"):  # on positive values: finite results
        y = g.add(op, [g.add("add", [g.add("abs", [x]), g.constant(np.float32(0.5))])])
    elif op in ("floor", "ceil", "round"):   # x * 4 (exact): several integers and ties
        y = g.add(op, [g.add("mul", [x, g.constant(np.float32(4.0))])])
    elif op == "pow_scalar":
        y = g.add(op, [g.add("abs", [x])], {"exponent": 1.5})
        y = g.add(op, [y], {"exponent": 3.0})
    elif op == "pow":
        y = g.add(op, [g.add("abs", [x]), g.constant(rng.uniform(0.5, 2.0, (4,)).astype(
            np.float32))])
    elif op in ("maximum", "minimum"):
        y = g.add(op, [x, _c(g, rng, 6, 1)])
    elif op == "prelu":
        y = g.add(op, [x, _c(g, rng, 4)])
    elif op == "log_softmax":
        y = g.add(op, [x], {"axis": 2})
    elif op == "reduce":
        y = g.add(op, [x], {"kind": "max", "axes": (2,), "keepdims": True})
        y = g.add(op, [g.add("add", [x, y])], {"kind": "log_sum_exp", "axes": (1, 3)})
    elif op == "lrn":
        y = g.add(op, [g.add("mul", [x, g.constant(np.float32(3.0))])],
                  {"size": 3, "alpha": 0.5, "beta": 0.75, "bias": 1.5})
    elif op == "dropout":
        y = g.add(op, [x], {"rate": 0.3})
    elif op in ("add", "sub", "mul"):
        y = g.add(op, [x, _c(g, rng, 6, 1)])          # broadcast over H... and C
        y = g.add(op, [y, _c(g, rng, 4)])
        y = g.add(op, [y, x])
    elif op == "div":
        y = g.add(op, [x, g.constant(rng.uniform(0.5, 2.0, (1, 1, 6, 4)).astype(np.float32))])
    elif op == "bias_add":
        y = g.add(op, [x, _c(g, rng, 4)])
    elif op == "scale_shift":
        y = g.add(op, [x, _c(g, rng, 4), _c(g, rng, 4)])
    elif op == "batch_norm":
        y = g.add(op, [x, _c(g, rng, 4), _c(g, rng, 4), _c(g, rng, 4),
                       g.constant(rng.uniform(0.2, 2, 4).astype(np.float32))], {"epsilon": 1e-2})
    elif op == "conv2d":
        y = g.add(op, [x, _c(g, rng, 3, 2, 2, 6)], {"strides": (2, 1), "padding": "same",
                                                   "groups": 2, "dilation": (1, 2)})
    elif op == "conv2d_fused":
        y = g.add(op, [x, _c(g, rng, 3, 3, 4, 4), _c(g, rng, 4), _c(g, rng, 4), _c(g, rng, 4),
                       x], {"padding": "same", "epilogue": ["scale_shift", "add",
                                                            ("leaky_relu", 0.1)]})
    elif op in ("max_pool2d", "avg_pool2d"):
        y = g.add(op, [x], {"pool_size": 3, "strides": 2, "padding": "same"})
    elif op in ("global_avg_pool", "global_max_pool"):
        y = g.add(op, [x], {"keepdims": op == "global_max_pool"})
    elif op in ("flatten", "reshape"):
        y = g.add(op, [x], {"axis": 1} if op == "flatten" else {"shape": (0, 42, -1)})
        y = g.add("relu", [y])
    elif op in ("dense", "dense_fused", "softmax", "matmul"):
        f = g.add("flatten", [x])
        if op == "dense":
            y = g.add(op, [f, _c(g, rng, 168, 5), _c(g, rng, 5)])
        elif op == "dense_fused":
            r = g.add("dense", [f, _c(g, rng, 168, 5)])
            y = g.add(op, [f, _c(g, rng, 168, 5), _c(g, rng, 5), r],
                      {"epilogue": ["add", "sigmoid"]})
        elif op == "matmul":
            y = g.add(op, [f, _c(g, rng, 168, 3)])
        else:
            y = g.add(op, [g.add("dense", [f, _c(g, rng, 168, 5)])])
    elif op == "concat":
        y = g.add(op, [x, g.add("relu", [x]), x], {"axis": -1})
    elif op == "pad":
        y = g.add(op, [x], {"pads": ((0, 0), (1, 2), (0, 1), (0, 0)), "value": -1.5})
    elif op == "transpose":
        y = g.add(op, [x], {"perm": (0, 3, 1, 2)})
    elif op in ("less", "greater", "less_equal", "greater_equal"):
        y = g.add("where", [g.add(op, [x, _c(g, rng, 6, 1)]), x, g.add("neg", [x])])
    elif op == "equal":   # true where x >= 0: random floats are rarely equal otherwise
        cond = g.add(op, [x, g.add("maximum", [x, g.constant(np.float32(0))])])
        y = g.add("where", [cond, _c(g, rng, 4), x])
    elif op in ("logical_and", "logical_or", "logical_xor", "logical_not", "where"):
        a = g.add("less", [x, _c(g, rng, 6, 1)])
        b = g.add("greater", [x, _c(g, rng, 4)])
        cond = {"logical_not": lambda: g.add(op, [a]),
                "where": lambda: a}.get(op, lambda: g.add(op, [a, b]))()
        y = g.add("where", [cond, x, _c(g, rng, 7, 1, 1)])
    elif op in DATA_OPS:
        y = _data_case(op, g, x)
    elif op in NORM_CASES:
        y = NORM_CASES[op](g, x, rng)
    else:
        raise KeyError(op)
    g.set_outputs(y)
    return g


# ---- slicing, gathering, tiling, broadcasting, resampling --------------------------
DATA_OPS = ("slice", "take", "tile", "broadcast_to", "resize")


def _data_case(op: str, g, x):
    if op == "slice":  # channels reversed, rows 1..5 by 2, columns from the end
        return g.add(op, [x], {"starts": (-1, 1, -2), "ends": (-(2 ** 62), 6, 0),
                               "axes": (3, 1, 2), "steps": (-1, 2, -1)})
    if op == "take":
        y = g.add(op, [x], {"axis": 3, "indices": (2, -1, 0, 0, 1, 3), "indices_shape": (3, 2)})
        return g.add(op, [y], {"axis": 1, "indices": (4,), "indices_shape": ()})
    if op == "tile":
        return g.add(op, [x], {"repeats": (1, 2, 1, 3)})
    if op == "broadcast_to":
        y = g.add("global_avg_pool", [x], {"keepdims": True})
        y = g.add(op, [y], {"shape": (1, 5, 1, 4)})
        return g.add(op, [y], {"shape": (1, 1, 3, 1)})
    if op == "resize":
        y = g.add(op, [x], {"size": (14, 9), "scales": (2.0, 1.5), "mode": "linear",
                            "coordinate_mode": "half_pixel"})
        return g.add(op, [y], {"size": (5, 4), "scales": (5 / 14, 4 / 9), "mode": "nearest",
                               "coordinate_mode": "asymmetric", "nearest_mode": "ceil"})
    raise KeyError(op)


# ---- normalisation, hardmax, Lp pooling, transposed convolution ----------------------
def _layer_norm(g, x, rng):
    y = g.add("layer_norm", [x, _c(g, rng, 4), _c(g, rng, 4)], {"axes": (-1,), "epsilon": 1e-3})
    return g.add("layer_norm", [y, _c(g, rng, 6, 1), _c(g, rng, 7, 1, 4)],
                 {"axes": (1, 2), "epsilon": 1e-5})


def _deconv(g, x, rng, fused=False):
    attrs = {"strides": (2, 3), "padding": ((1, 0), (0, 2)), "output_padding": (1, 0),
             "dilation": (1, 2), "groups": 2}
    if not fused:
        return g.add("conv2d_transpose", [x, _c(g, rng, 3, 2, 4, 3), _c(g, rng, 6)], attrs)
    y = g.add("conv2d_transpose", [x, _c(g, rng, 2, 2, 4, 4)], {"strides": 2})
    return g.add("conv2d_transpose_fused", [x, _c(g, rng, 2, 2, 4, 4), _c(g, rng, 4),
                                            _c(g, rng, 4), _c(g, rng, 4), y],
                 {"strides": 2, "epilogue": ["scale_shift", "add", ("leaky_relu", 0.1)]})


NORM_CASES = {
    "layer_norm": _layer_norm,
    "group_norm": lambda g, x, rng: g.add("group_norm", [x, _c(g, rng, 4), _c(g, rng, 4)],
                                          {"groups": 2, "epsilon": 1e-4}),
    "hardmax": lambda g, x, rng: g.add("hardmax", [x], {"axis": 2}),
    "lp_pool2d": lambda g, x, rng: g.add("lp_pool2d", [g.add("lp_pool2d", [x], {
        "pool_size": 3, "strides": 2, "padding": "same", "p": 2.0})], {
        "pool_size": 2, "strides": 1, "padding": "valid", "p": 1.0}),
    "global_lp_pool": lambda g, x, rng: g.add("global_lp_pool", [x], {"p": 3.0,
                                                                      "keepdims": True}),
    "conv2d_transpose": _deconv,
    "conv2d_transpose_fused": lambda g, x, rng: _deconv(g, x, rng, fused=True),
}
