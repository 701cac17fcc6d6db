"""Loading generated modules through an on-disk cache, and the compiled model that runs them.

Generated source is written to ``$CNNC_CACHE_DIR`` (default ``~/.cache/cnnc``) as
``cnnc_<key>.py``, where the key hashes the source, the cnnc, Numba and llvmlite versions,
the effective LLVM target (:func:`target.effective`: Numba's CPU name and features) and the
code of the modules linked into the generated functions (:func:`_linked_code`); Numba's
own ``cache=True`` then stores the machine code beside it, so a second process compiling the
same model skips Numba compilation. Writes are atomic (temp file + rename); an
entry that fails to load is removed and rebuilt.

Each kernel of a model is a module of its own (:func:`load_lowered`), so a kernel that
another model has (the same model exported at another batch size, a shared block, a
retrained head) is compiled once for all of them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import shutil
import sys
import threading
import time

import numpy as np

from cnnc.backends.base import CompiledModel
from cnnc.backends.numba_cpu.contention import TeamChooser
from cnnc.errors import CnncError, KernelError

ALIGN = 16  # elements: buffers start on 64-byte boundaries
_F32 = np.dtype(np.float32)


def cache_dir() -> str:
    d = os.environ.get("CNNC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cnnc")
    os.makedirs(d, exist_ok=True)
    return d


def cache_key(source: str) -> str:
    import llvmlite
    import numba

    import cnnc
    from cnnc.backends.numba_cpu import target
    h = hashlib.sha256()
    for part in (source, cnnc.__version__, numba.__version__, llvmlite.__version__,
                 target.effective().key, sys.version, _linked_code()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


@functools.cache
def _linked_code() -> str:
    """A hash of the modules whose compiled code ends up inside the generated functions
    (intrinsics, the by-symbol calls): Numba's cache checks the generated module's own file
    only, so a change to these must change the key."""
    from cnnc.backends.numba_cpu import extern, threads, views, vmath
    h = hashlib.sha256()
    for mod in (extern, threads, views, vmath):
        with open(mod.__file__, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def module_path(source: str) -> str:
    return _path_of(cache_key(source))


def _path_of(key: str) -> str:
    return os.path.join(cache_dir(), f"cnnc_{key}.py")


def load_module(source: str, fresh: bool = False):
    """Import the generated ``source`` from the cache (writing it there first if needed).

    ``fresh`` evicts the entry (source and Numba's machine code) first: the way to recover
    from a corrupt cache."""
    key = cache_key(source)
    path = module_path(source)
    name = f"cnnc_generated_{key}"
    if fresh:
        sys.modules.pop(name, None)
        _evict(path)
    for attempt in range(2):
        try:
            _write(path, source)
            if name in sys.modules:
                return sys.modules[name]
            spec = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod  # Numba's cache finds the module's globals by name
            try:
                spec.loader.exec_module(mod)
            except BaseException:
                del sys.modules[name]
                raise
            return mod
        except (SyntaxError, ImportError, OSError, ValueError) as e:
            if attempt:
                raise CnncError(f"cannot load generated module {path}: {e}") from e
            _evict(path)


def load_lowered(lowered):
    """The module of a lowered model: each kernel's module is written to the cache first
    (the model's module loads its kernels from there by key: :func:`load_kernel`)."""
    for key, text in lowered.kernel_modules.values():
        _write(_path_of(key), text)
    return load_module(lowered.module_source)


def load_kernel(key: str):
    """The kernel of generated kernel module ``key`` (written by :func:`load_lowered`)."""
    path = _path_of(key)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise CnncError(f"generated kernel module {path} is missing: {e}") from e
    return load_module(text).kernel


def _write(path: str, source: str) -> None:
    """``source`` at ``path`` unless it is there already."""
    if not _same_file(path, source):
        _evict(path)  # Numba's entries for a damaged file are not to be trusted
        _atomic_write(path, source)


def _same_file(path: str, source: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read() == source
    except (OSError, UnicodeDecodeError):
        return False


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _evict(path: str) -> None:
    """Remove a generated module and Numba's cached machine code for it."""
    base = os.path.splitext(os.path.basename(path))[0]
    for p in (path, os.path.join(os.path.dirname(path), "__pycache__")):
        if p.endswith("__pycache__") and os.path.isdir(p):
            for f in os.listdir(p):
                if f.startswith(base):
                    try:
                        os.remove(os.path.join(p, f))
                    except OSError:
                        pass
        elif os.path.exists(p):
            try:
                os.remove(p)
            except OSError:
                pass


def _aligned_empty(n: int) -> np.ndarray:
    """float32[n] starting on a 64-byte boundary (BLAS and vector loads take the same path
    in every process, so results are reproducible to the bit)."""
    raw = np.empty(n + ALIGN, dtype=np.float32)
    skip = (-raw.ctypes.data % 64) // 4
    return raw[skip:skip + n]


class NumbaCpuModel(CompiledModel):
    """Runs the generated ``forward`` over a per-thread arena sized for each batch size."""

    target = "cpu"

    def __init__(self, graph, report, plan, lowered, module):
        super().__init__(graph, report)
        self.plan = plan
        self.lowered = lowered
        self.module = module
        self._forward = module.forward
        self._weights = (lowered.packed_weights,)
        self._local = threading.local()
        self.compile_seconds = 0.0

    def cpu_description(self) -> str:
        """The LLVM target the kernels were compiled for, and the one their tiles were planned
        for when that differs (:func:`target.plan_for`)."""
        from cnnc.backends.numba_cpu import target
        built = target.effective()
        planned = getattr(self.lowered, "cpu", None) or built
        text = f"compiled for {built.describe()}"
        if planned.isa != built.isa or planned.lanes != built.lanes:
            text += f"; tiles planned for {planned.describe()}"
        return text

    def _arena(self, bindings):
        arenas = getattr(self._local, "arenas", None)
        if arenas is None:
            arenas = self._local.arenas = {}
        key = tuple(sorted(bindings.items()))
        if key not in arenas:
            sizes = self.plan.buffer_elements(bindings)
            n_plan = len(sizes)   # then the halo slots (lower.Lowered.halo_needs)
            sizes += self.lowered.halo_elements(bindings)
            offs = np.zeros(max(len(sizes), 1), dtype=np.int64)
            total = 0
            for i, n in enumerate(sizes):
                offs[i] = total
                total += -(-n // ALIGN) * ALIGN
            from cnnc.backends.base import check_memory
            n_scratch = self.lowered.scratch_elements(bindings)
            # arena + scratch, and room for one BLAS temporary as large as the largest buffer
            check_memory(4 * (total + max(sizes, default=0) + ALIGN
                              + n_scratch),
                         f"the buffer arena of model {self.graph.name!r} (target cpu) for "
                         f"{', '.join(f'{k}={v}' for k, v in key) or 'static shapes'}")
            scratch = _aligned_empty(max(n_scratch, 1))
            arena = _aligned_empty(max(total, 1))
            for o, n in zip(offs[n_plan:], sizes[n_plan:]):
                arena[o:o + n] = 0.0   # a halo's border, which nothing writes again
            arenas[key] = (arena, offs, scratch)
        return arenas[key]

    def team(self, bindings) -> TeamChooser:
        """The thread-count chooser of this thread's calls at ``bindings`` (contention.py)."""
        teams = getattr(self._local, "teams", None)
        if teams is None:
            teams = self._local.teams = {}
        key = tuple(sorted(bindings.items()))
        if key not in teams:
            teams[key] = TeamChooser()
        return teams[key]

    @contextlib.contextmanager
    def untimed(self):
        """Calls of this thread meanwhile run on the caller's thread count and are no samples
        of the model's speed for its :class:`TeamChooser`: the warm-up that loads the kernels
        (seconds) and the debugger's and profiler's stepped ``forward`` (cnnc/debug.py).
        Recorded, such a call made the chooser's next probe of one thread win against an
        average that held it: the calls after it ran on one thread until the probe after
        (``cnnc profile``'s whole-call line read the one-thread time: ResNet-50 60.7 ms against
        33), and a stepped call made while one thread was chosen timed every kernel on one."""
        self._local.untimed = True
        try:
            yield
        finally:
            self._local.untimed = False

    def __call__(self, *xs):
        """The model on ``xs``.  A call with the input shapes of this thread's last call, on
        float32 arrays that are C-contiguous, aligned and writeable, skips their validation
        (done for those shapes already) and the lookups by batch size: at batch 1 LeNet-5's
        whole call took ~6 us beside its ~20 us of kernels (benchmarks/RESULTS.md)."""
        last = getattr(self._local, "last", None)
        if last is not None and len(xs) == len(last[0]):
            for x, shape in zip(xs, last[0]):
                if type(x) is not np.ndarray or x.dtype != _F32 or x.shape != shape:
                    break
                flags = x.flags
                if not (flags.c_contiguous and flags.aligned and flags.writeable):
                    break
            else:
                outs = self._execute(xs, *last[1:])
                return outs[0] if len(outs) == 1 else tuple(outs)
        return super().__call__(*xs)

    def run(self, arrays, bindings):
        team = self.team(bindings)
        arena = self._arena(bindings)
        outs = self._execute(arrays, bindings, arena, team)
        if all(v.type.dtype == "float32" for v in (*self.graph.inputs, *self.graph.outputs)):
            self._local.last = (tuple(x.shape for x in arrays), bindings, arena, team)
        return outs

    def _execute(self, arrays, bindings, arena, team):
        from cnnc.backends.numba_cpu.threads import get_threads, set_threads
        args = (*arrays, *arena, *self._weights)
        threads = get_threads()
        untimed = getattr(self._local, "untimed", False)
        n = threads if untimed else team.threads(threads, time.perf_counter())
        if n != threads:
            set_threads(n)
        t0 = time.perf_counter()
        try:
            outs = self._forward(*args)
        except CnncError:
            raise
        except Exception as e:  # noqa: BLE001 - nothing raw escapes from generated code
            set_threads(threads)   # forward runs small kernels on one thread
            raise self._kernel_error(args, bindings, e) from e
        finally:
            if n != threads:
                set_threads(threads)
        t1 = time.perf_counter()
        if not untimed:
            team.record(t1 - t0, t1)
        return [y.copy() for y in outs]

    def _kernel_error(self, args, bindings, exc) -> KernelError:
        """A KernelError for ``exc``, naming the node whose statement fails when ``forward``
        is stepped through again."""
        where = ""
        try:
            from cnnc.debug import ForwardStepper
            found = ForwardStepper(self).locate_failure(args)
        except Exception:  # noqa: BLE001 - the report stays useful without the node
            found = None
        if found is not None:
            node, stmt = found
            where = (f" at {node.describe()}" if node is not None else "") + f" (`{stmt}`)"
        sizes = ", ".join(f"{k}={v}" for k, v in sorted(bindings.items())) or "static shapes"
        return KernelError(f"model {self.graph.name!r} (target cpu, {sizes}) failed in its "
                           f"generated code{where}: {type(exc).__name__}: {exc}")

    def warm_up(self) -> float:
        """Compile (or load from the disk cache) every kernel by running batch 1."""
        t0 = time.perf_counter()
        xs = [np.zeros(v.type.concrete({d: 1 for d in v.type.shape if isinstance(d, str)}),
                       np.float32) for v in self.graph.inputs]
        bindings = {d: 1 for v in self.graph.inputs for d in v.type.shape if isinstance(d, str)}
        with self.untimed():
            self.run(xs, bindings)
        self.compile_seconds = time.perf_counter() - t0
        return self.compile_seconds

    def source(self) -> str:
        return self.lowered.source


def clear_cache() -> None:
    shutil.rmtree(cache_dir(), ignore_errors=True)


# ---- cold compiles in parallel ----------------------------------------------------------------
@contextlib.contextmanager
def loop_vectorizer(enabled: bool):
    """Numba reads ``config.LOOP_VECTORIZE`` whenever it builds a pass pipeline, so this
    applies to the kernels compiled inside the block (the parallel loop bodies included)."""
    import numba
    numba.core.config.reload_config()   # else a changed NUMBA_ variable undoes this mid-compile
    old = numba.config.LOOP_VECTORIZE
    numba.config.LOOP_VECTORIZE = int(enabled)
    try:
        yield
    finally:
        numba.config.LOOP_VECTORIZE = old


def compile_kernel(module, name: str, signatures) -> None:
    """Compile one kernel of a generated module for each of its ``signatures`` (the ranks of
    its arguments, -1 for an integer); those the module lists in ``NO_LOOP_VECTORIZE``
    (register-tiled convs) without the loop vectorizer."""
    off = name in getattr(module, "NO_LOOP_VECTORIZE", ())
    for ndims in signatures:
        compile_signature(getattr(module, name), ndims, off)


def compile_signature(dispatcher, ndims, register_tiled: bool = False):
    """The compile result of kernel ``dispatcher`` for argument ranks ``ndims`` (loaded from
    the disk cache when it is there; a ``register_tiled`` one without the loop vectorizer)."""
    sig = kernel_signature(ndims)
    if sig not in dispatcher.overloads:
        from cnnc.backends.numba_cpu.kernels import compile_tail
        compile_tail(dispatcher)   # before the kernel that calls them
        with loop_vectorizer(False) if register_tiled else contextlib.nullcontext():
            dispatcher.compile(sig)
    return dispatcher.overloads[sig]


def kernel_signature(ndims):
    """Argument types for ranks ``ndims``: float32 C arrays, -1 an int64, -2 (stages.OFFSETS)
    a 1-d int64 array."""
    from numba import types
    return tuple(types.Array(types.float32, nd, "C") if nd >= 0 else
                 types.int64 if nd == -1 else types.Array(types.int64, 1, "C") for nd in ndims)


def _has_machine_code(path: str) -> bool:
    """Whether Numba's cache holds machine code for the generated module at ``path``."""
    base = os.path.splitext(os.path.basename(path))[0]
    pyc = os.path.join(os.path.dirname(path), "__pycache__")
    try:
        return any(f.startswith(base) and f.endswith(".nbi") for f in os.listdir(pyc))
    except OSError:
        return False


def _file_of(dispatcher) -> str:
    return sys.modules[dispatcher.py_func.__module__].__file__


def compile_kernels(lowered, module, workers: int | None = None, progress=None) -> None:
    """Compile every distinct kernel, then every stage of ``forward`` (stages.py), spreading
    what the disk cache lacks over worker processes.

    This process and the workers take kernels from one queue (:func:`_compile_shared`), the
    workers compiling into the disk cache; this process then loads theirs from the cache
    (``forward`` calls the loaded kernels: extern.py). Kernels are independent, so the
    speed-up is close to the number of cores; the stages, which call the kernels, follow
    once every kernel is in the cache."""
    kernels = sorted(set(lowered.kernel_names), key=lambda k: int(k[1:]))
    cold = [k for k in kernels if not _has_machine_code(_file_of(getattr(module, k)))]
    texts = getattr(lowered, "kernel_modules", None) or {}
    costs = {k: texts[k][1].count("\n") * len(lowered.signatures[k]) for k in cold
             if k in texts}
    _compile_shared(module, cold, lowered.signatures, workers, progress, costs)
    for k in kernels:   # those the cache had
        compile_kernel(module, k, lowered.signatures[k])
    stage_sigs = getattr(lowered, "stages", None) or {}
    _compile_shared(module, list(stage_sigs), stage_sigs,
                    1 if _has_machine_code(module.__file__) else workers, progress)


def compile_workers() -> int:
    """Processes a cold compile spreads its kernels over: ``$CNNC_COMPILE_WORKERS``, else one
    per core.  1 compiles in this process only: the choice where something else keeps the
    cores busy (a test runner with a worker per core), as a compile worker's start then
    costs more than its share saves."""
    value = os.environ.get("CNNC_COMPILE_WORKERS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise CnncError(f"CNNC_COMPILE_WORKERS must be a whole number of processes, "
                            f"not {value!r}") from None
    return os.cpu_count() or 1


def _claim(claims: str | None, name: str) -> bool:
    """Whether this process compiles ``name``: the first process to create its file in the
    directory ``claims`` does (None: no other process takes part)."""
    if claims is None:
        return True
    try:
        os.close(os.open(os.path.join(claims, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except OSError:   # taken, or the directory is gone: another process has it
        return False


def _compile_shared(module, names, signatures, workers, progress, costs=None) -> None:
    """Compile ``names`` here and in ``workers - 1`` worker processes, all taking kernels
    from one queue, longest first by ``costs`` (lines of source): each process claims the
    next kernel nobody has (:func:`_claim`), so a worker that starts late, or a kernel that
    takes longer than its cost said, leaves no process idle while another still has a list
    of its own (fixed shares by cost left ResNet-18's compile waiting ~3 s on its worker).
    This process then loads from the cache what the workers compiled, and compiles itself
    whatever a failed worker claimed and did not finish."""
    import subprocess
    import tempfile
    if not names:
        return
    costs = costs or {}
    mean = sum(costs.values()) / len(costs) if costs else 0
    order = sorted(names, key=lambda k: -costs.get(k, mean))   # stable: ties keep their order
    workers = min(workers or compile_workers(), len(order))
    claims = None
    procs = []
    if workers > 1:
        try:
            claims = tempfile.mkdtemp(prefix="claims-", dir=os.path.dirname(module.__file__))
        except OSError:
            pass   # no queue: this process compiles every kernel
    if claims is not None:
        spec = ";".join(f"{k}:" + "|".join(",".join(map(str, nd)) for nd in signatures[k])
                        for k in order)
        procs = [subprocess.Popen([sys.executable, "-m", "cnnc.backends.numba_cpu.runtime",
                                   module.__file__, spec, claims],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for _ in range(workers - 1)]
    try:
        mine = set()
        for i, k in enumerate(order):
            if _claim(claims, k):
                mine.add(k)
                compile_kernel(module, k, signatures[k])
            if progress:
                progress(i + 1, len(order))
        for p in procs:
            _, err = p.communicate()
            if p.returncode:  # not fatal: this process compiles whatever the worker did not
                print(f"cnnc: a compile worker failed; compiling here instead: "
                      f"{err.decode(errors='replace')[-500:]}", file=sys.stderr)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        if claims is not None:
            shutil.rmtree(claims, ignore_errors=True)
    for k in order:
        if k not in mine:
            compile_kernel(module, k, signatures[k])   # the workers', from the cache


def _worker(path: str, spec: str, claims: str) -> None:
    with open(path, encoding="utf-8") as f:
        module = load_module(f.read())
    for item in spec.split(";"):
        name, sigs = item.split(":")
        if _claim(claims, name):
            compile_kernel(module, name, [[int(d) for d in dims.split(",") if d]
                                          for dims in sigs.split("|")])


if __name__ == "__main__":
    import cnnc.backends.numba_cpu  # noqa: F401  (process settings before compiling)
    _worker(sys.argv[1], sys.argv[2], sys.argv[3])
