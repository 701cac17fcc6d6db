"""Every misuse of a public entry point raises a CnncError subclass whose message names the
layer / input / argument and quotes what was received (tests/frontends/test_errors.py covers
the basic layer arguments; this file covers the rest of the surface and both targets)."""

import subprocess
import sys

import numpy as np
import pytest

import cnnc
from cnnc import ConfigError, DTypeError, ShapeError
from cnnc import layers as L

TARGETS = ["numpy", "cpu"]


# ---- layer arguments the basic suite does not cover ------------------------------------------
@pytest.mark.parametrize("make, quoted", [
    (lambda: L.Conv2D(True, 3, name="c"), "True"),
    (lambda: L.Conv2D(4, None, name="c"), "None"),
    (lambda: L.Conv2D(4, (3, 3, 3), name="c"), "(3, 3, 3)"),
    (lambda: L.Conv2D(4, float("nan"), name="c"), "nan"),
    (lambda: L.Conv2D(4, 3, strides=-1, name="c"), "-1"),
    (lambda: L.Conv2D(4, 3, padding=None, name="c"), "None"),
    (lambda: L.Conv2D(4, 3, padding=1, name="c"), "1"),
    (lambda: L.Conv2D(4, 3, activation=3, name="c"), "3"),
    (lambda: L.Conv2D(4, 3, groups=0, name="c"), "0"),
    (lambda: L.Conv2D(4, 3, groups=2.0, name="c"), "2.0"),
    (lambda: L.Conv2D(4, 3, dilation_rate=(1, 0), name="c"), "(1, 0)"),
    (lambda: L.DepthwiseConv2D((2, "3"), name="c"), "'3'"),
    (lambda: L.MaxPooling2D(2, strides=0, name="c"), "0"),
    (lambda: L.Dense(3, activation="swish2", name="c"), "'swish2'"),
    (lambda: L.Softmax(axis="x", name="c"), "'x'"),
    (lambda: L.GlobalAveragePooling2D(keepdims="no", name="c"), "'no'"),
])
def test_more_bad_layer_arguments(make, quoted):
    with pytest.raises(ConfigError) as e:
        make()
    assert "'c'" in str(e.value) and quoted in str(e.value)


def test_bad_seed_names_the_layer():
    with pytest.raises(ConfigError, match=r"Conv2D layer 'c'.*seed.*'x'"):
        cnnc.Sequential([cnnc.Input((6, 6, 2)), L.Conv2D(2, 3, seed="x", name="c")])


@pytest.mark.parametrize("shape, layer, pattern", [
    ((3, 3, 1), L.Conv2D(2, 5, name="k"), r"'k'.*window 5.*padded input 3"),
    ((3, 3, 1), L.AveragePooling2D(4, name="k"), r"'k'.*window 4"),
    ((8, 8, 3), L.Conv2D(4, 3, groups=2, name="k"), r"'k'.*groups=2.*3 input channels"),
    ((8, 8, 3), L.Dense(4, name="k"), r"'k'.*rank-2.*\(None, 8, 8, 3\)"),
    ((8, 8, 3), L.Reshape((5,), name="k"), r"'k'.*192 values.*\(5,\)"),
    ((8, 8, 3), L.BatchNormalization(axis=7, name="k"), r"'k'.*axis 7"),
])
def test_layer_that_does_not_fit_its_input(shape, layer, pattern):
    with pytest.raises(cnnc.CnncError, match=pattern):
        cnnc.Sequential([cnnc.Input(shape), layer])


def test_reusing_a_layer_on_another_shape():
    conv = L.Conv2D(4, 3, name="shared")
    conv(cnnc.Input((8, 8, 3)))
    with pytest.raises(ShapeError, match=r"'shared'.*3 input channels.*5 channels"):
        conv(cnnc.Input((8, 8, 5)))


# ---- models, set_weights, compile ----------------------------------------------------------
@pytest.mark.parametrize("weights, pattern", [
    (None, r"'small'.*list of arrays.*NoneType"),
    (5, r"'small'.*list of arrays.*int"),
    ("abc", r"'small'.*list of arrays.*str"),
    ([], r"'small'.*expected 8 arrays.*conv: 2, bn: 4, fc: 2.*received 0"),
])
def test_set_weights_wrong_container_or_count(model, weights, pattern):
    with pytest.raises(ShapeError, match=pattern):
        model.set_weights(weights)


def test_set_weights_wrong_shapes_or_values(model):
    good = model.get_weights()
    bad = [np.zeros(1)] + good[1:]
    with pytest.raises(ShapeError, match=r"'conv'.*'kernel'.*\(3, 3, 2, 4\).*\(1,\)"):
        model.set_weights(bad)
    with pytest.raises(ShapeError, match=r"'conv'.*'kernel'.*not an array"):
        model.set_weights([[[1], [2, 3]]] + good[1:])
    with pytest.raises(ShapeError, match=r"'conv'.*'kernel'.*numeric.*<U"):
        model.set_weights([np.full(good[0].shape, "a")] + good[1:])
    with pytest.raises(ShapeError, match=r"'fc'.*'bias'.*\(3,\).*\(4,\)"):
        model.set_weights(good[:-1] + [np.zeros(4)])  # the last layer fails: nothing changes
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), good))


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(target="tpu"), r"unknown target 'tpu'"),
    (dict(target=None), r"unknown target None"),
    (dict(opt_level="2"), r"opt_level.*'2'"),
    (dict(print_after="nope"), r"print_after.*'nope'"),
])
def test_compile_bad_options(model, kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        cnnc.compile(model, **kwargs)


@pytest.mark.parametrize("thing", [None, 3, "resnet20", np.zeros(3)])
def test_compile_non_model(thing):
    with pytest.raises(ConfigError, match=type(thing).__name__):
        cnnc.compile(thing)


def test_zoo_unknown_name_or_argument():
    with pytest.raises(ConfigError, match=r"unknown model 'nope'"):
        cnnc.models.get("nope")
    with pytest.raises(ConfigError, match=r"'lenet5'.*unknown argument.*\['foo'\]"):
        cnnc.models.get("lenet5", foo=3)


# ---- compiled-model calls (both targets) ---------------------------------------------------
BAD_CALLS = [
    (lambda x: (None,), DTypeError, r"%x of model 'small'.*NumPy array, got NoneType"),
    (lambda x: ("abc",), DTypeError, r"%x.*got str"),
    (lambda x: ({},), DTypeError, r"%x.*got dict"),
    (lambda x: (x.astype(object),), DTypeError, r"%x.*numeric.*object"),
    (lambda x: (x.astype(str),), DTypeError, r"%x.*numeric.*<U"),
    (lambda x: (x > 0,), DTypeError, r"%x.*numeric.*bool"),
    (lambda x: (x.astype(complex),), DTypeError, r"%x.*numeric.*complex128"),
    (lambda x: (x[:0],), ShapeError, r"%x.*dim 0 \(N\) must be >= 1, got 0"),
    (lambda x: (x[0],), ShapeError, r"%x.*rank 4.*got shape \(6, 6, 2\)"),
    (lambda x: (x[:, :5],), ShapeError, r"%x.*dim 1: expected 6, got 5"),
    (lambda x: (np.concatenate([x, x], -1),), ShapeError, r"%x.*dim 3: expected 2, got 4"),
    (lambda x: (x, x), ShapeError, r"'small' takes 1 input.*got 2"),
    (lambda x: (), ShapeError, r"'small' takes 1 input.*got 0"),
    (lambda x: ([[1, 2], [3]],), DTypeError, r"%x.*cannot be converted"),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("args, err, pattern", BAD_CALLS)
def test_bad_call(compiled, target, args, err, pattern):
    x = np.random.default_rng(1).standard_normal((2, 6, 6, 2)).astype(np.float32)
    with pytest.raises(err, match=pattern):
        compiled[target](*args(x))


# ---- load_onnx -----------------------------------------------------------------------------
def test_load_onnx_misuse(tmp_path):
    pytest.importorskip("onnx")
    with pytest.raises(ConfigError, match="NoneType"):
        cnnc.load_onnx(None)
    with pytest.raises(cnnc.CnncError, match="does not exist"):
        cnnc.load_onnx(tmp_path / "missing.onnx")
    with pytest.raises(cnnc.CnncError, match="not a file"):
        cnnc.load_onnx(tmp_path)
    with pytest.raises(cnnc.CnncError, match="empty"):
        cnnc.load_onnx(b"")
    with pytest.raises(cnnc.CnncError, match="corrupt or truncated"):
        cnnc.load_onnx(b"\x0a\xff\xff\xff\xff garbage")


# ---- the command line: one line on stderr, exit status 2 -------------------------------------
@pytest.mark.parametrize("argv, pattern", [
    (["compile", "nosuchmodel"], "unknown model 'nosuchmodel'"),
    (["compile", "lenet5", "--print-after", "nopass"], "'nopass'"),
    (["compile", "{tmp}/junk.onnx"], "junk.onnx"),
])
def test_cli_prints_one_line_and_exits_2(tmp_path, argv, pattern):
    """A cnnc error: one line, no traceback, status 2 (argparse's own usage errors, such as
    ``--batch 0``, print the usage first: see tests/tooling/test_cli.py)."""
    (tmp_path / "junk.onnx").write_bytes(b"\x00not onnx")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    r = subprocess.run([sys.executable, "-m", "cnnc.cli", *argv], capture_output=True,
                       text=True, cwd=str(tmp_path))
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnc: error: "), r.stderr[-2000:]
    assert pattern in lines[0]
    assert "Traceback" not in r.stderr
