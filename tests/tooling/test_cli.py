"""The command line: every subcommand, the files it promises, its exit codes."""

import os
import subprocess
import sys

import numpy as np
import pytest

import cnnc
from cnnc import cli
from cnnc.cli import main

SUBCOMMANDS = ("demo", "compile", "run", "bench", "profile", "viz", "explain", "models")


def test_help_lists_every_subcommand_via_the_console_script():
    exe = os.path.join(os.path.dirname(sys.executable), "cnnc")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "cnnc.cli"]
    out = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for name in SUBCOMMANDS:
        assert f"    {name} " in out.stdout
    for flag in ("--target", "auto"):
        assert flag in subprocess.run([*cmd, "run", "--help"], capture_output=True,
                                      text=True, timeout=60).stdout


def test_models_and_explain(capsys):
    assert main(["models"]) == 0
    assert "resnet20" in capsys.readouterr().out.split()
    assert main(["explain", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "⌊(32 − 5 + 0 + 0)/1⌋ + 1 = 27 + 1 = 28" in out and "total: 61,706 params" in out


def test_compile_and_demo_still_work(capsys):
    assert main(["compile", "lenet5", "--stats"]) == 0
    assert "opt_level 2" in capsys.readouterr().out
    assert main(["demo", "lenet5", "--target", "numpy", "--batch", "2", "--repeats", "1"]) == 0
    assert "OK" in capsys.readouterr().out


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_run_writes_the_output(tmp_path, rng, target, capsys):
    x = rng.standard_normal((3, 32, 32, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    y_path = tmp_path / "y.npy"
    rc = main(["run", "lenet5", "--input", str(tmp_path / "x.npy"), "--output", str(y_path),
               "--target", target, "--check"])
    assert rc == 0, capsys.readouterr()
    y = np.load(y_path)
    ref = cnnc.backends.reference.run_reference(cnnc.models.get("lenet5").to_graph(), x)
    assert y.shape == (3, 10) and np.max(np.abs(y - ref)) / np.max(np.abs(ref)) < 1e-4


def test_run_user_errors_are_one_line_and_exit_2(tmp_path, rng, capsys):
    np.save(tmp_path / "bad.npy", rng.standard_normal((2, 28, 28, 1)).astype(np.float32))
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    cases = [
        ["run", "lenet5", "--input", str(tmp_path / "missing.npy"), "--output", "y.npy"],
        ["run", "lenet5", "--input", str(tmp_path / "junk.npy"), "--output", "y.npy"],
        ["run", "lenet5", "--input", str(tmp_path / "bad.npy"),
         "--output", str(tmp_path / "y.npy"), "--target", "numpy"],
        ["explain", "no_such_model"],
        ["viz", str(tmp_path / "missing.onnx")],
    ]
    for argv in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("cnnc: error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err


def test_bad_arguments_exit_2(capsys):
    assert main(["profile", "lenet5", "--target", "tpu"]) == 2
    assert main(["nonsense"]) == 2


def test_mismatch_exits_1(tmp_path, rng, monkeypatch, capsys):
    """A wrong result: a reference that disagrees makes `run --check` and `debug` exit 1."""
    np.save(tmp_path / "x.npy", rng.standard_normal((1, 32, 32, 1)).astype(np.float32))
    import cnnc.backends.reference as ref
    real = ref.run_reference
    monkeypatch.setattr(ref, "run_reference", lambda *a, **k: real(*a, **k) + 1.0)
    assert main(["run", "lenet5", "--input", str(tmp_path / "x.npy"), "--output",
                 str(tmp_path / "y.npy"), "--target", "numpy", "--check"]) == 1
    assert "mismatch" in capsys.readouterr().err


def test_debug_command(capsys):
    assert main(["debug", "lenet5", "--target", "cpu", "--batch", "1"]) == 0
    assert "FIRST DIVERGENCE" not in capsys.readouterr().out
    assert main(["debug", "lenet5", "--passes", "--batch", "1"]) == 0
    assert "every pass preserves the result" in capsys.readouterr().out


def test_internal_error_exits_3_with_a_hint(monkeypatch, capsys):
    import cnnc.explain as mod

    def boom(*a, **k):
        raise RuntimeError("kaput\nsecond line")

    monkeypatch.setattr(mod, "explain", boom)
    assert main(["explain", "lenet5"]) == 3
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: kaput second line" in err
    assert "--traceback" in err and "Traceback" not in err
    assert main(["--traceback", "explain", "lenet5"]) == 3
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_bench_runs_the_repository_benchmarks_or_says_it_needs_a_checkout(monkeypatch,
                                                                        capfd):
    root = cli.repo_root()
    if root is not None:  # options after `bench` go to python -m benchmarks
        assert main(["bench", "--", "--help"]) == 0
        out = capfd.readouterr().out
        assert f"running -m benchmarks --help in {root}" in out and "--quick" in out
    monkeypatch.setattr(cli, "repo_root", lambda: None)
    assert main(["bench", "--quick"]) == 2
    err = capfd.readouterr().err
    assert "repository checkout" in err and err.count("\n") == 1


def test_onnx_paths_are_accepted_like_zoo_names(tmp_path, rng, capsys):
    pytest.importorskip("onnx")
    path = str(tmp_path / "lenet5.onnx")
    cnnc.export_onnx(cnnc.models.get("lenet5"), path)
    assert main(["explain", path]) == 0
    assert "total: 61,706 params" in capsys.readouterr().out
    assert main(["viz", path, "--out", str(tmp_path / "g.dot"), "--after-passes"]) == 0
    assert "conv2d_fused" in (tmp_path / "g.dot").read_text(encoding="utf-8")
    x = rng.standard_normal((2, 32, 32, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", path, "--input", str(tmp_path / "x.npy"), "--output",
                 str(tmp_path / "y.npy"), "--target", "numpy", "--check"]) == 0
    assert np.load(tmp_path / "y.npy").shape == (2, 10)


def test_non_positive_batch_is_a_usage_error(capsys):
    from cnnc.cli import main
    for bad, message in (("-1", "must be >= 1, got -1"), ("0", "must be >= 1, got 0"),
                         ("x", "expected a positive integer, got 'x'")):
        assert main(["demo", "--batch", bad]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
