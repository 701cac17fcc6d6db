"""The CPU the generated kernels are compiled for, as the tile plans need it.

The *effective* target is the one LLVM compiles for: Numba's ``NUMBA_CPU_NAME`` /
``NUMBA_CPU_FEATURES`` (``numba.config.CPU_NAME`` / ``CPU_FEATURES``) when set, else the host
(llvmlite), exactly as Numba resolves them.  What the plans use of it: float32 lanes of one
vector register, the number of vector registers, whether there is a fused multiply-add, and
the ISA whose arithmetic rate it has (:attr:`Target.rate_isa`: AMD Zen 4's AVX-512 runs at
AVX2's).

    AVX-512F  16 lanes, 32 registers (zmm)      AVX2  8 lanes, 16 registers (ymm)
    NEON       4 lanes, 32 registers (q)        SSE   4 lanes, 16 registers (xmm)
"""

from __future__ import annotations

import contextlib
import platform
from dataclasses import dataclass

#: CPU names whose implied features include these ISAs (used only when the feature string
#: neither enables nor disables them, e.g. NUMBA_CPU_NAME set with an empty feature string)
_AVX512_NAMES = ("skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake",
                 "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids",
                 "graniterapids", "znver4", "znver5", "x86-64-v4")
_AVX2_NAMES = ("haswell", "broadwell", "skylake", "kabylake", "coffeelake", "cometlake",
               "alderlake", "raptorlake", "meteorlake", "arrowlake", "lunarlake", "znver1",
               "znver2", "znver3", "x86-64-v3", "bdver4")
#: AVX-512 CPUs that run each 512-bit instruction as two 256-bit halves (AMD Zen 4): a zmm
#: FMA costs what two ymm FMAs cost, so their arithmetic rate per core is AVX2's
_HALF_RATE_512 = ("znver4",)


@dataclass(frozen=True)
class Target:
    """A CPU as the plans see it; ``name`` and ``features`` are what LLVM is given."""

    isa: str          # "avx512" | "avx2" | "avx" | "sse" | "neon" | "generic"
    lanes: int        # float32 lanes per vector register
    registers: int    # vector registers
    fma: bool
    name: str = ""
    features: str = ""

    def describe(self) -> str:
        fma = "FMA" if self.fma else "no FMA"
        rate = ("" if self.rate_isa == self.isa
                else f" ({self.rate_isa}'s arithmetic rate: 512-bit ops run as 256-bit halves)")
        return (f"{self.name or '?'}: {self.isa}, {self.lanes} float32 lanes, "
                f"{self.registers} vector registers, {fma}{rate}")

    @property
    def rate_isa(self) -> str:
        """The ISA whose arithmetic rate per core this CPU has: ``"avx2"`` for an AVX-512 CPU
        that splits each 512-bit instruction in two (AMD Zen 4), else :attr:`isa`.  Register
        tiles follow :attr:`isa` (the registers there are); plans that trade arithmetic for
        memory traffic (Winograd's gates, winograd.py) follow this."""
        if self.isa == "avx512" and self.name.lower().startswith(_HALF_RATE_512):
            return "avx2"
        return self.isa

    @property
    def key(self) -> str:
        """What a cache entry built for this target depends on."""
        return f"{self.name}|{self.features}"


def _flags(features: str) -> dict[str, bool]:
    out = {}
    for f in features.split(","):
        f = f.strip()
        if len(f) > 1 and f[0] in "+-":
            out[f[1:]] = f[0] == "+"
    return out


def wide_vectors(features: str) -> str:
    """``features`` with LLVM's preference for 256-bit vectors switched off when AVX-512F is on.

    LLVM tunes its Intel AVX-512 CPUs (skylake-avx512 through sapphirerapids, rocketlake
    included) to prefer 256-bit vectors, so the SLP vectoriser splits a 32-channel register
    tile into ymm halves: 3x3 64->64 on 56x56 ran at 201 instead of 416 GFLOP/s on a
    Sapphire Rapids host (benchmarks/RESULTS.md). AMD's znver4/znver5 have no such preference,
    so this changes nothing there."""
    flags = _flags(features)
    if flags.get("avx512f") and "prefer-256-bit" not in flags:
        return f"{features},-prefer-256-bit" if features else "-prefer-256-bit"
    return features


#: the plan shapes of the two x86 ISAs, for tests and for forcing a plan choice
AVX512 = Target("avx512", 16, 32, True, "skylake-avx512",
                wide_vectors("+avx512f,+avx2,+fma"))
AVX2 = Target("avx2", 8, 16, True, "znver3", "+avx2,+fma,-avx512f")


def describe_cpu(name: str, features: str, machine: str | None = None) -> Target:
    """The :class:`Target` of LLVM CPU ``name`` with feature string ``features``."""
    machine = (machine or platform.machine()).lower()
    if machine in ("aarch64", "arm64") or name.startswith(("apple-", "cortex-", "neoverse")):
        return Target("neon", 4, 32, True, name, features)
    if not machine.startswith(("x86", "amd64", "i686")) and machine not in ("i386",):
        return Target("generic", 4, 16, False, name, features)
    flags = _flags(features)
    base = name.lower()

    def has(feature: str, names=()) -> bool:
        if feature in flags:
            return flags[feature]
        return base.startswith(tuple(names))

    avx512 = has("avx512f", _AVX512_NAMES)
    avx2 = avx512 or has("avx2", _AVX512_NAMES + _AVX2_NAMES)
    fma = has("fma", _AVX512_NAMES + _AVX2_NAMES)
    if avx512:
        return Target("avx512", 16, 32, fma, name, features)
    if avx2:
        return Target("avx2", 8, 16, fma, name, features)
    if has("avx"):
        return Target("avx", 8, 16, fma, name, features)
    return Target("sse", 4, 16, fma, name, features)


_cache: dict[tuple, Target] = {}
_forced: list[Target] = []


def host_features() -> str:
    """The host's LLVM feature string ("" where llvmlite cannot read it)."""
    import llvmlite.binding as ll
    try:
        return ll.get_host_cpu_features().flatten()
    except RuntimeError:   # llvmlite cannot read them on some hosts
        return ""


def effective() -> Target:
    """The target Numba compiles for in this process."""
    import numba
    key = (numba.config.CPU_NAME, numba.config.CPU_FEATURES)
    if key not in _cache:
        import llvmlite.binding as ll
        name = key[0] or ll.get_host_cpu_name()
        features = key[1] if key[1] is not None else host_features()
        _cache[key] = describe_cpu(name, features)
    return _cache[key]


def for_plans() -> Target:
    """The target tile plans are chosen for: :func:`effective` unless :func:`plan_for` says
    otherwise (the code is still compiled for the effective target)."""
    return _forced[-1] if _forced else effective()


@contextlib.contextmanager
def plan_for(target: Target):
    """Choose tile plans for ``target`` inside the block (plan shapes of another ISA still run
    here: only their speed differs)."""
    _forced.append(target)
    try:
        yield target
    finally:
        _forced.pop()
