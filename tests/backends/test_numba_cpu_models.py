"""Whole zoo models on the Numba CPU backend vs the float64 reference, and the disk cache."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cnnc
from cnnc.backends.reference import run_reference
from cnnc.debug import ForwardStepper

pytestmark = [pytest.mark.numba, pytest.mark.slow]


def _check(model, batches=(1, 3), tol=1e-4):
    compiled = cnnc.compile(model, target="cpu")
    graph = model.to_graph()
    rng = np.random.default_rng(7)
    for b in batches:
        x = rng.standard_normal((b, *graph.inputs[0].type.shape[1:])).astype(np.float32)
        y = compiled(x)
        ref = run_reference(graph, x, dtype=np.float64)
        err = np.max(np.abs(y - ref)) / np.max(np.abs(ref))
        assert err < tol, f"{graph.name} batch {b}: relative error {err:.2e}"
    return compiled


def _random_model(rng, input_shape, *layers):
    """A Sequential model of ``layers`` with standard normal weights drawn from ``rng``."""
    model = cnnc.Sequential([cnnc.Input(input_shape), *layers])
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


def test_lenet5():
    _check(cnnc.models.lenet5())


def test_resnet20_with_random_batchnorm_statistics():
    model = cnnc.models.resnet20()
    rng = np.random.default_rng(3)
    weights = []
    for w in model.get_weights():   # non-trivial BN statistics (var > 0)
        weights.append(rng.uniform(0.5, 1.5, w.shape).astype(np.float32) if w.ndim == 1
                       else w)
    model.set_weights(weights)
    compiled = _check(model, batches=(1, 5))
    assert not any(n.op == "batch_norm" for n in compiled.graph.ops)
    assert "conv2d_fused" in compiled.source() or "def k0" in compiled.source()


def test_resnet18_small_input():
    compiled = _check(cnnc.models.resnet18(input_shape=(64, 64, 3), num_classes=10),
                      batches=(2,))
    # the weights forward holds are those its kernels read: a conv's own filter is dropped
    # once its kernel takes the packed copy (they were both kept: twice the memory)
    import re
    fwd = compiled.source()[compiled.source().index("def forward"):]
    views = dict(re.findall(r"(c\d+) = view\(wts, \d+, \(([^)]*)\)\)", fwd))
    rest = "\n".join(line for line in fwd.splitlines() if "= view(wts" not in line)
    assert views and all(re.search(rf"\b{c}\b", rest) for c in views), views
    n = sum(int(np.prod([int(d) for d in shape.split(",") if d.strip()]))
            for shape in views.values())
    assert compiled._weights[0].size < n + 16 * len(views)   # the views and their alignment


CHILD = textwrap.dedent("""
    import numpy as np, cnnc
    g = cnnc.models.lenet5()
    c = cnnc.compile(g, target="cpu")
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 1)).astype(np.float32)
    y = c(x)
    s = c.module.forward.stats
    print("HITS", sum(s.cache_hits.values()))
    print("OUT", repr(float(np.abs(y).sum())))
""")


def _child(cache):
    env = dict(os.environ, CNNC_CACHE_DIR=str(cache))
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env,
                       cwd="/")
    assert r.returncode == 0, r.stderr[-3000:]
    fields = dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)
    return fields


def test_second_process_hits_the_disk_cache_and_corrupt_entries_rebuild(tmp_path):
    first = _child(tmp_path)
    assert int(first["HITS"]) == 0
    second = _child(tmp_path)
    assert float(second["OUT"]) == pytest.approx(float(first["OUT"]), rel=1e-6)
    assert int(second["HITS"]) >= 1, f"second process did not load from the cache: {second}"
    # corrupt every cached file: the next compile must rebuild, not crash
    for root, _, files in os.walk(tmp_path):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"\x00garbage")
    third = _child(tmp_path)
    assert float(third["OUT"]) == pytest.approx(float(first["OUT"]), rel=1e-6)


def test_models_share_the_kernels_they_have_in_common(tmp_path, monkeypatch):
    """Each kernel is a module named by its text: a second model with the same body and
    another head compiles only the kernels the first did not have (cold: those the disk
    cache lacks) and runs the shared ones from the same compiled code."""
    from cnnc.backends.numba_cpu import runtime
    monkeypatch.setenv("CNNC_CACHE_DIR", str(tmp_path))
    L = cnnc.layers

    def net(classes, name):   # models no other test compiles
        return cnnc.Sequential([cnnc.Input((11, 9, 3)),
                                L.Conv2D(7, 3, padding="same", activation="relu", seed=31),
                                L.Conv2D(7, 3, padding="same", activation="relu", seed=32),
                                L.GlobalAveragePooling2D(), L.Dense(classes, seed=33)],
                               name=name)
    compiled_cold = []
    real = runtime._compile_shared
    monkeypatch.setattr(runtime, "_compile_shared", lambda module, names, *a:
                        compiled_cold.append(list(names)) or real(module, names, *a))
    a = _check(net(4, "shared_kernels_a"), batches=(2,))
    cold_a = compiled_cold[0]
    b = _check(net(6, "shared_kernels_b"), batches=(2,))
    cold_b = compiled_cold[2]
    assert cold_a   # (kernels another test of this process compiled are not cold)
    keys_a = {key for key, _ in a.lowered.kernel_modules.values()}
    new_b = [k for k, (key, _) in b.lowered.kernel_modules.items() if key not in keys_a]
    assert new_b and len(new_b) < len(set(b.lowered.kernel_names))
    assert set(cold_b) <= set(new_b)   # nothing a compiled again
    for k in set(b.lowered.kernel_names) - set(new_b):
        shared = getattr(b.module, k)
        assert any(getattr(a.module, j) is shared for j in a.lowered.kernel_names), k


def test_forward_calls_the_kernels_without_a_copy_of_them(tmp_path, monkeypatch):
    """forward's machine code declares the kernels and calls them by name (compiling it does
    not re-optimise and re-emit every kernel), and it compiles them first if nobody did."""
    from cnnc.backends.numba_cpu import extern
    from cnnc.backends.numba_cpu.runtime import load_module
    monkeypatch.setenv("CNNC_CACHE_DIR", str(tmp_path))   # compiled here, so inspectable
    L = cnnc.layers   # a model no other test compiles (this process would reuse its module)
    model = cnnc.Sequential([cnnc.Input((9, 7, 3)),
                             L.Conv2D(5, 3, padding="same", activation="relu", seed=11),
                             L.MaxPooling2D(2), L.Flatten(), L.Dense(4, seed=12)],
                            name="forward_by_symbol")
    compiled = _check(model, batches=(2,))
    fwd = compiled.module.forward
    (cres,) = fwd.dispatcher.overloads.values()
    ir = cres.library.get_llvm_str()
    for name in compiled.lowered.kernel_names:
        kernel = getattr(compiled.module, name)
        (kres,) = kernel.overloads.values()
        assert "define" not in [line.split(" ")[0] for line in ir.splitlines()
                                if kres.fndesc.mangled_name in line], name
        assert extern.symbol(kernel, next(iter(kernel.overloads))) in ir, name
    # a module whose kernels nobody compiled: its forward compiles them before it runs
    fresh = load_module(compiled.source(), fresh=True)
    assert not any(getattr(fresh, k).overloads for k in compiled.lowered.kernel_names)
    x = np.random.default_rng(5).standard_normal((2, 9, 7, 3)).astype(np.float32)
    args = (x, *compiled._arena({"N": 2}), *compiled._weights)
    np.testing.assert_array_equal(fresh.forward(*args)[0], compiled(x))
    # and a call the module does not declare is a typing error, never a call into nothing
    with pytest.raises(Exception, match=r"forward calls kernel k\d+ with .*declares only"):
        fresh.forward(x.astype(np.float64), *args[1:])


CHILD_RANKS = textwrap.dedent("""
    import numpy as np, cnnc
    from cnnc.ir import Graph
    g = Graph("pads_of_two_ranks")
    x = g.add_input((2, 5, 3, 4), name="x")
    r3 = g.add("reshape", [x], {"shape": (-1, 15, 4)})
    g.set_outputs(g.add("pad", [x], {"pads": ((0, 0), (2, 0), (1, 3), (0, 2)), "value": 0.5}),
                  g.add("pad", [r3], {"pads": ((1, 1), (0, 2), (3, 0)), "value": -2.0}))
    c = cnnc.compile(g, target="cpu", opt_level=0)
    print("RANKS", max(len(s) for s in c.lowered.signatures.values()))
    x = np.random.default_rng(0).standard_normal((2, 5, 3, 4)).astype(np.float32)
    print("OUT", repr(float(sum(np.abs(y).sum() for y in c(x)))))
""")


def test_a_kernel_called_with_two_ranks_runs_from_the_cache(tmp_path):
    """One fill kernel serves a rank-3 and a rank-4 pad: a later process, whose forward comes
    from the disk cache untyped, must have both versions compiled (one was missing, and the
    call through its symbol crashed the process)."""
    env = dict(os.environ, CNNC_CACHE_DIR=str(tmp_path))
    outs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", CHILD_RANKS], capture_output=True, text=True,
                           env=env, cwd="/")
        assert r.returncode == 0, r.stderr[-3000:]
        outs.append(dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line))
    assert int(outs[0]["RANKS"]) == 2
    assert float(outs[1]["OUT"]) == float(outs[0]["OUT"])


def test_two_processes_compiling_at_once_leave_a_cache_a_third_can_run(tmp_path):
    """Kernels and forward written by different processes (each with its own Numba symbol
    names) still fit together when a later process loads them all from the cache."""
    env = dict(os.environ, CNNC_CACHE_DIR=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", CHILD], env=env, cwd="/", text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        outs.append(dict(line.split(" ", 1) for line in out.splitlines() if " " in line))
    third = _child(tmp_path)
    assert int(third["HITS"]) >= 1
    for o in outs:
        assert float(third["OUT"]) == pytest.approx(float(o["OUT"]), rel=1e-6)


def _staged_model():
    L = cnnc.layers   # a model no other test compiles
    return cnnc.Sequential([cnnc.Input((10, 9, 3)),
                            L.Conv2D(6, 3, padding="same", activation="relu", seed=21),
                            L.Conv2D(6, 3, padding="same", seed=22), L.ReLU(),
                            L.MaxPooling2D(2), L.Conv2D(8, 3, seed=23), L.Flatten(),
                            L.Dense(5, seed=24)], name="staged_forward")


CHILD_STAGES = textwrap.dedent("""
    import sys, numpy as np, cnnc
    sys.path.insert(0, %r)
    from cnnc.backends.numba_cpu import stages
    from test_numba_cpu_models import _staged_model
    stages.STAGE_CALLS = 3
    c = cnnc.compile(_staged_model(), target="cpu")
    print("STAGES", len(c.lowered.stages))
    print("HITS", sum(c.module.forward.stats.cache_hits.values()))
    x = np.random.default_rng(1).standard_normal((3, 10, 9, 3)).astype(np.float32)
    print("OUT", repr(float(np.abs(c(x).astype(np.float64)).sum())))
""" % os.path.dirname(__file__))


def test_a_forward_split_into_stages(tmp_path, monkeypatch):
    """A schedule longer than STAGE_CALLS kernel calls runs as stages compiled like kernels:
    each stage defines again the arena and weight views it reads, the result is the unsplit
    forward's, the debugger steps through the stages' statements, and a second process runs
    it all from the disk cache (stage and kernel symbols resolved before the load)."""
    from cnnc.backends.numba_cpu import stages
    monkeypatch.setenv("CNNC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(stages, "STAGE_CALLS", 3)
    model = _staged_model()
    staged = _check(model, batches=(3,))
    n_calls = len(staged.lowered.kernel_names)
    assert len(staged.lowered.stages) == -(-n_calls // 3) > 1
    src = staged.source()
    forward = src[src.index("def forward("):]
    assert "k0(" not in forward and "s1(" in forward
    monkeypatch.setattr(stages, "STAGE_CALLS", 10 ** 6)
    whole = cnnc.compile(model, target="cpu")
    assert not whole.lowered.stages
    x = np.random.default_rng(1).standard_normal((3, 10, 9, 3)).astype(np.float32)
    np.testing.assert_array_equal(staged(x), whole(x))
    report = cnnc.debug.compare(model, x, target="cpu")
    assert "all" in str(report) and "agree" in str(report)
    assert [s.kernel for s in ForwardStepper(staged).calls] == staged.lowered.kernel_names
    r = subprocess.run([sys.executable, "-c", CHILD_STAGES], capture_output=True, text=True,
                       env=dict(os.environ, CNNC_CACHE_DIR=str(tmp_path)), cwd="/")
    assert r.returncode == 0, r.stderr[-3000:]
    out = dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)
    assert int(out["STAGES"]) > 1 and int(out["HITS"]) >= 1
    assert float(out["OUT"]) == pytest.approx(float(np.abs(whole(x).astype(np.float64)).sum()),
                                              rel=1e-6)


def test_a_view_past_its_buffer_raises_instead_of_reading_beyond_it():
    from numba import njit

    from cnnc.backends.numba_cpu.views import py_view, view

    @njit
    def f(buf, start, n):
        return view(buf, start, (n, 3))

    buf = np.arange(12, dtype=np.float32)
    np.testing.assert_array_equal(f(buf, 3, 3), buf[3:12].reshape(3, 3))
    np.testing.assert_array_equal(py_view(buf, 3, (3, 3)), f(buf, 3, 3))
    for start, n in ((4, 3), (-1, 1)):
        with pytest.raises(ValueError, match="past the end of its buffer"):
            f(buf, start, n)
        with pytest.raises(ValueError, match="past the end of its buffer"):
            py_view(buf, start, (n, 3))


def test_compile_queue_runs_longest_first_and_claims_each_kernel_once(monkeypatch, tmp_path):
    """Cold kernels form one queue, longest first (ties in their order); a process compiles
    a kernel only if it is the first to claim it, so no kernel is compiled twice."""
    from cnnc.backends.numba_cpu import runtime
    costs = {"k0": 35, "k1": 45, "k2": 100, "k3": 106, "k4": 100, "k5": 44}
    names = sorted(costs)
    done = []
    monkeypatch.setattr(runtime, "compile_kernel", lambda module, k, sigs: done.append(k))
    module = type("M", (), {"__file__": str(tmp_path / "m.py")})
    runtime._compile_shared(module, names, {k: [[1]] for k in names}, 1, None, costs)
    assert done == ["k3", "k2", "k4", "k1", "k5", "k0"]
    claims = tmp_path / "claims"
    claims.mkdir()
    assert runtime._claim(str(claims), "k2") and not runtime._claim(str(claims), "k2")
    assert not runtime._claim(str(tmp_path / "gone"), "k2")   # the queue has ended
    assert runtime._claim(None, "k2")


def test_kernels_a_failed_worker_claimed_are_compiled_here(monkeypatch, tmp_path, capfd):
    """A worker that claims kernels and dies before compiling them costs time, not the
    model: this process compiles what it left, says so, and removes the queue."""
    from cnnc.backends.numba_cpu import runtime

    class Crashed:   # claimed the whole queue, then failed
        returncode = 1

        def __init__(self, args, *a, **k):
            spec, claims = args[-2], args[-1]
            self.claims = claims
            for item in spec.split(";"):
                assert runtime._claim(claims, item.split(":")[0])

        def communicate(self):
            return b"", b"worker killed"

        def poll(self):
            return 1

    monkeypatch.setattr(subprocess, "Popen", Crashed)
    monkeypatch.setenv("CNNC_COMPILE_WORKERS", "2")
    monkeypatch.setenv("CNNC_CACHE_DIR", str(tmp_path))
    _check(_random_model(np.random.default_rng(12), (7, 6, 3),
                         cnnc.layers.Conv2D(6, 3, padding="same", activation="relu"),
                         cnnc.layers.AveragePooling2D(2),
                         cnnc.layers.Conv2D(4, 1, activation="sigmoid")), batches=(2,))
    err = capfd.readouterr().err
    assert "a compile worker failed; compiling here instead: worker killed" in err
    assert not [p for p in os.listdir(tmp_path) if p.startswith("claims-")]


def test_compile_workers_take_their_share_and_the_setting_is_checked(monkeypatch, tmp_path):
    """A cold compile with ``CNNC_COMPILE_WORKERS=2`` starts a worker process for part of the
    kernels (the suite itself compiles with 1, as its runner has a process per core), and the
    model it makes matches the reference; 1 starts none; a setting that is not a number is a
    clear error."""
    from cnnc.backends.numba_cpu import runtime
    started = []
    popen = subprocess.Popen

    def counting(args, *a, **k):
        started.append(args)
        return popen(args, *a, **k)

    monkeypatch.setattr(subprocess, "Popen", counting)
    rng = np.random.default_rng(11)
    for workers, cache in (("2", "two"), ("1", "one")):
        monkeypatch.setenv("CNNC_COMPILE_WORKERS", workers)
        monkeypatch.setenv("CNNC_CACHE_DIR", str(tmp_path / cache))
        started.clear()
        _check(_random_model(rng, (9, 9, 3),
                             cnnc.layers.Conv2D(8, 3, padding="same", activation="relu"),
                             cnnc.layers.MaxPooling2D(2),
                             cnnc.layers.Conv2D(5, 1, activation="tanh")), batches=(2,))
        workers_started = [a for a in started if "cnnc.backends.numba_cpu.runtime" in a]
        assert len(workers_started) == (1 if workers == "2" else 0), started
    monkeypatch.setenv("CNNC_COMPILE_WORKERS", "two")
    with pytest.raises(cnnc.CnncError, match="CNNC_COMPILE_WORKERS"):
        runtime.compile_workers()
