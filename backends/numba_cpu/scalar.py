"""Scalar source snippets shared by every generated kernel: one definition of each
activation / epilogue step as Numba source operating on a float32 scalar."""

from __future__ import annotations

from cnnc.errors import UnsupportedError


def f32(v) -> str:
    return f"np.float32({float(v)!r})"


def activation_lines(step: tuple, v: str) -> list[str]:
    """Statements replacing scalar ``v`` by activation ``step`` (e.g. ``("leaky_relu", 0.2)``)
    of it."""
    if step[0] == "tanh":
        return _tanh_lines(v)
    return [f"{v} = {_activation_expr(step, v)}"]


def unary_body(op: str, attrs: dict) -> list[str]:
    """Body of an elementwise kernel applying activation ``op`` to ``x0`` into ``v``."""
    return ["v = x0", *activation_lines((op, *attrs.values()), "v")]


def _activation_expr(step: tuple, v: str) -> str:
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
    if op == "hard_sigmoid":
        return f"min(max({v} * {f32(step[1])} + {f32(step[2])}, {zero}), {f32(1)})"
    if op == "hard_swish":
        return f"{v} * min(max({v} / {f32(6)} + {f32(0.5)}, {zero}), {f32(1)})"
    raise UnsupportedError(f"no Numba CPU code for activation {op!r}")


# tanh(x) ~ x * P(x^2) / Q(x^2) on |x| <= 9 (past 9.0109 tanh rounds to +-1 in float32): a
# rational fit of relative error 2.1e-8, evaluated in float64 so the float32 result is within
# 0.62 ulp of tanh over all of [-9, 9].  Pure arithmetic, so the conv and dense epilogues stay
# vectorised (a libm exp per element cost 4 ns: LeNet-5's first conv spent 88% of its time in it).
_TANH_P = (0.9999999981106429, 0.1309092684008665, 0.003111674814844162, 1.123493558112207e-05,
           -2.0552201202536267e-08, 5.4355543154571996e-11, -8.894283861749725e-14)
_TANH_Q = (1.0, 0.4642425605210434, 0.024525934750334624, 0.00025573772688199147)


def _horner(coefs, s: str) -> str:
    expr = repr(coefs[-1])
    for c in reversed(coefs[:-1]):
        expr = f"({expr} * {s} + {c!r})"
    return expr


def _tanh_lines(v: str) -> list[str]:
    # past 9.0109 tanh rounds to +-1 in float32 (the clamped value divided by itself); NaN
    # passes through min/max and the division
    return [f"tanh_t = min(max(np.float64({v}), -9.0109), 9.0109)", "tanh_s = tanh_t * tanh_t",
            f"tanh_y = tanh_t * {_horner(_TANH_P, 'tanh_s')}",
            f"tanh_y = tanh_y / {_horner(_TANH_Q, 'tanh_s')}",
            f"{v} = np.float32(tanh_y if abs(tanh_t) < 9.0109 else tanh_t / 9.0109)"]


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
            lines += activation_lines(step, v)
    return lines
