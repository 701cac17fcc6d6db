"""conv2d_transpose: the adjoint of a strided conv2d (ONNX ConvTranspose, Keras
Conv2DTranspose), NHWC input, kernel ``(kh, kw, cin, cout // groups)``, optional bias.

Input pixel ``(i, j)`` scatters ``x[i, j] @ w[a, b]`` to the full-size output pixel
``(i * sh + a * dh, j * sw + b * dw)``; the result is that full image cropped by ``pads``
((top, bottom), (left, right)) and extended by ``output_padding`` rows/columns at the
bottom/right (which only receive taps that land there, else the bias):

    oh = (h - 1) * sh + (kh - 1) * dh + 1 - top - bottom + output_padding[0]

Group ``g`` reads input channels ``[g*cin/G, (g+1)*cin/G)`` and writes output channels
``[g*cout/G, (g+1)*cout/G)``; kernel channel ``ci`` of a group is input channel ``g*cin/G+ci``.

``conv2d_transpose_fused(x, w, b, *extras) {..., epilogue}`` is the op plus a fused epilogue
(see :mod:`cnnc.ops.fused`), made by the ``fuse_epilogue`` pass.
"""

from __future__ import annotations

import numpy as np

from cnnc.errors import ConfigError, ShapeError
from cnnc.ir.types import TensorType
from cnnc.ops.common import expect_rank, expect_vector, same_dtype
from cnnc.ops.fused import EPILOGUE, _check_extras, apply_epilogue
from cnnc.ops.registry import KINDS, Attr, _pair, def_op

KINDS.setdefault("pair0", lambda v, n, w: _pair(v, n, w, 0))

DECONV_ATTRS = {
    "strides": Attr("pair", (1, 1), "upsampling step along H and W"),
    "padding": Attr("padding", "valid", "'valid' or explicit ((top, bottom), (left, right)) "
                                        "cropped off the full output"),
    "output_padding": Attr("pair0", (0, 0), "rows/columns added at the bottom/right"),
    "dilation": Attr("pair", (1, 1), "spacing between kernel taps"),
    "groups": Attr("pos_int", 1, "channel groups"),
}

conv2d_transpose = def_op("conv2d_transpose", attrs=DECONV_ATTRS, arity=(2, 3), doc=__doc__)
conv2d_transpose_fused = def_op("conv2d_transpose_fused", attrs={**DECONV_ATTRS, **EPILOGUE},
                                arity=(3, None), doc=__doc__)


def deconv_pads(padding):
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        raise ConfigError("conv2d_transpose needs explicit pads (or 'valid'); the front ends "
                          "resolve SAME to pads and output_padding")
    return tuple(tuple(p) for p in padding)


def _output_padding(op):
    ok = isinstance(op, (list, tuple)) and len(op) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in op)
    if not ok:
        raise ConfigError(f"output_padding must be a pair of non-negative ints, got {op!r}")
    return tuple(int(v) for v in op)


def deconv_geometry(in_hw, kernel_hw, strides, padding, output_padding, dilation):
    """(pads, output_padding, (oh, ow)) of a transposed convolution."""
    pads = deconv_pads(padding)
    op = _output_padding(output_padding)
    out = []
    for n, k, s, d, (b, e), o in zip(in_hw, kernel_hw, strides, dilation, pads, op):
        full = (n - 1) * s + (k - 1) * d + 1
        size = full - b - e + o
        if size < 1:
            raise ShapeError(f"the pads {pads} crop the whole {full}-cell transposed-conv output "
                             f"(input {tuple(in_hw)}, kernel {tuple(kernel_hw)}, strides "
                             f"{tuple(strides)})")
        out.append(size)
    return pads, op, tuple(out)


def deconv_type(x, w, b, *, strides, padding, output_padding, dilation, groups) -> TensorType:
    expect_rank(x, 4, "input (N,H,W,C)")
    expect_rank(w, 4, "kernel (kh,kw,cin,cout/groups)")
    n, h, wd, cin = x.shape
    kh, kw, wcin, cog = w.shape
    if not all(isinstance(d, int) for d in (h, wd, cin)):
        raise ShapeError(f"input H, W and C must be static, got {x}")
    if cin % groups:
        raise ShapeError(f"groups={groups} does not divide the {cin} input channels")
    if wcin != cin:
        raise ShapeError(f"kernel expects {wcin} input channels but the input has {cin} "
                         f"(kernel {w}, input {x})")
    cout = cog * groups
    if b is not None:
        expect_vector(b, cout, "bias")
    _, _, (oh, ow) = deconv_geometry((h, wd), (kh, kw), strides, padding, output_padding,
                                     dilation)
    return TensorType((n, oh, ow, cout), same_dtype(x, w))


@conv2d_transpose.shape
def _(x, w, b=None, **attrs):
    return deconv_type(x, w, b, **attrs)


def deconv_reference(x, w, b=None, *, strides, padding, output_padding, dilation, groups):
    """Scatter form: every tap adds ``x @ w[a, b]`` to a strided slice of the full output."""
    n, h, wd, cin = x.shape
    kh, kw, _, cog = w.shape
    pads, op, (oh, ow) = deconv_geometry((h, wd), (kh, kw), strides, padding, output_padding,
                                         dilation)
    (pt, pb), (pl, pr) = pads
    (sh, sw), (dh, dw) = strides, dilation
    fh = (h - 1) * sh + (kh - 1) * dh + 1 + op[0]
    fw = (wd - 1) * sw + (kw - 1) * dw + 1 + op[1]
    cig = cin // groups
    full = np.zeros((n, fh, fw, cog * groups), dtype=np.result_type(x, w))
    for i in range(kh):
        for j in range(kw):
            for g in range(groups):
                full[:, i * dh: i * dh + (h - 1) * sh + 1: sh,
                     j * dw: j * dw + (wd - 1) * sw + 1: sw, g * cog:(g + 1) * cog] += (
                    x[..., g * cig:(g + 1) * cig] @ w[i, j, g * cig:(g + 1) * cig, :])
    out = full[:, pt:pt + oh, pl:pl + ow, :]
    if b is not None:
        out = out + b
    return out


conv2d_transpose.reference(deconv_reference)


@conv2d_transpose_fused.shape
def _(x, w, b, *extras, epilogue, **attrs):
    out = deconv_type(x, w, b, **attrs)
    _check_extras(out, extras, epilogue)
    return out


@conv2d_transpose_fused.reference
def _(x, w, b, *extras, epilogue, **attrs):
    return apply_epilogue(deconv_reference(x, w, b, **attrs), extras, epilogue)
