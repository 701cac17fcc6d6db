"""The compiled CUDA model: weights on the device, one planned arena, one stream.

* Weights are uploaded once, when the model is built.
* Per batch size (symbol bindings) one device arena is allocated: a single float32 device
  array, one aligned slice per buffer of the memory plan (buffers that the plan reuses are
  reused on the device too). The launch list (configured kernels and their arguments) is
  prepared then as well, so a call costs one loop of kernel launches.
* Activations stay on the device between kernels: only the inputs go up and the outputs come
  down. All work is queued on one stream, synchronised once at the end of a call.
* Device inputs: an object with ``__cuda_array_interface__`` (a Numba device array, a CuPy
  array, a PyTorch CUDA tensor; float32, C-contiguous) is read in place, with no copy to the
  host; the outputs are then returned as new Numba device arrays (``cupy.asarray`` or
  ``torch.as_tensor`` take them without a copy). A call mixing host and device inputs counts
  as a device call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from cnnc.backends.base import MEMORY_FRACTION, CompiledModel, bind_shape, check_input_count
from cnnc.backends.numba_cuda.convgen import BLOCKS_PER_SM, pick
from cnnc.errors import DTypeError, ResourceError, ShapeError

ALIGN = 64  # elements: every buffer starts on a 256-byte boundary


def is_device_array(x) -> bool:
    """Whether ``x`` lives in GPU memory (the simulator's arrays count as such)."""
    if hasattr(x, "__cuda_array_interface__"):
        return True
    from numba import cuda
    fake = getattr(getattr(cuda, "simulator", None), "cudadrv", None)
    fake = getattr(getattr(fake, "devicearray", None), "FakeCUDAArray", None)
    return fake is not None and isinstance(x, fake)


@dataclass
class _Setup:
    """Everything prepared for one binding of the symbols (one batch size)."""

    arena: object
    buffers: list
    staging: list           # device copies of host inputs
    launches: list          # (kernel, (grid, block, stream), args, [(arg pos, input index)])
    names: list             # the kernel (GEMM tile variant) of each launch


class NumbaCudaModel(CompiledModel):
    """Runs the launch schedule of a :class:`~cnnc.backends.numba_cuda.lower.Lowered`."""

    target = "cuda"

    def __init__(self, graph, report, plan, lowered, module, profile):
        from numba import cuda
        super().__init__(graph, report)
        self._cuda = cuda
        self.plan, self.lowered, self.module, self.profile = plan, lowered, module, profile
        self._kernels = {name: getattr(module, name) for name in lowered.kernels}
        self._stream = cuda.stream()
        self._weights = [cuda.to_device(w, stream=self._stream) for w in lowered.weights]
        self._stream.synchronize()
        sms = getattr(cuda.get_current_device(), "MULTIPROCESSOR_COUNT", 1)
        self._target_blocks = sms * BLOCKS_PER_SM
        self._setups: dict[tuple, _Setup] = {}
        self._lock = threading.Lock()

    # ---- preparation -----------------------------------------------------------------------
    def _setup(self, bindings) -> _Setup:
        key = tuple(sorted(bindings.items()))
        st = self._setups.get(key)
        if st is not None:
            return st
        cuda = self._cuda
        sizes = self.plan.buffer_elements(bindings)
        offs, total = [], 0
        for n in sizes:
            offs.append(total)
            total += -(-max(n, 1) // ALIGN) * ALIGN
        self._check_device_memory(4 * (total + sum(_numel(v.shape, bindings)
                                                   for v in self.graph.inputs)), bindings)
        arena = cuda.device_array(max(total, 1), dtype=np.float32, stream=self._stream)
        buffers = [arena[o:o + n] for o, n in zip(offs, sizes)]
        staging = [cuda.device_array(max(_numel(v.shape, bindings), 1), dtype=np.float32,
                                     stream=self._stream) for v in self.graph.inputs]
        st = _Setup(arena, buffers, staging, [], [])
        for launch in self.lowered.launches:
            count = launch.count(bindings)
            grids = [grid(count) for _, grid, _ in launch.variants]
            i = pick(grids, self._target_blocks)
            name, _, block = launch.variants[i]
            config = (grids[i], block, self._stream)
            args = [count] + [self._resolve(st, r, staging) for r in launch.args]
            slots = [(k + 1, r.index) for k, r in enumerate(launch.args) if r.kind == "input"]
            st.launches.append((self._kernels[name], config, args, slots))
            st.names.append(name)
        self._setups[key] = st
        return st

    def _check_device_memory(self, nbytes: int, bindings) -> None:
        """ResourceError, before anything is allocated or launched, when the arena cannot fit
        in the GPU memory that is free."""
        try:
            free, _ = self._cuda.current_context().get_memory_info()
        except Exception:  # a device that does not say: let the allocation decide
            return
        if nbytes > MEMORY_FRACTION * free:
            sizes = ", ".join(f"{k}={v}" for k, v in sorted(bindings.items())) or "static shapes"
            raise ResourceError(f"running model {self.graph.name!r} (target cuda) with {sizes} "
                                f"needs {nbytes / 2**20:.1f} MiB of GPU memory but only "
                                f"{free / 2**20:.1f} MiB is free; use a smaller batch")

    def _resolve(self, st: _Setup, ref, inputs):
        if ref.kind == "buffer":
            return st.buffers[ref.index]
        if ref.kind == "weight":
            return self._weights[ref.index]
        return inputs[ref.index]

    def _run(self, st: _Setup, inputs, device_inputs: bool) -> None:
        for kernel, config, args, slots in st.launches:
            if device_inputs and slots:
                args = list(args)
                for pos, i in slots:
                    args[pos] = inputs[i]
            # configured at each launch: the simulator's kernel[...] configures the kernel
            # object itself, so a configuration kept from another batch size would leak
            kernel[config](*args)

    # ---- calls -----------------------------------------------------------------------------
    def run(self, arrays, bindings):
        """Host arrays in (validated by ``prepare_inputs``), host arrays out."""
        with self._lock:
            st = self._setup(bindings)
            for dev, x in zip(st.staging, arrays):
                dev[:x.size].copy_to_device(x.reshape(-1), stream=self._stream)
            self._run(st, st.staging, False)
            outs = []
            for ref, v in zip(self.lowered.outputs, self.graph.outputs):
                shape = v.type.concrete(bindings)
                n = _numel(shape, {})
                if ref.kind == "input":
                    outs.append(np.array(arrays[ref.index], dtype=np.float32).reshape(shape))
                    continue
                src = self._resolve(st, ref, st.staging)[:n]
                outs.append(src.copy_to_host(stream=self._stream).reshape(shape))
            self._stream.synchronize()
        return outs

    def __call__(self, *xs):
        if not any(is_device_array(x) for x in xs):
            return super().__call__(*xs)
        inputs, bindings = self._device_inputs(xs)
        cuda = self._cuda
        with self._lock:
            st = self._setup(bindings)
            self._run(st, inputs, True)
            outs = []
            for ref, v in zip(self.lowered.outputs, self.graph.outputs):
                shape = v.type.concrete(bindings)
                n = _numel(shape, {})
                res = cuda.device_array(max(n, 1), dtype=np.float32, stream=self._stream)
                res.copy_to_device(self._resolve(st, ref, inputs)[:n], stream=self._stream)
                outs.append(res[:n].reshape(shape))
            self._stream.synchronize()
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _device_inputs(self, xs):
        """Validated flat float32 device arrays (host inputs uploaded) and the bindings."""
        g = self.graph
        check_input_count(g, xs)
        bindings: dict[str, int] = {}
        out = []
        for x, v in zip(xs, g.inputs):
            what = f"input %{v.name} of model {g.name!r}"
            if is_device_array(x):
                d = x if not hasattr(x, "__cuda_array_interface__") or \
                    hasattr(x, "copy_to_host") else self._cuda.as_cuda_array(x)
                if np.dtype(d.dtype) != np.float32:
                    raise DTypeError(f"{what}: a device array must be float32, got {d.dtype}")
                if not d.is_c_contiguous():
                    raise ShapeError(f"{what}: a device array must be C-contiguous, got "
                                     f"strides {d.strides} for shape {d.shape}")
            else:
                d = np.asarray(x)
                if d.dtype.kind not in "fiu":
                    raise DTypeError(f"{what} must have a numeric dtype, got {d.dtype}")
            bind_shape(what, v.type, tuple(d.shape), bindings)
            if not is_device_array(d):
                d = self._cuda.to_device(np.ascontiguousarray(d, dtype=np.float32),
                                         stream=self._stream)
            out.append(d.reshape(d.size))
        return out, bindings

    def warm_up(self) -> None:
        """Compile (or load from the disk cache) the kernels that batch 1 uses by running it
        once on zeros."""
        xs = [np.zeros(v.type.concrete({d: 1 for d in v.type.shape if isinstance(d, str)}),
                       np.float32) for v in self.graph.inputs]
        self(*xs)

    def kernels_used(self, bindings) -> list[str]:
        """The kernel (GEMM tile variant) each launch uses for ``bindings``."""
        return list(self._setup(bindings).names)

    def source(self) -> str:
        return self.lowered.source

    def strategies(self) -> list[str]:
        """The kernel strategy (and GEMM tile) chosen for each conv/dense node."""
        return list(self.lowered.notes)


def _numel(shape, bindings) -> int:
    return int(np.prod([d if isinstance(d, int) else bindings[d] for d in shape],
                       dtype=np.int64))


