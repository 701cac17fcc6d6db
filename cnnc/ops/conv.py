"""conv2d: NHWC input, HWIO kernel ``(kh, kw, cin // groups, cout)``, optional bias ``(cout,)``.

Group ``g`` reads input channels ``[g*cin/G, (g+1)*cin/G)`` and writes output channels
``[g*cout/G, (g+1)*cout/G)`` (Keras depthwise with multiplier ``m`` is groups=cin,
cout=cin*m, output channel ``c*m + k``).
"""

from __future__ import annotations

import numpy as np

from cnnc.errors import ShapeError
from cnnc.ir.types import TensorType
from cnnc.ops.common import expect_rank, expect_vector, same_dtype
from cnnc.ops.padding import window_geometry
from cnnc.ops.registry import Attr, def_op

CONV_ATTRS = {
    "strides": Attr("pair", (1, 1), "step of the window along H and W"),
    "padding": Attr("padding", "valid", "'valid', 'same' (TF rule) or ((top,bottom),(left,right))"),
    "dilation": Attr("pair", (1, 1), "spacing between kernel taps"),
    "groups": Attr("pos_int", 1, "channel groups (cin for depthwise)"),
}

conv2d = def_op("conv2d", attrs=CONV_ATTRS, arity=(2, 3), doc=__doc__)


def conv2d_type(x: TensorType, w: TensorType, b: TensorType | None, *, strides, padding,
                dilation, groups) -> TensorType:
    expect_rank(x, 4, "input (N,H,W,C)")
    expect_rank(w, 4, "kernel (kh,kw,cin/groups,cout)")
    n, h, wd, cin = x.shape
    kh, kw, cig, cout = w.shape
    if not isinstance(cin, int) or not isinstance(h, int) or not isinstance(wd, int):
        raise ShapeError(f"input H, W and C must be static, got {x}")
    if cin % groups:
        raise ShapeError(f"groups={groups} does not divide the {cin} input channels")
    if cout % groups:
        raise ShapeError(f"groups={groups} does not divide the {cout} output channels")
    if cig != cin // groups:
        raise ShapeError(f"kernel expects {cig} input channels per group but the input has "
                         f"{cin} channels in {groups} group(s) (kernel {w}, input {x})")
    if b is not None:
        expect_vector(b, cout, "bias")
    _, (oh, ow) = window_geometry((h, wd), (kh, kw), strides, dilation, padding)
    return TensorType((n, oh, ow, cout), same_dtype(x, w))


@conv2d.shape
def _(x, w, b=None, **attrs):
    return conv2d_type(x, w, b, **attrs)


def conv2d_reference(x, w, b=None, *, strides, padding, dilation, groups):
    """Sum over kernel taps of shifted, strided input slices times the tap's (cin, cout) matrix."""
    n, h, wd, cin = x.shape
    kh, kw, cig, cout = w.shape
    (pt, pb), (pl, pr) = (pads := window_geometry((h, wd), (kh, kw), strides, dilation,
                                                  padding))[0]
    oh, ow = pads[1]
    (sh, sw), (dh, dw) = strides, dilation
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    cog = cout // groups
    out = np.zeros((n, oh, ow, cout), dtype=np.result_type(x, w))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dh: i * dh + (oh - 1) * sh + 1: sh,
                       j * dw: j * dw + (ow - 1) * sw + 1: sw, :]
            for g in range(groups):
                out[..., g * cog:(g + 1) * cog] += (
                    patch[..., g * cig:(g + 1) * cig] @ w[i, j, :, g * cog:(g + 1) * cog])
    if b is not None:
        out += b
    return out


conv2d.reference(conv2d_reference)
