"""Import an ONNX model as a cnnc model.

    model = cnnc.load_onnx("resnet.onnx")        # a path, the file's bytes or an onnx.ModelProto
    compiled = cnnc.compile(model, target="cpu")
    y = compiled(x)                              # x: NCHW, exactly as the ONNX graph declares

The model is checked with the ONNX checker, then every node is converted (``import_ops``,
``import_shape``) into a cnnc graph that computes in NHWC: a 4-D graph input is transposed to
NHWC once, convolution kernels go OIHW -> HWIO, per-channel constants, concat/softmax/pad axes
follow the layout, and 4-D graph outputs are transposed back to NCHW, so the compiled model
takes and returns tensors exactly as the ONNX graph declares them. A symbolic batch dimension
(``dim_param``, or a ``dim_value`` of 0 or none) becomes the IR symbol ``"N"``. A node of
an operator without a converter whose inputs are all constants (a positional encoding made
with CumSum, Sin and Cos) is computed at import by ONNX's reference implementation
(:func:`_evaluate_constant`).

Failures raise :class:`~cnnc.errors.CnncError`: an unreadable, empty or truncated model, a
checker failure, a missing file; :class:`~cnnc.errors.UnsupportedError` for an op, opset or
attribute cnnc cannot import, naming the op type, the node and what is unsupported.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from cnnc.errors import CnncError, ConfigError, UnsupportedError
from cnnc.frontends.onnx import import_ops, import_shape  # noqa: F401  (registers converters)
from cnnc.frontends.onnx import import_movement  # noqa: F401  (Slice, Split, Resize, ...)
from cnnc.frontends.onnx import import_norm  # noqa: F401  (LayerNormalization, ConvTranspose, ...)
from cnnc.frontends.onnx import require_onnx
from cnnc.frontends.onnx.import_context import CONVERTERS, Importer
from cnnc.ir.graph import Graph
from cnnc.ir.verify import verify

#: opsets of the default domain whose semantics the converters follow
MIN_OPSET, MAX_OPSET = 7, 28
#: the converted operators whose schema changed after opset 25, and how each change is taken
#: (a test checks that this names every such operator of the installed onnx up to MAX_OPSET)
CHANGED_AFTER_25 = {
    "Cast": "28 adds the float6 element types: refused by name, as any type cnnc lacks",
    "Celu": "28 admits float16, double and bfloat16 inputs: imported as float32, as every op",
    "DepthToSpace": "28 keeps its attributes (blocksize, mode DCR/CRD): both modes honoured",
    "SpaceToDepth": "28 adds mode (DCR, the old order, or CRD): both honoured",
    "ReduceLogSumExp": "28 drops integer inputs: cnnc computes in float only",
}
BATCH = "N"
#: graph input element types -> the IR dtype (floats are computed in float32)
_INPUT_TYPES = {1: "float32", 10: "float32", 11: "float32", 9: "bool"}


# ---- reading and checking ----------------------------------------------------------------------
def _parse(onnx, data: bytes, what: str):
    if not data:
        raise CnncError(f"{what} is empty (0 bytes): not an ONNX model")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # google.protobuf DecodeError and friends
        raise CnncError(f"{what} is not a valid ONNX model (corrupt or truncated protobuf: "
                        f"{type(e).__name__}: {e})") from None
    return proto


def read_model(src):
    """``(ModelProto, description)`` from a path, bytes or a ModelProto."""
    onnx = require_onnx("ONNX import")
    if isinstance(src, onnx.ModelProto):
        return src, "the ONNX model"
    if isinstance(src, (bytes, bytearray, memoryview)):
        return _parse(onnx, bytes(src), f"the {len(src)}-byte ONNX data"), "the ONNX data"
    if not isinstance(src, (str, os.PathLike)):
        raise ConfigError(f"load_onnx expects a path, bytes or an onnx.ModelProto, got "
                          f"{type(src).__name__}")
    path = Path(src)
    what = f"ONNX file '{path}'"
    if not path.exists():
        raise CnncError(f"{what} does not exist")
    if not path.is_file():
        raise CnncError(f"{what} is not a file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CnncError(f"cannot read {what}: {e}") from None
    proto = _parse(onnx, data, what)
    try:  # weights stored next to the model (external data)
        from onnx.external_data_helper import load_external_data_for_model, uses_external_data
        if any(uses_external_data(t) for t in proto.graph.initializer):
            load_external_data_for_model(proto, str(path.parent))
    except Exception as e:
        raise CnncError(f"cannot load the external data of {what}: {e}") from None
    return proto, what


def check_model(onnx, proto, what: str) -> int:
    """Run the ONNX checker; returns the default-domain opset, refusing unsupported ones."""
    try:
        onnx.checker.check_model(proto)
    except Exception as e:
        msg = str(e).strip() or type(e).__name__
        raise CnncError(f"{what} fails the ONNX checker: {msg}") from None
    opset = None
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = int(imp.version)
    if opset is None:
        raise UnsupportedError(f"{what} imports no opset of the default ONNX domain")
    if opset < MIN_OPSET:
        changed = _changed_since(onnx, proto, opset)
        if not changed:   # every operator means at MIN_OPSET what it meant at ``opset``
            return MIN_OPSET
        raise UnsupportedError(f"{what} uses opset {opset}; cnnc imports opsets {MIN_OPSET} to "
                               f"{MAX_OPSET}, and older ones whose operators did not change "
                               f"by {MIN_OPSET} ({', '.join(changed)} did)")
    if opset > MAX_OPSET:
        raise UnsupportedError(f"{what} uses opset {opset}; cnnc imports opsets {MIN_OPSET} to "
                               f"{MAX_OPSET}")
    return opset


def _changed_since(onnx, proto, opset: int) -> list[str]:
    """The default-domain operators of ``proto`` whose schema at ``opset`` is not the one at
    MIN_OPSET (or that either opset lacks)."""
    changed = set()
    for node in proto.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        try:
            old = onnx.defs.get_schema(node.op_type, opset).since_version
            new = onnx.defs.get_schema(node.op_type, MIN_OPSET).since_version
        except Exception:  # noqa: BLE001 - an operator this opset does not define
            old, new = None, -1
        if old != new:
            changed.add(node.op_type)
    return sorted(changed)


# ---- attributes ------------------------------------------------------------------------------
def _attrs(onnx, node) -> dict:
    out = {}
    for attr in node.attribute:
        v = onnx.helper.get_attribute_value(attr)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, float):  # stored as float32: keep its shortest form (1e-05)
            v = float(str(np.float32(v)))
        elif isinstance(v, onnx.TensorProto):
            v = onnx.numpy_helper.to_array(v)
        elif isinstance(v, list):
            v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else
                 float(str(np.float32(x))) if isinstance(x, float) else x for x in v]
        out[attr.name] = v
    return out


# ---- graph inputs and outputs ------------------------------------------------------------------
def _safe_name(name: str, taken: set) -> str:
    """An IR value name for an ONNX input: never one of the IR's own ``3``/``w3`` names."""
    s = re.sub(r"[^0-9A-Za-z_.]", "_", name) or "input"
    if re.fullmatch(r"w?\d+", s):
        s = f"x_{s}"
    base, k = s, 1
    while s in taken:
        s, k = f"{base}_{k}", k + 1
    taken.add(s)
    return s


def _input_shape(vi) -> tuple:
    if not vi.type.HasField("tensor_type"):
        raise UnsupportedError(f"graph input {vi.name!r}: only tensor inputs are supported")
    tt = vi.type.tensor_type
    if tt.elem_type not in _INPUT_TYPES:
        raise UnsupportedError(f"graph input {vi.name!r}: element type {tt.elem_type} is not "
                               f"supported (only float, float16, double, bool)")
    if not tt.HasField("shape"):
        raise UnsupportedError(f"graph input {vi.name!r} has no declared shape")
    shape = []
    for axis, d in enumerate(tt.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            shape.append(int(d.dim_value))
        elif axis == 0:
            shape.append(BATCH)  # dim_param, 0 or unset: the dynamic batch
        else:
            label = d.dim_param or "unknown"
            raise UnsupportedError(f"graph input {vi.name!r}: dim {axis} is symbolic "
                                   f"({label!r}); only the batch dim (0) may be dynamic")
    return tuple(shape)


# ---- the model -------------------------------------------------------------------------------
class OnnxModel:
    """An imported ONNX model: ``to_graph()`` gives a fresh cnnc graph (NCHW at the boundary,
    NHWC inside); calling it runs cnnc's reference interpreter."""

    def __init__(self, proto, graph: Graph, input_names, output_names, opset: int):
        self.proto = proto
        self._graph = graph
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.opset = opset

    @property
    def name(self) -> str:
        return self._graph.name

    def to_graph(self) -> Graph:
        return self._graph.copy()

    def __call__(self, *xs, dtype=np.float64):
        from cnnc.backends.reference import run_reference
        return run_reference(self._graph, *xs, dtype=dtype)

    def __repr__(self) -> str:
        return (f"<OnnxModel {self.name!r}: opset {self.opset}, inputs {self.input_names}, "
                f"outputs {self.output_names}, {len(self._graph.ops)} ops>")


def load_onnx(src) -> OnnxModel:
    """Import an ONNX model from a path, its bytes or an ``onnx.ModelProto``."""
    onnx = require_onnx("ONNX import")
    proto, what = read_model(src)
    opset = check_model(onnx, proto, what)
    try:
        return _import_graph(onnx, proto, what, opset)
    except CnncError:
        raise
    except Exception as e:  # a damaged model the checker let through: never a raw traceback
        raise CnncError(f"{what} cannot be imported: {type(e).__name__}: {e}") from e


def _text(s) -> str:
    """A protobuf string field (bytes when it holds invalid UTF-8) as text."""
    return s.decode("utf-8", "replace") if isinstance(s, bytes) else s


def _import_graph(onnx, proto, what: str, opset: int) -> OnnxModel:
    g = proto.graph
    graph = Graph(re.sub(r"[^0-9A-Za-z_.]", "_", _text(g.name)) or "onnx")
    consumers: dict[str, list] = {}
    for node in g.node:
        for i, name in enumerate(node.input):
            if name:
                consumers.setdefault(name, []).append((node, i))
    static = {t.name for t in g.initializer}
    static |= {o for n in g.node if n.op_type == "Constant" for o in n.output}
    outputs = {vi.name for vi in g.output}
    ctx = Importer(graph, opset, consumers, outputs, static)
    for init in g.initializer:
        try:
            ctx.define(init.name, const=onnx.numpy_helper.to_array(init))
        except Exception as e:  # external data that is not there, a corrupt tensor
            raise CnncError(f"{what}: cannot read initializer {init.name!r}: "
                            f"{type(e).__name__}: {e}") from None
    taken: set[str] = set()
    inputs = [vi for vi in g.input if vi.name not in static]
    for vi in inputs:
        v = graph.add_input(_input_shape(vi), _INPUT_TYPES[vi.type.tensor_type.elem_type],
                            name=_safe_name(vi.name, taken))
        ctx.define(vi.name, v)
    for index, node in enumerate(g.node):
        _convert(onnx, ctx, node, index)
    results = []
    ctx.node = None
    for vi in g.output:
        v = ctx.plain(ctx.tensors[vi.name])  # an NHWC image goes back to NCHW
        if v.producer is None or v.is_constant:  # outputs are computed values
            v = graph.add("identity", [v], layer="output")
        results.append(v)
    graph.set_outputs(*results)
    verify(graph, "ONNX import")
    return OnnxModel(proto, graph, [vi.name for vi in inputs], [vi.name for vi in g.output],
                     opset)


#: operators never evaluated at import: random ones (their result is not a function of their
#: inputs) and those with subgraphs
NOT_EVALUATED = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike",
                           "RandomUniformLike", "Multinomial", "Bernoulli", "If", "Loop",
                           "Scan", "SequenceMap"})


def _evaluate_constant(ctx, node) -> bool:
    """Evaluate ``node``, an operator with no converter, by ONNX's own reference
    implementation when every input is a constant known here (a positional encoding built
    with CumSum, Sin and Cos, a lookup table from Range); its outputs become constants.
    False when it cannot be (a computed input, a random or control-flow operator)."""
    if node.op_type in NOT_EVALUATED or not node.input:
        return False
    feeds = {}
    for name in node.input:
        if not name:
            continue
        t = ctx.tensors.get(name)
        if t is None or not t.is_const or t.const.dtype == object:
            return False
        feeds[name] = t.const
    from onnx.reference import ReferenceEvaluator
    try:
        outs = ReferenceEvaluator(node, opsets={"": ctx.opset}).run(None, feeds)
    except Exception as e:  # noqa: BLE001 - the reference's own refusal, as an import error
        failed = f"{type(e).__name__}: {e}"
    else:
        failed = None
    if failed is not None:   # raised here, not in the handler: no chained traceback
        ctx.unsupported(f"operator {node.op_type!r} on constant inputs: ONNX's reference "
                        f"implementation failed: {failed}")
    for name, out in zip(node.output, outs):
        if name:
            ctx.define(name, const=np.asarray(out))
    return True


def _convert(onnx, ctx, node, index: int) -> None:
    ctx.node, ctx.index = node, index
    if node.domain not in ("", "ai.onnx"):
        ctx.unsupported(f"operator {node.op_type!r} of domain {node.domain!r}")
    if node.op_type not in CONVERTERS:
        if _evaluate_constant(ctx, node):
            return
        ctx.unsupported(f"operator {node.op_type!r} (supported: {', '.join(sorted(CONVERTERS))})")
    fn, known = CONVERTERS[node.op_type]
    attrs = _attrs(onnx, node)
    unknown = sorted(set(attrs) - known)
    if unknown:
        ctx.unsupported(f"attribute(s) {unknown} of {node.op_type}")
    try:
        fn(ctx, attrs)
    except CnncError as e:
        msg = str(e)
        if msg.startswith(ctx.where):
            raise
        raise type(e)(f"{ctx.where}: {msg}") from None
    except Exception as e:  # a malformed node the checker let through: never a raw traceback
        raise CnncError(f"{ctx.where}: cannot import: {type(e).__name__}: {e}") from e
