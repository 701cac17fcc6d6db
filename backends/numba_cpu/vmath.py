"""``vexp``: exp in float64 from arithmetic alone, so loops that call it stay vectorized.

``math.exp`` is a call of the C library's scalar exp: LLVM can vectorize no loop that makes
it (Numba brings no vector math library), so a sigmoid or GELU kernel ran one element at a
time at 1-2 GB/s of a 150-180 GB/s copy (benchmarks/bandwidth.py).
``vexp`` reduces ``x = k ln 2 + r`` (|r| <= ln 2 / 2), takes ``e^r`` from a degree-11 Taylor
polynomial (truncation below 7e-15 relative) and ``2^k`` from the bits of a float64: a
rounding, adds, multiplies and integer shifts, which vectorize on every ISA (AVX2 has no
packed float64 to int64 conversion, so the integer ``k`` is read from the mantissa of
``k + 1.5 * 2^52``).

:func:`sexp` is the same function through ``math.exp``, for the loops that stay scalar.
Its argument is clamped to [-708, 709] (``e^x`` is then a normal float64; every caller rounds
to float32, where anything past that range is 0 or inf anyway); NaN stays NaN.  The CUDA
backend defines both over ``math.exp`` (numba_cuda/lower.py).

:func:`vexpf` is ``e^x`` for float32 ``x <= 0`` in float32 arithmetic (sixteen lanes per
AVX-512 vector instead of eight): Cody-Waite reduction by ``ln 2 = C1 + C2``, a degree-6
polynomial fitted in float32 coefficients (relative error below 4e-9) and scaled by 2^-64,
then one multiplication by the normal ``2^(k + 64)``, so that results down to float32's
subnormals round once.  Within 1 ulp; the
sigmoid and SiLU kernels use it (a 1.2M-element SiLU pass: 0.26 ms in float64 with
:func:`vexp`).  :func:`vgeluf` is GELU through one such exponential.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
#: 1.5 * 2^52: adding it rounds a float64 of magnitude below 2^51 to an integer that the low
#: mantissa bits then hold
SHIFT = 6755399441055744.0
#: 1 / k! for k = 0 .. 11
_COEFFS = tuple(1.0 / float(np.prod(np.arange(1, k + 1, dtype=np.float64))) for k in range(12))


@intrinsic
def _round_pow2(typingctx, y):
    """(rint(y), 2.0 ** rint(y)) for |y| <= 1022: ``llvm.rint``, then the integer read from
    the mantissa of ``rint(y) + SHIFT``.  Numba puts its fast-math flags on every float
    operation of a kernel, these included, so nothing here may be a float identity that
    reassociation could fold: ``(y + SHIFT) - SHIFT`` would become ``y``."""
    if y != types.float64:
        return None
    sig = types.UniTuple(types.float64, 2)(y)

    def codegen(context, builder, sig, args):
        f64, i64 = ir.DoubleType(), ir.IntType(64)
        rint = builder.module.declare_intrinsic("llvm.rint", [f64])
        k = builder.call(rint, [args[0]])
        shift = ir.Constant(f64, SHIFT)
        ki = builder.sub(builder.bitcast(builder.fadd(k, shift), i64),
                         builder.bitcast(shift, i64))
        p2 = builder.bitcast(builder.shl(builder.add(ki, ir.Constant(i64, 1023)),
                                         ir.Constant(i64, 52)), f64)
        return context.make_tuple(builder, sig.return_type, [k, p2])

    return sig, codegen


@njit(inline="always")
def vexp(x):
    """e ** x for a float64 ``x`` (clamped to [-708, 709]; relative error below 1e-14)."""
    x = np.float64(x)
    x = -708.0 if x < -708.0 else (709.0 if x > 709.0 else x)
    k, p2 = _round_pow2(x * LOG2E)
    r = x - k * LN2
    c = _COEFFS
    p = c[11]
    p = p * r + c[10]
    p = p * r + c[9]
    p = p * r + c[8]
    p = p * r + c[7]
    p = p * r + c[6]
    p = p * r + c[5]
    p = p * r + c[4]
    p = p * r + c[3]
    p = p * r + c[2]
    p = p * r + c[1]
    p = p * r + c[0]
    return p * p2


@njit(inline="always")
def sexp(x):
    """:func:`vexp`'s contract through the C library's exp: faster where the loop is not
    vectorized anyway (the epilogues of register-tiled conv kernels, see scalar.py)."""
    x = np.float64(x)
    return math.exp(-708.0 if x < -708.0 else (709.0 if x > 709.0 else x))


#: ln 2 = C1 + C2: C1 has 9 significant bits, so k * C1 is exact for |k| <= 2^15
C1 = 0.693359375
C2 = -2.12194440054690583e-4
#: 1.5 * 2^23: fma(y, 1, SHIFT32) rounds y (|y| < 2^22) to the integer its low mantissa bits hold
SHIFT32 = 12582912.0
#: e^r ~ sum c_k r^k on |r| <= ln 2 / 2 + 1e-3, c_0 = c_1 = 1: each further coefficient a
#: least-squares fit (Chebyshev nodes, relative error) after the ones before it were rounded
#: to float32, so these are exact float32 values; relative error below 4e-9 (the degree-7
#: Taylor polynomial: 1e-8, with one FMA more)
_EXP_POLY = (1.0, 1.0, 0.49999988079071045, 0.16666516661643982, 0.04166964069008827,
             0.00836912915110588, 0.0013746530748903751)
#: :data:`_EXP_POLY` times 2^-64 (exact: a power of two, and every product a normal float32)
_EXP_POLY_SCALED = tuple(c * 2.0 ** -64 for c in _EXP_POLY)
#: bits(kk) + this, shifted left by 23, is the float32 2^(k + 64): kk = k + SHIFT32, whose bits
#: are those of SHIFT32 plus k, and SHIFT32's low 9 bits are 0, so the shift keeps k + 191
_POW2_BIAS = 127 + 64


def _fma32(builder):
    f32 = ir.FloatType()
    return builder.module.declare_intrinsic("llvm.fma", [f32],
                                            ir.FunctionType(f32, [f32, f32, f32]))


def _float_constants(builder):
    """``v -> `` a float32 value of ``v`` for the IR: on x86 targets an empty inline-asm
    statement returning it, elsewhere a constant.

    With 16 registers (AVX2) a loop over GELU or sigmoid holds its vectors and fifteen or more
    constants in more registers than there are, and LLVM rematerializes every constant
    where it is used: a ``movabs`` of its address (Numba's large code model) and a broadcast
    load per constant, in each iteration (sigmoid's AVX2 loop: 14 broadcasts and 5
    ``movabs`` beside 25 arithmetic instructions).  An asm result is a value LLVM cannot
    rematerialize: each is hoisted out of the loop (``readnone``), splatted once, and those
    that do not fit stay in registers or spill to the stack, read back as the memory operand
    of an FMA.  The sigmoid kernel's AVX2 code ran 0.78x as long at batch 1, 0.68x at batch
    8, GELU's 0.94x; AVX-512 code, whose loops interleave vectors until 32 registers do not
    hold them all either, 0.87x and 0.77x, SiLU 0.85x, GELU 0.98x (benchmarks/RESULTS.md).
    (The same statement around the coefficients of generated code's float64
    polynomials did not pay: tanh 1.08x, erf 5x, a call inside its ``if`` keeping the loop
    scalar.)"""
    f32 = ir.FloatType()
    if not _opaque_constants():
        return lambda v: ir.Constant(f32, v)

    def opaque(v):
        call = builder.asm(ir.FunctionType(f32, [f32]), "", "=x,0", [ir.Constant(f32, v)],
                           False)
        call.attributes.add("readnone")
        call.attributes.add("nounwind")
        return call
    return opaque


def _horner(builder, coefs, x):
    """IR of sum coefs[k] x^k for a float32 ``x``, by Horner's rule with ``llvm.fma``."""
    fma = _fma32(builder)
    c = _float_constants(builder)
    p = c(coefs[-1])
    for coef in reversed(coefs[:-1]):
        p = builder.call(fma, [p, x, c(coef)])
    return p


def _estrin(builder, coefs, x):
    """The same sum by Estrin's scheme: pairs c_2i + c_2i+1 x, then pairs of those joined by
    x^2, x^4, ...: a chain of about log2(n) FMAs instead of n - 1, for a multiplication or
    two more (see :func:`vgeluf`)."""
    fma = _fma32(builder)
    c = _float_constants(builder)
    terms = [builder.call(fma, [c(coefs[i + 1]), x, c(coefs[i])]) if i + 1 < len(coefs)
             else c(coefs[i]) for i in range(0, len(coefs), 2)]
    power = builder.fmul(x, x)
    while len(terms) > 1:
        terms = [builder.call(fma, [terms[i + 1], power, terms[i]]) if i + 1 < len(terms)
                 else terms[i] for i in range(0, len(terms), 2)]
        if len(terms) > 1:
            power = builder.fmul(power, power)
    return terms[0]


#: a flag that changes nothing here but keeps Numba's fast-math pass off an instruction (it
#: flags only those without flags): ``(y + SHIFT32) - SHIFT32`` must not fold into ``y``
_EXACT = ("nsz",)


def _expf_ir(builder, h):
    """IR of e^h for a float32 h in [-131, 0], within 1 ulp: h = k ln 2 + r with
    k = rint(h / ln 2) from the mantissa of ``fma(h, log2 e, SHIFT32)``, and
    r = fma(k, -C2, fma(k, -C1, h)), where h - k C1 is exact (Cody-Waite); e^r 2^-64 by
    Horner with ``llvm.fma`` over coefficients scaled by 2^-64 (exactly e^r's evaluation,
    scaled), times the normal 2^(k + 64), which two integer
    operations make from kk's bits (k >= -190): one multiplication, so that a subnormal result
    rounds once. Numba marks the float operations of a fast-math kernel reassociable: written as
    plain multiplies and subtractions, LLVM folded the reduction into x - k (C1 + C2) (5 ulp at
    x = -87), which it does not do across ``llvm.fma`` calls; the rounding's subtraction carries
    :data:`_EXACT`.

    (2^k as two normal factors 2^(k >> 1) and 2^(k - (k >> 1)) reached 2^-150 for five
    integer operations and a multiplication more, but rounded twice, so a result near 2^-150
    could round to 0 where it should round up.  GELU's AVX2 loop kept that form while its
    constants were reloaded per vector (:func:`_float_constants`); since, one factor made it
    0.94x as long there as well.)"""
    f32, i32 = ir.FloatType(), ir.IntType(32)
    c = _float_constants(builder)
    fma = _fma32(builder)
    kk = builder.call(fma, [h, c(LOG2E), c(SHIFT32)])
    k = builder.fsub(kk, c(SHIFT32), flags=_EXACT)
    r = builder.call(fma, [k, c(-C2), builder.call(fma, [k, c(-C1), h])])
    p = _horner(builder, _EXP_POLY_SCALED, r)
    pow2 = builder.bitcast(builder.shl(builder.add(builder.bitcast(kk, i32),
                                                   ir.Constant(i32, _POW2_BIAS)),
                                       ir.Constant(i32, 23)), f32)
    return builder.fmul(p, pow2)


@intrinsic
def vexpf(typingctx, x):
    """e ** x for a float32 ``x <= 0`` (clamped below at -104, where it rounds to 0; NaN
    stays NaN), within 1 ulp, in float32 arithmetic that vectorizes (:func:`_expf_ir`).
    Measured within 0.87 ulp on [-105, 0] (tests/backends/test_vmath.py)."""
    if x != types.float32:
        return None
    sig = types.float32(x)

    def codegen(context, builder, sig, args):
        f32 = ir.FloatType()
        x = args[0]
        low = _float_constants(builder)(-104.0)
        return _expf_ir(builder, builder.select(builder.fcmp_ordered("<", x, low), low, x))

    return sig, codegen


#: erfc(z) = t e^(-z^2) R(t), t = 1 / (1 + z / 2), for 0 <= z <= 14.5 / sqrt 2 (the form of
#: Numerical Recipes' ``erfcc``, its exponent's polynomial taken out of the exponential);
#: R(t) = erfcx(z) / t, coefficients t^0 first: each a least-squares fit of the relative error
#: on Chebyshev nodes after the ones before it were rounded to float32 (so these are exact
#: float32 values); relative error 2.3e-8, 1.1e-7 evaluated in float32 by Horner's rule
_ERFC_R = (0.2820647358894348, 0.28285521268844604, 0.23863175511360168, 0.2257542461156845,
           -0.0994115024805069, 0.424254834651947, -0.6747686862945557, 0.4333623945713043,
           -0.12550771236419678, 0.0127647053450346)
#: past |x| = 14.5, 0.5 x erfc(|x| / sqrt 2) is below float32's smallest subnormal
GELU_CLAMP = 14.5


def _opaque_constants() -> bool:
    """Whether :func:`_float_constants` hides the constants: x86 targets (the asm's ``x``
    constraint is an x86 vector register)."""
    from cnnc.backends.numba_cpu import target
    return target.effective().isa in ("avx512", "avx2", "avx", "sse")


def _few_registers() -> bool:
    """Whether the effective target (target.py) has at most 16 vector registers (AVX2, SSE),
    where :func:`vgeluf` takes its erfc polynomial by Estrin's scheme (:func:`_estrin`): the
    shorter chain of dependent FMAs made GELU's AVX2 kernel 0.87x as long on Zen 4 (8 lanes
    a vector); AVX-512 code gained nothing from it (16 lanes; three multiplications more),
    nor did sigmoid's or tanh's polynomials on either ISA (benchmarks/RESULTS.md).  Measured
    worst case 6.3 ulp against 5.6 by Horner's rule (2.3M points of [-14, 14])."""
    from cnnc.backends.numba_cpu import target
    return target.effective().registers <= 16


@intrinsic
def vgeluf(typingctx, x):
    """GELU, 0.5 x (1 + erf(x / sqrt 2)), of a float32 ``x`` in float32 arithmetic that
    vectorizes (NaN stays NaN, +inf gives +inf, -inf gives 0).

    With c = erfc(|x| / sqrt 2) it is 0.5 x c for x < 0 (no cancellation, so the tail keeps
    its relative accuracy) and x - 0.5 x c for x >= 0, i.e. max(x, 0) - 0.5 |x| c (a max and a
    subtraction: a compare, a blend and a negation more made GELU's loop 1.05-1.08x as long
    on both ISAs).  0.5 |x| c = (0.5 |x| t R(t)) e^(-x^2 / 2) (:data:`_ERFC_R`), the
    exponential taken of the exact -x^2 / 2 = h + e (h = (-0.5 |x|) |x| rounded, e its error
    by an FMA) as e^h (1 + e), so the large exponent loses nothing to rounding (a single
    e^(-x^2 / 2) of the rounded square is 20 ulp off at x = -10).  The division and the
    polynomial on one side and the exponential on the other are independent chains that
    meet in one multiplication (with R inside the exponent, e^(-x^2 / 2 + log R), the
    exponential waited for the polynomial: a plain loop over 0.8M and 6.4M values took
    0.84-0.88x the time with the chains apart, AVX-512 and AVX2 code on an Intel Xeon,
    benchmarks/RESULTS.md).  Within a few ulp; measured in tests/backends/test_vmath.py."""
    if x != types.float32:
        return None
    sig = types.float32(x)

    def codegen(context, builder, sig, args):
        c = _float_constants(builder)
        fma = _fma32(builder)
        fabs = builder.module.declare_intrinsic("llvm.fabs", [ir.FloatType()])
        x = args[0]
        xa = builder.call(fabs, [x])
        xa = builder.select(builder.fcmp_ordered(">", xa, c(GELU_CLAMP)), c(GELU_CLAMP), xa)
        m = builder.fmul(xa, c(-0.5))                       # exact
        h = builder.fmul(m, xa)
        e = builder.call(fma, [m, xa, builder.fneg(h)])     # -x^2 / 2 = h + e exactly
        t = builder.fdiv(c(1.0), builder.call(fma, [xa, c(0.5 / math.sqrt(2.0)), c(1.0)]))
        r = (_estrin if _few_registers() else _horner)(builder, _ERFC_R, t)
        u = builder.fmul(builder.fmul(builder.fneg(m), t), r)   # 0.5 |x| t R(t)
        ex = _expf_ir(builder, h)
        ex = builder.call(fma, [ex, e, ex])                 # e^(h + e) = e^h (1 + e)
        half = builder.fmul(u, ex)                          # 0.5 |x| c, |x| clamped
        zero = ir.Constant(ir.FloatType(), 0.0)     # a register's xor, never loaded
        pos = builder.select(builder.fcmp_ordered(">", x, zero), x, zero)
        return builder.fsub(pos, half)

    return sig, codegen
