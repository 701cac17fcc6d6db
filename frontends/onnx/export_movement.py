"""ONNX lowerings of the data-movement ops (slice, take, tile, broadcast_to,
resize), mixed into the exporter (:class:`cnnc.frontends.onnx.export._Exporter`). A rank-4
operand held NCHW stays NCHW (axes, repeats and shapes are permuted instead)."""

from __future__ import annotations

import math

import numpy as np

from cnnc.errors import UnsupportedError
from cnnc.frontends.onnx.layout import NCHW, NCHW_AXIS, PLAIN


class MovementExport:
    def _held(self, x):
        """(layout, IR axis -> ONNX axis) in which to read ``x``."""
        layout = self.layout_of(x) if x.type.rank == 4 else PLAIN
        amap = NCHW_AXIS if layout == NCHW else {k: k for k in range(x.type.rank)}
        return layout, amap

    def op_slice(self, node):
        x, a = node.inputs[0], node.attrs
        layout, amap = self._held(x)
        ints = lambda v: self.const(np.array(v, np.int64))  # noqa: E731
        y = self.emit("Slice", [self.tensor(x, layout), ints(a["starts"]), ints(a["ends"]),
                                ints([amap[ax % x.type.rank] for ax in a["axes"]]),
                                ints(a["steps"])])
        self.define(node.output, y, layout)

    def op_take(self, node):
        x, a = node.inputs[0], node.attrs
        layout, amap = self._held(x)
        if len(a["indices_shape"]) != 1:
            layout, amap = PLAIN, {k: k for k in range(x.type.rank)}
        idx = self.fresh("idx")  # not self.const: a 0-d index (it drops the axis) stays 0-d
        self.inits.append(self.onnx.numpy_helper.from_array(
            np.array(a["indices"], np.int64).reshape(a["indices_shape"]), idx))
        y = self.emit("Gather", [self.tensor(x, layout), idx],
                      axis=amap[a["axis"] % x.type.rank])
        self.define(node.output, y, layout)

    def op_tile(self, node):
        x = node.inputs[0]
        layout, amap = self._held(x)
        reps = [1] * x.type.rank
        for k, r in enumerate(node.attrs["repeats"]):
            reps[amap[k]] = r
        y = self.emit("Tile", [self.tensor(x, layout), self.const(np.array(reps, np.int64))])
        self.define(node.output, y, layout)

    def op_broadcast_to(self, node):
        x = node.inputs[0]
        shape = [1 if isinstance(d, str) else int(d) for d in node.attrs["shape"]]
        layout = self.layout_of(x) if x.type.rank == 4 and len(shape) == 4 else PLAIN
        if layout == NCHW:
            nchw = [1] * 4
            for k, d in enumerate(shape):
                nchw[NCHW_AXIS[k]] = d
            shape = nchw
        y = self.emit("Expand", [self.tensor(x, layout), self.const(np.array(shape, np.int64))])
        self.define(node.output, y, layout)

    def op_resize(self, node):
        x, a = node.inputs[0], node.attrs
        in_hw, out_hw, scales = x.type.shape[1:3], tuple(a["size"]), tuple(a["scales"])
        nearest = a["nearest_mode"]
        if nearest == "simple":  # truncation when upsampling, ceil when downsampling
            kinds = {s >= 1 for s in scales}
            if len(kinds) != 1:
                raise UnsupportedError(f"ONNX export: {node.describe()}: nearest_mode 'simple' "
                                       f"upsamples one axis and downsamples the other")
            nearest = "floor" if kinds.pop() else "ceil"
        if a["coordinate_mode"] == "half_pixel_symmetric" and self.opset < 19:
            self.opset = 19
        attrs = dict(mode=a["mode"], coordinate_transformation_mode=a["coordinate_mode"])
        if a["mode"] == "nearest":
            attrs["nearest_mode"] = nearest
        src = self.tensor(x, NCHW)
        f32 = np.float32
        dims = list(zip(in_hw, scales, out_hw))
        exact = all(math.isclose(o / n, s, rel_tol=1e-7) for n, s, o in dims)
        # floor(in * scale) = out for the scale as given, as a float32 (product in float32 or
        # float64: runtimes and ONNX's shape inference differ)
        fits = all(math.floor(n * s) == o == int(f32(n) * f32(s)) == math.floor(n * float(f32(s)))
                   for n, s, o in dims)
        # the float32 scale a runtime derives from sizes (out / in) is the scale itself
        same = all(f32(o) / f32(n) == f32(s) for n, s, o in dims)
        if fits and (same or not exact):
            # scales: any batch and no axes (ONNX Runtime's optimised graph could not load a
            # Resize-18 with sizes of H and W and axes [2, 3])
            ins = [src, "", self.const(np.array([1, 1, *scales], np.float32))]
        elif exact:
            n_, c_ = x.type.shape[0], x.type.shape[3]
            if isinstance(n_, str):  # sizes of H and W only (axes: opset 18)
                if self.opset < 18:
                    self.opset = 18
                ins = [src, "", "", self.const(np.array(out_hw, np.int64))]
                attrs["axes"] = [2, 3]
            else:
                ins = [src, "", "", self.const(np.array([n_, c_, *out_hw], np.int64))]
        else:
            raise UnsupportedError(f"ONNX export: {node.describe()}: output {out_hw} of "
                                   f"{in_hw} is neither floor(in * scale) nor in * scale for "
                                   f"the scales {scales}")
        self.define(node.output, self.emit("Resize", ins, **attrs), NCHW)
