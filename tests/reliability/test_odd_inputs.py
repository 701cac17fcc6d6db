"""Odd but valid use works on targets numpy and cpu: any batch size in any order, other dtypes,
strided and Fortran-ordered arrays, NaN/Inf kept to their own sample, and calls from several
threads at once. Results are compared with the float64 reference of the unoptimised graph."""

import threading

import numpy as np
import pytest

from cnnc.backends.reference import run_reference

TARGETS = ["numpy", "cpu"]
TOL = 1e-4  # relative to the output's scale (float32 kernels vs the float64 reference)


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _close(y, ref):
    scale = max(1.0, float(np.max(np.abs(ref))))
    np.testing.assert_allclose(y, ref, rtol=TOL, atol=TOL * scale)


@pytest.mark.parametrize("target", TARGETS)
def test_batch_sizes_up_down_and_back(model, compiled, target):
    graph = model.to_graph()
    c = compiled[target]
    for i, n in enumerate([1, 7, 2, 1, 13, 3]):
        x = _rand((n, 6, 6, 2), 10 + i)
        y = c(x)
        assert y.shape == (n, 3) and y.dtype == np.float32
        _close(y, run_reference(graph, x))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.uint8, np.int64])
def test_other_dtypes_are_cast_to_float32(model, compiled, target, dtype):
    x = (_rand((3, 6, 6, 2), 2) * 4).astype(dtype)
    y = compiled[target](x)
    _close(y, run_reference(model.to_graph(), x.astype(np.float32)))


@pytest.mark.parametrize("target", TARGETS)
def test_strided_fortran_and_list_inputs(model, compiled, target):
    c, graph = compiled[target], model.to_graph()
    big = _rand((6, 12, 18, 4), 3)
    views = [big[::2, ::2, ::3, ::2],                 # strided along every axis
             np.asfortranarray(big[:3, :6, :6, :2]),  # Fortran order
             big[:3, 6:, 12:, 2:],                    # offset view
             big[::-2, :6, :6, :2]]                   # negative stride
    for v in views:
        assert not v.flags.c_contiguous
        want = run_reference(graph, np.ascontiguousarray(v))
        _close(c(v), want)
    _close(c(big[:2, :6, :6, :2].tolist()), run_reference(graph, big[:2, :6, :6, :2]))


@pytest.mark.parametrize("target", TARGETS)
def test_read_only_and_unaligned_inputs(model, compiled, target):
    """Compiled code is specialised on writeable, aligned arrays: other inputs are copied
    at the boundary (a read-only one used to need a forward and kernels of its own)."""
    c, graph = compiled[target], model.to_graph()
    x = _rand((3, 6, 6, 2), 4)
    ro = x.copy()
    ro.setflags(write=False)
    raw = np.zeros(x.nbytes + 1, np.uint8)[1:].view(np.float32).reshape(x.shape)
    raw[...] = x
    assert not raw.flags.aligned
    want = run_reference(graph, x)
    for v in (ro, np.broadcast_to(x[:1], x.shape), raw):
        _close(c(v), run_reference(graph, np.ascontiguousarray(v)))
    _close(c(ro), want)
    if target == "cpu":
        assert len(c.module.forward.overloads) == 1


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_stay_in_their_own_sample(compiled, target, bad):
    c = compiled[target]
    x = _rand((4, 6, 6, 2), 4)
    clean = c(x)
    x[1, 2, 3, 1] = bad
    y = c(x)
    others = [0, 2, 3]
    np.testing.assert_array_equal(y[others], clean[others])  # other samples: exact
    assert not np.any(np.isfinite(y[1])), y[1]  # it does reach that sample's outputs


@pytest.mark.parametrize("target", TARGETS)
def test_threads_match_serial_calls(compiled, target):
    c = compiled[target]
    sizes = [1, 5, 2, 8, 3, 1, 4, 6]
    xs = [_rand((n, 6, 6, 2), 100 + i) for i, n in enumerate(sizes * 4)]
    want = [c(x) for x in xs]
    errors, got = [], {}

    def worker(k):
        try:
            for rep in range(6):
                for i in range(k, len(xs), 4):
                    y = c(xs[i])
                    if rep == 0:
                        got[i] = y
                    elif not np.array_equal(y, got[i]):
                        errors.append(f"thread {k} call {i} rep {rep} differs")
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:5]
    assert len(got) == len(xs)
    for i, y in got.items():
        np.testing.assert_array_equal(y, want[i], err_msg=f"call {i} (batch {len(xs[i])})")
