"""What every backend returns: a :class:`CompiledModel`, callable on NumPy arrays.

Inputs are validated here, before any kernel runs (kernels do no bounds checks): count,
array-ness, numeric dtype, rank, static dims and a consistent batch size. Then the memory the
call needs (see :meth:`CompiledModel.planned_bytes`) is checked against what the machine has
available, and only then are the inputs cast to float32 and made C-contiguous.

Memory checks (:func:`check_memory`) compare a request with :func:`available_memory`: the
smaller of ``MemAvailable`` (``/proc/meminfo``, else ``os.sysconf``) and the room left under a
cgroup v2 limit. An impossible request raises :class:`~cnnc.errors.ResourceError` instead of
being killed by the operating system.
"""

from __future__ import annotations

import os

import numpy as np

from cnnc.errors import DTypeError, ResourceError, ShapeError

#: share of the available memory a single request may take
MEMORY_FRACTION = 0.8


# ---- memory --------------------------------------------------------------------------------
def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup v2 memory limit (None: no limit)."""
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            used = int(f.read().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes this process can still allocate, or None when the machine does not say."""
    known = [b for b in (_meminfo_available(), _cgroup_room()) if b is not None]
    return min(known) if known else None


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**26 else f"{n / 2**20:.1f} MiB"


def check_memory(nbytes: int, what: str) -> None:
    """Raise :class:`ResourceError` when ``nbytes`` would not fit in available memory."""
    avail = available_memory()
    if avail is None or nbytes <= MEMORY_FRACTION * avail:
        return
    raise ResourceError(f"{what} needs {_gib(nbytes)} ({nbytes} bytes) but only {_gib(avail)} "
                        f"of memory is available; use a smaller batch or a smaller model")


def activation_bytes(graph, bindings: dict[str, int], itemsize: int = 4) -> tuple[int, int]:
    """(total, largest) bytes of the computed values of ``graph`` for ``bindings``."""
    sizes = [int(np.prod(n.output.type.concrete(bindings), dtype=np.int64))
             for n in graph.nodes if n.op != "constant"]
    return sum(sizes) * itemsize, max(sizes, default=0) * itemsize


# ---- inputs --------------------------------------------------------------------------------
def check_input_count(graph, xs) -> None:
    if len(xs) != len(graph.inputs):
        raise ShapeError(f"model {graph.name!r} takes {len(graph.inputs)} input(s) "
                         f"({', '.join(str(v.type) for v in graph.inputs)}), got {len(xs)}")


def bind_shape(what: str, want, got: tuple, bindings: dict) -> None:
    """Check the shape ``got`` of an input against its TensorType ``want``, binding symbols
    (``{"N": 8}``); every backend validates its inputs through this before any kernel runs."""
    if len(got) != want.rank:
        raise ShapeError(f"{what} expects rank {want.rank} {want}, got shape {got}")
    for axis, (d, n) in enumerate(zip(want.shape, got)):
        if isinstance(d, str):
            if n < 1:
                raise ShapeError(f"{what}: dim {axis} ({d}) must be >= 1, got {n} "
                                 f"(shape {got})")
            if bindings.setdefault(d, n) != n:
                raise ShapeError(f"{what}: dim {axis} ({d}) is {n} but another input has "
                                 f"{d}={bindings[d]}")
        elif d != n:
            raise ShapeError(f"{what} expects shape {want}, got {got} "
                             f"(dim {axis}: expected {d}, got {n})")


def prepare_inputs(graph, xs, dtype=np.float32, check=None
                   ) -> tuple[list[np.ndarray], dict[str, int]]:
    """Validated, cast, contiguous inputs and the symbol bindings (e.g. ``{"N": 8}``).

    ``check(bindings)``, when given, runs after validation and before any copy is made (the
    place for a memory check)."""
    check_input_count(graph, xs)
    bindings: dict[str, int] = {}
    arrays = []
    for x, v in zip(xs, graph.inputs):
        what = f"input %{v.name} of model {graph.name!r}"
        if not isinstance(x, np.ndarray):
            if not hasattr(x, "__array__") and not isinstance(x, (list, tuple)):
                raise DTypeError(f"{what} must be a NumPy array, got {type(x).__name__}")
            try:
                x = np.asarray(x)
            except (ValueError, TypeError) as e:
                raise DTypeError(f"{what} cannot be converted to an array: {e}") from None
        if v.type.dtype == "bool":
            if x.dtype.kind != "b":
                raise DTypeError(f"{what} must be a bool array, got dtype {x.dtype}")
        elif x.dtype.kind not in "fiu":
            raise DTypeError(f"{what} must have a numeric dtype, got "
                             f"{x.dtype}")
        bind_shape(what, v.type, tuple(x.shape), bindings)
        arrays.append(x)
    if check is not None:
        check(bindings)
    # C-contiguous, aligned and writeable: compiled code is specialised on those (a read-only
    # input would otherwise need kernels of its own)
    return [np.require(x, dtype, ["C", "A", "W"]) for x in arrays], bindings


class CompiledModel:
    """A graph compiled for one target. Call it on arrays of any batch size."""

    target = "abstract"

    def __init__(self, graph, report=None):
        self.graph = graph
        self.report = report  # the PipelineReport of the passes that produced ``graph``
        self.opt_level = getattr(report, "opt_level", None)
        self._memory_ok: set = set()  # bindings whose planned memory was checked

    def __call__(self, *xs):
        arrays, bindings = prepare_inputs(self.graph, xs, check=self._check_memory)
        outs = self.run(arrays, bindings)
        # bool values are computed as float 0/1
        outs = [y != 0 if v.type.dtype == "bool" else y for y, v in zip(outs, self.graph.outputs)]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def run(self, arrays: list[np.ndarray], bindings: dict[str, int]) -> list[np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__}.run")

    # ---- resources ---------------------------------------------------------------------------
    def planned_bytes(self, bindings: dict[str, int]) -> int:
        """Bytes one call allocates for ``bindings`` (an estimate erring on the high side).

        A backend with a buffer plan (``self.plan``): the input copies, the planned arena, its
        scratch, the output copies and one temporary as large as the largest buffer. The
        reference interpreter keeps every activation alive: all of them in its compute dtype,
        plus two temporaries as large as the largest one (padding, products)."""
        def size(v):
            return 4 * int(np.prod(v.type.concrete(bindings), dtype=np.int64))

        inputs = sum(size(v) for v in self.graph.inputs)
        plan = getattr(self, "plan", None)
        if plan is None:
            item = np.dtype(getattr(self, "dtype", np.float32)).itemsize
            total, largest = activation_bytes(self.graph, bindings, item)
            return inputs + total + 2 * largest
        lowered = getattr(self, "lowered", None)
        scratch = 4 * lowered.scratch_elements(bindings) if hasattr(lowered,
                                                                    "scratch_elements") else 0
        buffers = plan.buffer_elements(bindings)
        if hasattr(lowered, "halo_elements"):
            buffers += lowered.halo_elements(bindings)
        return (inputs + 4 * (sum(buffers) + max(buffers, default=0)) + scratch
                + sum(size(v) for v in self.graph.outputs))

    def _check_memory(self, bindings: dict[str, int]) -> None:
        key = tuple(sorted(bindings.items()))
        if key in self._memory_ok:
            return
        sizes = ", ".join(f"{k}={v}" for k, v in key) or "static shapes"
        check_memory(self.planned_bytes(bindings),
                     f"running model {self.graph.name!r} (target {self.target}) with {sizes}")
        if len(self._memory_ok) < 64:
            self._memory_ok.add(key)

    # ---- artifacts ---------------------------------------------------------------------------
    def save(self, path) -> str:
        """Write this model as a versioned artifact (see :mod:`cnnc.artifacts`); returns the
        path. ``cnnc.load(path)`` compiles it again for the same target."""
        from cnnc.artifacts import save
        return save(self, path)

    def source(self) -> str:
        """The program this model runs (for the reference: the IR)."""
        return str(self.graph)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.graph.name!r} target={self.target}>"

    def summary(self, batch: int = 1, print_fn=print) -> str:
        """Table of the compiled graph: node, op + epilogue, output shape, params, FLOPs."""
        from cnnc.profile import summary
        text = summary(self, batch)
        if print_fn is not None:
            print_fn(text)
        return text

    def profile(self, *xs, repeats: int = 20):
        """Time every node on ``xs`` (see :func:`cnnc.profile.profile`); print the result."""
        from cnnc.profile import profile
        return profile(self, list(xs), repeats=repeats)
