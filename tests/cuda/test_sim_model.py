"""Whole models through ``cnnc.compile(target="cuda")`` and the runtime: the planned arena,
in-place residuals, several batch sizes, device-array inputs and outputs, input validation."""

import itertools

import numpy as np
import pytest

import cnnc
from cnnc.backends.reference import run_reference
from cnnc.compile import resolve_target, to_graph
from cnnc.errors import DTypeError, ShapeError
from cnnc.frontends.keras import Input, Model
from cnnc.frontends.keras import layers as L
from cnnc.models.resnet import basic_block
from cuda_helpers import TOL, rel_err, requires_cuda

pytestmark = [pytest.mark.cuda, requires_cuda]


def tiny_resnet():
    """Stem conv, an identity block, a strided projection block, GAP, dense, softmax."""
    s = itertools.count(7)
    inp = Input((6, 6, 3))
    x = L.ReLU()(L.Conv2D(8, 3, padding="same", seed=next(s))(inp))
    x = basic_block(x, 8, 1, s)
    x = basic_block(x, 8, 2, s)
    x = L.GlobalAveragePooling2D()(x)
    return Model(inp, L.Softmax()(L.Dense(5, seed=next(s))(x)), name="tiny_resnet")


def tiny_mobile():
    """Zero padding, a depthwise conv (multiplier 2), a 1x1 branch, concat, pool, dense."""
    s = itertools.count(3)
    inp = Input((6, 6, 4))
    a = L.DepthwiseConv2D(3, depth_multiplier=2, activation="relu6",
                          seed=next(s))(L.ZeroPadding2D(1)(inp))
    b = L.Conv2D(4, 1, activation="sigmoid", seed=next(s))(inp)
    x = L.Flatten()(L.MaxPooling2D(2)(L.Concatenate()([a, b])))
    return Model(inp, L.Dense(6, seed=next(s))(x), name="tiny_mobile")


@pytest.fixture(scope="module")
def resnet():
    m = tiny_resnet()
    return m, cnnc.compile(m, target="cuda")


def _x(seed, batch, shape=(6, 6, 3)):
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)


def test_tiny_resnet_matches_reference_at_several_batch_sizes(resnet):
    m, model = resnet
    assert model.target == "cuda"
    assert model.plan.in_place, "the residual adds should be planned in place"
    for seed, batch in ((1, 2), (2, 1), (3, 2)):
        x = _x(seed, batch)
        y = model(x)
        assert isinstance(y, np.ndarray) and y.shape == (batch, 5)
        assert rel_err(y, run_reference(to_graph(m), x, dtype=np.float64)) < TOL
    assert len(model._setups) == 2  # one arena per batch size, reused


def test_one_arena_holds_every_planned_buffer(resnet):
    _, model = resnet
    st = model._setup({"N": 2})
    sizes = model.plan.buffer_elements({"N": 2})
    assert len(st.buffers) == model.plan.num_buffers == len(sizes)
    assert st.arena.size >= sum(sizes)
    assert all(b.size == n for b, n in zip(st.buffers, sizes))


def test_device_array_in_device_array_out(resnet):
    from numba import cuda
    m, model = resnet
    x = _x(4, 1)
    y_dev = model(cuda.to_device(x))
    assert not isinstance(y_dev, np.ndarray) and tuple(y_dev.shape) == (1, 5)
    y = y_dev.copy_to_host()
    assert rel_err(y, run_reference(to_graph(m), x, dtype=np.float64)) < TOL
    assert rel_err(model(x), y) < 1e-6


def test_inputs_are_validated_before_any_launch(resnet):
    from numba import cuda
    _, model = resnet
    model._setups.clear()
    with pytest.raises(ShapeError, match="expects shape"):
        model(_x(0, 1, (6, 5, 3)))
    with pytest.raises(ShapeError, match="takes 1 input"):
        model(_x(0, 1), _x(0, 1))
    with pytest.raises(DTypeError, match="float32"):
        model(cuda.to_device(_x(0, 1).astype(np.float64)))
    with pytest.raises(ShapeError, match="expects rank 4"):
        model(cuda.to_device(np.zeros((6, 6, 3), np.float32)))
    with pytest.raises(DTypeError, match="numeric"):
        model(np.full((1, 6, 6, 3), "a"))
    assert not model._setups, "nothing may be prepared or launched for a bad input"


def test_depthwise_concat_pool_model():
    m = tiny_mobile()
    model = cnnc.compile(m, target="cuda", opt_level=2)
    x = _x(5, 2, (6, 6, 4))
    assert rel_err(model(x), run_reference(to_graph(m), x, dtype=np.float64)) < TOL
    assert any("direct" in s for s in model.strategies())   # the depthwise conv
    assert any("gemm" in s for s in model.strategies())


def test_source_is_readable_generated_cuda(resnet):
    _, model = resnet
    src = model.source()
    # one @cuda.jit per kernel, and the device functions vexp, vexpf and vgeluf of the header
    assert src.count("@cuda.jit(cache=True)") == len(model.lowered.kernels)
    assert src.count("@cuda.jit") == len(model.lowered.kernels) + 3
    assert all(f"def {fn}(x)" in src for fn in ("vexp", "vexpf", "vgeluf"))
    assert "cuda.shared.array" in src and "cuda.syncthreads()" in src
    assert "(np.float32(0.0) if v < np.float32(0.0) else v)" in src  # the fused relu epilogue
    compile(src, "<generated>", "exec")


def test_auto_never_picks_the_simulator():
    from cnnc.backends.numba_cuda import simulated
    if simulated():
        assert resolve_target("auto") != "cuda"


def test_benchmark_case_runs(monkeypatch):
    """benchmarks/cuda_bench.py's cnnc path on a tiny graph (the simulator stands in for the
    GPU; the PyTorch rows need a CUDA build of PyTorch)."""
    import sys
    from pathlib import Path
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:  # the benchmarks live in the repository, not in the package
        sys.path.insert(0, root)
    from benchmarks import cuda_bench
    monkeypatch.setitem(cuda_bench.CASES, "tiny:2", ("tiny", (6, 6, 4), 2))
    monkeypatch.setattr(cuda_bench, "build_graph", lambda name, shape: to_graph(tiny_mobile()))
    rows: list = []
    cuda_bench.run_case("tiny:2", 0, 1, rows)
    assert rows[0][1].startswith("cnnc-cuda") and rows[0][2] > 0 and rows[0][3] > 0
    assert "cnnc-cuda" in cuda_bench.format_rows(rows)


def fixed_batch_cnn(batch, padding):
    s = itertools.count(11)
    return cnnc.Sequential([
        L.Input(shape=(6, 6, 3), batch_size=batch),
        L.Conv2D(8, 3, padding=padding, activation="relu", seed=next(s)),
        L.Conv2D(4, 1, seed=next(s)), L.Flatten(), L.Dense(3, seed=next(s))],
        name=f"fixed_{batch}_{padding}")


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("batch", [1, 2, 5])
def test_fixed_batch_models_front_end_and_onnx(batch, padding):
    """A batch fixed in the graph (Input(batch_size=B); an ONNX model exported without a
    dynamic axis) sizes every launch and buffer from that number."""
    m = fixed_batch_cnn(batch, padding)
    graph = to_graph(m)
    assert graph.inputs[0].type.shape[0] == batch
    x = _x(batch, batch)
    ref = run_reference(graph, x, dtype=np.float64)
    assert rel_err(cnnc.compile(m, target="cuda")(x), ref) < TOL
    pytest.importorskip("onnx")
    imported = cnnc.load_onnx(cnnc.export_onnx(m))
    assert rel_err(cnnc.compile(imported, target="cuda")(x), ref) < TOL  # NHWC as exported
    with pytest.raises(ShapeError, match=f"expected {batch}"):
        cnnc.compile(m, target="cuda")(_x(0, batch + 1))
