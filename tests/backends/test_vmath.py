"""vexp, vexpf and vgeluf (backends/numba_cpu/vmath.py), and the tanh of the generated kernels
(backends/numba_cpu/scalar.py): exp, GELU and tanh from arithmetic alone, under the kernels'
fast-math flags, against float64 NumPy/SciPy; and the loops that call them are vectorized."""

import os
import subprocess
import sys

import numpy as np
import pytest
from isa_targets import AVX2_ENV, host_runs_avx2

pytestmark = pytest.mark.numba

LOOP = '''
@njit(fastmath=FASTMATH, error_model="numpy")
def loop(x, out):
    for i in range(x.size):
        out[i] = {fn}(x[i])
'''


def _loop(fn: str):
    """A loop applying ``fn`` compiled as a generated module compiles its kernels."""
    from cnnc.backends.numba_cpu.lower import PRELUDE
    ns = {}
    exec(PRELUDE + LOOP.format(fn=fn), ns)
    return ns["loop"]


@pytest.fixture(scope="module")
def exp_loop():
    return _loop("vexp")


def _activation_loop(op: str):
    """A loop applying the generated kernels' activation ``op`` (``scalar.activation_lines``)."""
    from cnnc.backends.numba_cpu.lower import PRELUDE
    from cnnc.backends.numba_cpu.scalar import activation_lines
    body = "\n".join("        " + line for line in activation_lines((op,), "v"))
    src = ('\n@njit(fastmath=FASTMATH, error_model="numpy")\ndef loop(x, out):\n'
           '    for i in range(x.size):\n        v = x[i]\n' + body + '\n        out[i] = v\n')
    ns = {}
    exec(PRELUDE + src, ns)
    return ns["loop"]


def _run(loop, x):
    out = np.empty_like(x)
    loop(x, out)
    return out


def test_vexp_matches_numpy_over_its_range(exp_loop):
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-760, 720, 100_003), rng.standard_normal(50_000) * 40,
                        rng.uniform(-1, 1, 1000) * 1e-9])
    want = np.exp(np.clip(x, -708.0, 709.0))
    rel = np.abs(_run(exp_loop, x) - want) / want
    assert rel.max() < 1e-13, (rel.max(), x[rel.argmax()])


def test_vexp_keeps_nan_and_clamps_infinities(exp_loop):
    out = _run(exp_loop, np.array([np.nan, np.inf, -np.inf, 0.0, 1.0, -1.0]))
    assert np.isnan(out[0])
    np.testing.assert_allclose(out[1:3], np.exp([709.0, -708.0]), rtol=1e-13)
    np.testing.assert_allclose(out[3:], np.exp([0.0, 1.0, -1.0]), rtol=1e-14)
    assert np.float32(out[1]) == np.inf and np.float32(out[2]) == 0.0


def test_a_loop_calling_vexp_is_vectorized(exp_loop):
    _run(exp_loop, np.zeros(4))   # compiled (also when this test runs alone)
    lines = [line.split() for line in exp_loop.inspect_asm(exp_loop.signatures[0]).splitlines()]
    calls = [ln for ln in lines if ln and ln[0] == "call" and "exp" in ln[-1]]
    assert not calls, f"a scalar exp call remains: {calls}"
    assert any(ln and ln[0].startswith("vfmadd") and ln[0].endswith("pd")
               and ("ymm" in ln[-1] or "zmm" in ln[-1]) for ln in lines), "no packed float64 FMA"


@pytest.fixture(scope="module")
def expf_loop():
    return _loop("vexpf")


def test_vexpf_within_one_ulp_down_to_the_subnormals(expf_loop):
    """float32 e^x on [-105, 0] under the kernels' fast-math flags, in ulps of the float32
    result (subnormals included: its scaling rounds once)."""
    rng = np.random.default_rng(1)
    x = np.concatenate([np.linspace(-105, 0, 400_001), -rng.exponential(20, 100_000),
                        -rng.uniform(0, 1e-6, 1000)]).astype(np.float32)
    got = _run(expf_loop, x)
    want = np.exp(x.astype(np.float64))
    ulp = np.spacing(np.maximum(want, 1e-45).astype(np.float32)).astype(np.float64)
    err = np.abs(got - want) / ulp
    assert got.dtype == np.float32 and err.max() < 1.0, (err.max(), x[err.argmax()])


def test_vexpf_rounds_the_smallest_subnormals_once(expf_loop):
    """Just above -104 e^x lies between half the smallest subnormal (2^-150) and the smallest
    (2^-149): the correctly rounded result is 2^-149.  2^k taken as a product of factors
    that LLVM multiplies first rounds 2^-150 to 0 before the polynomial's value comes in."""
    x = np.linspace(-103.97, -103.63, 1001).astype(np.float32)
    want = np.exp(x.astype(np.float64)).astype(np.float32)
    assert (want > 0).all()
    np.testing.assert_array_equal(_run(expf_loop, x), want)


def test_sigmoid_within_two_and_a_half_ulp_on_the_whole_line():
    """The generated sigmoid (scalar.py: e = vexpf(-|x|), then 1 / (1 + e) or e / (1 + e))
    against float64, in ulps of the float32 result, subnormal results included."""
    x = np.concatenate([np.linspace(-105, 30, 1_000_001),
                        np.random.default_rng(2).standard_normal(100_000) * 4]).astype(np.float32)
    got = _run(_activation_loop("sigmoid"), x)
    want = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    ulp = np.spacing(np.maximum(want, 1e-45).astype(np.float32)).astype(np.float64)
    err = np.abs(got - want) / ulp
    assert got.dtype == np.float32 and err.max() < 2.5, (err.max(), x[err.argmax()])


def test_vexpf_keeps_nan_and_flushes_below_its_range(expf_loop):
    out = _run(expf_loop, np.array([np.nan, -np.inf, -0.0, -104.0, -200.0], np.float32))
    assert np.isnan(out[0]) and out[1] == 0.0 and out[2] == 1.0 and out[4] == 0.0
    assert out[3] == np.float32(np.exp(-104.0))


def test_a_loop_calling_vexpf_uses_packed_float32_fmas(expf_loop):
    _run(expf_loop, np.zeros(4, np.float32))
    lines = [line.split() for line in expf_loop.inspect_asm(expf_loop.signatures[0]).splitlines()]
    assert not [ln for ln in lines if ln and ln[0] == "call" and "exp" in ln[-1]]
    assert any(ln and ln[0].startswith("vfmadd") and ln[0].endswith("ps")
               and ("ymm" in ln[-1] or "zmm" in ln[-1]) for ln in lines), "no packed float32 FMA"


@pytest.fixture(scope="module")
def gelu_loop():
    return _loop("vgeluf")


def test_vgeluf_within_eight_ulp_in_both_tails(gelu_loop):
    """float32 GELU against 0.5 x erfc(-x / sqrt 2) in float64, in ulps of the float32 result,
    from where it underflows (x = -14) through 0 to where it is x (subnormal results and
    exact zeros within a few of the smallest subnormal)."""
    from scipy.special import erfc
    rng = np.random.default_rng(2)
    x = np.concatenate([np.linspace(-14, 14, 400_001), rng.standard_normal(100_000) * 3,
                        rng.uniform(-1, 1, 1000) * 1e-6]).astype(np.float32)
    got = _run(gelu_loop, x)
    x64 = x.astype(np.float64)
    want = 0.5 * x64 * erfc(-x64 / np.sqrt(2.0))
    normal = np.abs(want) >= np.finfo(np.float32).tiny
    ulp = np.spacing(np.abs(want[normal]).astype(np.float32)).astype(np.float64)
    err = np.abs(got[normal] - want[normal]) / ulp
    assert got.dtype == np.float32 and err.max() < 8.0, (err.max(), x[normal][err.argmax()])
    # below float32's normals the product rounds more than once: a few subnormal steps
    assert np.abs(got[~normal] - want[~normal]).max() <= 4 * 1.4e-45


def test_vgeluf_special_values(gelu_loop):
    out = _run(gelu_loop, np.array([np.nan, np.inf, -np.inf, 0.0, -30.0, 30.0], np.float32))
    assert np.isnan(out[0]) and out[1] == np.inf and out[2] == 0.0 and out[3] == 0.0
    assert out[4] == 0.0 and out[5] == 30.0


def test_a_loop_calling_vgeluf_uses_packed_float32_fmas(gelu_loop):
    _run(gelu_loop, np.zeros(4, np.float32))
    lines = [line.split() for line in gelu_loop.inspect_asm(gelu_loop.signatures[0]).splitlines()]
    assert not [ln for ln in lines if ln and ln[0] == "call"]
    assert any(ln and ln[0].startswith("vfmadd") and ln[0].endswith("ps")
               and ("ymm" in ln[-1] or "zmm" in ln[-1]) for ln in lines), "no packed float32 FMA"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NUMBA_CPU_NAME") == AVX2_ENV["NUMBA_CPU_NAME"],
                    reason="this process compiles the AVX2 code already")
@pytest.mark.skipif(not host_runs_avx2(), reason="this CPU runs no AVX2 code")
def test_16_register_forms_pass_the_same_tests(tmp_path):
    """With 16 vector registers (AVX2, SSE) vgeluf takes its erfc polynomial by Estrin's
    scheme, and every AVX2 loop spills its constants where AVX-512's keep them
    (``_float_constants``).  The tests of exp, sigmoid and GELU above again, in a process
    compiling AVX2 code."""
    env = dict(os.environ, **AVX2_ENV, CNNC_CACHE_DIR=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-o", "addopts=", __file__, "-k", "(vgeluf or vexpf or sigmoid) and not "
                        "16_register"], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and "8 passed" in p.stdout, p.stdout[-3000:] + p.stderr[-2000:]


@pytest.fixture(scope="module")
def tanh_loop():
    return _activation_loop("tanh")


def test_tanh_within_one_ulp_on_the_whole_line(tanh_loop):
    rng = np.random.default_rng(4)
    x = np.concatenate([np.linspace(-12, 12, 400_001), rng.standard_normal(100_000) * 2,
                        rng.uniform(-1, 1, 1000) * 1e-30]).astype(np.float32)
    got = _run(tanh_loop, x)
    want = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    err = np.abs(got - want) / ulp
    assert got.dtype == np.float32 and err.max() < 1.0, (err.max(), x[err.argmax()])


def test_tanh_special_values(tanh_loop):
    out = _run(tanh_loop, np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 30.0, -30.0],
                                   np.float32))
    assert np.isnan(out[0]) and out[1] == 1.0 and out[2] == -1.0
    assert out[3] == 0.0 and not np.signbit(out[3]) and np.signbit(out[4])
    assert out[5] == 1.0 and out[6] == -1.0

