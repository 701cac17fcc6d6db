"""The state of one ONNX import: the tensor table, layouts and the node being converted.

ONNX holds images as NCHW; cnnc's IR holds them as NHWC. Every ONNX tensor the importer has seen
is a :class:`Tensor` in one of three layouts:

* ``plain`` — the IR value has exactly the ONNX shape and element order;
* ``nhwc`` — a 4-D NCHW ONNX tensor held as its NHWC transposition (``(0, 2, 3, 1)``);
* ``flat`` — the ``(N, C*H*W)`` flattening of an ``nhwc`` tensor taken in NHWC order, valid only
  for readers that permute their weight rows to match (Gemm/MatMul with constant weights).

A tensor switches layout on demand (:meth:`Importer.plain`, :meth:`Importer.nhwc`): the
transpose is emitted once and cached, so a value transposed at a graph input and read by several
convolutions is transposed only once. Constants (initializers, ``Constant`` nodes, folded shape
arithmetic) stay NumPy arrays until an op needs them as IR values; shape vectors may hold the
batch symbol ``"N"`` (object arrays).
"""

from __future__ import annotations

import numpy as np

from cnnc.errors import CnncError, ShapeError, UnsupportedError

PLAIN, NHWC, FLAT = "plain", "nhwc", "flat"
TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)
#: ONNX (NCHW) axis -> the same axis in the NHWC IR tensor
NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}


class Tensor:
    """One ONNX tensor: a constant array, or an IR value in a layout (plus cached views)."""

    __slots__ = ("name", "const", "value", "layout", "views", "src")

    def __init__(self, name, value=None, layout=PLAIN, const=None, src=None):
        self.name = name
        self.const = const      # np.ndarray (int/float, or object holding symbols) or None
        self.value = value      # IR Value in ``layout`` (None for an unmaterialised constant)
        self.layout = layout
        self.views = {}         # layout -> IR Value (the cache of conversions)
        self.src = src          # for FLAT: the NHWC tensor that was flattened
        if value is not None:
            self.views[layout] = value

    @property
    def is_const(self) -> bool:
        return self.const is not None


def flat_rows(c: int, h: int, w: int) -> np.ndarray:
    """Row ``i`` of the NHWC flattening is row ``flat_rows(...)[i]`` of the NCHW flattening."""
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()


def nhwc_constant(arr: np.ndarray, rank: int) -> np.ndarray:
    """A constant broadcast against a rank-``rank`` NCHW tensor, as its NHWC counterpart
    (leading unit dims dropped: a ``(C, 1, 1)`` scale becomes ``(C,)``)."""
    a = arr.reshape((1,) * (rank - arr.ndim) + arr.shape).transpose(TO_NHWC)
    while a.ndim > 1 and a.shape[0] == 1:
        a = a[0]
    return a


class Importer:
    """Tensor table and IR emission for one ONNX graph (see the module docstring)."""

    def __init__(self, graph, opset: int, consumers: dict, graph_outputs: set,
                 static_consts: set):
        self.graph = graph
        self.opset = opset
        self.tensors: dict[str, Tensor] = {}
        self.consumers = consumers          # ONNX tensor name -> [(node, input index)]
        self.graph_outputs = graph_outputs  # ONNX names of the graph's outputs
        self.static_consts = static_consts  # names known to be constants before conversion
        self.node = None
        self.index = 0

    # ---- messages --------------------------------------------------------------------------
    @property
    def where(self) -> str:
        n = self.node
        if n is None:
            return "ONNX graph outputs"
        name = repr(n.name) if n.name else f"#{self.index} (unnamed)"
        return f"ONNX node {name} ({n.op_type})"

    @property
    def layer(self) -> str:
        if self.node is None:
            return "output"
        return self.node.name or f"{self.node.op_type}_{self.index}"

    def unsupported(self, what: str):
        raise UnsupportedError(f"{self.where}: unsupported: {what}")

    # ---- the tensor table ------------------------------------------------------------------
    def define(self, name: str, value=None, layout=PLAIN, const=None, src=None) -> Tensor:
        if const is not None:
            const = np.array(const, dtype=object) if isinstance(const, str) else np.asarray(const)
        t = Tensor(name, value, layout, const, src)
        self.tensors[name] = t
        return t

    def alias(self, name: str, t: Tensor) -> None:
        """``name`` is the same tensor as ``t`` (Identity, Dropout, a float Cast)."""
        self.tensors[name] = t

    def input(self, i: int, required: bool = True) -> Tensor | None:
        """Operand ``i`` of the current node (None when absent and optional)."""
        names = self.node.input
        if i >= len(names) or not names[i]:
            if required:
                raise CnncError(f"{self.where}: missing input {i}")
            return None
        if names[i] not in self.tensors:
            raise CnncError(f"{self.where}: input {names[i]!r} is not defined before use")
        return self.tensors[names[i]]

    def const_input(self, i: int, what: str, required: bool = True) -> np.ndarray | None:
        """Operand ``i`` as a constant array; UnsupportedError when it is computed."""
        t = self.input(i, required)
        if t is None:
            return None
        if not t.is_const:
            self.unsupported(f"{what} (input {i}, {t.name!r}) must be a constant "
                             f"(an initializer or a folded Constant), but it is computed")
        return t.const

    def int_vector(self, i: int, what: str, required: bool = True):
        """A constant integer vector operand (pads, axes, shape) as a list, or None."""
        arr = self.const_input(i, what, required)
        if arr is None:
            return None
        if arr.dtype == object:
            self.unsupported(f"{what} depends on the dynamic batch size: {arr.tolist()}")
        return [int(v) for v in np.ravel(arr)]

    def onnx_shape(self, t: Tensor) -> tuple:
        """The shape ONNX sees (NCHW for an ``nhwc`` tensor)."""
        if t.is_const:
            return tuple(t.const.shape)
        s = t.value.type.shape
        return tuple(s[i] for i in TO_NCHW) if t.layout == NHWC else tuple(s)

    def rank(self, t: Tensor) -> int:
        return len(self.onnx_shape(t))

    # ---- IR emission -----------------------------------------------------------------------
    def add(self, op: str, inputs, attrs=None):
        return self.graph.add(op, inputs, attrs, layer=self.layer)

    def constant(self, arr: np.ndarray):
        arr = np.asarray(arr)
        if arr.dtype == object:
            self.unsupported(f"a shape value that depends on the dynamic batch size "
                             f"({arr.tolist()}) used as data")
        if arr.dtype.kind == "f" and arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float32)
        return self.graph.constant(arr, layer=self.layer)

    def plain(self, t: Tensor):
        """``t`` as an IR value with the ONNX shape and element order."""
        if PLAIN in t.views:
            return t.views[PLAIN]
        if t.is_const:
            v = self.constant(t.const)
        elif t.layout == NHWC:
            v = self.add("transpose", [t.value], {"perm": TO_NCHW})
        else:  # FLAT: flatten the NCHW view of its source
            v = self.add("flatten", [self.plain(t.src)], {"axis": 1})
        t.views[PLAIN] = v
        return v

    def nhwc(self, t: Tensor):
        """A 4-D ``t`` as its NHWC IR value."""
        if NHWC in t.views:
            return t.views[NHWC]
        if self.rank(t) != 4:
            raise ShapeError(f"{self.where}: input {t.name!r} must be 4-D (N,C,H,W), got shape "
                             f"{self.onnx_shape(t)}")
        if t.is_const:
            v = self.constant(np.asarray(t.const).transpose(TO_NHWC))
        else:
            v = self.add("transpose", [self.plain(t)], {"perm": TO_NHWC})
        t.views[NHWC] = v
        return v

    def is_nhwc(self, t: Tensor) -> bool:
        return not t.is_const and t.layout == NHWC

    # ---- look-ahead ------------------------------------------------------------------------
    def readers(self, name: str):
        """(node, input index) of every reader of ``name``, looking through Identity and
        Dropout; None when ``name`` (or an alias of it) is a graph output."""
        out, stack = [], [name]
        while stack:
            n = stack.pop()
            if n in self.graph_outputs:
                return None
            for node, i in self.consumers.get(n, ()):
                if node.op_type in ("Identity", "Dropout") and i == 0:
                    if any(o for o in node.output[1:]):
                        return None
                    stack.append(node.output[0])
                else:
                    out.append((node, i))
        return out

    def feeds_dense_only(self, name: str) -> bool:
        """Whether every reader of ``name`` is a Gemm (transA=0) or MatMul reading it as its
        left operand with constant 2-D weights, so it may be flattened in NHWC order."""
        readers = self.readers(name)
        if not readers:
            return False
        for node, i in readers:
            if node.op_type not in ("Gemm", "MatMul") or i != 0 or len(node.input) < 2:
                return False
            if node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute):
                return False
            b = node.input[1]
            known = self.tensors.get(b)
            if known is not None:
                if not known.is_const or known.const.ndim != 2:
                    return False
            elif b not in self.static_consts:
                return False
        return True


# ---- the converter registry ----------------------------------------------------------------
#: ONNX op type -> (converter(ctx, attrs), attribute names it understands)
CONVERTERS: dict[str, tuple] = {}


def converter(*op_types: str, attrs: tuple[str, ...] = ()):
    """Register ``fn(ctx, attrs)`` for ``op_types``; attributes outside ``attrs`` are refused
    (an attribute the importer does not know could change the op's meaning)."""
    def wrap(fn):
        for op in op_types:
            CONVERTERS[op] = (fn, frozenset(attrs))
        return fn
    return wrap
