"""Scalar source snippets shared by every generated kernel: one definition of each
activation / epilogue step as Numba source operating on a float32 scalar."""

from __future__ import annotations

from cnnc.errors import UnsupportedError


def f32(v) -> str:
    return f"np.float32({float(v)!r})"


def activation_lines(step: tuple, v: str) -> list[str]:
    """Statements replacing scalar ``v`` by activation ``step`` (e.g. ``("leaky_relu", 0.2)``)
    of it. Transcendental steps compute in float64 and round once to float32 (sigmoid and
    SiLU in float32 through ``vexpf``, sigmoid within 2.3 ulp; GELU through ``vgeluf``);
    exponentials call ``vexp`` (numba_cpu/vmath.py: pure arithmetic, so the loop stays
    vectorized; the CUDA module defines its own), which clamps its argument, and the argument
    of every ``math`` call is kept in its domain, so the same source also runs on the CUDA
    simulator, where ``math`` raises on a domain or range error."""
    op = step[0]
    if op in _LINES:
        return _LINES[op](step, v)
    return [f"{v} = {_activation_expr(step, v)}"]


def unary_body(op: str, attrs: dict) -> list[str]:
    """Body of an elementwise kernel applying activation ``op`` to ``x0`` into ``v``."""
    return ["v = x0", *activation_lines((op, *attrs.values()), "v")]


def _activation_expr(step: tuple, v: str) -> str:
    op = step[0]
    zero = f32(0)
    if op == "relu":
        # max(v, 0) with Python's semantics (NaN passes through) as a select: the SLP
        # vectorizer left Numba's max scalar in a register tile's store (1x1 16->64 + ReLU on
        # 112x112: 176 us against 69).  The clamps below keep min/max: as two selects they
        # ran 10x slower in such a store (on large tiles they go to the tail function,
        # split_epilogue)
        return f"({zero} if {v} < {zero} else {v})"
    if op == "relu6":
        return f"min(max({v}, {zero}), {f32(6)})"
    if op == "clip":
        return f"min(max({v}, {f32(step[1])}), {f32(step[2])})"
    if op == "leaky_relu":
        return f"({v} if {v} >= {zero} else {v} * {f32(step[1])})"
    if op == "hard_sigmoid":
        return f"min(max({v} * {f32(step[1])} + {f32(step[2])}, {zero}), {f32(1)})"
    if op == "hard_swish":
        return f"{v} * min(max({v} / {f32(6)} + {f32(0.5)}, {zero}), {f32(1)})"
    if op == "softsign":
        return f"{v} / ({f32(1)} + abs({v}))"
    if op == "thresholded_relu":
        return f"({v} if {v} > {f32(step[1])} else {zero})"
    if op == "shrink":
        b, lam = f32(step[1]), f32(step[2])
        return f"({v} + {b} if {v} < -{lam} else ({v} - {b} if {v} > {lam} else {zero}))"
    if op == "neg":
        return f"-{v}"
    if op == "abs":
        return f"abs({v})"
    if op == "reciprocal":
        return f"{f32(1)} / {v}"
    if op == "sqrt":
        return f"(np.float32(math.sqrt(np.float64({v}))) if {v} >= {zero} else np.float32(math.nan))"
    if op == "exp":
        return f"np.float32(vexp(np.float64({v})))"
    if op == "log":
        return (f"(np.float32(math.log(np.float64({v}))) if {v} > {zero} else "
                f"(np.float32(-math.inf) if {v} == {zero} else np.float32(math.nan)))")
    raise UnsupportedError(f"no Numba CPU code for activation {op!r}")


def _expm1_neg(v: str) -> str:
    """expm1 of min(v, 0) in float64 (the negative branch of elu/selu/celu)."""
    return f"math.expm1(min(np.float64({v}), 0.0))"


def _elu_lines(step, v):
    return [f"{v} = {v} if {v} > 0 else np.float32({step[1]!r} * {_expm1_neg(v)})"]


def _selu_lines(step, v):
    alpha, gamma = step[1], step[2]
    return [f"{v} = np.float32({gamma!r} * np.float64({v})) if {v} > 0 else "
            f"np.float32({gamma * alpha!r} * {_expm1_neg(v)})"]


def _celu_lines(step, v):
    alpha = step[1]
    return [f"{v} = {v} if {v} > 0 else np.float32({alpha!r} * "
            f"math.expm1(min(np.float64({v}) / {alpha!r}, 0.0)))"]


def _softplus64(v: str) -> str:
    """log(1 + e^v) in float64 without overflow: max(v, 0) + log1p(e^-|v|)."""
    return f"(max(np.float64({v}), 0.0) + math.log1p(math.exp(-abs(np.float64({v})))))"


def _softplus_lines(step, v):
    return [f"{v} = np.float32({_softplus64(v)})"]


def _mish_lines(step, v):
    # v * tanh(softplus(v)); softplus >= 0, tanh of it through the rational tanh
    return [f"mish_x = {v}", f"{v} = np.float32({_softplus64(v)})", *_tanh_lines(v),
            f"{v} = mish_x * {v}"]


def _sigmoid_lines(step, v):
    # float32: e = e^-|v| in (0, 1] (vexpf, vmath.py), then 1 / (1 + e) for v >= 0 and
    # e / (1 + e) below, so the negative side keeps its relative accuracy: one division of
    # the selected numerator (a multiplication by 1 / (1 + e) rounded twice: 2.6 ulp, and
    # 1.04-1.16x as long on AVX2 code, 1.03-1.07x on AVX-512); within 2.3 ulp
    # (tests/backends/test_vmath.py)
    return [f"sg_e = vexpf(np.float32(-abs({v})))",
            f"{v} = (np.float32(1) if {v} >= 0 else sg_e) / (np.float32(1) + sg_e)"]


def _swish_lines(step, v):
    return [f"swish_x = {v}", f"{v} = {v} * {f32(step[1])}", *_sigmoid_lines(("sigmoid",), v),
            f"{v} = swish_x * {v}"]


def _gelu_lines(step, v):
    # float32 through erfc, so the negative tail keeps its relative accuracy (vgeluf, vmath.py)
    return [f"{v} = vgeluf(np.float32({v}))"]


def _gelu_tanh_lines(step, v):
    # 0.5 x (1 + tanh z) = x * sigmoid(2 z), z = sqrt(2/pi) (x + 0.044715 x^3): no cancellation
    return [f"gelu_x = np.float64({v})",
            "gelu_z = 1.5957691216057308 * (gelu_x + 0.044715 * gelu_x * gelu_x * gelu_x)",
            "gelu_s = 1.0 / (1.0 + vexp(-gelu_z))",
            f"{v} = np.float32(gelu_x * gelu_s)"]


def _pow_lines(step, v):
    e = step[1]
    if e == 1:
        return []
    if e == 2:
        return [f"{v} = {v} * {v}"]
    if e == 0.5:
        return activation_lines(("sqrt",), v)
    if e == int(e) and abs(e) <= 16:  # integer powers by repeated products (any sign of v)
        k = abs(int(e))
        prod = " * ".join([f"np.float64({v})"] * k) if k else "1.0"
        return [f"{v} = np.float32({prod})" if e >= 0 else f"{v} = np.float32(1.0 / ({prod}))"]
    # non-integer: exp(e * log v) for v > 0; 0 ** e is 0 (e > 0) or inf; negative v: nan
    return [f"{v} = (np.float32(math.exp(min({e!r} * math.log(np.float64({v})), 89.0))) "
            f"if {v} > 0 else (np.float32({0.0 if e > 0 else 'math.inf'}) if {v} == 0 "
            f"else np.float32(math.nan)))"]


# erf(x) for |x| < 2 as x * A(x^2), for 2 <= |x| < 4 as 1 - exp(-x^2) * B(|x| - 3); from 4 on
# erf rounds to +-1 in float32. A and B are least-squares Chebyshev fits (to scipy's erf and
# erfcx), relative error below 1e-9 on [0, 4]: the float32 result is the correctly rounded
# erf or its neighbour. Evaluated in float64, pure arithmetic on |x| < 2.
_ERF_A = (1.1283791666379412, -0.37612636092246915, 0.11283763036093773, -0.026865028024460592,
          0.005221625189704625, -0.0008519825059618718, 0.0001183716747819534,
          -1.3829920321878425e-05, 1.2791770915315201e-06, -8.15655988017375e-08,
          2.6035045570570614e-09)
_ERF_B = (0.17900115183413934, -0.054372260836111255, 0.015884338708196784,
          -0.004479414537034562, 0.001223296457313425, -0.0003242170294715627,
          8.28435759592763e-05, -2.078340206515585e-05, 5.9357220812147836e-06,
          -1.4334605809490232e-06)


def _erf_lines(v: str) -> list[str]:
    return [f"erf_a = min(abs(np.float64({v})), 4.0)",
            f"erf_y = erf_a * {_horner(_ERF_A, '(erf_a * erf_a)')} if erf_a < 2.0 else "
            f"1.0 - vexp(-erf_a * erf_a) * {_horner(_ERF_B, '(erf_a - 3.0)')}",
            f"{v} = np.float32(erf_y if {v} >= 0 else -erf_y) if {v} == {v} else {v}"]


#: float32 values this large are integers already (and NaN compares false): returned as is
_INTEGRAL = f32(2 ** 23)


def _rounding_lines(step, v):
    """floor, ceil or round (half to even) of ``v`` from an integer conversion and selects,
    which vectorize (``math.floor`` returns a Python int, undefined for NaN and infinities);
    the conversion is to int32, which AVX2 has as a vector instruction (to int64 only
    AVX-512 has: floor on 56x56x256 on AVX2 code 242 -> 140 us, round 514 -> 291).
    In float64, where ``v + 0.5`` is exact.  Only values under 2^23 in magnitude are
    converted (NaN and infinities become 0 first: the CUDA simulator's conversion raises on
    them); the others are integral already and returned as they are."""
    op = step[0]
    w = f"np.float64({v})"
    lines = [f"rd_w = {w} + 0.5" if op == "round" else f"rd_w = {w}",
             f"rd_w = rd_w if abs({v}) < {_INTEGRAL} else 0.0",
             "rd_t = np.float64(np.int32(rd_w))"]   # toward zero; int32: AVX2 packs it
    if op == "ceil":
        lines.append("rd_r = rd_t + 1.0 if rd_t < rd_w else rd_t")
    else:   # floor of v, or of v + 0.5; a tie (exactly x.5) that lands odd goes down
        lines.append("rd_r = rd_t - 1.0 if rd_t > rd_w else rd_t")
        if op == "round":
            lines.append(f"rd_r = rd_r - 1.0 if (rd_r - {w} == 0.5 and "
                         f"(np.int32(rd_r) & 1) != 0) else rd_r")
    lines.append(f"{v} = np.float32(rd_r) if abs({v}) < {_INTEGRAL} else {v}")
    return lines


_LINES = {
    "tanh": lambda step, v: _tanh_lines(v), "sigmoid": _sigmoid_lines,
    "erf": lambda step, v: _erf_lines(v),
    "gelu": _gelu_lines, "gelu_tanh": _gelu_tanh_lines,
    "elu": _elu_lines, "selu": _selu_lines, "celu": _celu_lines,
    "softplus": _softplus_lines, "mish": _mish_lines, "swish": _swish_lines,
    "pow_scalar": _pow_lines,
    "floor": _rounding_lines, "ceil": _rounding_lines, "round": _rounding_lines,
}

#: ops computed by one line from operands ``x0, x1, ...`` (arithmetic, comparisons, logic,
#: where)
ELEMENTWISE_BODY = {
    "add": "v = x0 + x1", "sub": "v = x0 - x1", "mul": "v = x0 * x1", "div": "v = x0 / x1",
    # float64 pow: nan for a negative base and a non-integer exponent, inf past float32's range
    "pow": "v = np.float32(np.float64(x0) ** np.float64(x1))",
    # NaN propagates like NumPy's maximum/minimum (x0 != x0 is NaN)
    "maximum": "v = x0 if (x0 != x0 or x0 > x1) else x1",
    "minimum": "v = x0 if (x0 != x0 or x0 < x1) else x1",
    "prelu": "v = x0 if x0 >= 0 else x0 * x1",
    "where": "v = x1 if x0 != 0 else x2",
}
# bool values are float 0/1 in every buffer; NaN compares false (unequal, unordered)
ELEMENTWISE_BODY.update({op: f"v = np.float32(1) if ({c}) else np.float32(0)" for op, c in {
    "less": "x0 < x1", "greater": "x0 > x1", "equal": "x0 == x1", "less_equal": "x0 <= x1",
    "greater_equal": "x0 >= x1", "logical_and": "x0 != 0 and x1 != 0",
    "logical_or": "x0 != 0 or x1 != 0", "logical_xor": "(x0 != 0) != (x1 != 0)",
    "logical_not": "x0 == 0"}.items()})


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


#: activations that stay in a register-tiled conv's store, which the SLP vectorizer turns
#: into vector code with them (one select, or none); any other activation ending an
#: epilogue goes to the kernel's loop-vectorized tail function
CHEAP_ACTIVATIONS = frozenset({"relu", "neg", "abs", "thresholded_relu"})
#: ... in tiles of at most this many values; in larger ones only these, and not after a
#: residual add.  Measured on AVX-512 (benchmarks/RESULTS.md): a clamp (relu6, clip,
#: hard_sigmoid, hard_swish), leaky_relu or shrink left an 8 px x 32 ch store scalar (1x1
#: 16->64 on 112x112: 216-234 us in the store, 98-101 in the tail, 69 with a ReLU in the
#: store); a ReLU after a residual add, tiles of 256 values or more (1x1 64->256 on 56x56 +
#: add + ReLU: 430 us in the store, 260 in the tail; 3x3 64->64: 555 and 528; a 12 px x 16 ch
#: tile was vectorized).  AVX2's tiles (at most 6 px x 16 ch) lost 2-5 % with the tail.
SMALL_TILE = 192
#: activations that stay in the store of a tile of at most SMALL_TILE values
SMALL_TILE_ACTIVATIONS = CHEAP_ACTIVATIONS | {"relu6", "clip", "leaky_relu", "hard_sigmoid",
                                              "hard_swish", "shrink"}


def split_epilogue(epilogue, values: int = 0) -> tuple[tuple, tuple]:
    """(head, tail) of ``epilogue`` for a register tile of ``values`` accumulators: ``tail``
    is its longest suffix of activations when one of them does not stay in such a tile's store
    (:data:`CHEAP_ACTIVATIONS`, :data:`SMALL_TILE`), else empty: element-wise steps that
    consume no per-channel vector and no residual, which a kernel can leave to a vectorized
    pass over the values it has just written."""
    k = len(epilogue)
    while k and epilogue[k - 1][0] not in ("scale_shift", "add"):
        k -= 1
    tail = tuple(epilogue[k:])
    small = values <= SMALL_TILE
    stays = SMALL_TILE_ACTIVATIONS if small else CHEAP_ACTIVATIONS
    after_add = not small and any(step[0] == "add" for step in epilogue[:k])
    if not after_add and all(step[0] in stays for step in tail):
        return tuple(epilogue), ()
    return tuple(epilogue[:k]), tail


def epilogue_lines(epilogue, v: str, extras: list[str], channel: str, index: str,
                   vector: bool = False, indices=None) -> list[str]:
    """Statements updating the scalar ``v`` by each epilogue step in order.

    ``extras`` are the names of the arrays the steps consume (scale, shift for
    ``scale_shift``; a residual for ``add``); ``channel`` indexes per-channel vectors and
    ``index`` the residual (e.g. ``"n, i, j, c"`` or ``"t, c"``), or ``indices[name]`` the
    residual ``name`` when given.  ``vector``: the loop
    around the statements is one LLVM's loop vectorizer vectorizes, so exponentials call
    ``vexp`` (vmath.py); else ``sexp``, the C library's exp, faster one element at a time
    (3x3 64->64 56x56 + SiLU in a scalar store: 1.2-1.6 ms with it, 2.1-2.5 with vexp)."""
    lines, k = [], 0
    for step in epilogue:
        if step[0] == "scale_shift":
            lines.append(f"{v} = {v} * {extras[k]}[{channel}] + {extras[k + 1]}[{channel}]")
            k += 2
        elif step[0] == "add":
            lines.append(f"{v} = {v} + {extras[k]}[{(indices or {}).get(extras[k], index)}]")
            k += 1
        elif vector:
            lines += activation_lines(step, v)
        else:
            lines += [line.replace("vexp(", "sexp(") for line in activation_lines(step, v)]
    return lines
