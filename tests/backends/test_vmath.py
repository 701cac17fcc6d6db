"""vexp (backends/numba_cpu/vmath.py): exp from arithmetic alone, under the kernels' fast-math
flags, against NumPy's float64 exp; and the loop that calls it is vectorized."""

import numpy as np
import pytest

pytestmark = pytest.mark.numba

LOOP = '''
@njit(fastmath=FASTMATH, error_model="numpy")
def loop(x, out):
    for i in range(x.size):
        out[i] = vexp(x[i])
'''


@pytest.fixture(scope="module")
def exp_loop():
    from cnnc.backends.numba_cpu.lower import HEADER
    ns = {}
    exec(HEADER.format(name="vmath", n_kernels=1) + LOOP, ns)   # a generated module's globals
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
    lines = [line.split() for line in exp_loop.inspect_asm(exp_loop.signatures[0]).splitlines()]
    calls = [ln for ln in lines if ln and ln[0] == "call" and "exp" in ln[-1]]
    assert not calls, f"a scalar exp call remains: {calls}"
    assert any(ln and ln[0].startswith("vfmadd") and ln[0].endswith("pd")
               and ("ymm" in ln[-1] or "zmm" in ln[-1]) for ln in lines), "no packed float64 FMA"
