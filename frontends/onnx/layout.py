"""Layout bookkeeping for translating a cnnc graph (NHWC) into a runtime that works NCHW.

Shared by the ONNX exporter and the PyTorch peer in ``benchmarks``: a rank-4 value is held
NCHW once a convolution, pooling or batch norm touched it, any other layout of a value is made
on demand (and made once), lower-rank operands broadcast in NHWC terms, and a ``flatten`` whose
readers are all dense layers with constant weights may stay in NCHW order. A subclass says how
its target writes a constant, a permutation and a lower-rank operand lifted to NCHW.
"""

from __future__ import annotations

import numpy as np

PLAIN, NCHW = "plain", "nchw"
TO_NCHW = (0, 3, 1, 2)   # NHWC -> NCHW
TO_NHWC = (0, 2, 3, 1)   # NCHW -> NHWC
#: NHWC axis -> its position in the NCHW tensor
NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


class NchwTranslator:
    """Names of values per layout, made on demand through the target's hooks."""

    def __init__(self, graph):
        self.g = graph
        self.names: dict[tuple[int, str], str] = {}   # (id(value), layout) -> target name
        self.layout: dict[int, str] = {}              # id(value) -> layout of its main tensor
        self.flat_nchw: dict[int, tuple] = {}         # flatten outputs in NCHW order -> (H,W,C)
        self.users = graph.users()

    # ---- what a target provides -----------------------------------------------------------
    def constant(self, array, hint: str) -> str:
        raise NotImplementedError(f"{type(self).__name__}.constant")

    def permute(self, name: str, perm: tuple, hint: str) -> str:
        raise NotImplementedError(f"{type(self).__name__}.permute")

    def lift_to_nchw(self, name: str, rank: int) -> str:
        """A rank < 4 tensor, broadcasting in NHWC terms, as its NCHW equivalent."""
        raise NotImplementedError(f"{type(self).__name__}.lift_to_nchw")

    # ---- layouts ----------------------------------------------------------------------------
    def define(self, value, name: str, layout: str) -> None:
        self.names[(id(value), layout)] = name
        self.layout[id(value)] = layout

    def layout_of(self, value) -> str:
        return PLAIN if value.is_constant else self.layout[id(value)]

    def tensor(self, value, layout: str) -> str:
        """The name of ``value`` in ``layout`` (NCHW only for rank 4), made on demand."""
        key = (id(value), layout)
        if key in self.names:
            return self.names[key]
        if value.is_constant:
            data = value.data if layout == PLAIN else value.data.transpose(TO_NCHW)
            name = self.constant(data, f"w{value.name}")
        else:
            src = self.names[(id(value), self.layout[id(value)])]
            name = self.permute(src, TO_NCHW if layout == NCHW else TO_NHWC, f"t{value.name}")
        self.names[key] = name
        return name

    def operand(self, v, layout: str) -> str:
        """``v`` (a Value or an array) as an operand broadcast against a rank-4 result held in
        ``layout``; lower-rank operands broadcast in NHWC terms, like NumPy."""
        if layout == PLAIN:
            return self.constant(v, "c") if isinstance(v, np.ndarray) else self.tensor(v, PLAIN)
        rank = v.ndim if isinstance(v, np.ndarray) else v.type.rank
        if isinstance(v, np.ndarray) or v.is_constant:
            arr = v if isinstance(v, np.ndarray) else v.data
            return self.constant(arr.reshape((1,) * (4 - rank) + arr.shape).transpose(TO_NCHW),
                                 "c")
        if rank == 4:
            return self.tensor(v, NCHW)
        return self.lift_to_nchw(self.tensor(v, PLAIN), rank)

    def result_layout(self, node) -> str:
        """NCHW for a rank-4 result of an elementwise op with an NCHW rank-4 operand."""
        if node.output.type.rank != 4:
            return PLAIN
        return NCHW if any(not v.is_constant and v.type.rank == 4 and
                           self.layout[id(v)] == NCHW for v in node.inputs) else PLAIN

    def dense_readers_only(self, v) -> bool:
        """Whether every reader of ``v`` is a dense layer taking it as its input with constant
        weights (so a flatten may stay in NCHW order and permute those weights' rows)."""
        readers = self.users.get(v, [])
        return bool(readers) and all(v is not out for out in self.g.outputs) and all(
            n.op in ("dense", "dense_fused") and n.inputs[0] is v and n.inputs[1].is_constant
            and all(u is not v for u in n.inputs[1:]) for n in readers)
