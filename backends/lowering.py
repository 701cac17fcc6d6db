"""Checks and constant preparation shared by the code-generating backends (CPU and CUDA)."""

from __future__ import annotations

from cnnc.errors import UnsupportedError
from cnnc.ops.norm import bn_scale_shift
from cnnc.ops.padding import resolve_pads


def conv_spec(node, **extra):
    """The static description (:class:`~cnnc.backends.numba_cpu.convgen.ConvSpec`) of a
    conv2d / conv2d_fused node: shapes, explicit pads, strides, dilation, groups, epilogue."""
    from cnnc.backends.numba_cpu.convgen import ConvSpec
    a = dict(node.attrs)
    _, h, w, cin = node.inputs[0].shape
    kh, kw, _, cout = node.inputs[1].shape
    (pt, pb), (pl, pr) = resolve_pads(a["padding"], (h, w), (kh, kw), a["strides"],
                                      a["dilation"])
    return ConvSpec(h, w, cin, kh, kw, cout, tuple(a["strides"]), (pt, pb, pl, pr),
                    tuple(a["dilation"]), a["groups"], tuple(a.get("epilogue", ())), **extra)


def check_residuals(node, backend: str) -> None:
    """A fused epilogue's ``add`` residuals must have the output's exact shape."""
    extras = list(node.inputs[3:])
    k = 0
    for st in dict(node.attrs).get("epilogue", ()):
        if st[0] == "add" and tuple(extras[k].shape) != tuple(node.output.shape):
            raise UnsupportedError(f"{node.describe()}: a broadcast residual {extras[k].type} "
                                   f"in a fused epilogue has no {backend} kernel")
        k += {"add": 1, "scale_shift": 2}.get(st[0], 0)


def batch_norm_affine(node, consts: dict, backend: str):
    """(scale, shift) of a batch_norm with constant statistics on the last axis."""
    x = node.inputs[0]
    params = [consts.get(id(v)) for v in node.inputs[1:]]
    a = dict(node.attrs)
    if any(p is None for p in params) or a["axis"] % len(x.shape) != len(x.shape) - 1:
        raise UnsupportedError(f"{node.describe()}: batch_norm needs constant statistics on "
                               f"the last axis in the {backend} backend")
    return bn_scale_shift(*params, a["epsilon"])
