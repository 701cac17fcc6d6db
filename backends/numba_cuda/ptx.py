"""Compile the generated kernels to PTX with NVVM - no GPU or driver needed - and read back
what the GPU would get: registers, spills, shared memory (through ``ptxas`` when the CUDA
toolkit's ``ptxas`` is on the machine).

    from cnnc.backends.numba_cuda.ptx import kernel_ptx, resources
    ptx = kernel_ptx(lowered, cc=(9, 0))          # name -> PTX text
    resources(ptx["k3"], cc=(9, 0))                # {"registers": 96, "spill_bytes": 0, ...}

Needs ``numba.cuda`` in its real (not simulated) mode and libNVVM (the
``nvidia-cuda-nvcc`` wheel or a CUDA toolkit).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

from cnnc.backends.numba_cuda.lower import HEADER, Lowered, signature


def kernel_ptx(lowered: Lowered, cc=(9, 0)) -> dict[str, str]:
    """The PTX of every kernel of ``lowered`` for compute capability ``cc``."""
    from numba import cuda
    namespace: dict = {}
    source = HEADER.format(name="ptx", n_kernels=len(lowered.kernels)) + "\n".join(
        lowered.kernels.values())
    exec(compile(source, "<cnnc-cuda-kernels>", "exec"), namespace)
    out = {}
    for name in lowered.kernels:
        ptx, _ = cuda.compile_ptx(namespace[name], signature(lowered.n_args[name]), cc=cc)
        out[name] = ptx
    return out


def ptxas_path() -> str | None:
    """``ptxas`` of the ``nvidia-cuda-nvcc`` wheel (the same release as its NVVM, so it reads
    the PTX that NVVM writes), else the one on PATH, else None."""
    for mod in ("nvidia.cu13", "nvidia.cuda_nvcc"):
        try:
            pkg = __import__(mod, fromlist=["__path__"])
        except ImportError:
            continue
        for root in pkg.__path__:
            for dirpath, _, files in os.walk(root):
                if "ptxas" in files:
                    return os.path.join(dirpath, "ptxas")
    return shutil.which("ptxas")


def resources(ptx: str, cc=(9, 0)) -> dict[str, int]:
    """Registers per thread, spill stores/loads (bytes), shared memory (bytes) per kernel
    entry of ``ptx`` according to ``ptxas -v``; ``{}`` when ptxas is not available."""
    exe = ptxas_path()
    if exe is None:
        return {}
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        r = subprocess.run([exe, "-v", f"-arch=sm_{cc[0]}{cc[1]}", src, "-o",
                            os.path.join(d, "k.cubin")], capture_output=True, text=True)
    text = r.stdout + r.stderr
    if r.returncode:
        raise RuntimeError(f"ptxas failed: {text[-2000:]}")
    info = {}
    for key, pat in (("registers", r"Used (\d+) registers"),
                     ("spill_stores", r"(\d+) bytes spill stores"),
                     ("spill_loads", r"(\d+) bytes spill loads"),
                     ("stack", r"(\d+) bytes stack frame"),
                     ("shared", r"(\d+) bytes smem")):
        m = re.search(pat, text)
        info[key] = int(m.group(1)) if m else 0
    return info
