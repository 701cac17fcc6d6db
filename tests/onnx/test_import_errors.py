"""ONNX import errors: unsupported ops, opsets and attributes raise UnsupportedError naming the op
type, the node and what is unsupported; unreadable input raises CnncError (never a raw protobuf
error); checker failures carry the checker's message."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_build import model, node, rand

from onnx import TensorProto, helper  # noqa: E402

from cnnc.errors import CnncError, ConfigError, UnsupportedError
from cnnc.frontends.onnx.importer import load_onnx

RNG = np.random.default_rng(5)


def conv_then(op, *extra, opset=17, inits=None, name="the_node", out=None, **attrs):
    """x -> Conv -> ``op``; ``out``: the declared output shape when shape inference cannot
    give it."""
    nodes = [node("Conv", ["x", "w"], "c"), node(op, ["c", *extra], "y", name=name, **attrs)]
    return model(nodes, [("x", ("N", 2, 6, 6))], ["y" if out is None else ("y", out)],
                 {"w": rand(RNG, 3, 2, 3, 3), **(inits or {})}, opset=opset, infer=out is None)


def _unsupported(proto, *words):
    with pytest.raises(UnsupportedError) as e:
        load_onnx(proto)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert e.value.__cause__ is None  # no chained traceback from inside the importer
    assert e.value.__context__ is None or e.value.__suppress_context__
    return str(e.value)


def test_unknown_operator():
    msg = _unsupported(conv_then("Det"), "Det", "'the_node'", "unsupported")  # Hardmax is supported now
    assert "Conv" in msg  # the supported list


def test_operator_of_another_domain():
    nodes = [helper.make_node("FusedConv", ["x", "w"], ["y"], name="fc", domain="com.microsoft")]
    proto = model(nodes, [("x", ("N", 2, 6, 6))], [("y", ("N", 3, 4, 4))],
                  {"w": rand(RNG, 3, 2, 3, 3)}, infer=False)
    proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(CnncError) as e:  # the checker or the importer, by name
        load_onnx(proto.SerializeToString())
    assert "FusedConv" in str(e.value)


def test_every_operator_change_up_to_the_newest_opset_is_reviewed():
    """Raising MAX_OPSET means reading what each converted operator's newer versions
    changed: a converter must not silently take a newer version with other semantics."""
    import onnx.defs

    from cnnc.frontends.onnx.importer import CHANGED_AFTER_25, CONVERTERS, MAX_OPSET
    changed = set()
    for op in CONVERTERS:
        try:
            schema = onnx.defs.get_schema(op, MAX_OPSET)
        except onnx.defs.SchemaError:
            continue
        if schema.since_version > 25:
            changed.add(op)
    assert changed == set(CHANGED_AFTER_25)


def _relu_model(opset):
    return helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])]),
        opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


@pytest.mark.parametrize("opset", [5, 29])
def test_unsupported_opset(opset):
    with pytest.raises(CnncError) as e:
        load_onnx(_relu_model(opset))
    assert str(opset) in str(e.value)
    if opset == 5:   # Relu-1 became Relu-6: an old opset is read only where nothing changed
        assert isinstance(e.value, UnsupportedError) and "Relu did" in str(e.value)


def test_an_old_opset_whose_operators_did_not_change_imports():
    m = load_onnx(_relu_model(6))   # Relu-6 is still the Relu of opset 7
    x = np.array([[-1.5, 2.0]], np.float32)
    np.testing.assert_array_equal(m(x), [[0.0, 2.0]])


def test_max_pool_storage_order():
    _unsupported(conv_then("MaxPool", kernel_shape=[2, 2], storage_order=1),
                 "MaxPool", "'the_node'", "storage_order=1")


def test_max_pool_indices_output():
    nodes = [node("MaxPool", ["x"], ["y", "idx"], name="mp", kernel_shape=[2, 2])]
    proto = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3]),
         helper.make_tensor_value_info("idx", TensorProto.INT64, [1, 2, 3, 3])]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    _unsupported(proto, "MaxPool", "'mp'", "Indices")


def test_pad_mode():
    """reflect, edge and wrap import (tests/onnx/test_import_movement.py); a mode ONNX does
    not define is refused naming the modes that are."""
    _unsupported(conv_then("Pad", "p", mode="symmetric",
                           inits={"p": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}),
                 "Pad", "'the_node'", "mode='symmetric'", "'reflect', 'edge' and 'wrap'")


def test_conv_with_computed_weights():
    nodes = [node("Conv", ["x", "w"], "y", name="dyn")]
    proto = model(nodes, [("x", ("N", 2, 6, 6)), ("w", (3, 2, 3, 3))], ["y"])
    _unsupported(proto, "Conv", "'dyn'", "weights", "constant")


def test_conv_3d_and_pool_3d():
    nodes = [node("Conv", ["x", "w"], "y", name="c3")]
    proto = model(nodes, [("x", ("N", 2, 6, 6, 6))], ["y"], {"w": rand(RNG, 3, 2, 3, 3, 3)})
    _unsupported(proto, "Conv", "'c3'", "3-D convolution", "only 1-D and 2-D")
    proto = model([node("MaxPool", ["x"], "y", name="p3", kernel_shape=[2, 2, 2])],
                  [("x", ("N", 2, 4, 4, 4))], ["y"])
    _unsupported(proto, "MaxPool", "'p3'", "kernel_shape")


@pytest.mark.parametrize("x_shape, w_shape, out", [
    (("N", 2, 6, 6), (5, 3, 2, 2), ("N", 3, 7, 7)),    # 2-D
    (("N", 2, 8), (5, 3, 2), ("N", 3, 9)),             # 1-D, as rows one pixel high
])
def test_conv_transpose_weights_for_other_input_channels(x_shape, w_shape, out):
    from cnnc.errors import ShapeError
    proto = model([node("ConvTranspose", ["x", "w"], "y", name="the_node")], [("x", x_shape)],
                  [("y", out)], {"w": rand(RNG, *w_shape)}, infer=False)
    with pytest.raises(ShapeError) as e:
        load_onnx(proto)
    msg = str(e.value)
    assert "the_node" in msg and "expects 5 input channels" in msg and "has 2" in msg, msg


def test_reduce_mean_over_the_dynamic_batch_on_cpu():
    # imports (any axes reduce), but a kernel cannot loop over a batch it does not know yet
    import cnnc
    m = load_onnx(conv_then("ReduceMean", axes=[0, 1], opset=13))
    with pytest.raises(UnsupportedError, match="symbolic batch"):
        cnnc.compile(m, target="cpu")


def test_training_mode_batch_norm_and_dropout():
    inits = {k: np.abs(rand(RNG, 3)) + 0.1 for k in "gbmv"}
    out = ("N", 3, 4, 4)
    _unsupported(conv_then("BatchNormalization", "g", "b", "m", "v", training_mode=1,
                           inits=inits, out=out), "BatchNormalization", "training_mode=1")
    _unsupported(conv_then("Dropout", "r", "t", inits={"r": np.float32(0.5),
                                                        "t": np.array(True)}, out=out),
                 "Dropout", "training_mode")


def test_gather_with_computed_indices_and_cast_to_int():
    # Gather of computed data takes constant indices; computed indices are refused
    _unsupported(conv_then("Gather", "c", out=("N", 3, 4, 4)), "Gather", "indices", "computed")
    _unsupported(conv_then("Cast", to=TensorProto.INT64, out=("N", 3, 4, 4)), "Cast",
                 "only to float")


def test_non_batch_symbolic_dim_and_integer_input():
    with pytest.raises(UnsupportedError, match="dim 2 is symbolic .'height'"):
        load_onnx(model([node("Relu", ["x"], "y")], [("x", ("N", 3, "height", 4))], ["y"]))
    proto = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [1, 2])]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(UnsupportedError, match="'x': element type 7"):
        load_onnx(proto)


# ---- unreadable input --------------------------------------------------------------------------
def _good_bytes():
    return model([node("Relu", ["x"], "y")], [("x", ("N", 3))], ["y"]).SerializeToString()


def test_empty_bytes_and_empty_file(tmp_path):
    with pytest.raises(CnncError, match="empty"):
        load_onnx(b"")
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(CnncError, match="empty.onnx.* empty"):
        load_onnx(path)


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_bytes(cut, tmp_path):
    data = _good_bytes()
    bad = data[:max(1, int(len(data) * cut))]
    for src in (bad, tmp_path / "cut.onnx"):
        if not isinstance(src, bytes):
            src.write_bytes(bad)
        with pytest.raises(CnncError) as e:
            load_onnx(src)
        assert type(e.value).__module__ == "cnnc.errors"
        assert e.value.__cause__ is None


@pytest.mark.parametrize("junk", [b"\xff\xff\xff\xff", b"not an onnx model at all",
                                  bytes(range(256)) * 3, b"\x08\x07"])
def test_corrupt_bytes(junk):
    with pytest.raises(CnncError) as e:
        load_onnx(junk)
    assert "not a valid ONNX model" in str(e.value) or "checker" in str(e.value)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope" / "model.onnx"
    with pytest.raises(CnncError, match="model.onnx' does not exist"):
        load_onnx(str(path))
    with pytest.raises(CnncError, match="is not a file"):
        load_onnx(tmp_path)


def test_checker_failure_carries_its_message():
    proto = model([node("Relu", ["x"], "y")], [("x", ("N", 3))], ["y"])
    proto.graph.node[0].input[0] = "undefined_tensor"
    with pytest.raises(CnncError, match="ONNX checker.*undefined_tensor"):
        load_onnx(proto)


def test_wrong_argument_type():
    with pytest.raises(ConfigError, match="got int"):
        load_onnx(42)


def test_good_model_from_every_source(tmp_path):
    data = _good_bytes()
    path = tmp_path / "relu.onnx"
    path.write_bytes(data)
    x = rand(RNG, 2, 3)
    for src in (data, bytearray(data), str(path), path, model(
            [node("Relu", ["x"], "y")], [("x", ("N", 3))], ["y"])):
        np.testing.assert_array_equal(load_onnx(src)(x), np.maximum(x, 0).astype(np.float64))
