"""Fuzz-case generators shared by the hypothesis tests and ``tools/fuzz.py``.

Every generator takes a *chooser* (``choice(seq)``, ``integer(lo, hi)``, ``boolean()``), so
the same code draws from hypothesis (shrinking, replay) in the test suite and from
``random.Random`` in the long fuzz run. Each ``case_*`` function runs one case and returns
``"ok"`` or raises; :func:`classify` turns the outcome into a label: ``"ok"``, the name of a
``CnncError`` subclass, or ``"RAW <type>"`` for anything else (a bug).
"""

from __future__ import annotations

import random

import numpy as np

import cnnc
from cnnc import layers as L

# ---- choosers ---------------------------------------------------------------------------------


class RandomChooser:
    def __init__(self, seed=None):
        self.rng = random.Random(seed)

    def choice(self, seq):
        return seq[self.rng.randrange(len(seq))]

    def integer(self, lo, hi):
        return self.rng.randint(lo, hi)

    def boolean(self):
        return self.rng.random() < 0.5


class HypothesisChooser:
    def __init__(self, data):
        from hypothesis import strategies as st
        self.data, self.st = data, st

    def choice(self, seq):
        return seq[self.data.draw(self.st.integers(0, len(seq) - 1))]

    def integer(self, lo, hi):
        return self.data.draw(self.st.integers(lo, hi))

    def boolean(self):
        return self.data.draw(self.st.booleans())


def classify(fn) -> str:
    """Run ``fn()``: "ok", a CnncError subclass name, or "RAW <exception type>"."""
    try:
        fn()
        return "ok"
    except cnnc.CnncError as e:
        return type(e).__name__
    except Exception as e:  # noqa: BLE001  (the point: anything else is a finding)
        return f"RAW {type(e).__name__}: {str(e)[:200]}"


# ---- the seed model ---------------------------------------------------------------------------
def small_model(seed: int = 0):
    """Conv (SAME, relu) -> BN -> max pool -> flatten -> dense; random BN statistics."""
    m = cnnc.Sequential([cnnc.Input((6, 6, 2)),
                         L.Conv2D(4, 3, padding="same", activation="relu", name="conv"),
                         L.BatchNormalization(name="bn"), L.MaxPooling2D(name="pool"),
                         L.Flatten(name="flat"), L.Dense(3, name="fc")], name="small")
    rng = np.random.default_rng(seed)
    m.set_weights([w if w.ndim > 1 else rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                   for w in m.get_weights()])
    return m


# ---- layer arguments --------------------------------------------------------------------------
GOOD_INT = [1, 2, 3]
BAD_INT = [0, -1, 2.5, True, None, "3", (), (1, 2, 3), (2, 0), [3, -3], float("nan"), {},
           np.int64(2), 10**12]
GOOD_PAIR = [1, 2, (1, 2), [2, 1]]
PADDING = (["valid", "same", "SAME"], ["full", None, 1, ("same",)])
ACTIVATION = ([None, "relu", "linear", "sigmoid", "tanh", "relu6", "leaky_relu", "softmax",
               "hard_swish"], ["swish2", 3, ""])
FLOATS = ([0.0, 0.1, 0.5], [1.0, -0.5, 2.0, float("nan"), float("inf"), "0.1", None])


def _pick(c, options):
    """A valid value eleven times out of twelve, else an invalid one."""
    good, bad = options
    return c.choice(good) if c.integer(0, 11) else c.choice(bad)


def _int(c, good=GOOD_INT):
    return _pick(c, (good, BAD_INT))


def _pair(c):
    return _pick(c, (GOOD_PAIR, BAD_INT))


def make_layer(c):
    """One layer with random (mostly valid, sometimes invalid) arguments."""
    kind = c.choice(["conv", "conv", "depthwise", "maxpool", "avgpool", "gap", "gmp", "zeropad",
                     "bn", "dense", "flatten", "reshape", "dropout", "relu", "leaky", "act",
                     "softmax"])
    if kind == "conv":
        kw = dict(filters=_int(c, [1, 2, 4]), kernel_size=_pair(c), strides=_pair(c),
                  padding=_pick(c, PADDING), activation=_pick(c, ACTIVATION))
        if c.boolean():
            kw["dilation_rate"] = _pair(c)
        if c.boolean():
            kw["groups"] = _int(c, [1, 2])
        if c.integer(0, 9) == 0:
            kw["use_bias"] = _pick(c, ([True, False], ["yes", 1]))
        return L.Conv2D(**kw)
    if kind == "depthwise":
        return L.DepthwiseConv2D(_pair(c), strides=_pair(c), padding=_pick(c, PADDING),
                                 depth_multiplier=_int(c, [1, 2]))
    if kind in ("maxpool", "avgpool"):
        cls = L.MaxPooling2D if kind == "maxpool" else L.AveragePooling2D
        strides = None if c.boolean() else _pair(c)
        return cls(_pair(c), strides=strides, padding=_pick(c, PADDING))
    if kind in ("gap", "gmp"):
        cls = L.GlobalAveragePooling2D if kind == "gap" else L.GlobalMaxPooling2D
        return cls(keepdims=_pick(c, ([False, True], [0, "no"])))
    if kind == "zeropad":
        return L.ZeroPadding2D(_pick(c, ([0, 1, 2, (1, 2), ((0, 1), (2, 0))], [-1, "1", (1,)])))
    if kind == "bn":
        return L.BatchNormalization(axis=_pick(c, ([-1, 3, 1], [0, 7, 1.5])),
                                    epsilon=_pick(c, ([1e-3, 1e-5], [0.0, -1.0, "x"])),
                                    momentum=_pick(c, ([0.99, 0.5], [2.0])))
    if kind == "dense":
        return L.Dense(_int(c, [1, 3, 5]), activation=_pick(c, ACTIVATION))
    if kind == "flatten":
        return L.Flatten()
    if kind == "reshape":
        return L.Reshape(_pick(c, ([(-1,), (2, -1), (4, 4, -1), (3,)], [(0,), (-1, -1), "x"])))
    if kind == "dropout":
        return L.Dropout(_pick(c, FLOATS))
    if kind == "relu":
        return L.ReLU(max_value=_pick(c, ([None, 6.0, 1.0], [-1.0, "6"])),
                      negative_slope=_pick(c, ([0.0, 0.1], [-0.1])))
    if kind == "leaky":
        return L.LeakyReLU(_pick(c, FLOATS))
    if kind == "act":
        return L.Activation(_pick(c, ACTIVATION))
    return L.Softmax(axis=_pick(c, ([-1, 1, 3], [9, "x"])))


def input_shape(c):
    if c.integer(0, 19) == 0:
        return c.choice([(0, 4, 3), (-1, 4, 4), (4, 4), (4.0, 4, 1), "abc", None])
    return (c.integer(1, 9), c.integer(1, 9), c.integer(1, 4))


def case_layer_args(c) -> str:
    """Construct one layer from random arguments (construction only)."""
    make_layer(c)
    return "ok"


def case_stack(c, check_values: bool = True) -> str:
    """A random Sequential stack: build, compile for numpy, run on a random batch and compare
    with the float64 reference of the unoptimised graph."""
    layers = [make_layer(c) for _ in range(c.integer(1, 4))]
    model = cnnc.Sequential([cnnc.Input(input_shape(c)), *layers])
    graph = model.to_graph()
    compiled = cnnc.compile(model, target="numpy", opt_level=c.choice([0, 1, 2]))
    n = c.integer(1, 3)
    shape = graph.inputs[0].type.concrete({"N": n})
    x = np.random.default_rng(c.integer(0, 2**16)).standard_normal(shape).astype(np.float32)
    y = compiled(x)
    if check_values:
        from cnnc.backends.reference import run_reference
        ref = run_reference(graph, x, dtype=np.float64)
        scale = max(1.0, float(np.nanmax(np.abs(ref), initial=0.0)))
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * scale, equal_nan=True)
    return "ok"


# ---- compiled-model call inputs ---------------------------------------------------------------
def call_input(c, shape):
    """A random (often wrong) argument for a model whose input is ``(N, *shape)``."""
    kind = c.choice(["good", "dtype", "rank", "dims", "batch0", "object", "strided", "scalar",
                     "list"])
    rng = np.random.default_rng(c.integer(0, 2**16))
    n = c.integer(1, 4)
    if kind == "good":
        return rng.standard_normal((n, *shape)).astype(c.choice(
            [np.float32, np.float64, np.float16, np.int32, np.uint8, np.int64]))
    if kind == "dtype":
        base = rng.standard_normal((n, *shape))
        return c.choice([base > 0, base.astype(complex), base.astype(str), base.astype(object),
                         base.astype("m8[s]")])
    if kind == "rank":
        return rng.standard_normal(c.choice([(n,), (n, *shape[:-1]), (n, *shape, 1), ()]))
    if kind == "dims":
        bad = list(shape)
        i = c.integer(0, len(bad) - 1)
        bad[i] += c.choice([-1, 1, 5])
        return rng.standard_normal((n, *[max(d, 0) for d in bad]))
    if kind == "batch0":
        return np.zeros((0, *shape), np.float32)
    if kind == "object":
        return c.choice([None, "x", {}, {"x": 1}, object(), b"bytes", [[1, 2], [3]], 3.5])
    if kind == "strided":
        big = rng.standard_normal((2 * n, *[2 * d for d in shape]))
        return big[::2, ::2, ::2] if len(shape) == 3 else big[::2]
    if kind == "scalar":
        return np.float32(1.0)
    return rng.standard_normal((n, *shape)).tolist()


def case_call(c, compiled) -> str:
    shape = compiled.graph.inputs[0].type.shape[1:]
    y = compiled(call_input(c, shape))
    if not isinstance(y, np.ndarray):
        raise AssertionError(f"compiled model returned {type(y).__name__}")
    return "ok"


# ---- ONNX bytes -------------------------------------------------------------------------------
def onnx_seeds() -> list[bytes]:
    """Serialized small valid ONNX models (conv/relu/pool/gemm; BN/add/global pool)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def mk(nodes, inits, out_shape, in_shape=("N", 2, 6, 6)):
        g = helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
            initializer=[numpy_helper.from_array(a, n) for n, a in inits.items()])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        onnx.checker.check_model(m)
        return m.SerializeToString()

    a = mk([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("Gemm", ["f", "g", "gb"], ["y"], transB=1)],
           {"w": w(4, 2, 3, 3), "b": w(4), "g": w(3, 36), "gb": w(3)}, ("N", 3))
    b = mk([helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", ["c", "s", "o", "m", "v"], ["n"]),
            helper.make_node("Add", ["n", "x2"], ["a"]),
            helper.make_node("GlobalAveragePool", ["a"], ["y"])],
           {"w": w(2, 2, 3, 3), "s": w(2), "o": w(2), "m": w(2), "v": np.abs(w(2)) + 0.5,
            "x2": w(1, 2, 1, 1)}, ("N", 2, 1, 1))
    return [a, b]


def mutate(c, data: bytes) -> tuple[str, bytes]:
    """(mutation kind, mutated bytes): bit flips, truncation, overwritten/inserted/deleted
    spans, duplicated chunks."""
    buf = bytearray(data)
    kind = c.choice(["bitflip", "truncate", "overwrite", "insert", "delete", "duplicate"])
    if kind == "bitflip":
        for _ in range(c.integer(1, 8)):
            i = c.integer(0, len(buf) - 1)
            buf[i] ^= 1 << c.integer(0, 7)
    elif kind == "truncate":
        buf = buf[:c.integer(0, len(buf) - 1)]
    elif kind == "overwrite":
        i = c.integer(0, len(buf) - 1)
        for j in range(i, min(len(buf), i + c.integer(1, 8))):
            buf[j] = c.choice([0, 0xFF, 0x7F, 0x80, c.integer(0, 255)])
    elif kind == "insert":
        i = c.integer(0, len(buf))
        buf[i:i] = bytes(c.integer(0, 255) for _ in range(c.integer(1, 8)))
    elif kind == "delete":
        i = c.integer(0, len(buf) - 1)
        del buf[i:i + c.integer(1, 16)]
    else:
        i = c.integer(0, len(buf) - 1)
        buf[i:i] = buf[i:i + c.integer(1, 32)]
    return kind, bytes(buf)


def case_onnx(c, data: bytes, run: bool = True) -> str:
    """Import mutated ONNX bytes; if that works, compile for numpy and run a small batch."""
    model = cnnc.load_onnx(data)
    if not run:
        return "ok"
    compiled = cnnc.compile(model, target="numpy")
    shapes = [v.type.concrete({"N": 2}) for v in compiled.graph.inputs]
    if sum(int(np.prod(s, dtype=np.float64)) for s in shapes) > 1e6:
        return "ok"  # a mutated dim made the input huge: importing was the test
    rng = np.random.default_rng(0)
    compiled(*[rng.standard_normal(s).astype(np.float32) for s in shapes])
    return "ok"


# ---- artifacts --------------------------------------------------------------------------------
def artifact_seed(tmpdir) -> bytes:
    """The bytes of a saved artifact of a small numpy-target model."""
    import os
    m = small_model()
    path = os.path.join(str(tmpdir), "seed.cnnc")
    cnnc.compile(m, target="numpy").save(path)
    with open(path, "rb") as f:
        return f.read()


def case_artifact(c, data: bytes, path) -> str:
    """Load a mutated artifact (target numpy) and run it once."""
    with open(path, "wb") as f:
        f.write(data)
    m = cnnc.load(path, target="numpy")
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 2)).astype(np.float32)
    m(x)
    return "ok"

