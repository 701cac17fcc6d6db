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
