"""vexp and vexpf (backends/numba_cpu/vmath.py): exp from arithmetic alone, under the kernels'
fast-math flags, against NumPy's float64 exp; and the loops that call them are vectorized."""

import numpy as np
import pytest

pytestmark = pytest.mark.numba

LOOP = '''
@njit(fastmath=FASTMATH, error_model="numpy")
def loop(x, out):
    for i in range(x.size):
        out[i] = vexp(x[i])
'''


def _loop(source: str, name: str):
    from cnnc.backends.numba_cpu.lower import HEADER
    ns = {}
    exec(HEADER.format(name="vmath", n_kernels=1) + source, ns)   # a generated module's globals
    return ns[name]


@pytest.fixture(scope="module")
def exp_loop():
    return _loop(LOOP, "loop")


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


LOOP32 = '''
@njit(fastmath=FASTMATH, error_model="numpy")
def loop32(x, out):
    for i in range(x.size):
        out[i] = vexpf(x[i])
'''


@pytest.fixture(scope="module")
def expf_loop():
    return _loop(LOOP32, "loop32")


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
