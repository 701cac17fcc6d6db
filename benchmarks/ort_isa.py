"""ONNX Runtime held to its AVX2 kernels, so that cnnc's AVX2 code meets the ORT an AVX2 machine
runs, on an AVX-512 machine.

ORT's kernel library (MLAS) picks its kernels once, when it loads, from ``cpuid`` and from
the register state the operating system saves (XCR0); no setting holds it to an older ISA. It
installs its AVX-512 kernels only where XCR0 has the three AVX-512 state bits (``xcr0 & 0xE0
== 0xE0``), and otherwise keeps the FMA3 / AVX2 kernels it installed just before: exactly
what it runs on an AVX2 + FMA CPU. :func:`avx2_onnxruntime` copies the installed
``onnxruntime`` package once into a user cache directory and, in each of its libraries,
replaces the conditional jump of that one test (the bytes ``test $0xe0, %al; je rel32``,
which must occur exactly once per library) with a no-op of the same length. A process with
that copy first on ``PYTHONPATH`` runs ORT's AVX2 kernels for every conv, GEMM, pool and
activation. ORT code outside MLAS that reads ``cpuid`` for itself still sees AVX-512; none
of it runs the float32 ops of a CNN.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: ``test $0xe0, %al`` then the opcode of ``je rel32``: MLAS's test for AVX-512 state
AVX512_STATE_TEST = bytes.fromhex("a8e00f84")
NOP6 = bytes.fromhex("660f1f440000")   # nopw 0x0(%rax,%rax,1): 6 bytes, like je rel32
MARK = "cnnc-avx2-patch"


def patch_library(data: bytes, name: str = "library") -> bytes:
    """``data`` with the jump of MLAS's AVX-512 state test made a no-op."""
    at = data.find(AVX512_STATE_TEST)
    if at < 0 or data.find(AVX512_STATE_TEST, at + 1) >= 0:
        n = data.count(AVX512_STATE_TEST)
        raise RuntimeError(f"{name}: found MLAS's AVX-512 state test {n} times, expected once; "
                           f"this ONNX Runtime build cannot be held to AVX2 this way")
    jump = at + 2
    return data[:jump] + NOP6 + data[jump + len(NOP6):]


def avx2_onnxruntime(cache: str | os.PathLike | None = None) -> str:
    """A directory to put first on ``PYTHONPATH``: the installed ``onnxruntime`` whose MLAS
    runs its AVX2 kernels. Made once per ORT version; later calls reuse it."""
    import onnxruntime
    src = Path(onnxruntime.__file__).resolve().parent
    base = Path(cache or os.path.join(os.environ.get("XDG_CACHE_HOME")
                                      or os.path.expanduser("~/.cache"), "cnnc-peers"))
    root = base / f"onnxruntime-{onnxruntime.__version__}-avx2"
    if (root / MARK).exists():
        return str(root)
    tmp = base / f".{root.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp / "onnxruntime", ignore=shutil.ignore_patterns("__pycache__"))
    try:
        libs = [p for p in (tmp / "onnxruntime" / "capi").iterdir()
                if ".so" in p.name and AVX512_STATE_TEST in p.read_bytes()]
        if not libs:
            raise RuntimeError(f"no library under {src / 'capi'} has MLAS's AVX-512 state test")
        for lib in libs:
            lib.write_bytes(patch_library(lib.read_bytes(), lib.name))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / MARK).write_text(f"from {src}\n" + "".join(f"patched {p.name}\n" for p in libs))
    try:
        tmp.rename(root)
    except OSError:   # another process made it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return str(root)


def ort_env(isa: str, base=None, cache=None) -> dict[str, str]:
    """The environment of an ORT process for ``isa``: "native" (what this CPU gets) or
    "avx2" (:func:`avx2_onnxruntime` of ``cache`` first on ``PYTHONPATH``)."""
    env = dict(os.environ if base is None else base)
    if isa == "avx2":
        env["PYTHONPATH"] = os.pathsep.join(
            [avx2_onnxruntime(cache), *filter(None, [env.get("PYTHONPATH")])])
    elif isa != "native":
        raise ValueError(f"unknown ISA {isa!r}; expected 'native' or 'avx2'")
    return env
