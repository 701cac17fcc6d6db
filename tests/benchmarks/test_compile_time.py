"""The compile-time benchmark's worker on a model file: it loads ONNX files as well as
built-in names, and counts the kernels it compiled."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import compile_time  # noqa: E402
from tests.benchmarks.test_harness import tiny_graph  # noqa: E402


def test_an_onnx_file_compiles_and_its_kernels_are_counted(tmp_path):
    onnx = pytest.importorskip("onnx")
    from cnnc.frontends.onnx.export import export_onnx
    path = tmp_path / "tiny.onnx"
    onnx.save(export_onnx(tiny_graph()), str(path))
    ops = [n.op for n in compile_time.load(str(path)).nodes]
    assert {"conv2d", "batch_norm", "max_pool2d", "dense"} <= set(ops)
    out = compile_time.time_one(str(path))
    assert out["seconds"] > 0
    # conv+BN+relu fused, pool, dense: at least these three kernels, each called once or more
    assert out["kernels"] >= 3 and out["calls"] >= out["kernels"]


def test_a_model_that_does_not_compile_is_an_error_entry(tmp_path):
    out = compile_time.time_one(str(tmp_path / "missing.onnx"))
    assert "error" in out
