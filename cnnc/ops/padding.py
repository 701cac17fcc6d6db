"""Window arithmetic shared by convolution and pooling (one place for the lecture's formula).

Output size: ``w' = (w - f_eff + p_before + p_after) // s + 1`` with ``f_eff = (f-1)*d + 1``
(the lecture's ``(w - f + 2p)/s + 1`` with symmetric padding and no dilation).

TF/Keras SAME: ``total = max((ceil(w/s) - 1)*s + f_eff - w, 0)``; the odd extra cell goes to the
bottom/right: ``before = total // 2``, ``after = total - before``.
"""

from __future__ import annotations

from cnnc.errors import ShapeError


def effective_kernel(k: int, d: int = 1) -> int:
    return (k - 1) * d + 1


def same_pads(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    total = max((-(-n // s) - 1) * s + effective_kernel(k, d) - n, 0)
    return total // 2, total - total // 2


def resolve_pads(padding, in_hw, kernel_hw, strides, dilation=(1, 1)):
    """The padding attribute -> ((top, bottom), (left, right))."""
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        return tuple(same_pads(n, k, s, d)
                     for n, k, s, d in zip(in_hw, kernel_hw, strides, dilation))
    return tuple(tuple(p) for p in padding)


def out_size(n: int, k: int, s: int, d: int, before: int, after: int,
             ceil_mode: bool = False) -> int:
    """Output length of a window of ``k`` cells (dilation ``d``) sliding by ``s``.

    With ``ceil_mode`` (ONNX/PyTorch pooling) a partial last window counts, except one that
    would start in the right padding (no window is all padding)."""
    span = n + before + after - effective_kernel(k, d)
    if span < 0:
        raise ShapeError(f"window {effective_kernel(k, d)} (kernel {k}, dilation {d}) is larger "
                         f"than the padded input {n + before + after} "
                         f"(input {n}, pads {before}+{after})")
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= n + before:
        out -= 1
    return out


def window_geometry(in_hw, kernel_hw, strides, dilation, padding, ceil_mode=False):
    """(pads, out_hw) for a 2-D window op."""
    pads = resolve_pads(padding, in_hw, kernel_hw, strides, dilation)
    out = tuple(out_size(n, k, s, d, b, a, ceil_mode)
                for n, k, s, d, (b, a) in zip(in_hw, kernel_hw, strides, dilation, pads))
    return pads, out
