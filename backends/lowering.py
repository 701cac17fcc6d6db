"""Checks and constant preparation shared by the code-generating backends (CPU and CUDA)."""

from __future__ import annotations

from cnnc.errors import UnsupportedError
from cnnc.ops.norm import bn_scale_shift


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
