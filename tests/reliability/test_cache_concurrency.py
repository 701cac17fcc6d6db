"""Two processes compiling the same model at once into one fresh kernel cache both succeed and
agree; a third process then loads a saved artifact from the warm cache much faster than the cold
compile took. (A corrupt cache entry being rebuilt is tested in tests/backends.)"""

import os
import subprocess
import sys
import textwrap
import numpy as np
import pytest

pytestmark = [pytest.mark.numba, pytest.mark.slow]

COMPILE = textwrap.dedent("""
    import sys, time
    import numpy as np, cnnc
    L = cnnc.layers
    model = cnnc.Sequential([cnnc.Input((12,)), L.Dense(8, activation="relu", seed=1),
                             L.Dense(3, seed=2)], name="mlp")
    t0 = time.perf_counter()
    c = cnnc.compile(model, target="cpu")
    print("SECONDS", time.perf_counter() - t0)
    x = np.random.default_rng(0).standard_normal((5, 12)).astype(np.float32)
    np.save(sys.argv[1] + ".npy", c(x))
    c.save(sys.argv[1] + ".cnnc")
""")

LOAD = textwrap.dedent("""
    import sys, time
    import numpy as np, cnnc
    import cnnc.backends.numba_cpu  # imported before timing, as by any earlier compile
    t0 = time.perf_counter()
    c = cnnc.load(sys.argv[1] + ".cnnc")
    print("SECONDS", time.perf_counter() - t0)
    x = np.random.default_rng(0).standard_normal((5, 12)).astype(np.float32)
    np.save(sys.argv[1] + "-loaded.npy", c(x))
""")


def _start(code, arg, env):
    return subprocess.Popen([sys.executable, "-c", code, arg], env=env, cwd="/",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p):
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    return float(dict(line.split(" ", 1) for line in out.splitlines() if " " in line)["SECONDS"])


def test_two_cold_compiles_at_once_then_a_fast_warm_load(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, CNNC_CACHE_DIR=str(cache))
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    procs = [_start(COMPILE, a, env), _start(COMPILE, b, env)]
    cold = [_finish(p) for p in procs]
    ya, yb = np.load(a + ".npy"), np.load(b + ".npy")
    np.testing.assert_array_equal(ya, yb)
    assert np.all(np.isfinite(ya)) and np.abs(ya).max() > 0
    assert any(f.endswith(".py") for f in os.listdir(cache))  # the cache was filled
    warm = _finish(_start(LOAD, a, env))
    # same program and weights; BLAS may round differently in another process (alignment)
    np.testing.assert_allclose(np.load(a + "-loaded.npy"), ya, rtol=1e-5, atol=1e-5)
    assert warm < 0.5 * min(cold), f"warm load {warm:.2f} s vs cold compiles {cold}"
    print(f"cold compiles {cold[0]:.2f} s and {cold[1]:.2f} s at once; warm load {warm:.2f} s")
