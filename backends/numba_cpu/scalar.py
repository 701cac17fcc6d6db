"""Scalar source snippets shared by every generated kernel: one definition of each
activation / epilogue step as Numba source operating on a float32 scalar."""

from __future__ import annotations

from cnnc.errors import UnsupportedError


def f32(v) -> str:
    return f"np.float32({float(v)!r})"


def activation_expr(step: tuple, v: str) -> str:
    """The expression computing activation ``step`` (e.g. ``("leaky_relu", 0.2)``) of ``v``."""
    op = step[0]
    zero = f32(0)
    if op == "relu":
        return f"max({v}, {zero})"
    if op == "relu6":
        return f"min(max({v}, {zero}), {f32(6)})"
    if op == "clip":
        return f"min(max({v}, {f32(step[1])}), {f32(step[2])})"
    if op == "leaky_relu":
        return f"({v} if {v} >= {zero} else {v} * {f32(step[1])})"
    if op == "sigmoid":  # exp of a non-positive argument only: no overflow
        return (f"({f32(1)} / ({f32(1)} + np.float32(math.exp(-{v}))) if {v} >= {zero} else "
                f"np.float32(math.exp({v})) / ({f32(1)} + np.float32(math.exp({v}))))")
    if op == "tanh":
        # one float32 exp (3x faster than libm's tanh); near 0, where 1 - e cancels, the odd
        # Taylor series to x^7 (error < 1e-9 relative below |v| = 1/8)
        e = f"np.float32(math.exp({f32(-2)} * abs({v})))"
        big = f"math.copysign(({f32(1)} - {e}) / ({f32(1)} + {e}), {v})"
        v2 = f"({v} * {v})"
        small = (f"{v} * ({f32(1)} - {v2} * ({f32(1 / 3)} - {v2} * ({f32(2 / 15)} - "
                 f"{v2} * {f32(17 / 315)})))")
        return f"np.float32({small} if abs({v}) < {f32(0.125)} else {big})"
    if op == "hard_sigmoid":
        return f"min(max({v} * {f32(step[1])} + {f32(step[2])}, {zero}), {f32(1)})"
    if op == "hard_swish":
        return f"{v} * min(max({v} / {f32(6)} + {f32(0.5)}, {zero}), {f32(1)})"
    raise UnsupportedError(f"no Numba CPU code for activation {op!r}")


def epilogue_lines(epilogue, v: str, extras: list[str], channel: str, index: str) -> list[str]:
    """Statements updating the scalar ``v`` by each epilogue step in order.

    ``extras`` are the names of the arrays the steps consume (scale, shift for
    ``scale_shift``; a residual for ``add``); ``channel`` indexes per-channel vectors and
    ``index`` the residual (e.g. ``"n, i, j, c"`` or ``"t, c"``)."""
    lines, k = [], 0
    for step in epilogue:
        if step[0] == "scale_shift":
            lines.append(f"{v} = {v} * {extras[k]}[{channel}] + {extras[k + 1]}[{channel}]")
            k += 2
        elif step[0] == "add":
            lines.append(f"{v} = {v} + {extras[k]}[{index}]")
            k += 1
        else:
            lines.append(f"{v} = {activation_expr(step, v)}")
    return lines
