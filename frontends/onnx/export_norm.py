"""ONNX export of the normalisation, hardmax, Lp-pool and transposed-conv ops (a mixin of
the exporter in :mod:`export`): layer_norm, group_norm, hardmax, lp_pool2d, global_lp_pool, conv2d_transpose(_fused).

* layer_norm -> LayerNormalization over trailing axes, in whichever layout (NCHW or the IR's
  own) makes the normalised axes trailing, else after a Transpose that moves them last; a
  scale or bias that varies along a kept axis (or is computed) is applied after it with
  Mul/Add;
* group_norm -> Reshape (N, G, -1), InstanceNormalization (unit scale), Reshape back, then the
  per-channel Mul/Add (exact at opset 17; GroupNormalization is opset 18/21 and changed
  meaning between them);
* conv2d_transpose -> ConvTranspose with explicit pads and output_padding, the kernel
  (kh, kw, Cin, Cout/g) -> (Cin, Cout/g, kh, kw), then the fused epilogue.
"""

from __future__ import annotations

import numpy as np

from cnnc.errors import UnsupportedError
from cnnc.frontends.onnx.layout import NCHW, NCHW_AXIS, PLAIN


class NormExport:
    """``op_*`` handlers mixed into the exporter (it provides emit, const, tensor, ...)."""

    # ---- layer_norm ---------------------------------------------------------------------------
    def op_layer_norm(self, node):
        from cnnc.ops.norm import norm_axes
        x, scale, bias = node.inputs
        rank = x.type.rank
        axes = norm_axes(rank, node.attrs["axes"])
        eps = float(node.attrs["epsilon"])
        pos = {k: k for k in range(rank)}  # IR axis -> its position in the layout
        layout = PLAIN
        if rank == 4 and self.layout_of(x) == NCHW:
            nchw = sorted(NCHW_AXIS[k] for k in axes)
            if nchw == list(range(4 - len(axes), 4)):
                layout, pos = NCHW, dict(NCHW_AXIS)
        order = sorted(range(rank), key=lambda k: pos[k])        # IR axes in layout order
        kept = [k for k in order if k not in axes]
        red = [k for k in order if k in axes]
        perm = None
        if [pos[k] for k in red] != list(range(rank - len(red), rank)):
            perm = [pos[k] for k in kept + red]                  # layout positions, moved
        src = self.tensor(x, layout)
        if perm is not None:
            src = self.emit("Transpose", [src], perm=perm)
        baked = [self._bake(t, x.type.shape, kept, red) for t in (scale, bias)]
        red_shape = [int(x.type.shape[k]) for k in red]
        s = baked[0] if baked[0] is not None else np.ones(red_shape, np.float32)
        b = baked[1] if baked[1] is not None else np.zeros(red_shape, np.float32)
        y = self.emit("LayerNormalization", [src, self.const(s), self.const(b)],
                      axis=rank - len(red), epsilon=eps)
        if perm is not None:
            y = self.emit("Transpose", [y], perm=[int(i) for i in np.argsort(perm)])
        if baked[0] is None:
            y = self.emit("Mul", [y, self._operand_in(scale, layout)])
        if baked[1] is None:
            y = self.emit("Add", [y, self._operand_in(bias, layout)])
        self.define(node.output, y, layout)

    def _operand_in(self, v, layout):
        return self.operand(v, layout) if layout == NCHW else self.tensor(v, PLAIN)

    @staticmethod
    def _bake(t, x_shape, kept, red):
        """A constant scale/bias as an array over the normalised axes (in the layout's
        order), or None when it is computed or varies along a kept axis."""
        if not t.is_constant or any(not isinstance(d, int) for d in
                                    (x_shape[k] for k in red)):
            return None
        rank = len(x_shape)
        data = np.asarray(t.data, np.float64)
        data = data.reshape((1,) * (rank - data.ndim) + data.shape)
        if any(data.shape[k] != 1 for k in kept):
            return None
        full = np.broadcast_to(data, tuple(1 if k in kept else x_shape[k] for k in range(rank)))
        full = full.reshape([x_shape[k] for k in range(rank) if k in red])
        ir_red = [k for k in range(rank) if k in red]            # the order of ``full``
        return np.ascontiguousarray(full.transpose([ir_red.index(k) for k in red]))

    # ---- group_norm -----------------------------------------------------------------------------
    def op_group_norm(self, node):
        x, scale, bias = node.inputs
        rank = x.type.rank
        g, eps = int(node.attrs["groups"]), float(node.attrs["epsilon"])
        c = int(x.type.shape[-1])
        spatial = [int(d) for d in x.type.shape[1:-1]]
        if rank == 4:
            layout, xc = NCHW, self.tensor(x, NCHW)
        else:
            layout = PLAIN
            xc = self.tensor(x, PLAIN)
            if rank > 2:
                xc = self.emit("Transpose", [xc], perm=[0, rank - 1, *range(1, rank - 1)])
        r = self.emit("Reshape", [xc, self.const(np.array([0, g, -1], np.int64))])
        r = self.emit("InstanceNormalization", [r, self.const(np.ones(g, np.float32)),
                                                self.const(np.zeros(g, np.float32))],
                      epsilon=eps)
        y = self.emit("Reshape", [r, self.const(np.array([0, c, *spatial], np.int64))])
        shape = [1, c] + [1] * len(spatial)
        y = self.emit("Mul", [y, self._channel_first(scale, shape)])
        y = self.emit("Add", [y, self._channel_first(bias, shape)])
        if rank > 2 and layout == PLAIN:
            y = self.emit("Transpose", [y], perm=[0, *range(2, rank), 1])
        self.define(node.output, y, layout)

    def _channel_first(self, v, shape):
        if v.is_constant:
            return self.const(np.asarray(v.data).reshape(shape))
        return self.emit("Reshape", [self.tensor(v, PLAIN), self.const(np.array(shape,
                                                                                np.int64))])

    # ---- hardmax --------------------------------------------------------------------------------
    def op_hardmax(self, node):
        x = node.inputs[0]
        axis = node.attrs["axis"] % x.type.rank
        layout = self.layout_of(x) if x.type.rank == 4 else PLAIN
        if layout == NCHW:
            axis = NCHW_AXIS[axis]
        if self.opset < 13:
            self.opset = 13  # a single-axis Hardmax
        self.define(node.output, self.emit("Hardmax", [self.tensor(x, layout)], axis=axis),
                    layout)

    # ---- Lp pooling -----------------------------------------------------------------------------
    @staticmethod
    def _int_p(node):
        p = float(node.attrs["p"])
        if p != int(p):
            raise UnsupportedError(f"ONNX export: {node.describe()}: LpPool takes an integer p, "
                                   f"got {p}")
        return int(p)

    def op_lp_pool2d(self, node):
        from cnnc.ops.pool import pool_geometry
        x, a = node.inputs[0], node.attrs
        pads, _ = pool_geometry(x.type, a["pool_size"], a["strides"], a["padding"],
                                a["dilation"], a["ceil_mode"])
        (pt, pb), (pl, pr) = pads
        extra = {}
        if list(a["dilation"]) != [1, 1] or a["ceil_mode"]:
            self.opset = max(self.opset, 18)  # LpPool's dilations and ceil_mode
            extra = {"dilations": list(a["dilation"]), "ceil_mode": int(a["ceil_mode"])}
        y = self.emit("LpPool", [self.tensor(x, NCHW)], kernel_shape=list(a["pool_size"]),
                      strides=list(a["strides"]), pads=[pt, pl, pb, pr], p=self._int_p(node),
                      **extra)
        self.define(node.output, y, NCHW)

    def op_global_lp_pool(self, node):
        y = self.emit("GlobalLpPool", [self.tensor(node.inputs[0], NCHW)], p=self._int_p(node))
        if node.attrs["keepdims"]:
            self.define(node.output, y, NCHW)
        else:
            self.define(node.output, self.emit("Flatten", [y], axis=1), PLAIN)

    # ---- conv2d_transpose -----------------------------------------------------------------------
    def op_conv2d_transpose(self, node):
        from cnnc.ops.conv_transpose import deconv_geometry
        x, w, *rest = node.inputs
        a = node.attrs
        kh, kw = w.type.shape[:2]
        ((pt, pb), (pl, pr)), op, _ = deconv_geometry(x.type.shape[1:3], (kh, kw),
                                                      a["strides"], a["padding"],
                                                      a["output_padding"], a["dilation"])
        if w.is_constant:
            wname = self.const(w.data.transpose(2, 3, 0, 1), f"w{w.name}")
        else:
            wname = self.emit("Transpose", [self.tensor(w, PLAIN)], perm=[2, 3, 0, 1])
        ins = [self.tensor(x, NCHW), wname]
        if rest:
            ins.append(self.tensor(rest[0], PLAIN))
        y = self.emit("ConvTranspose", ins, kernel_shape=[kh, kw], strides=list(a["strides"]),
                      dilations=list(a["dilation"]), pads=[pt, pl, pb, pr],
                      output_padding=list(op), group=a["groups"])
        if node.op == "conv2d_transpose_fused":
            y = self.epilogue(y, rest[1:], a["epilogue"], NCHW)
        self.define(node.output, y, NCHW)

    op_conv2d_transpose_fused = op_conv2d_transpose
